#include "fs.h"
#include "fs_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fsync_parent(const char *path)
{
    char *copy = strdup(path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

int kr_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err, size_t errlen)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kr_fs_fail(err, errlen, "cannot create", tmp);
        free(tmp);
        return -1;
    }
    if (fchmod(fd, mode) != 0 || kr_fs_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        kr_fs_fail(err, errlen, "cannot write", path);
        free(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        kr_fs_fail(err, errlen, "cannot rename into", path);
        free(tmp);
        return -1;
    }
    free(tmp);
    fsync_parent(path);
    return 0;
}

int kr_fs_append(const char *path, const void *data, size_t len, mode_t mode, int sync, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode);
    if (fd < 0) return kr_fs_fail(err, errlen, "cannot open", path);
    if (kr_fs_write_all(fd, data, len) != 0 || (sync && fsync(fd) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return kr_fs_fail(err, errlen, "cannot append to", path);
    }
    close(fd);
    return 0;
}

int kr_fs_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
    char *copy = strdup(path);
    size_t len = strlen(copy);
    for (size_t i = 1; i <= len; i++) {
        if (copy[i] != '/' && copy[i] != '\0') continue;
        char saved = copy[i];
        copy[i] = '\0';
        if (mkdir(copy, mode) != 0 && errno != EEXIST) {
            kr_fs_fail(err, errlen, "cannot create directory", copy);
            free(copy);
            return -1;
        }
        copy[i] = saved;
    }
    free(copy);
    struct stat st;
    if (stat(path, &st) != 0) return kr_fs_fail(err, errlen, "cannot create directory", path);
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return kr_fs_fail(err, errlen, "cannot create directory", path);
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void kr_fs_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}

int kr_fs_list_sorted(const char *path, char ***names_out, size_t *count, char *err, size_t errlen)
{
    DIR *d = opendir(path);
    if (!d) return kr_fs_fail(err, errlen, "cannot open directory", path);
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof *names);
    if (!names) {
        closedir(d);
        errno = ENOMEM;
        return kr_fs_fail(err, errlen, "cannot list directory", path);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == cap) {
            char **bigger = realloc(names, (cap *= 2) * sizeof *names);
            if (!bigger) break;
            names = bigger;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    int failed = e != NULL; /* stopped early: out of memory */
    closedir(d);
    if (failed) {
        kr_fs_free_names(names, n);
        errno = ENOMEM;
        return kr_fs_fail(err, errlen, "cannot list directory", path);
    }
    qsort(names, n, sizeof *names, cmp_names);
    *names_out = names;
    *count = n;
    return 0;
}

int kr_fs_remove_tree(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : kr_fs_fail(err, errlen, "cannot stat", path);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return kr_fs_fail(err, errlen, "cannot open directory", path);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(n);
            snprintf(child, n, "%s/%s", path, e->d_name);
            int r = kr_fs_remove_tree(child, err, errlen);
            free(child);
            if (r != 0) {
                closedir(d);
                return -1;
            }
        }
        closedir(d);
        if (rmdir(path) != 0) return kr_fs_fail(err, errlen, "cannot remove", path);
        return 0;
    }
    if (unlink(path) != 0) return kr_fs_fail(err, errlen, "cannot remove", path);
    return 0;
}

