/* Shared by the libFuzzer harnesses: a Lua state with kmsrun's host modules and
 * stdlib (embedded, or KMSRUN_STDLIB), capped in memory and instructions, whose
 * stdlib line coverage is fed to libFuzzer through extra counters (the prebuilt
 * Lua VM and lua-cjson are not instrumented, so without this libFuzzer would be
 * blind to which Lua paths an input reaches). */
#ifndef KMSRUN_FUZZ_COMMON_H
#define KMSRUN_FUZZ_COMMON_H

#include <lua.h>
#include <stddef.h>

typedef enum { FZ_OK, FZ_ERROR, FZ_BUDGET } fz_status;

typedef struct fz_driver {
    int run;   /* registry ref of run(data) */
    int after; /* registry ref of after(), or LUA_NOREF */
} fz_driver;

/* Creates the state (once per process). mem_limit in bytes. */
lua_State *fz_open(size_t mem_limit);

/* Loads a Lua driver chunk that returns run [, after]; aborts on failure.
 * The chunk gets the extra arguments as `...` (strings). */
fz_driver fz_load_driver(lua_State *L, const char *name, const char *source, int nargs, const char *const *args);

/* Runs run(data) in a fresh coroutine with a budget of `budget` thousand VM
 * instructions; a spent budget stops it for good (the coroutine yields from the
 * hook, which no pcall inside can catch). Then calls after() without a budget.
 * *err is the error text for FZ_ERROR (valid until the next call). */
fz_status fz_call(lua_State *L, const fz_driver *d, const unsigned char *data, size_t size, long budget,
                  const char **err);

#endif
