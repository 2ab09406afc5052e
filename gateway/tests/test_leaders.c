/*
 * test_leaders.c: gw_leaders -- the leader record format, and the
 * controller writing records for a topic's partitions, then moving a
 * departed node's partitions with a raised epoch, as every member's watch
 * sees it.  Two members on the log fixture's SQLite metadata store (the
 * store's watches and leases are etcd's semantics).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "gw_cluster.h"
#include "gw_leaders.h"
#include "log_fx.h"
#include "st_format.h"

static void test_format(void **state)
{
    (void)state;
    char buf[64];
    size_t n = gw_leaders_format(buf, sizeof buf, 7, 12);
    assert_string_equal(buf, "leader=7\nepoch=12\n");
    int32_t l = -1, e = -1;
    assert_true(gw_leaders_parse((const uint8_t *)buf, n, &l, &e));
    assert_int_equal(l, 7);
    assert_int_equal(e, 12);
    const char *bad[] = {"",
                         "leader=7\n",
                         "leader=7\nepoch=1",
                         "leader=-1\nepoch=1\n",
                         "leader=7\nepoch=1\nx",
                         "leader=99999999999\nepoch=1\n",
                         "epoch=1\nleader=7\n",
                         "leader=\nepoch=1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(gw_leaders_parse((const uint8_t *)bad[i], strlen(bad[i]), &l, &e));

    kp_uuid_t id;
    int32_t p = -1;
    assert_true(gw_leaders_parse_key("/nuthatch/leaders/00112233445566778899aabbccddeeff/42/state",
                                     &id, &p));
    assert_int_equal(p, 42);
    assert_int_equal(id.b[0], 0x00);
    assert_int_equal(id.b[15], 0xff);
    const char *badkeys[] = {
        "/nuthatch/leaders/00112233445566778899aabbccddeeff/42/log-start",
        "/nuthatch/leaders/00112233445566778899aabbccddeeff/42/chunks/00000000000000000000",
        "/nuthatch/leaders/00112233445566778899aabbccddeeff//state",
        "/nuthatch/leaders/00112233445566778899aabbccddeeff/4294967296/state",
        "/nuthatch/leaders/00112233445566778899aabbccddeezz/1/state",
        "/nuthatch/topics/x"};
    for (size_t i = 0; i < sizeof badkeys / sizeof *badkeys; i++)
        assert_false(gw_leaders_parse_key(badkeys[i], &id, &p));
}

typedef struct started {
    int done;
    st_err_t err;
} started_t;

static void started_cb(st_err_t err, void *arg)
{
    started_t *s = arg;
    s->err = err;
    s->done++;
}

/* Pump the loop until @pred(@arg) holds, at most about 10 s. */
static bool pump_until(fx_t *f, bool (*pred)(void *arg), void *arg)
{
    for (int i = 0; i < 10000; i++) {
        if (pred(arg))
            return true;
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    return pred(arg);
}

static bool is_done(void *arg)
{
    return ((started_t *)arg)->done > 0;
}

static gw_cluster_t *member(fx_t *f, int32_t id)
{
    gw_cluster_t *cl = gw_cluster_new(f->base, f->meta, id, "127.0.0.1", 9000 + id, 2000);
    assert_non_null(cl);
    started_t s = {0};
    gw_cluster_start(cl, INT64_MAX, started_cb, &s);
    assert_true(pump_until(f, is_done, &s));
    assert_int_equal(s.err, ST_OK);
    return cl;
}

static gw_leaders_t *leaders(fx_t *f, gw_cluster_t *cl, int32_t id)
{
    gw_leaders_t *ld = gw_leaders_new(f->base, f->meta, f->log, cl, id);
    assert_non_null(ld);
    started_t s = {0};
    gw_leaders_start(ld, INT64_MAX, started_cb, &s);
    assert_true(pump_until(f, is_done, &s));
    assert_int_equal(s.err, ST_OK);
    return ld;
}

typedef struct want {
    gw_leaders_t *ld[2];
    st_topic_t *topic;
    int32_t leader[16]; /* expected per partition */
    int32_t epoch[16];
} want_t;

static bool records_are(void *arg)
{
    want_t *w = arg;
    for (int k = 0; k < 2; k++)
        for (int32_t p = 0; p < w->topic->nparts; p++) {
            int32_t l, e;
            if (!gw_leaders_get(w->ld[k], w->topic->id, p, &l, &e) || l != w->leader[p] ||
                e != w->epoch[p])
                return false;
        }
    return true;
}

static void put_cb(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                   void *arg)
{
    (void)rev, (void)res, (void)n;
    assert_int_equal(err, ST_OK);
    assert_true(ok);
    ((started_t *)arg)->done++;
}

/* Write partition @p's record of topic @id as another node would. */
static void put_record(fx_t *f, kp_uuid_t id, int32_t p, int32_t leader, int32_t epoch)
{
    char hex[33], key[128], val[48];
    st_uuid_hex(id, hex);
    snprintf(key, sizeof key, "/nuthatch/leaders/%s/%" PRId32 "/state", hex, p);
    size_t vlen = gw_leaders_format(val, sizeof val, leader, epoch);
    st_op_t put = {.type = ST_OP_PUT, .key = key, .val = (const uint8_t *)val, .val_len = vlen};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    started_t s = {0};
    assert_int_equal(st_meta_txn(f->meta, &txn, put_cb, &s), 0);
    assert_true(pump_until(f, is_done, &s));
}

static void test_controller(void **state)
{
    fx_t *f = *state;
    st_topic_t *topic = create(f, "led", 16);
    gw_cluster_t *c1 = member(f, 1), *c2 = member(f, 2);
    gw_leaders_t *l1 = leaders(f, c1, 1), *l2 = leaders(f, c2, 2);
    int32_t l, e;
    assert_false(gw_leaders_get(l1, topic->id, 0, &l, &e)); /* nothing recorded yet */

    /* Node 1 (the controller) records the hashed spread at epoch 0, once
     * both views hold both nodes. */
    want_t w = {.ld = {l1, l2}, .topic = topic};
    size_t n;
    while (gw_cluster_nodes(c1, &n), n != 2)
        event_base_loop(f->base, EVLOOP_ONCE);
    int on2 = 0;
    for (int32_t p = 0; p < 16; p++) {
        w.leader[p] = gw_leaders_hashed(c1, topic->id, p);
        assert_int_equal(w.leader[p], gw_leaders_hashed(c2, topic->id, p));
        on2 += w.leader[p] == 2;
    }
    assert_true(pump_until(f, records_are, &w));
    assert_int_equal(gw_leaders_moves(l1), 0);
    assert_int_equal(gw_leaders_moves(l2), 0); /* not the controller */

    /* Node 2 leaves: its partitions move to node 1 with epoch 1, the
     * others keep theirs; the partitions' appends carry the new epoch. */
    gw_cluster_leave(c2);
    for (int32_t p = 0; p < 16; p++) {
        w.epoch[p] = w.leader[p] == 2;
        w.leader[p] = 1;
    }
    assert_true(pump_until(f, records_are, &w));
    assert_int_equal(gw_leaders_moves(l1), on2);
    for (int32_t p = 0; p < 16; p++)
        assert_int_equal(st_part_leader_epoch(topic->parts[p]), w.epoch[p]);

    /* A record that is not one is ignored by the watch. */
    char key[128];
    snprintf(key, sizeof key, "/nuthatch/leaders/00000000000000000000000000000001/0/state");
    st_op_t put = {.type = ST_OP_PUT, .key = key, .val = (const uint8_t *)"x", .val_len = 1};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    started_t s = {0};
    assert_int_equal(st_meta_txn(f->meta, &txn, put_cb, &s), 0);
    assert_true(pump_until(f, is_done, &s));
    for (int i = 0; i < 50; i++) { /* the watch's event */
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    kp_uuid_t id = {{0}};
    id.b[15] = 1;
    assert_false(gw_leaders_get(l1, id, 0, &l, &e));

    gw_leaders_free(l1);
    gw_leaders_free(l2);
    gw_cluster_free(c1);
    gw_cluster_free(c2);
}

static void ensured_cb(void *arg)
{
    ((started_t *)arg)->done++;
}

/* A new topic's records, written by the node that creates it before it
 * answers (gw_leaders_ensure; until then no node leads the partitions):
 * the hashed leader at epoch 0, and a record another node wrote first
 * kept as it is.  Node 1 (the controller) runs no gw_leaders here, so
 * only gw_leaders_ensure writes. */
static void test_ensure(void **state)
{
    fx_t *f = *state;
    st_topic_t *topic = create(f, "fresh", 60); /* two transactions */
    gw_cluster_t *c1 = member(f, 1), *c2 = member(f, 2);
    size_t n;
    while (gw_cluster_nodes(c2, &n), n != 2)
        event_base_loop(f->base, EVLOOP_ONCE);
    gw_leaders_t *l2 = leaders(f, c2, 2);
    int32_t l, e;
    for (int i = 0; i < 300; i++) { /* more than a controller tick: nobody writes */
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    for (int32_t p = 0; p < 60; p++)
        assert_false(gw_leaders_get(l2, topic->id, p, &l, &e));

    /* Partition 50's record, written elsewhere (not yet seen by l2). */
    put_record(f, topic->id, 50, 1, 3);

    started_t d = {0};
    gw_leaders_ensure(l2, topic->id, 0, 60, ensured_cb, &d);
    assert_true(pump_until(f, is_done, &d));
    assert_int_equal(d.done, 1);
    for (int32_t p = 0; p < 60; p++) {
        assert_true(gw_leaders_get(l2, topic->id, p, &l, &e));
        assert_int_equal(l, p == 50 ? 1 : gw_leaders_hashed(c2, topic->id, p));
        assert_int_equal(e, p == 50 ? 3 : 0);
    }
    assert_int_equal(gw_leaders_takeovers(l2), 0); /* a new partition needs no catch-up */

    /* In the store: another node reads the same records. */
    gw_leaders_t *l1 = leaders(f, c1, 1);
    for (int32_t p = 0; p < 60; p++) {
        int32_t l1l, l1e;
        assert_true(gw_leaders_get(l1, topic->id, p, &l1l, &l1e));
        assert_true(gw_leaders_get(l2, topic->id, p, &l, &e));
        assert_int_equal(l1l, l);
        assert_int_equal(l1e, e);
    }

    /* Nothing left to write: done at once. */
    started_t d2 = {0};
    gw_leaders_ensure(l2, topic->id, 0, 60, ensured_cb, &d2);
    assert_int_equal(d2.done, 1);

    gw_leaders_free(l1);
    gw_leaders_free(l2);
    gw_cluster_free(c1);
    gw_cluster_free(c2);
}

static void parts_cb(st_err_t err, void *arg)
{
    assert_int_equal(err, ST_OK);
    ((started_t *)arg)->done++;
}

typedef struct took {
    gw_leaders_t *ld;
    st_topic_t *topic;
} took_t;

static bool took_over_p1(void *arg)
{
    took_t *t = arg;
    int32_t l, e;
    return gw_leaders_takeovers(t->ld) == 1 && !st_part_taking_over(t->topic->parts[1]) &&
           gw_leaders_get(t->ld, t->topic->id, 1, &l, &e) && l == 2 && e == 3;
}

/* A record naming this node at a raised epoch that comes before its
 * partition (the catalog watch is another stream): the node does not lead
 * the partition until it exists and its takeover has started. */
static void test_record_before_partition(void **state)
{
    fx_t *f = *state;
    st_topic_t *topic = create(f, "late", 1);
    gw_cluster_t *c2 = member(f, 2);
    gw_leaders_t *l2 = leaders(f, c2, 2);

    put_record(f, topic->id, 1, 2, 3);
    int32_t l = 0, e = 0;
    for (int i = 0; i < 300 && !gw_leaders_get(l2, topic->id, 1, &l, &e); i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_true(gw_leaders_get(l2, topic->id, 1, &l, &e));
    assert_int_equal(l, -1); /* no partition 1 yet: nothing to take over */
    assert_int_equal(e, 3);
    assert_int_equal(gw_leaders_takeovers(l2), 0);

    started_t c = {0};
    assert_int_equal(st_log_create_partitions(f->log, topic, 2, parts_cb, &c), 0);
    assert_true(pump_until(f, is_done, &c));
    took_t t = {.ld = l2, .topic = topic};
    assert_true(pump_until(f, took_over_p1, &t));
    assert_int_equal(st_part_leader_epoch(topic->parts[1]), 3);

    gw_leaders_free(l2);
    gw_cluster_free(c2);
}

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test_setup_teardown(test_controller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_before_partition, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
