/* STUB: replaced by the real module. */
#include "register.h"
static const kr_func funcs[] = {{NULL, NULL, NULL, NULL, NULL}};
static const kr_module module = {"kmsrun.archive", "stub", funcs};
int luaopen_kmsrun_archive(lua_State *L) { kr_newmodule(L, &module); return 1; }
