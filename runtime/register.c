/* Module registration with documentation, and the shared argument helpers
 * that give every primitive the same calling convention (see docs). */
#include "register.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char DOCS_KEY = 'd'; /* registry: module name -> {summary=, funcs={...}} */

/* [-0, +0, m] The docs list of module `name` (created with its summary when absent)
 * is pushed; returns its stack index. */
static int docs_list(lua_State *L, const char *name, const char *summary)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DOCS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &DOCS_KEY);
    }
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, summary ? summary : "");
        lua_setfield(L, -2, "summary");
        lua_newtable(L);
        lua_setfield(L, -2, "funcs");
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    lua_getfield(L, -1, "funcs");
    lua_replace(L, -3);
    lua_pop(L, 1);
    return lua_gettop(L);
}

void kr_addfuncs(lua_State *L, int idx, const char *name, const kr_func *funcs)
{
    int mod = lua_absindex(L, idx);
    int docs = docs_list(L, name, NULL);
    lua_Integer next = (lua_Integer)lua_rawlen(L, docs);
    /* The full name ("http.request") rides along as upvalue 1 for kr_error. */
    const char *shortname = strncmp(name, "kmsrun.", 7) == 0 ? name + 7 : name;
    for (const kr_func *f = funcs; f->name; f++) {
        lua_pushfstring(L, "%s.%s", shortname, f->name);
        lua_pushcclosure(L, f->fn, 1);
        lua_setfield(L, mod, f->name);
        lua_createtable(L, 0, 4);
        lua_pushstring(L, f->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, f->signature);
        lua_setfield(L, -2, "signature");
        lua_pushstring(L, f->returns);
        lua_setfield(L, -2, "returns");
        lua_pushstring(L, f->doc);
        lua_setfield(L, -2, "doc");
        lua_rawseti(L, docs, ++next);
    }
    lua_pop(L, 1);
}

void kr_newmodule(lua_State *L, const kr_module *m)
{
    lua_newtable(L);
    docs_list(L, m->name, m->summary); /* records the summary */
    lua_pop(L, 1);
    kr_addfuncs(L, -1, m->name, m->funcs);
}

int kr_host_docs(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DOCS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    return 1;
}

/* The name of the running C function, as "module.func", for messages: the
 * upvalue kr_newmodule gave it, else whatever name Lua knows it by. */
static void where(lua_State *L, char *buf, size_t len)
{
    lua_Debug ar;
    buf[0] = '\0';
    const char *full = lua_type(L, lua_upvalueindex(1)) == LUA_TSTRING ? lua_tostring(L, lua_upvalueindex(1)) : NULL;
    if (full) snprintf(buf, len, "%s", full);
    else if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) snprintf(buf, len, "%s", ar.name);
}

int kr_error(lua_State *L, const char *fmt, ...)
{
    char name[64], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where(L, name, sizeof name);
    if (name[0]) return luaL_error(L, "%s: %s", name, msg);
    return luaL_error(L, "%s", msg);
}

int kr_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushstring(L, code);
    return 3;
}

/* The field a key names: "tls.cert" is field "cert" (of the nested table at idx). */
static const char *field_of(const char *key)
{
    const char *dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

/* [-0, +1, e] Push the option raw (nil when the options are absent). */
static int opt_field(lua_State *L, int idx, const char *key)
{
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = lua_absindex(L, idx);
    lua_pushstring(L, field_of(key));
    return lua_rawget(L, idx);
}

/* [-1, +0, e] Pop the pushed option and raise: it is of the wrong type. */
static void opt_wrong(lua_State *L, const char *key, const char *want, int got)
{
    lua_pop(L, 1);
    kr_error(L, "option '%s' must be %s, got %s", key, want, lua_typename(L, got));
}

const char *kr_opt_string(lua_State *L, int idx, const char *key, const char *def, size_t *len)
{
    int t = opt_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        if (len) *len = def ? strlen(def) : 0;
        return def;
    }
    if (t != LUA_TSTRING) opt_wrong(L, key, "a string", t);
    /* The string stays alive: it is referenced by the options table. */
    const char *s = lua_tolstring(L, -1, len);
    lua_pop(L, 1);
    return s;
}

lua_Number kr_opt_number(lua_State *L, int idx, const char *key, lua_Number def)
{
    int t = opt_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TNUMBER) opt_wrong(L, key, "a number", t);
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!isfinite(v)) kr_error(L, "option '%s' must be a finite number", key);
    return v;
}

lua_Integer kr_opt_integer(lua_State *L, int idx, const char *key, lua_Integer lo, lua_Integer hi,
                           lua_Integer def, int *present)
{
    int t = opt_field(L, idx, key), isint = 0;
    if (t != LUA_TNIL && t != LUA_TNUMBER) opt_wrong(L, key, "an integer", t);
    lua_Integer v = t == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : def;
    lua_pop(L, 1);
    if (present) *present = t != LUA_TNIL;
    if (t != LUA_TNIL && (!isint || v < lo || v > hi))
        kr_error(L, "option '%s' must be an integer in [%lld, %lld]", key, (long long)lo, (long long)hi);
    return t == LUA_TNIL ? def : v;
}

int kr_opt_bool(lua_State *L, int idx, const char *key, int def)
{
    int t = opt_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TBOOLEAN) opt_wrong(L, key, "a boolean", t);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

int kr_opt_table(lua_State *L, int idx, const char *key, const char *what)
{
    int t = opt_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TTABLE) opt_wrong(L, key, what, t);
    return lua_gettop(L);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (lb >= 63) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

void kr_check_opts(lua_State *L, int idx, const char *func, const char *const known[])
{
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: options must be a table, got %s", func, luaL_typename(L, idx));
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: option names must be strings", func);
        const char *k = lua_tostring(L, -1);
        int found = 0;
        for (int i = 0; known[i] && !found; i++) found = strcmp(known[i], k) == 0;
        if (!found) {
            /* Only a mistake pays for the suggestion. */
            const char *best = NULL;
            size_t best_d = 3;
            for (int i = 0; known[i]; i++) {
                size_t d = edit_distance(k, known[i]);
                if (d < best_d) { best_d = d; best = known[i]; }
            }
            if (best) luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", func, k, best);
            luaL_error(L, "%s: unknown option '%s'", func, k);
        }
    }
}

int kr_opts(lua_State *L, int idx, const char *func, const char *const known[])
{
    if (lua_isnoneornil(L, idx)) {
        lua_settop(L, idx);
        lua_newtable(L);
        lua_replace(L, idx);
        return idx;
    }
    kr_check_opts(L, idx, func, known);
    return idx;
}
