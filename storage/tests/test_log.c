/*
 * test_log.c: the log over the directory object store and the SQLite
 * metadata store -- offset assignment, one object per flush, acks after
 * commit, failure rollback, fencing, recovery, reads, offsets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kp_batch.h"
#include "st_format.h"
#include "st_log.h"
#include "st_meta.h"
#include "st_objstore.h"
#include "log_fx.h"

/* Objects on disk; the empty file prepared for the next put is none yet. */
static size_t count_objects(fx_t *f)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "find %s/objects -type f -name '*.nho' -size +0 | wc -l", f->dir);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    assert_int_equal(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

/* Appends to several partitions in one loop turn go into one object, are
 * acknowledged after the commit, and get contiguous offsets. */
static void test_one_object_per_flush(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "grouped", 4);
    size_t len;
    uint8_t *b = make_batch(3, 1000, KP_COMPRESSION_NONE, &len);
    res_t r[8] = {{0}};
    for (int i = 0; i < 8; i++)
        assert_int_equal(st_part_append(t->parts[i % 4], b, len, append_cb, &r[i]), 0);
    assert_int_equal(r[0].done, 0); /* nothing acknowledged before the commit */
    assert_int_equal(st_part_hw(t->parts[0]), 0);
    assert_int_equal(st_part_leo(t->parts[0]), 6);
    for (int i = 0; i < 8; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_OK);
        assert_int_equal(r[i].off, i < 4 ? 0 : 3);
    }
    assert_int_equal(count_objects(f), 1);
    assert_int_equal(st_part_hw(t->parts[3]), 6);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.flushes, 1);
    free(b);
}

typedef struct rd {
    int done;
    st_err_t err;
    uint8_t data[65536];
    size_t len;
} rd_t;

static void read_cb(st_err_t err, const st_slice_t *sl, size_t n, void *arg)
{
    rd_t *r = arg;
    r->err = err;
    r->len = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(r->data + r->len, sl[i].buf->data + sl[i].off, sl[i].len);
        r->len += sl[i].len;
    }
    r->done++;
}

static void read_all(fx_t *f, st_part_t *p, int64_t off, rd_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(st_part_read(p, off, sizeof r->data, read_cb, r), 0);
    assert_int_equal(r->done, 0);
    run_until(f, &r->done, 1);
}

/* Committed batches read back byte-exactly (offsets patched), from the
 * tail and, after a restart, from the object store. */
static void test_read_and_recover(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "rr", 1);
    size_t len;
    uint8_t *b = make_batch(5, 2000, KP_COMPRESSION_ZSTD, &len);
    res_t r[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[i]), 0);
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].off, 5 * i);
    }
    rd_t rd;
    read_all(f, t->parts[0], 7, &rd); /* starts at the batch holding offset 7 */
    assert_int_equal(rd.err, ST_OK);
    assert_int_equal(rd.len, 2 * len);
    assert_int_equal(kp_be64(rd.data), 5);
    assert_memory_equal(rd.data + 12 + 4, b + 12 + 4, len - 16);
    read_all(f, t->parts[0], 15, &rd); /* at the high watermark: nothing */
    assert_int_equal(rd.err, ST_OK);
    assert_int_equal(rd.len, 0);
    read_all(f, t->parts[0], 16, &rd);
    assert_int_equal(rd.err, ST_ERR_RANGE);

    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "rr", 2);
    assert_non_null(t);
    assert_int_equal(st_part_hw(t->parts[0]), 15);
    /* From the store, a read returns what one ranged GET brought back (a
     * chunk per flush here); reading on continues where it stopped. */
    int64_t next = 0;
    for (int i = 0; i < 3; i++) {
        read_all(f, t->parts[0], next, &rd);
        assert_int_equal(rd.err, ST_OK);
        assert_int_equal(rd.len, len);
        assert_int_equal(kp_be64(rd.data), next);
        assert_memory_equal(rd.data + 16, b + 16, len - 16);
        next += 5;
    }
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_true(s.object_gets >= 1);
    /* appends continue after the recovered offsets */
    res_t r4 = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r4), 0);
    run_until(f, &r4.done, 1);
    assert_int_equal(r4.off, 15);
    free(b);
}

/* st_part_append_buf keeps batches where they are: offsets set in place, a
 * reference to the buffer until the batches are in an object or failed. */
static void test_append_in_place(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "inplace", 1);
    size_t len;
    uint8_t *b = make_batch(5, 2000, KP_COMPRESSION_NONE, &len);
    st_buf_t *buf = st_buf_new(7 + 2 * len);
    assert_non_null(buf);
    memset(buf->data, 0xEE, 7);
    memcpy(buf->data + 7, b, len);
    memcpy(buf->data + 7 + len, b, len);
    res_t r[2] = {{0}};
    assert_int_equal(st_part_append_buf(t->parts[0], buf, 7 + 2 * len, 1, append_cb, &r[0]), -1);
    assert_int_equal(st_part_append_buf(t->parts[0], buf, 7, len, append_cb, &r[0]), 0);
    assert_int_equal(st_part_append_buf(t->parts[0], buf, 7 + len, len, append_cb, &r[1]), 0);
    assert_int_equal(buf->refs, 3);
    assert_int_equal(kp_be64(buf->data + 7 + len), 5); /* set in place */
    run_until(f, &r[1].done, 1);
    assert_int_equal(r[0].err, ST_OK);
    assert_int_equal(r[1].off, 5);
    assert_int_equal(buf->refs, 1);
    rd_t rd;
    read_all(f, t->parts[0], 0, &rd);
    assert_int_equal(rd.err, ST_OK);
    assert_int_equal(rd.len, 2 * len);
    assert_memory_equal(rd.data, buf->data + 7, 2 * len);

    /* a failed flush releases them too */
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.fail_nth = 1, .err = ST_ERR_IO});
    res_t bad = {0};
    assert_int_equal(st_part_append_buf(t->parts[0], buf, 7, len, append_cb, &bad), 0);
    assert_int_equal(buf->refs, 2);
    run_until(f, &bad.done, 1);
    assert_int_equal(bad.err, ST_ERR_IO);
    assert_int_equal(buf->refs, 1);
    assert_int_equal(st_part_leo(t->parts[0]), 10);
    st_buf_unref(buf);
    free(b);
}

/* A failed upload is never acknowledged; the log end offset returns to
 * the high watermark and a retry lands at the same offsets. */
static void test_failed_flush_rolls_back(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "fail", 2);
    size_t len;
    uint8_t *b = make_batch(2, 3000, KP_COMPRESSION_NONE, &len);
    res_t ok = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &ok), 0);
    run_until(f, &ok.done, 1);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.fail_nth = 1, .err = ST_ERR_IO});
    res_t r[3] = {{0}};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[0]), 0);
    assert_int_equal(st_part_append(t->parts[1], b, len, append_cb, &r[1]), 0);
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[2]), 0);
    for (int i = 0; i < 3; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_ERR_IO);
    }
    assert_int_equal(st_part_leo(t->parts[0]), 2);
    assert_int_equal(st_part_hw(t->parts[0]), 2);
    assert_int_equal(st_part_leo(t->parts[1]), 0);
    res_t again = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &again), 0);
    run_until(f, &again.done, 1);
    assert_int_equal(again.err, ST_OK);
    assert_int_equal(again.off, 2);
    free(b);
}

/* While an upload is in flight, appends accumulate into the next object. */
static void test_accumulates_while_inflight(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "acc", 1);
    size_t len;
    uint8_t *b = make_batch(1, 4000, KP_COMPRESSION_NONE, &len);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_nth = 1, .delay_ms = 200});
    size_t before = count_objects(f);
    res_t r[20] = {{0}};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[0]), 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK); /* the first flush starts */
    for (int i = 1; i < 20; i++)
        assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[i]), 0);
    for (int i = 0; i < 20; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_OK);
        assert_int_equal(r[i].off, i);
    }
    assert_int_equal(count_objects(f) - before, 2);
    free(b);
}

/* Run the loop until @n PUTs have reached the object store (at most ~5 s). */
static void wait_puts(fx_t *f, uint64_t n)
{
    for (int i = 0; i < 5000 && st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT) < n; i++)
        if (event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) != 0 ||
            st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT) < n)
            usleep(1000);
}

/* The next upload does not wait for the commit of the one before: with
 * commits held, a batch appended after the first flush's object went up
 * is uploaded at once (before, it waited for that commit); both are
 * acknowledged in order once commits resume. */
static void test_upload_overlaps_commit(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "overlap", 1);
    size_t len;
    uint8_t *b = make_batch(1, 4000, KP_COMPRESSION_NONE, &len);
    uint64_t puts0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT);
    st_log_hold_commits(f->log, true);
    res_t r[2] = {{0}};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[0]), 0);
    wait_puts(f, puts0 + 1);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT), puts0 + 1);
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[1]), 0);
    wait_puts(f, puts0 + 2);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT), puts0 + 2);
    assert_int_equal(r[0].done + r[1].done, 0); /* nothing is acknowledged before its commit */
    st_log_hold_commits(f->log, false);
    run_until(f, &r[1].done, 1);
    run_until(f, &r[0].done, 1);
    assert_int_equal(r[0].err, ST_OK);
    assert_int_equal(r[0].off, 0);
    assert_int_equal(r[1].err, ST_OK);
    assert_int_equal(r[1].off, 1);
    free(b);
}

static void txn_cb(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                   void *arg)
{
    (void)rev, (void)res, (void)n, (void)ok;
    res_t *r = arg;
    r->err = err;
    r->done++;
}

static void range_count_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                           void *arg)
{
    (void)kvs, (void)more, (void)rev;
    res_t *r = arg;
    r->err = err;
    r->off = (int64_t)n;
    r->done++;
}

/* Keys under @prefix in the metadata store. */
static int64_t count_keys(fx_t *f, const char *prefix)
{
    res_t r = {0};
    assert_int_equal(st_meta_range(f->meta, prefix, true, 0, range_count_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    return r.off;
}

/* A bumped fence (another incarnation took over) fails the commit. */
static void test_fenced_commit_fails(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "fenced", 1);
    st_op_t put = {.type = ST_OP_PUT,
                   .key = "/nuthatch/nodes/1/fence",
                   .val = (const uint8_t *)"999",
                   .val_len = 3};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    res_t tr = {0};
    assert_int_equal(st_meta_txn(f->meta, &txn, txn_cb, &tr), 0);
    run_until(f, &tr.done, 1);
    size_t len;
    uint8_t *b = make_batch(1, 5000, KP_COMPRESSION_NONE, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_ERR_CONFLICT);
    assert_int_equal(st_part_hw(t->parts[0]), 0);
    assert_int_equal(st_part_leo(t->parts[0]), 0);
    free(b);
}

static void time_cb(st_err_t err, int64_t off, int64_t ts, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->off = off;
    r->ts = ts;
    r->done++;
}

static void test_offset_for_time(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "time", 1);
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *b =
            make_batch(4, 10000 + 100 * i, i == 1 ? KP_COMPRESSION_LZ4 : KP_COMPRESSION_NONE, &len);
        res_t r = {0};
        assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
        run_until(f, &r.done, 1);
        free(b);
    }
    static const struct {
        int64_t ts, off;
    } cases[] = {{0, 0}, {10002, 2}, {10050, 4}, {10101, 5}, {10203, 11}, {10204, -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        res_t r = {0};
        assert_int_equal(st_part_offset_for_time(t->parts[0], cases[i].ts, time_cb, &r), 0);
        run_until(f, &r.done, 1);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.off, cases[i].off);
    }
}

static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->done++;
}

typedef struct offs_res {
    int done;
    st_err_t err;
    size_t n;
    int64_t off[4];
    char md[4][32];
} offs_res_t;

static void offsets_cb(st_err_t err, const st_offset_commit_t *o, size_t n, void *arg)
{
    offs_res_t *r = arg;
    r->err = err;
    r->n = n;
    for (size_t i = 0; i < n && i < 4; i++) {
        r->off[i] = o[i].offset;
        snprintf(r->md[i], sizeof r->md[i], "%s", o[i].metadata ? o[i].metadata : "(null)");
    }
    r->done++;
}

static void test_offsets_survive_restart(void **state)
{
    fx_t *f = *state;
    st_offset_commit_t offs[2] = {
        {.topic = "a", .partition = 0, .offset = 42, .leader_epoch = -1, .metadata = "m"},
        {.topic = "a", .partition = 1, .offset = 7, .leader_epoch = 3, .metadata = NULL},
    };
    res_t r = {0};
    assert_int_equal(st_log_commit_offsets(f->log, "g/1 x", offs, 2, done_cb, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    fx_close(f);
    fx_open(f);
    offs_res_t o = {0};
    assert_int_equal(st_log_fetch_offsets(f->log, "g/1 x", offsets_cb, &o), 0);
    run_until(f, &o.done, 1);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.off[0], 42);
    assert_string_equal(o.md[0], "m");
    assert_int_equal(o.off[1], 7);
    assert_string_equal(o.md[1], "(null)");
}

static void test_delete_and_recreate(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "gone", 1);
    kp_uuid_t old = t->id;
    size_t len;
    uint8_t *b = make_batch(2, 6000, KP_COMPRESSION_NONE, &len);
    res_t a = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &a), 0);
    run_until(f, &a.done, 1);
    /* A leader record of its partition, as a gateway writes it: deleted with
     * the topic. */
    char hex[33], leaders[128], rec[160];
    st_uuid_hex(t->id, hex);
    snprintf(leaders, sizeof leaders, "/nuthatch/leaders/%s/", hex);
    snprintf(rec, sizeof rec, "%s0/state", leaders);
    st_op_t put = {.type = ST_OP_PUT, .key = rec, .val = (const uint8_t *)"x", .val_len = 1};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    res_t tr = {0};
    assert_int_equal(st_meta_txn(f->meta, &txn, txn_cb, &tr), 0);
    run_until(f, &tr.done, 1);
    assert_int_equal(count_keys(f, leaders), 1);
    res_t d = {0};
    assert_int_equal(st_log_delete_topic(f->log, t, done_cb, &d), 0);
    assert_null(st_log_topic(f->log, "gone", 4)); /* vanishes at once */
    run_until(f, &d.done, 1);
    assert_int_equal(d.err, ST_OK);
    assert_int_equal(count_keys(f, leaders), 0);
    t = create(f, "gone", 1);
    assert_memory_not_equal(t->id.b, old.b, 16);
    assert_int_equal(st_part_hw(t->parts[0]), 0);
    res_t a2 = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &a2), 0);
    run_until(f, &a2.done, 1);
    assert_int_equal(a2.off, 0);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "gone", 4);
    assert_non_null(t);
    assert_int_equal(st_part_hw(t->parts[0]), 2); /* the old topic's data is not resurrected */
    /* creating an existing topic fails asynchronously */
    res_t c = {0};
    assert_int_equal(st_log_create_topic(f->log, "gone", 4, 1, NULL, 0, topic_cb, &c), 0);
    assert_int_equal(c.done, 0);
    run_until(f, &c.done, 1);
    assert_int_equal(c.err, ST_ERR_EXISTS);
    free(b);
}

/* A create of a name whose creation is in flight is answered after it, when
 * the topic can be found (a produce pipelined behind the one creating its
 * topic must find it). */
typedef struct seen {
    fx_t *f;
    int done;
    st_err_t err;
    bool visible; /* the topic was in the catalog when the callback ran */
    int order;
    int *clock;
} seen_t;

static void seen_cb(st_err_t err, st_topic_t *t, void *arg)
{
    (void)t;
    seen_t *s = arg;
    s->err = err;
    s->visible = st_log_topic(s->f->log, "twice", 5) != NULL;
    s->order = ++*s->clock;
    s->done++;
}

static void test_create_while_creating(void **state)
{
    fx_t *f = *state;
    int clock = 0;
    seen_t first = {.f = f, .clock = &clock}, second = {.f = f, .clock = &clock};
    assert_int_equal(st_log_create_topic(f->log, "twice", 5, 1, NULL, 0, seen_cb, &first), 0);
    assert_int_equal(st_log_create_topic(f->log, "twice", 5, 1, NULL, 0, seen_cb, &second), 0);
    run_until(f, &second.done, 1);
    assert_int_equal(first.done, 1);
    assert_int_equal(first.err, ST_OK);
    assert_int_equal(second.err, ST_ERR_EXISTS);
    assert_true(second.visible);
    assert_true(first.order < second.order);
}

static void wake_fn(st_waiter_t *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

static void test_waiters_woken_by_commit(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "wait", 1);
    int woken = 0;
    st_waiter_t w = {.fn = wake_fn, .arg = &woken};
    st_part_wait(t->parts[0], &w);
    size_t len;
    uint8_t *b = make_batch(1, 7000, KP_COMPRESSION_NONE, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
    run_until(f, &woken, 1);
    assert_int_equal(r.done, 1); /* acknowledged before waiters run */
    assert_null(w.part);
    st_waiter_t w2 = {.fn = wake_fn, .arg = &woken};
    st_part_wait(t->parts[0], &w2);
    st_part_unwait(&w2);
    res_t r2 = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r2), 0);
    run_until(f, &r2.done, 1);
    assert_int_equal(woken, 1);
    free(b);
}

/* A configured cluster id is kept; a store of another cluster is refused. */
static void test_configured_cluster_id(void **state)
{
    fx_t *f = *state;
    assert_int_equal(strlen(st_log_cluster_id(f->log)), 22); /* generated */
    fx_close(f);
    f->cfg.cluster_id = "other-cluster";
    char errstr[256], path[512];
    snprintf(path, sizeof path, "%s/objects", f->dir);
    f->os = st_objstore_dir_new(f->base, path, 1, errstr, sizeof errstr);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    f->meta = st_meta_sqlite_new(f->base, path, errstr, sizeof errstr);
    f->log = st_log_new(f->base, f->os, f->meta, &f->cfg);
    res_t r = {0};
    assert_int_equal(st_log_open(f->log, open_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_ERR_INVALID);
    assert_non_null(strstr(st_log_open_error(f->log), "not the configured 'other-cluster'"));
    st_log_free(f->log);
    st_meta_free(f->meta);
    st_objstore_free(f->os);
    /* a fresh store takes the configured id */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s/objects %s/meta.db*", f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
    fx_open(f);
    assert_string_equal(st_log_cluster_id(f->log), "other-cluster");
    f->cfg.cluster_id = NULL;
}

/* Append one batch of @n records and wait for its result. */
static res_t append_one(fx_t *f, st_part_t *p, int n, int64_t ts)
{
    size_t len;
    uint8_t *b = make_batch(n, ts, KP_COMPRESSION_NONE, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(p, b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    free(b);
    return r;
}

/* Restart the log; partition 0 of @topic must end at @hw, and the batch
 * holding offset @off must hold @count records. */
static void reopen_expect(fx_t *f, const char *topic, int64_t hw, int64_t off, uint32_t count)
{
    fx_close(f);
    fx_open(f);
    st_topic_t *t = st_log_topic(f->log, topic, strlen(topic));
    assert_non_null(t);
    assert_int_equal(st_part_hw(t->parts[0]), hw);
    rd_t rd;
    read_all(f, t->parts[0], off, &rd);
    assert_int_equal(rd.err, ST_OK);
    assert_int_equal(kp_be32(rd.data + KP_BATCH_OFF_RECORD_COUNT), count);
}

/* ---------------------------------------------------------------- commit ahead */

#define MANIFESTS ST_KEY_ROOT "/manifests/"

static void reopen_ahead(fx_t *f)
{
    fx_close(f);
    f->cfg.commit_ahead = true;
    fx_open(f);
}

/* cfg.commit_ahead: the manifest is committed while the object is still
 * being written, and the append is answered only once both are done. */
static void test_commit_ahead(void **state)
{
    fx_t *f = *state;
    reopen_ahead(f);
    st_topic_t *t = create(f, "ahead1", 1);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_nth = 1, .delay_ms = 500});
    size_t len;
    uint8_t *b = make_batch(3, 100, KP_COMPRESSION_NONE, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r), 0);
    for (int i = 0; i < 400 && count_keys(f, MANIFESTS) == 0; i++)
        usleep(1000);
    assert_int_equal(count_keys(f, MANIFESTS), 1);
    assert_int_equal(r.done, 0); /* its object's put has not answered */
    assert_int_equal(st_part_hw(t->parts[0]), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, 0);
    assert_int_equal(append_one(f, t->parts[0], 2, 200).off, 3);
    reopen_expect(f, "ahead1", 5, 0, 3);
    free(b);
}

/* A put that fails after its manifest was committed ahead: the append
 * fails, the manifest is deleted again before anything else commits, and
 * the offsets are given out again -- with the failure answered after the
 * commit (the flush waited for its object) and before it. */
static void test_commit_ahead_put_fails(void **state)
{
    fx_t *f = *state;
    reopen_ahead(f);
    st_topic_t *t = create(f, "ahead2", 1);
    assert_int_equal(append_one(f, t->parts[0], 2, 100).off, 0);
    int64_t before = count_keys(f, MANIFESTS);
    for (int round = 0; round < 2; round++) {
        /* round 0: the failure comes 300 ms late, after the commit;
         * round 1: at once, while the commit is in flight */
        st_objstore_faulty_set(
            f->os, ST_OBJ_OP_PUT,
            &(st_objstore_fault_t){
                .fail_nth = 1, .err = ST_ERR_IO, .delay_nth = round == 0 ? 1 : 0, .delay_ms = 300});
        res_t r = append_one(f, t->parts[0], 3, 200);
        assert_int_equal(r.err, ST_ERR_IO);
        st_log_stats_t s;
        for (int i = 0; i < 2000; i++) {
            st_log_stats(f->log, &s);
            if (s.manifests_unwound == (uint64_t)round + 1)
                break;
            event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            usleep(1000);
        }
        assert_int_equal(s.manifests_unwound, round + 1);
        assert_int_equal(count_keys(f, MANIFESTS), before);
        assert_int_equal(st_part_leo(t->parts[0]), 2 + round);
        assert_int_equal(append_one(f, t->parts[0], 1, 300).off, 2 + round);
        before = count_keys(f, MANIFESTS);
    }
    reopen_expect(f, "ahead2", 4, 2, 1);
}

/* In the child of test_commit_ahead_crash: run @base until *flag is set
 * (no cmocka here). */
static void child_wait(struct event_base *base, const int *flag)
{
    for (int i = 0; i < 10000 && !*flag; i++)
        if (event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) != 0 || !*flag)
            usleep(1000);
    if (!*flag)
        _exit(10);
}

static int64_t child_count(struct event_base *base, st_meta_t *meta)
{
    res_t q = {0};
    if (st_meta_range(meta, MANIFESTS, true, 0, range_count_cb, &q) != 0)
        _exit(11);
    child_wait(base, &q.done);
    return q.err == ST_OK ? q.off : -1;
}

/* The child: a new incarnation commits one flush ahead of an object that
 * never lands, then dies without any clean-up, as on kill -9. */
static void ahead_crash_child(const fx_t *pf)
{
    struct event_base *base = event_base_new();
    st_log_cfg_t cfg = pf->cfg;
    cfg.lifecycle_interval_ms = 3600000; /* nothing folded meanwhile */
    char errstr[256], path[512];
    snprintf(path, sizeof path, "%s/objects", pf->dir);
    st_objstore_t *dir = st_objstore_dir_new(base, path, 2, errstr, sizeof errstr);
    st_objstore_t *os = dir ? st_objstore_faulty_new(dir, base) : NULL;
    snprintf(path, sizeof path, "%s/meta.db", pf->dir);
    st_meta_t *meta = st_meta_sqlite_new(base, path, errstr, sizeof errstr);
    st_log_t *log = os && meta ? st_log_new(base, os, meta, &cfg) : NULL;
    res_t r = {0};
    if (!log || st_log_open(log, open_cb, &r) != 0)
        _exit(2);
    child_wait(base, &r.done);
    st_topic_t *t = r.err == ST_OK ? st_log_topic(log, "ahead3", 6) : NULL;
    if (!t)
        _exit(3);
    int64_t n0 = child_count(base, meta);
    st_objstore_faulty_set(
        os, ST_OBJ_OP_PUT,
        &(st_objstore_fault_t){.fail_nth = 1, .delay_nth = 1, .delay_ms = 60000});
    size_t len;
    uint8_t *b = make_batch(4, 300, KP_COMPRESSION_NONE, &len);
    res_t a = {0};
    if (st_part_append(t->parts[0], b, len, append_cb, &a) != 0)
        _exit(4);
    for (int i = 0; i < 5000; i++) {
        if (child_count(base, meta) == n0 + 1)
            _exit(a.done ? 5 : 0); /* committed, never answered */
        usleep(1000);
    }
    _exit(6);
}

typedef struct newest {
    res_t r;
    char okey[256];
    uint64_t size;
} newest_t;

static void newest_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    newest_t *nw = arg;
    nw->r.err = err;
    st_manifest_t m;
    if (err == ST_OK && n > 0 &&
        st_manifest_decode(kvs[n - 1].val, kvs[n - 1].val_len, &m) == ST_OK) {
        snprintf(nw->okey, sizeof nw->okey, "%.*s", (int)m.object_key.len, m.object_key.ptr);
        nw->size = m.object_size;
        free((void *)m.chunks);
        free((void *)m.prods);
    }
    nw->r.done++;
}

/* What a crash can leave of a prepared object (st_objstore_prepare: the
 * final name exists before the bytes do). */
typedef enum ahead_damage { AHEAD_MISSING, AHEAD_EMPTY, AHEAD_SHORT, AHEAD_ZEROS } ahead_damage_t;

/* cfg.log of the start after the crash: its lines, one after another. */
static char ahead_lines[4096];

static void ahead_log(void *arg, const char *msg)
{
    (void)arg;
    size_t n = strlen(ahead_lines);
    snprintf(ahead_lines + n, sizeof ahead_lines - n, "%s\n", msg);
}

/* A crash between a manifest committed ahead and its object: the next
 * start finds the object missing -- or, prepared, there but empty, short
 * or of the right length without the right bytes -- deletes the manifest
 * (its records were never acknowledged) and gives the offsets out again. */
static void ahead_crash(fx_t *f, ahead_damage_t damage)
{
    reopen_ahead(f);
    st_topic_t *t = st_log_topic(f->log, "ahead3", 6);
    if (!t)
        t = create(f, "ahead3", 1);
    int64_t hw = st_part_hw(t->parts[0]);
    assert_int_equal(append_one(f, t->parts[0], 2, 100).off, hw);
    fx_close(f);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        ahead_crash_child(f);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    if (damage != AHEAD_MISSING) {
        /* The child's manifest (the newest) names an object never written. */
        struct event_base *base = event_base_new();
        char errstr[256], path[600];
        snprintf(path, sizeof path, "%s/meta.db", f->dir);
        st_meta_t *meta = st_meta_sqlite_new(base, path, errstr, sizeof errstr);
        assert_non_null(meta);
        newest_t nw = {0};
        assert_int_equal(st_meta_range(meta, MANIFESTS, true, 0, newest_cb, &nw), 0);
        while (!nw.r.done)
            event_base_loop(base, EVLOOP_ONCE);
        st_meta_free(meta);
        event_base_free(base);
        assert_int_equal(nw.r.err, ST_OK);
        assert_true(nw.size > 0);
        snprintf(path, sizeof path, "%s/objects/%s", f->dir, nw.okey);
        FILE *o = fopen(path, "wx");
        assert_non_null(o);
        size_t n = damage == AHEAD_EMPTY ? 0 : damage == AHEAD_SHORT ? nw.size - 1 : nw.size;
        uint8_t *zeros = calloc(1, nw.size);
        if (damage == AHEAD_SHORT)
            memcpy(zeros, "NUTHOBJ1", 8);
        assert_int_equal(fwrite(zeros, 1, n, o), n);
        free(zeros);
        assert_int_equal(fclose(o), 0);
    }
    ahead_lines[0] = '\0';
    f->cfg.log = ahead_log;
    fx_open(f);
    f->cfg.log = NULL;
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unwound, 1);
    /* One line says which manifest went and why. */
    static const char *const why[] = {"which is missing", "which holds 0 bytes where",
                                      "bytes where the manifest says", "fails the CRC of chunk 0"};
    assert_non_null(strstr(ahead_lines, "start-up: deleted manifest "));
    assert_non_null(strstr(ahead_lines, why[damage]));
    assert_null(strchr(strchr(ahead_lines, '\n') + 1, '\n')); /* only one */
    t = st_log_topic(f->log, "ahead3", 6);
    assert_int_equal(st_part_hw(t->parts[0]), hw + 2);
    assert_int_equal(append_one(f, t->parts[0], 1, 300).off, hw + 2);
    reopen_expect(f, "ahead3", hw + 3, hw + 2, 1);
}

static void test_commit_ahead_crash(void **state)
{
    for (ahead_damage_t d = AHEAD_MISSING; d <= AHEAD_ZEROS; d++)
        ahead_crash(*state, d);
}

/* A commit whose reply is lost after it applied is resolved as committed:
 * acknowledged, and there after a restart. */
static void test_commit_in_doubt_applied(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "doubt1", 1);
    assert_int_equal(append_one(f, t->parts[0], 2, 100).off, 0);
    st_meta_faulty_set(f->meta,
                       &(st_meta_fault_t){.txn_nth = 1, .txn_apply = true, .err = ST_ERR_TIMEOUT});
    res_t r = append_one(f, t->parts[0], 3, 200);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, 2);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.commits_in_doubt, 1);
    /* the fence moved on; later commits use the new value */
    assert_int_equal(append_one(f, t->parts[0], 1, 300).off, 5);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "doubt1", 6);
    assert_int_equal(st_part_hw(t->parts[0]), 6);
}

/* A commit whose request was lost before it applied is resolved as not
 * committed: never acknowledged, the offsets are taken again, and it does
 * not appear after a restart. */
static void test_commit_in_doubt_lost(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "doubt2", 1);
    assert_int_equal(append_one(f, t->parts[0], 2, 100).off, 0);
    st_meta_faulty_set(f->meta, &(st_meta_fault_t){.txn_nth = 1, .err = ST_ERR_TIMEOUT});
    res_t r = append_one(f, t->parts[0], 3, 200);
    assert_int_equal(r.err, ST_ERR_TIMEOUT);
    assert_int_equal(st_part_leo(t->parts[0]), 2);
    assert_int_equal(append_one(f, t->parts[0], 4, 300).off, 2);
    reopen_expect(f, "doubt2", 6, 2, 4); /* the retry's batch */
}

/* A commit in doubt whose first resolution applies too, its answer lost:
 * the next resolution finds the fence at the value the lost one wrote --
 * this node's own -- and resolves from it instead of taking the node for
 * fenced: acknowledged, and there after a restart. */
static void test_commit_in_doubt_resolution_lost(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "doubt3", 1);
    assert_int_equal(append_one(f, t->parts[0], 2, 100).off, 0);
    st_meta_faulty_set(
        f->meta,
        &(st_meta_fault_t){.txn_nth = 1, .txn_count = 2, .txn_apply = true, .err = ST_ERR_TIMEOUT});
    res_t r = append_one(f, t->parts[0], 3, 200);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, 2);
    assert_int_equal(append_one(f, t->parts[0], 1, 300).off, 5);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "doubt3", 6);
    assert_int_equal(st_part_hw(t->parts[0]), 6);
}

/* A commit that fails outright (the store said no) is never acknowledged. */
static void test_commit_fails(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "cfail", 1);
    st_meta_faulty_set(f->meta, &(st_meta_fault_t){.txn_nth = 1, .err = ST_ERR_IO});
    res_t r = append_one(f, t->parts[0], 3, 200);
    assert_int_equal(r.err, ST_ERR_IO);
    assert_int_equal(st_part_hw(t->parts[0]), 0);
    assert_int_equal(st_part_leo(t->parts[0]), 0);
    assert_int_equal(append_one(f, t->parts[0], 1, 300).off, 0);
    fx_close(f);
    fx_open(f);
    assert_int_equal(st_part_hw(st_log_topic(f->log, "cfail", 5)->parts[0]), 1);
}

/* The write buffer counts pending and in-flight bytes; a space waiter is
 * woken once commits bring it below the budget. */
static void test_write_buffer_budget(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.write_buffer_bytes = 2000;
    fx_open(f);
    st_topic_t *t = create(f, "budget", 1);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_all = true, .delay_ms = 300});
    size_t len;
    uint8_t *b = make_batch(8, 100, KP_COMPRESSION_NONE, &len);
    res_t r[40] = {{0}};
    int n = 0;
    while (!st_log_buffer_full(f->log) && n < 40) {
        assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[n]), 0);
        n++;
    }
    assert_true(st_log_buffer_full(f->log));
    assert_true(st_log_buffered(f->log) >= 2000);
    st_buf_unref(st_buf_new(ST_BUF_BIG_MIN)); /* memory kept by the buffer pool ... */
    st_buf_pool_stats_t ps;
    st_buf_pool_stats(&ps);
    assert_true(ps.kept_bytes > 0);
    int woken = 0;
    st_waiter_t w = {.fn = wake_fn, .arg = &woken};
    st_log_wait_space(f->log, &w);
    st_buf_pool_stats(&ps);
    assert_int_equal(ps.kept_bytes, 0); /* ... given back while produce waits */
    run_until(f, &woken, 1);
    assert_false(st_log_buffer_full(f->log));
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT, NULL);
    for (int i = 0; i < n; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_OK);
    }
    /* a waiter removed before it is woken is never called */
    st_waiter_t w2 = {.fn = wake_fn, .arg = &woken};
    st_log_wait_space(f->log, &w2);
    st_log_unwait_space(&w2);
    assert_int_equal(woken, 1);
    assert_int_equal(st_log_buffered(f->log), 0);
    free(b);
    f->cfg.write_buffer_bytes = 0;
}

/* ---------------------------------------------------------- idempotence */

/* A batch of @n records from producer @pid, epoch @epoch, first sequence
 * @seq. */
static uint8_t *make_pbatch(int n, int64_t pid, int16_t epoch, int32_t seq, size_t *len)
{
    kp_record_in_t recs[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++)
        recs[i] = (kp_record_in_t){
            .timestamp = 1000 + i, .key = KP_BYTES_NULL, .value = {(const uint8_t *)"p", 1}};
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = KP_COMPRESSION_NONE,
                            .producer_id = pid,
                            .producer_epoch = epoch,
                            .base_sequence = seq};
    kp_writer_t w;
    kp_writer_init(&w, 256);
    assert_int_equal(kp_batch_build(&w, &spec, recs, n), KP_BATCH_OK);
    return kp_writer_take(&w, len);
}

/* Append a producer's batch; the refusal (no callback) or the outcome. */
static res_t pappend(fx_t *f, st_part_t *p, int n, int64_t pid, int16_t epoch, int32_t seq)
{
    size_t len;
    uint8_t *b = make_pbatch(n, pid, epoch, seq, &len);
    res_t r = {0};
    int rc = st_part_append(p, b, len, append_cb, &r);
    free(b);
    if (rc != 0) {
        r.err = (st_err_t)rc;
        r.off = -2;
        return r;
    }
    run_until(f, &r.done, 1);
    return r;
}

/* Kafka >= 2.5 rules on one partition: any first sequence for a producer
 * with no state, retries of the last five batches answered with their
 * offsets and not stored again, the sixth-oldest out of sequence, gaps,
 * stale and bumped epochs, sequences wrapping at INT32_MAX. */
static void test_idem_rules(void **state)
{
    fx_t *f = *state;
    st_part_t *p = create(f, "idem", 1)->parts[0];
    assert_int_equal(pappend(f, p, 3, 7, 0, 40).off, 0); /* no state: any sequence */
    for (int i = 0; i < 6; i++) { /* seq 43.. in batches of 2 at offsets 3.. */
        res_t r = pappend(f, p, 2, 7, 0, 43 + 2 * i);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.off, 3 + 2 * i);
    }
    assert_int_equal(st_part_hw(p), 15);
    /* the last five: 45-46 .. 53-54 at offsets 5 .. 13 */
    for (int i = 1; i < 6; i++) {
        res_t r = pappend(f, p, 2, 7, 0, 43 + 2 * i);
        assert_int_equal(r.err, ST_OK);
        assert_int_equal(r.off, 3 + 2 * i);
    }
    assert_int_equal(st_part_hw(p), 15);
    assert_int_equal(st_part_leo(p), 15);
    /* the sixth-oldest and the first are no longer known */
    assert_int_equal(pappend(f, p, 2, 7, 0, 43).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 3, 7, 0, 40).err, ST_ERR_SEQUENCE);
    /* same first sequence, other last: not a retry */
    assert_int_equal(pappend(f, p, 3, 7, 0, 53).err, ST_ERR_SEQUENCE);
    /* a gap */
    assert_int_equal(pappend(f, p, 1, 7, 0, 56).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 1, 7, 0, 55).off, 15);
    /* a newer epoch starts at 0 */
    assert_int_equal(pappend(f, p, 1, 7, 1, 56).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 1, 7, 1, 0).off, 16);
    assert_int_equal(pappend(f, p, 1, 7, 0, 56).err, ST_ERR_EPOCH);
    assert_int_equal(pappend(f, p, 1, 7, 1, 0).off, 16); /* retry */
    assert_int_equal(pappend(f, p, 1, 7, 1, 1).off, 17);
    /* another producer has its own state */
    assert_int_equal(pappend(f, p, 1, 8, 3, 1000).off, 18);
    /* wrapping: INT32_MAX - 1 .. INT32_MAX, then 0 */
    assert_int_equal(pappend(f, p, 2, 9, 0, INT32_MAX - 1).off, 19);
    assert_int_equal(pappend(f, p, 1, 9, 0, INT32_MAX).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 1, 9, 0, 0).off, 21);
    /* a batch wrapping inside: INT32_MAX, 0, 1 */
    assert_int_equal(pappend(f, p, 1, 10, 0, INT32_MAX - 1).off, 22);
    assert_int_equal(pappend(f, p, 3, 10, 0, INT32_MAX).off, 23);
    assert_int_equal(pappend(f, p, 3, 10, 0, INT32_MAX).off, 23);
    assert_int_equal(pappend(f, p, 1, 10, 0, 2).off, 26);
    /* batches without a producer id are never checked */
    assert_int_equal(append_one(f, p, 1, 5).off, 27);
    assert_int_equal(append_one(f, p, 1, 5).off, 28);
    assert_int_equal(st_part_hw(p), 29);
}

/* A retry of a batch still in flight is not stored again and is answered
 * with the original's offset when it commits; the next batch may follow
 * an uncommitted one. */
static void test_idem_inflight_retry(void **state)
{
    fx_t *f = *state;
    st_part_t *p = create(f, "inflight", 1)->parts[0];
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_nth = 1, .delay_ms = 300});
    size_t l1, l2;
    uint8_t *b1 = make_pbatch(3, 5, 0, 0, &l1), *b2 = make_pbatch(2, 5, 0, 3, &l2);
    res_t r[4] = {{0}};
    assert_int_equal(st_part_append(p, b1, l1, append_cb, &r[0]), 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);                        /* the first flush starts */
    assert_int_equal(st_part_append(p, b1, l1, append_cb, &r[1]), 0); /* in flight */
    assert_int_equal(st_part_append(p, b2, l2, append_cb, &r[2]), 0); /* pending */
    assert_int_equal(st_part_append(p, b2, l2, append_cb, &r[3]), 0); /* pending */
    assert_int_equal(st_part_leo(p), 5);
    assert_int_equal(r[1].done, 0);
    for (int i = 0; i < 4; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_OK);
        assert_int_equal(r[i].off, i < 2 ? 0 : 3);
    }
    assert_int_equal(st_part_hw(p), 5);
    assert_int_equal(pappend(f, p, 1, 5, 0, 5).off, 5);
    free(b1);
    free(b2);
}

/* A failed flush leaves the producer state where the last commit put it:
 * the failed batches (and their retries waiting) fail, the sequence that
 * follows them is out of order, and the same batches retried land. */
static void test_idem_failed_flush(void **state)
{
    fx_t *f = *state;
    st_part_t *p = create(f, "idemfail", 1)->parts[0];
    assert_int_equal(pappend(f, p, 3, 11, 2, 0).off, 0);
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.fail_nth = 1, .err = ST_ERR_IO});
    size_t l1, l2;
    uint8_t *b1 = make_pbatch(2, 11, 2, 3, &l1), *b2 = make_pbatch(2, 11, 2, 5, &l2);
    res_t r[3] = {{0}};
    assert_int_equal(st_part_append(p, b1, l1, append_cb, &r[0]), 0);
    assert_int_equal(st_part_append(p, b1, l1, append_cb, &r[1]), 0); /* retry waits */
    assert_int_equal(st_part_append(p, b2, l2, append_cb, &r[2]), 0);
    for (int i = 0; i < 3; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_ERR_IO);
    }
    assert_int_equal(st_part_leo(p), 3);
    assert_int_equal(pappend(f, p, 2, 11, 2, 5).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 3, 11, 2, 0).off, 0); /* still known */
    assert_int_equal(pappend(f, p, 2, 11, 2, 3).off, 3);
    assert_int_equal(pappend(f, p, 2, 11, 2, 5).off, 5);
    assert_int_equal(st_part_hw(p), 7);
    free(b1);
    free(b2);
}

/* The state is in the manifests: after a restart, the last five batches of
 * each producer are known again, and epochs and sequences go on. */
static void test_idem_restart(void **state)
{
    fx_t *f = *state;
    st_part_t *p = create(f, "idemrs", 2)->parts[1];
    for (int i = 0; i < 7; i++)
        assert_int_equal(pappend(f, p, 2, 21, 4, 2 * i).off, 2 * i);
    assert_int_equal(pappend(f, p, 1, 22, 0, 9).off, 14);
    fx_close(f);
    fx_open(f);
    p = st_log_topic(f->log, "idemrs", 6)->parts[1];
    assert_int_equal(st_part_hw(p), 15);
    for (int i = 2; i < 7; i++)
        assert_int_equal(pappend(f, p, 2, 21, 4, 2 * i).off, 2 * i);
    assert_int_equal(pappend(f, p, 2, 21, 4, 2).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 2, 21, 4, 16).err, ST_ERR_SEQUENCE);
    assert_int_equal(pappend(f, p, 1, 21, 3, 14).err, ST_ERR_EPOCH);
    assert_int_equal(pappend(f, p, 1, 22, 0, 9).off, 14);
    assert_int_equal(st_part_hw(p), 15);
    assert_int_equal(pappend(f, p, 1, 21, 4, 14).off, 15);
    assert_int_equal(pappend(f, p, 1, 21, 5, 0).off, 16);
    /* and once more, with the bumped epoch committed */
    fx_close(f);
    fx_open(f);
    p = st_log_topic(f->log, "idemrs", 6)->parts[1];
    assert_int_equal(pappend(f, p, 1, 21, 5, 0).off, 16);
    assert_int_equal(pappend(f, p, 1, 21, 4, 15).err, ST_ERR_EPOCH);
    assert_int_equal(pappend(f, p, 1, 21, 5, 1).off, 17);
}

typedef struct pid_res {
    int done;
    st_err_t err;
    int64_t pid;
    int16_t epoch;
} pid_res_t;

static void pid_cb(st_err_t err, int64_t pid, int16_t epoch, void *arg)
{
    pid_res_t *r = arg;
    r->err = err;
    r->pid = pid;
    r->epoch = epoch;
    r->done++;
}

static pid_res_t init_producer(fx_t *f, int64_t pid, int16_t epoch)
{
    pid_res_t r = {0};
    assert_int_equal(st_log_init_producer(f->log, pid, epoch, pid_cb, &r), 0);
    assert_int_equal(r.done, 0); /* never from inside the call */
    run_until(f, &r.done, 1);
    return r;
}

/* Producer ids are unique across restarts; an id this log handed out gets
 * its epoch bumped when its current epoch is given, an unknown one a new
 * id. */
static void test_init_producer(void **state)
{
    fx_t *f = *state;
    pid_res_t a = init_producer(f, -1, -1), b = init_producer(f, -1, -1);
    assert_int_equal(a.err, ST_OK);
    assert_int_equal(a.epoch, 0);
    assert_int_equal(b.pid, a.pid + 1);
    pid_res_t c = init_producer(f, a.pid, 0);
    assert_int_equal(c.err, ST_OK);
    assert_int_equal(c.pid, a.pid);
    assert_int_equal(c.epoch, 1);
    assert_int_equal(init_producer(f, a.pid, 0).err, ST_ERR_EPOCH);
    assert_int_equal(init_producer(f, a.pid, 1).epoch, 2);
    pid_res_t d = init_producer(f, 123456789, 3); /* not ours: a new id */
    assert_int_equal(d.epoch, 0);
    assert_int_equal(d.pid, b.pid + 1);
    /* several at once, while the first block is fetched after a restart */
    fx_close(f);
    fx_open(f);
    pid_res_t r[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(st_log_init_producer(f->log, -1, -1, pid_cb, &r[i]), 0);
    for (int i = 0; i < 3; i++) {
        run_until(f, &r[i].done, 1);
        assert_int_equal(r[i].err, ST_OK);
        assert_true(r[i].pid > d.pid);
        assert_int_equal(r[i].pid, r[0].pid + i);
    }
    pid_res_t e = init_producer(f, a.pid, 2); /* known before the restart only */
    assert_int_equal(e.epoch, 0);
    assert_true(e.pid > r[2].pid);
}

/* Two logs sharing one metadata store (two gateways): asked at the same
 * time, both read the same counter value, one compare-and-swap loses and
 * takes the next block -- the ids stay distinct. */
static void test_producer_ids_shared_store(void **state)
{
    fx_t *f = *state;
    char errstr[256], path[512];
    snprintf(path, sizeof path, "%s/objects", f->dir);
    st_objstore_t *os2 = st_objstore_dir_new(f->base, path, 2, errstr, sizeof errstr);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    st_meta_t *meta2 = st_meta_sqlite_new(f->base, path, errstr, sizeof errstr);
    assert_non_null(os2);
    assert_non_null(meta2);
    st_log_cfg_t cfg2 = f->cfg;
    cfg2.node_id = 2;
    st_log_t *log2 = st_log_new(f->base, os2, meta2, &cfg2);
    res_t o = {0};
    assert_int_equal(st_log_open(log2, open_cb, &o), 0);
    run_until(f, &o.done, 1);
    assert_int_equal(o.err, ST_OK);
    pid_res_t a[4] = {{0}}, b[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(st_log_init_producer(f->log, -1, -1, pid_cb, &a[i]), 0);
        assert_int_equal(st_log_init_producer(log2, -1, -1, pid_cb, &b[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        run_until(f, &a[i].done, 1);
        run_until(f, &b[i].done, 1);
        assert_int_equal(a[i].err, ST_OK);
        assert_int_equal(b[i].err, ST_OK);
    }
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            assert_true(a[i].pid != b[k].pid);
    assert_true(a[0].pid / 1000 != b[0].pid / 1000); /* different blocks */
    int closed = 0;
    st_log_close(log2, close_cb, &closed);
    run_until(f, &closed, 1);
    st_log_free(log2);
    st_meta_free(meta2);
    st_objstore_free(os2);
}

/* A partition written by one node id, then by another (a gateway replaced
 * by one with another node.id), with none of the manifests folded yet:
 * manifest keys sort by node id, not by commit order, and a third node
 * must still load every chunk in offset order. */
static void test_handover_unfolded(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.lifecycle_interval_ms = 3600000; /* nothing folded during the test */
    int32_t nodes[2] = {2, 1};
    for (int k = 0; k < 2; k++) {
        f->cfg.node_id = nodes[k];
        fx_open(f);
        st_topic_t *t = k == 0 ? create(f, "handover", 2) : st_log_topic(f->log, "handover", 8);
        assert_non_null(t);
        assert_int_equal(st_part_hw(t->parts[1]), 15 * k);
        for (int i = 0; i < 3; i++) {
            res_t r = append_one(f, t->parts[1], 5, 1000 * k + i);
            assert_int_equal(r.err, ST_OK);
            assert_int_equal(r.off, 15 * k + 5 * i);
        }
        fx_close(f);
    }
    f->cfg.node_id = 3;
    fx_open(f);
    st_topic_t *t = st_log_topic(f->log, "handover", 8);
    assert_non_null(t);
    assert_int_equal(st_part_hw(t->parts[1]), 30);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.manifests_unfolded, 6);
    for (int64_t off = 0; off < 30; off += 5) {
        rd_t rd;
        read_all(f, t->parts[1], off, &rd);
        assert_int_equal(rd.err, ST_OK);
        assert_true(rd.len > 0);
        assert_int_equal(kp_be64(rd.data), off); /* the batch holding @off starts there */
    }
    res_t r = append_one(f, t->parts[1], 5, 5000);
    assert_int_equal(r.off, 30);
    f->cfg.node_id = 1;
    f->cfg.lifecycle_interval_ms = 0;
}

/* Two logs on one metadata store: each learns the topics the other creates
 * after it opened (the catalog watch), with the creator's id and partition
 * count, neither adds its own creation twice, and a topic one deletes goes
 * from the other. */
static void test_topic_watch(void **state)
{
    fx_t *f = *state;
    st_topic_t *before = create(f, "early", 2);
    st_log_cfg_t cfg2 = f->cfg;
    cfg2.node_id = 2;
    st_log_t *a = f->log, *b = st_log_new(f->base, f->os, f->meta, &cfg2);
    assert_non_null(b);
    res_t r = {0};
    assert_int_equal(st_log_open(b, open_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    st_topic_t *early = st_log_topic(b, "early", 5);
    assert_non_null(early);
    assert_memory_equal(early->id.b, before->id.b, 16);

    st_topic_t *ta = create(f, "from-a", 3);
    int seen = 0;
    for (int i = 0; i < 5000 && !seen; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        seen = st_log_topic(b, "from-a", 6) != NULL;
        if (!seen)
            usleep(1000);
    }
    assert_true(seen);
    st_topic_t *tb = st_log_topic(b, "from-a", 6);
    assert_memory_equal(tb->id.b, ta->id.b, 16);
    assert_int_equal(tb->nparts, 3);
    assert_int_equal(st_part_hw(tb->parts[2]), 0);

    f->log = b; /* and the other way round */
    st_topic_t *tc = create(f, "from-b", 1);
    f->log = a;
    seen = 0;
    for (int i = 0; i < 5000 && !seen; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        seen = st_log_topic(a, "from-b", 6) != NULL;
        if (!seen)
            usleep(1000);
    }
    assert_true(seen);
    assert_memory_equal(st_log_topic(a, "from-b", 6)->id.b, tc->id.b, 16);
    assert_int_equal(st_log_topic_count(a), 3);
    assert_int_equal(st_log_topic_count(b), 3);

    /* partitions added through one are added to the other, empty */
    res_t g = {0};
    assert_int_equal(st_log_create_partitions(b, early, 5, open_cb, &g), 0);
    run_until(f, &g.done, 1);
    assert_int_equal(g.err, ST_OK);
    assert_int_equal(early->nparts, 5);
    for (int i = 0; i < 5000 && before->nparts != 5; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (before->nparts != 5)
            usleep(1000);
    }
    assert_int_equal(before->nparts, 5);
    for (int32_t p = 0; p < 5; p++) {
        assert_int_equal(st_part_index(before->parts[p]), p);
        assert_int_equal(st_part_hw(before->parts[p]), 0);
    }
    assert_true(st_part_topic(before->parts[4]) == before);

    /* configuration overrides changed through one are followed by the
     * other, which can then change them itself (its compare holds) */
    st_topic_config_t cs[] = {{"retention.ms", "60000"}, {"compression.type", "zstd"}};
    res_t c1 = {0};
    assert_int_equal(st_log_set_topic_configs(b, early, cs, 2, open_cb, &c1), 0);
    run_until(f, &c1.done, 1);
    assert_int_equal(c1.err, ST_OK);
    for (int i = 0; i < 5000 && !st_topic_config(before, "retention.ms"); i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_non_null(st_topic_config(before, "retention.ms"));
    assert_string_equal(st_topic_config(before, "retention.ms"), "60000");
    assert_string_equal(st_topic_config(before, "compression.type"), "zstd");
    res_t c2 = {0};
    assert_int_equal(st_log_set_topic_configs(a, before, cs, 1, open_cb, &c2), 0);
    run_until(f, &c2.done, 1);
    assert_int_equal(c2.err, ST_OK);
    for (int i = 0; i < 5000 && st_topic_config(early, "compression.type"); i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_null(st_topic_config(early, "compression.type"));
    assert_string_equal(st_topic_config(early, "retention.ms"), "60000");
    assert_int_equal(before->nconfigs, 1);

    /* a deletion through one goes from the other too */
    res_t d = {0};
    assert_int_equal(st_log_delete_topic(b, tb, open_cb, &d), 0);
    run_until(f, &d.done, 1);
    assert_int_equal(d.err, ST_OK);
    seen = 1;
    for (int i = 0; i < 5000 && seen; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        seen = st_log_topic(a, "from-a", 6) != NULL;
        if (seen)
            usleep(1000);
    }
    assert_false(seen);
    assert_int_equal(st_log_topic_count(a), 2);
    assert_int_equal(st_log_topic_count(b), 2);

    int closed = 0;
    st_log_close(b, close_cb, &closed);
    run_until(f, &closed, 1);
    st_log_free(b);
}

/* Version 1 manifests (no producer entries) are still read; version 2
 * round-trips its entries and refuses ones outside their chunk. */
static void test_manifest_versions(void **state)
{
    (void)state;
    st_chunk_desc_t c = {
        .partition = 3, .batches = 2, .base_offset = 10, .last_offset = 19, .pos = 32, .len = 100};
    st_prod_desc_t pd = {.chunk = 0,
                         .producer_id = 4,
                         .epoch = 1,
                         .first_seq = 7,
                         .last_seq = 9,
                         .base_offset = 17,
                         .last_offset = 19};
    st_manifest_t m = {.version = 1,
                       .node_id = 1,
                       .incarnation = 2,
                       .seq = 3,
                       .object_key = kp_str("k"),
                       .object_size = 1000,
                       .chunks = &c,
                       .nchunks = 1};
    for (int v = 1; v <= 3; v++) {
        m.version = (int8_t)(v == 3 ? 2 : v);
        m.prods = v >= 2 ? &pd : NULL;
        m.nprods = v >= 2 ? 1 : 0;
        pd.last_offset = v == 3 ? 20 : 19; /* v == 3: past the chunk */
        kp_writer_t w;
        kp_writer_init(&w, 256);
        st_manifest_encode(&w, &m);
        st_manifest_t d;
        st_err_t err = st_manifest_decode(w.buf, w.len, &d);
        kp_writer_deinit(&w);
        if (v == 3) {
            assert_int_equal(err, ST_ERR_CORRUPT);
            continue;
        }
        assert_int_equal(err, ST_OK);
        assert_int_equal(d.version, m.version);
        assert_int_equal(d.nchunks, 1);
        assert_int_equal(d.nprods, m.nprods);
        if (v == 2) {
            assert_int_equal(d.prods[0].chunk, 0);
            assert_int_equal(d.prods[0].producer_id, 4);
            assert_int_equal(d.prods[0].epoch, 1);
            assert_int_equal(d.prods[0].first_seq, 7);
            assert_int_equal(d.prods[0].last_seq, 9);
            assert_int_equal(d.prods[0].base_offset, 17);
            assert_int_equal(d.prods[0].last_offset, 19);
        }
        free((void *)d.chunks);
        free((void *)d.prods);
    }
}

/* ---------------------------------------------------------------- read-ahead */

#define RA_PARTS 16
#define RA_ROUNDS 4

/* RA_ROUNDS flushes of one 3-record batch to each of RA_PARTS partitions
 * (one object per round holding every partition's chunk), then a restart:
 * the caches are cold. */
static st_topic_t *ra_fill_n(fx_t *f, size_t read_ahead, size_t *batch_len, int rounds)
{
    st_topic_t *t = create(f, "ra", RA_PARTS);
    uint8_t *b = make_batch(3, 1000, KP_COMPRESSION_NONE, batch_len);
    for (int round = 0; round < rounds; round++) {
        res_t r[RA_PARTS] = {{0}};
        for (int p = 0; p < RA_PARTS; p++)
            assert_int_equal(st_part_append(t->parts[p], b, *batch_len, append_cb, &r[p]), 0);
        for (int p = 0; p < RA_PARTS; p++) {
            run_until(f, &r[p].done, 1);
            assert_int_equal(r[p].off, 3 * round);
        }
    }
    free(b);
    fx_close(f);
    f->cfg.read_ahead_bytes = read_ahead;
    fx_open(f);
    t = st_log_topic(f->log, "ra", 2);
    assert_non_null(t);
    return t;
}

static st_topic_t *ra_fill(fx_t *f, size_t read_ahead, size_t *batch_len)
{
    return ra_fill_n(f, read_ahead, batch_len, RA_ROUNDS);
}

/* As a Fetch does: every partition read in one loop turn, each at its
 * next[p], which moves past what was read (whole 3-record batches, from
 * next[p] on; more than one chunk when the next ones are in memory). */
static void ra_round(fx_t *f, st_topic_t *t, int64_t *next, size_t batch_len, rd_t *rd)
{
    for (int p = 0; p < RA_PARTS; p++) {
        memset(&rd[p], 0, sizeof rd[p]);
        assert_int_equal(st_part_read(t->parts[p], next[p], sizeof rd[p].data, read_cb, &rd[p]), 0);
    }
    for (int p = 0; p < RA_PARTS; p++) {
        run_until(f, &rd[p].done, 1);
        assert_int_equal(rd[p].err, ST_OK);
        assert_true(rd[p].len >= batch_len);
        assert_int_equal(rd[p].len % batch_len, 0);
        for (size_t i = 0; i < rd[p].len / batch_len; i++)
            assert_int_equal(kp_be64(rd[p].data + i * batch_len), next[p] + 3 * (int64_t)i);
        next[p] += 3 * (int64_t)(rd[p].len / batch_len);
    }
}

/* Run the loop until @n GETs were started and answered. */
static void ra_settle(fx_t *f, uint64_t gets)
{
    st_log_stats_t s;
    for (int i = 0; i < 10000; i++) { /* at most ~10 s, as run_until */
        st_log_stats(f->log, &s);
        if (s.object_gets >= gets)
            break;
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, gets);
}

/* Reads of many partitions whose chunks share an object are served by one
 * GET of the object's range; a sequential reader's next chunks are read
 * before it asks (one merged GET per object), so the later rounds cost no
 * GET at all. */
static void test_read_ahead_merged(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = ra_fill(f, 1 << 20, &len);
    static rd_t rd[RA_PARTS];
    uint64_t g0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_GET);
    int64_t next[RA_PARTS] = {0};
    ra_round(f, t, next, len, rd);
    st_log_stats_t s;
    st_log_stats(f->log, &s); /* the reads' own GETs: one */
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0 - s.read_ahead_gets, 1);
    /* the following objects, each in one GET, without a read asking */
    ra_settle(f, RA_ROUNDS);
    st_log_stats(f->log, &s);
    assert_int_equal(s.read_ahead_gets, RA_ROUNDS - 1);
    assert_int_equal(s.merged_chunks, (uint64_t)RA_ROUNDS * (RA_PARTS - 1));
    for (int round = 1; round < RA_ROUNDS && next[0] < 3 * RA_ROUNDS; round++)
        ra_round(f, t, next, len, rd);
    for (int p = 0; p < RA_PARTS; p++)
        assert_int_equal(next[p], 3 * RA_ROUNDS);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0, RA_ROUNDS);
    /* at the high watermark: nothing, and nothing more read */
    for (int p = 0; p < RA_PARTS; p++) {
        read_all(f, t->parts[p], 3 * RA_ROUNDS, &rd[0]);
        assert_int_equal(rd[0].err, ST_OK);
        assert_int_equal(rd[0].len, 0);
    }
    read_all(f, t->parts[0], 3 * RA_ROUNDS + 1, &rd[0]);
    assert_int_equal(rd[0].err, ST_ERR_RANGE);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0, RA_ROUNDS);
}

/* Read the one batch (@max_bytes = its length) at @off of @p into @r. */
static void read_one(fx_t *f, st_part_t *p, int64_t off, size_t max_bytes, rd_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(st_part_read(p, off, max_bytes, read_cb, r), 0);
    run_until(f, &r->done, 1);
    assert_int_equal(r->err, ST_OK);
    assert_int_equal(r->len, max_bytes);
    assert_int_equal(kp_be64(r->data), off);
}

/* A chunk larger than the read-ahead wanted does not hold back the GET of
 * the next one until its reader is through it: what counts is what the
 * reader has still to read of it.  Chunks of 1, 3 and 1 batches (the
 * middle one a flush of three appends made while the first one's PUT was
 * slow), read one batch at a time from cold caches with two batches
 * wanted ahead: the third chunk's GET starts once a third of the second is
 * left, and the reader finds it in memory. */
static void test_read_ahead_inside_chunk(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "rin", 1);
    size_t len;
    uint8_t *b = make_batch(3, 1000, KP_COMPRESSION_NONE, &len);
    res_t r[5] = {{0}};
    st_objstore_faulty_set(f->os, ST_OBJ_OP_PUT,
                           &(st_objstore_fault_t){.delay_nth = 1, .delay_ms = 200});
    uint64_t puts0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_PUT);
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[0]), 0);
    wait_puts(f, puts0 + 1);
    assert_int_equal(r[0].done, 0); /* its PUT is slow: the next three make one flush */
    for (int i = 1; i < 4; i++)
        assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[i]), 0);
    run_until(f, &r[3].done, 1);
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r[4]), 0);
    run_until(f, &r[4].done, 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].off, 3 * i);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.flushes, 3);
    free(b);
    fx_close(f);
    f->cfg.read_ahead_bytes = 4 * 2 * len; /* a quarter of it wanted: two batches */
    fx_open(f);
    t = st_log_topic(f->log, "rin", 3);
    assert_non_null(t);
    rd_t *rd = calloc(1, sizeof(*rd));
    read_one(f, t->parts[0], 3, len, rd); /* a seek into the second chunk: its GET */
    for (int i = 0; i < 50; i++) {        /* two thirds left: nothing more read */
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 1);
    read_one(f, t->parts[0], 6, len, rd); /* a third left: the third chunk read ahead */
    ra_settle(f, 2);
    st_log_stats(f->log, &s);
    assert_int_equal(s.read_ahead_gets, 1);
    read_one(f, t->parts[0], 9, len, rd);
    read_one(f, t->parts[0], 12, len, rd);
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 2);
    free(rd);
}

/* @n 3-record batches to one partition, each flushed on its own (one chunk
 * per object), then a restart without read-ahead and with a read cache of
 * @cache_chunks chunks: the chunks are in the store only. */
static st_topic_t *chunks_cold(fx_t *f, int n, size_t cache_chunks, size_t *len)
{
    st_topic_t *t = create(f, "rc", 1);
    uint8_t *b = make_batch(3, 1000, KP_COMPRESSION_NONE, len);
    for (int i = 0; i < n; i++) {
        res_t r = {0};
        assert_int_equal(st_part_append(t->parts[0], b, *len, append_cb, &r), 0);
        run_until(f, &r.done, 1);
        assert_int_equal(r.off, 3 * i);
    }
    free(b);
    fx_close(f);
    f->cfg.read_ahead_bytes = 0;
    f->cfg.read_cache_bytes = cache_chunks * *len;
    fx_open(f);
    t = st_log_topic(f->log, "rc", 2);
    assert_non_null(t);
    return t;
}

/* The read cache keeps no more than an eighth of its budget of chunks a
 * reader has gone past: going through eight objects one chunk at a time,
 * a reader leaves the chunk before the one it reads cached, not the rest;
 * one of them read again is the most recently used, one dropped costs a
 * GET again. */
static void test_read_cache_passed(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = chunks_cold(f, 8, 8, &len); /* every chunk fits; one passed may stay */
    rd_t *rd = calloc(1, sizeof(*rd));
    st_log_stats_t s;
    for (int i = 0; i < 8; i++) {
        read_one(f, t->parts[0], 3 * i, len, rd);
        st_log_stats(f->log, &s);
        assert_int_equal(s.object_gets, i + 1);
        assert_int_equal(s.cache_bytes, (i ? 2 : 1) * len);
    }
    read_one(f, t->parts[0], 18, len, rd); /* passed, still cached */
    read_one(f, t->parts[0], 21, len, rd); /* passes the seventh again */
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 8);
    read_one(f, t->parts[0], 0, len, rd); /* dropped: read again */
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 9);
    assert_int_equal(s.cache_bytes, 3 * len); /* the first, the eighth, the seventh (passed) */
    free(rd);
}

/* A read that took several chunks passes them all when the next read
 * begins after them, the oldest first to go. */
static void test_read_cache_passed_run(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = chunks_cold(f, 5, 16, &len); /* two passed chunks may stay */
    rd_t *rd = calloc(1, sizeof(*rd));
    for (int i = 3; i >= 0; i--) /* backwards: nothing passed, four chunks cached */
        read_one(f, t->parts[0], 3 * i, len, rd);
    read_one(f, t->parts[0], 0, 4 * len, rd); /* one read of all four */
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 4);
    read_one(f, t->parts[0], 12, len, rd); /* passes the four; loads the fifth */
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 5);
    assert_int_equal(s.cache_bytes, 3 * len); /* the third, the fourth, the fifth */
    read_one(f, t->parts[0], 9, len, rd);
    read_one(f, t->parts[0], 6, len, rd);
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 5);
    read_one(f, t->parts[0], 3, len, rd); /* the second went */
    st_log_stats(f->log, &s);
    assert_int_equal(s.object_gets, 6);
    free(rd);
}

/* Without a read-ahead budget every chunk costs its own GET when asked for. */
static void test_read_ahead_off(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = ra_fill(f, 0, &len);
    static rd_t rd[RA_PARTS];
    uint64_t g0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_GET);
    int64_t next[RA_PARTS] = {0};
    ra_round(f, t, next, len, rd);
    assert_int_equal(next[0], 3);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0, RA_PARTS);
    ra_round(f, t, next, len, rd);
    assert_int_equal(next[0], 6);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0, 2 * RA_PARTS);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.read_ahead_gets, 0);
    assert_int_equal(s.merged_chunks, 0);
}

/* The budget bounds the bytes read ahead: with room for about one chunk,
 * a read after a seek reads its chunk, and at most one more GET starts
 * ahead of it; nothing is merged (a merged GET would not fit). */
static void test_read_ahead_budget(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = ra_fill(f, 0, &len);
    fx_close(f);
    f->cfg.read_ahead_bytes = len + len / 2; /* over one chunk, under two */
    fx_open(f);
    t = st_log_topic(f->log, "ra", 2);
    assert_non_null(t);
    uint64_t g0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_GET);
    rd_t *rd = calloc(1, sizeof(*rd));
    read_all(f, t->parts[5], 3, rd); /* a seek into the second object */
    assert_int_equal(rd->err, ST_OK);
    assert_int_equal(rd->len, len);
    assert_int_equal(kp_be64(rd->data), 3);
    ra_settle(f, 2);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.read_ahead_gets, 1);
    assert_int_equal(s.merged_chunks, 0);
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0, 2);
    free(rd);
}

/* Partitions whose read-ahead the budget stopped go on when read-ahead GETs
 * end, with no further read: with room for four chunks in flight (and no
 * merging: a merged GET may hold a quarter of the budget, one chunk), the
 * first round's reads start four partitions' next chunks, and the twelve
 * others follow as those answer -- every partition's next chunk is read
 * before its reader asks again. */
static void test_read_ahead_resume(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = ra_fill(f, 0, &len);
    fx_close(f);
    f->cfg.read_ahead_bytes = 4 * len;
    fx_open(f);
    t = st_log_topic(f->log, "ra", 2);
    assert_non_null(t);
    static rd_t rd[RA_PARTS];
    uint64_t g0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_GET);
    int64_t next[RA_PARTS] = {0};
    ra_round(f, t, next, len, rd);
    ra_settle(f, 2 * RA_PARTS);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.read_ahead_gets, RA_PARTS);
    assert_int_equal(s.merged_chunks, 0);
    /* The second round finds every chunk in memory. */
    for (int p = 0; p < RA_PARTS; p++) {
        memset(&rd[p], 0, sizeof rd[p]);
        assert_int_equal(st_part_read(t->parts[p], next[p], sizeof rd[p].data, read_cb, &rd[p]), 0);
    }
    for (int p = 0; p < RA_PARTS; p++) {
        run_until(f, &rd[p].done, 1);
        assert_int_equal(rd[p].err, ST_OK);
        assert_int_equal(rd[p].len, len);
        assert_int_equal(kp_be64(rd[p].data), 3);
    }
    st_log_stats(f->log, &s);
    /* GETs started, less those started ahead: the first round's only */
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET) - g0 - s.read_ahead_gets,
                     RA_PARTS);
}

/* A GET merges the chunks of its object that partitions read sequentially
 * will want soon, also those several chunks ahead of their readers: with
 * 8 objects and every partition read once (at offset 0, its next 4 chunks
 * read ahead), partition 0's seek to its seventh chunk reads that object
 * whole, so the other partitions find their seventh chunks in memory. */
static void test_read_ahead_merged_spread(void **state)
{
    fx_t *f = *state;
    size_t len;
    st_topic_t *t = ra_fill_n(f, 1 << 20, &len, 8);
    static rd_t rd[RA_PARTS];
    uint64_t g0 = st_objstore_faulty_count(f->os, ST_OBJ_OP_GET);
    int64_t next[RA_PARTS] = {0};
    ra_round(f, t, next, len, rd);
    ra_settle(f, 1 + 4); /* the first object, then the next four ahead */
    read_all(f, t->parts[0], 18, &rd[0]);
    assert_int_equal(rd[0].err, ST_OK);
    assert_int_equal(kp_be64(rd[0].data), 18);
    ra_settle(f, 1 + 4 + 2); /* the seventh object, and the eighth ahead of partition 0 */
    uint64_t g1 = st_objstore_faulty_count(f->os, ST_OBJ_OP_GET);
    assert_int_equal(g1 - g0, 7);
    for (int p = 1; p < RA_PARTS; p++) {
        read_all(f, t->parts[p], 18, &rd[p]);
        assert_int_equal(rd[p].err, ST_OK);
        assert_int_equal(rd[p].len, 2 * len); /* the seventh and eighth chunks */
        assert_int_equal(kp_be64(rd[p].data), 18);
    }
    assert_int_equal(st_objstore_faulty_count(f->os, ST_OBJ_OP_GET), g1);
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_int_equal(s.merged_chunks, 7 * (RA_PARTS - 1)); /* each GET: every partition's chunk */
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_object_per_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_and_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_flush_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accumulates_while_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_overlaps_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_commit_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_for_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets_survive_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_recreate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_while_creating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiters_woken_by_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configured_cluster_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_in_doubt_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_in_doubt_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_in_doubt_resolution_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_ahead_put_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_ahead_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_buffer_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idem_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idem_inflight_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idem_failed_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idem_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_producer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_ids_shared_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handover_unfolded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_watch, setup, teardown),
        cmocka_unit_test(test_manifest_versions),
        cmocka_unit_test_setup_teardown(test_read_ahead_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_inside_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_cache_passed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_cache_passed_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_merged_spread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
