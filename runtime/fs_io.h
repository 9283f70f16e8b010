/* Internal to the file primitives (fs.c, fs_beneath.c). */
#ifndef KMSRUN_FS_IO_H
#define KMSRUN_FS_IO_H

#include <stddef.h>

/* Put "<what> '<path>': <strerror(errno)>" in err, keep errno, return -1. */
int kr_fs_fail(char *err, size_t errlen, const char *what, const char *path);

/* write(2) until all of data is written (EINTR retried); 0, or -1 with errno set. */
int kr_fs_write_all(int fd, const void *data, size_t len);

#endif
