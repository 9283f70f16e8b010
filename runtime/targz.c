#include "targz.h"
#include "fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int add_file(struct archive *a, const char *path, const char *name, const struct stat *st, char *err, size_t errlen)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, st->st_size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, st->st_mode & 0777);
    archive_entry_set_mtime(e, st->st_mtime, 0);
    int rc = -1;
    if (archive_write_header(a, e) != ARCHIVE_OK) {
        snprintf(err, errlen, "cannot add '%s': %s", name, archive_error_string(a));
        goto out;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        goto out;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (archive_write_data(a, buf, (size_t)n) < 0) {
            snprintf(err, errlen, "cannot write '%s': %s", name, archive_error_string(a));
            close(fd);
            goto out;
        }
    }
    close(fd);
    rc = n < 0 ? -1 : 0;
    if (n < 0) snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
out:
    archive_entry_free(e);
    return rc;
}

static int add_tree(struct archive *a, const char *dir, const char *rel, const char *prefix, const char *skip_path,
                    int (*skip)(const char *, void *), void *arg, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel);
    char **names;
    size_t n;
    if (kr_fs_list_sorted(path, &names, &n, err, errlen) != 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *child_rel, *child, *name;
        if (asprintf(&child_rel, "%s%s%s", rel, *rel ? "/" : "", names[i]) < 0) { rc = -1; break; }
        if (asprintf(&child, "%s/%s", dir, child_rel) < 0) child = NULL;
        if (asprintf(&name, "%s%s%s", prefix, *prefix ? "/" : "", child_rel) < 0) name = NULL;
        struct stat st;
        if (!child || !name) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else if (lstat(child, &st) != 0 || (skip_path && strcmp(child, skip_path) == 0) ||
                   (skip && skip(child_rel, arg))) {
            /* vanished meanwhile, the archive being written, or excluded */
        } else if (S_ISDIR(st.st_mode)) {
            rc = add_tree(a, dir, child_rel, prefix, skip_path, skip, arg, err, errlen);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_file(a, child, name, &st, err, errlen);
        }
        free(child_rel);
        free(child);
        free(name);
    }
    kr_fs_free_names(names, n);
    return rc;
}

int kr_archive_targz(const char *dir, const char *out, const char *prefix,
                     int (*skip)(const char *, void *), void *arg, char *err, size_t errlen)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    struct archive *a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    int rc = -1;
    if (archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
        snprintf(err, errlen, "cannot create '%s': %s", out, archive_error_string(a));
        archive_write_free(a);
        return -1;
    }
    char skip_path[4096];
    snprintf(skip_path, sizeof skip_path, "%s", tmp);
    rc = add_tree(a, dir, "", prefix ? prefix : "", skip_path, skip, arg, err, errlen);
    if (archive_write_close(a) != ARCHIVE_OK && rc == 0) {
        snprintf(err, errlen, "cannot finish '%s': %s", out, archive_error_string(a));
        rc = -1;
    }
    archive_write_free(a);
    if (rc == 0) {
        chmod(tmp, 0600);
        if (rename(tmp, out) != 0) {
            snprintf(err, errlen, "cannot rename into '%s': %s", out, strerror(errno));
            rc = -1;
        }
    }
    if (rc != 0) unlink(tmp);
    return rc;
}

int kr_archive_each(const char *path, void (*fn)(const char *, long long, void *), void *arg,
                    const char *want, char **data, size_t *len, char *err, size_t errlen)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
        snprintf(err, errlen, "cannot open '%s': %s", path, archive_error_string(a));
        archive_read_free(a);
        return -1;
    }
    int rc = 0;
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (fn) fn(name, (long long)archive_entry_size(e), arg);
        if (want && data && !*data && strcmp(name, want) == 0) {
            size_t size = (size_t)archive_entry_size(e);
            *data = malloc(size + 1);
            la_ssize_t got = archive_read_data(a, *data, size);
            if (got < 0 || (size_t)got != size) {
                snprintf(err, errlen, "cannot read '%s' from '%s': %s", want, path, archive_error_string(a));
                free(*data);
                *data = NULL;
                rc = -1;
                break;
            }
            *len = size;
        }
    }
    if (rc == 0 && r != ARCHIVE_EOF) {
        snprintf(err, errlen, "corrupt archive '%s': %s", path, archive_error_string(a));
        rc = -1;
    }
    archive_read_free(a);
    return rc;
}
