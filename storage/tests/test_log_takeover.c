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

static void took_cb(st_err_t err, void *arg)
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
    assert_int_equal(st_part_take_over(p2, took_cb, &r), 0);
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

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_by_move, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
