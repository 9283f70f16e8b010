/* kmsrun.proc: child processes as handles. */
#include "proc.h"
#include "register.h"
#include "task.h"

#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROC_MT "kmsrun.process"

typedef struct {
    kr_proc *p;
} proc_ud;

/* A task waiting for a process, optionally with a timeout; also used by kill. */
typedef struct {
    kr_proc *p;
    kr_wait *w;
    struct event *timer;
    int timed_out;
    int kill_after; /* kill: escalate to SIGKILL when the timer fires */
} wait_op;

static kr_proc *check_proc(lua_State *L)
{
    proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
    return u->p;
}

static void op_free(wait_op *op)
{
    if (op->timer) event_free(op->timer);
    free(op);
}

static int push_wait_result(lua_State *L, void *ctx)
{
    wait_op *op = ctx;
    kr_proc *p = op->p;
    int timed_out = op->timed_out;
    op_free(op);
    if (timed_out) return kr_fail(L, "ETIMEDOUT", "proc.wait: timed out waiting for process %d", (int)kr_proc_pid(p));
    int sig;
    int code = kr_proc_status(p, &sig);
    lua_pushinteger(L, code);
    if (sig) lua_pushstring(L, sigabbrev_np(sig)); else lua_pushnil(L);
    return 2;
}

static void on_exit_cb(kr_proc *p, void *arg)
{
    (void)p;
    wait_op *op = arg;
    if (op->timer) evtimer_del(op->timer);
    kr_wait_done(op->w);
}

static void cancel_wait(void *ctx)
{
    wait_op *op = ctx;
    kr_proc_cancel_on_exit(op->p, on_exit_cb, op);
    op_free(op);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    wait_op *op = arg;
    if (op->kill_after) { /* grace period over: no more asking */
        op->kill_after = 0;
        kr_proc_signal(op->p, SIGKILL);
        return;
    }
    op->timed_out = 1;
    kr_proc_cancel_on_exit(op->p, on_exit_cb, op);
    kr_wait_done(op->w);
}

static int wait_for(lua_State *L, kr_proc *p, double timeout, int kill_after, const char *what)
{
    kr_task_check(L, what);
    wait_op *op = calloc(1, sizeof *op);
    op->p = p;
    op->kill_after = kill_after;
    op->w = kr_wait_new(L, what, push_wait_result, cancel_wait, op);
    if (timeout >= 0) {
        op->timer = evtimer_new(kr_loop_base(), timer_cb, op);
        struct timeval tv = {(time_t)timeout, (suseconds_t)((timeout - (time_t)timeout) * 1e6)};
        evtimer_add(op->timer, &tv);
    }
    kr_proc_on_exit(p, on_exit_cb, op);
    return kr_wait_yield(L, op->w);
}

static int l_wait(lua_State *L)
{
    kr_proc *p = check_proc(L);
    double timeout = luaL_optnumber(L, 2, -1);
    if (!kr_proc_running(p)) {
        int sig, code = kr_proc_status(p, &sig);
        lua_pushinteger(L, code);
        if (sig) lua_pushstring(L, sigabbrev_np(sig)); else lua_pushnil(L);
        return 2;
    }
    return wait_for(L, p, timeout, 0, "proc.wait");
}

static int l_kill(lua_State *L)
{
    kr_proc *p = check_proc(L);
    double grace = luaL_optnumber(L, 2, 5);
    if (!kr_proc_running(p)) return l_wait(L);
    if (grace <= 0) {
        kr_proc_signal(p, SIGKILL);
        return wait_for(L, p, -1, 0, "proc.kill");
    }
    kr_proc_signal(p, SIGTERM);
    return wait_for(L, p, grace, 1, "proc.kill");
}

static const struct { const char *name; int sig; } signals[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT}, {"KILL", SIGKILL}, {"HUP", SIGHUP},
    {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {NULL, 0}};

static int l_signal(lua_State *L)
{
    kr_proc *p = check_proc(L);
    const char *name = luaL_checkstring(L, 2);
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    for (int i = 0; signals[i].name; i++)
        if (strcmp(signals[i].name, name) == 0) {
            if (kr_proc_signal(p, signals[i].sig) != 0)
                return kr_fail(L, "ESRCH", "proc.signal: %s", strerror(errno));
            lua_pushboolean(L, 1);
            return 1;
        }
    return kr_error(L, "unknown signal '%s'", name);
}

static int l_running(lua_State *L)
{
    lua_pushboolean(L, kr_proc_running(check_proc(L)));
    return 1;
}

static int l_index(lua_State *L)
{
    kr_proc *p = check_proc(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "pid") == 0) {
        lua_pushinteger(L, kr_proc_pid(p));
        return 1;
    }
    luaL_getmetatable(L, PROC_MT);
    lua_getfield(L, -1, k);
    return 1;
}

static int l_tostring(lua_State *L)
{
    kr_proc *p = check_proc(L);
    if (kr_proc_running(p)) {
        lua_pushfstring(L, "process %d (running)", (int)kr_proc_pid(p));
    } else {
        int sig, code = kr_proc_status(p, &sig);
        if (sig) lua_pushfstring(L, "process %d (killed by SIG%s)", (int)kr_proc_pid(p), sigabbrev_np(sig));
        else lua_pushfstring(L, "process %d (exited %d)", (int)kr_proc_pid(p), code);
    }
    return 1;
}

static int l_gc(lua_State *L)
{
    proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
    if (u->p) kr_proc_release(u->p);
    u->p = NULL;
    return 0;
}

/* __close: a process scoped to a block is stopped when the block ends. */
static int l_close(lua_State *L)
{
    kr_proc *p = check_proc(L);
    if (kr_proc_running(p) && lua_isyieldable(L)) {
        lua_settop(L, 1);
        lua_pushnumber(L, 5);
        return l_kill(L);
    }
    if (kr_proc_running(p)) kr_proc_signal(p, SIGKILL);
    return 0;
}

static const char **string_list(lua_State *L, int idx, const char *what, int allow_empty)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n == 0 && !allow_empty) kr_error(L, "%s must not be empty", what);
    const char **list = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING) kr_error(L, "%s[%d] must be a string", what, (int)i);
        list[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by the table */
    }
    list[n] = NULL;
    return list;
}

extern char **environ;

/* Build "K=V" strings: the current environment overridden by opts.env. */
static const char **build_env(lua_State *L, int opts)
{
    if (lua_getfield(L, opts, "env") == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    int env = lua_gettop(L);
    luaL_checktype(L, env, LUA_TTABLE);
    int clear = kr_opt_bool(L, opts, "clear_env", 0);
    lua_newtable(L); /* name -> "K=V" */
    int merged = lua_gettop(L);
    if (!clear)
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq) continue;
            lua_pushlstring(L, *e, (size_t)(eq - *e));
            lua_pushstring(L, *e);
            lua_rawset(L, merged);
        }
    lua_pushnil(L);
    while (lua_next(L, env)) {
        if (lua_type(L, -2) != LUA_TSTRING || (!lua_isstring(L, -1) && !lua_isboolean(L, -1)))
            kr_error(L, "env must map names to strings");
        lua_pushvalue(L, -2);
        if (lua_isboolean(L, -2) && !lua_toboolean(L, -2)) {
            lua_pushnil(L); /* env = {NAME = false} removes NAME */
        } else {
            lua_pushfstring(L, "%s=%s", lua_tostring(L, -3), lua_tostring(L, -2));
        }
        lua_rawset(L, merged);
        lua_pop(L, 1);
    }
    lua_newtable(L);
    int list = lua_gettop(L);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, merged)) {
        lua_rawseti(L, list, ++n);
    }
    return string_list(L, list, "env", 1);
}

static int l_spawn(lua_State *L)
{
    static const char *const known[] = {"env", "clear_env", "cwd", "stdout", "stderr", NULL};
    lua_settop(L, 2); /* the lists built below go above the options slot */
    kr_check_opts(L, 2, "proc.spawn", known);
    kr_spawn_opts o = {0};
    o.argv = string_list(L, 1, "argv", 0);
    o.cwd = kr_opt_string(L, 2, "cwd", NULL, NULL);
    o.stdout_path = kr_opt_string(L, 2, "stdout", NULL, NULL);
    o.stderr_path = kr_opt_string(L, 2, "stderr", NULL, NULL);
    if (!lua_isnoneornil(L, 2)) o.envp = build_env(L, 2);
    char err[512];
    kr_proc *p = kr_proc_spawn(kr_loop_base(), &o, err, sizeof err);
    if (!p) {
        /* ENOENT/EACCES name a program that cannot be run; a log file that cannot
         * be opened (read-only or full directory) is ESPAWN with its own message. */
        int exec_failed = strncmp(err, "cannot execute", 14) == 0;
        return kr_fail(L, exec_failed && errno == ENOENT ? "ENOENT" : exec_failed && errno == EACCES ? "EACCES" : "ESPAWN",
                       "proc.spawn: %s", err);
    }
    proc_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->p = p;
    luaL_setmetatable(L, PROC_MT);
    return 1;
}

static int l_exe(lua_State *L)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0) return kr_fail(L, "ENOENT", "proc.exe: %s", strerror(errno));
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

static int l_alive(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM));
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static const kr_func funcs[] = {
    {"spawn", l_spawn, "spawn(argv, opts)", "process | nil, err, code",
     "Starts `argv[1]` (searched in `PATH`) with the arguments `argv[2..]`, never through a shell. "
     "Options: `env` (table name -> value merged over the current environment; `false` removes a name), "
     "`clear_env` (start from an empty environment), `cwd`, `stdout` and `stderr` (file paths, appended, "
     "created owner-only, never through a symbolic link; default /dev/null; may be the same file). The child gets its own process group "
     "and is killed if kmsrun dies. Fails with `ENOENT`/`EACCES` when the program cannot be executed."},
    {"exe", l_exe, "exe()", "string", "The path of the running kmsrun binary, to start `kmsrun serve ...` children."},
    {"alive", l_alive, "alive(pid)", "boolean", "Whether a process with that pid exists (for leak checks in tests)."},
    {"getpid", l_getpid, "getpid()", "integer", "The pid of kmsrun itself."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_func methods[] = {
    {"wait", l_wait, "process:wait([timeout])", "code, signal | nil, err, \"ETIMEDOUT\"",
     "Waits for the process to exit. `code` is its exit status, or 128+N when killed by signal N "
     "(then `signal` is its name, e.g. `KILL`)."},
    {"kill", l_kill, "process:kill([grace])", "code, signal",
     "Sends SIGTERM to the process group, waits up to `grace` seconds (default 5), then SIGKILL; returns like `wait`."},
    {"signal", l_signal, "process:signal(name)", "true | nil, err, code",
     "Sends a signal (`TERM`, `INT`, `KILL`, `HUP`, `STOP`, `CONT`, `USR1`, `USR2`) to the process group."},
    {"running", l_running, "process:running()", "boolean", "Whether the process has not been reaped yet."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.proc", "child processes", funcs};
static const kr_module process_methods = {"kmsrun.process", "process handle methods", methods};

static const luaL_Reg process_meta[] = {
    {"__index", l_index}, {"__tostring", l_tostring}, {"__gc", l_gc}, {"__close", l_close}, {"close", l_close},
    {NULL, NULL}};

/* The handle's metatable holds its documented methods (from kmsrun.process) and metamethods. */
int luaopen_kmsrun_proc(lua_State *L)
{
    if (luaL_newmetatable(L, PROC_MT)) {
        kr_newmodule(L, &process_methods);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        }
        lua_pop(L, 1);
        luaL_setfuncs(L, process_meta, 0);
    }
    lua_pop(L, 1);
    kr_newmodule(L, &module);
    return 1;
}
