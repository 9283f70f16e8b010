/* STUB: replaced by the real module. */
#include "register.h"
static const kr_func funcs[] = {{NULL, NULL, NULL, NULL, NULL}};
static const kr_module module = {"kmsrun.http", "stub", funcs};
int luaopen_kmsrun_http(lua_State *L) { kr_newmodule(L, &module); return 1; }
