/* Byte-level cryptographic helpers over OpenSSL 3: randomness, digests, HMAC,
 * hex and base64 codecs, and splitting of PEM bundles.
 *
 * Shared by the key (eckey.h) and certificate (x509.h) layers: the kr_bytes
 * result buffer and the kr_crypto_err failure record. Functions that can fail
 * on bad data return 0 on success and -1 with *err filled; err->code is a
 * stable upper-case string ("EINVAL", "EVERIFY"). */
#ifndef KMSRUN_CRYPTO_H
#define KMSRUN_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* A heap buffer owned by the caller; release with kr_bytes_free. */
typedef struct kr_bytes {
    unsigned char *data;
    size_t len;
} kr_bytes;

typedef struct kr_crypto_err {
    const char *code; /* static string */
    char msg[256];
} kr_crypto_err;

void kr_bytes_free(kr_bytes *b);

/* Record a failure; always returns -1 so callers can `return kr_crypto_fail(...)`. */
int kr_crypto_fail(kr_crypto_err *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill out[0..n) from the CSPRNG. */
int kr_crypto_random(unsigned char *out, size_t n, kr_crypto_err *err);

/* Digest `alg` ("SHA256", "SHA384", "SHA512") of data into out, which holds
 * at least KR_CRYPTO_MAX_DIGEST bytes; *outlen receives the digest size. */
enum { KR_CRYPTO_MAX_DIGEST = 64 };
int kr_crypto_digest(const char *alg, const void *data, size_t len, unsigned char *out, size_t *outlen,
                     kr_crypto_err *err);

/* HMAC-SHA256 of data under key (any length, including empty) into out[32]. */
int kr_crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32],
                          kr_crypto_err *err);

/* Lowercase hex of in[0..n) into out, which holds 2n+1 bytes (NUL-terminated). */
void kr_crypto_hex(const unsigned char *in, size_t n, char *out);

/* Decode hex (either case) into out, which holds len/2 bytes. Rejects odd
 * lengths and non-hex characters. */
int kr_crypto_unhex(const char *in, size_t len, unsigned char *out, kr_crypto_err *err);

/* Standard base64 (RFC 4648 alphabet, '=' padding, no line breaks). */
int kr_crypto_base64(const unsigned char *in, size_t n, kr_bytes *out);

/* Decode standard base64. ASCII whitespace is ignored, padding is optional,
 * but when present it must complete the last quantum. */
int kr_crypto_unbase64(const char *in, size_t len, kr_bytes *out, kr_crypto_err *err);

/* One "-----BEGIN <label>-----" ... "-----END <label>-----" block, pointing
 * into the caller's text (nothing is copied). */
typedef struct kr_pem_block {
    const char *label;
    size_t label_len;
    const char *text; /* from "-----BEGIN" through the END line's dashes */
    size_t len;
} kr_pem_block;

/* Find the PEM blocks of text in order; *blocks is malloc'd (free() it, may be
 * NULL when *n is 0). Text outside blocks and unterminated blocks are skipped. */
int kr_crypto_split_pem(const char *text, size_t len, kr_pem_block **blocks, size_t *n);

#endif
