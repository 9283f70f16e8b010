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

/* [-0, +0, m] Add funcs (and their docs) to the module `name` whose table is at idx:
 * a module whose primitives live in several files (crypto and its X.509 half). */
void kr_addfuncs(lua_State *L, int idx, const char *name, const kr_func *funcs);

/* [-0, +0, -] Raise "<module>.<func>: <message>" for misuse by the caller. */
int kr_error(lua_State *L, const char *fmt, ...);

/* [-0, +3, m] Push the world-failure triple nil, message, code and return 3. */
int kr_fail(lua_State *L, const char *code, const char *fmt, ...);

/* Options tables: the one way every primitive reads them. Each reader is
 * [-0, +0, e]: the options table at idx may be nil or absent (the default is
 * returned); fields are read raw (no metamethod runs, and a returned string stays
 * anchored by the table); a field of another type raises
 * "<module.func>: option 'KEY' must be ...". KEY names the option as the runbook
 * writes it: "tls.cert" reads field "cert" of the nested table at idx (found with
 * kr_opt_table) and is named whole in messages. */
const char *kr_opt_string(lua_State *L, int idx, const char *key, const char *def, size_t *len);
/* A finite number. */
lua_Number kr_opt_number(lua_State *L, int idx, const char *key, lua_Number def);
/* An integer in [lo, hi]; *present (may be NULL) tells whether it was given. */
lua_Integer kr_opt_integer(lua_State *L, int idx, const char *key, lua_Integer lo, lua_Integer hi,
                           lua_Integer def, int *present);
int kr_opt_bool(lua_State *L, int idx, const char *key, int def);
/* [-0, +(0|1), e] A nested table (a list, a sub-options table): pushed, and its
 * stack index returned; 0 with nothing pushed when absent. `what` words the type
 * in the error ("a table", "a list"). */
int kr_opt_table(lua_State *L, int idx, const char *key, const char *what);

/* [-0, +0, e] The options argument at idx, checked by kr_check_opts, with an empty
 * table put in its place when it is nil or absent; returns idx. */
int kr_opts(lua_State *L, int idx, const char *func, const char *const known[]);

/* [-0, +0, e] Reject option names the primitive does not know ("did you mean"). */
void kr_check_opts(lua_State *L, int idx, const char *func, const char *const known[]);

#endif
