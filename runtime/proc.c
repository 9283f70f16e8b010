#include "proc.h"
void kr_proc_kill_all(void) {}
