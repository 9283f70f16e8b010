/* The Lua state of kmsrun: standard libraries, host modules, embedded stdlib. */
#ifndef KMSRUN_HOST_H
#define KMSRUN_HOST_H

#include <lua.h>

typedef struct kr_embedded {
    const char *module;    /* "kmsrun.cli.main" */
    const char *chunkname; /* "@stdlib/kmsrun/cli/main.lua" */
    const unsigned char *data;
    size_t len;
} kr_embedded;

extern const kr_embedded kr_stdlib[]; /* generated at build time, NULL-terminated */

/* [-0, +0, e] Open libraries, the loop, host modules and the stdlib searcher. */
void kr_host_open(lua_State *L);

/* [-0, +1, m] The docs table of every registered host module (register.c). */
int kr_host_docs(lua_State *L);

#endif
