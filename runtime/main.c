/* kmsrun entry point. Everything runs protected under one message handler;
 * the command line itself is interpreted by stdlib/kmsrun/cli/main.lua. */
#include "host.h"
#include "proc.h"
#include "task.h"

#include <curl/curl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

enum { EXIT_USAGE = 2 };

/* Message handler: stringify any error object and append a traceback. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    kr_host_open(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "kmsrun.cli.main");
    lua_call(L, 1, 1);
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_call(L, 1, 1);
    return 1;
}

int main(int argc, char **argv)
{
    /* A peer hanging up mid-write must be an error return, not a fatal signal. */
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "kmsrun: cannot initialise libcurl\n");
        return 70;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "kmsrun: cannot create a Lua state\n");
        return 70;
    }
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 1);
    int code;
    if (status != LUA_OK) {
        kr_error_write(L, "kmsrun: ", lua_tostring(L, -1));
        code = EXIT_USAGE;
    } else {
        code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    /* Safety net: no child outlives kmsrun, whatever happened above. */
    kr_proc_kill_all();
    kr_loop_shutdown(L);
    lua_close(L);
    kr_loop_free();
    curl_global_cleanup();
    return code;
}
