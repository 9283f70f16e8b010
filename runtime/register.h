/* Registration of Lua-callable primitives together with their documentation.
 *
 * Every primitive is described once, beside the function that implements it;
 * `kmsrun doc`, docs/reference.md and the LuaLS stubs are generated from these
 * same records, so the reference cannot drift from what is registered. */
#ifndef KMSRUN_REGISTER_H
#define KMSRUN_REGISTER_H

#include <lua.h>

typedef struct kr_func {
    const char *name;      /* field name inside the module table */
    lua_CFunction fn;
    const char *signature; /* e.g. "sleep(seconds)" */
    const char *returns;   /* e.g. "nothing" or "response | nil, err, code" */
    const char *doc;       /* markdown paragraph(s): arguments, options, errors */
} kr_func;

typedef struct kr_module {
    const char *name;      /* "kmsrun.time" */
    const char *summary;   /* one line */
    const kr_func *funcs;  /* terminated by {NULL} */
} kr_module;

/* [-0, +1, m] Create the module table, record its docs, leave the table on the stack. */
void kr_newmodule(lua_State *L, const kr_module *m);

/* [-0, +0, -] Raise "<module>.<func>: <message>" for misuse by the caller. */
int kr_error(lua_State *L, const char *fmt, ...);

/* [-0, +3, m] Push the world-failure triple nil, message, code and return 3. */
int kr_fail(lua_State *L, const char *code, const char *fmt, ...);

/* [-0, +0, e] Fetch an optional field of the options table at index idx. */
const char *kr_opt_string(lua_State *L, int idx, const char *key, const char *def, size_t *len);
lua_Number kr_opt_number(lua_State *L, int idx, const char *key, lua_Number def);
int kr_opt_bool(lua_State *L, int idx, const char *key, int def);

/* [-0, +0, e] Reject option names the primitive does not know ("did you mean"). */
void kr_check_opts(lua_State *L, int idx, const char *func, const char *const known[]);

#endif
