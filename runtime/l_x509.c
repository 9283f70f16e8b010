/* kmsrun.crypto's X.509 half: certificates issued, parsed and verified, PEM
 * bundles split. The mechanism is in x509_*.c; this file moves values between
 * Lua and those plain-C interfaces (the module is assembled in l_crypto.c). */
#include "l_crypto.h"
#include "register.h"
#include "x509.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- certificates -------------------------------------------------------- */

static void check_dn_field(lua_State *L, const char *field)
{
    if (!kr_crypto_dn_field_known(field)) lc_misuse(L, "cert", "subject: unknown attribute '%s'", field);
}

static int by_field(const void *a, const void *b)
{
    return strcmp(((const kr_dn_entry *)a)->field, ((const kr_dn_entry *)b)->field);
}

/* subject = "O=x,CN=y": parsed into a buffer owned by a userdata on the stack. */
static size_t subject_string(lua_State *L, int idx, const kr_dn_entry **out)
{
    size_t len, cap = 1;
    const char *s = lua_tolstring(L, idx, &len);
    for (size_t i = 0; i < len; i++) cap += s[i] == ',';
    char *buf = lua_newuserdatauv(L, len + 1, 0);
    memcpy(buf, s, len + 1);
    kr_dn_entry *e = lua_newuserdatauv(L, cap * sizeof *e, 0);
    size_t n;
    kr_crypto_err err;
    if (kr_crypto_parse_dn(buf, e, cap, &n, &err) != 0) lc_misuse(L, "cert", "subject: %s", err.msg);
    for (size_t i = 0; i < n; i++) check_dn_field(L, e[i].field);
    *out = e;
    return n;
}

/* subject = {CN = ..., O = ...}: a table has no order, so use the
 * conventional C, ST, L, O, OU, CN, then any other attributes by name. */
static size_t subject_table(lua_State *L, int idx, const kr_dn_entry **out)
{
    static const char *const order[] = {"C", "ST", "L", "O", "OU", "CN", NULL};
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            lc_misuse(L, "cert", "subject: names and values must be strings, got %s = %s", luaL_typename(L, -2),
                   luaL_typename(L, -1));
        check_dn_field(L, lua_tostring(L, -2));
        lua_pop(L, 1);
        n++;
    }
    kr_dn_entry *e = lua_newuserdatauv(L, (n ? n : 1) * sizeof *e, 0);
    size_t k = 0;
    for (int i = 0; order[i]; i++) {
        if (lc_raw_field(L, idx, order[i]) == LUA_TSTRING) e[k++] = (kr_dn_entry){order[i], lua_tostring(L, -1)};
        lua_pop(L, 1); /* still anchored by the subject table */
    }
    size_t first_other = k;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *field = lua_tostring(L, -2);
        int ordered = 0;
        for (int i = 0; order[i]; i++) ordered |= strcmp(order[i], field) == 0;
        if (!ordered) e[k++] = (kr_dn_entry){field, lua_tostring(L, -1)};
        lua_pop(L, 1);
    }
    qsort(e + first_other, k - first_other, sizeof *e, by_field);
    *out = e;
    return k;
}

static size_t cert_subject(lua_State *L, int opts, const kr_dn_entry **out)
{
    int t = lc_raw_field(L, opts, "subject");
    *out = NULL;
    if (t == LUA_TNIL) return 0;
    int idx = lua_gettop(L);
    if (t == LUA_TSTRING) return subject_string(L, idx, out);
    if (t == LUA_TTABLE) return subject_table(L, idx, out);
    return lc_misuse(L, "cert", "option 'subject' must be a string or a table, got %s", lua_typename(L, t));
}

static size_t cert_san(lua_State *L, int opts, const char *const **out)
{
    int list = kr_opt_table(L, opts, "san", "a list");
    size_t n = list ? lua_rawlen(L, list) : 0;
    const char **v = lua_newuserdatauv(L, (n ? n : 1) * sizeof *v, 0);
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, list, (lua_Integer)i + 1) != LUA_TSTRING)
            lc_misuse(L, "cert", "san[%zu] must be a string, got %s", i + 1, luaL_typename(L, -1));
        v[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    *out = v;
    return n;
}

static unsigned cert_key_usage(lua_State *L, int opts)
{
    int list = kr_opt_table(L, opts, "key_usage", "a list");
    unsigned flags = 0;
    for (lua_Integer i = 1; list && i <= (lua_Integer)lua_rawlen(L, list); i++) {
        unsigned f = lua_rawgeti(L, list, i) == LUA_TSTRING ? kr_crypto_key_usage_flag(lua_tostring(L, -1)) : 0;
        if (!f)
            lc_misuse(L, "cert", "key_usage[%lld]: expected 'digitalSignature', 'keyCertSign', 'cRLSign' or "
                              "'keyEncipherment', got %s", (long long)i,
                   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
        flags |= f;
        lua_pop(L, 1);
    }
    return flags;
}

static unsigned cert_ext_key_usage(lua_State *L, int opts)
{
    int list = kr_opt_table(L, opts, "ext_key_usage", "a list");
    unsigned flags = 0;
    for (lua_Integer i = 1; list && i <= (lua_Integer)lua_rawlen(L, list); i++) {
        unsigned f = lua_rawgeti(L, list, i) == LUA_TSTRING ? kr_crypto_ext_key_usage_flag(lua_tostring(L, -1)) : 0;
        if (!f)
            lc_misuse(L, "cert", "ext_key_usage[%lld]: expected 'serverAuth' or 'clientAuth', got %s", (long long)i,
                   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
        flags |= f;
        lua_pop(L, 1);
    }
    return flags;
}

static size_t cert_extensions(lua_State *L, int opts, const kr_ext_spec **out)
{
    static const char *const fields[] = {"oid", "value", "critical", NULL};
    int list = kr_opt_table(L, opts, "extensions", "a list");
    size_t n = list ? lua_rawlen(L, list) : 0;
    kr_ext_spec *v = lua_newuserdatauv(L, (n ? n : 1) * sizeof *v, 0);
    for (size_t i = 0; i < n; i++) {
        char where[64];
        snprintf(where, sizeof where, "extensions[%zu]", i + 1);
        if (lua_rawgeti(L, list, (lua_Integer)i + 1) != LUA_TTABLE)
            lc_misuse(L, "cert", "%s must be a table {oid=, value=, critical=}, got %s", where, luaL_typename(L, -1));
        int e = lua_gettop(L);
        char fn[80];
        snprintf(fn, sizeof fn, "crypto.cert: %s", where);
        kr_check_opts(L, e, fn, fields);
        v[i].oid = kr_opt_string(L, e, "extensions.oid", NULL, NULL);
        v[i].value = (const unsigned char *)kr_opt_string(L, e, "extensions.value", NULL, &v[i].len);
        v[i].critical = kr_opt_bool(L, e, "extensions.critical", 0);
        if (!v[i].oid || !v[i].value) lc_misuse(L, "cert", "%s needs both 'oid' and 'value'", where);
        lua_pop(L, 1);
    }
    *out = v;
    return n;
}

static int l_cert(lua_State *L)
{
    static const char *const known[] = {"key", "subject", "issuer_cert", "issuer_key", "ca", "pathlen", "san",
                                        "days", "not_before_offset", "serial", "key_usage", "ext_key_usage",
                                        "extensions", NULL};
    if (!lua_istable(L, 1)) lc_misuse(L, "cert", "options must be a table, got %s", luaL_typename(L, 1));
    lua_settop(L, 1);
    luaL_checkstack(L, 32, NULL);
    int opts = kr_opts(L, 1, "crypto.cert", known), present = 0;
    kr_cert_spec s = {0};
    s.key_pem = kr_opt_string(L, opts, "key", NULL, &s.key_len);
    if (!s.key_pem) lc_misuse(L, "cert", "option 'key' is required");
    s.issuer_cert_pem = kr_opt_string(L, opts, "issuer_cert", NULL, &s.issuer_cert_len);
    s.issuer_key_pem = kr_opt_string(L, opts, "issuer_key", NULL, &s.issuer_key_len);
    if (!s.issuer_cert_pem != !s.issuer_key_pem)
        lc_misuse(L, "cert", "options 'issuer_cert' and 'issuer_key' go together (omit both to self-sign)");
    s.ca = kr_opt_bool(L, opts, "ca", 0);
    s.pathlen = (long)kr_opt_integer(L, opts, "pathlen", 0, INT_MAX, 0, &present);
    if (!present) s.pathlen = -1;
    else if (!s.ca) lc_misuse(L, "cert", "option 'pathlen' requires ca = true");
    double days = kr_opt_number(L, opts, "days", 3650);
    double offset = kr_opt_number(L, opts, "not_before_offset", 0);
    if (fabs(days) > 1e6 || fabs(offset) > 1e11) lc_misuse(L, "cert", "validity period out of range");
    s.lifetime = (int64_t)llround(days * 86400);
    s.not_before_offset = (int64_t)floor(offset);
    s.serial = (uint64_t)kr_opt_integer(L, opts, "serial", 1, LUA_MAXINTEGER, 0, &s.has_serial);
    s.key_usage = cert_key_usage(L, opts);
    s.ext_key_usage = cert_ext_key_usage(L, opts);
    s.n_subject = cert_subject(L, opts, &s.subject);
    s.n_san = cert_san(L, opts, &s.san);
    s.n_ext = cert_extensions(L, opts, &s.ext);

    kr_bytes pem;
    kr_crypto_err err;
    if (kr_crypto_cert(&s, &pem, &err) != 0) return lc_failed(L, "cert", &err);
    lc_push_bytes(L, &pem);
    return 1;
}

static void push_name(lua_State *L, const char *line, const kr_attr *attrs, size_t n, const char *key)
{
    lua_pushstring(L, line);
    lua_setfield(L, -2, key);
    lua_createtable(L, 0, (int)n);
    for (size_t i = n; i-- > 0;) { /* backwards: the first occurrence wins */
        lua_pushstring(L, attrs[i].value);
        lua_setfield(L, -2, attrs[i].name);
    }
    lua_pushfstring(L, "%s_fields", key);
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

static int l_parse_cert(lua_State *L)
{
    size_t len;
    const char *pem = lc_arg_bytes(L, 1, "parse_cert", "pem", &len);
    kr_cert_info c;
    kr_crypto_err err;
    if (kr_crypto_parse_cert(pem, len, &c, &err) != 0) return lc_failed(L, "parse_cert", &err);
    lua_createtable(L, 0, 16);
    push_name(L, c.subject, c.subject_attrs, c.n_subject_attrs, "subject");
    push_name(L, c.issuer, c.issuer_attrs, c.n_issuer_attrs, "issuer");
    lua_createtable(L, (int)c.n_san, 0);
    for (size_t i = 0; i < c.n_san; i++) {
        lua_pushstring(L, c.san[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "san");
    lua_createtable(L, 0, (int)c.n_ext);
    for (size_t i = 0; i < c.n_ext; i++) {
        lua_pushlstring(L, (const char *)c.ext[i].value.data, c.ext[i].value.len);
        lua_setfield(L, -2, c.ext[i].oid);
    }
    lua_setfield(L, -2, "extensions");
    lua_pushlstring(L, (const char *)c.spki_der.data, c.spki_der.len);
    lua_setfield(L, -2, "public_key_der");
    lua_pushlstring(L, (const char *)c.spki_pem.data, c.spki_pem.len);
    lua_setfield(L, -2, "public_key_pem");
    lua_pushstring(L, c.fingerprint);
    lua_setfield(L, -2, "fingerprint");
    lua_pushstring(L, c.serial);
    lua_setfield(L, -2, "serial");
    lua_pushinteger(L, (lua_Integer)c.not_before);
    lua_setfield(L, -2, "not_before");
    lua_pushinteger(L, (lua_Integer)c.not_after);
    lua_setfield(L, -2, "not_after");
    lua_pushboolean(L, c.is_ca);
    lua_setfield(L, -2, "is_ca");
    if (c.pathlen >= 0) {
        lua_pushinteger(L, c.pathlen);
        lua_setfield(L, -2, "pathlen");
    }
    lua_pushlstring(L, (const char *)c.der.data, c.der.len);
    lua_setfield(L, -2, "der");
    kr_cert_info_free(&c);
    return 1;
}

static int l_split_pem(lua_State *L)
{
    static const char *const known[] = {"label", NULL};
    size_t len, label_len = 0;
    const char *text = lc_arg_bytes(L, 1, "split_pem", "bundle", &len);
    int opts = kr_opts(L, 2, "crypto.split_pem", known);
    const char *label = kr_opt_string(L, opts, "label", NULL, &label_len);
    kr_pem_block *blocks;
    size_t n;
    if (kr_crypto_split_pem(text, len, &blocks, &n) != 0) lc_misuse(L, "split_pem", "out of memory");
    lua_createtable(L, (int)n, 0);
    lua_Integer k = 0;
    for (size_t i = 0; i < n; i++) {
        if (label && (blocks[i].label_len != label_len || memcmp(blocks[i].label, label, label_len) != 0)) continue;
        lua_pushlstring(L, blocks[i].text, blocks[i].len);
        lua_pushliteral(L, "\n");
        lua_concat(L, 2);
        lua_rawseti(L, -2, ++k);
    }
    free(blocks);
    return 1;
}

/* A PEM option given as one string or as a list of strings, pushed as one
 * string; NULL when absent. */
static const char *opt_pems(lua_State *L, int opts, const char *key, size_t *len)
{
    int t = lc_raw_field(L, opts, key);
    if (t == LUA_TNIL) return NULL;
    if (t == LUA_TTABLE) {
        int list = lua_gettop(L);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, list); i++) {
            if (lua_rawgeti(L, list, i) != LUA_TSTRING)
                lc_misuse(L, "verify_chain", "%s[%lld] must be a string, got %s", key, (long long)i, luaL_typename(L, -1));
            luaL_addvalue(&b);
            luaL_addchar(&b, '\n');
        }
        luaL_pushresult(&b);
    } else if (t != LUA_TSTRING) {
        lc_misuse(L, "verify_chain", "option '%s' must be a PEM string or a list of them, got %s", key,
               lua_typename(L, t));
    }
    return lua_tolstring(L, -1, len);
}

static int l_verify_chain(lua_State *L)
{
    static const char *const known[] = {"roots", "intermediates", "time", NULL};
    size_t len, roots_len = 0, inter_len = 0;
    const char *cert = lc_arg_bytes(L, 1, "verify_chain", "cert_pem", &len);
    if (!lua_istable(L, 2)) lc_misuse(L, "verify_chain", "options must be a table, got %s", luaL_typename(L, 2));
    int opts = kr_opts(L, 2, "crypto.verify_chain", known), has_time;
    lua_settop(L, opts);
    lua_Integer at = kr_opt_integer(L, opts, "time", 0, LUA_MAXINTEGER, 0, &has_time);
    const char *roots = opt_pems(L, opts, "roots", &roots_len);
    if (!roots) lc_misuse(L, "verify_chain", "option 'roots' is required");
    const char *inter = opt_pems(L, opts, "intermediates", &inter_len);
    kr_crypto_err err;
    if (kr_crypto_verify_chain(cert, len, roots, roots_len, inter, inter_len, has_time, (int64_t)at, &err) != 0) {
        /* The reason is OpenSSL's own wording, so runbooks can compare it. */
        if (strcmp(err.code, "EVERIFY") == 0) return kr_fail(L, err.code, "%s", err.msg);
        return lc_failed(L, "verify_chain", &err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

const kr_func kr_x509_funcs[] = {
    {"cert", l_cert, "cert(opts)", "pem | nil, err, code",
     "Issues an X.509 v3 certificate signed with SHA-256 (ECDSA for EC keys) and returns it as PEM. Options:\n\n"
     "- `key` (required): PEM of the subject's key; a private key, or a public key when an issuer signs.\n"
     "- `subject`: a table `{CN = ..., O = ..., OU = ..., C = ..., ...}` (written in the order C, ST, L, O, "
     "OU, CN, then other attributes by name) or a string `\"O=Dstack,CN=Dstack CA\"` (written in the given "
     "order; `\\,` is a literal comma). Default: an empty subject.\n"
     "- `issuer_cert`, `issuer_key`: PEMs of the issuing certificate and its private key. Omit both for a "
     "self-signed certificate; giving only one raises.\n"
     "- `ca` (default `false`): adds a critical basicConstraints `CA:TRUE`, and a subjectKeyIdentifier.\n"
     "- `pathlen`: integer >= 0, the basicConstraints path length; requires `ca = true`.\n"
     "- `san`: list of `\"DNS:name\"`, `\"IP:1.2.3.4\"` (IPv4 or IPv6), `\"URI:...\"`, `\"email:...\"`; an "
     "entry without a prefix is an IP address if it parses as one, otherwise a DNS name.\n"
     "- `days` (default 3650): validity length in days, counted from notBefore.\n"
     "- `not_before_offset` (default 0): seconds added to the current time to get notBefore (negative to "
     "backdate; with a small `days`, gives an expired certificate).\n"
     "- `serial`: positive integer; default a random 64-bit number.\n"
     "- `key_usage`: list among `\"digitalSignature\"`, `\"keyCertSign\"`, `\"cRLSign\"`, "
     "`\"keyEncipherment\"`; written as a critical keyUsage extension. Default: none.\n"
     "- `ext_key_usage`: list among `\"serverAuth\"`, `\"clientAuth\"`; written as a non-critical "
     "extendedKeyUsage extension. Default: none.\n"
     "- `extensions`: list of `{oid = \"1.2.3...\", value = bytes, critical = false}`; `value` is wrapped in a "
     "DER OCTET STRING and added as extension `oid`.\n\n"
     "An authorityKeyIdentifier (the issuer's subjectKeyIdentifier, or the SHA-1 of its public key) is added "
     "to CA certificates and to every certificate issued by `issuer_cert`. Wrong option types, unknown "
     "options, subject attributes, key usages, and malformed subject strings raise. Unusable keys or issuer "
     "certificate, `issuer_key` not matching `issuer_cert`, invalid attribute values (e.g. `C` not two "
     "letters), bad IP addresses or OIDs return `nil, err, \"EINVAL\"`."},
    {"parse_cert", l_parse_cert, "parse_cert(pem)", "info | nil, err, code",
     "Reads the first `CERTIFICATE` block of `pem` (or a DER certificate). Returns a table: `subject`, "
     "`issuer` (one line `\"CN=x, O=y\"` in certificate order, `,` and `\\` in values escaped with `\\`), "
     "`subject_fields`, `issuer_fields` (`{CN = ..., O = ...}`; for a repeated attribute, the first), `san` "
     "(list of `\"DNS:x\"`, `\"IP:127.0.0.1\"`, `\"URI:x\"`, `\"email:x\"`; other name forms are left out), "
     "`extensions` (`[oid] = bytes` for every extension: the OCTET STRING payload when the extension value "
     "is an OCTET STRING, otherwise the value's full DER), `public_key_der` (SubjectPublicKeyInfo DER), "
     "`public_key_pem`, `fingerprint` (lowercase hex SHA-256 of the DER certificate), `serial` (lowercase "
     "hex, two digits per byte), `not_before`, `not_after` (Unix seconds), `is_ca` (basicConstraints CA), "
     "`pathlen` (integer, or `nil` when unconstrained), `der`. Unparsable input returns "
     "`nil, err, \"EINVAL\"`."},
    {"split_pem", l_split_pem, "split_pem(bundle [, {label = ...}])", "list",
     "Returns the PEM blocks (`-----BEGIN X-----` ... `-----END X-----`) of `bundle` in order, each ending "
     "with a newline; text between blocks is dropped. Option `label` keeps only blocks of that label, e.g. "
     "`\"CERTIFICATE\"`. No block gives an empty list."},
    {"verify_chain", l_verify_chain, "verify_chain(cert_pem, opts)", "true | nil, reason, code",
     "Verifies the certificate `cert_pem` (further certificates in it are used as intermediates) with "
     "OpenSSL's chain verification. Options: `roots` (required): trusted certificates, a PEM string holding "
     "one or more, or a list of PEM strings; every root is a trust anchor, even if not self-signed. "
     "`intermediates`: untrusted certificates, same forms. `time`: Unix seconds to verify at (default: "
     "now). A chain that does not verify returns `nil, reason, \"EVERIFY\"` where reason is OpenSSL's text, "
     "e.g. `\"unable to get local issuer certificate\"`, `\"certificate has expired\"`. Unparsable "
     "certificates return `nil, err, \"EINVAL\"`."},
    {NULL, NULL, NULL, NULL, NULL}};
