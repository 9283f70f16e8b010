/* kmsrun.fs: files and directories (synchronous: local disk does not wait on the network). */
#include "fs.h"
#include "register.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
    case ELOOP: return "ELOOP";
    case EINVAL: return "EINVAL";
    case EWOULDBLOCK: return "EBUSY";
    default: return "EIO";
    }
}

static mode_t opt_mode(lua_State *L, int idx, mode_t def)
{
    lua_Number m = kr_opt_number(L, idx, "mode", (lua_Number)def);
    if (m < 0 || m > 07777) kr_error(L, "mode must be between 0 and 4095 (octal 07777)");
    return (mode_t)m;
}

/* opts.beneath: path is relative to that directory and no link is followed. */
static const char *opt_beneath(lua_State *L, int idx)
{
    return kr_opt_string(L, idx, "beneath", NULL, NULL);
}

static int l_write(lua_State *L)
{
    static const char *const known[] = {"mode", "beneath", NULL};
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    kr_check_opts(L, 3, "fs.write", known);
    char err[512];
    const char *root = opt_beneath(L, 3);
    if (root ? kr_fs_write_beneath(root, path, data, len, opt_mode(L, 3, 0600), err, sizeof err) != 0
             : kr_fs_write_atomic(path, data, len, opt_mode(L, 3, 0600), err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.write: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_append(lua_State *L)
{
    static const char *const known[] = {"mode", "sync", "beneath", "nofollow", NULL};
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    kr_check_opts(L, 3, "fs.append", known);
    char err[512];
    const char *root = opt_beneath(L, 3);
    mode_t mode = opt_mode(L, 3, 0600);
    int sync = kr_opt_bool(L, 3, "sync", 0);
    if (!root && kr_opt_bool(L, 3, "nofollow", 0)) {
        /* The final component only (a link there is ELOOP): for a file named by the user. */
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0) return kr_fail(L, errno_code(errno), "fs.append: cannot open '%s': %s", path,
                                   errno == ELOOP ? "it is a symbolic link (not followed)" : strerror(errno));
        const char *p = data;
        size_t left = len;
        while (left) {
            ssize_t n = write(fd, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                int e = errno;
                close(fd);
                return kr_fail(L, errno_code(e), "fs.append: cannot append to '%s': %s", path, strerror(e));
            }
            p += n;
            left -= (size_t)n;
        }
        if (sync) fsync(fd);
        close(fd);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (root ? kr_fs_append_beneath(root, path, data, len, mode, sync, err, sizeof err) != 0
             : kr_fs_append(path, data, len, mode, sync, err, sizeof err) != 0)
        return kr_fail(L, errno_code(errno), "fs.append: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_read(lua_State *L)
{
    static const char *const known[] = {"beneath", NULL};
    const char *path = luaL_checkstring(L, 1);
    kr_check_opts(L, 2, "fs.read", known);
    const char *root = opt_beneath(L, 2);
    FILE *f;
    if (root) {
        char err[512];
        int fd = kr_fs_open_beneath(root, path, O_RDONLY | O_NONBLOCK, 0, 0, err, sizeof err);
        if (fd < 0) return kr_fail(L, errno_code(errno), "fs.read: %s", err);
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return kr_fail(L, "EINVAL", "fs.read: '%s' is not a regular file", path);
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        f = fdopen(fd, "rb");
    } else {
        f = fopen(path, "rb");
    }
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
    static const char *const known[] = {"mode", "beneath", NULL};
    const char *path = luaL_checkstring(L, 1);
    kr_check_opts(L, 2, "fs.mkdir", known);
    char err[512];
    const char *root = opt_beneath(L, 2);
    if (root ? kr_fs_mkdir_beneath(root, path, opt_mode(L, 2, 0700), err, sizeof err) != 0
             : kr_fs_mkdir_p(path, opt_mode(L, 2, 0700), err, sizeof err) != 0)
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
    static const char *const known[] = {"nofollow", NULL};
    const char *path = luaL_checkstring(L, 1);
    kr_check_opts(L, 2, "fs.stat", known);
    struct stat st;
    int nofollow = kr_opt_bool(L, 2, "nofollow", 0);
    if ((nofollow ? lstat(path, &st) : stat(path, &st)) != 0)
        return kr_fail(L, errno_code(errno), "fs.stat: '%s': %s", path, strerror(errno));
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)getuid());
    lua_setfield(L, -2, "my_uid");
    lua_pushinteger(L, (lua_Integer)st.st_nlink);
    lua_setfield(L, -2, "nlink");
    if (S_ISLNK(st.st_mode)) {
        lua_pushinteger(L, (lua_Integer)st.st_size);
        lua_setfield(L, -2, "size");
        lua_pushinteger(L, st.st_mode & 07777);
        lua_setfield(L, -2, "mode");
        lua_pushliteral(L, "link");
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, (lua_Integer)st.st_mtime);
        lua_setfield(L, -2, "mtime");
        return 1;
    }
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

static int l_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *text = luaL_optstring(L, 2, NULL);
    char err[512];
    if (kr_fs_lock(path, text, err, sizeof err) != 0) return kr_fail(L, errno_code(errno), "fs.lock: %s", err);
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
     "the new content, never a mix; a crash leaves the old file. `opts.beneath = dir`: `path` is relative "
     "to `dir` and no symbolic link is followed on the way (missing directories are created, 0700); a link "
     "is `ELOOP`, a `..` or absolute path `EINVAL`."},
    {"append", l_append, "append(path, data, opts)", "true | nil, err, code",
     "Appends `data` (created with `opts.mode`, default 0600). `opts.sync = true` fsyncs after writing, so "
     "what was appended survives a crash (used for transcripts and ledgers). `opts.beneath` as for `write` "
     "(and only a regular file is appended to); `opts.nofollow = true` refuses a symbolic link at `path`."},
    {"read", l_read, "read(path, opts)", "data | nil, err, code",
     "The whole file as a string. Codes: `ENOENT`, `EACCES`, `EISDIR`, `EIO`. `opts.beneath` as for `write` "
     "(only a regular file is read)."},
    {"mkdir", l_mkdir, "mkdir(path, opts)", "true | nil, err, code",
     "Creates the directory and its missing parents (`opts.mode`, default 0700). Existing directories are fine. "
     "`opts.beneath` as for `write`."},
    {"lock", l_lock, "lock(path, [text])", "true | nil, err, code",
     "Takes an exclusive lock on `path` (created 0600; a symbolic link is refused) for the rest of the "
     "process's life: whatever ends the process releases it. `text` replaces the file's content once locked. "
     "Code `EBUSY`: another process holds it."},
    {"exists", l_exists, "exists(path)", "boolean, kind", "Whether `path` exists; `kind` is `file`, `directory` or `other`."},
    {"stat", l_stat, "stat(path, opts)", "{size, mode, kind, mtime, uid, my_uid, nlink} | nil, err, code",
     "File metadata; `mode` holds the permission bits, `uid` the owner (`my_uid`: this process's user). "
     "`opts.nofollow = true` describes a symbolic link itself (`kind = \"link\"`)."},
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
