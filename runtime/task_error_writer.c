/* The host's error writer (see task.h): kmsrun.core.set_error_writer and the
 * one function the host's own error texts go through. */
#include "task.h"

#include <lauxlib.h>
#include <stdio.h>

/* The host's own error texts go through the writer Lua installs (the terminal's
 * redaction boundary), so a secret inside an error message is scrubbed there too. */
static char ERROR_WRITER_KEY;

int kr_set_error_writer(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ERROR_WRITER_KEY);
    return 0;
}

void kr_error_write(lua_State *L, const char *prefix, const char *msg)
{
    int top = lua_gettop(L);
    if (!msg) msg = "(non-string error)";
    if (lua_checkstack(L, 4) && lua_rawgetp(L, LUA_REGISTRYINDEX, &ERROR_WRITER_KEY) == LUA_TFUNCTION) {
        lua_pushfstring(L, "%s%s\n", prefix, msg);
        if (lua_pcall(L, 1, 0, 0) == LUA_OK) {
            lua_settop(L, top);
            return;
        }
    }
    lua_settop(L, top);
    fprintf(stderr, "%s%s\n", prefix, msg);
}
