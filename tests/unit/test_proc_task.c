/* Unit tests of the process layer (proc.c) and the loop/yield contract (task.c),
 * driven from C with a real Lua state and libevent loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "proc.h"
#include "task.h"

static lua_State *L;

static int setup(void **state)
{
    (void)state;
    L = luaL_newstate();
    kr_host_open(L);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_proc_kill_all();
    kr_loop_shutdown(L);
    lua_close(L);
    kr_loop_free();
    return 0;
}

static int exits_seen;
static void on_exit_count(kr_proc *p, void *arg)
{
    (void)p; (void)arg;
    exits_seen++;
    event_base_loopbreak(kr_loop_base());
}

static void spawn_reports_exit_status(void **state)
{
    (void)state;
    const char *argv[] = {"sh", "-c", "exit 7", NULL};
    kr_spawn_opts o = {.argv = argv};
    char err[256];
    kr_proc *p = kr_proc_spawn(kr_loop_base(), &o, err, sizeof err);
    assert_non_null(p);
    exits_seen = 0;
    kr_proc_on_exit(p, on_exit_count, NULL);
    if (kr_proc_running(p)) event_base_dispatch(kr_loop_base());
    assert_int_equal(exits_seen, 1);
    int sig;
    assert_int_equal(kr_proc_status(p, &sig), 7);
    assert_int_equal(sig, 0);
    kr_proc_release(p);
}

static void spawn_missing_program_fails_cleanly(void **state)
{
    (void)state;
    const char *argv[] = {"/nonexistent/program", NULL};
    kr_spawn_opts o = {.argv = argv};
    char err[256];
    assert_null(kr_proc_spawn(kr_loop_base(), &o, err, sizeof err));
    assert_non_null(strstr(err, "cannot execute '/nonexistent/program'"));
}

static void signal_kills_the_process_group(void **state)
{
    (void)state;
    const char *argv[] = {"sleep", "30", NULL};
    kr_spawn_opts o = {.argv = argv};
    char err[256];
    kr_proc *p = kr_proc_spawn(kr_loop_base(), &o, err, sizeof err);
    assert_non_null(p);
    pid_t pid = kr_proc_pid(p);
    assert_int_equal(getpgid(pid), pid); /* its own group */
    exits_seen = 0;
    kr_proc_on_exit(p, on_exit_count, NULL);
    assert_int_equal(kr_proc_signal(p, SIGTERM), 0);
    event_base_dispatch(kr_loop_base());
    int sig;
    assert_int_equal(kr_proc_status(p, &sig), 128 + SIGTERM);
    assert_int_equal(sig, SIGTERM);
    kr_proc_release(p);
}

static void kill_all_leaves_no_child(void **state)
{
    (void)state;
    const char *argv[] = {"sleep", "30", NULL};
    kr_spawn_opts o = {.argv = argv};
    char err[256];
    kr_proc *a = kr_proc_spawn(kr_loop_base(), &o, err, sizeof err);
    kr_proc *b = kr_proc_spawn(kr_loop_base(), &o, err, sizeof err);
    pid_t pa = kr_proc_pid(a), pb = kr_proc_pid(b);
    kr_proc_release(a);
    kr_proc_release(b);
    kr_proc_kill_all();
    assert_int_equal(kill(pa, 0), -1);
    assert_int_equal(kill(pb, 0), -1);
}

/* The yield contract through Lua: a task sleeps, another runs meanwhile. */
static void tasks_interleave_through_the_loop(void **state)
{
    (void)state;
    const char *code =
        "local task = require 'kmsrun.lib.task'\n"
        "local time = require 'kmsrun.time'\n"
        "local core = require 'kmsrun.core'\n"
        "order = {}\n"
        "local a = task.spawn(function() time.sleep(0.01); order[#order+1] = 'a' end)\n"
        "local b = task.spawn(function() order[#order+1] = 'b' end)\n"
        "task.spawn(function() a:join(); b:join(); core.stop() end)\n"
        "return core.run()";
    assert_int_equal(luaL_dostring(L, code), LUA_OK);
    assert_true(lua_toboolean(L, -1)); /* stopped explicitly, not starved */
    assert_int_equal(luaL_dostring(L, "return table.concat(order, ',')"), LUA_OK);
    assert_string_equal(lua_tostring(L, -1), "b,a");
}

static void waiting_outside_a_task_is_an_error(void **state)
{
    (void)state;
    /* luaL_dostring is loadstring || pcall: non-zero means an error was raised. */
    assert_int_not_equal(luaL_dostring(L, "require('kmsrun.time').sleep(0)"), LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "time.sleep: cannot wait outside a task"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(spawn_reports_exit_status, setup, teardown),
        cmocka_unit_test_setup_teardown(spawn_missing_program_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(signal_kills_the_process_group, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_all_leaves_no_child, setup, teardown),
        cmocka_unit_test_setup_teardown(tasks_interleave_through_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_outside_a_task_is_an_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
