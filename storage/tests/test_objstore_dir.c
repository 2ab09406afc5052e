/*
 * test_objstore_dir.c: the directory object store -- round trips, ranges,
 * no overwrite, listing order and paging, key rules, concurrency, reopening,
 * failure paths -- and the fault-injecting wrapper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "st_objstore.h"

#define WAIT_LIMIT_S 60 /* a test that waits longer than this has hung */

typedef struct fix {
    struct event_base *base;
    struct event *keepalive; /* keeps the loop blocking in epoll, not spinning */
    char root[64];           /* temporary directory, removed in teardown */
    char store_root[96];     /* root/store: the store's root */
    st_objstore_t *os;
} fix_t;

/* One operation's result, filled by the callbacks below. */
typedef struct res {
    int done;    /* callbacks run so far (must end at exactly 1) */
    int in_call; /* set while the starting call runs */
    st_err_t err;
    uint8_t *data;      /* get: owned copy */
    const uint8_t *ptr; /* get: the pointer the callback was handed */
    size_t len;
    char **keys; /* list: owned copies */
    uint64_t *sizes;
    int64_t *mtimes;
    size_t n;
    bool more;
    pthread_t thread; /* thread the callback ran on */
} res_t;

static void res_reset(res_t *r)
{
    free(r->data);
    for (size_t i = 0; i < r->n; i++)
        free(r->keys[i]);
    free(r->keys);
    free(r->sizes);
    free(r->mtimes);
    memset(r, 0, sizeof(*r));
}

static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    assert_int_equal(r->in_call, 0);
    r->err = err;
    r->thread = pthread_self();
    r->done++;
}

static void data_cb(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    res_t *r = arg;
    assert_int_equal(r->in_call, 0);
    r->err = err;
    r->thread = pthread_self();
    r->done++;
    if (err != ST_OK) {
        assert_null(data);
        assert_int_equal(len, 0);
        return;
    }
    assert_non_null(data);
    r->ptr = data;
    r->data = malloc(len + 1);
    memcpy(r->data, data, len);
    r->data[len] = 0;
    r->len = len;
}

static void list_cb(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    res_t *r = arg;
    assert_int_equal(r->in_call, 0);
    r->err = err;
    r->thread = pthread_self();
    r->done++;
    r->more = more;
    r->n = n;
    r->keys = calloc(n + 1, sizeof(char *));
    r->sizes = calloc(n + 1, sizeof(uint64_t));
    r->mtimes = calloc(n + 1, sizeof(int64_t));
    for (size_t i = 0; i < n; i++) {
        r->keys[i] = strdup(objs[i].key);
        r->sizes[i] = objs[i].size;
        r->mtimes[i] = objs[i].mtime_ms;
    }
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until @r's callback (or @n results' callbacks) ran. */
static void wait_n(fix_t *f, res_t *r, size_t n)
{
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        while (!r[i].done) {
            assert_true(now_s() - t0 < WAIT_LIMIT_S);
            event_base_loop(f->base, EVLOOP_ONCE);
        }
        assert_int_equal(r[i].done, 1);
    }
}

static void wait1(fix_t *f, res_t *r)
{
    wait_n(f, r, 1);
}

static st_objstore_t *open_store(fix_t *f, int nthreads)
{
    char errstr[256] = "";
    st_objstore_t *os =
        st_objstore_dir_new(f->base, f->store_root, nthreads, errstr, sizeof errstr);
    if (!os)
        fail_msg("st_objstore_dir_new: %s", errstr);
    return os;
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    snprintf(f->root, sizeof f->root, "/tmp/nh-objdir-XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->store_root, sizeof f->store_root, "%s/store", f->root);
    f->base = event_base_new();
    f->keepalive = event_new(f->base, -1, EV_PERSIST, keepalive_cb, NULL);
    struct timeval tv = {3600, 0};
    event_add(f->keepalive, &tv);
    f->os = open_store(f, 2);
    *state = f;
    return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0755);
    remove(path);
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    st_objstore_free(f->os);
    event_free(f->keepalive);
    event_base_free(f->base);
    nftw(f->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------- helpers */

/* Put @s at @key from a heap copy that stays ours: it must come back
 * unchanged once the callback ran, and we free it. */
static st_err_t put_str(fix_t *f, const char *key, const char *s)
{
    res_t r = {0};
    size_t len = strlen(s);
    uint8_t *data = malloc(len ? len : 1);
    memcpy(data, s, len);
    r.in_call = 1;
    assert_int_equal(st_objstore_put(f->os, key, data, len, done_cb, &r), 0);
    r.in_call = 0;
    assert_int_equal(r.done, 0);
    wait1(f, &r);
    assert_true(pthread_equal(r.thread, pthread_self())); /* on the loop thread */
    assert_memory_equal(data, s, len);
    free(data);
    return r.err;
}

/* Get [off, off + len) of key into @r (reset first). */
static void get(fix_t *f, const char *key, uint64_t off, uint64_t len, res_t *r)
{
    res_reset(r);
    r->in_call = 1;
    assert_int_equal(st_objstore_get_range(f->os, key, off, len, data_cb, r), 0);
    r->in_call = 0;
    assert_int_equal(r->done, 0);
    wait1(f, r);
}

/* get_into [off, off + len) of @key: what get_range reads, in the
 * caller's buffer, nothing written past @len; the result into @r. */
static void get_into(fix_t *f, const char *key, uint64_t off, uint64_t len, res_t *r)
{
    res_t want = {0};
    get(f, key, off, len, &want);
    size_t room = (size_t)len + 64;
    uint8_t *dst = malloc(room);
    assert_non_null(dst);
    memset(dst, 0xA5, room);
    res_reset(r);
    r->in_call = 1;
    assert_int_equal(st_objstore_get_into(f->os, key, off, len, dst, data_cb, r), 0);
    r->in_call = 0;
    assert_int_equal(r->done, 0);
    wait1(f, r);
    assert_int_equal(r->err, want.err);
    assert_int_equal(r->len, want.len);
    if (r->err == ST_OK) {
        assert_ptr_equal(r->ptr, dst);
        assert_memory_equal(dst, want.data, want.len);
    }
    for (size_t i = (size_t)len; i < room; i++)
        assert_int_equal(dst[i], 0xA5);
    free(dst);
    res_reset(&want);
}

static void list(fix_t *f, const char *prefix, const char *start_after, size_t max, res_t *r)
{
    res_reset(r);
    r->in_call = 1;
    assert_int_equal(st_objstore_list(f->os, prefix, start_after, max, list_cb, r), 0);
    r->in_call = 0;
    assert_int_equal(r->done, 0);
    wait1(f, r);
}

/* Run @op (del, sync) on @key: started, answered later, once; its result. */
static st_err_t key_op(fix_t *f, int (*op)(st_objstore_t *, const char *, st_done_cb, void *),
                       const char *key)
{
    res_t r = {0};
    r.in_call = 1;
    assert_int_equal(op(f->os, key, done_cb, &r), 0);
    r.in_call = 0;
    assert_int_equal(r.done, 0);
    wait1(f, &r);
    return r.err;
}

static st_err_t del(fix_t *f, const char *key)
{
    return key_op(f, st_objstore_del, key);
}

/* The listing in @r, joined with spaces, for compact comparisons. */
static const char *joined(const res_t *r)
{
    static char buf[4096];
    buf[0] = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            strcat(buf, " ");
        strcat(buf, r->keys[i]);
    }
    return buf;
}

/* Number of ".tmp-" files anywhere under @dir. */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!strncmp(de->d_name, ".tmp-", 5))
            n++;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            n += count_tmp(sub);
    }
    closedir(d);
    return n;
}

/* Number of ".tmp-" files left under the store's root once the store is
 * freed (a live store keeps temp files created ahead of its next puts);
 * the store is opened again afterwards. */
static int count_tmp_freed(fix_t *f)
{
    st_objstore_free(f->os);
    int n = count_tmp(f->store_root);
    f->os = open_store(f, 2);
    return n;
}

static void write_file(const char *path, const char *s)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(s, fp);
    fclose(fp);
}

/* ---------------------------------------------------------------- tests */

static void test_round_trip(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    assert_int_equal(put_str(f, "hello", "hello, world"), ST_OK);
    get(f, "hello", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 12);
    assert_memory_equal(r.data, "hello, world", 12);
    assert_true(pthread_equal(r.thread, pthread_self()));

    assert_int_equal(put_str(f, "empty", ""), ST_OK);
    get(f, "empty", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);

    list(f, "", NULL, 100, &r);
    assert_int_equal(r.err, ST_OK);
    assert_string_equal(joined(&r), "empty hello");
    assert_int_equal(r.sizes[0], 0);
    assert_int_equal(r.sizes[1], 12);
    assert_true(r.mtimes[1] > 1600000000000LL);
    assert_false(r.more);

    assert_int_equal(del(f, "hello"), ST_OK);
    get(f, "hello", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(del(f, "hello"), ST_OK); /* missing: still success */
    assert_int_equal(del(f, "never/was"), ST_OK);
    list(f, "", NULL, 100, &r);
    assert_string_equal(joined(&r), "empty");
    res_reset(&r);
}

/* Put @len bytes of @data at @key and wait for the callback; @data stays ours. */
static st_err_t put_bytes(fix_t *f, const char *key, const uint8_t *data, size_t len)
{
    res_t r = {0};
    r.in_call = 1;
    assert_int_equal(st_objstore_put(f->os, key, data, len, done_cb, &r), 0);
    r.in_call = 0;
    assert_int_equal(r.done, 0);
    wait1(f, &r);
    return r.err;
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31u + seed);
}

/* Pages of the file @path in the page cache. */
static size_t resident_pages(const char *path)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = ((size_t)st.st_size + pg - 1) / pg, in = 0;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    unsigned char *vec = malloc(n);
    assert_int_equal(mincore(m, (size_t)st.st_size, vec), 0);
    for (size_t i = 0; i < n; i++)
        in += vec[i] & 1;
    free(vec);
    munmap(m, (size_t)st.st_size);
    close(fd);
    return in;
}

/* Large puts from 4 KiB-aligned buffers skip the page cache where the file
 * system takes O_DIRECT; every shape of put reads back byte for byte. */
static void test_large_direct(void **state)
{
    fix_t *f = *state;
    const size_t big = (1u << 20) + 123;
    uint8_t *buf = NULL;
    assert_int_equal(posix_memalign((void **)&buf, 4096, big + 4096), 0);
    fill_pattern(buf, big + 4096, 7);

    /* Does this file system take O_DIRECT at all? */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/probe", f->root);
    int fd = open(path, O_WRONLY | O_CREAT | O_DIRECT, 0644);
    bool direct = fd >= 0 && pwrite(fd, buf, 4096, 0) == 4096;
    if (fd >= 0)
        close(fd);
    unlink(path);
    if (!direct)
        print_message("no O_DIRECT on %s: page-cache residency not checked\n", f->root);

    struct {
        const char *key;
        const uint8_t *data;
        size_t len;
        int cached; /* after the put: 0 = (almost) nothing in the page cache, 1 = all */
    } cases[] = {
        {"d/aligned-tail", buf, big, 0}, /* direct part + a buffered tail */
        {"d/aligned-exact", buf, 1u << 20, 0},
        {"d/unaligned", buf + 1, big, 1}, /* through the page cache */
        {"d/small", buf, 8192, 1},        /* below the threshold */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        assert_int_equal(put_bytes(f, cases[c].key, cases[c].data, cases[c].len), ST_OK);
        if (direct) {
            snprintf(path, sizeof path, "%s/%s", f->store_root, cases[c].key);
            size_t pages = (cases[c].len + 4095) / 4096, in = resident_pages(path);
            if (cases[c].cached)
                assert_int_equal(in, pages);
            else
                assert_true(in <= 1); /* at most the buffered tail */
        }
        res_t r = {0};
        get(f, cases[c].key, 0, ST_OBJ_TO_END, &r);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.len, cases[c].len);
        assert_memory_equal(r.data, cases[c].data, cases[c].len);
        get(f, cases[c].key, 4000, 200, &r); /* across the first 4 KiB boundary */
        assert_int_equal(r.len, 200);
        assert_memory_equal(r.data, cases[c].data + 4000, 200);
        if (cases[c].len > 700000) {
            /* Large unaligned ranges (read with O_DIRECT around them). */
            get(f, cases[c].key, 5001, 600000, &r);
            assert_int_equal(r.len, 600000);
            assert_memory_equal(r.data, cases[c].data + 5001, 600000);
            get(f, cases[c].key, 12345, ST_OBJ_TO_END, &r);
            assert_int_equal(r.len, cases[c].len - 12345);
            assert_memory_equal(r.data, cases[c].data + 12345, cases[c].len - 12345);
            get(f, cases[c].key, 0, cases[c].len + 99999, &r); /* past the end */
            assert_int_equal(r.len, cases[c].len);
            get_into(f, cases[c].key, 5001, 600000, &r);
            assert_memory_equal(r.data, cases[c].data + 5001, 600000);
            get_into(f, cases[c].key, 0, cases[c].len + 99999, &r);
            assert_int_equal(r.len, cases[c].len);
        } else {
            get_into(f, cases[c].key, 4000, 200, &r);
            assert_memory_equal(r.data, cases[c].data + 4000, 200);
        }
        res_reset(&r);
    }
    assert_int_equal(put_bytes(f, "d/aligned-exact", buf, 1u << 20), ST_ERR_EXISTS);
    free(buf);
}

/* get_into a buffer at the range's place in a 4 KiB block
 * (ST_OBJ_GET_ALIGN): the blocks inside the range go straight into it with
 * O_DIRECT and only the partial blocks at its ends pass through the page
 * cache; the bytes are the object's, and nothing outside [dst, dst + len) is
 * written.  A buffer placed otherwise is read around the range into an
 * aligned buffer of the store's, leaving the page cache as it was. */
static void test_get_into_placed(void **state)
{
    fix_t *f = *state;
    const size_t big = (3u << 20) + 123, A = ST_OBJ_GET_ALIGN, guard = 2 * ST_OBJ_GET_ALIGN;
    uint8_t *obj = NULL;
    assert_int_equal(posix_memalign((void **)&obj, A, big), 0);
    fill_pattern(obj, big, 11);
    assert_int_equal(put_bytes(f, "p/obj", obj, big), ST_OK);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/p/obj", f->store_root);
    size_t before = resident_pages(path); /* the buffered tail, or all without O_DIRECT */
    bool direct = before <= 1;
    if (!direct)
        print_message("no O_DIRECT under %s: page-cache residency not checked\n", f->store_root);

    struct {
        uint64_t off, len;
        size_t resident; /* partial blocks at the ends, read through the page cache */
    } cases[] = {
        {5001, 1000000, 2},  /* partial blocks at both ends */
        {8192, 1u << 20, 0}, /* whole blocks only */
        {8192, 700001, 1},   /* a partial block at the end only */
        {4095, 614401, 1},   /* a partial block at the start only (one byte of it) */
        {12345, big, 2},     /* past the end: the object's last block is a partial one */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t off = cases[c].off, len = cases[c].len;
        size_t got_len = (size_t)(off + len > big ? big - off : len);
        for (int placed = 1; placed >= 0; placed--) {
            /* Drop the object from the page cache, then read it. */
            int fd = open(path, O_RDONLY);
            assert_true(fd >= 0);
            assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
            close(fd);
            size_t base = direct ? resident_pages(path) : 0;
            size_t room = guard + (size_t)len + guard;
            uint8_t *mem = NULL;
            assert_int_equal(posix_memalign((void **)&mem, A, room), 0);
            memset(mem, 0xA5, room);
            uint8_t *dst = mem + guard + (off % A) + (placed ? 0 : 1);
            res_t r = {0};
            r.in_call = 1;
            assert_int_equal(st_objstore_get_into(f->os, "p/obj", off, len, dst, data_cb, &r), 0);
            r.in_call = 0;
            wait1(f, &r);
            assert_int_equal(r.err, ST_OK);
            assert_int_equal(r.len, got_len);
            assert_ptr_equal(r.ptr, dst);
            assert_memory_equal(dst, obj + off, got_len);
            for (uint8_t *q = mem; q < dst; q++)
                assert_int_equal(*q, 0xA5);
            for (uint8_t *q = dst + got_len; q < mem + room; q++)
                assert_int_equal(*q, 0xA5);
            if (direct)
                assert_int_equal(resident_pages(path) - base, placed ? cases[c].resident : 0);
            free(mem);
            res_reset(&r);
        }
    }
    free(obj);
}

static void test_ranges(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    char buf[101];
    for (int i = 0; i < 100; i++)
        buf[i] = (char)('A' + i % 26);
    buf[100] = 0;
    assert_int_equal(put_str(f, "r/obj", buf), ST_OK);

    get(f, "r/obj", 10, 20, &r); /* middle */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 20);
    assert_memory_equal(r.data, buf + 10, 20);

    get(f, "r/obj", 90, ST_OBJ_TO_END, &r); /* to the end */
    assert_int_equal(r.len, 10);
    assert_memory_equal(r.data, buf + 90, 10);

    get(f, "r/obj", 95, 50, &r); /* runs past the end: what exists */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.data, buf + 95, 5);

    get(f, "r/obj", 100, 10, &r); /* at the end */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);

    get(f, "r/obj", 5000, ST_OBJ_TO_END, &r); /* beyond the end */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);

    get(f, "r/obj", UINT64_MAX - 1, UINT64_MAX - 1, &r); /* no overflow */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);

    get(f, "r/obj", 0, 0, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);

    get(f, "r/obj", 0, UINT64_MAX - 5, &r); /* a huge length is clamped, not allocated */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 100);

    /* Into the caller's buffer: the same bytes. */
    get_into(f, "r/obj", 10, 20, &r);
    assert_memory_equal(r.data, buf + 10, 20);
    get_into(f, "r/obj", 95, 50, &r);
    assert_int_equal(r.len, 5);
    get_into(f, "r/obj", 100, 10, &r);
    assert_int_equal(r.len, 0);
    get_into(f, "r/obj", 0, 0, &r);
    assert_int_equal(r.err, ST_OK);
    get_into(f, "r/missing", 3, 10, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    uint8_t one[1];
    res_reset(&r);
    assert_int_equal(st_objstore_get_into(f->os, "r/obj", 0, ST_OBJ_TO_END, one, data_cb, &r), -1);
    assert_int_equal(st_objstore_get_into(f->os, "r/obj", 0, 1, NULL, data_cb, &r), -1);
    assert_int_equal(r.done, 0);

    get(f, "r/missing", 0, 10, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    get(f, "r", 0, 10, &r); /* a directory is no object */
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    get(f, "r/obj/below", 0, 10, &r); /* a file in the path */
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    res_reset(&r);
}

static void test_never_overwrite(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    assert_int_equal(put_str(f, "k/once", "first"), ST_OK);
    assert_int_equal(put_str(f, "k/once", "second, longer"), ST_ERR_EXISTS);
    get(f, "k/once", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.data, "first", 5);
    /* A key that names a directory of other keys cannot be stored. */
    assert_int_equal(put_str(f, "k", "x"), ST_ERR_EXISTS);
    assert_int_equal(count_tmp_freed(f), 0);
    res_reset(&r);
}

static void test_never_reenters(void **state)
{
    /* Every helper asserts that the callback did not run inside the
     * starting call and ran exactly once; here the early-failing paths. */
    fix_t *f = *state;
    res_t r = {0};
    assert_int_equal(put_str(f, "../escape", "x"), ST_ERR_INVALID);
    get(f, "", 0, 1, &r);
    assert_int_equal(r.err, ST_ERR_INVALID);
    assert_int_equal(del(f, "/abs"), ST_ERR_INVALID);
    get(f, "nothing", 0, 1, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    list(f, "../", NULL, 10, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.n, 0);
    res_reset(&r);
}

static void test_list(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    const char *keys[] = {"a/b/1", "a/b/2", "a/c", "a-x", "b", "ab/x", "a/bb/3", "z/y/x/w"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        assert_int_equal(put_str(f, keys[i], keys[i]), ST_OK);
    /* Temp files (a put in progress, or a crashed one) are never listed. */
    char p[256];
    snprintf(p, sizeof p, "%s/.tmp-left-over", f->store_root);
    write_file(p, "junk");
    snprintf(p, sizeof p, "%s/a/b/.tmp-123", f->store_root);
    write_file(p, "junk");

    list(f, "", NULL, 100, &r); /* byte order of whole keys: '-' < '/' < 'b' */
    assert_string_equal(joined(&r), "a-x a/b/1 a/b/2 a/bb/3 a/c ab/x b z/y/x/w");
    assert_false(r.more);
    assert_int_equal(r.sizes[0], 3);

    list(f, "a/", NULL, 100, &r);
    assert_string_equal(joined(&r), "a/b/1 a/b/2 a/bb/3 a/c");
    list(f, "a/b", NULL, 100, &r); /* ends mid-component */
    assert_string_equal(joined(&r), "a/b/1 a/b/2 a/bb/3");
    list(f, "a/b/", NULL, 100, &r);
    assert_string_equal(joined(&r), "a/b/1 a/b/2");
    list(f, "a", NULL, 100, &r);
    assert_string_equal(joined(&r), "a-x a/b/1 a/b/2 a/bb/3 a/c ab/x");
    list(f, "z/y/x/w", NULL, 100, &r); /* a whole key */
    assert_string_equal(joined(&r), "z/y/x/w");
    list(f, "nope/", NULL, 100, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.n, 0);
    assert_false(r.more);
    list(f, "b/", NULL, 100, &r); /* "b" is a file, not a directory */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.n, 0);
    list(f, ".tmp", NULL, 100, &r);
    assert_int_equal(r.n, 0);

    /* Paging with start_after. */
    list(f, "", NULL, 3, &r);
    assert_string_equal(joined(&r), "a-x a/b/1 a/b/2");
    assert_true(r.more);
    list(f, "", "a/b/2", 3, &r);
    assert_string_equal(joined(&r), "a/bb/3 a/c ab/x");
    assert_true(r.more);
    list(f, "", "ab/x", 3, &r);
    assert_string_equal(joined(&r), "b z/y/x/w");
    assert_false(r.more);
    list(f, "", "z", 3, &r);
    assert_string_equal(joined(&r), "z/y/x/w");
    list(f, "", "z/y/x/w", 3, &r);
    assert_int_equal(r.n, 0);
    assert_false(r.more);
    list(f, "a/", "a/b", 2, &r); /* start_after need not be a key */
    assert_string_equal(joined(&r), "a/b/1 a/b/2");
    assert_true(r.more);
    list(f, "", "a/b/1x", 100, &r); /* between keys, inside a directory */
    assert_string_equal(joined(&r), "a/b/2 a/bb/3 a/c ab/x b z/y/x/w");

    /* Exactly max_keys left: not truncated. */
    list(f, "a/b/", NULL, 2, &r);
    assert_int_equal(r.n, 2);
    assert_false(r.more);

    /* Deleted objects leave their directory, which lists as nothing. */
    assert_int_equal(del(f, "z/y/x/w"), ST_OK);
    list(f, "z", NULL, 100, &r);
    assert_int_equal(r.n, 0);
    res_reset(&r);
}

static void test_bad_keys(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    char long_key[1100], long_comp[300];
    memset(long_key, 'k', sizeof long_key);
    long_key[1025] = 0; /* 1025 bytes */
    memset(long_comp, 'c', sizeof long_comp);
    long_comp[256] = 0; /* one 256-byte component */
    const char *bad[] = {"",  "/abs",   "a/../b",     "..",     "../x",   "a/..",
                         ".", "./a",    "a/./b",      "a/.",    "a//b",   "a/",
                         "/", ".tmp-x", "a/.tmp-y/z", long_key, long_comp};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(put_str(f, bad[i], "x"), ST_ERR_INVALID);
        get(f, bad[i], 0, 1, &r);
        assert_int_equal(r.err, ST_ERR_INVALID);
        assert_int_equal(del(f, bad[i]), ST_ERR_INVALID);
    }
    res_t n = {0};
    n.in_call = 1;
    assert_int_equal(st_objstore_get_range(f->os, NULL, 0, 1, data_cb, &n), 0);
    n.in_call = 0;
    wait1(f, &n);
    assert_int_equal(n.err, ST_ERR_INVALID);

    /* Names that merely look odd are fine. */
    assert_int_equal(put_str(f, "...", "x"), ST_OK);
    assert_int_equal(put_str(f, ".hidden/.x", "x"), ST_OK);
    assert_int_equal(put_str(f, "sp ace/ü", "x"), ST_OK);

    /* The longest key: 1024 bytes, components of at most 255. */
    char key[1025];
    size_t k = 0;
    for (int c = 0; c < 5; c++) {
        size_t clen = c < 4 ? 200 : 220;
        memset(key + k, 'a' + c, clen);
        k += clen;
        if (c < 4)
            key[k++] = '/';
    }
    key[k] = 0;
    assert_int_equal(strlen(key), 1024);
    assert_int_equal(put_str(f, key, "longest"), ST_OK);
    get(f, key, 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 7);
    list(f, "aaaa", NULL, 10, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.keys[0], key);

    list(f, "", NULL, 100, &r);
    assert_int_equal(r.n, 4);
    assert_int_equal(count_tmp_freed(f), 0);
    res_reset(&r);
}

enum { NPUT = 100 };

static void test_concurrent_puts(void **state)
{
    fix_t *f = *state;
    st_objstore_free(f->os);
    f->os = open_store(f, 4);
    static res_t rs[NPUT];
    static char *vals[NPUT]; /* each put's bytes: ours, kept until its callback ran */
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < NPUT; i++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "c/%d/%03d", i % 7, i);
        snprintf(val, sizeof val, "value %d", i);
        vals[i] = strdup(val);
        rs[i].in_call = 1;
        assert_int_equal(
            st_objstore_put(f->os, key, (const uint8_t *)vals[i], strlen(val), done_cb, &rs[i]), 0);
        rs[i].in_call = 0;
    }
    wait_n(f, rs, NPUT);
    for (int i = 0; i < NPUT; i++) {
        assert_int_equal(rs[i].err, ST_OK);
        char val[64];
        snprintf(val, sizeof val, "value %d", i);
        assert_string_equal(vals[i], val);
        free(vals[i]);
    }

    /* All landed: page through the listing, then read each. */
    res_t r = {0};
    size_t total = 0;
    char after[64] = "";
    do {
        list(f, "c/", total ? after : NULL, 30, &r);
        assert_int_equal(r.err, ST_OK);
        total += r.n;
        if (r.n)
            snprintf(after, sizeof after, "%s", r.keys[r.n - 1]);
    } while (r.more);
    assert_int_equal(total, NPUT);
    for (int i = 0; i < NPUT; i++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "c/%d/%03d", i % 7, i);
        snprintf(val, sizeof val, "value %d", i);
        get(f, key, 0, ST_OBJ_TO_END, &r);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.len, strlen(val));
        assert_memory_equal(r.data, val, r.len);
    }

    /* Racing puts of one key: exactly one wins, the rest are refused. */
    enum { NRACE = 16 };
    res_t race[NRACE];
    char *racers[NRACE];
    memset(race, 0, sizeof race);
    for (int i = 0; i < NRACE; i++) {
        char val[16];
        snprintf(val, sizeof val, "racer %02d", i);
        racers[i] = strdup(val);
        assert_int_equal(st_objstore_put(f->os, "race/one", (const uint8_t *)racers[i], strlen(val),
                                         done_cb, &race[i]),
                         0);
    }
    wait_n(f, race, NRACE);
    for (int i = 0; i < NRACE; i++)
        free(racers[i]); /* losers' bytes too: refused puts never free them */
    int winner = -1, won = 0;
    for (int i = 0; i < NRACE; i++) {
        if (race[i].err == ST_OK) {
            won++;
            winner = i;
        } else {
            assert_int_equal(race[i].err, ST_ERR_EXISTS);
        }
    }
    assert_int_equal(won, 1);
    get(f, "race/one", 0, ST_OBJ_TO_END, &r);
    char want[32];
    snprintf(want, sizeof want, "racer %02d", winner);
    assert_string_equal((char *)r.data, want);
    assert_int_equal(count_tmp_freed(f), 0);
    res_reset(&r);
}

/* The first temp file (".tmp-*") found in directory @dir, its inode into
 * @ino; 0 when there is none. */
static int find_tmp(const char *dir, ino_t *ino)
{
    DIR *d = opendir(dir);
    int found = 0;
    struct dirent *de;
    while (d && !found && (de = readdir(d))) {
        if (strncmp(de->d_name, ".tmp-", 5) != 0)
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (lstat(path, &st) == 0) {
            *ino = st.st_ino;
            found = 1;
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* After a put, the store creates the next temp file of that directory ahead
 * of time; the next put there uses it (the same inode becomes the object),
 * and freeing the store removes what is left. */
static void test_spare_temp_files(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    char dir[256];
    snprintf(dir, sizeof dir, "%s/sp", f->store_root);
    assert_int_equal(put_str(f, "sp/one", "1"), ST_OK);
    ino_t spare = 0;
    double t0 = now_s();
    while (!find_tmp(dir, &spare)) {
        assert_true(now_s() - t0 < WAIT_LIMIT_S);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_int_equal(count_tmp(f->store_root), 1);
    assert_int_equal(put_str(f, "sp/two", "22"), ST_OK);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/two", dir);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_ino, spare);
    get(f, "sp/two", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_string_equal((char *)r.data, "22");
    list(f, "", NULL, 100, &r); /* spares are never listed */
    assert_int_equal(r.n, 2);
    /* A put elsewhere uses no spare of another directory. */
    assert_int_equal(put_str(f, "other/x", "x"), ST_OK);
    get(f, "other/x", 0, ST_OBJ_TO_END, &r);
    assert_string_equal((char *)r.data, "x");
    assert_int_equal(count_tmp_freed(f), 0);
    res_reset(&r);
}

/* Run the loop until the file under the store's root at @rel exists. */
static void wait_file(fix_t *f, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->store_root, rel);
    double t0 = now_s();
    while (access(path, F_OK) != 0) {
        assert_true(now_s() - t0 < WAIT_LIMIT_S);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static st_err_t sync_key(fix_t *f, const char *key)
{
    return key_op(f, st_objstore_sync, key);
}

/* st_objstore_prepare: the file exists under its final name before the
 * put, yet is no object until the put is answered -- not listed, not
 * found, not deleted -- and the put fills that very file. */
static void test_prepared(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    char path[512];
    struct stat st, st2;
    st_objstore_prepare(f->os, "pp/a");
    wait_file(f, "pp/a");
    snprintf(path, sizeof path, "%s/pp/a", f->store_root);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    list(f, "", NULL, 100, &r);
    assert_int_equal(r.n, 0);
    get(f, "pp/a", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(sync_key(f, "pp/a"), ST_ERR_NOT_FOUND);
    assert_int_equal(del(f, "pp/a"), ST_OK);
    assert_int_equal(access(path, F_OK), 0); /* garbage collection cannot take it */
    assert_int_equal(put_str(f, "pp/a", "prepared"), ST_OK);
    assert_int_equal(lstat(path, &st2), 0);
    assert_int_equal(st2.st_ino, st.st_ino);
    get(f, "pp/a", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 8);
    assert_memory_equal(r.data, "prepared", 8);
    list(f, "", NULL, 100, &r);
    assert_string_equal(joined(&r), "pp/a");
    assert_int_equal(put_str(f, "pp/a", "again"), ST_ERR_EXISTS);
    assert_int_equal(sync_key(f, "pp/a"), ST_OK);
    assert_int_equal(sync_key(f, "pp/none"), ST_ERR_NOT_FOUND);
    assert_int_equal(sync_key(f, "pp"), ST_ERR_NOT_FOUND); /* a directory: no object */

    /* Prepared twice: one file; of an existing object: the put still
     * fails EXISTS and the object keeps its bytes. */
    st_objstore_prepare(f->os, "pp/b");
    st_objstore_prepare(f->os, "pp/b");
    st_objstore_prepare(f->os, "pp/a");
    wait_file(f, "pp/b");
    assert_int_equal(put_str(f, "pp/a", "other"), ST_ERR_EXISTS);
    get(f, "pp/a", 0, ST_OBJ_TO_END, &r);
    assert_memory_equal(r.data, "prepared", 8);
    assert_int_equal(put_str(f, "pp/b", "b"), ST_OK);

    /* A put right behind its preparation (queued, being created or
     * ready): each lands whole, nothing is left over. */
    for (int i = 0; i < 40; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "race/%02d", i);
        snprintf(val, sizeof val, "value %d", i);
        st_objstore_prepare(f->os, key);
        if (i % 4 == 1)
            usleep(100);
        assert_int_equal(put_str(f, key, val), ST_OK);
        get(f, key, 0, ST_OBJ_TO_END, &r);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.len, strlen(val));
        assert_memory_equal(r.data, val, r.len);
    }
    list(f, "race/", NULL, 100, &r);
    assert_int_equal(r.n, 40);

    /* More preparations than slots: the extra ones are ignored, and their
     * puts go the usual way. */
    for (int i = 0; i < 6; i++) {
        char key[32];
        snprintf(key, sizeof key, "many/%d", i);
        st_objstore_prepare(f->os, key);
    }
    wait_file(f, "many/0");
    for (int i = 5; i >= 0; i--) {
        char key[32];
        snprintf(key, sizeof key, "many/%d", i);
        assert_int_equal(put_str(f, key, key), ST_OK);
        get(f, key, 0, ST_OBJ_TO_END, &r);
        assert_memory_equal(r.data, key, r.len);
    }

    /* Prepared and never put: gone with the store. */
    st_objstore_prepare(f->os, "pp/unused");
    wait_file(f, "pp/unused");
    st_objstore_free(f->os);
    snprintf(path, sizeof path, "%s/pp/unused", f->store_root);
    assert_int_not_equal(access(path, F_OK), 0);
    f->os = open_store(f, 2);
    list(f, "pp/", NULL, 100, &r);
    assert_string_equal(joined(&r), "pp/a pp/b");
    assert_int_equal(count_tmp_freed(f), 0);
    res_reset(&r);
}

static void test_free_drains_and_reopen(void **state)
{
    fix_t *f = *state;
    enum { N = 20 };
    res_t rs[N];
    char *vals[N];
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "keep/%02d", i);
        vals[i] = strdup(key);
        assert_int_equal(
            st_objstore_put(f->os, key, (const uint8_t *)vals[i], strlen(key), done_cb, &rs[i]), 0);
    }
    st_objstore_free(f->os); /* waits for the puts; their callbacks run */
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs[i].done, 1);
        assert_int_equal(rs[i].err, ST_OK);
        free(vals[i]);
    }

    f->os = open_store(f, 1);
    res_t r = {0};
    list(f, "keep/", NULL, 100, &r);
    assert_int_equal(r.n, N);
    get(f, "keep/07", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_string_equal((char *)r.data, "keep/07");
    /* Still never overwritten after reopening. */
    assert_int_equal(put_str(f, "keep/07", "other"), ST_ERR_EXISTS);
    /* A new store instance writes alongside the old objects. */
    assert_int_equal(put_str(f, "keep/new", "new"), ST_OK);
    res_reset(&r);
}

typedef struct late {
    st_objstore_t *os;
    uint8_t *more; /* bytes of the put tried from the callback; ours */
    int done;
    int refused; /* operations the store refused to start from the callback */
} late_t;

static void late_cb(st_err_t err, void *arg)
{
    late_t *l = arg;
    assert_int_equal(err, ST_OK);
    l->done++;
    /* The store is being freed: it must refuse new work, not crash.  A
     * refused put hands its bytes straight back, untouched. */
    if (st_objstore_put(l->os, "late/more", l->more, 1, late_cb, l) != 0) {
        assert_int_equal(l->more[0], 'y');
        l->refused++;
    }
    if (st_objstore_get_range(l->os, "late/one", 0, 1, data_cb, NULL) != 0)
        l->refused++;
}

static void test_free_refuses_new_work(void **state)
{
    fix_t *f = *state;
    for (int wrap = 0; wrap < 2; wrap++) {
        if (wrap)
            f->os = st_objstore_faulty_new(open_store(f, 2), f->base);
        char key[32];
        snprintf(key, sizeof key, "late/%d", wrap);
        uint8_t *data = (uint8_t *)strdup("x");
        late_t l = {.os = f->os, .more = (uint8_t *)strdup("y")};
        assert_int_equal(st_objstore_put(f->os, key, data, 1, late_cb, &l), 0);
        st_objstore_free(f->os);
        f->os = NULL;
        assert_int_equal(l.done, 1);
        assert_int_equal(l.refused, 2);
        assert_int_equal(data[0], 'x');
        free(data);
        free(l.more);
    }
}

static void test_new_fails(void **state)
{
    fix_t *f = *state;
    char path[256], errstr[256] = "";
    snprintf(path, sizeof path, "%s/plain-file", f->root);
    write_file(path, "x");
    snprintf(path, sizeof path, "%s/plain-file/store", f->root);
    assert_null(st_objstore_dir_new(f->base, path, 1, errstr, sizeof errstr));
    assert_non_null(strstr(errstr, "plain-file"));
    errstr[0] = 0;
    assert_null(st_objstore_dir_new(f->base, "", 1, errstr, sizeof errstr));
    assert_true(errstr[0] != 0);
}

static void test_put_io_errors(void **state)
{
    fix_t *f = *state;
    res_t r = {0};

    /* A key whose parent is a regular file. */
    assert_int_equal(put_str(f, "file", "x"), ST_OK);
    assert_int_equal(put_str(f, "file/below", "x"), ST_ERR_IO);
    assert_int_equal(put_str(f, "file/deeper/still", "x"), ST_ERR_IO);

    /* Writing fails half way (the file-size limit stands in for a full
     * disk): the temp file is removed and nothing appears. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_sa;
    sigaction(SIGXFSZ, &ign, &old_sa);
    struct rlimit old_rl, rl;
    getrlimit(RLIMIT_FSIZE, &old_rl);
    rl = old_rl;
    rl.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    size_t big = 64 * 1024;
    uint8_t *data = calloc(1, big);
    res_t p = {0};
    assert_int_equal(st_objstore_put(f->os, "big/one", data, big, done_cb, &p), 0);
    wait1(f, &p);
    setrlimit(RLIMIT_FSIZE, &old_rl);
    sigaction(SIGXFSZ, &old_sa, NULL);
    assert_int_equal(p.err, ST_ERR_IO);
    free(data); /* a failed put leaves the bytes to us as well */
    assert_int_equal(count_tmp_freed(f), 0);
    get(f, "big/one", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(put_str(f, "big/one", "fits now"), ST_OK); /* and the key is free */

    /* A read-only root (permissions do not bind root, so only then). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(f->store_root, 0555), 0);
        assert_int_equal(put_str(f, "ro", "x"), ST_ERR_IO);
        assert_int_equal(put_str(f, "ro/sub", "x"), ST_ERR_IO);
        assert_int_equal(chmod(f->store_root, 0755), 0);
        assert_int_equal(count_tmp_freed(f), 0);
    }

    /* The root vanishes under an open store. */
    char gone[128];
    snprintf(gone, sizeof gone, "%s/gone", f->root);
    assert_int_equal(rename(f->store_root, gone), 0);
    /* The store still writes into its (renamed) root: it holds the directory. */
    assert_int_equal(put_str(f, "still/here", "x"), ST_OK);
    char moved[256];
    snprintf(moved, sizeof moved, "%s/still/here", gone);
    assert_int_equal(access(moved, F_OK), 0);
    /* The put left a spare temp file being made in still/ on a worker: one
     * that lands while nftw walks keeps the directories from going, so
     * walk again until the root is gone (then nothing can be made in it). */
    for (int i = 0; i < 200 && access(gone, F_OK) == 0; i++) {
        nftw(gone, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        if (access(gone, F_OK) == 0)
            usleep(5000);
    }
    assert_int_not_equal(access(gone, F_OK), 0);
    assert_int_equal(put_str(f, "x", "x"), ST_ERR_IO);
    assert_int_equal(put_str(f, "y/z", "x"), ST_ERR_IO);
    list(f, "", NULL, 10, &r);
    assert_int_equal(r.err, ST_OK); /* a deleted directory simply has no entries */
    assert_int_equal(r.n, 0);
    res_reset(&r);
}

static void test_put_borrows(void **state)
{
    /* put borrows the caller's bytes: they come back unchanged and unfreed
     * (freeing them here would be a double free, reading them a
     * use-after-free, under the sanitizers) on every path. */
    fix_t *f = *state;
    res_t r = {0};
    const size_t sizes[] = {1, 100, 64 * 1024 + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        uint8_t *data = malloc(n), *want = malloc(n);
        fill_pattern(data, n, (unsigned)i);
        memcpy(want, data, n);
        char key[32];
        snprintf(key, sizeof key, "b/heap-%zu", n);
        assert_int_equal(put_bytes(f, key, data, n), ST_OK);
        assert_memory_equal(data, want, n);
        assert_int_equal(put_bytes(f, key, data, n), ST_ERR_EXISTS); /* failed: still ours */
        assert_memory_equal(data, want, n);
        assert_int_equal(put_bytes(f, "b/../bad", data, n), ST_ERR_INVALID);
        assert_memory_equal(data, want, n);
        free(data);
        get(f, key, 0, ST_OBJ_TO_END, &r);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.len, n);
        assert_memory_equal(r.data, want, n);
        free(want);
    }

    /* Read-only memory that malloc never handed out: a store that wrote to
     * the bytes would fault, one that freed them would abort. */
    long page = sysconf(_SC_PAGESIZE);
    size_t n = (size_t)page * 2;
    uint8_t *ro = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(ro != MAP_FAILED);
    fill_pattern(ro, n, 7);
    assert_int_equal(mprotect(ro, n, PROT_READ), 0);
    assert_int_equal(put_bytes(f, "b/ro", ro, n), ST_OK);
    assert_int_equal(put_bytes(f, "b/ro", ro, n), ST_ERR_EXISTS);

    /* Each path through the fault-injecting wrapper borrows as well. */
    f->os = st_objstore_faulty_new(f->os, f->base);
    assert_non_null(f->os);
    assert_int_equal(put_bytes(f, "b/w/pass", ro, n), ST_OK);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT, &(st_objstore_fault_t){.fail_nth = 1});
    assert_int_equal(put_bytes(f, "b/w/never", ro, n), ST_ERR_IO); /* never reaches the store */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.fail_nth = 1, .fail_after = true});
    assert_int_equal(put_bytes(f, "b/w/lost", ro, n), ST_ERR_IO); /* lands, reply lost */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_nth = 1, .delay_ms = 20});
    assert_int_equal(put_bytes(f, "b/w/late", ro, n), ST_OK);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT, NULL);

    uint8_t *want = malloc(n);
    fill_pattern(want, n, 7);
    assert_memory_equal(ro, want, n);
    const char *landed[] = {"b/ro", "b/w/pass", "b/w/lost", "b/w/late"};
    for (size_t i = 0; i < sizeof landed / sizeof *landed; i++) {
        get(f, landed[i], 0, ST_OBJ_TO_END, &r);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.len, n);
        assert_memory_equal(r.data, want, n);
    }
    get(f, "b/w/never", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(munmap(ro, n), 0);
    free(want);
    res_reset(&r);
}

/* ---------------------------------------------------------------- faulty wrapper */

static void test_faulty(void **state)
{
    fix_t *f = *state;
    res_t r = {0};
    f->os = st_objstore_faulty_new(f->os, f->base);
    assert_non_null(f->os);

    /* Pass-through until a plan is set. */
    assert_int_equal(put_str(f, "f/0", "zero"), ST_OK);
    get(f, "f/0", 1, 2, &r);
    assert_memory_equal(r.data, "er", 2);

    /* Fail the 2nd put from now; the failure never reaches the store. */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.fail_nth = 2, .err = ST_ERR_TIMEOUT});
    assert_int_equal(put_str(f, "f/1", "one"), ST_OK);
    assert_int_equal(put_str(f, "f/2", "two"), ST_ERR_TIMEOUT);
    assert_int_equal(put_str(f, "f/3", "three"), ST_OK);
    get(f, "f/2", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT), 4);

    /* A lost reply: the put lands but reports an error. */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.fail_nth = 1, .fail_after = true});
    assert_int_equal(put_str(f, "f/4", "four"), ST_ERR_IO);
    get(f, "f/4", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(put_str(f, "f/4", "again"), ST_ERR_EXISTS);

    /* Delay the next put's completion by 400 ms; the one after is prompt. */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_nth = 1, .delay_ms = 400});
    double t0 = now_s();
    assert_int_equal(put_str(f, "f/5", "five"), ST_OK);
    assert_true(now_s() - t0 >= 0.39);
    t0 = now_s();
    assert_int_equal(put_str(f, "f/6", "six"), ST_OK);
    assert_true(now_s() - t0 < 0.39);

    /* A delayed get keeps its bytes until it completes; a delayed list too. */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_GET,
                           &(st_objstore_fault_t){.delay_all = true, .delay_ms = 50});
    st_objstore_faulty_set(f->os, ST_OBJ_OP_LIST,
                           &(st_objstore_fault_t){.delay_all = true, .delay_ms = 50});
    t0 = now_s();
    get(f, "f/5", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.len, 4);
    assert_memory_equal(r.data, "five", 4);
    list(f, "f/", NULL, 3, &r);
    assert_string_equal(joined(&r), "f/0 f/1 f/3");
    assert_true(r.more);
    assert_true(now_s() - t0 >= 0.09);

    /* Every delete fails while the flag is set; a failed get carries no bytes. */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_DEL,
                           &(st_objstore_fault_t){.fail_all = true, .err = ST_ERR_IO});
    st_objstore_faulty_set(f->os, ST_OBJ_OP_GET,
                           &(st_objstore_fault_t){.fail_nth = 1, .err = ST_ERR_CORRUPT});
    assert_int_equal(del(f, "f/1"), ST_ERR_IO);
    assert_int_equal(del(f, "f/1"), ST_ERR_IO);
    get(f, "f/1", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_CORRUPT);
    /* A store without get_into of its own: get_range, then a copy. */
    uint8_t into[8] = {0};
    res_reset(&r);
    assert_int_equal(st_objstore_get_into(f->os, "f/3", 1, 3, into, data_cb, &r), 0);
    wait1(f, &r);
    assert_int_equal(r.err, ST_OK);
    assert_ptr_equal(r.ptr, into);
    assert_memory_equal(into, "hre\0", 4);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_GET,
                           &(st_objstore_fault_t){.fail_nth = 1, .err = ST_ERR_CORRUPT});
    res_reset(&r);
    assert_int_equal(st_objstore_get_into(f->os, "f/3", 0, 5, into, data_cb, &r), 0);
    wait1(f, &r);
    assert_int_equal(r.err, ST_ERR_CORRUPT);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_DEL, NULL);
    assert_int_equal(del(f, "f/1"), ST_OK);
    get(f, "f/1", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_LIST,
                           &(st_objstore_fault_t){.fail_nth = 1, .err = ST_ERR_IO});
    list(f, "", NULL, 10, &r);
    assert_int_equal(r.err, ST_ERR_IO);
    assert_int_equal(r.n, 0);

    res_reset(&r);
}

static void test_faulty_free_delivers(void **state)
{
    fix_t *f = *state;
    f->os = st_objstore_faulty_new(f->os, f->base);
    assert_non_null(f->os);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_all = true, .delay_ms = 60000});
    st_objstore_faulty_set(
        f->os, ST_OBJ_OP_DEL,
        &(st_objstore_fault_t){
            .fail_all = true, .delay_all = true, .delay_ms = 60000, .err = ST_ERR_CLOSED});
    res_t a = {0}, b = {0}, c = {0};
    uint8_t *da = (uint8_t *)strdup("a"), *dc = (uint8_t *)strdup("c");
    assert_int_equal(st_objstore_put(f->os, "d/a", da, 1, done_cb, &a), 0);
    assert_int_equal(st_objstore_del(f->os, "d/zz", done_cb, &b), 0);
    /* Let the put reach the disk so its completion sits on the 60 s timer. */
    double t0 = now_s();
    while (now_s() - t0 < 0.2)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(st_objstore_put(f->os, "d/c", dc, 1, done_cb, &c), 0);
    assert_int_equal(a.done + b.done + c.done, 0);
    st_objstore_free(f->os);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.err, ST_OK);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.err, ST_ERR_CLOSED);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.err, ST_OK);
    assert_int_equal(da[0], 'a');
    assert_int_equal(dc[0], 'c');
    free(da);
    free(dc);
    f->os = open_store(f, 1);
    res_t r = {0};
    list(f, "d/", NULL, 10, &r);
    assert_string_equal(joined(&r), "d/a d/c");
    res_reset(&r);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_into_placed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_reenters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spare_temp_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_drains_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_refuses_new_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_io_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_borrows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_faulty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_faulty_free_delivers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
