/* tar.gz archives through libarchive. Plain C; bound in l_archive.c. */
#ifndef KMSRUN_TARGZ_H
#define KMSRUN_TARGZ_H

#include <stddef.h>

/* Archive every file below dir into out (a .tar.gz), entries named
 * "<prefix>/<relative path>" in sorted order, written to a temp file and
 * renamed into place. Paths for which skip(relpath, arg) returns true are left out.
 * Returns 0, or -1 with a message in err. */
int kr_archive_targz(const char *dir, const char *out, const char *prefix,
                     int (*skip)(const char *relpath, void *arg), void *arg,
                     char *err, size_t errlen);

/* Call fn for each entry of an archive; with want != NULL, also read that
 * entry's content into *data (malloc'd, caller frees). Returns 0 or -1. */
int kr_archive_each(const char *path, void (*fn)(const char *name, long long size, void *arg), void *arg,
                    const char *want, char **data, size_t *len, char *err, size_t errlen);

#endif
