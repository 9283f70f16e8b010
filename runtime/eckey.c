/* EC keys over EVP_PKEY: generate, import a raw scalar, inspect, sign, verify. */
#include "eckey.h"
#include "crypto_ossl.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;  /* ours */
    const char *group; /* OpenSSL's group name */
    int nid;
    int creatable;
} curve_def;

static const curve_def CURVES[] = {
    {"P-256", "prime256v1", NID_X9_62_prime256v1, 1},
    {"secp256k1", "secp256k1", NID_secp256k1, 1},
    {"P-384", "secp384r1", NID_secp384r1, 0},
    {"P-521", "secp521r1", NID_secp521r1, 0},
    {NULL, NULL, 0, 0}};

static const curve_def *creatable(const char *curve)
{
    for (const curve_def *c = CURVES; c->name; c++)
        if (c->creatable && strcmp(c->name, curve) == 0) return c;
    return NULL;
}

int kr_crypto_curve_supported(const char *curve)
{
    return creatable(curve) != NULL;
}

static int private_pem(EVP_PKEY *pkey, kr_bytes *pem, kr_crypto_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)) {
        BIO_free(bio);
        return kr_crypto_fail(err, "EINVAL", "cannot encode the private key");
    }
    return kr_crypto_bio_bytes(bio, pem, err);
}

int kr_crypto_keygen(const char *curve, kr_bytes *pem, kr_crypto_err *err)
{
    const curve_def *c = creatable(curve);
    if (!c) return kr_crypto_fail(err, "EINVAL", "unsupported curve '%s'", curve);
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", c->group);
    if (!pkey) return kr_crypto_fail(err, "EINVAL", "key generation on %s failed", curve);
    int rc = private_pem(pkey, pem, err);
    EVP_PKEY_free(pkey);
    return rc;
}

/* The uncompressed public point d*G, written into pub (65 bytes for 256-bit curves). */
static int derive_public(const curve_def *c, const BIGNUM *d, unsigned char *pub, size_t cap, size_t *publen,
                         kr_crypto_err *err)
{
    EC_GROUP *group = EC_GROUP_new_by_curve_name(c->nid);
    EC_POINT *pt = group ? EC_POINT_new(group) : NULL;
    BN_CTX *bnctx = BN_CTX_new();
    int rc = -1;
    if (!group || !pt || !bnctx) {
        kr_crypto_fail(err, "ENOMEM", "out of memory");
        goto done;
    }
    if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(group)) >= 0) {
        kr_crypto_fail(err, "EINVAL", "scalar out of range: must be in [1, order of %s)", c->name);
        goto done;
    }
    if (!EC_POINT_mul(group, pt, d, NULL, NULL, bnctx) ||
        !(*publen = EC_POINT_point2oct(group, pt, POINT_CONVERSION_UNCOMPRESSED, pub, cap, bnctx))) {
        kr_crypto_fail(err, "EINVAL", "cannot derive the public key");
        goto done;
    }
    rc = 0;
done:
    BN_CTX_free(bnctx);
    EC_POINT_free(pt);
    EC_GROUP_free(group);
    return rc;
}

int kr_crypto_key_from_raw(const char *curve, const unsigned char *raw, size_t len, kr_bytes *pem,
                           kr_crypto_err *err)
{
    const curve_def *c = creatable(curve);
    if (!c) return kr_crypto_fail(err, "EINVAL", "unsupported curve '%s'", curve);
    if (len != 32) return kr_crypto_fail(err, "EINVAL", "a %s scalar is 32 bytes, got %zu", curve, len);

    unsigned char pub[2 * KR_EC_MAX_SCALAR + 1];
    size_t publen = 0;
    BIGNUM *d = BN_bin2bn(raw, (int)len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    int rc = -1;
    if (!d || !bld) {
        kr_crypto_fail(err, "ENOMEM", "out of memory");
        goto done;
    }
    if (derive_public(c, d, pub, sizeof pub, &publen, err) != 0) goto done;
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->group, 0) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, publen) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)) || !(ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) ||
        EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0) {
        kr_crypto_fail(err, "EINVAL", "cannot build a %s key from the scalar", curve);
        goto done;
    }
    rc = private_pem(pkey, pem, err);
done:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    return rc;
}

/* The EC key's curve under our naming, or fail for non-EC and unnamed curves. */
static int curve_of(EVP_PKEY *pkey, char *name, size_t cap, kr_crypto_err *err)
{
    char group[64];
    size_t glen = 0;
    if (!EVP_PKEY_is_a(pkey, "EC")) return kr_crypto_fail(err, "EINVAL", "not an EC key (%s)", EVP_PKEY_get0_type_name(pkey));
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen))
        return kr_crypto_fail(err, "EINVAL", "EC key without a named curve");
    const char *ours = group;
    for (const curve_def *c = CURVES; c->name; c++)
        if (strcmp(c->group, group) == 0) ours = c->name;
    if (strlen(ours) >= cap) return kr_crypto_fail(err, "EINVAL", "curve name too long: %s", ours);
    memcpy(name, ours, strlen(ours) + 1);
    return 0;
}

static int public_encodings(EVP_PKEY *pkey, kr_key_info *out, size_t field, kr_crypto_err *err)
{
    BIGNUM *x = NULL, *y = NULL;
    int rc = -1;
    if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) ||
        BN_bn2binpad(x, out->compressed + 1, (int)field) < 0) {
        kr_crypto_fail(err, "EINVAL", "the key has no usable public point");
        goto done;
    }
    out->compressed[0] = BN_is_odd(y) ? 0x03 : 0x02;
    out->compressed_len = field + 1;

    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pkey, &der);
    if (n <= 0) {
        kr_crypto_fail(err, "EINVAL", "cannot encode the public key");
        goto done;
    }
    rc = kr_crypto_bytes_dup(der, (size_t)n, &out->public_der, err);
    OPENSSL_free(der);
    if (rc != 0) goto done;

    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_PUBKEY(bio, pkey)) {
        BIO_free(bio);
        rc = kr_crypto_fail(err, "EINVAL", "cannot encode the public key");
        goto done;
    }
    rc = kr_crypto_bio_bytes(bio, &out->public_pem, err);
done:
    BN_free(x);
    BN_free(y);
    return rc;
}

int kr_crypto_key_info(const char *pem, size_t len, kr_key_info *out, kr_crypto_err *err)
{
    memset(out, 0, sizeof *out);
    EVP_PKEY *pkey = kr_crypto_load_key(pem, len, KR_LOAD_PRIVATE | KR_LOAD_PUBLIC, err);
    if (!pkey) return -1;
    BIGNUM *d = NULL;
    size_t field = (size_t)(EVP_PKEY_get_bits(pkey) + 7) / 8;
    int rc = curve_of(pkey, out->curve, sizeof out->curve, err);
    if (rc == 0 && field > KR_EC_MAX_SCALAR) rc = kr_crypto_fail(err, "EINVAL", "unsupported curve %s", out->curve);
    if (rc == 0 && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d)) {
        out->has_private = 1;
        out->private_len = field;
        if (BN_bn2binpad(d, out->private_raw, (int)field) < 0)
            rc = kr_crypto_fail(err, "EINVAL", "private scalar larger than the curve");
    }
    ERR_clear_error(); /* a public key has no "priv": not an error */
    if (rc == 0) rc = public_encodings(pkey, out, field, err);
    BN_clear_free(d);
    EVP_PKEY_free(pkey);
    if (rc != 0) kr_key_info_free(out);
    return rc;
}

void kr_key_info_free(kr_key_info *info)
{
    kr_bytes_free(&info->public_der);
    kr_bytes_free(&info->public_pem);
    OPENSSL_cleanse(info->private_raw, sizeof info->private_raw);
}

int kr_crypto_sign(const char *key_pem, size_t key_len, const void *data, size_t len, kr_bytes *sig,
                   kr_crypto_err *err)
{
    char curve[32];
    EVP_PKEY *pkey = kr_crypto_load_key(key_pem, key_len, KR_LOAD_PRIVATE, err);
    if (!pkey) return -1;
    EVP_MD_CTX *md = NULL;
    unsigned char *buf = NULL;
    size_t n = 0;
    int rc = curve_of(pkey, curve, sizeof curve, err);
    if (rc == 0) {
        md = EVP_MD_CTX_new();
        if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
            EVP_DigestSign(md, NULL, &n, data, len) != 1 || !(buf = OPENSSL_malloc(n)) ||
            EVP_DigestSign(md, buf, &n, data, len) != 1)
            rc = kr_crypto_fail(err, "EINVAL", "signing failed");
        else
            rc = kr_crypto_bytes_dup(buf, n, sig, err);
    }
    OPENSSL_free(buf);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return rc;
}

int kr_crypto_verify(const char *pem, size_t pem_len, const void *data, size_t len, const unsigned char *sig,
                     size_t sig_len, kr_crypto_err *err)
{
    char curve[32];
    EVP_PKEY *pkey = kr_crypto_load_key(pem, pem_len, KR_LOAD_PRIVATE | KR_LOAD_PUBLIC | KR_LOAD_CERT, err);
    if (!pkey) return -1;
    int rc = curve_of(pkey, curve, sizeof curve, err);
    if (rc == 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
            rc = kr_crypto_fail(err, "EINVAL", "cannot set up verification");
        else
            rc = EVP_DigestVerify(md, sig, sig_len, data, len) == 1;
        EVP_MD_CTX_free(md);
        ERR_clear_error(); /* a bad signature leaves decoding errors behind */
    }
    EVP_PKEY_free(pkey);
    return rc;
}
