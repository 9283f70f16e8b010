/* Child processes: spawn (argv, never a shell), reap, kill with grace.
 * Plain C interface; the Lua binding is l_proc.c. */
#ifndef KMSRUN_PROC_H
#define KMSRUN_PROC_H

/* Kill (SIGKILL) and reap every child still alive. Safe to call at any time. */
void kr_proc_kill_all(void);

#endif
