/* Reading certificates into kr_cert_info, and chain verification. */
#include "x509.h"
#include "crypto_ossl.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *dup_str(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The first CERTIFICATE block of data, or data itself as DER. */
static X509 *read_cert(const char *data, size_t len, kr_crypto_err *err)
{
    kr_pem_block *blocks;
    size_t n;
    if (kr_crypto_split_pem(data, len, &blocks, &n) != 0) {
        kr_crypto_fail(err, "ENOMEM", "out of memory");
        return NULL;
    }
    size_t i = 0;
    while (i < n && !(blocks[i].label_len == 11 && memcmp(blocks[i].label, "CERTIFICATE", 11) == 0)) i++;
    X509 *x = NULL;
    if (i < n) {
        BIO *bio = BIO_new_mem_buf(blocks[i].text, (int)blocks[i].len);
        x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!x) kr_crypto_fail(err, "EINVAL", "cannot parse the certificate");
    } else if (n == 0 && len > 0 && (unsigned char)data[0] == 0x30) {
        const unsigned char *p = (const unsigned char *)data;
        x = d2i_X509(NULL, &p, (long)len);
        if (!x) kr_crypto_fail(err, "EINVAL", "cannot parse the DER certificate");
    } else {
        kr_crypto_fail(err, "EINVAL", "no certificate found (expected a CERTIFICATE PEM block or DER)");
    }
    free(blocks);
    ERR_clear_error();
    return x;
}

static char *field_name(const ASN1_OBJECT *obj)
{
    char buf[128];
    int nid = OBJ_obj2nid(obj);
    const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
    if (sn) return dup_str(sn, strlen(sn));
    int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
    return n > 0 ? dup_str(buf, strlen(buf)) : dup_str("?", 1);
}

/* Attributes in certificate order, and the one-line form "CN=x, O=y" in
 * which ',' and '\' inside values are backslash-escaped (as parse_dn reads). */
static int read_name(const X509_NAME *name, kr_attr **attrs, size_t *n, char **line)
{
    int count = X509_NAME_entry_count(name);
    *attrs = calloc(count > 0 ? (size_t)count : 1, sizeof **attrs);
    *n = 0;
    size_t cap = 1, used = 0;
    *line = calloc(1, 1);
    if (!*attrs || !*line) return -1;
    for (int i = 0; i < count; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        unsigned char *utf8 = NULL;
        int vlen = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
        kr_attr *a = &(*attrs)[(*n)++];
        a->name = field_name(X509_NAME_ENTRY_get_object(e));
        a->value = vlen >= 0 ? dup_str((const char *)utf8, (size_t)vlen) : NULL;
        OPENSSL_free(utf8);
        if (!a->name || !a->value) return -1;
        size_t need = used + strlen(a->name) + 2 * (size_t)vlen + 4;
        if (need > cap) {
            char *grown = realloc(*line, cap = 2 * need);
            if (!grown) return -1;
            *line = grown;
        }
        char *w = *line + used;
        if (i > 0) w += sprintf(w, ", ");
        w += sprintf(w, "%s=", a->name);
        for (const char *v = a->value; *v; v++) {
            if (*v == ',' || *v == '\\') *w++ = '\\';
            *w++ = *v;
        }
        *w = '\0';
        used = (size_t)(w - *line);
    }
    return 0;
}

static char *san_entry(const GENERAL_NAME *g)
{
    int type;
    const ASN1_STRING *s = GENERAL_NAME_get0_value(g, &type);
    const char *prefix = type == GEN_DNS ? "DNS:" : type == GEN_URI ? "URI:" : type == GEN_EMAIL ? "email:" : NULL;
    char buf[INET6_ADDRSTRLEN + 3] = "IP:";
    if (prefix) {
        size_t pl = strlen(prefix), n = (size_t)ASN1_STRING_length(s);
        char *out = malloc(pl + n + 1);
        if (out) {
            memcpy(out, prefix, pl);
            memcpy(out + pl, ASN1_STRING_get0_data(s), n);
            out[pl + n] = '\0';
        }
        return out;
    }
    if (type != GEN_IPADD) return NULL;
    int len = ASN1_STRING_length(s), af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
    if (!af || !inet_ntop(af, ASN1_STRING_get0_data(s), buf + 3, sizeof buf - 3)) return NULL;
    return dup_str(buf, strlen(buf));
}

static int read_san(X509 *x, kr_cert_info *out)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int count = gens ? sk_GENERAL_NAME_num(gens) : 0;
    out->san = calloc(count > 0 ? (size_t)count : 1, sizeof *out->san);
    for (int i = 0; out->san && i < count; i++) {
        char *s = san_entry(sk_GENERAL_NAME_value(gens, i));
        if (s) out->san[out->n_san++] = s; /* other name forms are not reported */
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    return out->san ? 0 : -1;
}

static int read_extensions(X509 *x, kr_cert_info *out)
{
    int count = X509_get_ext_count(x);
    out->ext = calloc(count > 0 ? (size_t)count : 1, sizeof *out->ext);
    if (!out->ext) return -1;
    for (int i = 0; i < count; i++) {
        X509_EXTENSION *ext = X509_get_ext(x, i);
        const ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(ext);
        const unsigned char *p = ASN1_STRING_get0_data(data), *q = p;
        long len = ASN1_STRING_length(data);
        char oid[128];
        if (OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(ext), 1) <= 0) return -1;
        kr_cert_ext *e = &out->ext[out->n_ext++];
        if (!(e->oid = dup_str(oid, strlen(oid)))) return -1;
        /* A value that is exactly one OCTET STRING is reported unwrapped. */
        ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &q, len);
        int rc = inner && q == p + len
                     ? kr_crypto_bytes_dup(ASN1_STRING_get0_data(inner), (size_t)ASN1_STRING_length(inner), &e->value, NULL)
                     : kr_crypto_bytes_dup(p, (size_t)len, &e->value, NULL);
        ASN1_OCTET_STRING_free(inner);
        ERR_clear_error();
        if (rc != 0) return -1;
    }
    return 0;
}

static int read_time(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!ASN1_TIME_to_tm(t, &tm)) return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static int read_serial(X509 *x, kr_cert_info *out)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (!bn) return -1;
    int n = BN_num_bytes(bn);
    unsigned char *bin = malloc(n > 0 ? (size_t)n : 1);
    out->serial = malloc(2 * (size_t)(n > 0 ? n : 1) + 2);
    int rc = -1;
    if (bin && out->serial) {
        char *w = out->serial;
        if (BN_is_negative(bn)) *w++ = '-';
        if (n == 0) strcpy(w, "00");
        else kr_crypto_hex(bin, (size_t)BN_bn2bin(bn, bin), w);
        rc = 0;
    }
    free(bin);
    BN_free(bn);
    return rc;
}

static int read_public_key(X509 *x, kr_cert_info *out)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    if (n <= 0) return -1;
    int rc = kr_crypto_bytes_dup(der, (size_t)n, &out->spki_der, NULL);
    BIO *bio = rc == 0 ? BIO_new(BIO_s_mem()) : NULL;
    if (bio && PEM_write_bio(bio, "PUBLIC KEY", "", der, n) > 0) rc = kr_crypto_bio_bytes(bio, &out->spki_pem, NULL);
    else {
        BIO_free(bio);
        rc = -1;
    }
    OPENSSL_free(der);
    return rc;
}

static int read_der(X509 *x, kr_cert_info *out)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = i2d_X509(x, &der);
    if (n <= 0) return -1;
    int rc = kr_crypto_bytes_dup(der, (size_t)n, &out->der, NULL);
    OPENSSL_free(der);
    if (rc == 0 && !X509_digest(x, EVP_sha256(), md, &mdlen)) rc = -1;
    if (rc == 0) kr_crypto_hex(md, mdlen, out->fingerprint);
    return rc;
}

int kr_crypto_parse_cert(const char *data, size_t len, kr_cert_info *out, kr_crypto_err *err)
{
    memset(out, 0, sizeof *out);
    X509 *x = read_cert(data, len, err);
    if (!x) return -1;
    int rc = read_name(X509_get_subject_name(x), &out->subject_attrs, &out->n_subject_attrs, &out->subject);
    if (rc == 0) rc = read_name(X509_get_issuer_name(x), &out->issuer_attrs, &out->n_issuer_attrs, &out->issuer);
    if (rc == 0) rc = read_san(x, out);
    if (rc == 0) rc = read_extensions(x, out);
    if (rc == 0) rc = read_serial(x, out);
    if (rc == 0) rc = read_public_key(x, out);
    if (rc == 0) rc = read_der(x, out);
    if (rc == 0 && (read_time(X509_get0_notBefore(x), &out->not_before) != 0 ||
                    read_time(X509_get0_notAfter(x), &out->not_after) != 0))
        rc = -1;
    if (rc == 0) {
        out->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
        out->pathlen = X509_get_pathlen(x);
    }
    X509_free(x);
    if (rc != 0) {
        kr_cert_info_free(out);
        kr_crypto_fail(err, "EINVAL", "cannot read the certificate's fields");
    }
    ERR_clear_error();
    return rc;
}

static void free_attrs(kr_attr *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].name);
        free(a[i].value);
    }
    free(a);
}

void kr_cert_info_free(kr_cert_info *info)
{
    free(info->subject);
    free(info->issuer);
    free_attrs(info->subject_attrs, info->n_subject_attrs);
    free_attrs(info->issuer_attrs, info->n_issuer_attrs);
    for (size_t i = 0; info->san && i < info->n_san; i++) free(info->san[i]);
    free(info->san);
    for (size_t i = 0; info->ext && i < info->n_ext; i++) {
        free(info->ext[i].oid);
        kr_bytes_free(&info->ext[i].value);
    }
    free(info->ext);
    kr_bytes_free(&info->spki_der);
    kr_bytes_free(&info->spki_pem);
    kr_bytes_free(&info->der);
    free(info->serial);
    memset(info, 0, sizeof *info);
}

int kr_crypto_verify_chain(const char *cert_pem, size_t cert_len, const char *roots_pem, size_t roots_len,
                           const char *inter_pem, size_t inter_len, int has_time, int64_t at,
                           kr_crypto_err *err)
{
    STACK_OF(X509) *chain = NULL, *roots = NULL, *inter = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    X509 *leaf = NULL;
    int rc = -1;
    if (!(chain = kr_crypto_load_certs(cert_pem, cert_len, "cert", err))) goto done;
    if (!(roots = kr_crypto_load_certs(roots_pem, roots_len, "roots", err))) goto done;
    if (inter_pem && !(inter = kr_crypto_load_certs(inter_pem, inter_len, "intermediates", err))) goto done;
    if (!inter && !(inter = sk_X509_new_null())) goto oom;
    leaf = sk_X509_shift(chain);
    while (sk_X509_num(chain) > 0) {
        X509 *c = sk_X509_shift(chain);
        if (!sk_X509_push(inter, c)) {
            X509_free(c);
            goto oom;
        }
    }
    if (!(store = X509_STORE_new()) || !(ctx = X509_STORE_CTX_new())) goto oom;
    for (int i = 0; i < sk_X509_num(roots); i++)
        if (!X509_STORE_add_cert(store, sk_X509_value(roots, i))) goto oom;
    if (!X509_STORE_CTX_init(ctx, store, leaf, inter)) goto oom;
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    /* Every root is an anchor, so a test can pin an intermediate. */
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    if (has_time) X509_VERIFY_PARAM_set_time(param, (time_t)at);
    if (X509_verify_cert(ctx) == 1) rc = 0;
    else kr_crypto_fail(err, "EVERIFY", "%s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    goto done;
oom:
    kr_crypto_fail(err, "ENOMEM", "out of memory");
done:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(inter, X509_free);
    ERR_clear_error();
    return rc;
}
