/*
 * test_cluster.c: gw_cluster -- registration, the view of live nodes,
 * the controller and group coordinators, leaving, a lost lease, and a
 * node id taken over -- with several members on one SQLite metadata store
 * in one process (the store's watches and leases are etcd's semantics).
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

#include "gw_cluster.h"
#include "st_meta.h"

typedef struct fx {
    char dir[256];
    struct event_base *base;
    st_meta_t *meta;
} fx_t;

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

typedef struct want {
    gw_cluster_t *cl;
    const char *ids; /* e.g. "1,2" */
} want_t;

static void ids_of(gw_cluster_t *cl, char *buf, size_t cap)
{
    size_t n, k = 0;
    const gw_node_t *nodes = gw_cluster_nodes(cl, &n);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? "," : "", nodes[i].id);
}

static bool has_ids(void *arg)
{
    want_t *w = arg;
    char buf[128];
    ids_of(w->cl, buf, sizeof buf);
    return strcmp(buf, w->ids) == 0;
}

static void expect_view(fx_t *f, gw_cluster_t *cl, const char *ids)
{
    want_t w = {cl, ids};
    char buf[128];
    bool ok = pump_until(f, has_ids, &w);
    ids_of(cl, buf, sizeof buf);
    if (!ok)
        fail_msg("view '%s', expected '%s'", buf, ids);
}

static gw_cluster_t *member(fx_t *f, int32_t id, int port)
{
    gw_cluster_t *cl = gw_cluster_new(f->base, f->meta, id, "127.0.0.1", port, 2000);
    assert_non_null(cl);
    started_t s = {0};
    gw_cluster_start(cl, INT64_MAX, started_cb, &s);
    assert_true(pump_until(f, is_done, &s));
    assert_int_equal(s.err, ST_OK);
    return cl;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/nh-test-cluster-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    f->meta = st_meta_sqlite_new(f->base, path, err, sizeof err);
    assert_non_null(f->meta);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    st_meta_free(f->meta);
    event_base_free(f->base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Members see each other with their listeners; the controller is the
 * lowest id; every member names the same coordinator for a group. */
static void test_view_and_coordinators(void **state)
{
    fx_t *f = *state;
    gw_cluster_t *b = member(f, 7, 9007);
    gw_cluster_t *a = member(f, 3, 9003);
    gw_cluster_t *c = member(f, 12, 9012);
    expect_view(f, a, "3,7,12");
    expect_view(f, b, "3,7,12");
    expect_view(f, c, "3,7,12");
    size_t n;
    const gw_node_t *nodes = gw_cluster_nodes(b, &n);
    assert_string_equal(nodes[0].host, "127.0.0.1");
    assert_int_equal(nodes[0].port, 9003);
    assert_int_equal(nodes[2].port, 9012);
    assert_int_equal(gw_cluster_controller(b), 3);
    int per_node[3] = {0};
    for (int g = 0; g < 60; g++) {
        char name[16];
        snprintf(name, sizeof name, "group-%d", g);
        int32_t id = gw_cluster_coordinator(a, name, strlen(name))->id;
        assert_int_equal(gw_cluster_coordinator(b, name, strlen(name))->id, id);
        assert_int_equal(gw_cluster_coordinator(c, name, strlen(name))->id, id);
        per_node[id == 3 ? 0 : id == 7 ? 1 : 2]++;
    }
    for (int i = 0; i < 3; i++)
        assert_true(per_node[i] >= 8); /* spread: 20 each on average */

    /* A member leaving moves only its own groups. */
    int32_t before[60];
    for (int g = 0; g < 60; g++) {
        char name[16];
        snprintf(name, sizeof name, "group-%d", g);
        before[g] = gw_cluster_coordinator(b, name, strlen(name))->id;
    }
    gw_cluster_leave(a);
    expect_view(f, b, "7,12");
    expect_view(f, c, "7,12");
    assert_int_equal(gw_cluster_controller(c), 7);
    for (int g = 0; g < 60; g++) {
        char name[16];
        snprintf(name, sizeof name, "group-%d", g);
        int32_t now = gw_cluster_coordinator(b, name, strlen(name))->id;
        if (before[g] != 3)
            assert_int_equal(now, before[g]);
        else
            assert_true(now == 7 || now == 12);
    }
    gw_cluster_free(a);
    gw_cluster_free(b);
    gw_cluster_free(c);
}

static void lease_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    int64_t *lease = arg;
    *lease = err == ST_OK && n == 1 ? kvs[0].lease : -1;
}

static bool lease_known(void *arg)
{
    return *(int64_t *)arg != 0;
}

static void revoked(st_err_t err, void *arg)
{
    *(int *)arg = err == ST_OK ? 1 : -1;
}

static bool flag_set(void *arg)
{
    return *(int *)arg != 0;
}

static int64_t lease_of(fx_t *f, const char *key)
{
    int64_t lease = 0;
    assert_int_equal(st_meta_range(f->meta, key, false, 0, lease_got, &lease), 0);
    assert_true(pump_until(f, lease_known, &lease));
    return lease;
}

/* A member whose lease is gone (revoked here, as an expiry would) puts
 * its key again under a new lease; the others see it back. */
static void test_lease_lost(void **state)
{
    fx_t *f = *state;
    gw_cluster_t *a = member(f, 1, 9001);
    gw_cluster_t *b = member(f, 2, 9002);
    expect_view(f, b, "1,2");
    int64_t old = lease_of(f, GW_CLUSTER_NODES_PREFIX "1");
    assert_true(old > 0);
    int done = 0;
    assert_int_equal(st_meta_lease_revoke(f->meta, old, revoked, &done), 0);
    assert_true(pump_until(f, flag_set, &done));
    assert_int_equal(done, 1);
    int64_t now = old;
    for (int i = 0; i < 10000 && (now == old || now <= 0); i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        now = lease_of(f, GW_CLUSTER_NODES_PREFIX "1");
    }
    assert_true(now > 0);
    assert_true(now != old); /* registered again under a new lease */
    expect_view(f, b, "1,2");
    expect_view(f, a, "1,2");
    gw_cluster_free(a);
    gw_cluster_free(b);
}

/* A second member with a live member's id takes the registration over
 * (a restart before the old lease expired); its lease holds the key, and
 * revoking the first member's lease does not remove it. */
static void test_take_over(void **state)
{
    fx_t *f = *state;
    gw_cluster_t *a = member(f, 1, 9001);
    gw_cluster_t *b = member(f, 2, 9002);
    int64_t first = lease_of(f, GW_CLUSTER_NODES_PREFIX "1");
    gw_cluster_t *a2 = member(f, 1, 9101);
    int64_t second = lease_of(f, GW_CLUSTER_NODES_PREFIX "1");
    assert_true(second != first);
    expect_view(f, b, "1,2");
    size_t n;
    const gw_node_t *nodes = gw_cluster_nodes(b, &n);
    for (int i = 0; i < 10000 && nodes[0].port != 9101; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        nodes = gw_cluster_nodes(b, &n);
    }
    assert_int_equal(nodes[0].port, 9101);
    gw_cluster_free(a); /* dies without leaving */
    int done = 0;
    assert_int_equal(st_meta_lease_revoke(f->meta, first, revoked, &done), 0);
    assert_true(pump_until(f, flag_set, &done));
    assert_int_equal(lease_of(f, GW_CLUSTER_NODES_PREFIX "1"), second);
    expect_view(f, b, "1,2");
    gw_cluster_leave(a2);
    expect_view(f, b, "2");
    gw_cluster_free(a2);
    gw_cluster_free(b);
}

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_view_and_coordinators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
