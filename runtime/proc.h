/* Child processes: spawn an argv (never through a shell), reap on SIGCHLD,
 * kill a process group with a grace period. Plain C; bound in l_proc.c. */
#ifndef KMSRUN_PROC_H
#define KMSRUN_PROC_H

#include <sys/types.h>

struct event_base;

typedef struct kr_proc kr_proc;
typedef void (*kr_proc_exit_fn)(kr_proc *p, void *arg);

typedef struct kr_spawn_opts {
    const char *const *argv;  /* NULL-terminated, argv[0] is the program (PATH searched) */
    const char *const *envp;  /* NULL-terminated "K=V" list, or NULL to inherit */
    const char *cwd;          /* NULL: inherit */
    const char *stdout_path;  /* NULL: /dev/null; appended, mode 0600 */
    const char *stderr_path;  /* NULL: /dev/null; may equal stdout_path */
} kr_spawn_opts;

/* Start the child; its exit is noticed by a SIGCHLD event on base (the first call's
 * base: there is one loop per process). On failure returns NULL with errno set and
 * a message in err. */
kr_proc *kr_proc_spawn(struct event_base *base, const kr_spawn_opts *o, char *err, size_t errlen);

pid_t kr_proc_pid(const kr_proc *p);
int kr_proc_running(const kr_proc *p);
/* Exit status once reaped: code (0-255) or 128+signal; signal is 0 unless killed. */
int kr_proc_status(const kr_proc *p, int *signal);

/* Call fn(p, arg) once when the process has been reaped (at once if it has). */
void kr_proc_on_exit(kr_proc *p, kr_proc_exit_fn fn, void *arg);
/* Remove a pending on_exit callback registered with the same fn and arg. */
void kr_proc_cancel_on_exit(kr_proc *p, kr_proc_exit_fn fn, void *arg);

/* Send sig to the child's process group. */
int kr_proc_signal(kr_proc *p, int sig);

/* The handle is no longer referenced from Lua: free it once reaped. */
void kr_proc_release(kr_proc *p);

/* Kill (SIGKILL) and reap every child still alive. Safe to call at any time. */
void kr_proc_kill_all(void);

#endif
