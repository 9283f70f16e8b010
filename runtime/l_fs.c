/* kmsrun.fs: files and directories (synchronous: local disk does not wait on the network). */
#include "fs.h"
#include "register.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *errno_code(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: case EPERM: return "EACCES";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    default: return "EIO";
    }
}

static mode_t opt_mode(lua_State *L, int idx, mode_t def)
{
    lua_Number m = kr_opt_number(L, idx, "mode", (lua_Number)def);
    if (m < 0 || m > 07777) kr_error(L, "mode must be between 0 and 4095 (octal 07777)");
    return (mode_t)m;
}

static int l_write(lua_State *L)
{
    static const char *const known[] = {"mode", NULL};
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    kr_check_opts(L, 3, "fs.write", known);
    char err[512];
    if (kr_fs_write_atomic(path, data, len, opt_mode(L, 3, 0600), err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.write: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_append(lua_State *L)
{
    static const char *const known[] = {"mode", "sync", NULL};
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    kr_check_opts(L, 3, "fs.append", known);
    char err[512];
    if (kr_fs_append(path, data, len, opt_mode(L, 3, 0600), kr_opt_bool(L, 3, "sync", 0), err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.append: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    FILE *f = fopen(path, "rb");
    if (!f) return kr_fail(L, errno_code(errno), "fs.read: cannot open '%s': %s", path, strerror(errno));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t n;
    do {
        char *p = luaL_prepbuffer(&b);
        n = fread(p, 1, LUAL_BUFFERSIZE, f);
        luaL_addsize(&b, n);
    } while (n == LUAL_BUFFERSIZE);
    int failed = ferror(f);
    fclose(f);
    if (failed) return kr_fail(L, "EIO", "fs.read: cannot read '%s'", path);
    luaL_pushresult(&b);
    return 1;
}

static int l_mkdir(lua_State *L)
{
    static const char *const known[] = {"mode", NULL};
    const char *path = luaL_checkstring(L, 1);
    kr_check_opts(L, 2, "fs.mkdir", known);
    char err[512];
    if (kr_fs_mkdir_p(path, opt_mode(L, 2, 0700), err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.mkdir: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_exists(lua_State *L)
{
    struct stat st;
    if (stat(luaL_checkstring(L, 1), &st) != 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "file" : "other");
    return 2;
}

static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) return kr_fail(L, errno_code(errno), "fs.stat: '%s': %s", path, strerror(errno));
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, st.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "file" : "other");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

static int l_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char **names, err[512];
    size_t n;
    if (kr_fs_list_sorted(path, &names, &n, err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.list: %s", err);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    kr_fs_free_names(names, n);
    return 1;
}

static int l_remove(lua_State *L)
{
    char err[512];
    if (kr_fs_remove_tree(luaL_checkstring(L, 1), err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.remove: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_tmpdir(lua_State *L)
{
    const char *prefix = luaL_optstring(L, 1, "kmsrun");
    const char *base = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
    if (!mkdtemp(path)) return kr_fail(L, errno_code(errno), "fs.tmpdir: %s", strerror(errno));
    lua_pushstring(L, path);
    return 1;
}

static int l_cwd(lua_State *L)
{
    char buf[4096];
    if (!getcwd(buf, sizeof buf)) return kr_fail(L, errno_code(errno), "fs.cwd: %s", strerror(errno));
    lua_pushstring(L, buf);
    return 1;
}

static int l_chmod(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = luaL_checkinteger(L, 2);
    if (chmod(path, (mode_t)mode) != 0) return kr_fail(L, errno_code(errno), "fs.chmod: '%s': %s", path, strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

static const kr_func funcs[] = {
    {"write", l_write, "write(path, data, opts)", "true | nil, err, code",
     "Replaces the file atomically: writes a temp file in the same directory, fsyncs it, sets `opts.mode` "
     "(default 0600, owner-only), renames it over `path` and fsyncs the directory. A reader sees the old or "
     "the new content, never a mix; a crash leaves the old file."},
    {"append", l_append, "append(path, data, opts)", "true | nil, err, code",
     "Appends `data` (created with `opts.mode`, default 0600). `opts.sync = true` fsyncs after writing, so "
     "what was appended survives a crash (used for transcripts and ledgers)."},
    {"read", l_read, "read(path)", "data | nil, err, code", "The whole file as a string. Codes: `ENOENT`, `EACCES`, `EISDIR`, `EIO`."},
    {"mkdir", l_mkdir, "mkdir(path, opts)", "true | nil, err, code",
     "Creates the directory and its missing parents (`opts.mode`, default 0700). Existing directories are fine."},
    {"exists", l_exists, "exists(path)", "boolean, kind", "Whether `path` exists; `kind` is `file`, `directory` or `other`."},
    {"stat", l_stat, "stat(path)", "{size, mode, kind, mtime} | nil, err, code", "File metadata; `mode` holds the permission bits."},
    {"list", l_list, "list(dir)", "{name, ...} | nil, err, code", "The names in a directory, sorted, without `.` and `..`."},
    {"remove", l_remove, "remove(path)", "true | nil, err, code", "Removes a file or a whole directory tree. A missing path is not an error."},
    {"tmpdir", l_tmpdir, "tmpdir([prefix])", "path | nil, err, code", "Creates a fresh private directory under `$TMPDIR` (or /tmp)."},
    {"cwd", l_cwd, "cwd()", "path", "The current working directory."},
    {"chmod", l_chmod, "chmod(path, mode)", "true | nil, err, code", "Sets the permission bits."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.fs", "files and directories", funcs};

int luaopen_kmsrun_fs(lua_State *L)
{
    kr_newmodule(L, &module);
    return 1;
}
