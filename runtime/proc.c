#include "proc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct exit_cb {
    kr_proc_exit_fn fn;
    void *arg;
    struct exit_cb *next;
} exit_cb;

struct kr_proc {
    pid_t pid;
    int running;
    int code, signal;
    int released;
    exit_cb *callbacks;
    kr_proc *next;
};

static kr_proc *children;
static struct event *sigchld_ev;

static void unlink_child(kr_proc *p)
{
    for (kr_proc **pp = &children; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

static void mark_exited(kr_proc *p, int status)
{
    p->running = 0;
    if (WIFSIGNALED(status)) {
        p->signal = WTERMSIG(status);
        p->code = 128 + p->signal;
    } else {
        p->code = WEXITSTATUS(status);
    }
    exit_cb *cb = p->callbacks;
    p->callbacks = NULL;
    while (cb) {
        exit_cb *next = cb->next;
        cb->fn(p, cb->arg);
        free(cb);
        cb = next;
    }
    if (p->released) {
        unlink_child(p);
        free(p);
    }
}

static void reap(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        for (kr_proc *p = children; p; p = p->next)
            if (p->pid == pid && p->running) {
                mark_exited(p, status);
                break;
            }
    }
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    reap();
}

enum { STAGE_EXEC, STAGE_OPEN_STDOUT, STAGE_OPEN_STDERR, STAGE_DUP, STAGE_CHDIR };

static void child_exec(const kr_spawn_opts *o, int report_fd, pid_t parent)
{
    /* Die with kmsrun, even if it is SIGKILLed. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);

    /* What failed is reported with errno: a log file that cannot be created (a
     * read-only or full output directory) is not "cannot execute". A log path
     * that is a symbolic link is refused (ELOOP): it would send the log elsewhere. */
    int stage = STAGE_OPEN_STDOUT;
    int in = open("/dev/null", O_RDONLY);
    int out = o->stdout_path ? open(o->stdout_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600) : open("/dev/null", O_WRONLY);
    if (in < 0 || out < 0) goto fail;
    stage = STAGE_OPEN_STDERR;
    int err;
    if (o->stderr_path && o->stdout_path && strcmp(o->stderr_path, o->stdout_path) == 0) err = dup(out);
    else err = o->stderr_path ? open(o->stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600) : open("/dev/null", O_WRONLY);
    if (err < 0) goto fail;
    stage = STAGE_DUP;
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) goto fail;
    stage = STAGE_CHDIR;
    if (o->cwd && chdir(o->cwd) != 0) goto fail;
    /* Keep only stdio and the exec report pipe (close-on-exec). */
    for (int fd = 3; fd < 1024; fd++)
        if (fd != report_fd) close(fd);
    stage = STAGE_EXEC;
    if (o->envp) execvpe(o->argv[0], (char *const *)o->argv, (char *const *)o->envp);
    else execvp(o->argv[0], (char *const *)o->argv);
fail:;
    int report[2] = {stage, errno};
    ssize_t r = write(report_fd, report, sizeof report);
    (void)r;
    _exit(127);
}

kr_proc *kr_proc_spawn(struct event_base *base, const kr_spawn_opts *o, char *errmsg, size_t errlen)
{
    if (!sigchld_ev) {
        sigchld_ev = evsignal_new(base, SIGCHLD, sigchld_cb, NULL);
        evsignal_add(sigchld_ev, NULL);
    }
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(errmsg, errlen, "pipe: %s", strerror(errno));
        return NULL;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        snprintf(errmsg, errlen, "fork: %s", strerror(e));
        errno = e;
        return NULL;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(o, pipefd[1], parent);
    }
    close(pipefd[1]);
    int report[2] = {0, 0};
    ssize_t n;
    do n = read(pipefd[0], report, sizeof report);
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == sizeof report) {
        /* Setting up or exec failed: the child has exited with 127; reap it now. */
        int child_errno = report[1];
        waitpid(pid, NULL, 0);
        const char *e = strerror(child_errno);
        switch (report[0]) {
        case STAGE_OPEN_STDOUT:
            snprintf(errmsg, errlen, "cannot open '%s' for the output of '%s': %s",
                     o->stdout_path ? o->stdout_path : "/dev/null", o->argv[0], e);
            break;
        case STAGE_OPEN_STDERR:
            snprintf(errmsg, errlen, "cannot open '%s' for the errors of '%s': %s",
                     o->stderr_path ? o->stderr_path : "/dev/null", o->argv[0], e);
            break;
        case STAGE_CHDIR:
            snprintf(errmsg, errlen, "cannot enter '%s' to start '%s': %s", o->cwd, o->argv[0], e);
            break;
        case STAGE_DUP:
            snprintf(errmsg, errlen, "cannot set up the standard streams of '%s': %s", o->argv[0], e);
            break;
        default:
            snprintf(errmsg, errlen, "cannot execute '%s': %s", o->argv[0], e);
        }
        errno = child_errno;
        return NULL;
    }
    kr_proc *p = calloc(1, sizeof *p);
    p->pid = pid;
    p->running = 1;
    p->next = children;
    children = p;
    /* The child may already be gone (and SIGCHLD consumed before we listed it). */
    reap();
    return p;
}

pid_t kr_proc_pid(const kr_proc *p) { return p->pid; }
int kr_proc_running(const kr_proc *p) { return p->running; }

int kr_proc_status(const kr_proc *p, int *sig)
{
    if (sig) *sig = p->signal;
    return p->code;
}

void kr_proc_on_exit(kr_proc *p, kr_proc_exit_fn fn, void *arg)
{
    if (!p->running) {
        fn(p, arg);
        return;
    }
    exit_cb *cb = malloc(sizeof *cb);
    cb->fn = fn;
    cb->arg = arg;
    cb->next = p->callbacks;
    p->callbacks = cb;
}

void kr_proc_cancel_on_exit(kr_proc *p, kr_proc_exit_fn fn, void *arg)
{
    for (exit_cb **pp = &p->callbacks; *pp; pp = &(*pp)->next)
        if ((*pp)->fn == fn && (*pp)->arg == arg) {
            exit_cb *cb = *pp;
            *pp = cb->next;
            free(cb);
            return;
        }
}

int kr_proc_signal(kr_proc *p, int sig)
{
    if (!p->running) return 0;
    /* The whole group, so helpers the child started go too. */
    if (kill(-p->pid, sig) != 0 && kill(p->pid, sig) != 0) return -1;
    return 0;
}

void kr_proc_release(kr_proc *p)
{
    p->released = 1;
    if (!p->running) {
        unlink_child(p);
        free(p);
    }
}

void kr_proc_kill_all(void)
{
    for (kr_proc *p = children; p; p = p->next) {
        if (!p->running) continue;
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        int status;
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {}
        p->running = 0;
        p->code = 137;
        p->signal = SIGKILL;
    }
    while (children) {
        kr_proc *p = children;
        children = p->next;
        while (p->callbacks) {
            exit_cb *cb = p->callbacks;
            p->callbacks = cb->next;
            free(cb);
        }
        if (p->released) free(p);
        else p->next = NULL; /* still referenced from Lua; freed by its __gc */
    }
    if (sigchld_ev) {
        event_free(sigchld_ev);
        sigchld_ev = NULL;
    }
}
