/* Shared by the libFuzzer harnesses: a Lua state with kmsrun's host modules and
 * stdlib (embedded, or KMSRUN_STDLIB), capped in memory and instructions, whose
 * stdlib line coverage is fed to libFuzzer through extra counters (the prebuilt
 * Lua VM and lua-cjson are not instrumented, so without this libFuzzer would be
 * blind to which Lua paths an input reaches). */
#ifndef KMSRUN_FUZZ_COMMON_H
#define KMSRUN_FUZZ_COMMON_H

#include <lua.h>
#include <stddef.h>

/* Creates the state (once per process). mem_limit in bytes. */
lua_State *fz_open(size_t mem_limit);

/* Loads a Lua driver chunk (text) that returns a function; returns its registry ref. */
int fz_driver(lua_State *L, const char *name, const char *source);

/* Calls the driver with the input as a string, with a budget of `budget`
 * thousand VM instructions. Returns NULL on success, else the error text
 * (valid until the next call). */
const char *fz_call(lua_State *L, int ref, const unsigned char *data, size_t size, long budget);

#endif
