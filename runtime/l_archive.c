/* kmsrun.archive: evidence bundles as .tar.gz. */
#include "targz.h"
#include "register.h"

#include <lauxlib.h>
#include <stdlib.h>

static int l_targz(lua_State *L)
{
    static const char *const known[] = {"prefix", NULL};
    const char *dir = luaL_checkstring(L, 1);
    const char *out = luaL_checkstring(L, 2);
    kr_check_opts(L, 3, "archive.targz", known);
    const char *prefix = kr_opt_string(L, 3, "prefix", "", NULL);
    char err[1024];
    if (kr_archive_targz(dir, out, prefix, NULL, NULL, err, sizeof err) != 0)
        return kr_fail(L, "EIO", "archive.targz: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static void add_entry(const char *name, long long size, void *arg)
{
    lua_State *L = arg;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, size);
    lua_setfield(L, -2, "size");
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

static int l_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char err[1024];
    lua_newtable(L);
    if (kr_archive_each(path, add_entry, L, NULL, NULL, NULL, err, sizeof err) != 0)
        return kr_fail(L, "EIO", "archive.list: %s", err);
    return 1;
}

static int l_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    char err[1024], *data = NULL;
    size_t len = 0;
    if (kr_archive_each(path, NULL, NULL, name, &data, &len, err, sizeof err) != 0)
        return kr_fail(L, "EIO", "archive.read: %s", err);
    if (!data) return kr_fail(L, "ENOENT", "archive.read: no entry '%s' in '%s'", name, path);
    lua_pushlstring(L, data, len);
    free(data);
    return 1;
}

static const kr_func funcs[] = {
    {"targz", l_targz, "targz(dir, out, opts)", "true | nil, err, code",
     "Writes every regular file below `dir` (sorted, recursively) into the gzip-compressed tar `out`, "
     "each entry named `opts.prefix/relative-path`. The archive is written to `out.tmp` and renamed into "
     "place (owner-only), so a reader never sees half an archive; `out` may lie inside `dir`."},
    {"list", l_list, "list(path)", "{{name=, size=}, ...} | nil, err, code", "The entries of an archive, in order."},
    {"read", l_read, "read(path, name)", "data | nil, err, code", "The content of one entry (`ENOENT` if absent)."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.archive", "tar.gz evidence archives", funcs};

int luaopen_kmsrun_archive(lua_State *L)
{
    kr_newmodule(L, &module);
    return 1;
}
