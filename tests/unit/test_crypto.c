/* Unit tests of the plain-C crypto layer: crypto.h, eckey.h, x509.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "crypto.h"
#include "eckey.h"
#include "x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A SEC1 P-256 key made with `openssl ecparam -genkey`, with its scalar and
 * compressed public point as printed by `openssl ec`. */
static const char SEC1_PEM[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBykHaRGeAobtVI0eIIk9On4hCzVdQJQjpQ3ekomSmC2oAoGCCqGSM49\n"
    "AwEHoUQDQgAEXV/FZowpez5XOuw7u9xlUys2bZ6O07oI2pQmXStrc6y+KZA6eh3x\n"
    "Rrb0ecRAPwFLjVIo+Jm0d1UpYPPscUCvCg==\n"
    "-----END EC PRIVATE KEY-----\n";
static const char SEC1_PRIV[] = "1ca41da446780a1bb55234788224f4e9f8842cd57502508e94377a4a264a60b6";
static const char SEC1_PUB[] = "025d5fc5668c297b3e573aec3bbbdc65532b366d9e8ed3ba08da94265d2b6b73ac";

static const char ENCRYPTED_PEM[] =
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
    "MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhh3lZ49tI6FQICCAAw\n"
    "DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEEApkIbbgnVCcB8KEUVGK00AEgZDr\n"
    "Y6l4IznqC7Nm691IYDt3jM+CLpWIs9QYMghPma/a9YFTbNxZXJdsEHHhIZNdqD9E\n"
    "qwwU/9SiPS4KiMxh1ipZrO0P7jjngY4hG2H4qVd/hCNousUJRJD/3rhxcr97TVjj\n"
    "fgOgzkmjJBQhxuriJ1s+yFMDv9BFUeuZjBCqvt3Q7NrVYLrSE8+Xds5CXHN96i4=\n"
    "-----END ENCRYPTED PRIVATE KEY-----\n";

static const char ED25519_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIL4+DeGLnG0Rc8Ytx8fImMmc6APqG838rt8/poI+LyAy\n"
    "-----END PRIVATE KEY-----\n";

/* Hex of n bytes, in a static buffer good until the next call. */
static const char *hex(const unsigned char *p, size_t n)
{
    static char buf[2 * 1024 + 1];
    assert_true(n <= 1024);
    kr_crypto_hex(p, n, buf);
    return buf;
}

/* Decode hex that may contain spaces (for readable constants). */
static size_t unhex(const char *s, unsigned char *out)
{
    char clean[1024];
    size_t n = 0;
    for (; *s; s++)
        if (*s != ' ') clean[n++] = *s;
    kr_crypto_err err;
    assert_int_equal(kr_crypto_unhex(clean, n, out, &err), 0);
    return n / 2;
}

static char *keygen(const char *curve)
{
    kr_bytes pem;
    kr_crypto_err err;
    assert_int_equal(kr_crypto_keygen(curve, &pem, &err), 0);
    return (char *)pem.data;
}

/* --- crypto.h ------------------------------------------------------------ */

static void test_hex(void **state)
{
    (void)state;
    const unsigned char in[] = {0x00, 0xff, 0x10, 0xab};
    assert_string_equal(hex(in, sizeof in), "00ff10ab");
    assert_string_equal(hex(in, 0), "");

    unsigned char out[4];
    kr_crypto_err err;
    assert_int_equal(kr_crypto_unhex("00FF10aB", 8, out, &err), 0);
    assert_memory_equal(out, in, 4);
    assert_int_equal(kr_crypto_unhex("abc", 3, out, &err), -1);
    assert_string_equal(err.code, "EINVAL");
    assert_non_null(strstr(err.msg, "odd"));
    assert_int_equal(kr_crypto_unhex("0g", 2, out, &err), -1);
    assert_string_equal(err.msg, "invalid hex digit at position 2");
    assert_int_equal(kr_crypto_unhex("0x00", 4, out, &err), -1);
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 section 10. */
    static const char *const vec[][2] = {{"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    kr_crypto_err err;
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        kr_bytes enc, dec;
        assert_int_equal(kr_crypto_base64((const unsigned char *)vec[i][0], strlen(vec[i][0]), &enc), 0);
        assert_string_equal((char *)enc.data, vec[i][1]);
        assert_int_equal(kr_crypto_unbase64((char *)enc.data, enc.len, &dec, &err), 0);
        assert_int_equal(dec.len, strlen(vec[i][0]));
        assert_memory_equal(dec.data, vec[i][0], dec.len);
        kr_bytes_free(&enc);
        kr_bytes_free(&dec);
    }
    kr_bytes dec;
    assert_int_equal(kr_crypto_unbase64("Zm9vYg", 6, &dec, &err), 0); /* unpadded */
    assert_int_equal(dec.len, 4);
    kr_bytes_free(&dec);
    assert_int_equal(kr_crypto_unbase64(" Zm9v\r\nYmE=\n", 12, &dec, &err), 0);
    assert_memory_equal(dec.data, "fooba", 5);
    kr_bytes_free(&dec);

    static const char *const bad[] = {"Z", "Zg=", "Zm9v=", "Zm-v", "Zg==Zg==", "Zm9vY", "Zg===", "@@@@"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dec.data = NULL;
        assert_int_equal(kr_crypto_unbase64(bad[i], strlen(bad[i]), &dec, &err), -1);
        assert_string_equal(err.code, "EINVAL");
        assert_null(dec.data);
    }
}

static void test_digests(void **state)
{
    (void)state;
    unsigned char md[KR_CRYPTO_MAX_DIGEST];
    size_t n = 0;
    kr_crypto_err err;
    assert_int_equal(kr_crypto_digest("SHA256", "abc", 3, md, &n, &err), 0);
    assert_string_equal(hex(md, n), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(kr_crypto_digest("SHA384", "abc", 3, md, &n, &err), 0);
    assert_string_equal(hex(md, n), "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163"
                                    "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
    assert_int_equal(kr_crypto_digest("SHA512", "abc", 3, md, &n, &err), 0);
    assert_string_equal(hex(md, n), "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                                    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    assert_int_equal(kr_crypto_digest("NOPE", "abc", 3, md, &n, &err), -1);
}

static void test_hmac_and_random(void **state)
{
    (void)state;
    unsigned char mac[32], r1[32], r2[32];
    kr_crypto_err err;
    /* RFC 4231 test case 2. */
    const char *data = "what do ya want for nothing?";
    assert_int_equal(kr_crypto_hmac_sha256("Jefe", 4, data, strlen(data), mac, &err), 0);
    assert_string_equal(hex(mac, 32), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_int_equal(kr_crypto_hmac_sha256("", 0, "", 0, mac, &err), 0);
    assert_string_equal(hex(mac, 32), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");

    assert_int_equal(kr_crypto_random(r1, sizeof r1, &err), 0);
    assert_int_equal(kr_crypto_random(r2, sizeof r2, &err), 0);
    assert_memory_not_equal(r1, r2, sizeof r1);
    assert_int_equal(kr_crypto_random(r1, 0, &err), 0);
}

static void test_split_pem(void **state)
{
    (void)state;
    const char *text = "junk\n-----BEGIN A-----\nAAAA\n-----END A-----\nmiddle"
                       "-----BEGIN B-----\nBB\n-----END C-----\n"      /* wrong END: skipped */
                       "-----BEGIN CERTIFICATE-----\nCC\n-----END CERTIFICATE-----"
                       "-----BEGIN D-----\nnever ends\n";
    kr_pem_block *b;
    size_t n;
    assert_int_equal(kr_crypto_split_pem(text, strlen(text), &b, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(b[0].label_len, 1);
    assert_memory_equal(b[0].label, "A", 1);
    assert_int_equal(b[0].len, strlen("-----BEGIN A-----\nAAAA\n-----END A-----"));
    assert_memory_equal(b[0].text, "-----BEGIN A-----", 17);
    assert_memory_equal(b[1].label, "CERTIFICATE", 11);
    assert_memory_equal(b[1].text + b[1].len - 5, "-----", 5);
    free(b);

    assert_int_equal(kr_crypto_split_pem("", 0, &b, &n), 0);
    assert_int_equal(n, 0);
    free(b);
}

/* --- eckey.h ------------------------------------------------------------- */

static void test_keygen_and_info(void **state)
{
    (void)state;
    assert_true(kr_crypto_curve_supported("P-256"));
    assert_true(kr_crypto_curve_supported("secp256k1"));
    assert_false(kr_crypto_curve_supported("P-384"));

    const char *curves[] = {"P-256", "secp256k1"};
    for (int i = 0; i < 2; i++) {
        char *pem = keygen(curves[i]);
        assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
        kr_key_info info, pub;
        kr_crypto_err err;
        assert_int_equal(kr_crypto_key_info(pem, strlen(pem), &info, &err), 0);
        assert_string_equal(info.curve, curves[i]);
        assert_true(info.has_private);
        assert_int_equal(info.private_len, 32);
        assert_int_equal(info.compressed_len, 33);
        assert_true(info.compressed[0] == 2 || info.compressed[0] == 3);
        assert_non_null(strstr((char *)info.public_pem.data, "-----BEGIN PUBLIC KEY-----"));

        /* The public half describes the same point and has no scalar. */
        assert_int_equal(kr_crypto_key_info((char *)info.public_pem.data, info.public_pem.len, &pub, &err), 0);
        assert_false(pub.has_private);
        assert_memory_equal(pub.compressed, info.compressed, 33);
        assert_int_equal(pub.public_der.len, info.public_der.len);
        assert_memory_equal(pub.public_der.data, info.public_der.data, pub.public_der.len);

        /* Re-importing the scalar gives the same key. */
        kr_bytes again;
        kr_key_info info2;
        assert_int_equal(kr_crypto_key_from_raw(curves[i], info.private_raw, 32, &again, &err), 0);
        assert_int_equal(kr_crypto_key_info((char *)again.data, again.len, &info2, &err), 0);
        assert_memory_equal(info2.compressed, info.compressed, 33);
        kr_key_info_free(&info2);
        kr_bytes_free(&again);
        kr_key_info_free(&pub);
        kr_key_info_free(&info);
        free(pem);
    }
}

static void test_key_from_raw_vectors(void **state)
{
    (void)state;
    unsigned char one[32] = {0};
    one[31] = 1;
    /* Scalar 1 is the generator G: its compressed form is a published constant. */
    const char *expect[][2] = {
        {"P-256", "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"},
        {"secp256k1", "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"}};
    kr_crypto_err err;
    for (int i = 0; i < 2; i++) {
        kr_bytes pem;
        kr_key_info info;
        assert_int_equal(kr_crypto_key_from_raw(expect[i][0], one, 32, &pem, &err), 0);
        assert_non_null(strstr((char *)pem.data, "-----BEGIN PRIVATE KEY-----"));
        assert_int_equal(kr_crypto_key_info((char *)pem.data, pem.len, &info, &err), 0);
        assert_string_equal(hex(info.compressed, info.compressed_len), expect[i][1]);
        assert_memory_equal(info.private_raw, one, 32);
        kr_key_info_free(&info);
        kr_bytes_free(&pem);
    }

    unsigned char zero[32] = {0}, order[32];
    unhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", order);
    kr_bytes pem = {0};
    assert_int_equal(kr_crypto_key_from_raw("P-256", zero, 32, &pem, &err), -1);
    assert_string_equal(err.code, "EINVAL");
    assert_int_equal(kr_crypto_key_from_raw("P-256", order, 32, &pem, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(kr_crypto_key_from_raw("P-256", one, 31, &pem, &err), -1);
    assert_non_null(strstr(err.msg, "32 bytes"));
    assert_int_equal(kr_crypto_key_from_raw("P-999", one, 32, &pem, &err), -1);
    assert_null(pem.data);
}

static void test_key_info_sec1_and_bad_input(void **state)
{
    (void)state;
    kr_key_info info;
    kr_crypto_err err;
    unsigned char priv[32];
    unhex(SEC1_PRIV, priv);
    assert_int_equal(kr_crypto_key_info(SEC1_PEM, strlen(SEC1_PEM), &info, &err), 0);
    assert_string_equal(info.curve, "P-256");
    assert_memory_equal(info.private_raw, priv, 32);
    assert_string_equal(hex(info.compressed, 33), SEC1_PUB);
    kr_key_info_free(&info);

    const char *bad[] = {"", "garbage", ENCRYPTED_PEM, ED25519_PEM,
                         "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                         "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kr_crypto_key_info(bad[i], strlen(bad[i]), &info, &err), -1);
        assert_string_equal(err.code, "EINVAL");
    }
    assert_int_equal(kr_crypto_key_info(ED25519_PEM, strlen(ED25519_PEM), &info, &err), -1);
    assert_non_null(strstr(err.msg, "not an EC key"));
    assert_int_equal(kr_crypto_key_info(ENCRYPTED_PEM, strlen(ENCRYPTED_PEM), &info, &err), -1);
    assert_non_null(strstr(err.msg, "encrypted"));
}

static void test_sign_verify(void **state)
{
    (void)state;
    char *pem = keygen("secp256k1");
    kr_bytes sig;
    kr_key_info info;
    kr_crypto_err err;
    assert_int_equal(kr_crypto_sign(pem, strlen(pem), "data", 4, &sig, &err), 0);
    assert_int_equal(sig.data[0], 0x30); /* DER SEQUENCE */
    assert_int_equal(kr_crypto_verify(pem, strlen(pem), "data", 4, sig.data, sig.len, &err), 1);
    assert_int_equal(kr_crypto_key_info(pem, strlen(pem), &info, &err), 0);
    const char *pub = (char *)info.public_pem.data;
    assert_int_equal(kr_crypto_verify(pub, strlen(pub), "data", 4, sig.data, sig.len, &err), 1);
    assert_int_equal(kr_crypto_verify(pub, strlen(pub), "datx", 4, sig.data, sig.len, &err), 0);
    assert_int_equal(kr_crypto_verify(pub, strlen(pub), "data", 4, (const unsigned char *)"junk", 4, &err), 0);
    assert_int_equal(kr_crypto_verify(SEC1_PEM, strlen(SEC1_PEM), "data", 4, sig.data, sig.len, &err), 0);
    assert_int_equal(kr_crypto_verify("nope", 4, "data", 4, sig.data, sig.len, &err), -1);
    assert_int_equal(kr_crypto_sign(pub, strlen(pub), "data", 4, &sig, &err), -1); /* sig untouched on failure */
    kr_key_info_free(&info);
    kr_bytes_free(&sig);
    free(pem);
}

/* --- x509.h -------------------------------------------------------------- */

static void test_parse_dn(void **state)
{
    (void)state;
    kr_dn_entry e[4];
    size_t n;
    kr_crypto_err err;
    char a[] = "O=Dstack,CN=Dstack KMS CA";
    assert_int_equal(kr_crypto_parse_dn(a, e, 4, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].field, "O");
    assert_string_equal(e[0].value, "Dstack");
    assert_string_equal(e[1].field, "CN");
    assert_string_equal(e[1].value, "Dstack KMS CA");

    char b[] = " CN = a\\,b\\\\c , , OU=x=y,";
    assert_int_equal(kr_crypto_parse_dn(b, e, 4, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].field, "CN");
    assert_string_equal(e[0].value, "a,b\\c");
    assert_string_equal(e[1].value, "x=y");

    char c[] = "";
    assert_int_equal(kr_crypto_parse_dn(c, e, 4, &n, &err), 0);
    assert_int_equal(n, 0);
    char d[] = "CN=x,nonsense";
    assert_int_equal(kr_crypto_parse_dn(d, e, 4, &n, &err), -1);
    assert_non_null(strstr(err.msg, "'nonsense' is not of the form field=value"));
    char f[] = "=x";
    assert_int_equal(kr_crypto_parse_dn(f, e, 4, &n, &err), -1);
    char g[] = "A=1,B=2,C=3";
    assert_int_equal(kr_crypto_parse_dn(g, e, 2, &n, &err), -1);

    assert_true(kr_crypto_dn_field_known("CN"));
    assert_true(kr_crypto_dn_field_known("organizationName"));
    assert_true(kr_crypto_dn_field_known("1.2.3.4"));
    assert_false(kr_crypto_dn_field_known("XX"));
    assert_int_equal(kr_crypto_key_usage_flag("keyCertSign"), KR_KU_KEY_CERT_SIGN);
    assert_int_equal(kr_crypto_key_usage_flag("nope"), 0);
}

typedef struct {
    char *ca_key, *ca, *leaf_key, *leaf;
} pki;

static char *issue(const kr_cert_spec *s)
{
    kr_bytes pem;
    kr_crypto_err err;
    int rc = kr_crypto_cert(s, &pem, &err);
    if (rc != 0) fail_msg("kr_crypto_cert: %s", err.msg);
    return (char *)pem.data;
}

static int setup_pki(void **state)
{
    pki *p = calloc(1, sizeof *p);
    p->ca_key = keygen("P-256");
    p->leaf_key = keygen("secp256k1");
    kr_dn_entry ca_name[] = {{"O", "Dstack"}, {"CN", "Test CA"}};
    kr_cert_spec ca = {.key_pem = p->ca_key, .key_len = strlen(p->ca_key), .subject = ca_name, .n_subject = 2,
                       .ca = 1, .pathlen = 1, .lifetime = 86400, .key_usage = KR_KU_KEY_CERT_SIGN | KR_KU_CRL_SIGN};
    p->ca = issue(&ca);
    kr_dn_entry leaf_name[] = {{"CN", "leaf.example"}};
    const char *san[] = {"DNS:leaf.example", "IP:127.0.0.1", "10.0.0.1", "IP:::1", "other.example"};
    kr_ext_spec ext[] = {{"1.3.6.1.4.1.62397.1.1", (const unsigned char *)"quote\0bytes", 11, 0}};
    kr_cert_spec leaf = {.key_pem = p->leaf_key, .key_len = strlen(p->leaf_key), .subject = leaf_name,
                         .n_subject = 1, .issuer_cert_pem = p->ca, .issuer_cert_len = strlen(p->ca),
                         .issuer_key_pem = p->ca_key, .issuer_key_len = strlen(p->ca_key), .pathlen = -1,
                         .san = san, .n_san = 5, .lifetime = 3600, .not_before_offset = -60, .has_serial = 1,
                         .serial = 258, .ext = ext, .n_ext = 1};
    p->leaf = issue(&leaf);
    *state = p;
    return 0;
}

static int teardown_pki(void **state)
{
    pki *p = *state;
    free(p->ca_key);
    free(p->ca);
    free(p->leaf_key);
    free(p->leaf);
    free(p);
    return 0;
}

static const unsigned char *find_ext(const kr_cert_info *c, const char *oid, size_t *len)
{
    for (size_t i = 0; i < c->n_ext; i++)
        if (strcmp(c->ext[i].oid, oid) == 0) {
            *len = c->ext[i].value.len;
            return c->ext[i].value.data;
        }
    return NULL;
}

static void test_cert_roundtrip(void **state)
{
    pki *p = *state;
    kr_cert_info c;
    kr_crypto_err err;
    assert_int_equal(kr_crypto_parse_cert(p->leaf, strlen(p->leaf), &c, &err), 0);
    assert_string_equal(c.subject, "CN=leaf.example");
    assert_string_equal(c.issuer, "O=Dstack, CN=Test CA");
    assert_int_equal(c.n_issuer_attrs, 2);
    assert_string_equal(c.issuer_attrs[1].name, "CN");
    assert_string_equal(c.issuer_attrs[1].value, "Test CA");
    assert_int_equal(c.n_san, 5);
    assert_string_equal(c.san[0], "DNS:leaf.example");
    assert_string_equal(c.san[1], "IP:127.0.0.1");
    assert_string_equal(c.san[2], "IP:10.0.0.1");
    assert_string_equal(c.san[3], "IP:::1");
    assert_string_equal(c.san[4], "DNS:other.example");
    size_t len = 0;
    const unsigned char *v = find_ext(&c, "1.3.6.1.4.1.62397.1.1", &len);
    assert_non_null(v);
    assert_int_equal(len, 11);
    assert_memory_equal(v, "quote\0bytes", 11);
    assert_non_null(find_ext(&c, "2.5.29.35", &len)); /* authorityKeyIdentifier */
    assert_null(find_ext(&c, "2.5.29.19", &len));     /* no basicConstraints on a leaf */
    assert_string_equal(c.serial, "0102");
    assert_false(c.is_ca);
    assert_int_equal(c.pathlen, -1);
    int64_t now = (int64_t)time(NULL);
    assert_true(c.not_before <= now - 55 && c.not_before >= now - 65);
    assert_int_equal(c.not_after - c.not_before, 3600);
    assert_int_equal(strlen(c.fingerprint), 64);

    /* The leaf's key is in the certificate. */
    kr_key_info info;
    assert_int_equal(kr_crypto_key_info(p->leaf_key, strlen(p->leaf_key), &info, &err), 0);
    assert_int_equal(c.spki_der.len, info.public_der.len);
    assert_memory_equal(c.spki_der.data, info.public_der.data, info.public_der.len);
    assert_string_equal((char *)c.spki_pem.data, (char *)info.public_pem.data);
    kr_key_info_free(&info);

    /* DER input reads back the same certificate. */
    kr_cert_info d;
    assert_int_equal(kr_crypto_parse_cert((char *)c.der.data, c.der.len, &d, &err), 0);
    assert_string_equal(d.fingerprint, c.fingerprint);
    kr_cert_info_free(&d);
    kr_cert_info_free(&c);

    assert_int_equal(kr_crypto_parse_cert(p->ca, strlen(p->ca), &c, &err), 0);
    assert_true(c.is_ca);
    assert_int_equal(c.pathlen, 1);
    assert_string_equal(c.subject, c.issuer);
    assert_non_null(find_ext(&c, "2.5.29.14", &len)); /* subjectKeyIdentifier */
    assert_int_equal(len, 20);
    kr_cert_info_free(&c);
}

static void test_parse_cert_bad(void **state)
{
    (void)state;
    kr_cert_info c;
    kr_crypto_err err;
    const char *bad[] = {"", "garbage", "\x30\x03\x02\x01\x01", SEC1_PEM,
                         "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kr_crypto_parse_cert(bad[i], strlen(bad[i]), &c, &err), -1);
        assert_string_equal(err.code, "EINVAL");
    }
}

static void test_verify_chain(void **state)
{
    pki *p = *state;
    kr_crypto_err err;
    size_t ll = strlen(p->leaf), cl = strlen(p->ca);
    assert_int_equal(kr_crypto_verify_chain(p->leaf, ll, p->ca, cl, NULL, 0, 0, 0, &err), 0);

    /* An unrelated CA with the same name is not the issuer. */
    char *other_key = keygen("P-256");
    kr_dn_entry name[] = {{"O", "Dstack"}, {"CN", "Test CA"}};
    kr_cert_spec spec = {.key_pem = other_key, .key_len = strlen(other_key), .subject = name, .n_subject = 2,
                         .ca = 1, .pathlen = -1, .lifetime = 86400};
    char *other = issue(&spec);
    assert_int_equal(kr_crypto_verify_chain(p->leaf, ll, other, strlen(other), NULL, 0, 0, 0, &err), -1);
    assert_string_equal(err.code, "EVERIFY");
    assert_string_equal(err.msg, "unable to get local issuer certificate");

    /* Several roots in one bundle: one of them matches. */
    size_t bl = strlen(other) + cl;
    char *bundle = malloc(bl + 1);
    snprintf(bundle, bl + 1, "%s%s", other, p->ca);
    assert_int_equal(kr_crypto_verify_chain(p->leaf, ll, bundle, bl, NULL, 0, 0, 0, &err), 0);

    int64_t now = (int64_t)time(NULL);
    assert_int_equal(kr_crypto_verify_chain(p->leaf, ll, p->ca, cl, NULL, 0, 1, now + 7200, &err), -1);
    assert_string_equal(err.msg, "certificate has expired");
    assert_int_equal(kr_crypto_verify_chain(p->leaf, ll, p->ca, cl, NULL, 0, 1, now - 3600, &err), -1);
    assert_string_equal(err.msg, "certificate is not yet valid");

    assert_int_equal(kr_crypto_verify_chain(p->leaf, ll, "nothing", 7, NULL, 0, 0, 0, &err), -1);
    assert_string_equal(err.code, "EINVAL");
    assert_string_equal(err.msg, "roots: no certificate found");
    assert_int_equal(kr_crypto_verify_chain("x", 1, p->ca, cl, NULL, 0, 0, 0, &err), -1);
    assert_string_equal(err.code, "EINVAL");
    free(bundle);
    free(other);
    free(other_key);
}

static void test_intermediate_chain(void **state)
{
    pki *p = *state;
    kr_crypto_err err;
    char *ikey = keygen("P-256"), *lkey = keygen("P-256");
    kr_dn_entry iname[] = {{"CN", "Intermediate"}}, lname[] = {{"CN", "deep"}};
    kr_cert_spec is = {.key_pem = ikey, .key_len = strlen(ikey), .subject = iname, .n_subject = 1,
                       .issuer_cert_pem = p->ca, .issuer_cert_len = strlen(p->ca), .issuer_key_pem = p->ca_key,
                       .issuer_key_len = strlen(p->ca_key), .ca = 1, .pathlen = 0, .lifetime = 86400};
    char *inter = issue(&is);
    kr_cert_spec ls = {.key_pem = lkey, .key_len = strlen(lkey), .subject = lname, .n_subject = 1,
                       .issuer_cert_pem = inter, .issuer_cert_len = strlen(inter), .issuer_key_pem = ikey,
                       .issuer_key_len = strlen(ikey), .pathlen = -1, .lifetime = 86400};
    char *leaf = issue(&ls);
    size_t ll = strlen(leaf), il = strlen(inter), cl = strlen(p->ca);
    assert_int_equal(kr_crypto_verify_chain(leaf, ll, p->ca, cl, NULL, 0, 0, 0, &err), -1);
    assert_string_equal(err.code, "EVERIFY");
    assert_int_equal(kr_crypto_verify_chain(leaf, ll, p->ca, cl, inter, il, 0, 0, &err), 0);
    /* Intermediates may also follow the leaf in cert_pem. */
    char *chain = malloc(ll + il + 1);
    snprintf(chain, ll + il + 1, "%s%s", leaf, inter);
    assert_int_equal(kr_crypto_verify_chain(chain, ll + il, p->ca, cl, NULL, 0, 0, 0, &err), 0);
    /* A pinned intermediate is an anchor on its own. */
    assert_int_equal(kr_crypto_verify_chain(leaf, ll, inter, il, NULL, 0, 0, 0, &err), 0);
    free(chain);
    free(leaf);
    free(inter);
    free(lkey);
    free(ikey);
}

static void test_cert_errors(void **state)
{
    pki *p = *state;
    kr_crypto_err err;
    kr_bytes pem = {0};
    kr_dn_entry name[] = {{"CN", "x"}};
    kr_cert_spec base = {.key_pem = p->leaf_key, .key_len = strlen(p->leaf_key), .subject = name, .n_subject = 1,
                         .pathlen = -1, .lifetime = 86400};

    kr_cert_spec s = base;
    s.issuer_cert_pem = p->ca;
    s.issuer_cert_len = strlen(p->ca);
    s.issuer_key_pem = p->leaf_key; /* not the CA's key */
    s.issuer_key_len = strlen(p->leaf_key);
    assert_int_equal(kr_crypto_cert(&s, &pem, &err), -1);
    assert_non_null(strstr(err.msg, "issuer_key does not match"));

    const char *bad_ip[] = {"IP:1.2.3"};
    s = base;
    s.san = bad_ip;
    s.n_san = 1;
    assert_int_equal(kr_crypto_cert(&s, &pem, &err), -1);
    assert_string_equal(err.msg, "san: '1.2.3' is not an IP address");

    kr_ext_spec bad_oid[] = {{"not.an.oid", (const unsigned char *)"x", 1, 0}};
    s = base;
    s.ext = bad_oid;
    s.n_ext = 1;
    assert_int_equal(kr_crypto_cert(&s, &pem, &err), -1);
    assert_non_null(strstr(err.msg, "invalid OID"));

    kr_dn_entry bad_c[] = {{"C", "USA"}};
    s = base;
    s.subject = bad_c;
    assert_int_equal(kr_crypto_cert(&s, &pem, &err), -1);
    assert_non_null(strstr(err.msg, "C='USA'"));

    s = base;
    s.key_pem = "junk";
    s.key_len = 4;
    assert_int_equal(kr_crypto_cert(&s, &pem, &err), -1);
    assert_non_null(strstr(err.msg, "key: "));
    assert_string_equal(err.code, "EINVAL");
    assert_null(pem.data);

    /* A public key suffices when an issuer signs, not when self-signing. */
    kr_key_info info;
    assert_int_equal(kr_crypto_key_info(p->leaf_key, strlen(p->leaf_key), &info, &err), 0);
    s = base;
    s.key_pem = (char *)info.public_pem.data;
    s.key_len = info.public_pem.len;
    assert_int_equal(kr_crypto_cert(&s, &pem, &err), -1);
    s.issuer_cert_pem = p->ca;
    s.issuer_cert_len = strlen(p->ca);
    s.issuer_key_pem = p->ca_key;
    s.issuer_key_len = strlen(p->ca_key);
    char *cert = issue(&s);
    free(cert);
    kr_key_info_free(&info);
}

int main(void)
{
    const struct CMUnitTest basics[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_digests),
        cmocka_unit_test(test_hmac_and_random),
        cmocka_unit_test(test_split_pem),
        cmocka_unit_test(test_keygen_and_info),
        cmocka_unit_test(test_key_from_raw_vectors),
        cmocka_unit_test(test_key_info_sec1_and_bad_input),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_parse_dn),
        cmocka_unit_test(test_parse_cert_bad),
    };
    const struct CMUnitTest certs[] = {
        cmocka_unit_test(test_cert_roundtrip),
        cmocka_unit_test(test_verify_chain),
        cmocka_unit_test(test_intermediate_chain),
        cmocka_unit_test(test_cert_errors),
    };
    int failed = cmocka_run_group_tests_name("crypto", basics, NULL, NULL);
    failed += cmocka_run_group_tests_name("x509", certs, setup_pki, teardown_pki);
    return failed ? 1 : 0;
}
