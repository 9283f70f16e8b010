/* Unit tests of the plain-C file and archive layers (fs.c, targz.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "targz.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/kmsrun-unit-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char err[256];
    return kr_fs_remove_tree(dir, err, sizeof err);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[4096];
    *len = fread(buf, 1, sizeof buf - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void write_atomic_replaces_and_sets_mode(void **state)
{
    (void)state;
    char path[512], err[256];
    size_t len;
    snprintf(path, sizeof path, "%s/a", dir);
    assert_int_equal(kr_fs_write_atomic(path, "one", 3, 0600, err, sizeof err), 0);
    assert_int_equal(kr_fs_write_atomic(path, "second", 6, 0640, err, sizeof err), 0);
    assert_string_equal(slurp(path, &len), "second");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void write_atomic_reports_missing_directory(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/no/such/dir/f", dir);
    assert_int_equal(kr_fs_write_atomic(path, "x", 1, 0600, err, sizeof err), -1);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(err, "cannot create"));
}

static void append_accumulates(void **state)
{
    (void)state;
    char path[512], err[256];
    size_t len;
    snprintf(path, sizeof path, "%s/log", dir);
    assert_int_equal(kr_fs_append(path, "a\n", 2, 0600, 0, err, sizeof err), 0);
    assert_int_equal(kr_fs_append(path, "b\n", 2, 0600, 1, err, sizeof err), 0);
    assert_string_equal(slurp(path, &len), "a\nb\n");
}

static void mkdir_p_and_remove_tree(void **state)
{
    (void)state;
    char path[512], file[600], err[256];
    snprintf(path, sizeof path, "%s/x/y/z", dir);
    assert_int_equal(kr_fs_mkdir_p(path, 0700, err, sizeof err), 0);
    assert_int_equal(kr_fs_mkdir_p(path, 0700, err, sizeof err), 0);
    snprintf(file, sizeof file, "%s/f", path);
    assert_int_equal(kr_fs_write_atomic(file, "x", 1, 0600, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/x", dir);
    assert_int_equal(kr_fs_remove_tree(path, err, sizeof err), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(kr_fs_remove_tree(path, err, sizeof err), 0); /* missing is fine */
}

static void mkdir_p_refuses_a_file_in_the_way(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/file", dir);
    assert_int_equal(kr_fs_write_atomic(path, "x", 1, 0600, err, sizeof err), 0);
    assert_int_equal(kr_fs_mkdir_p(path, 0700, err, sizeof err), -1);
}

static int names_seen;
static char names[8][128];
static void collect(const char *name, long long size, void *arg)
{
    (void)size; (void)arg;
    if (names_seen < 8) snprintf(names[names_seen++], sizeof names[0], "%s", name);
}

static void targz_round_trip(void **state)
{
    (void)state;
    char root[512], path[600], out[600], err[256];
    snprintf(root, sizeof root, "%s/bundle", dir);
    snprintf(path, sizeof path, "%s/sub", root);
    assert_int_equal(kr_fs_mkdir_p(path, 0700, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/sub/b.txt", root);
    assert_int_equal(kr_fs_write_atomic(path, "bee", 3, 0600, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/a.txt", root);
    assert_int_equal(kr_fs_write_atomic(path, "ay", 2, 0600, err, sizeof err), 0);
    snprintf(out, sizeof out, "%s/out.tar.gz", root); /* inside the tree: must not include itself */
    assert_int_equal(kr_archive_targz(root, out, "run", NULL, NULL, err, sizeof err), 0);

    names_seen = 0;
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(kr_archive_each(out, collect, NULL, "run/sub/b.txt", &data, &len, err, sizeof err), 0);
    assert_int_equal(names_seen, 2);
    assert_string_equal(names[0], "run/a.txt");
    assert_string_equal(names[1], "run/sub/b.txt");
    assert_int_equal(len, 3);
    assert_memory_equal(data, "bee", 3);
    free(data);
}

static void targz_reports_corrupt_input(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/bad.tar.gz", dir);
    assert_int_equal(kr_fs_write_atomic(path, "\x1f\x8b garbage", 10, 0600, err, sizeof err), 0);
    assert_int_equal(kr_archive_each(path, collect, NULL, NULL, NULL, NULL, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(write_atomic_replaces_and_sets_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(write_atomic_reports_missing_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(append_accumulates, setup, teardown),
        cmocka_unit_test_setup_teardown(mkdir_p_and_remove_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(mkdir_p_refuses_a_file_in_the_way, setup, teardown),
        cmocka_unit_test_setup_teardown(targz_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(targz_reports_corrupt_input, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
