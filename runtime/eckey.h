/* Elliptic-curve keys as PEM text: generation, import of a raw scalar,
 * inspection, and ECDSA-SHA256 signatures.
 *
 * Curves are named as in the Lua API: "P-256" and "secp256k1" can be created;
 * inspection also names "P-384" and "P-521". Functions return 0 (verify: 1 or
 * 0) on success and -1 with *err filled (code "EINVAL") on bad input. */
#ifndef KMSRUN_ECKEY_H
#define KMSRUN_ECKEY_H

#include "crypto.h"

/* Whether keygen/key_from_raw can create keys on `curve`. */
int kr_crypto_curve_supported(const char *curve);

/* A fresh private key as PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). */
int kr_crypto_keygen(const char *curve, kr_bytes *pem, kr_crypto_err *err);

/* The private key with scalar raw[0..len) (big-endian, exactly the curve's
 * size, 0 < scalar < order) as PKCS#8 PEM; the public point is derived. */
int kr_crypto_key_from_raw(const char *curve, const unsigned char *raw, size_t len, kr_bytes *pem,
                           kr_crypto_err *err);

enum { KR_EC_MAX_SCALAR = 66 }; /* P-521 */

typedef struct kr_key_info {
    char curve[32];
    int has_private;
    unsigned char private_raw[KR_EC_MAX_SCALAR]; /* big-endian, padded to the curve size */
    size_t private_len;
    unsigned char compressed[KR_EC_MAX_SCALAR + 1]; /* 02/03 || X */
    size_t compressed_len;
    kr_bytes public_der; /* SubjectPublicKeyInfo */
    kr_bytes public_pem; /* "-----BEGIN PUBLIC KEY-----" */
} kr_key_info;

/* Inspect an EC private key (PKCS#8 or SEC1 PEM) or public key PEM. */
int kr_crypto_key_info(const char *pem, size_t len, kr_key_info *out, kr_crypto_err *err);
void kr_key_info_free(kr_key_info *info);

/* DER ECDSA signature over SHA-256(data) with an EC private key PEM. */
int kr_crypto_sign(const char *key_pem, size_t key_len, const void *data, size_t len, kr_bytes *sig,
                   kr_crypto_err *err);

/* 1 if sig is a valid DER ECDSA-SHA256 signature of data under the EC public
 * key of `pem` (a public key, private key or certificate PEM); 0 if it is not
 * (including malformed signatures); -1 with *err when the PEM is unusable. */
int kr_crypto_verify(const char *pem, size_t pem_len, const void *data, size_t len, const unsigned char *sig,
                     size_t sig_len, kr_crypto_err *err);

#endif
