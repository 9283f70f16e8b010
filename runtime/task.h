/* The one yield contract shared by every waiting primitive.
 *
 * A primitive starts its operation. If the result is already there it pushes
 * it and returns. Otherwise it creates a kr_wait naming the function that
 * pushes the results, and returns kr_wait_yield(). When the operation
 * completes, the loop calls kr_wait_done(); the coroutine is resumed from the
 * ready queue, the same push function runs on the coroutine, and its values
 * become the primitive's return values.
 *
 * Cancellation (a task cancelled by `parallel`, Ctrl-C) calls the wait's
 * cancel function, which must abort the operation and free its context; the
 * primitive then raises the cancellation sentinel (core.CANCELLED, a unique
 * value whose tostring is "cancelled") inside the coroutine so that
 * pcall/to-be-closed variables unwind it normally. */
#ifndef KMSRUN_TASK_H
#define KMSRUN_TASK_H

#include <lua.h>
#include <event2/event.h>

typedef struct kr_wait kr_wait;

/* [-0, +n, m] Push the results on L and return how many. Owns ctx from here on. */
typedef int (*kr_push_fn)(lua_State *L, void *ctx);
/* Abort the operation and free ctx; kr_wait_done must not be called after. */
typedef void (*kr_cancel_fn)(void *ctx);

/* Writes prefix, msg and a newline through the writer set by core.set_error_writer
 * (the redacting terminal), or to stderr when none is set or it fails
 * (task_error_writer.c, with core.set_error_writer itself). */
void kr_error_write(lua_State *L, const char *prefix, const char *msg);
int kr_set_error_writer(lua_State *L);

/* The cancellation sentinel (task_cancelled.c). kr_cancelled_init creates it
 * (kr_loop_init calls it); [-0, +0, v] kr_raise_cancelled raises it as is;
 * [-0, +1, -] kr_push_cancelled pushes it. */
void kr_cancelled_init(lua_State *L);
int kr_raise_cancelled(lua_State *L);
void kr_push_cancelled(lua_State *L);

/* Loop lifetime. */
struct event_base *kr_loop_base(void);
int kr_loop_init(lua_State *L);
/* Before lua_close: abort every wait still pending, free every queued one. */
void kr_loop_shutdown(lua_State *L);
void kr_loop_free(void);

/* [-0, +0, e] Raise "<what>: cannot wait outside a task" unless L is a task
 * that can yield. Call it before allocating anything for the operation. */
void kr_task_check(lua_State *L, const char *what);

/* [-0, +0, m] Create a wait for the running coroutine L. Raises a clear error
 * ("<what>: cannot wait outside a task") when L cannot yield. */
kr_wait *kr_wait_new(lua_State *L, const char *what, kr_push_fn push, kr_cancel_fn cancel, void *ctx);

/* [-?, +?, -] Suspend L until the wait is done; returns into the coroutine. */
int kr_wait_yield(lua_State *L, kr_wait *w);

/* The operation behind w has completed: schedule the coroutine's resumption. */
void kr_wait_done(kr_wait *w);

#endif
