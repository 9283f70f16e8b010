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

#endif
