/*
 * test_meta_sqlite.c: the SQLite metadata store against etcd v3 semantics --
 * ranges and prefixes over arbitrary bytes, revisions, transactions and
 * compares (the fence pattern), leases and their expiry, watches, issue
 * order, persistence across reopen, and failing SQLite steps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "st_meta.h"

/* ------------------------------------------------------------- fixture */

typedef struct fx {
    char dir[64];
    char path[96];
    struct event_base *base;
    st_meta_t *m;
    pthread_t loop_thread;
    int in_call; /* set while a st_meta_* call runs: callbacks must not see it */
    int seq;     /* completion counter */
    int log[1024];
    int nlog; /* callbacks in completion order, by tag */
} fx_t;

static fx_t *F;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void open_store(void)
{
    char err[256] = "";
    F->m = st_meta_sqlite_new(F->base, F->path, err, sizeof err);
    if (!F->m)
        fail_msg("open: %s", err);
}

static void close_store(void)
{
    st_meta_free(F->m);
    F->m = NULL;
}

static int setup(void **state)
{
    F = calloc(1, sizeof(*F));
    snprintf(F->dir, sizeof F->dir, "/tmp/nh-meta-XXXXXX");
    assert_non_null(mkdtemp(F->dir));
    snprintf(F->path, sizeof F->path, "%s/meta.db", F->dir);
    F->base = event_base_new();
    F->loop_thread = pthread_self();
    open_store();
    *state = F;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close_store();
    event_base_free(F->base);
    char p[128];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", F->path, sfx[i]);
        unlink(p);
    }
    rmdir(F->dir);
    free(F);
    return 0;
}

/* One turn of the loop, failing the test if it runs far too long. */
static void loop_until(const int *flag)
{
    int64_t deadline = now_ms() + 15000;
    while (!*flag) {
        event_base_loop(F->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (!*flag)
            usleep(200);
        assert_true(now_ms() < deadline);
    }
}

static void pump_ms(int ms)
{
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        event_base_loop(F->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(500);
    }
}

#define CALL(expr) (F->in_call = 1, _rc = (expr), F->in_call = 0, _rc)

/* ------------------------------------------------------------ captures */

typedef struct kvc {
    char key[64];
    char val[64];
    size_t val_len;
    int64_t create_rev, mod_rev, version, lease;
} kvc_t;

#define MAXR 8
#define MAXKV 16

typedef struct res {
    int tag; /* logged in F->log when the callback runs */
    int done, seq;
    st_err_t err;
    bool succeeded, more;
    int64_t rev, lease, ttl;
    size_t nres;
    size_t n[MAXR];
    kvc_t kv[MAXR][MAXKV];
} res_t;

static void on_loop(void)
{
    assert_true(pthread_equal(pthread_self(), F->loop_thread));
    assert_int_equal(F->in_call, 0); /* never from inside the starting call */
}

static void finish(res_t *r, st_err_t err)
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

static void range_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
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

static void txn_cb(st_err_t err, bool succeeded, int64_t rev, const st_op_result_t *results,
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

static void lease_cb(st_err_t err, int64_t id, int64_t ttl_ms, void *arg)
{
    res_t *r = arg;
    finish(r, err);
    r->lease = id;
    r->ttl = ttl_ms;
}

static void done_cb(st_err_t err, void *arg)
{
    finish(arg, err);
}

typedef struct wev {
    st_watch_type_t type;
    char key[64];
    char val[64];
    int64_t create_rev, mod_rev, version, lease;
} wev_t;

typedef struct wl {
    int tag;
    int calls;
    st_err_t err;
    size_t nev;
    wev_t ev[256];
    st_meta_watch_t *w;
    int cancel_on_call; /* cancel itself in this call (1-based); 0 = never */
} wl_t;

static void watch_cb(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg)
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

static void wait_events(const wl_t *wl, size_t nev)
{
    int64_t deadline = now_ms() + 15000;
    while (wl->nev < nev) {
        pump_ms(5);
        assert_true(now_ms() < deadline);
    }
}

static void range_sync(const char *key, bool prefix, size_t limit, res_t *r)
{
    int _rc;
    memset(r, 0, sizeof(*r));
    assert_int_equal(CALL(st_meta_range(F->m, key, prefix, limit, range_cb, r)), 0);
    assert_int_equal(r->done, 0);
    loop_until(&r->done);
    assert_int_equal(r->err, ST_OK);
}

static void txn_sync(const st_txn_t *txn, res_t *r)
{
    int _rc;
    memset(r, 0, sizeof(*r));
    assert_int_equal(CALL(st_meta_txn(F->m, txn, txn_cb, r)), 0);
    assert_int_equal(r->done, 0);
    loop_until(&r->done);
}

static st_op_t op_put(const char *key, const char *val, int64_t lease)
{
    return (st_op_t){.type = ST_OP_PUT,
                     .key = key,
                     .val = (const uint8_t *)val,
                     .val_len = strlen(val),
                     .lease = lease};
}

static st_op_t op_of(st_op_type_t type, const char *key)
{
    return (st_op_t){.type = type, .key = key};
}

/* Put @key = @val; @returns the revision after it. */
static int64_t put(const char *key, const char *val, int64_t lease)
{
    st_op_t op = op_put(key, val, lease);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    return r.rev;
}

static int64_t del(st_op_type_t type, const char *key)
{
    st_op_t op = op_of(type, key);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    return r.rev;
}

/* @returns the number of kvs at @key (0 or 1), copying it to @out. */
static size_t get(const char *key, kvc_t *out)
{
    res_t r;
    range_sync(key, false, 0, &r);
    if (r.n[0] && out)
        *out = r.kv[0][0];
    return r.n[0];
}

static int64_t current_rev(void)
{
    res_t r;
    range_sync("", false, 0, &r);
    return r.rev;
}

static int64_t lease_grant(int64_t ttl_ms)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_grant(F->m, ttl_ms, lease_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.lease > 0);
    assert_int_equal(r.ttl, ttl_ms);
    return r.lease;
}

static st_err_t lease_keepalive(int64_t id, int64_t *ttl)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_keepalive(F->m, id, lease_cb, &r)), 0);
    loop_until(&r.done);
    if (ttl)
        *ttl = r.ttl;
    return r.err;
}

static st_err_t lease_revoke(int64_t id)
{
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_lease_revoke(F->m, id, done_cb, &r)), 0);
    loop_until(&r.done);
    return r.err;
}

static st_meta_watch_t *watch(const char *prefix, int64_t start_rev, wl_t *wl)
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
    assert_int_equal(current_rev(), 1); /* etcd's empty store is at revision 1 */
    assert_int_equal(put("a", "1", 0), 2);
    assert_int_equal(get("a", &kv), 1);
    assert_int_equal(kv.create_rev, 2);
    assert_int_equal(kv.mod_rev, 2);
    assert_int_equal(kv.version, 1);
    assert_int_equal(put("a", "2", 0), 3);
    assert_int_equal(put("b", "1", 0), 4);
    get("a", &kv);
    assert_int_equal(kv.create_rev, 2);
    assert_int_equal(kv.mod_rev, 3);
    assert_int_equal(kv.version, 2);
    assert_int_equal(del(ST_OP_DEL, "a"), 5);
    assert_int_equal(get("a", NULL), 0);
    assert_int_equal(del(ST_OP_DEL, "a"), 5);         /* absent: no change, no bump */
    assert_int_equal(del(ST_OP_DEL_PREFIX, "zz"), 5); /* same */
    assert_int_equal(put("a", "3", 0), 6);            /* re-created: a new life */
    get("a", &kv);
    assert_int_equal(kv.create_rev, 6);
    assert_int_equal(kv.mod_rev, 6);
    assert_int_equal(kv.version, 1);

    /* One txn, one revision for all its writes; its reads see its writes. */
    st_op_t ops[] = {op_put("c", "x", 0), op_put("d", "y", 0), op_of(ST_OP_GET, "c"),
                     op_of(ST_OP_DEL, "b"), op_of(ST_OP_GET_PREFIX, "")};
    st_txn_t txn = {.success = ops, .nsuccess = 5};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.rev, 7);
    assert_int_equal(r.nres, 5);
    assert_int_equal(r.n[0], 0); /* PUT has no result */
    assert_int_equal(r.n[2], 1);
    assert_int_equal(r.kv[2][0].mod_rev, 7);
    assert_int_equal(r.n[4], 3); /* a, c, d: b is gone */
    get("d", &kv);
    assert_int_equal(kv.create_rev, 7);
    assert_int_equal(kv.mod_rev, 7);

    st_op_t rd = op_of(ST_OP_GET_PREFIX, "");
    st_txn_t ro = {.success = &rd, .nsuccess = 1};
    txn_sync(&ro, &r); /* only reads: no bump */
    assert_int_equal(r.rev, 7);
    st_txn_t empty = {0};
    txn_sync(&empty, &r);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    assert_int_equal(r.rev, 7);
    assert_int_equal(current_rev(), 7);
}

typedef struct cmp_case {
    st_cmp_target_t target;
    st_cmp_op_t op;
    int64_t num;
    const char *val;
    bool holds;
} cmp_case_t;

/* Every compare target with every operator, on a present and an absent key. */
static void test_txn_compares(void **state)
{
    (void)state;
    put("k", "m", 0);     /* rev 2 */
    put("other", "z", 0); /* rev 3 */
    put("k", "m", 0);     /* rev 4: k create 2, mod 4, version 2 */
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
        st_cmp_t cmp = {.key = "k",
                        .target = c->target,
                        .op = c->op,
                        .num = c->num,
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
    put("k", "m", 0); /* rev 2 */
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
    assert_int_equal(r.rev, 3);
    txn_sync(&txn, &r); /* "new" exists now */
    assert_false(r.succeeded);
    assert_int_equal(r.rev, 3);
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
    assert_int_equal(current_rev(), 1);

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
    assert_int_equal(r.rev, 2);
    range_sync("lim/", true, 0, &r);
    assert_int_equal(r.n[0], N - 1);
}

static void test_put_missing_lease(void **state)
{
    (void)state;
    wl_t wl = {.tag = 100};
    watch("", 0, &wl);
    st_op_t ops[] = {op_put("plain", "1", 0), op_put("leased", "2", 999)};
    st_txn_t txn = {.success = ops, .nsuccess = 2};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(r.rev, 1);
    assert_int_equal(get("plain", NULL), 0); /* nothing applied */
    assert_int_equal(wl.calls, 0);
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
    int _rc;
    res_t r = {.tag = 1};
    F->nlog = 0;
    assert_int_equal(CALL(st_meta_lease_revoke(F->m, id, done_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(wl.calls, 1);
    assert_int_equal(F->nlog, 2);
    assert_int_equal(F->log[0], 100); /* watch events first, then the op's callback */
    assert_int_equal(F->log[1], 1);
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
    int64_t keep = lease_grant(400);
    int64_t t0 = now_ms();
    int64_t id = lease_grant(300);
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
        assert_true(now_ms() - t0 < 10000);
    }
    assert_true(now_ms() - t0 >= 290); /* not before the deadline (ms rounding) */
    assert_int_equal(wl.nev, 2);
    assert_string_equal(wl.ev[0].key, "e/1");
    assert_int_equal(wl.ev[0].type, ST_WATCH_DELETE);
    assert_int_equal(wl.ev[1].mod_rev, rev + 1);
    assert_int_equal(lease_keepalive(id, NULL), ST_ERR_NOT_FOUND);
    assert_int_equal(get("e/1", NULL), 0);
    assert_int_equal(get("e/keep", NULL), 1);
    assert_int_equal(get("e/3", NULL), 1);

    /* A lease past its deadline is gone for PUTs too. */
    int64_t shortl = lease_grant(1);
    usleep(5000);
    st_op_t op = op_put("e/late", "x", shortl);
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

    assert_int_equal(wq.calls, 0);
    assert_int_equal(wself.calls, 1);
    assert_int_equal(wall.calls, N);
    assert_int_equal(wall.nev, 2 * N);
    assert_int_equal(wa.nev, N);
    assert_int_equal(wb.nev, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].err, ST_OK);
        assert_int_equal(r[i].rev, 2 + i);
        assert_int_equal(wa.ev[i].mod_rev, 2 + i);
        assert_int_equal(wa.ev[i].type, ST_WATCH_PUT);
        assert_string_equal(wa.ev[i].key, k1[i]);
        assert_int_equal(wb.ev[i].type, i % 2 ? ST_WATCH_DELETE : ST_WATCH_PUT);
        assert_string_equal(wb.ev[i].key, i % 2 ? k2[i - 1] : k2[i]);
        assert_int_equal(wb.ev[i].mod_rev, 2 + i);
    }
    /* A PUT event carries the whole kv. */
    assert_string_equal(wall.ev[0].val, "v");
    assert_int_equal(wall.ev[0].create_rev, 2);
    assert_int_equal(wall.ev[0].version, 1);
    /* Order on the loop: each txn's watch events, then that txn's callback. */
    int pos = 0;
    for (int i = 0; i < N; i++) {
        int seen_cb = 0;
        for (; pos < F->nlog && !seen_cb; pos++) {
            if (F->log[pos] == i + 1)
                seen_cb = 1;
            else
                assert_true(F->log[pos] > 100);
        }
        assert_true(seen_cb);
    }
    /* Nothing after cancel. */
    st_meta_watch_cancel(F->m, wa.w);
    put("a/x", "1", 0);
    assert_int_equal(wa.nev, N);
    assert_int_equal(wall.nev, 2 * N + 1);
    st_meta_watch_cancel(F->m, wb.w);
    st_meta_watch_cancel(F->m, wall.w);
}

static void test_watch_start_rev(void **state)
{
    (void)state;
    put("w/a", "1", 0);
    int64_t rev = put("w/b", "2", 0); /* 3 */

    wl_t past = {.tag = 100};
    watch("w/", rev, &past); /* history is not kept */
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
    assert_int_equal(past.calls, 1);
    assert_int_equal(past.err, ST_ERR_NOT_FOUND);
    assert_int_equal(past.nev, 0);
    assert_int_equal(past2.calls, 0);
    assert_int_equal(next.nev, 3);
    assert_int_equal(next.ev[0].mod_rev, rev + 1);
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
    assert_int_equal(F->nlog, N + 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(F->log[i + 1], i + 1);
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
    close_store();
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].done, 1);
    open_store();
    kvc_t kv;
    assert_int_equal(get("d/k", &kv), 1);
    assert_int_equal(kv.version, N);
}

static void test_persistence(void **state)
{
    (void)state;
    put("p/a", "1", 0);
    int64_t id = lease_grant(60000);
    put("p/b", "2", id);
    int64_t shortl = lease_grant(300);
    put("p/c", "3", shortl);
    int64_t rev = del(ST_OP_DEL, "p/a");
    close_store();
    usleep(400 * 1000); /* the short lease's deadline passes while closed */
    open_store();

    wl_t wl = {.tag = 100};
    watch("p/", 0, &wl);
    assert_int_equal(current_rev(), rev);
    kvc_t kv;
    assert_int_equal(get("p/a", NULL), 0);
    assert_int_equal(get("p/b", &kv), 1);
    assert_int_equal(kv.lease, id);
    assert_int_equal(kv.mod_rev, 3);
    int64_t ttl;
    assert_int_equal(lease_keepalive(id, &ttl), ST_OK); /* the lease survived */
    assert_int_equal(ttl, 60000);
    loop_until((int *)&wl.calls); /* the expired lease goes at once */
    assert_int_equal(wl.nev, 1);
    assert_string_equal(wl.ev[0].key, "p/c");
    assert_int_equal(wl.ev[0].mod_rev, rev + 1);
    assert_true(lease_grant(1000) > shortl); /* lease ids are never reused */
    assert_int_equal(put("p/d", "4", 0), rev + 2);
    st_meta_watch_cancel(F->m, wl.w);

    close_store(); /* and once more, now with a committed expiry */
    open_store();
    assert_int_equal(current_rev(), rev + 2);
    assert_int_equal(get("p/c", NULL), 0);
    assert_int_equal(lease_revoke(id), ST_OK);
    assert_int_equal(get("p/b", NULL), 0);
}

static sqlite3 *raw_open(void)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(F->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

/* A step failing in the middle of a txn rolls the whole txn back. */
static void test_failing_step(void **state)
{
    (void)state;
    put("f/0", "0", 0);
    int64_t rev = current_rev();
    sqlite3 *raw = raw_open();
    raw_exec(raw, "CREATE TRIGGER poison BEFORE INSERT ON kv WHEN NEW.key = X'706f69736f6e'"
                  " BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
    wl_t wl = {.tag = 100};
    watch("", 0, &wl);
    st_op_t ops[] = {op_put("f/1", "1", 0), op_of(ST_OP_DEL, "f/0"), op_put("poison", "x", 0)};
    st_txn_t txn = {.success = ops, .nsuccess = 3};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_ERR_IO);
    assert_int_equal(r.rev, rev);
    assert_int_equal(wl.calls, 0);
    assert_int_equal(get("f/1", NULL), 0);
    assert_int_equal(get("f/0", NULL), 1);
    assert_int_equal(current_rev(), rev);

    raw_exec(raw, "DROP TRIGGER poison");
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.rev, rev + 1);
    assert_int_equal(wl.nev, 3);
    sqlite3_close(raw);
    st_meta_watch_cancel(F->m, wl.w);
}

/* Another connection holds the write lock: the txn fails, nothing applied. */
static void test_locked_db(void **state)
{
    (void)state;
    int _rc;
    put("g/0", "0", 0);
    int64_t rev = current_rev();
    sqlite3 *raw = raw_open();
    raw_exec(raw, "BEGIN EXCLUSIVE");
    res_t r = {0}, rr = {0}, rl = {0};
    st_op_t op = op_put("g/1", "1", 0);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    assert_int_equal(CALL(st_meta_txn(F->m, &txn, txn_cb, &r)), 0);
    assert_int_equal(CALL(st_meta_lease_grant(F->m, 1000, lease_cb, &rl)), 0);
    assert_int_equal(CALL(st_meta_range(F->m, "g/", true, 0, range_cb, &rr)), 0);
    loop_until(&rr.done);
    assert_int_equal(r.err, ST_ERR_IO);
    assert_false(r.succeeded);
    assert_int_equal(rl.err, ST_ERR_IO);
    assert_int_equal(rr.err, ST_OK); /* WAL: readers are not blocked */
    assert_int_equal(rr.n[0], 1);
    raw_exec(raw, "ROLLBACK");
    sqlite3_close(raw);
    assert_int_equal(get("g/1", NULL), 0);
    assert_int_equal(current_rev(), rev);
    assert_int_equal(put("g/1", "1", 0), rev + 1);
}

/* The loop runs on a thread of its own (not main): every callback runs on
 * it (on_loop() checks F->loop_thread), none on the worker or on main. */
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
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, loop_thread_main, r), 0);
    pthread_join(t, NULL);
    assert_false(pthread_equal(F->loop_thread, pthread_self()));
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].seq, i + 1);
    }
    F->loop_thread = pthread_self(); /* teardown frees the store from main */
}

static void test_misc(void **state)
{
    (void)state;
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_compact(F->m, 1, done_cb, &r)), 0); /* no history: no-op */
    loop_until(&r.done);
    assert_int_equal(r.err, ST_OK);
    memset(&r, 0, sizeof r);
    assert_int_equal(CALL(st_meta_lease_grant(F->m, 0, lease_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_ERR_INVALID);
    assert_string_equal(F->m->ops->name, "sqlite");

    char err[256] = "";
    assert_null(st_meta_sqlite_new(F->base, "/nonexistent-dir/x/meta.db", err, sizeof err));
    assert_true(err[0] != 0);
    char junk[128];
    snprintf(junk, sizeof junk, "%s/junk.db", F->dir);
    FILE *fp = fopen(junk, "w");
    assert_non_null(fp);
    for (int i = 0; i < 512; i++)
        fputs("not a database ", fp);
    fclose(fp);
    err[0] = 0;
    assert_null(st_meta_sqlite_new(F->base, junk, err, sizeof err));
    assert_true(err[0] != 0);
    unlink(junk);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_range_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_compares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_compares_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_invalid_and_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_missing_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_order_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_start_rev, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
