#include "host.h"
#include "register.h"
#include "task.h"

#include <lauxlib.h>
#include <lualib.h>
#include <lua-cjson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luaopen_kmsrun_core(lua_State *L);
int luaopen_kmsrun_time(lua_State *L);
int luaopen_kmsrun_fs(lua_State *L);
int luaopen_kmsrun_proc(lua_State *L);
int luaopen_kmsrun_archive(lua_State *L);
int luaopen_kmsrun_crypto(lua_State *L);
int luaopen_kmsrun_http(lua_State *L);
int luaopen_kmsrun_httpd(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

static const luaL_Reg host_modules[] = {
    {"kmsrun.core", luaopen_kmsrun_core},
    {"kmsrun.time", luaopen_kmsrun_time},
    {"kmsrun.fs", luaopen_kmsrun_fs},
    {"kmsrun.proc", luaopen_kmsrun_proc},
    {"kmsrun.archive", luaopen_kmsrun_archive},
    {"kmsrun.crypto", luaopen_kmsrun_crypto},
    {"kmsrun.http", luaopen_kmsrun_http},
    {"kmsrun.httpd", luaopen_kmsrun_httpd},
    {"cjson", luaopen_cjson},
    {"cjson.safe", luaopen_cjson_safe},
    {NULL, NULL}};

/* The host modules by name, for `kmsrun doc` (which opens them all). */
static int l_host_modules(lua_State *L)
{
    lua_newtable(L);
    for (int i = 0; host_modules[i].name; i++) {
        if (strncmp(host_modules[i].name, "kmsrun.", 7) != 0) continue;
        lua_pushstring(L, host_modules[i].name);
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    }
    return 1;
}

static int load_dir_module(lua_State *L, const char *dir, const char *name)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, dir);
    luaL_addchar(&b, '/');
    for (const char *p = name; *p; p++) luaL_addchar(&b, *p == '.' ? '/' : *p);
    luaL_addstring(&b, ".lua");
    luaL_pushresult(&b);
    const char *path = lua_tostring(L, -1);
    FILE *f = fopen(path, "r");
    if (!f) {
        lua_pop(L, 1);
        return 0;
    }
    fclose(f);
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s' from '%s':\n\t%s", name, path, lua_tostring(L, -1));
    lua_insert(L, -2); /* loader, path */
    return 2;
}

/* package.searchers entry: KMSRUN_STDLIB directory first (development), then
 * the copy compiled into the binary. */
static int stdlib_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dir = getenv("KMSRUN_STDLIB");
    if (dir && *dir) {
        int n = load_dir_module(L, dir, name);
        if (n) return n;
    }
    for (const kr_embedded *e = kr_stdlib; e->module; e++) {
        if (strcmp(e->module, name) != 0) continue;
        if (luaL_loadbufferx(L, (const char *)e->data, e->len, e->chunkname, "t") != LUA_OK)
            return luaL_error(L, "error loading embedded module '%s':\n\t%s", name, lua_tostring(L, -1));
        lua_pushstring(L, e->chunkname + 1);
        return 2;
    }
    lua_pushfstring(L, "no embedded stdlib module '%s'", name);
    return 1;
}

void kr_host_open(lua_State *L)
{
    luaL_openlibs(L);
    if (kr_loop_init(L) != 0) luaL_error(L, "cannot create the event loop");

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const luaL_Reg *m = host_modules; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);

    /* Insert our searcher right after the preload searcher. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    int n = (int)luaL_len(L, -1);
    for (int i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, stdlib_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);

    /* Introspection for `kmsrun doc` lives in the core module table. */
    luaL_requiref(L, "kmsrun.core", luaopen_kmsrun_core, 0);
    lua_pushcfunction(L, kr_host_docs);
    lua_setfield(L, -2, "docs");
    lua_pushcfunction(L, l_host_modules);
    lua_setfield(L, -2, "modules");
    /* The one place the version lives is the CMake project (KMSRUN_VERSION). */
    lua_pushliteral(L, KMSRUN_VERSION);
    lua_setfield(L, -2, "version");
    lua_pop(L, 1);
}
