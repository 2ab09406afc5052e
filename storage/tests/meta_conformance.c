/*
 * meta_conformance.c: the behaviour every st_meta backend shares, against
 * etcd v3 semantics -- ranges and prefixes over arbitrary bytes, revisions,
 * transactions and compares (the fence pattern), leases and their expiry,
 * watches, issue order, draining on free.  Run by test_meta_sqlite and
 * test_meta_etcd (see meta_conformance.h).
 */
#include "meta_conformance.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

fx_t *F;

/* ------------------------------------------------------------- fixture */

int64_t mc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mc_open_store(bool fresh)
{
    char err[256] = "";
    F->m = F->b->open(F->base, fresh, err, sizeof err);
    if (!F->m)
        fail_msg("open: %s", err);
}

void mc_close_store(void)
{
    st_meta_free(F->m);
    F->m = NULL;
}

int mc_setup(void **state)
{
    F = calloc(1, sizeof(*F));
    F->b = *state;
    F->base = event_base_new();
    F->loop_thread = pthread_self();
    mc_open_store(true);
    return 0;
}

int mc_teardown(void **state)
{
    (void)state;
    if (F->m) {
        /* Leases outlive a test on a shared store: their expiry would bump
         * the revision under the next test. */
        for (int i = 0; i < F->nleases; i++)
            lease_revoke(F->leases[i]);
        mc_close_store();
    }
    if (F->b->cleanup)
        F->b->cleanup();
    event_base_free(F->base);
    free(F);
    F = NULL;
    return 0;
}

void loop_until(const int *flag)
{
    int64_t deadline = mc_now_ms() + 15000;
    while (!*flag) {
        event_base_loop(F->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (!*flag)
            usleep(200);
        assert_true(mc_now_ms() < deadline);
    }
}

void pump_ms(int ms)
{
    int64_t end = mc_now_ms() + ms;
    while (mc_now_ms() < end) {
        event_base_loop(F->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(500);
    }
}

/* ------------------------------------------------------------ captures */

static void on_loop(void)
{
    assert_true(pthread_equal(pthread_self(), F->loop_thread));
    assert_int_equal(F->in_call, 0); /* never from inside the starting call */
}

void finish(res_t *r, st_err_t err)
{
    on_loop();
    assert_int_equal(r->done, 0); /* exactly once */
    r->done = 1;
    r->seq = ++F->seq;
    r->err = err;
    if (F->nlog < 1024)
        F->log[F->nlog++] = r->tag;
}

static void kv_copy(kvc_t *d, const st_kv_t *s)
{
    snprintf(d->key, sizeof d->key, "%s", s->key);
    d->val_len = s->val_len;
    if (s->val && s->val_len < sizeof d->val) {
        memcpy(d->val, s->val, s->val_len);
        d->val[s->val_len] = 0;
    }
    d->create_rev = s->create_rev;
    d->mod_rev = s->mod_rev;
    d->version = s->version;
    d->lease = s->lease;
}

void range_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    res_t *r = arg;
    finish(r, err);
    r->more = more;
    r->rev = rev;
    r->nres = 1;
    r->n[0] = n;
    for (size_t i = 0; i < n && i < MAXKV; i++)
        kv_copy(&r->kv[0][i], &kvs[i]);
}

void txn_cb(st_err_t err, bool succeeded, int64_t rev, const st_op_result_t *results,
            size_t nresults, void *arg)
{
    res_t *r = arg;
    finish(r, err);
    r->succeeded = succeeded;
    r->rev = rev;
    r->nres = nresults;
    for (size_t j = 0; j < nresults && j < MAXR; j++) {
        r->n[j] = results[j].n;
        for (size_t i = 0; i < results[j].n && i < MAXKV; i++)
            kv_copy(&r->kv[j][i], &results[j].kvs[i]);
    }
}

void lease_cb(st_err_t err, int64_t id, int64_t ttl_ms, void *arg)
{
    res_t *r = arg;
    finish(r, err);
    r->lease = id;
    r->ttl = ttl_ms;
}

void done_cb(st_err_t err, void *arg)
{
    finish(arg, err);
}

void watch_cb(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg)
{
    wl_t *wl = arg;
    on_loop();
    wl->calls++;
    if (F->nlog < 1024)
        F->log[F->nlog++] = wl->tag;
    if (err)
        wl->err = err;
    for (size_t i = 0; i < n && wl->nev < 256; i++) {
        wev_t *e = &wl->ev[wl->nev];
        if (wl->nev > 0) /* revision order */
            assert_true(evs[i].kv.mod_rev >= wl->ev[wl->nev - 1].mod_rev);
        e->type = evs[i].type;
        snprintf(e->key, sizeof e->key, "%s", evs[i].kv.key);
        if (evs[i].type == ST_WATCH_PUT)
            snprintf(e->val, sizeof e->val, "%.*s", (int)evs[i].kv.val_len,
                     (const char *)evs[i].kv.val);
        e->create_rev = evs[i].kv.create_rev;
        e->mod_rev = evs[i].kv.mod_rev;
        e->version = evs[i].kv.version;
        e->lease = evs[i].kv.lease;
        wl->nev++;
    }
    if (wl->cancel_on_call == wl->calls)
        st_meta_watch_cancel(F->m, wl->w);
}

/* ---------------------------------------------------------- sync helpers */

void wait_events(const wl_t *wl, size_t nev)
{
    int64_t deadline = mc_now_ms() + 15000;
    while (wl->nev < nev) {
        pump_ms(5);
        assert_true(mc_now_ms() < deadline);
    }
}

void wait_calls(const wl_t *wl, int calls)
{
    int64_t deadline = mc_now_ms() + 15000;
    while (wl->calls < calls) {
        pump_ms(5);
        assert_true(mc_now_ms() < deadline);
    }
}

void range_sync(const char *key, bool prefix, size_t limit, res_t *r)
{
    int _rc;
    memset(r, 0, sizeof(*r));
    assert_int_equal(CALL(st_meta_range(F->m, key, prefix, limit, range_cb, r)), 0);
    assert_int_equal(r->done, 0);
    loop_until(&r->done);
    assert_int_equal(r->err, ST_OK);
}

void txn_sync(const st_txn_t *txn, res_t *r)
{
    int _rc;
    memset(r, 0, sizeof(*r));
    assert_int_equal(CALL(st_meta_txn(F->m, txn, txn_cb, r)), 0);
    assert_int_equal(r->done, 0);
    loop_until(&r->done);
}

st_op_t op_put(const char *key, const char *val, int64_t lease)
{
    return (st_op_t){.type = ST_OP_PUT,
                     .key = key,
                     .val = (const uint8_t *)val,
                     .val_len = strlen(val),
                     .lease = lease};
}

st_op_t op_of(st_op_type_t type, const char *key)
{
    return (st_op_t){.type = type, .key = key};
}

int64_t put(const char *key, const char *val, int64_t lease)
{
    st_op_t op = op_put(key, val, lease);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    return r.rev;
}

int64_t del(st_op_type_t type, const char *key)
{
    st_op_t op = op_of(type, key);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    return r.rev;
}

size_t get(const char *key, kvc_t *out)
{
    res_t r;
    range_sync(key, false, 0, &r);
    if (r.n[0] && out)
        *out = r.kv[0][0];
    return r.n[0];
}

int64_t current_rev(void)
{
    res_t r;
    range_sync("", false, 0, &r);
    return r.rev;
}

int64_t lease_grant(int64_t ttl_ms)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_grant(F->m, ttl_ms, lease_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.lease > 0);
    assert_int_equal(r.ttl, ttl_ms);
    if (F->nleases < MC_MAXLEASES)
        F->leases[F->nleases++] = r.lease;
    return r.lease;
}

st_err_t lease_keepalive(int64_t id, int64_t *ttl)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_keepalive(F->m, id, lease_cb, &r)), 0);
    loop_until(&r.done);
    if (ttl)
        *ttl = r.ttl;
    return r.err;
}

st_err_t lease_revoke(int64_t id)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_revoke(F->m, id, done_cb, &r)), 0);
    loop_until(&r.done);
    return r.err;
}

st_err_t compact(int64_t rev)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_compact(F->m, rev, done_cb, &r)), 0);
    loop_until(&r.done);
    return r.err;
}

st_meta_watch_t *watch(const char *prefix, int64_t start_rev, wl_t *wl)
{
    st_meta_watch_t *_rc;
    wl->w = CALL(st_meta_watch(F->m, prefix, start_rev, watch_cb, wl));
    assert_non_null(wl->w);
    return wl->w;
}

/* --------------------------------------------------------------- tests */

static void test_get_range_limit(void **state)
{
    (void)state;
    put("a", "1", 0);
    put("b", "2", 0);
    put("ab", "3", 0);
    put("b/x", "4", 0);
    int64_t rev = put("c", "", 0); /* empty values are fine */

    kvc_t kv;
    assert_int_equal(get("ab", &kv), 1);
    assert_string_equal(kv.val, "3");
    assert_int_equal(get("c", &kv), 1);
    assert_int_equal(kv.val_len, 0);
    assert_int_equal(get("zz", NULL), 0);
    assert_int_equal(get("", NULL), 0);

    res_t r;
    range_sync("a", true, 0, &r);
    assert_int_equal(r.n[0], 2);
    assert_string_equal(r.kv[0][0].key, "a");
    assert_string_equal(r.kv[0][1].key, "ab");
    assert_false(r.more);
    assert_int_equal(r.rev, rev);

    range_sync("", true, 0, &r); /* the empty prefix is every key, sorted */
    assert_int_equal(r.n[0], 5);
    const char *order[] = {"a", "ab", "b", "b/x", "c"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(r.kv[0][i].key, order[i]);

    range_sync("", true, 2, &r);
    assert_int_equal(r.n[0], 2);
    assert_true(r.more);
    assert_string_equal(r.kv[0][1].key, "ab");
    range_sync("b", true, 2, &r); /* exactly the limit: not more */
    assert_int_equal(r.n[0], 2);
    assert_false(r.more);
    range_sync("b", true, 1, &r);
    assert_int_equal(r.n[0], 1);
    assert_true(r.more);
    range_sync("nothing", true, 0, &r);
    assert_int_equal(r.n[0], 0);
    assert_false(r.more);
}

static void test_prefix_bytes(void **state)
{
    (void)state;
    const char *keys[] = {"p",    "pa",   "p\xff", "p\xff\x01", "p\xff\xff",    "p\xff\xff\x02",
                          "q",    "\x7f", "\x80",  "\xff\xff",  "\xff\xff\xff", "a/b",
                          "a/bc", "a/b/"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        put(keys[i], keys[i], 0);

    res_t r;
    range_sync("p\xff", true, 0, &r); /* upper bound: drop the 0xff, bump 'p' -> 'q' */
    assert_int_equal(r.n[0], 4);
    assert_string_equal(r.kv[0][0].key, "p\xff");
    assert_string_equal(r.kv[0][1].key, "p\xff\x01");
    assert_string_equal(r.kv[0][2].key, "p\xff\xff");
    assert_string_equal(r.kv[0][3].key, "p\xff\xff\x02");

    range_sync("p\xff\xff", true, 0, &r);
    assert_int_equal(r.n[0], 2);

    range_sync("\xff", true, 0, &r); /* all-0xff prefix: no upper bound */
    assert_int_equal(r.n[0], 2);
    assert_string_equal(r.kv[0][0].key, "\xff\xff");
    assert_string_equal(r.kv[0][1].key, "\xff\xff\xff");
    range_sync("\xff\xff\xff", true, 0, &r);
    assert_int_equal(r.n[0], 1);

    range_sync("", true, 0, &r); /* memcmp order, bytes unsigned */
    static const char *const sorted[] = {
        "a/b",       "a/b/",          "a/bc", "p",    "pa",   "p\xff",    "p\xff\x01",
        "p\xff\xff", "p\xff\xff\x02", "q",    "\x7f", "\x80", "\xff\xff", "\xff\xff\xff"};
    assert_int_equal(r.n[0], 14);
    for (int i = 0; i < 14; i++)
        assert_string_equal(r.kv[0][i].key, sorted[i]);

    range_sync("a/b", true, 0, &r); /* a prefix of other prefixes */
    assert_int_equal(r.n[0], 3);
    range_sync("a/b/", true, 0, &r);
    assert_int_equal(r.n[0], 1);
    assert_string_equal(r.kv[0][0].key, "a/b/");

    int64_t rev = del(ST_OP_DEL_PREFIX, "p\xff");
    range_sync("p", true, 0, &r);
    assert_int_equal(r.n[0], 2); /* p, pa */
    assert_int_equal(get("q", NULL), 1);
    assert_int_equal(del(ST_OP_DEL_PREFIX, "p\xff"), rev); /* nothing left: no bump */
    del(ST_OP_DEL_PREFIX, "\xff\xff");
    range_sync("", true, 0, &r);
    assert_int_equal(r.n[0], 8);
    assert_string_equal(r.kv[0][5].key, "q");
    assert_string_equal(r.kv[0][7].key, "\x80");
}

/* The revision sequence etcd produces for the same puts and deletes. */
static void test_revisions(void **state)
{
    (void)state;
    kvc_t kv;
    int64_t r0 = current_rev(); /* an empty SQLite store is at revision 1, as etcd */
    assert_true(r0 >= 1);
    assert_int_equal(put("a", "1", 0), r0 + 1);
    assert_int_equal(get("a", &kv), 1);
    assert_int_equal(kv.create_rev, r0 + 1);
    assert_int_equal(kv.mod_rev, r0 + 1);
    assert_int_equal(kv.version, 1);
    assert_int_equal(put("a", "2", 0), r0 + 2);
    assert_int_equal(put("b", "1", 0), r0 + 3);
    get("a", &kv);
    assert_int_equal(kv.create_rev, r0 + 1);
    assert_int_equal(kv.mod_rev, r0 + 2);
    assert_int_equal(kv.version, 2);
    assert_int_equal(del(ST_OP_DEL, "a"), r0 + 4);
    assert_int_equal(get("a", NULL), 0);
    assert_int_equal(del(ST_OP_DEL, "a"), r0 + 4);         /* absent: no change, no bump */
    assert_int_equal(del(ST_OP_DEL_PREFIX, "zz"), r0 + 4); /* same */
    assert_int_equal(put("a", "3", 0), r0 + 5);            /* re-created: a new life */
    get("a", &kv);
    assert_int_equal(kv.create_rev, r0 + 5);
    assert_int_equal(kv.mod_rev, r0 + 5);
    assert_int_equal(kv.version, 1);

    /* One txn, one revision for all its writes; its reads see its writes. */
    st_op_t ops[] = {op_put("c", "x", 0), op_put("d", "y", 0), op_of(ST_OP_GET, "c"),
                     op_of(ST_OP_DEL, "b"), op_of(ST_OP_GET_PREFIX, "")};
    st_txn_t txn = {.success = ops, .nsuccess = 5};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.rev, r0 + 6);
    assert_int_equal(r.nres, 5);
    assert_int_equal(r.n[0], 0); /* PUT has no result */
    assert_int_equal(r.n[2], 1);
    assert_int_equal(r.kv[2][0].mod_rev, r0 + 6);
    assert_int_equal(r.n[4], 3); /* a, c, d: b is gone */
    get("d", &kv);
    assert_int_equal(kv.create_rev, r0 + 6);
    assert_int_equal(kv.mod_rev, r0 + 6);

    st_op_t rd = op_of(ST_OP_GET_PREFIX, "");
    st_txn_t ro = {.success = &rd, .nsuccess = 1};
    txn_sync(&ro, &r); /* only reads: no bump */
    assert_int_equal(r.rev, r0 + 6);
    st_txn_t empty = {0};
    txn_sync(&empty, &r);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    assert_int_equal(r.rev, r0 + 6);
    assert_int_equal(current_rev(), r0 + 6);
}

typedef struct cmp_case {
    st_cmp_target_t target;
    st_cmp_op_t op;
    int64_t num; /* CREATE and MOD: as if the store had been at revision 1 */
    const char *val;
    bool holds;
} cmp_case_t;

/* Every compare target with every operator, on a present and an absent key. */
static void test_txn_compares(void **state)
{
    (void)state;
    int64_t base = current_rev() - 1;
    put("k", "m", 0);     /* base + 2 */
    put("other", "z", 0); /* base + 3 */
    put("k", "m", 0);     /* base + 4: k create 2, mod 4, version 2 */
    static const cmp_case_t cases[] = {
        {ST_CMP_VALUE, ST_CMP_EQ, 0, "m", true},    {ST_CMP_VALUE, ST_CMP_EQ, 0, "n", false},
        {ST_CMP_VALUE, ST_CMP_NE, 0, "n", true},    {ST_CMP_VALUE, ST_CMP_NE, 0, "m", false},
        {ST_CMP_VALUE, ST_CMP_LT, 0, "n", true},    {ST_CMP_VALUE, ST_CMP_LT, 0, "m", false},
        {ST_CMP_VALUE, ST_CMP_LT, 0, "mm", true},   {ST_CMP_VALUE, ST_CMP_GT, 0, "l", true},
        {ST_CMP_VALUE, ST_CMP_GT, 0, "", true},     {ST_CMP_VALUE, ST_CMP_GT, 0, "m", false},
        {ST_CMP_VERSION, ST_CMP_EQ, 2, NULL, true}, {ST_CMP_VERSION, ST_CMP_NE, 2, NULL, false},
        {ST_CMP_VERSION, ST_CMP_LT, 3, NULL, true}, {ST_CMP_VERSION, ST_CMP_GT, 2, NULL, false},
        {ST_CMP_CREATE, ST_CMP_EQ, 2, NULL, true},  {ST_CMP_CREATE, ST_CMP_NE, 4, NULL, true},
        {ST_CMP_CREATE, ST_CMP_LT, 2, NULL, false}, {ST_CMP_CREATE, ST_CMP_GT, 1, NULL, true},
        {ST_CMP_MOD, ST_CMP_EQ, 4, NULL, true},     {ST_CMP_MOD, ST_CMP_NE, 4, NULL, false},
        {ST_CMP_MOD, ST_CMP_LT, 5, NULL, true},     {ST_CMP_MOD, ST_CMP_GT, 4, NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const cmp_case_t *c = &cases[i];
        bool rel = c->target == ST_CMP_CREATE || c->target == ST_CMP_MOD;
        st_cmp_t cmp = {.key = "k",
                        .target = c->target,
                        .op = c->op,
                        .num = c->num + (rel ? base : 0),
                        .val = (const uint8_t *)c->val,
                        .val_len = c->val ? strlen(c->val) : 0};
        st_op_t ok = op_of(ST_OP_GET, "k"), bad = op_of(ST_OP_GET, "other");
        st_txn_t txn = {.cmps = &cmp,
                        .ncmps = 1,
                        .success = &ok,
                        .nsuccess = 1,
                        .failure = &bad,
                        .nfailure = 1};
        res_t r;
        txn_sync(&txn, &r);
        assert_int_equal(r.err, ST_OK);
        if (r.succeeded != c->holds)
            fail_msg("case %zu: succeeded %d", i, r.succeeded);
        assert_int_equal(r.nres, 1);
        assert_string_equal(r.kv[0][0].key, c->holds ? "k" : "other"); /* the branch that ran */
    }
}

/* An absent key: version/create/mod are 0; VALUE never holds, not even NE. */
static void test_txn_compares_absent(void **state)
{
    (void)state;
    int64_t r0 = put("k", "m", 0);
    static const cmp_case_t absent[] = {
        {ST_CMP_VERSION, ST_CMP_EQ, 0, NULL, true}, {ST_CMP_CREATE, ST_CMP_EQ, 0, NULL, true},
        {ST_CMP_MOD, ST_CMP_LT, 1, NULL, true},     {ST_CMP_VERSION, ST_CMP_GT, 0, NULL, false},
        {ST_CMP_VALUE, ST_CMP_NE, 0, "x", false},   {ST_CMP_VALUE, ST_CMP_EQ, 0, "", false},
        {ST_CMP_VALUE, ST_CMP_GT, 0, "", false},    {ST_CMP_VALUE, ST_CMP_LT, 0, "z", false},
    };
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
        const cmp_case_t *c = &absent[i];
        st_cmp_t cmp = {.key = "missing",
                        .target = c->target,
                        .op = c->op,
                        .num = c->num,
                        .val = (const uint8_t *)c->val,
                        .val_len = c->val ? strlen(c->val) : 0};
        st_txn_t txn = {.cmps = &cmp, .ncmps = 1};
        res_t r;
        txn_sync(&txn, &r);
        if (r.succeeded != c->holds)
            fail_msg("absent case %zu: succeeded %d", i, r.succeeded);
    }
    /* Several compares: all must hold (create-if-absent plus a value check). */
    st_cmp_t two[] = {
        {.key = "new", .target = ST_CMP_VERSION, .op = ST_CMP_EQ, .num = 0},
        {.key = "k",
         .target = ST_CMP_VALUE,
         .op = ST_CMP_EQ,
         .val = (const uint8_t *)"m",
         .val_len = 1},
    };
    st_op_t mk = op_put("new", "1", 0);
    st_txn_t txn = {.cmps = two, .ncmps = 2, .success = &mk, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_true(r.succeeded);
    assert_int_equal(r.rev, r0 + 1);
    txn_sync(&txn, &r); /* "new" exists now */
    assert_false(r.succeeded);
    assert_int_equal(r.rev, r0 + 1);
}

/* DESIGN §3/§6: a flush commit compares the node's fence and puts a manifest. */
static void test_fence(void **state)
{
    (void)state;
    const char *fence = "nh/nodes/1/fence";
    put(fence, "7", 0);
    st_cmp_t cmp = {.key = fence,
                    .target = ST_CMP_VALUE,
                    .op = ST_CMP_EQ,
                    .val = (const uint8_t *)"7",
                    .val_len = 1};
    st_op_t man = op_put("nh/manifests/1/1/1", "manifest-1", 0);
    st_op_t rd = op_of(ST_OP_GET, fence);
    st_txn_t txn = {
        .cmps = &cmp, .ncmps = 1, .success = &man, .nsuccess = 1, .failure = &rd, .nfailure = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    int64_t rev = r.rev;

    put(fence, "8", 0); /* another node takes partitions away: bump the fence */
    rev++;
    st_op_t man2 = op_put("nh/manifests/1/1/2", "manifest-2", 0);
    txn.success = &man2;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_false(r.succeeded); /* fenced */
    assert_int_equal(r.rev, rev);
    assert_int_equal(r.nres, 1);
    assert_string_equal(r.kv[0][0].val, "8"); /* the failure branch's read */
    assert_int_equal(get("nh/manifests/1/1/2", NULL), 0);
    assert_int_equal(current_rev(), rev);
}

static void test_txn_invalid_and_limit(void **state)
{
    (void)state;
    int _rc;
    res_t r;
    int64_t r0 = current_rev();
    st_op_t dup[] = {op_put("x", "1", 0), op_put("x", "2", 0)};
    st_txn_t txn = {.success = dup, .nsuccess = 2};
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_ERR_INVALID);
    st_op_t putdel[] = {op_put("y/1", "1", 0), op_of(ST_OP_DEL_PREFIX, "y/")};
    st_txn_t txn2 = {.failure = putdel, .nfailure = 2};
    txn_sync(&txn2, &r);
    assert_int_equal(r.err, ST_ERR_INVALID);
    assert_int_equal(get("x", NULL), 0);
    assert_int_equal(get("y/1", NULL), 0);
    assert_int_equal(current_rev(), r0);

    enum { N = ST_META_MAX_TXN_OPS + 1 };
    static st_op_t ops[N];
    static st_cmp_t cmps[N];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "lim/%03d", i);
        ops[i] = op_put(keys[i], "v", 0);
        cmps[i] = (st_cmp_t){.key = keys[i], .target = ST_CMP_VERSION, .op = ST_CMP_EQ};
    }
    st_txn_t big = {.success = ops, .nsuccess = N};
    assert_int_equal(CALL(st_meta_txn(F->m, &big, txn_cb, &r)), -1);
    st_txn_t bigf = {.failure = ops, .nfailure = N};
    assert_int_equal(CALL(st_meta_txn(F->m, &bigf, txn_cb, &r)), -1);
    st_txn_t bigc = {.cmps = cmps, .ncmps = N};
    assert_int_equal(CALL(st_meta_txn(F->m, &bigc, txn_cb, &r)), -1);

    st_txn_t max = {.cmps = cmps, .ncmps = N - 1, .success = ops, .nsuccess = N - 1};
    txn_sync(&max, &r); /* exactly at the limit: fine, one revision */
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    assert_int_equal(r.rev, r0 + 1);
    range_sync("lim/", true, 0, &r);
    assert_int_equal(r.n[0], N - 1);
}

static void test_put_missing_lease(void **state)
{
    (void)state;
    int64_t r0 = current_rev();
    wl_t wl = {.tag = 100};
    watch("", 0, &wl);
    st_op_t ops[] = {op_put("plain", "1", 0), op_put("leased", "2", 999)};
    st_txn_t txn = {.success = ops, .nsuccess = 2};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_false(r.succeeded);
    assert_int_equal(get("plain", NULL), 0); /* nothing applied */
    assert_int_equal(current_rev(), r0);
    put("after", "1", 0);
    wait_events(&wl, 1);
    assert_string_equal(wl.ev[0].key, "after"); /* no event of the failed txn */
    st_meta_watch_cancel(F->m, wl.w);
}

static void test_lease_revoke(void **state)
{
    (void)state;
    int64_t id = lease_grant(60000);
    int64_t id2 = lease_grant(60000);
    assert_true(id2 != id);
    put("l/1", "a", id);
    put("l/2", "b", id);
    int64_t rev = put("l/3", "c", 0);
    kvc_t kv;
    get("l/1", &kv);
    assert_int_equal(kv.lease, id);
    int64_t ttl = 0;
    assert_int_equal(lease_keepalive(id, &ttl), ST_OK);
    assert_int_equal(ttl, 60000);

    wl_t wl = {.tag = 100};
    watch("l/", 0, &wl);
    assert_int_equal(lease_revoke(id), ST_OK);
    wait_events(&wl, 2);
    assert_int_equal(wl.nev, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(wl.ev[i].type, ST_WATCH_DELETE);
        assert_int_equal(wl.ev[i].mod_rev, rev + 1); /* one revision for the revoke */
    }
    assert_string_equal(wl.ev[0].key, "l/1");
    assert_string_equal(wl.ev[1].key, "l/2");
    assert_int_equal(get("l/1", NULL), 0);
    assert_int_equal(get("l/3", NULL), 1);
    assert_int_equal(current_rev(), rev + 1);
    assert_int_equal(lease_keepalive(id, NULL), ST_ERR_NOT_FOUND);
    assert_int_equal(lease_revoke(id), ST_ERR_NOT_FOUND);
    assert_int_equal(lease_revoke(id2), ST_OK); /* no keys: no revision */
    assert_int_equal(current_rev(), rev + 1);

    /* Re-putting a leased key with lease 0 detaches it. */
    int64_t id3 = lease_grant(60000);
    put("l/4", "d", id3);
    put("l/4", "e", 0);
    assert_int_equal(lease_revoke(id3), ST_OK);
    assert_int_equal(get("l/4", NULL), 1);
    st_meta_watch_cancel(F->m, wl.w);
}

static void test_lease_expiry(void **state)
{
    (void)state;
    int64_t ttl = F->b->short_ttl_ms;
    int64_t keep = lease_grant(ttl + ttl / 2);
    int64_t t0 = mc_now_ms();
    int64_t id = lease_grant(ttl);
    put("e/1", "a", id);
    put("e/2", "b", id);
    put("e/keep", "k", keep);
    int64_t rev = put("e/3", "c", 0);
    wl_t wl = {.tag = 100};
    watch("e/", 0, &wl);
    /* Keep the other lease alive meanwhile. */
    while (wl.nev < 2) {
        assert_int_equal(lease_keepalive(keep, NULL), ST_OK);
        pump_ms(100);
        assert_true(mc_now_ms() - t0 < 5 * ttl + 5000);
    }
    assert_true(mc_now_ms() - t0 >= ttl - 10); /* not before the deadline (ms rounding) */
    assert_int_equal(wl.nev, 2);
    assert_string_equal(wl.ev[0].key, "e/1");
    assert_int_equal(wl.ev[0].type, ST_WATCH_DELETE);
    assert_int_equal(wl.ev[1].mod_rev, rev + 1);
    assert_int_equal(lease_keepalive(id, NULL), ST_ERR_NOT_FOUND);
    assert_int_equal(get("e/1", NULL), 0);
    assert_int_equal(get("e/keep", NULL), 1);
    assert_int_equal(get("e/3", NULL), 1);

    /* An expired lease is gone for PUTs too. */
    st_op_t op = op_put("e/late", "x", id);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);

    /* Stop renewing: the kept lease expires as well. */
    wait_events(&wl, 3);
    assert_string_equal(wl.ev[2].key, "e/keep");
    assert_int_equal(wl.ev[2].mod_rev, rev + 2);
    st_meta_watch_cancel(F->m, wl.w);
}

static void test_watch_order_and_cancel(void **state)
{
    (void)state;
    int _rc;
    int64_t r0 = current_rev();
    wl_t wa = {.tag = 101}, wb = {.tag = 102}, wall = {.tag = 103}, wself = {.tag = 104};
    wl_t wq = {.tag = 105};
    watch("a/", 0, &wa);
    watch("b/", 0, &wb);
    watch("", 0, &wall);
    watch("", 0, &wself);
    watch("", 0, &wq);
    wself.cancel_on_call = 1; /* cancels itself inside its first callback */

    /* Queue several txns without running the loop. */
    enum { N = 6 };
    res_t r[N];
    st_op_t ops[N][2];
    char k1[N][16], k2[N][16];
    st_txn_t txn[N];
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].tag = i + 1;
        snprintf(k1[i], sizeof k1[i], "a/%d", i);
        snprintf(k2[i], sizeof k2[i], "b/%d", i);
        ops[i][0] = op_put(k1[i], "v", 0);
        ops[i][1] = i % 2 ? op_of(ST_OP_DEL, k2[i - 1]) : op_put(k2[i], "w", 0);
        txn[i] = (st_txn_t){.success = ops[i], .nsuccess = 2};
        assert_int_equal(CALL(st_meta_txn(F->m, &txn[i], txn_cb, &r[i])), 0);
    }
    st_meta_watch_cancel(F->m, wq.w); /* events already queued: never delivered */
    loop_until(&r[N - 1].done);
    wait_events(&wall, 2 * N);
    wait_events(&wa, N);
    wait_events(&wb, N);
    wait_calls(&wself, 1);

    assert_int_equal(wq.calls, 0);
    assert_int_equal(wself.calls, 1);
    assert_int_equal(wall.nev, 2 * N);
    assert_int_equal(wa.nev, N);
    assert_int_equal(wb.nev, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].err, ST_OK);
        assert_int_equal(r[i].seq, r[0].seq + i); /* completions in issue order */
        assert_int_equal(r[i].rev, r0 + 1 + i);
        assert_int_equal(wa.ev[i].mod_rev, r0 + 1 + i);
        assert_int_equal(wa.ev[i].type, ST_WATCH_PUT);
        assert_string_equal(wa.ev[i].key, k1[i]);
        assert_int_equal(wb.ev[i].type, i % 2 ? ST_WATCH_DELETE : ST_WATCH_PUT);
        assert_string_equal(wb.ev[i].key, i % 2 ? k2[i - 1] : k2[i]);
        assert_int_equal(wb.ev[i].mod_rev, r0 + 1 + i);
    }
    /* A PUT event carries the whole kv. */
    assert_string_equal(wall.ev[0].val, "v");
    assert_int_equal(wall.ev[0].create_rev, r0 + 1);
    assert_int_equal(wall.ev[0].version, 1);
    /* Nothing after cancel. */
    st_meta_watch_cancel(F->m, wa.w);
    put("a/x", "1", 0);
    wait_events(&wall, 2 * N + 1);
    pump_ms(20);
    assert_int_equal(wa.nev, N);
    assert_int_equal(wq.calls, 0);
    assert_int_equal(wself.calls, 1);
    st_meta_watch_cancel(F->m, wb.w);
    st_meta_watch_cancel(F->m, wall.w);
}

/* A watch from a revision whose history is gone gets ST_ERR_NOT_FOUND and
 * nothing more (SQLite keeps no history, etcd none before a compaction);
 * one from the next revision, from now, or from the future gets its events. */
static void test_watch_start_rev(void **state)
{
    (void)state;
    put("w/a", "1", 0);
    int64_t rev = put("w/b", "2", 0);
    assert_int_equal(compact(rev), ST_OK);

    wl_t past = {.tag = 100};
    watch("w/", rev - 1, &past);
    assert_int_equal(past.calls, 0);
    wl_t past2 = {.tag = 101};
    watch("w/", 1, &past2);
    st_meta_watch_cancel(F->m, past2.w); /* cancelled before the error: nothing */
    wl_t next = {.tag = 102}, now = {.tag = 103}, future = {.tag = 104};
    watch("w/", rev + 1, &next);
    watch("w/", 0, &now);
    watch("w/", rev + 3, &future);
    put("w/c", "3", 0);
    put("w/d", "4", 0);
    put("w/e", "5", 0);
    wait_calls(&past, 1);
    wait_events(&next, 3);
    wait_events(&now, 3);
    wait_events(&future, 1);
    pump_ms(20);
    assert_int_equal(past.calls, 1);
    assert_int_equal(past.err, ST_ERR_NOT_FOUND);
    assert_int_equal(past.nev, 0);
    assert_int_equal(past2.calls, 0);
    assert_int_equal(next.nev, 3);
    assert_int_equal(next.ev[0].mod_rev, rev + 1);
    assert_string_equal(next.ev[0].key, "w/c");
    assert_int_equal(now.nev, 3);
    assert_int_equal(future.nev, 1);
    assert_string_equal(future.ev[0].key, "w/e");
    assert_int_equal(past.calls, 1); /* broken: nothing more */
    st_meta_watch_cancel(F->m, past.w);
    st_meta_watch_cancel(F->m, next.w);
    st_meta_watch_cancel(F->m, now.w);
    st_meta_watch_cancel(F->m, future.w);
}

/* Mixed ops complete in issue order, on the loop thread, never inside the
 * call; inputs are copied at the call. */
static void test_issue_order(void **state)
{
    (void)state;
    int _rc;
    enum { N = 120 };
    static res_t r[N];
    int64_t id = lease_grant(60000);
    int first = F->nlog;
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].tag = i + 1;
        char key[32], val[32];
        snprintf(key, sizeof key, "o/%03d", i);
        snprintf(val, sizeof val, "v%d", i);
        st_op_t op = op_put(key, val, i % 7 == 0 ? id : 0);
        st_cmp_t cmp = {.key = key, .target = ST_CMP_VERSION, .op = ST_CMP_EQ, .num = 0};
        st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &op, .nsuccess = 1};
        switch (i % 5) {
        case 0:
        case 1:
            assert_int_equal(CALL(st_meta_txn(F->m, &txn, txn_cb, &r[i])), 0);
            break;
        case 2:
            assert_int_equal(CALL(st_meta_range(F->m, "o/", true, 0, range_cb, &r[i])), 0);
            break;
        case 3:
            assert_int_equal(CALL(st_meta_lease_keepalive(F->m, id, lease_cb, &r[i])), 0);
            break;
        case 4:
            assert_int_equal(CALL(st_meta_compact(F->m, 1, done_cb, &r[i])), 0);
            break;
        }
        memset(key, 0xAA, sizeof key); /* borrowed inputs: the store has copied them */
        memset(val, 0xBB, sizeof val);
    }
    loop_until(&r[N - 1].done);
    assert_int_equal(F->nlog, first + N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(F->log[first + i], i + 1);
        assert_int_equal(r[i].err, ST_OK);
    }
    /* Ranges see exactly the txns issued before them. */
    int puts_before = 0;
    for (int i = 0; i < N; i++) {
        if (i % 5 == 2)
            assert_int_equal(r[i].n[0], (size_t)puts_before);
        if (i % 5 <= 1)
            puts_before++;
    }
    kvc_t kv;
    assert_int_equal(get("o/035", &kv), 1); /* a txn (35 % 5 == 0) with the lease */
    assert_string_equal(kv.val, "v35");
    assert_int_equal(kv.lease, id);
}

/* Ranges issued back to back (which a remote store may run in parallel)
 * still complete in issue order, around the writes between them. */
static void test_issue_order_reads(void **state)
{
    (void)state;
    int _rc;
    enum { N = 40 };
    static res_t r[N];
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].tag = i + 1;
        if (i % 10 == 9) {
            st_op_t op = op_put("rr/k", "v", 0);
            st_txn_t txn = {.success = &op, .nsuccess = 1};
            assert_int_equal(CALL(st_meta_txn(F->m, &txn, txn_cb, &r[i])), 0);
        } else {
            assert_int_equal(CALL(st_meta_range(F->m, "rr/", true, 0, range_cb, &r[i])), 0);
        }
    }
    loop_until(&r[N - 1].done);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].err, ST_OK);
        assert_int_equal(r[i].seq, r[0].seq + i);
        if (i % 10 != 9)
            assert_int_equal(r[i].n[0], i < 9 ? 0 : 1);
        if (i > 0 && i % 10 != 9 && (i - 1) % 10 != 9)
            assert_int_equal(r[i].rev, r[i - 1].rev);
    }
}

static void on_txn_count(st_err_t err, bool succeeded, int64_t rev, const st_op_result_t *results,
                         size_t nresults, void *arg)
{
    (void)succeeded;
    (void)rev;
    (void)results;
    (void)nresults;
    int _rc;
    res_t *r = arg;
    finish(r, err);
    /* The store is closing: new ops are refused. */
    assert_int_equal(CALL(st_meta_compact(F->m, 0, done_cb, r)), -1);
}

static void test_free_drains(void **state)
{
    (void)state;
    int _rc;
    enum { N = 20 };
    res_t r[N];
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        st_op_t op = op_put("d/k", "v", 0);
        st_txn_t txn = {.success = &op, .nsuccess = 1};
        assert_int_equal(CALL(st_meta_txn(F->m, &txn, on_txn_count, &r[i])), 0);
    }
    wl_t wl = {.tag = 100};
    watch("d/", 0, &wl); /* free() also frees the watches not cancelled */
    mc_close_store();
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].err, ST_OK);
    }
    mc_open_store(false);
    kvc_t kv;
    assert_int_equal(get("d/k", &kv), 1);
    assert_int_equal(kv.version, N);
}

/* The loop runs on a thread of its own (not main): every callback runs on
 * it (on_loop() checks F->loop_thread), none on a worker or on main. */
static void *loop_thread_main(void *arg)
{
    int _rc;
    enum { N = 50 };
    res_t *r = arg;
    F->loop_thread = pthread_self();
    for (int i = 0; i < N; i++) {
        st_op_t op = op_put("t/k", "v", 0);
        st_txn_t txn = {.success = &op, .nsuccess = 1};
        if (i % 2)
            assert_int_equal(CALL(st_meta_txn(F->m, &txn, txn_cb, &r[i])), 0);
        else
            assert_int_equal(CALL(st_meta_range(F->m, "t/", true, 1, range_cb, &r[i])), 0);
    }
    loop_until(&r[N - 1].done);
    return NULL;
}

static void test_loop_thread(void **state)
{
    (void)state;
    enum { N = 50 };
    static res_t r[N];
    memset(r, 0, sizeof r);
    int seq0 = F->seq;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, loop_thread_main, r), 0);
    pthread_join(t, NULL);
    assert_false(pthread_equal(F->loop_thread, pthread_self()));
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].seq, seq0 + i + 1);
    }
    F->loop_thread = pthread_self(); /* teardown frees the store from main */
}

static void test_misc(void **state)
{
    (void)state;
    int _rc;
    assert_int_equal(compact(1), ST_OK); /* nothing (more) to drop: fine */
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_grant(F->m, 0, lease_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_ERR_INVALID);
    memset(&r, 0, sizeof r);
    assert_int_equal(CALL(st_meta_lease_keepalive(F->m, 123456789, lease_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(lease_revoke(123456789), ST_ERR_NOT_FOUND);
    assert_string_equal(F->m->ops->name, F->b->name);
}

size_t mc_add_tests(const mc_backend_t *b, struct CMUnitTest *tests, size_t max)
{
    const struct CMUnitTest all[] = {
        MC_TEST(test_get_range_limit, b),
        MC_TEST(test_prefix_bytes, b),
        MC_TEST(test_revisions, b),
        MC_TEST(test_txn_compares, b),
        MC_TEST(test_txn_compares_absent, b),
        MC_TEST(test_fence, b),
        MC_TEST(test_txn_invalid_and_limit, b),
        MC_TEST(test_put_missing_lease, b),
        MC_TEST(test_lease_revoke, b),
        MC_TEST(test_lease_expiry, b),
        MC_TEST(test_watch_order_and_cancel, b),
        MC_TEST(test_watch_start_rev, b),
        MC_TEST(test_issue_order, b),
        MC_TEST(test_issue_order_reads, b),
        MC_TEST(test_free_drains, b),
        MC_TEST(test_loop_thread, b),
        MC_TEST(test_misc, b),
    };
    size_t n = sizeof all / sizeof *all;
    assert_true(n <= max);
    memcpy(tests, all, sizeof all);
    return n;
}
