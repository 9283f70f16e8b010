/* Internal to kmsrun.crypto's two binding files (l_crypto.c, l_x509.c). */
#ifndef KMSRUN_L_CRYPTO_H
#define KMSRUN_L_CRYPTO_H

#include "crypto.h"
#include "register.h"

#include <lua.h>
#include <stddef.h>

/* Raise "crypto.<fn>: <message>" for misuse by the caller. */
int lc_misuse(lua_State *L, const char *fn, const char *fmt, ...);
/* Return nil, "crypto.<fn>: <err>", code. */
int lc_failed(lua_State *L, const char *fn, const kr_crypto_err *err);
/* Argument arg as bytes (a string), or raise naming it. */
const char *lc_arg_bytes(lua_State *L, int arg, const char *fn, const char *name, size_t *len);
/* Push b's bytes and free b. */
void lc_push_bytes(lua_State *L, kr_bytes *b);
/* Push a field that may take several types, read raw like every option. */
int lc_raw_field(lua_State *L, int opts, const char *key);

/* The X.509 primitives, added to the module by luaopen_kmsrun_crypto. */
extern const kr_func kr_x509_funcs[];

#endif
