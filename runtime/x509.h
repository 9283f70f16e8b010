/* X.509 certificates as PEM text: issuing (x509_make.c), reading and chain
 * verification (x509_read.c).
 *
 * The issuing side takes borrowed pointers only, so a caller can point into
 * memory it already owns; functions return 0 on success and -1 with *err
 * filled: "EINVAL" for unusable input, "EVERIFY" for a chain that does not
 * verify. */
#ifndef KMSRUN_X509_H
#define KMSRUN_X509_H

#include "crypto.h"

#include <stdint.h>

/* One attribute of a distinguished name: field is a short name ("CN", "O",
 * "OU", "C", "ST", "L", "emailAddress", ...) or a dotted OID. */
typedef struct kr_dn_entry {
    const char *field;
    const char *value;
} kr_dn_entry;

/* Split "O=Dstack,CN=Dstack CA" in place (buf is modified) into entries that
 * point into buf, in order. Whitespace around fields and values is trimmed; a
 * backslash escapes the next character (so "\," is a literal comma). Blank
 * parts are skipped, so "" gives no entries. At most cap entries. Fails
 * (EINVAL) on a part without '=' or with an empty field name. */
int kr_crypto_parse_dn(char *buf, kr_dn_entry *entries, size_t cap, size_t *n, kr_crypto_err *err);

/* Whether field names a distinguished-name attribute OpenSSL knows (a short
 * or long name such as "CN" or "commonName"), or is a dotted OID. */
int kr_crypto_dn_field_known(const char *field);

/* keyUsage bits, by their RFC 5280 bit number. */
enum {
    KR_KU_DIGITAL_SIGNATURE = 1u << 0,
    KR_KU_KEY_ENCIPHERMENT = 1u << 2,
    KR_KU_KEY_CERT_SIGN = 1u << 5,
    KR_KU_CRL_SIGN = 1u << 6,
};

/* The KR_KU_* flag for "digitalSignature", "keyCertSign", "cRLSign" or
 * "keyEncipherment"; 0 for any other name. */
unsigned kr_crypto_key_usage_flag(const char *name);

/* extendedKeyUsage purposes (RFC 5280 4.2.1.12). */
enum {
    KR_EKU_SERVER_AUTH = 1u << 0,
    KR_EKU_CLIENT_AUTH = 1u << 1,
};

/* The KR_EKU_* flag for "serverAuth" or "clientAuth"; 0 for any other name. */
unsigned kr_crypto_ext_key_usage_flag(const char *name);

typedef struct kr_ext_spec {
    const char *oid;            /* dotted, e.g. "1.3.6.1.4.1.62397.1.1" */
    const unsigned char *value; /* raw bytes, wrapped in a DER OCTET STRING */
    size_t len;
    int critical;
} kr_ext_spec;

typedef struct kr_cert_spec {
    const char *key_pem; /* subject key: private; or public when an issuer signs */
    size_t key_len;
    const kr_dn_entry *subject;
    size_t n_subject;
    const char *issuer_cert_pem; /* both NULL: self-signed by key_pem */
    size_t issuer_cert_len;
    const char *issuer_key_pem;
    size_t issuer_key_len;
    int ca;
    long pathlen;                /* < 0: no path length constraint */
    const char *const *san;      /* "DNS:x", "IP:1.2.3.4", "URI:x", "email:x", or bare */
    size_t n_san;
    int64_t not_before_offset;   /* seconds from now */
    int64_t lifetime;            /* seconds from notBefore to notAfter */
    int has_serial;
    uint64_t serial;             /* used when has_serial; otherwise random 64-bit */
    unsigned key_usage;          /* KR_KU_* flags; 0: no keyUsage extension */
    unsigned ext_key_usage;      /* KR_EKU_* flags; 0: no extendedKeyUsage extension */
    const kr_ext_spec *ext;
    size_t n_ext;
} kr_cert_spec;

/* Issue a certificate (X.509 v3, SHA-256 signature) as PEM. Extensions:
 * basicConstraints (critical, CA:TRUE, pathlen) when ca; keyUsage (critical)
 * when key_usage; extendedKeyUsage (not critical) when ext_key_usage; subjectAltName (critical when the subject is empty) when
 * n_san; subjectKeyIdentifier when ca; authorityKeyIdentifier when ca or
 * issued by issuer_cert; then the custom extensions in order. */
int kr_crypto_cert(const kr_cert_spec *spec, kr_bytes *pem, kr_crypto_err *err);

/* An attribute read from a certificate, owned by the kr_cert_info. */
typedef struct kr_attr {
    char *name; /* short name or dotted OID */
    char *value; /* UTF-8 */
} kr_attr;

typedef struct kr_cert_ext {
    char *oid;      /* dotted */
    kr_bytes value; /* OCTET STRING payload if the value is one, else its DER */
} kr_cert_ext;

typedef struct kr_cert_info {
    char *subject, *issuer; /* "CN=x, O=y" in certificate order */
    kr_attr *subject_attrs, *issuer_attrs;
    size_t n_subject_attrs, n_issuer_attrs;
    char **san; /* "DNS:x", "IP:1.2.3.4", "IP:::1", "URI:x", "email:x" */
    size_t n_san;
    kr_cert_ext *ext;
    size_t n_ext;
    kr_bytes spki_der, spki_pem, der;
    char fingerprint[65]; /* SHA-256 of der, lowercase hex */
    char *serial;         /* lowercase hex, two digits per byte */
    int64_t not_before, not_after; /* Unix seconds */
    int is_ca;
    long pathlen; /* -1: none */
} kr_cert_info;

/* Read the first CERTIFICATE block of a PEM text, or a DER certificate. */
int kr_crypto_parse_cert(const char *data, size_t len, kr_cert_info *out, kr_crypto_err *err);
void kr_cert_info_free(kr_cert_info *info);

/* Verify the first certificate of cert_pem (later certificates in it count as
 * intermediates) up to a certificate of roots_pem (each one a trust anchor,
 * self-signed or not), with optional untrusted intermediates (NULL for none),
 * at `at` (Unix seconds) when has_time, else now. EVERIFY carries OpenSSL's
 * reason, e.g. "certificate has expired". */
int kr_crypto_verify_chain(const char *cert_pem, size_t cert_len, const char *roots_pem, size_t roots_len,
                           const char *inter_pem, size_t inter_len, int has_time, int64_t at,
                           kr_crypto_err *err);

#endif
