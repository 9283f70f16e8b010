/* What the file primitives (fs.c, fs_beneath.c) share: see fs_io.h. */
#include "fs_io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int kr_fs_fail(char *err, size_t errlen, const char *what, const char *path)
{
    int e = errno;
    snprintf(err, errlen, "%s '%s': %s", what, path, strerror(e));
    errno = e;
    return -1;
}

int kr_fs_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
