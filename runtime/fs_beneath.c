/* Files beneath a root directory without following symbolic links, and the
 * process-lifetime lock (see fs.h). openat(2) from the root's descriptor, one
 * component at a time, each with O_NOFOLLOW: portable to every POSIX system,
 * unlike Linux's openat2(RESOLVE_BENEATH). */
#include "fs.h"
#include "fs_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Beneath a root directory ------------------------------------------- */

static int einval(char *err, size_t errlen, const char *why, const char *rel)
{
    errno = EINVAL;
    snprintf(err, errlen, "%s: '%s'", why, rel);
    return -1;
}

int kr_fs_parent_beneath(const char *root, const char *rel, int mkdirs, const char **base, char *err, size_t errlen)
{
    if (rel[0] == '/' || rel[0] == '\0') return einval(err, errlen, "not a relative path", rel);
    int dfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return kr_fs_fail(err, errlen, "cannot open directory", root);
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char comp[256];
        if (n >= sizeof comp) {
            close(dfd);
            errno = ENAMETOOLONG;
            return kr_fs_fail(err, errlen, "cannot open", rel);
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (strcmp(comp, "..") == 0) {
            close(dfd);
            return einval(err, errlen, "a path component '..' would leave the directory", rel);
        }
        if (!slash) {
            if (n == 0 || strcmp(comp, ".") == 0) {
                close(dfd);
                return einval(err, errlen, "no file name in", rel);
            }
            *base = p;
            return dfd;
        }
        p = slash + 1;
        if (n == 0 || strcmp(comp, ".") == 0) continue;
        int next = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && mkdirs) {
            if (mkdirat(dfd, comp, 0700) != 0 && errno != EEXIST) {
                int e = errno;
                close(dfd);
                errno = e;
                return kr_fs_fail(err, errlen, "cannot create directory in", rel);
            }
            next = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        int e = errno;
        close(dfd);
        if (next < 0) {
            /* O_NOFOLLOW|O_DIRECTORY on a link: ELOOP or ENOTDIR; say what it is. */
            errno = (e == ENOTDIR || e == ELOOP) ? ELOOP : e;
            return kr_fs_fail(err, errlen, "cannot open (a symbolic link or not a directory on the way?)", rel);
        }
        dfd = next;
    }
}

int kr_fs_open_beneath(const char *root, const char *rel, int flags, mode_t mode, int mkdirs, char *err, size_t errlen)
{
    const char *base;
    int dfd = kr_fs_parent_beneath(root, rel, mkdirs, &base, err, errlen);
    if (dfd < 0) return -1;
    int fd = openat(dfd, base, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    int e = errno;
    close(dfd);
    if (fd < 0) {
        errno = e;
        return kr_fs_fail(err, errlen, e == ELOOP ? "refusing to follow the symbolic link" : "cannot open", rel);
    }
    return fd;
}

int kr_fs_write_beneath(const char *root, const char *rel, const void *data, size_t len, mode_t mode, char *err, size_t errlen)
{
    const char *base;
    int dfd = kr_fs_parent_beneath(root, rel, 1, &base, err, errlen);
    if (dfd < 0) return -1;
    char tmp[300];
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, sizeof tmp, ".%.200s.tmp.%ld.%d", base, (long)getpid(), rand());
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        close(dfd);
        errno = e;
        return kr_fs_fail(err, errlen, "cannot create a temp file for", rel);
    }
    if (fchmod(fd, mode) != 0 || kr_fs_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlinkat(dfd, tmp, 0);
        close(dfd);
        errno = e;
        return kr_fs_fail(err, errlen, "cannot write", rel);
    }
    close(fd);
    /* rename replaces a link at rel itself: its target is never written. */
    if (renameat(dfd, tmp, dfd, base) != 0) {
        int e = errno;
        unlinkat(dfd, tmp, 0);
        close(dfd);
        errno = e;
        return kr_fs_fail(err, errlen, "cannot rename into", rel);
    }
    fsync(dfd);
    close(dfd);
    return 0;
}

int kr_fs_append_beneath(const char *root, const char *rel, const void *data, size_t len, mode_t mode, int sync, char *err, size_t errlen)
{
    int fd = kr_fs_open_beneath(root, rel, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK, mode, 1, err, errlen);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return kr_fs_fail(err, errlen, "not a regular file", rel);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (kr_fs_write_all(fd, data, len) != 0 || (sync && fsync(fd) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return kr_fs_fail(err, errlen, "cannot append to", rel);
    }
    close(fd);
    return 0;
}

int kr_fs_mkdir_beneath(const char *root, const char *rel, mode_t mode, char *err, size_t errlen)
{
    const char *base;
    int dfd = kr_fs_parent_beneath(root, rel, 1, &base, err, errlen);
    if (dfd < 0) return -1;
    int r = mkdirat(dfd, base, mode);
    int e = errno;
    if (r != 0 && e == EEXIST) {
        struct stat st = {0};
        if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) r = 0;
        else e = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
    }
    close(dfd);
    if (r != 0) {
        errno = e;
        return kr_fs_fail(err, errlen, "cannot create directory", rel);
    }
    return 0;
}

int kr_fs_lock(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    if (fd < 0) return kr_fs_fail(err, errlen, errno == ELOOP ? "refusing to follow the symbolic link" : "cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return kr_fs_fail(err, errlen, "not a regular file", path);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        errno = e == EWOULDBLOCK ? EWOULDBLOCK : e;
        return kr_fs_fail(err, errlen, "cannot lock", path);
    }
    if (text) {
        if (ftruncate(fd, 0) != 0 || kr_fs_write_all(fd, text, strlen(text)) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return kr_fs_fail(err, errlen, "cannot write", path);
        }
    }
    return 0; /* fd stays open on purpose: the lock lives as long as the process */
}
