/*
 * test_log_life.c: the log's lifecycle over the directory object store and
 * the SQLite metadata store -- folding manifests into index keys and
 * starting from them (producer state included), retention by time, by
 * bytes and below the log start, garbage collection of orphans, of a
 * deleted topic's objects and of a commit held past the grace period.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kp_batch.h"
#include "st_format.h"
#include "st_log.h"
#include "st_meta.h"
#include "st_objstore.h"

typedef struct fx {
    char dir[256];
    struct event_base *base;
    st_objstore_t *os; /* faulty wrapper around dir */
    st_meta_t *meta;   /* faulty wrapper around SQLite */
    st_log_t *log;
    st_log_cfg_t cfg;
} fx_t;

typedef struct res {
    int done;
    st_err_t err;
    int64_t off;
    size_t n;
    st_topic_t *topic;
} res_t;

static void run_until(fx_t *f, const int *flag, int want)
{
    for (int i = 0; i < 10000 && *flag < want; i++)
        if (event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) != 0 || *flag < want)
            usleep(1000);
    assert_true(*flag >= want);
}

static void run_for(fx_t *f, int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->done++;
}

static void fx_open(fx_t *f)
{
    char errstr[256], path[512];
    snprintf(path, sizeof path, "%s/objects", f->dir);
    st_objstore_t *dir = st_objstore_dir_new(f->base, path, 2, errstr, sizeof errstr);
    assert_non_null(dir);
    f->os = st_objstore_faulty_new(dir, f->base);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    st_meta_t *sqlite = st_meta_sqlite_new(f->base, path, errstr, sizeof errstr);
    assert_non_null(sqlite);
    f->meta = st_meta_faulty_new(sqlite, f->base);
    f->log = st_log_new(f->base, f->os, f->meta, &f->cfg);
    res_t r = {0};
    assert_int_equal(st_log_open(f->log, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
}

static void close_cb(void *arg)
{
    (*(int *)arg)++;
}

static void fx_close(fx_t *f)
{
    int closed = 0;
    st_log_close(f->log, close_cb, &closed);
    run_until(f, &closed, 1);
    st_log_free(f->log);
    st_meta_free(f->meta);
    st_objstore_free(f->os);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof f->dir, "/tmp/nh-test-life-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    f->cfg = (st_log_cfg_t){.node_id = 1,
                            .flush_max_bytes = 1 << 20,
                            .flush_max_inflight = 2,
                            .tail_cache_bytes = 1 << 20,
                            .read_cache_bytes = 1 << 20,
                            .default_partitions = 1,
                            .retention_ms = -1,
                            .lifecycle_interval_ms = 3600000, /* runs only when asked */
                            .gc_interval_ms = 3600000,
                            .gc_grace_ms = 300};
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    event_base_free(f->base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void topic_cb(st_err_t err, st_topic_t *t, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->topic = t;
    r->done++;
}

static st_topic_t *create(fx_t *f, const char *name, int32_t nparts, const char *retention_ms,
                          const char *retention_bytes)
{
    st_topic_config_t cfg[2];
    size_t n = 0;
    if (retention_ms)
        cfg[n++] = (st_topic_config_t){"retention.ms", (char *)retention_ms};
    if (retention_bytes)
        cfg[n++] = (st_topic_config_t){"retention.bytes", (char *)retention_bytes};
    res_t r = {0};
    assert_int_equal(st_log_create_topic(f->log, name, strlen(name), nparts, cfg, n, topic_cb, &r),
                     0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    return r.topic;
}

/* A batch of @n records with timestamps ts0 + i; @pid >= 0: idempotent. */
static uint8_t *make_batch(int n, int64_t ts0, int64_t pid, int32_t seq, size_t *len)
{
    kp_record_in_t recs[64];
    char vals[64][16];
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        recs[i] = (kp_record_in_t){.timestamp = ts0 + i,
                                   .key = KP_BYTES_NULL,
                                   .value = {(const uint8_t *)vals[i], (int32_t)strlen(vals[i])}};
    }
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = KP_COMPRESSION_NONE,
                            .producer_id = pid,
                            .producer_epoch = pid >= 0 ? 0 : -1,
                            .base_sequence = pid >= 0 ? seq : -1};
    kp_writer_t w;
    kp_writer_init(&w, 1024);
    assert_int_equal(kp_batch_build(&w, &spec, recs, n), KP_BATCH_OK);
    return kp_writer_take(&w, len);
}

static void append_cb(st_err_t err, int64_t off, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->off = off;
    r->done++;
}

/* Start an append of @n records to each of @parts (one flush for all). */
static void append_all(fx_t *f, st_part_t **parts, size_t np, int n, int64_t ts0)
{
    res_t r = {0};
    for (size_t i = 0; i < np; i++) {
        size_t len;
        uint8_t *b = make_batch(n, ts0, -1, 0, &len);
        assert_int_equal(st_part_append(parts[i], b, len, append_cb, &r), 0);
        free(b);
    }
    run_until(f, &r.done, (int)np);
    assert_int_equal(r.err, ST_OK);
}

static void append_one(fx_t *f, st_part_t *p, int n, int64_t ts0, int64_t off)
{
    append_all(f, &p, 1, n, ts0);
    assert_int_equal(st_part_hw(p), off + n);
}

static void read_cb(st_err_t err, const st_slice_t *sl, size_t n, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->n = 0;
    for (size_t i = 0; i < n; i++)
        r->n += sl[i].len;
    r->done++;
}

typedef struct all_res {
    int done;
    st_err_t err;
    uint8_t *buf;
    size_t len;
} all_res_t;

static void read_all_cb(st_err_t err, const st_slice_t *sl, size_t n, void *arg)
{
    all_res_t *r = arg;
    r->err = err;
    for (size_t i = 0; i < n; i++) {
        r->buf = realloc(r->buf, r->len + sl[i].len);
        memcpy(r->buf + r->len, sl[i].buf->data + sl[i].off, sl[i].len);
        r->len += sl[i].len;
    }
    r->done++;
}

/* Every batch of @p from offset @from to the high watermark, back to back
 * (malloc'ed). */
static uint8_t *read_all(fx_t *f, st_part_t *p, int64_t from, size_t *len)
{
    all_res_t r = {0};
    int64_t off = from;
    while (off < st_part_hw(p)) {
        size_t before = r.len;
        int want = r.done + 1;
        assert_int_equal(st_part_read(p, off, 1 << 20, read_all_cb, &r), 0);
        run_until(f, &r.done, want);
        assert_int_equal(r.err, ST_OK);
        assert_true(r.len > before);
        /* the next offset: after the last batch read */
        size_t pos = before;
        while (pos < r.len) {
            const uint8_t *b = r.buf + pos;
            int64_t base = (int64_t)kp_be64(b);
            int32_t blen = (int32_t)kp_be32(b + 8);
            int32_t delta = (int32_t)kp_be32(b + 23);
            off = base + delta + 1;
            pos += (size_t)blen + 12;
        }
    }
    *len = r.len;
    return r.buf;
}

static st_err_t read_at(fx_t *f, st_part_t *p, int64_t off)
{
    res_t r = {0};
    assert_int_equal(st_part_read(p, off, 1 << 20, read_cb, &r), 0);
    run_until(f, &r.done, 1);
    return r.err;
}

static void lifecycle(fx_t *f, bool gc)
{
    res_t r = {0};
    assert_int_equal(st_log_lifecycle_run(f->log, gc, done_cb, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
}

static void range_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)kvs, (void)more, (void)rev;
    res_t *r = arg;
    r->err = err;
    r->n = n;
    r->done++;
}

static size_t count_keys(fx_t *f, const char *prefix)
{
    res_t r = {0};
    assert_int_equal(st_meta_range(f->meta, prefix, true, 0, range_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    return r.n;
}

/* Objects on disk; the empty file prepared for the next put is none yet. */
static size_t count_objects(fx_t *f)
{
    char path[512];
    snprintf(path, sizeof path, "%s/objects/objects/1", f->dir);
    DIR *d = opendir(path);
    size_t n = 0;
    if (!d)
        return 0;
    struct stat st;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".nho") != NULL && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
             st.st_size > 0;
    closedir(d);
    return n;
}

/* Manifests fold into one index key per chunk; a start reads them back
 * (with the manifests not yet folded), producer state included. */
static void test_fold_restart(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "fold", 3, NULL, NULL);
    int64_t ts = now_ms();
    for (int i = 0; i < 10; i++)
        append_all(f, t->parts, 3, 2, ts);
    /* an idempotent producer on partition 0 */
    size_t len;
    uint8_t *b = make_batch(3, ts, 7, 0, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, 20);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unfolded, 11);
    assert_int_equal(count_keys(f, "/nuthatch/manifests/"), 11);
    lifecycle(f, false);
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unfolded, 0);
    assert_int_equal(s.index_keys, 31);
    assert_int_equal(s.index_keys_max_part, 11);
    assert_int_equal(count_keys(f, "/nuthatch/manifests/"), 0);
    assert_true(s.fold_txns >= 1);
    /* two more flushes stay unfolded over the restart */
    append_all(f, t->parts, 3, 2, ts);
    append_all(f, t->parts, 3, 2, ts);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "fold", 4);
    assert_non_null(t);
    assert_int_equal(st_part_hw(t->parts[0]), 27);
    assert_int_equal(st_part_hw(t->parts[1]), 24);
    assert_int_equal(st_part_hw(t->parts[2]), 24);
    for (int64_t o = 0; o < 24; o += 2)
        assert_int_equal(read_at(f, t->parts[1], o), ST_OK);
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unfolded, 2);
    assert_int_equal(s.index_keys, 31);
    /* the producer's retry gets its original offset after the restart */
    r = (res_t){0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, 20);
    free(b);
    assert_int_equal(st_part_hw(t->parts[0]), 27);
    lifecycle(f, false);
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unfolded, 0);
    assert_int_equal(s.index_keys, 37);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "fold", 4);
    assert_int_equal(st_part_hw(t->parts[2]), 24);
    assert_int_equal(read_at(f, t->parts[2], 23), ST_OK);
}

/* A manifest with more chunks than one transaction holds folds over
 * several; the start-up in between still sees every chunk once. */
static void test_fold_wide(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "wide", 150, NULL, NULL);
    append_all(f, t->parts, 150, 1, now_ms());
    append_all(f, t->parts, 150, 1, now_ms());
    lifecycle(f, false);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unfolded, 0);
    assert_int_equal(s.index_keys, 300);
    assert_true(s.fold_txns >= 5);
    assert_int_equal(count_keys(f, "/nuthatch/manifests/"), 0);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "wide", 4);
    for (int p = 0; p < 150; p++)
        assert_int_equal(st_part_hw(t->parts[p]), 2);
}

/* retention.ms drops whole chunks whose max timestamp is too old and
 * advances the log start; -1 keeps everything; a restart agrees. */
static void test_retention_time(void **state)
{
    fx_t *f = *state;
    st_topic_t *s = create(f, "short", 2, "60000", NULL);
    st_topic_t *l = create(f, "long", 2, "-1", NULL);
    int64_t old = now_ms() - 3600 * 1000;
    st_part_t *both[4] = {s->parts[0], s->parts[1], l->parts[0], l->parts[1]};
    for (int i = 0; i < 5; i++)
        append_all(f, both, 4, 2, old); /* shared objects */
    append_all(f, both, 4, 2, now_ms());
    lifecycle(f, false);
    for (int p = 0; p < 2; p++) {
        assert_int_equal(st_part_log_start(s->parts[p]), 10);
        assert_int_equal(st_part_hw(s->parts[p]), 12);
        assert_int_equal(read_at(f, s->parts[p], 9), ST_ERR_RANGE);
        assert_int_equal(read_at(f, s->parts[p], 10), ST_OK);
        assert_int_equal(st_part_log_start(l->parts[p]), 0);
        assert_int_equal(read_at(f, l->parts[p], 0), ST_OK);
    }
    st_log_stats_t st;
    st_log_stats(f->log, &st);
    assert_int_equal(st.chunks_expired, 10);
    /* the long topic's chunks were copied out of the shared objects the
     * short topic left mostly dead: one segment per partition (and the
     * short topic's last chunks out of the object that left behind) */
    assert_int_equal(count_objects(f), 6 + st.segments_written);
    assert_true(st.segments_written >= 2);
    assert_int_equal(st.index_keys, 4);
    assert_int_equal(st.index_keys_max_part, 1);
    /* after the grace, the shared objects are gone; the long topic reads
     * back completely */
    lifecycle(f, true);
    run_for(f, 400);
    lifecycle(f, true);
    st_log_stats(f->log, &st);
    assert_int_equal(st.gc_objects_deleted, 6);
    assert_int_equal(count_objects(f), st.segments_written);
    for (int p = 0; p < 2; p++)
        for (int64_t o = 0; o < 12; o++)
            assert_int_equal(read_at(f, l->parts[p], o), ST_OK);
    assert_int_equal(read_at(f, s->parts[0], 11), ST_OK);
    fx_close(f);
    fx_open(f);
    s = st_log_topic(f->log, "short", 5);
    l = st_log_topic(f->log, "long", 4);
    assert_int_equal(st_part_log_start(s->parts[1]), 10);
    assert_int_equal(st_part_hw(s->parts[1]), 12);
    assert_int_equal(st_part_log_start(l->parts[1]), 0);
    assert_int_equal(st_part_hw(l->parts[1]), 12);
    /* everything expires: the log start reaches the high watermark and
     * stays there over a restart */
    st_topic_config_t c = {"retention.ms", "1"};
    res_t r = {0};
    assert_int_equal(st_log_set_topic_configs(f->log, s, &c, 1, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    run_for(f, 10);
    lifecycle(f, false);
    assert_int_equal(st_part_log_start(s->parts[0]), 12);
    fx_close(f);
    fx_open(f);
    s = st_log_topic(f->log, "short", 5);
    assert_int_equal(st_part_log_start(s->parts[0]), 12);
    assert_int_equal(st_part_hw(s->parts[0]), 12);
    append_one(f, s->parts[0], 1, now_ms(), 12);
}

/* retention.bytes keeps the newest chunks that fit; DeleteRecords' start
 * lets the chunks below it go; their objects are collected. */
static void test_retention_bytes(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "bytes", 1, NULL, "300");
    for (int i = 0; i < 20; i++)
        append_one(f, t->parts[0], 2, now_ms(), 2 * i);
    lifecycle(f, false);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_true(s.index_keys >= 1 && s.index_keys < 20);
    int64_t start = st_part_log_start(t->parts[0]);
    assert_true(start > 0 && start < 40);
    assert_int_equal(start % 2, 0);
    assert_int_equal(read_at(f, t->parts[0], start), ST_OK);
    assert_int_equal(read_at(f, t->parts[0], start - 1), ST_ERR_RANGE);
    /* every object not referenced any more goes after the grace */
    size_t before = count_objects(f);
    assert_int_equal(before, 20);
    lifecycle(f, true);
    run_for(f, 400);
    lifecycle(f, true);
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_objects_deleted, (uint64_t)(start / 2));
    assert_int_equal(count_objects(f), 20 - (size_t)(start / 2));
    for (int64_t o = start; o < 40; o++)
        assert_int_equal(read_at(f, t->parts[0], o), ST_OK);
}

/* GC: an orphan of a failed commit and a deleted topic's object go after
 * the grace; a commit held past the grace fails instead of committing a
 * collected object; everything acknowledged reads back. */
static void test_gc(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "keep", 1, NULL, NULL);
    append_one(f, t->parts[0], 2, now_ms(), 0);
    /* an orphan: the commit fails */
    st_meta_fault_t plan = {.txn_nth = 1, .err = ST_ERR_IO};
    st_meta_faulty_set(f->meta, &plan);
    size_t len;
    uint8_t *b = make_batch(2, now_ms(), -1, 0, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_not_equal(r.err, ST_OK);
    st_meta_faulty_set(f->meta, NULL);
    append_one(f, t->parts[0], 2, now_ms(), 2);
    /* a deleted topic's object */
    st_topic_t *g = create(f, "gone", 1, NULL, NULL);
    append_one(f, g->parts[0], 3, now_ms(), 0);
    r = (res_t){0};
    assert_int_equal(st_log_delete_topic(f->log, g, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(count_objects(f), 4);
    lifecycle(f, true); /* first seen */
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_objects_deleted, 0);
    assert_int_equal(s.gc_unreferenced, 2);
    run_for(f, 400);
    lifecycle(f, true);
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_objects_deleted, 2);
    assert_int_equal(count_objects(f), 2);
    /* a commit held past the grace */
    st_log_hold_commits(f->log, true);
    res_t held = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &held), 0);
    run_for(f, 100); /* uploaded, waiting to commit */
    assert_int_equal(held.done, 0);
    assert_int_equal(count_objects(f), 3);
    lifecycle(f, true);
    run_for(f, 400);
    lifecycle(f, true);
    run_until(f, &held.done, 1);
    assert_int_equal(held.err, ST_ERR_IO);
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_flushes_failed, 1);
    assert_int_equal(s.gc_objects_deleted, 3);
    assert_int_equal(count_objects(f), 2);
    st_log_hold_commits(f->log, false);
    append_one(f, t->parts[0], 2, now_ms(), 4);
    free(b);
    lifecycle(f, true);
    run_for(f, 400);
    lifecycle(f, true);
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_objects_deleted, 3);
    assert_int_equal(s.gc_unreferenced, 0);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "keep", 4);
    assert_int_equal(st_part_hw(t->parts[0]), 6);
    for (int64_t o = 0; o < 6; o += 2)
        assert_int_equal(read_at(f, t->parts[0], o), ST_OK);
    assert_null(st_log_topic(f->log, "gone", 4));
}

/* Above index_max_keys, runs of small chunks are copied into segment
 * objects: the key count stays bounded, the bytes read back are the same,
 * producer state survives, and the replaced objects are collected. */
static void test_merge(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.index_max_keys = 8;
    fx_open(f);
    st_topic_t *t = create(f, "merge", 2, NULL, NULL);
    int64_t ts = now_ms();
    uint8_t *last = NULL;
    size_t last_len = 0;
    for (int i = 0; i < 40; i++) {
        size_t len;
        uint8_t *b = make_batch(3, ts + i, 9, 3 * i, &len);
        res_t r = {0};
        assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
        size_t len1;
        uint8_t *b1 = make_batch(1 + i % 4, ts + i, -1, 0, &len1);
        assert_int_equal(st_part_append(t->parts[1], b1, len1, append_cb, &r), 0);
        free(b1);
        run_until(f, &r.done, 2);
        assert_int_equal(r.err, ST_OK);
        free(last);
        last = b;
        last_len = len;
    }
    size_t len0, len1;
    uint8_t *before0 = read_all(f, t->parts[0], 0, &len0);
    uint8_t *before1 = read_all(f, t->parts[1], 0, &len1);
    lifecycle(f, false);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_true(s.segments_written >= 2);
    assert_true(s.index_keys_max_part <= 8);
    size_t n0, n1;
    uint8_t *after0 = read_all(f, t->parts[0], 0, &n0);
    uint8_t *after1 = read_all(f, t->parts[1], 0, &n1);
    assert_int_equal(n0, len0);
    assert_memory_equal(after0, before0, len0);
    assert_int_equal(n1, len1);
    assert_memory_equal(after1, before1, len1);
    free(after0);
    free(after1);
    /* the replaced flush objects go after the grace */
    lifecycle(f, true);
    run_for(f, 400);
    lifecycle(f, true);
    st_log_stats(f->log, &s);
    assert_true(s.gc_objects_deleted >= 30);
    assert_int_equal(count_objects(f), 40 + s.segments_written - s.gc_objects_deleted);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "merge", 5);
    st_log_stats(f->log, &s);
    assert_true(s.index_keys_max_part <= 8);
    assert_int_equal(st_part_hw(t->parts[0]), 120);
    after0 = read_all(f, t->parts[0], 0, &n0);
    assert_int_equal(n0, len0);
    assert_memory_equal(after0, before0, len0);
    /* the producer's last batch, retried, gets its offset back */
    res_t r = {0};
    assert_int_equal(st_part_append(t->parts[0], last, last_len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, 117);
    assert_int_equal(st_part_hw(t->parts[0]), 120);
    free(last);
    free(before0);
    free(before1);
    free(after0);
}

/* Append @nb batches of @nrec records to @p, all in one flush. */
static void append_flush(fx_t *f, st_part_t *p, int nb, int nrec)
{
    res_t r = {0};
    for (int i = 0; i < nb; i++) {
        size_t len;
        uint8_t *b = make_batch(nrec, now_ms(), -1, 0, &len);
        assert_int_equal(st_part_append(p, b, len, append_cb, &r), 0);
        free(b);
    }
    run_until(f, &r.done, nb);
    assert_int_equal(r.err, ST_OK);
}

/* Merging goes by size tiers: a segment made of flushes is not copied
 * again into the segment of the next run of flushes, while the key bound
 * still holds; chunks of no like size are merged all the same. */
static void test_merge_tiers(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.index_max_keys = 8;
    f->cfg.segment_bytes = 64 << 10; /* sizes below 1 KiB count as 1 KiB */
    fx_open(f);
    st_topic_t *t = create(f, "tiers", 1, NULL, NULL);
    st_part_t *p = t->parts[0];
    for (int i = 0; i < 40; i++)
        append_flush(f, p, 1, 64); /* about 640 bytes each */
    lifecycle(f, false);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.segments_written, 1);
    assert_int_equal(s.chunks_merged, 40); /* one segment of about 25 KiB */
    for (int i = 0; i < 20; i++)
        append_flush(f, p, 1, 64);
    lifecycle(f, false);
    st_log_stats(f->log, &s);
    /* the 20 new flushes into a segment of their own: the first is not
     * copied again (it would have made 21) */
    assert_int_equal(s.segments_written, 2);
    assert_int_equal(s.chunks_merged, 60);
    assert_int_equal(s.index_keys_max_part, 2);
    /* no two neighbours of a like size: 20 KiB flushes between tiny ones */
    for (int i = 0; i < 12; i++)
        append_flush(f, p, i % 2 ? 1 : 32, i % 2 ? 1 : 64);
    lifecycle(f, false);
    st_log_stats(f->log, &s);
    assert_true(s.segments_written > 2);
    assert_true(s.index_keys_max_part <= 8);
    size_t n;
    uint8_t *all = read_all(f, p, 0, &n);
    assert_int_equal(st_part_hw(p), 60 * 64 + 6 * 32 * 64 + 6);
    free(all);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "tiers", 5);
    assert_int_equal(st_part_hw(t->parts[0]), 60 * 64 + 6 * 32 * 64 + 6);
}

/* A segment spans at most an eighth of the retention, measured from where
 * its records begin: one at the front does not take in each next run of
 * flushes (its newest timestamp would then stay recent and it would never
 * expire), so retention advances the log start while merging goes on. */
static void test_merge_span(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.index_max_keys = 8;
    fx_open(f);
    st_topic_t *t = create(f, "span", 1, "64000", NULL); /* segments of at most 8 s */
    st_part_t *p = t->parts[0];
    int64_t t0 = now_ms() - 40000;
    for (int i = 0; i < 200; i++) { /* a flush every 100 ms, from 40 s to 20 s ago */
        append_one(f, p, 1, t0 + 100 * i, i);
        if (i % 10 == 9)
            lifecycle(f, false);
    }
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_true(s.segments_written >= 3);
    assert_true(s.index_keys_max_part <= 8);
    assert_int_equal(st_part_log_start(p), 0);
    /* records older than 25 s go: about the first 150 flushes; at least
     * the segments wholly among them */
    st_topic_config_t c = {"retention.ms", "25000"};
    res_t r = {0};
    assert_int_equal(st_log_set_topic_configs(f->log, t, &c, 1, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    lifecycle(f, false);
    /* at most up to the first record younger than 25 s now (a slow run,
     * as under sanitizers, lets more of them age past it) */
    int64_t young = (now_ms() - 25000 - t0) / 100 + 1;
    assert_true(st_part_log_start(p) >= 60);
    assert_true(st_part_log_start(p) <= young);
    size_t n;
    uint8_t *all = read_all(f, p, st_part_log_start(p), &n);
    assert_true(n > 0);
    free(all);
}

/* GC runs continuously while appends commit, while chunks are merged into
 * segments, and while a commit is held past the grace (it fails, its object
 * is deleted, nothing references it): afterwards every partition reads back
 * exactly the acknowledged batches, before and after a restart, and no
 * unreferenced object is left once the grace has passed. */
static void test_gc_race(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.index_max_keys = 6;
    f->cfg.gc_grace_ms = 150;
    fx_open(f);
    enum { NP = 3 };
    st_topic_t *t = create(f, "race", NP, NULL, NULL);
    int64_t acked[NP] = {0};
    int held_failed = 0;
    for (int round = 0; round < 40; round++) {
        /* a few appends, GC and merging in between */
        for (int k = 0; k < 3; k++) {
            res_t r = {0};
            for (int p = 0; p < NP; p++) {
                size_t len;
                uint8_t *b = make_batch(1 + (round + p) % 3, now_ms(), -1, 0, &len);
                assert_int_equal(st_part_append(t->parts[p], b, len, append_cb, &r), 0);
                free(b);
            }
            res_t g = {0};
            assert_int_equal(st_log_lifecycle_run(f->log, true, done_cb, &g), 0);
            run_until(f, &r.done, NP);
            run_until(f, &g.done, 1);
            assert_int_equal(r.err, ST_OK);
            for (int p = 0; p < NP; p++)
                acked[p] = st_part_hw(t->parts[p]);
        }
        if (round % 10 == 5) { /* a commit held past the grace */
            st_log_hold_commits(f->log, true);
            res_t h = {0};
            size_t len;
            uint8_t *b = make_batch(2, now_ms(), -1, 0, &len);
            assert_int_equal(st_part_append(t->parts[round % NP], b, len, append_cb, &h), 0);
            free(b);
            for (int i = 0; i < 100 && !h.done; i++) {
                run_for(f, 20);
                lifecycle(f, true);
            }
            assert_int_equal(h.done, 1);
            assert_int_equal(h.err, ST_ERR_IO);
            held_failed++;
            st_log_hold_commits(f->log, false);
            assert_int_equal(st_part_hw(t->parts[round % NP]), acked[round % NP]);
        }
    }
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_flushes_failed, (uint64_t)held_failed);
    assert_true(s.segments_written > 0);
    assert_true(s.gc_objects_deleted > 0);
    assert_true(s.index_keys_max_part <= 6 + 62);
    uint8_t *before[NP];
    size_t blen[NP];
    for (int p = 0; p < NP; p++) {
        assert_int_equal(st_part_hw(t->parts[p]), acked[p]);
        before[p] = read_all(f, t->parts[p], 0, &blen[p]);
        /* contiguous batches from 0 to the high watermark */
        int64_t next = 0;
        for (size_t pos = 0; pos < blen[p];) {
            const uint8_t *b = before[p] + pos;
            assert_int_equal((int64_t)kp_be64(b), next);
            next += (int32_t)kp_be32(b + 23) + 1;
            pos += (size_t)(int32_t)kp_be32(b + 8) + 12;
        }
        assert_int_equal(next, acked[p]);
    }
    /* no orphan survives the grace */
    lifecycle(f, true);
    run_for(f, 250);
    lifecycle(f, true);
    st_log_stats(f->log, &s);
    assert_int_equal(s.gc_unreferenced, 0);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "race", 4);
    for (int p = 0; p < NP; p++) {
        size_t n;
        uint8_t *after = read_all(f, t->parts[p], 0, &n);
        assert_int_equal(n, blen[p]);
        assert_memory_equal(after, before[p], n);
        free(after);
        free(before[p]);
    }
}

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fold_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fold_wide, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_tiers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_span, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_race, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
