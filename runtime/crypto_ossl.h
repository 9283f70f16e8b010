/* OpenSSL glue shared by the key (eckey.c) and certificate (x509_*.c) layers:
 * reading keys and certificates out of PEM text, and draining memory BIOs.
 * Only C files of the crypto layer include this; bindings use eckey.h/x509.h. */
#ifndef KMSRUN_CRYPTO_OSSL_H
#define KMSRUN_CRYPTO_OSSL_H

#include "crypto.h"

#include <openssl/types.h>
#include <openssl/x509.h>

/* What kr_crypto_load_key may accept, by PEM label. */
enum {
    KR_LOAD_PRIVATE = 1, /* PRIVATE KEY, EC PRIVATE KEY */
    KR_LOAD_PUBLIC = 2,  /* PUBLIC KEY */
    KR_LOAD_CERT = 4,    /* CERTIFICATE: its subject public key */
};

/* The first PEM block of text whose label is accepted by `accept`, parsed.
 * Fails with EINVAL (naming what was found) when there is none or it does not
 * parse. Encrypted keys are refused rather than prompting for a passphrase.
 * The caller frees the key with EVP_PKEY_free. */
EVP_PKEY *kr_crypto_load_key(const char *text, size_t len, int accept, kr_crypto_err *err);

/* Every CERTIFICATE block of text, in order; blocks with other labels are
 * skipped. `what` names the input in messages ("roots"). Fails with EINVAL if
 * a certificate does not parse or there is none. Free with
 * sk_X509_pop_free(sk, X509_free). */
STACK_OF(X509) *kr_crypto_load_certs(const char *text, size_t len, const char *what, kr_crypto_err *err);

/* Move the contents of a memory BIO into out (NUL-terminated), then free bio. */
int kr_crypto_bio_bytes(BIO *bio, kr_bytes *out, kr_crypto_err *err);

/* Copy n bytes into a fresh kr_bytes. */
int kr_crypto_bytes_dup(const void *data, size_t n, kr_bytes *out, kr_crypto_err *err);

#endif
