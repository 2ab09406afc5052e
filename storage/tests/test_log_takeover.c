/*
 * test_log_takeover.c: leadership moves seen by the log -- a partition's
 * takeover by another node's log on the same stores (st_part_take_over),
 * the epochs' end offsets, and a flush commit fenced by a move
 * (st_log_cfg_t.sync): the moved partition's appends fail, the kept one's
 * commit.  Logs of several node ids on the fixture's SQLite metadata store
 * and directory object store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "log_fx.h"
#include "st_format.h"

/* The fixture's configuration for node @node_id. */
static void node_cfg(fx_t *f, int32_t node_id, st_log_cfg_t *cfg)
{
    *cfg = f->cfg;
    cfg->node_id = node_id;
}

static st_log_t *start(fx_t *f, const st_log_cfg_t *cfg)
{
    st_log_t *log = st_log_new(f->base, f->os, f->meta, cfg);
    assert_non_null(log);
    res_t r = {0};
    assert_int_equal(st_log_open(log, open_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    return log;
}

static void stop(fx_t *f, st_log_t *log)
{
    int closed = 0;
    st_log_close(log, close_cb, &closed);
    run_until(f, &closed, 1);
    st_log_free(log);
}

static int64_t append(fx_t *f, st_part_t *part, int n, st_err_t want)
{
    size_t len;
    uint8_t *b = make_batch(n, 1000, KP_COMPRESSION_NONE, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(part, b, len, append_cb, &r), 0);
    free(b);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, want);
    return r.off;
}

/* A takeover's or a lifecycle run's answer into a res_t. */
static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->done++;
}

typedef struct got {
    int done;
    size_t n;
} got_t;

static void count_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)kvs, (void)more, (void)rev;
    assert_int_equal(err, ST_OK);
    got_t *g = arg;
    g->n = n;
    g->done++;
}

static size_t count_keys(fx_t *f, const char *prefix)
{
    got_t g = {0};
    assert_int_equal(st_meta_range(f->meta, prefix, true, 0, count_cb, &g), 0);
    run_until(f, &g.done, 1);
    return g.n;
}

/* Node 2 loaded the partition before node 1 appended to it: its takeover
 * brings the high watermark, the data and the epoch's start, and writes
 * the index keys of the chunks it took from node 1's manifests. */
static void test_takeover(void **state)
{
    fx_t *f = *state;
    st_topic_t *t1 = create(f, "moved", 1);
    st_log_cfg_t cfg2;
    node_cfg(f, 2, &cfg2);
    st_log_t *log2 = start(f, &cfg2);
    st_topic_t *t2 = st_log_topic(log2, "moved", 5);
    assert_non_null(t2);
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 0);
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 5);
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 10);
    st_part_t *p2 = t2->parts[0];
    assert_int_equal(st_part_hw(p2), 0); /* stale */

    st_part_set_leader_epoch(p2, 1);
    res_t r = {0};
    assert_int_equal(st_part_take_over(p2, done_cb, &r), 0);
    assert_true(st_part_taking_over(p2));
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_false(st_part_taking_over(p2));
    assert_int_equal(st_part_hw(p2), 15);
    assert_int_equal(st_part_leo(p2), 15);

    int32_t e;
    int64_t end;
    st_part_epoch_end(p2, 0, &e, &end);
    assert_int_equal(e, 0);
    assert_int_equal(end, 15);
    st_part_epoch_end(p2, 1, &e, &end);
    assert_int_equal(e, 1);
    assert_int_equal(end, 15);
    st_part_epoch_end(p2, 2, &e, &end);
    assert_int_equal(e, -1);
    assert_int_equal(end, -1);

    char prefix[160], hex[33];
    st_uuid_hex(t1->id, hex);
    snprintf(prefix, sizeof prefix, "/nuthatch/partitions/%s/0/chunks/", hex);
    assert_int_equal(count_keys(f, prefix), 3);
    snprintf(prefix, sizeof prefix, "/nuthatch/partitions/%s/0/epochs/1", hex);
    assert_int_equal(count_keys(f, prefix), 1);

    /* The new leader appends after what it took over; its epoch ends
     * epoch 0 there. */
    assert_int_equal(append(f, p2, 2, ST_OK), 15);
    st_part_epoch_end(p2, 1, &e, &end);
    assert_int_equal(end, 17);
    st_part_epoch_end(p2, 0, &e, &end);
    assert_int_equal(end, 15);
    stop(f, log2);

    /* A restart of node 2 finds epoch 1 recorded, and every offset. */
    log2 = start(f, &cfg2);
    p2 = st_log_topic(log2, "moved", 5)->parts[0];
    st_part_set_leader_epoch(p2, 1);
    assert_int_equal(st_part_hw(p2), 17);
    st_part_epoch_end(p2, 0, &e, &end);
    assert_int_equal(end, 15);
    stop(f, log2);
}

/* Leadership as the test says it. */
static bool owns_p0, synced;
static bool owns_cb(void *arg, const st_topic_t *topic, int32_t p)
{
    (void)arg, (void)topic;
    return p != 0 || owns_p0;
}
static void sync_cb(void *arg, int64_t rev, void (*done)(void *done_arg), void *done_arg)
{
    (void)arg, (void)rev;
    synced = true;
    done(done_arg);
}

typedef struct fence {
    int done;
    char val[64];
    int64_t mod_rev;
} fence_t;

static void fence_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    assert_int_equal(err, ST_OK);
    assert_int_equal(n, 1);
    fence_t *fc = arg;
    snprintf(fc->val, sizeof fc->val, "%.*s", (int)kvs[0].val_len, (const char *)kvs[0].val);
    fc->mod_rev = kvs[0].mod_rev;
    fc->done++;
}

static void put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                     void *arg)
{
    (void)rev, (void)res, (void)n;
    assert_int_equal(err, ST_OK);
    assert_true(ok);
    (*(int *)arg)++;
}

/* Put node 3's fence to @val, or, when NULL, bump it as a move does. */
static void bump_fence(fx_t *f, const char *val)
{
    const char *key = "/nuthatch/nodes/3/fence";
    fence_t fc = {0};
    assert_int_equal(st_meta_range(f->meta, key, false, 0, fence_got, &fc), 0);
    run_until(f, &fc.done, 1);
    char nv[96];
    if (val) {
        snprintf(nv, sizeof nv, "%s", val);
    } else {
        char *dot = strchr(fc.val, '.');
        if (dot)
            *dot = '\0';
        snprintf(nv, sizeof nv, "%s.m%lld", fc.val, (long long)fc.mod_rev);
    }
    st_op_t put = {
        .type = ST_OP_PUT, .key = key, .val = (const uint8_t *)nv, .val_len = strlen(nv)};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    int done = 0;
    assert_int_equal(st_meta_txn(f->meta, &txn, put_done, &done), 0);
    run_until(f, &done, 1);
}

static void test_fenced_by_move(void **state)
{
    fx_t *f = *state;
    create(f, "two", 2);
    st_log_cfg_t cfg;
    node_cfg(f, 3, &cfg);
    cfg.owns = owns_cb;
    cfg.sync = sync_cb;
    owns_p0 = true;
    synced = false;
    st_log_t *log = start(f, &cfg);
    st_topic_t *t = st_log_topic(log, "two", 3);
    assert_int_equal(append(f, t->parts[0], 1, ST_OK), 0);

    /* Partition 0 moves away: the fence is bumped; appends to both
     * partitions go in one flush.  Partition 0's fails, 1's commits. */
    bump_fence(f, NULL);
    owns_p0 = false;
    size_t len;
    uint8_t *b = make_batch(2, 1000, KP_COMPRESSION_NONE, &len);
    res_t r0 = {0}, r1 = {0};
    assert_int_equal(st_part_append(t->parts[0], b, len, append_cb, &r0), 0);
    assert_int_equal(st_part_append(t->parts[1], b, len, append_cb, &r1), 0);
    run_until(f, &r0.done, 1);
    run_until(f, &r1.done, 1);
    assert_int_equal(r0.err, ST_ERR_CONFLICT);
    assert_int_equal(r1.err, ST_OK);
    assert_int_equal(r1.off, 0);
    assert_true(synced);
    assert_int_equal(st_part_hw(t->parts[0]), 1);
    st_log_stats_t st;
    st_log_stats(log, &st);
    assert_int_equal(st.refences, 1);
    assert_int_equal(st.parts_left_out, 1);

    /* It keeps committing partition 1 with the adopted fence. */
    assert_int_equal(append(f, t->parts[1], 1, ST_OK), 2);

    /* A fence of another incarnation fences for good. */
    bump_fence(f, "999999");
    append(f, t->parts[1], 1, ST_ERR_CONFLICT);
    free(b);
    stop(f, log);
}

/* A lifecycle run of @log (folding, retention, merging; GC with @gc). */
static void life_run(fx_t *f, st_log_t *log, bool gc)
{
    res_t r = {0};
    assert_int_equal(st_log_lifecycle_run(log, gc, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
}

/* Node 1's run without GC: folds what it committed. */
static void fold(fx_t *f)
{
    life_run(f, f->log, false);
}

/* @p's takeover at @epoch, to its end. */
static void take(fx_t *f, st_part_t *p, int32_t epoch)
{
    st_part_set_leader_epoch(p, epoch);
    res_t r = {0};
    assert_int_equal(st_part_take_over(p, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
}

typedef struct first {
    int done;
    st_err_t err;
    int64_t base; /* the first batch's base offset, -1 when none */
} first_t;

static void first_cb(st_err_t err, const st_slice_t *sl, size_t n, void *arg)
{
    first_t *r = arg;
    r->err = err;
    r->base = n ? (int64_t)kp_be64(sl[0].buf->data + sl[0].off + KP_BATCH_OFF_BASE_OFFSET) : -1;
    r->done++;
}

/* The base offset of the first batch a read at @off returns. */
static int64_t first_batch(fx_t *f, st_part_t *p, int64_t off)
{
    first_t r = {0};
    assert_int_equal(st_part_read(p, off, 1 << 20, first_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    return r.base;
}

/* A start-up reads the partitions' index keys and the manifests not yet
 * folded in separate reads.  Node 1 folds a manifest and commits the next
 * one while either read of node 2's start-up is held: node 2 still knows
 * every offset it has a high watermark for -- no hole between what it read
 * as index keys and what it read as manifests -- and its takeover brings
 * the rest.  With @drop, the chunks folded meanwhile are also deleted
 * (DeleteRecords, retention): node 2 starts at the new log start. */
static void start_cb(st_err_t err, int64_t log_start, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->off = log_start;
    r->done++;
}

static void startup_while_folding(fx_t *f, const char *topic, const char *held, bool drop)
{
    st_topic_t *t1 = create(f, topic, 1);
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 0);
    fold(f);
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 5);

    st_log_cfg_t cfg2;
    node_cfg(f, 2, &cfg2);
    cfg2.owns = owns_cb; /* partition 0 only from the takeover on */
    owns_p0 = false;
    st_log_t *log2 = st_log_new(f->base, f->os, f->meta, &cfg2);
    assert_non_null(log2);
    st_meta_fault_t plan = {.hold_range = held};
    st_meta_faulty_set(f->meta, &plan);
    res_t r = {0};
    assert_int_equal(st_log_open(log2, open_cb, &r), 0);
    for (int i = 0; i < 10000 && !st_meta_faulty_holding(f->meta) && !r.done; i++)
        if (event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) != 0 ||
            !st_meta_faulty_holding(f->meta))
            usleep(1000);
    assert_true(st_meta_faulty_holding(f->meta));
    fold(f);
    if (drop) { /* then the folded chunks go: their manifests were read */
        res_t d = {0};
        assert_int_equal(st_part_delete_records(t1->parts[0], 10, start_cb, &d), 0);
        run_until(f, &d.done, 1);
        assert_int_equal(d.err, ST_OK);
        fold(f);
    }
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 10);
    assert_int_equal(st_meta_faulty_release(f->meta), 0);
    st_meta_faulty_set(f->meta, NULL);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);

    st_part_t *p2 = st_log_topic(log2, topic, strlen(topic))->parts[0];
    int64_t hw = st_part_hw(p2), low = drop ? 10 : 0;
    assert_true(hw == 10 || hw == 15);
    assert_int_equal(st_part_log_start(p2), low);
    for (int64_t off = low; off < hw; off += 5)
        assert_int_equal(first_batch(f, p2, off), off);
    if (drop) { /* node 2's folding puts no index key back below offset 10 */
        life_run(f, log2, false);
        char prefix[160], hex[33];
        st_uuid_hex(t1->id, hex);
        snprintf(prefix, sizeof prefix, "/nuthatch/partitions/%s/0/chunks/0000000000000000000",
                 hex);
        assert_int_equal(count_keys(f, prefix), 0);
    }

    owns_p0 = true;
    take(f, p2, 1);
    assert_int_equal(st_part_hw(p2), 15);
    for (int64_t off = low; off < 15; off += 5)
        assert_int_equal(first_batch(f, p2, off), off);
    assert_int_equal(append(f, p2, 1, ST_OK), 15);
    stop(f, log2);
}

static void test_startup_while_folding(void **state)
{
    fx_t *f = *state;
    startup_while_folding(f, "held-manifests", "/nuthatch/manifests/", false);
    startup_while_folding(f, "held-index", "/nuthatch/partitions/", false);
    startup_while_folding(f, "dropped", "/nuthatch/partitions/", true);
}

/* Node 2 loaded node 1's chunks; node 1 then merged them into segments and
 * collected the replaced objects, all below where node 2 knows the
 * partition to end.  Node 2's takeover must not keep reading the objects
 * that are gone: it rebuilds the partition from what the store names. */
static void test_takeover_after_merge(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    f->cfg.index_max_keys = 4;
    f->cfg.gc_grace_ms = 200;
    f->cfg.lifecycle_interval_ms = 3600000; /* runs only when the test asks */
    fx_open(f);
    st_topic_t *t1 = create(f, "merged", 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 5 * i);
    st_log_cfg_t cfg2;
    node_cfg(f, 2, &cfg2);
    st_log_t *log2 = start(f, &cfg2);
    st_part_t *p2 = st_log_topic(log2, "merged", 6)->parts[0];
    assert_int_equal(st_part_hw(p2), 50);

    fold(f); /* folds and merges */
    assert_int_equal(append(f, t1->parts[0], 5, ST_OK), 50);
    life_run(f, f->log, true);
    usleep(300000);
    life_run(f, f->log, true); /* the replaced objects, unreferenced past the grace, go */
    st_log_stats_t s;
    st_log_stats(f->log, &s);
    assert_true(s.segments_written >= 1);
    assert_true(s.gc_objects_deleted >= 1);

    take(f, p2, 1);
    assert_int_equal(st_part_hw(p2), 55);
    for (int64_t off = 0; off < 55; off += 5)
        assert_int_equal(first_batch(f, p2, off), off);
    st_log_stats(log2, &s);
    assert_int_equal(s.takeover_rebuilds, 1);
    stop(f, log2);
}

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_by_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_startup_while_folding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_after_merge, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
