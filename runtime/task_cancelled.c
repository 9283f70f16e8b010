/* The one cancellation value (see task.h): what every waiting primitive raises in a
 * cancelled task, and what kmsrun.core exposes as CANCELLED. */
#include "task.h"

static const char CANCELLED_KEY = 'c'; /* registry: the cancellation sentinel */

/* [-0, +0, v] Raise the one cancellation value. A unique object, not a message:
 * no text a runbook or a server raises ("upstream said: cancelled") can pass for
 * it, and lua_error prepends no position. */
int kr_raise_cancelled(lua_State *L)
{
    kr_push_cancelled(L);
    return lua_error(L);
}

static int cancelled_tostring(lua_State *L)
{
    lua_pushliteral(L, "cancelled");
    return 1;
}

/* [-0, +0, m] Creates the sentinel: an empty table whose __tostring reads
 * "cancelled" (the reports and messages that print it), metatable protected. */
void kr_cancelled_init(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, cancelled_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "cancelled");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CANCELLED_KEY);
}

void kr_push_cancelled(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CANCELLED_KEY);
}
