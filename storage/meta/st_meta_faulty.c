/*
 * st_meta_faulty.c: a fault-injecting wrapper around any metadata store,
 * for tests of the paths where a transaction fails or its reply is lost.
 */
#include "st_meta.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef struct faulty {
    st_meta_t base; /* must be first */
    st_meta_t *inner;
    struct event_base *evbase;
    st_meta_fault_t plan;
    uint64_t txns; /* transactions seen since the plan was set */
    /* The range held (plan.hold_range), issued by st_meta_faulty_release. */
    struct {
        bool held, done;
        char *key;
        bool prefix;
        size_t limit;
        st_range_cb cb;
        void *arg;
    } hold;
} faulty_t;

typedef struct txn_ctx {
    faulty_t *f;
    st_err_t err; /* ST_OK: pass the inner result through */
    st_txn_cb cb;
    void *arg;
} txn_ctx_t;

static void txn_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                     void *arg)
{
    txn_ctx_t *t = arg;
    if (t->err != ST_OK) /* applied (or not) on the inner store; the reply is lost */
        t->cb(t->err, false, 0, NULL, 0, t->arg);
    else
        t->cb(err, ok, rev, res, n, t->arg);
    free(t);
}

static void txn_refused(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    txn_ctx_t *t = arg;
    t->cb(t->err, false, 0, NULL, 0, t->arg);
    free(t);
}

static int f_txn(st_meta_t *m, const st_txn_t *txn, st_txn_cb cb, void *arg)
{
    faulty_t *f = (faulty_t *)m;
    txn_ctx_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    t->f = f;
    t->cb = cb;
    t->arg = arg;
    f->txns++;
    uint64_t count = f->plan.txn_count ? f->plan.txn_count : 1;
    bool hit = f->plan.txn_all ||
               (f->plan.txn_nth && f->txns >= f->plan.txn_nth && f->txns - f->plan.txn_nth < count);
    if (hit)
        t->err = f->plan.err != ST_OK ? f->plan.err : ST_ERR_IO;
    if (hit && !f->plan.txn_apply) {
        struct timeval zero = {0, 0};
        if (event_base_once(f->evbase, -1, EV_TIMEOUT, txn_refused, t, &zero) != 0) {
            free(t);
            return -1;
        }
        return 0;
    }
    int rc = st_meta_txn(f->inner, txn, txn_done, t);
    if (rc != 0)
        free(t);
    return rc;
}

static int f_range(st_meta_t *m, const char *key, bool prefix, size_t limit, st_range_cb cb,
                   void *arg)
{
    faulty_t *f = (faulty_t *)m;
    const char *h = f->plan.hold_range;
    if (h && !f->hold.done && strncmp(key, h, strlen(h)) == 0) {
        f->hold.key = strdup(key);
        if (!f->hold.key)
            return -1;
        f->hold.held = f->hold.done = true;
        f->hold.prefix = prefix;
        f->hold.limit = limit;
        f->hold.cb = cb;
        f->hold.arg = arg;
        return 0;
    }
    return st_meta_range(f->inner, key, prefix, limit, cb, arg);
}

bool st_meta_faulty_holding(const st_meta_t *m)
{
    return ((const faulty_t *)m)->hold.held;
}

int st_meta_faulty_release(st_meta_t *m)
{
    faulty_t *f = (faulty_t *)m;
    if (!f->hold.held)
        return 0;
    f->hold.held = false;
    int rc = st_meta_range(f->inner, f->hold.key, f->hold.prefix, f->hold.limit, f->hold.cb,
                           f->hold.arg);
    free(f->hold.key);
    f->hold.key = NULL;
    return rc;
}

static int f_lease_grant(st_meta_t *m, int64_t ttl_ms, st_lease_cb cb, void *arg)
{
    return st_meta_lease_grant(((faulty_t *)m)->inner, ttl_ms, cb, arg);
}

static int f_lease_keepalive(st_meta_t *m, int64_t id, st_lease_cb cb, void *arg)
{
    return st_meta_lease_keepalive(((faulty_t *)m)->inner, id, cb, arg);
}

static int f_lease_revoke(st_meta_t *m, int64_t id, st_meta_done_cb cb, void *arg)
{
    return st_meta_lease_revoke(((faulty_t *)m)->inner, id, cb, arg);
}

static st_meta_watch_t *f_watch(st_meta_t *m, const char *prefix, int64_t start_rev, st_watch_cb cb,
                                void *arg)
{
    return st_meta_watch(((faulty_t *)m)->inner, prefix, start_rev, cb, arg);
}

static void f_watch_cancel(st_meta_t *m, st_meta_watch_t *w)
{
    st_meta_watch_cancel(((faulty_t *)m)->inner, w);
}

static int f_compact(st_meta_t *m, int64_t rev, st_meta_done_cb cb, void *arg)
{
    return st_meta_compact(((faulty_t *)m)->inner, rev, cb, arg);
}

static void f_free(st_meta_t *m)
{
    faulty_t *f = (faulty_t *)m;
    st_meta_faulty_release(m); /* its callback runs, as free promises */
    st_meta_free(f->inner);
    free(f);
}

static const st_meta_ops_t faulty_ops = {
    .name = "faulty",
    .range = f_range,
    .txn = f_txn,
    .lease_grant = f_lease_grant,
    .lease_keepalive = f_lease_keepalive,
    .lease_revoke = f_lease_revoke,
    .watch = f_watch,
    .watch_cancel = f_watch_cancel,
    .compact = f_compact,
    .free = f_free,
};

st_meta_t *st_meta_faulty_new(st_meta_t *inner, struct event_base *base)
{
    faulty_t *f = calloc(1, sizeof(*f));
    if (!f) {
        st_meta_free(inner);
        return NULL;
    }
    f->base.ops = &faulty_ops;
    f->inner = inner;
    f->evbase = base;
    return &f->base;
}

void st_meta_faulty_set(st_meta_t *m, const st_meta_fault_t *plan)
{
    faulty_t *f = (faulty_t *)m;
    f->plan = plan ? *plan : (st_meta_fault_t){0};
    f->txns = 0;
    f->hold.done = false;
}
