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
static int budget_spent;
static lua_State *budget_thread;
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
        if (--budget_left > 0) return;
        budget_spent = 1;
        if (L == budget_thread && lua_isyieldable(L)) {
            lua_yield(L, 0); /* ends the run: nothing inside can catch a yield */
            return;
        }
        luaL_error(L, "fuzz: instruction budget exhausted");
        return;
    }
    if (ar->event != LUA_HOOKLINE || !lua_getinfo(L, "S", ar)) return;
    if (!strstr(ar->source, "kmsrun/")) return; /* the stdlib, not the input's own code */
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

fz_driver fz_load_driver(lua_State *L, const char *name, const char *source, int nargs, const char *const *args)
{
    fz_driver d = {LUA_NOREF, LUA_NOREF};
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback);
    if (luaL_loadbuffer(L, source, strlen(source), name) != LUA_OK) goto fail;
    for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
    if (lua_pcall(L, nargs, 2, 1) != LUA_OK) goto fail;
    if (!lua_isfunction(L, 2)) {
        fprintf(stderr, "fuzz: driver %s must return a function\n", name);
        abort();
    }
    if (lua_isfunction(L, 3)) d.after = luaL_ref(L, LUA_REGISTRYINDEX);
    else lua_pop(L, 1);
    d.run = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return d;
fail:
    fprintf(stderr, "fuzz: driver %s: %s\n", name, lua_tostring(L, -1));
    abort();
}

fz_status fz_call(lua_State *L, const fz_driver *d, const unsigned char *data, size_t size, long budget,
                  const char **err)
{
    static char msg[8192];
    fz_status st = FZ_OK;
    lua_settop(L, 0);
    lua_State *co = lua_newthread(L); /* anchored on L's stack until settop below */
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->run);
    lua_xmove(L, co, 1);
    lua_pushlstring(co, (const char *)data, size);
    budget_left = budget;
    budget_spent = 0;
    budget_thread = co;
    prev_loc = 0;
    lua_sethook(co, fz_hook, LUA_MASKLINE | LUA_MASKCOUNT, 1000);
    int nres = 0;
    int rc = lua_resume(co, L, 1, &nres);
    if (rc == LUA_YIELD) {
        st = FZ_BUDGET; /* the coroutine is dropped, never resumed */
    } else if (rc != LUA_OK) {
        const char *m = lua_tostring(co, -1);
        luaL_traceback(L, co, m ? m : "(error object is not a string)", 0);
        snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
        st = budget_spent ? FZ_BUDGET : FZ_ERROR;
        *err = msg;
    }
    budget_thread = NULL;
    lua_settop(L, 0);
    if (d->after != LUA_NOREF) {
        lua_pushcfunction(L, traceback);
        lua_rawgeti(L, LUA_REGISTRYINDEX, d->after);
        if (lua_pcall(L, 0, 0, 1) != LUA_OK) {
            fprintf(stderr, "fuzz: the driver's after() failed: %s\n", lua_tostring(L, -1));
            abort();
        }
        lua_settop(L, 0);
    }
    lua_gc(L, LUA_GCSTEP, 0);
    return st;
}
