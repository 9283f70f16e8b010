/* Byte-level helpers: randomness, digests, HMAC, hex, base64, PEM splitting. */
#include "crypto.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kr_bytes_free(kr_bytes *b)
{
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

int kr_crypto_fail(kr_crypto_err *err, const char *code, const char *fmt, ...)
{
    /* A failure we report is final: drop OpenSSL's queue so that a later,
     * unrelated call does not find stale entries in it. */
    ERR_clear_error();
    if (!err) return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int kr_crypto_random(unsigned char *out, size_t n, kr_crypto_err *err)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(out, chunk) != 1) return kr_crypto_fail(err, "EIO", "random generator failed");
        out += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

int kr_crypto_digest(const char *alg, const void *data, size_t len, unsigned char *out, size_t *outlen,
                     kr_crypto_err *err)
{
    if (!EVP_Q_digest(NULL, alg, NULL, data, len, out, outlen))
        return kr_crypto_fail(err, "EINVAL", "digest %s failed", alg);
    return 0;
}

int kr_crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32],
                          kr_crypto_err *err)
{
    /* The HMAC provider refuses a NULL key even when its length is 0. */
    static const unsigned char empty[1];
    size_t outlen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, keylen ? key : empty, keylen, data, len, out, 32, &outlen))
        return kr_crypto_fail(err, "EINVAL", "hmac failed");
    return 0;
}

void kr_crypto_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int kr_crypto_unhex(const char *in, size_t len, unsigned char *out, kr_crypto_err *err)
{
    if (len % 2) return kr_crypto_fail(err, "EINVAL", "odd number of hex digits (%zu)", len);
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval((unsigned char)in[i]), lo = hexval((unsigned char)in[i + 1]);
        if (hi < 0 || lo < 0) {
            size_t at = hi < 0 ? i : i + 1;
            return kr_crypto_fail(err, "EINVAL", "invalid hex digit at position %zu", at + 1);
        }
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int kr_crypto_base64(const unsigned char *in, size_t n, kr_bytes *out)
{
    size_t olen = (n + 2) / 3 * 4;
    unsigned char *o = malloc(olen + 1);
    if (!o) return -1;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        o[j++] = (unsigned char)B64[v >> 18 & 63];
        o[j++] = (unsigned char)B64[v >> 12 & 63];
        o[j++] = i + 1 < n ? (unsigned char)B64[v >> 6 & 63] : '=';
        o[j++] = i + 2 < n ? (unsigned char)B64[v & 63] : '=';
    }
    o[j] = '\0';
    out->data = o;
    out->len = j;
    return 0;
}

static int b64val(unsigned char c)
{
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

int kr_crypto_unbase64(const char *in, size_t len, kr_bytes *out, kr_crypto_err *err)
{
    unsigned char *o = malloc(len / 4 * 3 + 3);
    if (!o) return kr_crypto_fail(err, "ENOMEM", "out of memory");
    size_t j = 0, digits = 0, pad = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64val(c);
        if (v < 0 || pad) {
            free(o);
            return kr_crypto_fail(err, "EINVAL", pad ? "data after '=' padding at position %zu"
                                                     : "invalid base64 character at position %zu", i + 1);
        }
        acc = acc << 6 | (uint32_t)v;
        if (++digits % 4 == 0) {
            o[j++] = (unsigned char)(acc >> 16);
            o[j++] = (unsigned char)(acc >> 8);
            o[j++] = (unsigned char)acc;
            acc = 0;
        }
    }
    size_t rem = digits % 4;
    if (rem == 1 || (pad && (rem == 0 || rem + pad != 4))) {
        free(o);
        return kr_crypto_fail(err, "EINVAL", "truncated base64 input");
    }
    if (rem == 2) o[j++] = (unsigned char)(acc >> 4);
    if (rem == 3) {
        o[j++] = (unsigned char)(acc >> 10);
        o[j++] = (unsigned char)(acc >> 2);
    }
    out->data = o;
    out->len = j;
    return 0;
}

static const char *find(const char *hay, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; p + n <= end; p++)
        if (*p == *needle && memcmp(p, needle, n) == 0) return p;
    return NULL;
}

int kr_crypto_split_pem(const char *text, size_t len, kr_pem_block **blocks, size_t *n)
{
    const char *end = text + len, *p = text;
    size_t cap = 0;
    *blocks = NULL;
    *n = 0;
    while ((p = find(p, end, "-----BEGIN ")) != NULL) {
        const char *label = p + 11;
        const char *dashes = find(label, end, "-----");
        if (!dashes || memchr(label, '\n', (size_t)(dashes - label))) {
            p = label;
            continue;
        }
        size_t label_len = (size_t)(dashes - label);
        /* The END line must repeat the label exactly. */
        const char *q = dashes + 5, *stop = NULL;
        while ((q = find(q, end, "-----END ")) != NULL) {
            const char *l = q + 9;
            if ((size_t)(end - l) >= label_len + 5 && memcmp(l, label, label_len) == 0 &&
                memcmp(l + label_len, "-----", 5) == 0) {
                stop = l + label_len + 5;
                break;
            }
            q = l;
        }
        if (!stop) {
            p = label;
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            kr_pem_block *nb = realloc(*blocks, cap * sizeof **blocks);
            if (!nb) {
                free(*blocks);
                *blocks = NULL;
                *n = 0;
                return -1;
            }
            *blocks = nb;
        }
        (*blocks)[(*n)++] = (kr_pem_block){label, label_len, p, (size_t)(stop - p)};
        p = stop;
    }
    return 0;
}
