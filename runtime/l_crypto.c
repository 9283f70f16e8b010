/* kmsrun.crypto: randomness, digests, encodings, EC keys; its X.509 half is l_x509.c.
 * The mechanism is in crypto.c and eckey.c; this file only moves
 * values between Lua and those plain-C interfaces. */
#include "crypto.h"
#include "eckey.h"
#include "l_crypto.h"
#include "register.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

/* Misuse raises "crypto.<fn>: ..." at the caller's line. The module name is
 * spelled out here because the call site only knows the field name. */
int lc_misuse(lua_State *L, const char *fn, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return luaL_error(L, "crypto.%s: %s", fn, msg);
}

int lc_failed(lua_State *L, const char *fn, const kr_crypto_err *err)
{
    return kr_fail(L, err->code, "crypto.%s: %s", fn, err->msg);
}

const char *lc_arg_bytes(lua_State *L, int arg, const char *fn, const char *name, size_t *len)
{
    if (lua_type(L, arg) != LUA_TSTRING)
        lc_misuse(L, fn, "%s must be a string, got %s", name, luaL_typename(L, arg));
    return lua_tolstring(L, arg, len);
}

void lc_push_bytes(lua_State *L, kr_bytes *b)
{
    lua_pushlstring(L, (const char *)b->data, b->len);
    kr_bytes_free(b);
}

/* A field that may take several types (a subject string or table, one PEM or a
 * list), read raw like every option (register.h) and left on the stack. */
int lc_raw_field(lua_State *L, int opts, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, opts);
}

/* --- randomness, digests, encodings ------------------------------------ */

static int l_random(lua_State *L)
{
    int isint = 0;
    lua_Integer n = lua_type(L, 1) == LUA_TNUMBER ? lua_tointegerx(L, 1, &isint) : 0;
    if (!isint || n < 0 || n > INT_MAX) lc_misuse(L, "random", "n must be an integer in [0, %d]", INT_MAX);
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    kr_crypto_err err;
    if (kr_crypto_random(p, (size_t)n, &err) != 0) return lc_failed(L, "random", &err);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int digest(lua_State *L, const char *fn, const char *alg)
{
    size_t len, outlen = 0;
    const char *data = lc_arg_bytes(L, 1, fn, "data", &len);
    unsigned char md[KR_CRYPTO_MAX_DIGEST];
    kr_crypto_err err;
    if (kr_crypto_digest(alg, data, len, md, &outlen, &err) != 0) return lc_failed(L, fn, &err);
    lua_pushlstring(L, (const char *)md, outlen);
    return 1;
}

static int l_sha256(lua_State *L) { return digest(L, "sha256", "SHA256"); }
static int l_sha384(lua_State *L) { return digest(L, "sha384", "SHA384"); }
static int l_sha512(lua_State *L) { return digest(L, "sha512", "SHA512"); }

static int l_hmac_sha256(lua_State *L)
{
    size_t klen, len;
    const char *key = lc_arg_bytes(L, 1, "hmac_sha256", "key", &klen);
    const char *data = lc_arg_bytes(L, 2, "hmac_sha256", "data", &len);
    unsigned char mac[32];
    kr_crypto_err err;
    if (kr_crypto_hmac_sha256(key, klen, data, len, mac, &err) != 0) return lc_failed(L, "hmac_sha256", &err);
    lua_pushlstring(L, (const char *)mac, sizeof mac);
    return 1;
}

static int l_hex(lua_State *L)
{
    size_t len;
    const char *data = lc_arg_bytes(L, 1, "hex", "bytes", &len);
    if (len > (SIZE_MAX - 1) / 2) lc_misuse(L, "hex", "input too large");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 2 * len + 1);
    kr_crypto_hex((const unsigned char *)data, len, p);
    luaL_pushresultsize(&b, 2 * len);
    return 1;
}

static int l_unhex(lua_State *L)
{
    size_t len;
    const char *hex = lc_arg_bytes(L, 1, "unhex", "hex", &len);
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, len / 2);
    kr_crypto_err err;
    if (kr_crypto_unhex(hex, len, p, &err) != 0) return lc_failed(L, "unhex", &err);
    luaL_pushresultsize(&b, len / 2);
    return 1;
}

static int l_base64(lua_State *L)
{
    size_t len;
    const char *data = lc_arg_bytes(L, 1, "base64", "bytes", &len);
    kr_bytes out;
    if (kr_crypto_base64((const unsigned char *)data, len, &out) != 0) lc_misuse(L, "base64", "out of memory");
    lc_push_bytes(L, &out);
    return 1;
}

static int l_unbase64(lua_State *L)
{
    size_t len;
    const char *s = lc_arg_bytes(L, 1, "unbase64", "text", &len);
    kr_bytes out;
    kr_crypto_err err;
    if (kr_crypto_unbase64(s, len, &out, &err) != 0) return lc_failed(L, "unbase64", &err);
    lc_push_bytes(L, &out);
    return 1;
}

/* --- keys ---------------------------------------------------------------- */

static const char *arg_curve(lua_State *L, int arg, const char *fn, int optional)
{
    if (optional && lua_isnoneornil(L, arg)) return "P-256";
    const char *curve = lc_arg_bytes(L, arg, fn, "curve", NULL);
    if (!kr_crypto_curve_supported(curve))
        lc_misuse(L, fn, "unknown curve '%s' (expected 'P-256' or 'secp256k1')", curve);
    return curve;
}

static int l_keygen(lua_State *L)
{
    const char *curve = arg_curve(L, 1, "keygen", 1);
    kr_bytes pem;
    kr_crypto_err err;
    if (kr_crypto_keygen(curve, &pem, &err) != 0) return lc_failed(L, "keygen", &err);
    lc_push_bytes(L, &pem);
    return 1;
}

static int l_key_from_raw(lua_State *L)
{
    size_t len;
    const char *curve = arg_curve(L, 1, "key_from_raw", 0);
    const char *raw = lc_arg_bytes(L, 2, "key_from_raw", "raw", &len);
    kr_bytes pem;
    kr_crypto_err err;
    if (kr_crypto_key_from_raw(curve, (const unsigned char *)raw, len, &pem, &err) != 0)
        return lc_failed(L, "key_from_raw", &err);
    lc_push_bytes(L, &pem);
    return 1;
}

static int l_key_info(lua_State *L)
{
    size_t len;
    const char *pem = lc_arg_bytes(L, 1, "key_info", "pem", &len);
    kr_key_info info;
    kr_crypto_err err;
    if (kr_crypto_key_info(pem, len, &info, &err) != 0) return lc_failed(L, "key_info", &err);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, info.curve);
    lua_setfield(L, -2, "curve");
    if (info.has_private) {
        lua_pushlstring(L, (const char *)info.private_raw, info.private_len);
        lua_setfield(L, -2, "private_raw");
    }
    lua_pushlstring(L, (const char *)info.compressed, info.compressed_len);
    lua_setfield(L, -2, "public_compressed");
    lua_pushlstring(L, (const char *)info.public_der.data, info.public_der.len);
    lua_setfield(L, -2, "public_der");
    lua_pushlstring(L, (const char *)info.public_pem.data, info.public_pem.len);
    lua_setfield(L, -2, "public_pem");
    kr_key_info_free(&info);
    return 1;
}

static int l_sign(lua_State *L)
{
    size_t klen, len;
    const char *key = lc_arg_bytes(L, 1, "sign", "key_pem", &klen);
    const char *data = lc_arg_bytes(L, 2, "sign", "data", &len);
    kr_bytes sig;
    kr_crypto_err err;
    if (kr_crypto_sign(key, klen, data, len, &sig, &err) != 0) return lc_failed(L, "sign", &err);
    lc_push_bytes(L, &sig);
    return 1;
}

static int l_verify(lua_State *L)
{
    size_t klen, len, slen;
    const char *pem = lc_arg_bytes(L, 1, "verify", "pem", &klen);
    const char *data = lc_arg_bytes(L, 2, "verify", "data", &len);
    const char *sig = lc_arg_bytes(L, 3, "verify", "sig", &slen);
    kr_crypto_err err;
    int rc = kr_crypto_verify(pem, klen, data, len, (const unsigned char *)sig, slen, &err);
    if (rc < 0) return lc_failed(L, "verify", &err);
    lua_pushboolean(L, rc);
    return 1;
}

static const kr_func funcs[] = {
    {"random", l_random, "random(n)", "bytes",
     "Returns `n` random bytes from OpenSSL's cryptographically secure generator; `n` is an integer from 0 "
     "to 2^31-1."},
    {"sha256", l_sha256, "sha256(data)", "bytes", "SHA-256 digest of the string `data`: 32 raw bytes (use `hex` to print)."},
    {"sha384", l_sha384, "sha384(data)", "bytes", "SHA-384 digest of the string `data`: 48 raw bytes."},
    {"sha512", l_sha512, "sha512(data)", "bytes", "SHA-512 digest of the string `data`: 64 raw bytes."},
    {"hmac_sha256", l_hmac_sha256, "hmac_sha256(key, data)", "bytes",
     "HMAC-SHA256 of `data` under `key` (any length, empty allowed): 32 raw bytes."},
    {"hex", l_hex, "hex(bytes)", "string", "Lowercase hexadecimal of `bytes`, two digits per byte, no `0x` prefix."},
    {"unhex", l_unhex, "unhex(hex)", "bytes | nil, err, code",
     "Decodes hexadecimal (digits in either case, no prefix, no separators). An odd number of digits or a "
     "non-hex character returns `nil, err, \"EINVAL\"`."},
    {"base64", l_base64, "base64(bytes)", "string",
     "Standard base64 (RFC 4648 alphabet `A-Z a-z 0-9 + /`) with `=` padding and no line breaks."},
    {"unbase64", l_unbase64, "unbase64(text)", "bytes | nil, err, code",
     "Decodes standard base64. Whitespace (including line breaks) is ignored and `=` padding is optional, "
     "but padding that is present must complete the final group. Other characters (including the URL-safe "
     "`-` and `_`), data after padding, or a truncated group return `nil, err, \"EINVAL\"`."},
    {"keygen", l_keygen, "keygen([curve])", "pem",
     "Generates an EC private key and returns it as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). `curve` is "
     "`\"P-256\"` (default) or `\"secp256k1\"`; any other value raises."},
    {"key_from_raw", l_key_from_raw, "key_from_raw(curve, raw)", "pem | nil, err, code",
     "Builds the private key whose scalar is `raw` (32 bytes, big-endian) on `curve` (`\"P-256\"` or "
     "`\"secp256k1\"`, anything else raises), derives its public point, and returns PKCS#8 PEM. A `raw` that "
     "is not 32 bytes, or a scalar that is 0 or not below the curve order, returns `nil, err, \"EINVAL\"`."},
    {"key_info", l_key_info, "key_info(pem)", "info | nil, err, code",
     "Inspects an EC key given as a private key PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) or a "
     "public key PEM (`PUBLIC KEY`). Returns a table: `curve` (`\"P-256\"`, `\"secp256k1\"`, also "
     "`\"P-384\"`/`\"P-521\"`), `private_raw` (the scalar, big-endian, padded to the curve size: 32 bytes for "
     "256-bit curves; `nil` for a public key), `public_der` (DER SubjectPublicKeyInfo), `public_pem` "
     "(`-----BEGIN PUBLIC KEY-----`), `public_compressed` (SEC1 compressed point: `02`/`03` then X, 33 bytes "
     "for 256-bit curves). Unparsable, encrypted or non-EC input returns `nil, err, \"EINVAL\"`."},
    {"sign", l_sign, "sign(key_pem, data)", "sig | nil, err, code",
     "Signs SHA-256(`data`) with the EC private key `key_pem` and returns the DER-encoded ECDSA signature "
     "(randomised: two calls give different bytes). An unusable key returns `nil, err, \"EINVAL\"`."},
    {"verify", l_verify, "verify(pem, data, sig)", "boolean | nil, err, code",
     "Checks that `sig` is a DER ECDSA signature of SHA-256(`data`) under the EC public key of `pem`, which "
     "may be a public key, private key or certificate PEM. Returns `true` or `false` (a malformed signature is "
     "`false`). An unusable `pem` returns `nil, err, \"EINVAL\"`."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.crypto", "hashes, encodings, EC keys and X.509 certificates", funcs};

int luaopen_kmsrun_crypto(lua_State *L)
{
    kr_newmodule(L, &module);
    kr_addfuncs(L, -1, module.name, kr_x509_funcs);
    return 1;
}
