/* The loop and the yield contract (see task.h), plus the small `kmsrun.core`
 * module on which the Lua scheduler (stdlib/kmsrun/lib/task.lua) is built:
 * start, suspend, wake, cancel, run, stop, on_signal. */
#include "task.h"
#include "register.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { W_PENDING, W_READY, W_CANCELLED, W_KILLED };
enum { K_WAIT, K_START, K_PREEMPTED };

/* Preemption: Lua code that never waits (a busy loop, a long computation) would
 * keep the loop from running, so no timer (deadline watchdog) and no signal
 * (libevent delivers them from the loop) could reach it. A count hook, installed
 * on the main state before any coroutine exists (coroutines inherit it, as
 * lua.c's Ctrl-C hook reaches running code), yields the task the loop resumed
 * once it has run for a slice; the loop runs its callbacks and resumes it. A
 * task cancelled while preempted gets the cancellation raised where it stands. */
enum { HOOK_COUNT = 1000, SLICE_NS = 20 * 1000 * 1000 };

struct kr_wait {
    lua_State *co;
    int co_ref;        /* anchors the coroutine while it waits */
    kr_push_fn push;
    kr_cancel_fn cancel;
    void *ctx;
    char *what;        /* what the coroutine waits for, for diagnostics */
    int state;
    int completed;     /* the operation finished (ctx belongs to push) */
    int start_nargs;   /* >= 0: a fresh coroutine to start with that many args */
    int kind;          /* K_WAIT, K_START or K_PREEMPTED */
    kr_wait *next;
};

static struct {
    struct event_base *base;
    struct event *ready_ev;
    struct event *later_ev; /* the ready queue's next turn, after the loop polled */
    int in_ready;           /* inside ready_cb */
    struct event *sig_int, *sig_term, *sig_hup;
    kr_wait *ready_head, *ready_tail;
    lua_State *L;      /* main state: resumes happen from here */
    int stopped;
    lua_State *current;     /* the task the loop is resuming (the only one preempted) */
    long long resumed_ns;   /* when it was resumed */
    int preempted;          /* the hook yielded `current` */
    lua_State *raise_in;    /* a preempted task to raise the cancellation in */
} loop;

static const char WAITS_KEY = 'w'; /* registry: thread -> lightuserdata(kr_wait) */
static const char SIGNAL_KEY = 's'; /* registry: Lua signal callback */
static const char TASKS_KEY = 't'; /* registry: weak set of coroutines started as tasks */

static int is_task(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    lua_pushthread(L);
    int yes = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return yes;
}

struct event_base *kr_loop_base(void) { return loop.base; }

/* Inside the scheduler there is no caller to raise an error to. */
static void out_of_memory(const char *doing)
{
    fprintf(stderr, "kmsrun: out of memory %s\n", doing);
    abort();
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void preempt_hook(lua_State *L, lua_Debug *ar)
{
    if (ar->event != LUA_HOOKCOUNT) return;
    if (L == loop.raise_in) {
        loop.raise_in = NULL;
        lua_sethook(L, preempt_hook, LUA_MASKCOUNT, HOOK_COUNT);
        kr_raise_cancelled(L);
        return;
    }
    /* Only the coroutine the loop resumed: a yield from a plain coroutine nested in
     * a task would return into its resumer's coroutine.resume as if it had yielded. */
    if (L != loop.current || !lua_isyieldable(L)) return;
    if (now_ns() - loop.resumed_ns < SLICE_NS) return;
    loop.preempted = 1;
    lua_yield(L, 0);
}

static void enqueue(kr_wait *w)
{
    w->next = NULL;
    if (loop.ready_tail) loop.ready_tail->next = w; else loop.ready_head = w;
    loop.ready_tail = w;
    /* Queued from inside ready_cb: run on the next turn, after the loop polled
     * (libevent would otherwise run it in this same pass, and a task that keeps
     * yielding, preempted or not, would starve timers and signals). */
    if (!loop.in_ready) event_active(loop.ready_ev, EV_READ, 0);
}

/* [-0, +0, m] Uses co's own stack, balanced. */
static void set_wait_entry(lua_State *co, kr_wait *w)
{
    lua_rawgetp(co, LUA_REGISTRYINDEX, &WAITS_KEY);
    lua_pushthread(co);
    if (w) lua_pushlightuserdata(co, w); else lua_pushnil(co);
    lua_rawset(co, -3);
    lua_pop(co, 1);
}

static kr_wait *find_wait(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &WAITS_KEY);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    kr_wait *w = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return w;
}

static void wait_free(lua_State *L, kr_wait *w)
{
    luaL_unref(L, LUA_REGISTRYINDEX, w->co_ref);
    free(w->what);
    free(w);
}

static void resume(kr_wait *w)
{
    lua_State *co = w->co;
    int nargs = 0, nres = 0;
    if (w->state == W_KILLED) { /* core.kill detached it while it was queued */
        wait_free(loop.L, w);
        return;
    }
    if (w->kind == K_START) {
        nargs = w->start_nargs;
        if (w->state == W_CANCELLED) { /* never started: nothing to unwind */
            set_wait_entry(co, NULL);
            wait_free(co, w);
            return;
        }
    } else if (w->kind == K_PREEMPTED && w->state == W_CANCELLED) {
        /* Resumed where the hook yielded it: raise at the next hook call. */
        loop.raise_in = co;
        lua_sethook(co, preempt_hook, LUA_MASKCOUNT, 1);
    }
    /* Keep the coroutine anchored across the resume; the wait (and its
     * reference) is released by the continuation or right here. */
    lua_rawgeti(loop.L, LUA_REGISTRYINDEX, w->co_ref);
    int anchor = luaL_ref(loop.L, LUA_REGISTRYINDEX);
    if (w->kind != K_WAIT) {
        set_wait_entry(co, NULL);
        wait_free(co, w);
    }
    loop.current = co;
    loop.resumed_ns = now_ns();
    loop.preempted = 0;
    int status = lua_resume(co, loop.L, nargs, &nres);
    loop.current = NULL;
    if (loop.raise_in == co) { /* it ended before the hook ran */
        loop.raise_in = NULL;
        lua_sethook(co, preempt_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
    if (status == LUA_YIELD && loop.preempted) {
        /* A registered wait, so core.cancel / core.kill / core.waiting see it. */
        loop.preempted = 0;
        kr_wait *again = calloc(1, sizeof *again);
        again->co = co;
        lua_pushthread(co);
        lua_xmove(co, loop.L, 1);
        again->co_ref = luaL_ref(loop.L, LUA_REGISTRYINDEX);
        again->start_nargs = 0;
        again->kind = K_PREEMPTED;
        again->state = W_READY;
        again->what = strdup("busy in Lua code");
        set_wait_entry(co, again);
        enqueue(again);
    } else if (status == LUA_YIELD) {
        lua_pop(co, nres);
        lua_pushthread(co);
        lua_xmove(co, loop.L, 1);
        if (!find_wait(loop.L, -1)) {
            /* A plain coroutine.yield() inside a task: let others run, then continue. */
            kr_wait *again = calloc(1, sizeof *again);
            if (!again) out_of_memory("resuming a yielded task");
            again->co = co;
            lua_pushvalue(loop.L, -1);
            again->co_ref = luaL_ref(loop.L, LUA_REGISTRYINDEX);
            again->start_nargs = 0;
            again->kind = K_START;
            again->state = W_READY;
            enqueue(again);
        }
        lua_pop(loop.L, 1);
    } else if (status != LUA_OK) {
        /* Task bodies run under xpcall in task.lua, so this is a host bug or an
         * error raised while handling an error: report it and stop. */
        const char *msg = lua_tostring(co, -1);
        kr_error_write(loop.L, "kmsrun: uncaught error in task: ", msg);
        loop.stopped = 2;
        event_base_loopbreak(loop.base);
    }
    luaL_unref(loop.L, LUA_REGISTRYINDEX, anchor);
}

static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    kr_wait *w = loop.ready_head;
    loop.ready_head = loop.ready_tail = NULL;
    loop.in_ready = 1;
    while (w) {
        kr_wait *next = w->next;
        resume(w);
        w = next;
    }
    loop.in_ready = 0;
    if (loop.ready_head) {
        static const struct timeval now = {0, 0};
        event_add(loop.later_ev, &now);
    }
}

void kr_task_check(lua_State *L, const char *what)
{
    if (!lua_isyieldable(L) || L == loop.L || !is_task(L))
        luaL_error(L, "%s: cannot wait outside a task (call it from a runbook, a case or task.spawn)", what);
}

kr_wait *kr_wait_new(lua_State *L, const char *what, kr_push_fn push, kr_cancel_fn cancel, void *ctx)
{
    kr_task_check(L, what);
    kr_wait *w = calloc(1, sizeof *w);
    char *copy = strdup(what);
    if (!w || !copy) {
        free(w);
        free(copy);
        luaL_error(L, "%s: out of memory", what);
    }
    w->co = L;
    lua_pushthread(L);
    w->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w->push = push;
    w->cancel = cancel;
    w->ctx = ctx;
    w->what = copy;
    w->state = W_PENDING;
    w->start_nargs = -1;
    w->kind = K_WAIT;
    return w;
}

static int wait_continue(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    kr_wait *w = (kr_wait *)kctx;
    set_wait_entry(L, NULL);
    if (w->state == W_CANCELLED) {
        if (w->completed && w->push) { /* the result arrived before the cancel: drop it */
            int n = w->push(L, w->ctx);
            lua_pop(L, n);
        }
        wait_free(L, w);
        return kr_raise_cancelled(L);
    }
    int n = w->push ? w->push(L, w->ctx) : 0;
    wait_free(L, w);
    return n;
}

int kr_wait_yield(lua_State *L, kr_wait *w)
{
    set_wait_entry(L, w);
    return lua_yieldk(L, 0, (lua_KContext)w, wait_continue);
}

void kr_wait_done(kr_wait *w)
{
    if (w->state != W_PENDING) return;
    w->completed = 1;
    w->state = W_READY;
    enqueue(w);
}

/* ---- kmsrun.core --------------------------------------------------------- */

static int l_start(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    lua_State *co = lua_tothread(L, 1);
    if (lua_status(co) != LUA_OK || lua_gettop(co) != 1 || !lua_isfunction(co, 1))
        return kr_error(L, "coroutine must be fresh (created by coroutine.create, not yet resumed)");
    int nargs = lua_gettop(L) - 1;
    kr_wait *w = calloc(1, sizeof *w);
    char *what = strdup("start");
    if (!w || !what) {
        free(w);
        free(what);
        return luaL_error(L, "core.start: out of memory");
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    lua_pushvalue(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_xmove(L, co, nargs);
    w->co = co;
    lua_pushvalue(L, 1);
    w->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w->start_nargs = nargs;
    w->kind = K_START;
    w->state = W_READY;
    w->what = what;
    set_wait_entry(co, w);
    enqueue(w);
    return 0;
}

typedef struct { int ref; } wake_ctx;

static int push_woken(lua_State *L, void *ctx)
{
    wake_ctx *c = ctx;
    int n = 0;
    if (c->ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
        int t = lua_gettop(L);
        n = (int)luaL_len(L, t);
        luaL_checkstack(L, n, "too many values");
        for (int i = 1; i <= n; i++) lua_rawgeti(L, t, i);
        lua_remove(L, t);
        luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
    }
    free(c);
    return n;
}

static void cancel_woken(void *ctx)
{
    wake_ctx *c = ctx;
    luaL_unref(loop.L, LUA_REGISTRYINDEX, c->ref);
    free(c);
}

static int l_suspend(lua_State *L)
{
    const char *what = luaL_optstring(L, 1, "suspend");
    kr_task_check(L, what); /* before the allocation: kr_wait_new would raise and leak it */
    wake_ctx *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "%s: out of memory", what);
    c->ref = LUA_NOREF;
    kr_wait *w = kr_wait_new(L, what, push_woken, cancel_woken, c);
    return kr_wait_yield(L, w);
}

static int l_wake(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    kr_wait *w = find_wait(L, 1);
    if (!w || w->push != push_woken || w->state != W_PENDING) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int n = lua_gettop(L) - 1;
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_pushvalue(L, i + 1);
        lua_rawseti(L, -2, i);
    }
    ((wake_ctx *)w->ctx)->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    kr_wait_done(w);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_cancel(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    kr_wait *w = find_wait(L, 1);
    if (!w || w->state == W_CANCELLED) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (w->state == W_PENDING) {
        if (w->cancel) w->cancel(w->ctx);
        w->ctx = NULL;
        w->state = W_CANCELLED;
        enqueue(w);
    } else {
        w->state = W_CANCELLED; /* already queued; the continuation raises */
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Detach and free co's wait (its operation aborted), or leave a queued one to
 * resume(), which frees it without resuming. */
static void drop_wait(lua_State *L, lua_State *co, kr_wait *w)
{
    set_wait_entry(co, NULL);
    if (w->state == W_PENDING) {
        if (w->cancel) w->cancel(w->ctx);
        w->ctx = NULL;
        wait_free(L, w);
        return;
    }
    if (w->completed && w->push && w->ctx) { /* a result nobody will take: free it */
        int top = lua_gettop(L);
        w->push(L, w->ctx);
        lua_settop(L, top);
    }
    w->ctx = NULL;
    w->push = NULL;
    w->state = W_KILLED; /* queued: resume() frees it */
}

static int l_kill(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    lua_State *co = lua_tothread(L, 1);
    lua_Debug ar;
    if (co == L || co == loop.L || (lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar) > 0))
        return kr_error(L, "cannot kill a running coroutine (only a suspended task)");
    if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) { /* finished already */
        lua_pushboolean(L, 0);
        return 1;
    }
    kr_wait *w = find_wait(L, 1);
    if (w) drop_wait(L, co, w);
    if (loop.raise_in == co) loop.raise_in = NULL;
    /* Unwinds without running its code further: pending to-be-closed variables are
     * closed (their errors are not the killer's), the stack is discarded. */
    lua_resetthread(co);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_waiting(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    kr_wait *w = find_wait(L, 1);
    if (!w) return 0;
    lua_pushstring(L, w->what);
    return 1;
}

static int l_run(lua_State *L)
{
    loop.stopped = 0;
    event_base_dispatch(loop.base);
    if (loop.stopped == 2) return luaL_error(L, "core.run: the loop stopped on an uncaught task error");
    lua_pushboolean(L, loop.stopped);   /* false: nothing left to wait for */
    return 1;
}

static int l_stop(lua_State *L)
{
    (void)L;
    loop.stopped = 1;
    event_base_loopbreak(loop.base);
    return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what; (void)arg;
    lua_State *L = loop.L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &SIGNAL_KEY);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        loop.stopped = 1;
        event_base_loopbreak(loop.base);
        return;
    }
    lua_pushstring(L, sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        kr_error_write(L, "kmsrun: signal handler failed: ", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

static int l_on_signal(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SIGNAL_KEY);
    return 0;
}

static const kr_func core_funcs[] = {
    {"start", l_start, "start(co, ...)", "nothing",
     "Schedules the fresh coroutine `co` to run on the next loop turn with the given arguments. "
     "Low level: runbooks use `task.spawn`."},
    {"suspend", l_suspend, "suspend([what])", "the values passed to `wake`",
     "Suspends the running task until another task calls `core.wake` on it. `what` describes the wait "
     "for diagnostics. Raises `core.CANCELLED` if the task is cancelled while suspended."},
    {"wake", l_wake, "wake(co, ...)", "boolean",
     "Resumes a task suspended by `core.suspend` on a later loop turn, making `suspend` return the values. "
     "Returns false if `co` is not suspended."},
    {"cancel", l_cancel, "cancel(co)", "boolean",
     "Aborts what the task `co` waits for (request, sleep, process wait) and makes that primitive raise "
     "`core.CANCELLED` inside it: one unique value (a table whose `tostring` is `cancelled`), raised "
     "as is, so test for it with `rawequal(err, core.CANCELLED)` (`task.is_cancelled`), never by its "
     "text. Returns false if `co` is not waiting."},
    {"kill", l_kill, "kill(co)", "boolean",
     "Ends the suspended task `co` for good: what it waits for is aborted, its pending to-be-closed variables "
     "are closed and it never runs again (`pcall` inside it cannot catch this). For a task that ignored "
     "`cancel`. Returns false if `co` had already finished. Low level: use `task:kill`."},
    {"waiting", l_waiting, "waiting(co)", "string | nil",
     "Describes what the task `co` is waiting for, e.g. `http.request POST https://127.0.0.1:4431/status`."},
    {"run", l_run, "run()", "boolean",
     "Runs the event loop until `core.stop` is called (returns true) or nothing is left to wait for (returns false)."},
    {"stop", l_stop, "stop()", "nothing", "Makes `core.run` return after the current callback."},
    {"on_signal", l_on_signal, "on_signal(fn)", "nothing",
     "Calls `fn(name)` with `SIGINT`, `SIGTERM` or `SIGHUP` when the process receives it. `fn` runs outside any "
     "task and must not wait; it typically spawns a task that cancels the run and cleans up. Busy Lua code is "
     "preempted every few milliseconds (a count hook yields the running task), so signals and timers reach "
     "code that never waits."},
    {"set_error_writer", kr_set_error_writer, "set_error_writer(fn)", "nothing",
     "Makes the host write its own error texts (an uncaught error, a failing HTTP handler) by calling "
     "`fn(text)` instead of writing to stderr, so they pass the same filter as every other output."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module core_module = {"kmsrun.core", "the event loop and task primitives the scheduler is built on", core_funcs};

int luaopen_kmsrun_core(lua_State *L)
{
    kr_newmodule(L, &core_module);
    kr_push_cancelled(L);
    lua_setfield(L, -2, "CANCELLED");
    return 1;
}

int kr_loop_init(lua_State *L)
{
    loop.L = L;
    /* Precise timers: the default coarse clock rounds every sleep and timeout
     * up to the kernel tick (~4 ms), which readiness polling would pay for. */
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    loop.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!loop.base) return -1;
    loop.ready_ev = event_new(loop.base, -1, 0, ready_cb, NULL);
    loop.later_ev = evtimer_new(loop.base, ready_cb, NULL);
    loop.sig_int = evsignal_new(loop.base, SIGINT, signal_cb, NULL);
    loop.sig_term = evsignal_new(loop.base, SIGTERM, signal_cb, NULL);
    loop.sig_hup = evsignal_new(loop.base, SIGHUP, signal_cb, NULL);
    evsignal_add(loop.sig_int, NULL);
    evsignal_add(loop.sig_term, NULL);
    evsignal_add(loop.sig_hup, NULL);
    /* Before any coroutine exists: each one inherits the hook from its creator. */
    lua_sethook(L, preempt_hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &WAITS_KEY);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    kr_cancelled_init(L);
    return 0;
}

void kr_loop_shutdown(lua_State *L)
{
    /* Plain-yield entries are only in the queue; every other wait is in the table. */
    for (kr_wait *w = loop.ready_head, *next; w; w = next) {
        next = w->next;
        if (!w->what) free(w);
    }
    loop.ready_head = loop.ready_tail = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &WAITS_KEY);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        kr_wait *w = lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (w->state == W_PENDING && w->cancel) {
            w->cancel(w->ctx);
        } else if (w->completed && w->state == W_READY && w->push) {
            int top = lua_gettop(L);
            w->push(L, w->ctx);
            lua_settop(L, top);
        }
        free(w->what);
        free(w);
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &WAITS_KEY);
}

void kr_loop_free(void)
{
    if (!loop.base) return;
    event_free(loop.ready_ev);
    event_free(loop.later_ev);
    event_free(loop.sig_int);
    event_free(loop.sig_term);
    event_free(loop.sig_hup);
    event_base_free(loop.base);
    loop.base = NULL;
}
