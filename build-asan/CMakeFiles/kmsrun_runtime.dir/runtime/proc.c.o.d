CMakeFiles/kmsrun_runtime.dir/runtime/proc.c.o: /work/main/runtime/proc.c \
 /usr/include/stdc-predef.h /work/main/runtime/proc.h
