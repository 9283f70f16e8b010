/* Measures ONE process — not its children — for bench/run.
 *
 * Usage: bench_cputime OUTFILE CMD [ARGS...]
 *
 * Runs CMD (stdin/stdout/stderr inherited) and appends one line to OUTFILE:
 *
 *   wall_s cpu_s utime_s stime_s hwm_kib total_cpu_s status
 *
 *   wall_s       fork to reap, CLOCK_MONOTONIC
 *   cpu_s        CMD's own CPU time (all its threads, none of its children), from
 *                the kernel's per-process CPU clock (clock_getcpuclockid), read
 *                on the zombie after it exited and before it is reaped: the
 *                scheduler's nanosecond sum_exec_runtime, so it is exact, not
 *                tick-sampled
 *   utime_s, stime_s  the user/system split of the same, from /proc/PID/stat
 *                fields 14 and 15 (clock ticks, 10 ms resolution; fields 16 and
 *                17 hold the children and are not used)
 *   hwm_kib      VmHWM (peak resident set) of CMD itself, read from
 *                /proc/PID/status at the PTRACE_EVENT_EXIT stop, i.e. when CMD is
 *                exiting but its memory is still mapped (after that the kernel
 *                only keeps max(own, children's) maxrss, which wait4 returns)
 *   total_cpu_s  user+sys from wait4's rusage: CMD plus every descendant it
 *                reaped (the kernel's RUSAGE_BOTH). total - cpu = the children
 *   status       exit code, or 128+signal
 *
 * Why not wait4/getrusage alone: a child's rusage as returned by wait4 (and the
 * shell's RUSAGE_CHILDREN) includes the grandchildren the child reaped — here
 * the emulator processes kmsrun starts — and ru_maxrss is the max over all of
 * them. Tracing: the child is attached with PTRACE_SEIZE with only
 * PTRACE_O_TRACEEXIT (and EXITKILL); its own children are not traced. Signals
 * sent to it stop it briefly and are re-injected unchanged (a few microseconds
 * each; kmsrun receives a SIGCHLD per emulator).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double ts(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

static long status_field(pid_t pid, const char *name)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* utime and stime (fields 14, 15) of /proc/PID/stat, in seconds. */
static int stat_times(pid_t pid, double *ut, double *st)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p) return -1;
    p += 2; /* now at field 3 */
    unsigned long long u = 0, s = 0;
    for (int field = 3; field <= 15 && p; field++) {
        if (field == 14) u = strtoull(p, NULL, 10);
        if (field == 15) s = strtoull(p, NULL, 10);
        p = strchr(p, ' ');
        if (p) p++;
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    *ut = (double)u / hz;
    *st = (double)s / hz;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s OUTFILE CMD [ARGS...]\n", argv[0]);
        return 2;
    }
    int sync[2];
    if (pipe(sync) != 0) { perror("pipe"); return 2; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        char c;
        close(sync[1]);
        while (read(sync[0], &c, 1) < 0 && errno == EINTR) {}
        close(sync[0]);
        execvp(argv[2], argv + 2);
        fprintf(stderr, "bench_cputime: cannot run %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    close(sync[0]);
    if (ptrace(PTRACE_SEIZE, pid, 0, (void *)(long)(PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL)) != 0) {
        perror("bench_cputime: ptrace(PTRACE_SEIZE)");
        kill(pid, SIGKILL);
        return 2;
    }
    close(sync[1]); /* lets the child exec */

    long hwm = -1;
    int status;
    for (;;) { /* until the exit stop */
        if (waitpid(pid, &status, 0) < 0) {
            if (errno == EINTR) continue;
            perror("waitpid");
            return 2;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) break; /* killed outright */
        if (!WIFSTOPPED(status)) continue;
        int event = status >> 16;
        if (event == PTRACE_EVENT_EXIT) {
            hwm = status_field(pid, "VmHWM");
            ptrace(PTRACE_CONT, pid, 0, 0);
            break;
        }
        if (event == PTRACE_EVENT_STOP) { /* group-stop under SEIZE */
            ptrace(PTRACE_LISTEN, pid, 0, 0);
            continue;
        }
        ptrace(PTRACE_CONT, pid, 0, (void *)(long)WSTOPSIG(status)); /* re-inject */
    }

    double cpu = -1, ut = -1, st = -1;
    if (!(WIFEXITED(status) || WIFSIGNALED(status))) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        while (waitid(P_PID, pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
        /* A zombie now: its CPU clock and /proc stat are final. */
        clockid_t cid;
        struct timespec c;
        if (clock_getcpuclockid(pid, &cid) == 0 && clock_gettime(cid, &c) == 0) cpu = ts(c);
        stat_times(pid, &ut, &st);
    }
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (!(WIFEXITED(status) || WIFSIGNALED(status))) {
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double total = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *out = fopen(argv[1], "a");
    if (!out) { perror(argv[1]); return 2; }
    fprintf(out, "%.6f %.6f %.2f %.2f %ld %.6f %d\n", ts(t1) - ts(t0), cpu, ut, st, hwm, total, code);
    fclose(out);
    return code;
}
