/* kmsrun.time: monotonic clock and sleep. */
#include "register.h"
#include "task.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    struct event *ev;
    kr_wait *w;
} sleep_op;

static int push_slept(lua_State *L, void *ctx)
{
    sleep_op *op = ctx;
    event_free(op->ev);
    free(op);
    (void)L;
    return 0;
}

static void cancel_sleep(void *ctx)
{
    sleep_op *op = ctx;
    event_free(op->ev);
    free(op);
}

static void sleep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    sleep_op *op = arg;
    kr_wait_done(op->w);
}

static int l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    if (s < 0) return kr_error(L, "seconds must be >= 0, got %f", s);
    kr_task_check(L, "time.sleep");
    sleep_op *op = calloc(1, sizeof *op);
    op->ev = evtimer_new(kr_loop_base(), sleep_cb, op);
    op->w = kr_wait_new(L, "time.sleep", push_slept, cancel_sleep, op);
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (time_t)s) * 1e6)};
    evtimer_add(op->ev, &tv);
    return kr_wait_yield(L, op->w);
}

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int l_wall(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int l_cpu(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static const kr_func funcs[] = {
    {"sleep", l_sleep, "sleep(seconds)", "nothing",
     "Suspends the running task for `seconds` (a number, fractions allowed) while other tasks run. "
     "Raises the cancellation value `kmsrun.core.CANCELLED` (it prints as `cancelled`) if the task is "
     "cancelled meanwhile."},
    {"now", l_now, "now()", "number", "Monotonic clock in seconds, for measuring durations and deadlines."},
    {"wall", l_wall, "wall()", "number", "Wall-clock time in seconds since the Unix epoch, with fractions."},
    {"cpu", l_cpu, "cpu()", "number", "CPU time consumed by this process so far, in seconds."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.time", "clocks and sleeping", funcs};

int luaopen_kmsrun_time(lua_State *L)
{
    kr_newmodule(L, &module);
    return 1;
}
