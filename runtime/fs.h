/* Files: atomic replacement, append, recursive mkdir/remove. Plain C; bound in l_fs.c.
 * Functions return 0 on success, or -1 with errno set and a message in err. */
#ifndef KMSRUN_FS_H
#define KMSRUN_FS_H

#include <stddef.h>
#include <sys/types.h>

/* Write data to path through a temp file in the same directory: write, fsync,
 * chmod, rename over path, fsync the directory. Readers see old or new, never half. */
int kr_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err, size_t errlen);

/* Append data with O_APPEND (created with mode); fsync when sync is set. */
int kr_fs_append(const char *path, const void *data, size_t len, mode_t mode, int sync, char *err, size_t errlen);

/* mkdir -p; existing directories are left as they are. */
int kr_fs_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);

/* The names in a directory (without . and ..), sorted; *names is a malloc'd
 * array of malloc'd strings, freed with kr_fs_free_names. */
int kr_fs_list_sorted(const char *path, char ***names, size_t *count, char *err, size_t errlen);
void kr_fs_free_names(char **names, size_t count);

/* rm -r (no error if path does not exist). */
int kr_fs_remove_tree(const char *path, char *err, size_t errlen);

/* ---- Beneath a root directory, never following a symbolic link ----------
 * rel is relative to root: no leading '/', no ".." component. root itself and
 * every component of rel are opened with O_NOFOLLOW (openat from the root's
 * descriptor), so a link planted inside the tree cannot lead out of it; such a
 * link is ELOOP, a ".." or absolute rel is EINVAL. mkdirs creates missing
 * intermediate directories (0700). */

/* The parent directory of rel as an open descriptor (caller closes), and the
 * final component in *base (points into rel). */
int kr_fs_parent_beneath(const char *root, const char *rel, int mkdirs, const char **base, char *err, size_t errlen);

/* open(2) of rel beneath root (flags get O_NOFOLLOW | O_CLOEXEC added). */
int kr_fs_open_beneath(const char *root, const char *rel, int flags, mode_t mode, int mkdirs, char *err, size_t errlen);

int kr_fs_write_beneath(const char *root, const char *rel, const void *data, size_t len, mode_t mode, char *err, size_t errlen);
int kr_fs_append_beneath(const char *root, const char *rel, const void *data, size_t len, mode_t mode, int sync, char *err, size_t errlen);
int kr_fs_mkdir_beneath(const char *root, const char *rel, mode_t mode, char *err, size_t errlen);

/* Take an exclusive advisory lock (flock) on path, created with mode 0600 if
 * missing and never followed if a link; the descriptor stays open (close-on-exec)
 * until the process exits, which releases the lock whatever ends it. If text is
 * given it replaces the file's content once locked (e.g. the holder's pid).
 * EWOULDBLOCK: another process holds it. */
int kr_fs_lock(const char *path, const char *text, char *err, size_t errlen);

#endif
