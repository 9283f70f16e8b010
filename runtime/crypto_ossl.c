/* Reading keys and certificates from PEM text; memory BIO helpers. */
#include "crypto_ossl.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Without a callback OpenSSL would prompt on the terminal for the passphrase
 * of an encrypted key; a runbook must fail instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

static int label_is(const kr_pem_block *b, const char *label)
{
    return b->label_len == strlen(label) && memcmp(b->label, label, b->label_len) == 0;
}

static int accepted(const kr_pem_block *b, int accept)
{
    if (accept & KR_LOAD_PRIVATE)
        if (label_is(b, "PRIVATE KEY") || label_is(b, "EC PRIVATE KEY") || label_is(b, "ENCRYPTED PRIVATE KEY"))
            return KR_LOAD_PRIVATE;
    if ((accept & KR_LOAD_PUBLIC) && label_is(b, "PUBLIC KEY")) return KR_LOAD_PUBLIC;
    if ((accept & KR_LOAD_CERT) && label_is(b, "CERTIFICATE")) return KR_LOAD_CERT;
    return 0;
}

static const char *wanted(int accept)
{
    switch (accept) {
    case KR_LOAD_PRIVATE: return "a private key PEM";
    case KR_LOAD_PRIVATE | KR_LOAD_PUBLIC: return "a private or public key PEM";
    default: return "a key or certificate PEM";
    }
}

static BIO *block_bio(const kr_pem_block *b)
{
    return BIO_new_mem_buf(b->text, b->len > INT_MAX ? INT_MAX : (int)b->len);
}

EVP_PKEY *kr_crypto_load_key(const char *text, size_t len, int accept, kr_crypto_err *err)
{
    kr_pem_block *blocks;
    size_t n;
    if (kr_crypto_split_pem(text, len, &blocks, &n) != 0) {
        kr_crypto_fail(err, "ENOMEM", "out of memory");
        return NULL;
    }
    size_t i = 0;
    int kind = 0;
    while (i < n && !(kind = accepted(&blocks[i], accept))) i++;
    if (i == n) {
        if (n) kr_crypto_fail(err, "EINVAL", "expected %s, got a '%.*s' PEM block", wanted(accept),
                              (int)(blocks[0].label_len > 40 ? 40 : blocks[0].label_len), blocks[0].label);
        else kr_crypto_fail(err, "EINVAL", "expected %s, found no PEM block", wanted(accept));
        free(blocks);
        return NULL;
    }
    BIO *bio = block_bio(&blocks[i]);
    free(blocks);
    EVP_PKEY *pkey = NULL;
    const char *what = "key";
    if (bio && kind == KR_LOAD_PRIVATE) {
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        what = "private key (encrypted keys are not supported)";
    } else if (bio && kind == KR_LOAD_PUBLIC) {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        what = "public key";
    } else if (bio) {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x) pkey = X509_get_pubkey(x);
        X509_free(x);
        what = "certificate";
    }
    BIO_free(bio);
    if (!pkey) kr_crypto_fail(err, "EINVAL", "cannot parse the %s", what);
    else ERR_clear_error();
    return pkey;
}

STACK_OF(X509) *kr_crypto_load_certs(const char *text, size_t len, const char *what, kr_crypto_err *err)
{
    kr_pem_block *blocks;
    size_t n;
    if (kr_crypto_split_pem(text, len, &blocks, &n) != 0) {
        kr_crypto_fail(err, "ENOMEM", "out of memory");
        return NULL;
    }
    STACK_OF(X509) *sk = sk_X509_new_null();
    for (size_t i = 0; sk && i < n; i++) {
        if (!label_is(&blocks[i], "CERTIFICATE")) continue;
        BIO *bio = block_bio(&blocks[i]);
        X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!x || !sk_X509_push(sk, x)) {
            size_t nth = (size_t)sk_X509_num(sk) + 1;
            X509_free(x);
            sk_X509_pop_free(sk, X509_free);
            free(blocks);
            kr_crypto_fail(err, "EINVAL", "%s: cannot parse certificate #%zu", what, nth);
            return NULL;
        }
    }
    free(blocks);
    if (!sk || sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        kr_crypto_fail(err, "EINVAL", "%s: no certificate found", what);
        return NULL;
    }
    return sk;
}

int kr_crypto_bytes_dup(const void *data, size_t n, kr_bytes *out, kr_crypto_err *err)
{
    out->data = malloc(n + 1);
    if (!out->data) return kr_crypto_fail(err, "ENOMEM", "out of memory");
    if (n) memcpy(out->data, data, n);
    out->data[n] = '\0';
    out->len = n;
    return 0;
}

int kr_crypto_bio_bytes(BIO *bio, kr_bytes *out, kr_crypto_err *err)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    int rc = n >= 0 ? kr_crypto_bytes_dup(p, (size_t)n, out, err) : kr_crypto_fail(err, "EIO", "bio error");
    BIO_free(bio);
    return rc;
}
