#include "fuzz_common.h"
#include "host.h"

#include <curl/curl.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNTERS 65536
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t fz_counters[COUNTERS];

static size_t mem_used, mem_limit;
static long budget_left;
static uint32_t prev_loc;

static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (ptr == NULL) osize = 0;
    if (nsize == 0) {
        free(ptr);
        mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && mem_used + (nsize - osize) > mem_limit) return NULL; /* Lua raises "not enough memory" */
    void *p = realloc(ptr, nsize);
    if (p) mem_used = mem_used - osize + nsize;
    return p;
}

static int fz_panic(lua_State *L)
{
    fprintf(stderr, "fuzz: Lua panic: %s\n", lua_tostring(L, -1));
    abort();
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Line events of the stdlib become libFuzzer features (edges between lines);
 * count events enforce the instruction budget. */
static void fz_hook(lua_State *L, lua_Debug *ar)
{
    if (ar->event == LUA_HOOKCOUNT) {
        if (--budget_left <= 0) luaL_error(L, "fuzz: instruction budget exhausted");
        return;
    }
    if (ar->event != LUA_HOOKLINE || !lua_getinfo(L, "S", ar)) return;
    if (!strstr(ar->source, "kmsrun/")) return; /* only the stdlib, not the input's own code */
    uint32_t loc = hash_str(ar->source) ^ ((uint32_t)ar->currentline * 2654435761u);
    fz_counters[(loc ^ prev_loc) % COUNTERS]++;
    prev_loc = loc >> 1;
}

static int pmain(lua_State *L)
{
    kr_host_open(L);
    return 0;
}

lua_State *fz_open(size_t limit)
{
    mem_limit = limit;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lua_State *L = lua_newstate(fz_alloc, NULL);
    if (!L) abort();
    lua_atpanic(L, fz_panic);
    lua_pushcfunction(L, pmain);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: cannot open the host: %s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int fz_driver(lua_State *L, const char *name, const char *source)
{
    lua_pushcfunction(L, traceback);
    if (luaL_loadbuffer(L, source, strlen(source), name) != LUA_OK || lua_pcall(L, 0, 1, -2) != LUA_OK) {
        fprintf(stderr, "fuzz: driver %s: %s\n", name, lua_tostring(L, -1));
        abort();
    }
    if (!lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz: driver %s must return a function\n", name);
        abort();
    }
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return ref;
}

const char *fz_call(lua_State *L, int ref, const unsigned char *data, size_t size, long budget)
{
    static char err[4096];
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, (const char *)data, size);
    budget_left = budget;
    prev_loc = 0;
    lua_sethook(L, fz_hook, LUA_MASKLINE | LUA_MASKCOUNT, 1000);
    int rc = lua_pcall(L, 1, 0, 1);
    lua_sethook(L, NULL, 0, 0);
    const char *result = NULL;
    if (rc != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, sizeof err, "%s", m ? m : "(no message)");
        result = err;
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return result;
}
