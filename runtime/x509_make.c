/* Issuing X.509 certificates from a kr_cert_spec. Extensions are built as
 * ASN.1 structures rather than OpenSSL config strings, so caller-provided
 * names cannot inject extra values. */
#include "x509.h"
#include "crypto_ossl.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char *trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) end--;
    *end = '\0';
    return s;
}

int kr_crypto_parse_dn(char *buf, kr_dn_entry *entries, size_t cap, size_t *n, kr_crypto_err *err)
{
    *n = 0;
    char *r = buf, *w = buf;
    for (;;) {
        /* Unescape one comma-separated part into w (never ahead of r),
         * noting where its first unescaped '=' lands. */
        char *start = w, *eq = NULL;
        while (*r && *r != ',') {
            if (*r == '\\' && r[1]) r++;
            else if (*r == '=' && !eq) eq = w;
            *w++ = *r++;
        }
        int last = *r == '\0';
        r++;
        char *end = w++;
        if (!eq) {
            if (*trim(start, end)) return kr_crypto_fail(err, "EINVAL", "'%s' is not of the form field=value", start);
        } else {
            char *field = trim(start, eq);
            if (!*field) return kr_crypto_fail(err, "EINVAL", "empty attribute name");
            if (*n == cap) return kr_crypto_fail(err, "EINVAL", "too many name attributes");
            entries[(*n)++] = (kr_dn_entry){field, trim(eq + 1, end)};
        }
        if (last) return 0;
    }
}

int kr_crypto_dn_field_known(const char *field)
{
    if (OBJ_txt2nid(field) != NID_undef) return 1;
    ASN1_OBJECT *obj = OBJ_txt2obj(field, 1);
    ASN1_OBJECT_free(obj);
    ERR_clear_error();
    return obj != NULL;
}

unsigned kr_crypto_key_usage_flag(const char *name)
{
    static const struct { const char *name; unsigned flag; } names[] = {
        {"digitalSignature", KR_KU_DIGITAL_SIGNATURE},
        {"keyEncipherment", KR_KU_KEY_ENCIPHERMENT},
        {"keyCertSign", KR_KU_KEY_CERT_SIGN},
        {"cRLSign", KR_KU_CRL_SIGN},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].flag;
    return 0;
}

unsigned kr_crypto_ext_key_usage_flag(const char *name)
{
    if (strcmp(name, "serverAuth") == 0) return KR_EKU_SERVER_AUTH;
    if (strcmp(name, "clientAuth") == 0) return KR_EKU_CLIENT_AUTH;
    return 0;
}

/* Prefix err->msg with the name of the input that caused it. */
static int blame(kr_crypto_err *err, const char *what)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%.32s: %.200s", what, err->msg);
    memcpy(err->msg, msg, sizeof msg);
    return -1;
}

static int set_name(X509_NAME *name, const kr_cert_spec *s, kr_crypto_err *err)
{
    for (size_t i = 0; i < s->n_subject; i++) {
        const kr_dn_entry *e = &s->subject[i];
        if (!X509_NAME_add_entry_by_txt(name, e->field, MBSTRING_UTF8, (const unsigned char *)e->value, -1, -1, 0))
            return kr_crypto_fail(err, "EINVAL", "subject: cannot set %s='%s' (unknown attribute or invalid value)",
                                  e->field, e->value);
    }
    return 0;
}

static int set_serial(X509 *x, const kr_cert_spec *s, kr_crypto_err *err)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL;
    if (ok && s->has_serial) {
        ok = BN_set_word(bn, s->serial);
    } else if (ok) {
        /* Top bit set: always exactly 64 bits, so never zero and always 16 hex digits. */
        ok = BN_rand(bn, 64, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY);
    }
    ok = ok && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : kr_crypto_fail(err, "EINVAL", "cannot set the serial number");
}

static int set_validity(X509 *x, const kr_cert_spec *s, kr_crypto_err *err)
{
    time_t from = time(NULL) + (time_t)s->not_before_offset;
    if (!ASN1_TIME_set(X509_getm_notBefore(x), from) || !ASN1_TIME_set(X509_getm_notAfter(x), from + (time_t)s->lifetime))
        return kr_crypto_fail(err, "EINVAL", "validity period out of range");
    return 0;
}

static GENERAL_NAME *ia5_name(int type, const char *v, kr_crypto_err *err)
{
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p >= 0x80) {
            kr_crypto_fail(err, "EINVAL", "san: '%s' is not ASCII", v);
            return NULL;
        }
    if (!*v) {
        kr_crypto_fail(err, "EINVAL", "san: empty name");
        return NULL;
    }
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    GENERAL_NAME *g = GENERAL_NAME_new();
    if (!s || !g || !ASN1_STRING_set(s, v, -1)) {
        ASN1_IA5STRING_free(s);
        GENERAL_NAME_free(g);
        kr_crypto_fail(err, "ENOMEM", "out of memory");
        return NULL;
    }
    GENERAL_NAME_set0_value(g, type, s);
    return g;
}

static GENERAL_NAME *ip_name(const char *v, int quiet, kr_crypto_err *err)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(v);
    GENERAL_NAME *g = ip ? GENERAL_NAME_new() : NULL;
    if (!g) {
        ASN1_OCTET_STRING_free(ip);
        ERR_clear_error();
        if (!quiet) kr_crypto_fail(err, "EINVAL", "san: '%s' is not an IP address", v);
        return NULL;
    }
    GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    return g;
}

static GENERAL_NAME *general_name(const char *entry, kr_crypto_err *err)
{
    static const struct { const char *prefix; int type; } kinds[] = {
        {"DNS:", GEN_DNS}, {"IP:", GEN_IPADD}, {"URI:", GEN_URI}, {"email:", GEN_EMAIL}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(entry, kinds[i].prefix, n) != 0) continue;
        if (kinds[i].type == GEN_IPADD) return ip_name(entry + n, 0, err);
        return ia5_name(kinds[i].type, entry + n, err);
    }
    GENERAL_NAME *g = ip_name(entry, 1, err);
    return g ? g : ia5_name(GEN_DNS, entry, err);
}

static int add_san(X509 *x, const kr_cert_spec *s, kr_crypto_err *err)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens) return kr_crypto_fail(err, "ENOMEM", "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->n_san; i++) {
        GENERAL_NAME *g = general_name(s->san[i], err);
        if (!g) rc = -1;
        else if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            rc = kr_crypto_fail(err, "ENOMEM", "out of memory");
        }
    }
    /* RFC 5280 4.2.1.6: with an empty subject the names must be critical. */
    if (rc == 0 && !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, s->n_subject == 0, X509V3_ADD_DEFAULT))
        rc = kr_crypto_fail(err, "EINVAL", "cannot add subjectAltName");
    GENERAL_NAMES_free(gens);
    return rc;
}

static int add_basic_constraints(X509 *x, const kr_cert_spec *s, kr_crypto_err *err)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int ok = bc != NULL;
    if (ok) bc->ca = 1;
    if (ok && s->pathlen >= 0) ok = (bc->pathlen = ASN1_INTEGER_new()) && ASN1_INTEGER_set(bc->pathlen, s->pathlen);
    ok = ok && X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT);
    BASIC_CONSTRAINTS_free(bc);
    return ok ? 0 : kr_crypto_fail(err, "EINVAL", "cannot add basicConstraints");
}

static int add_key_usage(X509 *x, unsigned flags, kr_crypto_err *err)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL;
    for (int bit = 0; ok && bit < 9; bit++)
        if (flags & (1u << bit)) ok = ASN1_BIT_STRING_set_bit(ku, bit, 1);
    ok = ok && X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT);
    ASN1_BIT_STRING_free(ku);
    return ok ? 0 : kr_crypto_fail(err, "EINVAL", "cannot add keyUsage");
}

static int add_ext_key_usage(X509 *x, unsigned flags, kr_crypto_err *err)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int ok = eku != NULL;
    if (ok && (flags & KR_EKU_SERVER_AUTH)) ok = sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0;
    if (ok && (flags & KR_EKU_CLIENT_AUTH)) ok = sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) > 0;
    ok = ok && X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT);
    /* OBJ_nid2obj returns static objects: free the stack only. */
    sk_ASN1_OBJECT_free(eku);
    return ok ? 0 : kr_crypto_fail(err, "EINVAL", "cannot add extendedKeyUsage");
}

/* RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
static ASN1_OCTET_STRING *key_id(X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (id && X509_pubkey_digest(x, EVP_sha1(), md, &n) && ASN1_OCTET_STRING_set(id, md, (int)n)) return id;
    ASN1_OCTET_STRING_free(id);
    return NULL;
}

static int add_key_ids(X509 *x, X509 *issuer, const kr_cert_spec *s, kr_crypto_err *err)
{
    int ok = 1;
    if (s->ca) {
        ASN1_OCTET_STRING *ski = key_id(x);
        ok = ski && X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT);
        ASN1_OCTET_STRING_free(ski);
    }
    if (ok && (s->ca || issuer != x)) {
        /* Prefer the issuer's own identifier so that chain building matches it. */
        const ASN1_OCTET_STRING *have = issuer != x ? X509_get0_subject_key_id(issuer) : NULL;
        AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
        ok = akid && (akid->keyid = have ? ASN1_OCTET_STRING_dup(have) : key_id(issuer)) &&
             X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT);
        AUTHORITY_KEYID_free(akid);
    }
    return ok ? 0 : kr_crypto_fail(err, "EINVAL", "cannot add key identifiers");
}

static int add_custom(X509 *x, const kr_ext_spec *e, size_t i, kr_crypto_err *err)
{
    ASN1_OBJECT *obj = OBJ_txt2obj(e->oid, 1);
    ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new(), *outer = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    unsigned char *der = NULL;
    int n = -1, rc = -1;
    if (!obj) {
        kr_crypto_fail(err, "EINVAL", "extensions[%zu]: invalid OID '%s'", i + 1, e->oid);
        goto done;
    }
    if (inner && outer && ASN1_OCTET_STRING_set(inner, e->value, (int)e->len) &&
        (n = i2d_ASN1_OCTET_STRING(inner, &der)) > 0 && ASN1_OCTET_STRING_set(outer, der, n) &&
        (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, e->critical, outer)) && X509_add_ext(x, ext, -1))
        rc = 0;
    else
        kr_crypto_fail(err, "EINVAL", "extensions[%zu]: cannot add extension %s", i + 1, e->oid);
done:
    X509_EXTENSION_free(ext);
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(inner);
    ASN1_OCTET_STRING_free(outer);
    ASN1_OBJECT_free(obj);
    return rc;
}

static int add_extensions(X509 *x, X509 *issuer, const kr_cert_spec *s, kr_crypto_err *err)
{
    if (s->ca && add_basic_constraints(x, s, err) != 0) return -1;
    if (s->key_usage && add_key_usage(x, s->key_usage, err) != 0) return -1;
    if (s->ext_key_usage && add_ext_key_usage(x, s->ext_key_usage, err) != 0) return -1;
    if (s->n_san && add_san(x, s, err) != 0) return -1;
    if (add_key_ids(x, issuer, s, err) != 0) return -1;
    for (size_t i = 0; i < s->n_ext; i++)
        if (add_custom(x, &s->ext[i], i, err) != 0) return -1;
    return 0;
}

/* Load the keys and issuer named by the spec; on success the caller frees
 * *subject_key, *signer and *issuer (NULL when self-signed). */
static int load_parties(const kr_cert_spec *s, EVP_PKEY **subject_key, EVP_PKEY **signer, X509 **issuer,
                        kr_crypto_err *err)
{
    int self = s->issuer_cert_pem == NULL;
    *subject_key = *signer = NULL;
    *issuer = NULL;
    *subject_key = kr_crypto_load_key(s->key_pem, s->key_len, self ? KR_LOAD_PRIVATE : KR_LOAD_PRIVATE | KR_LOAD_PUBLIC, err);
    if (!*subject_key) return blame(err, "key");
    if (self) return 0;
    STACK_OF(X509) *certs = kr_crypto_load_certs(s->issuer_cert_pem, s->issuer_cert_len, "issuer_cert", err);
    if (!certs) return -1;
    *issuer = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    *signer = kr_crypto_load_key(s->issuer_key_pem, s->issuer_key_len, KR_LOAD_PRIVATE, err);
    if (!*signer) return blame(err, "issuer_key");
    if (X509_check_private_key(*issuer, *signer) != 1)
        return kr_crypto_fail(err, "EINVAL", "issuer_key does not match the public key of issuer_cert");
    return 0;
}

int kr_crypto_cert(const kr_cert_spec *s, kr_bytes *pem, kr_crypto_err *err)
{
    EVP_PKEY *subject_key, *signer;
    X509 *issuer, *x = NULL;
    int rc = load_parties(s, &subject_key, &signer, &issuer, err);
    if (rc == 0 && !(x = X509_new())) rc = kr_crypto_fail(err, "ENOMEM", "out of memory");
    if (rc == 0 && (!X509_set_version(x, X509_VERSION_3) || !X509_set_pubkey(x, subject_key)))
        rc = kr_crypto_fail(err, "EINVAL", "cannot set the public key");
    if (rc == 0) rc = set_serial(x, s, err);
    if (rc == 0) rc = set_validity(x, s, err);
    if (rc == 0) rc = set_name(X509_get_subject_name(x), s, err);
    if (rc == 0 && !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x)))
        rc = kr_crypto_fail(err, "EINVAL", "cannot set the issuer name");
    if (rc == 0) rc = add_extensions(x, issuer ? issuer : x, s, err);
    if (rc == 0 && X509_sign(x, signer ? signer : subject_key, EVP_sha256()) <= 0)
        rc = kr_crypto_fail(err, "EINVAL", "signing the certificate failed");
    if (rc == 0) {
        BIO *bio = BIO_new(BIO_s_mem());
        if (bio && PEM_write_bio_X509(bio, x)) rc = kr_crypto_bio_bytes(bio, pem, err);
        else {
            BIO_free(bio);
            rc = kr_crypto_fail(err, "EINVAL", "cannot encode the certificate");
        }
    }
    X509_free(x);
    X509_free(issuer);
    EVP_PKEY_free(signer);
    EVP_PKEY_free(subject_key);
    return rc;
}
