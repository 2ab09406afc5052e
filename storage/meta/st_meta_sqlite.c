/*
 * st_meta_sqlite.c: the embedded metadata store -- st_meta.h on a local
 * SQLite file.  This half runs on the loop thread: it copies each request
 * into a job, queues it on a one-thread st_pool (a serial queue, so jobs run
 * and complete in issue order), and on completion delivers watch events and
 * then the op's callback.  Every SQLite call is in st_meta_sqlite_db.c and
 * runs on that one worker thread.
 *
 * Behaviour beyond st_meta.h:
 * - Watch events of a write are delivered to the watchers *before* the
 *   callback of the op that made them (txn, lease revoke), in the same loop
 *   turn.  Expiry events come from the lease timer, with no op callback.
 * - There is no history.  A watch from start_rev 0 or from the current
 *   revision + 1 (as seen on the loop: the revision of the last completed op)
 *   or later is served; an older start_rev gets one ST_ERR_NOT_FOUND callback
 *   later on the loop (after the ops issued before it), then nothing more.
 * - Leases: a lease past its deadline is gone for keepalive and for PUTs
 *   (ST_ERR_NOT_FOUND) even before the timer expires it (revoke still
 *   succeeds and deletes its keys); the timer fires at the earliest deadline
 *   (re-checked at least every second, as deadlines are wall-clock times so
 *   that they survive restarts).  Each expired lease that had keys gets a
 *   revision of its own, as if revoked.
 * - Errors: any failing SQLite step rolls the op back and reports ST_ERR_IO;
 *   a write waits at most 1 s for a lock held by another connection.
 * - A txn with more than ST_META_MAX_TXN_OPS compares, success ops or
 *   failure ops (each counted alone, as etcd's --max-txn-ops) is refused
 *   with -1.  A txn whose branch puts one key twice, or puts a key that
 *   the branch also deletes, fails with ST_ERR_INVALID (etcd refuses it as
 *   "duplicate key given in txn request").
 * - grant with ttl_ms <= 0 or above etcd's maximum (9e9 s) fails with
 *   ST_ERR_INVALID.
 * - free() frees the watchers that were not cancelled.  It must not be
 *   called from inside one of the store's callbacks.
 */
#include "st_meta_sqlite_int.h"

#include <assert.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_pool.h"

/* Longest sleep of the lease timer: deadlines are wall-clock, libevent's
 * timers monotonic, so re-check now and then in case the clock moved. */
#define LEASE_RECHECK_MS 1000

typedef struct st_meta_sqlite {
    st_meta_t meta;                /* must be first: the vtable */
    struct event_base *base;       /* borrowed */
    st_pool_t *pool;               /* one worker: every SQLite call, in issue order */
    st_sqlite_db_t *db;            /* touched only on the worker */
    struct event *lease_ev;        /* lease expiry timer */
    int64_t next_deadline_ms;      /* earliest lease deadline, wall-clock ms; 0 = none */
    bool expire_queued;            /* an ST_SQ_EXPIRE job has not completed yet */
    int64_t rev;                   /* revision after the last completed op */
    struct st_meta_watch *watches; /* every watch not yet freed */
    unsigned cb_depth;             /* > 0 while one of our callbacks runs */
    bool closing;                  /* free() has started: new ops are refused */
} st_meta_sqlite_t;

struct st_meta_watch {
    struct st_meta_watch *next, *prev; /* in st_meta_sqlite_t.watches */
    char *prefix;                      /* owned */
    size_t prefix_len;
    int64_t start_rev; /* events with mod_rev >= start_rev are delivered */
    st_watch_cb cb;
    void *arg;
    bool broken;     /* start_rev not servable: gets the error, no events */
    bool err_queued; /* a job will deliver the error; it frees a cancelled watch */
    bool cancelled;  /* never call cb again; freed when no callback runs */
};

typedef struct job {
    st_meta_sqlite_t *sq;
    st_arena_t arena; /* owns the request copy and the results */
    st_sqlite_req_t req;
    st_sqlite_res_t res;
    union {
        st_range_cb range;
        st_txn_cb txn;
        st_lease_cb lease;
        st_meta_done_cb done;
    } cb; /* by req.kind; NULL for internal jobs */
    void *arg;
    struct st_meta_watch *watch; /* ST_SQ_NOOP: deliver this watch's error */
} job_t;

static const st_meta_ops_t sqlite_ops;

/* --------------------------------------------------------------- watchers */

static void watch_unlink_free(st_meta_sqlite_t *sq, struct st_meta_watch *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        sq->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w->prefix);
    free(w);
}

/* Callbacks into the user are bracketed so that a watch cancelled inside
 * one is freed only once no callback is running (the delivery loop may
 * still hold it). */
static void cb_enter(st_meta_sqlite_t *sq)
{
    sq->cb_depth++;
}

static void cb_leave(st_meta_sqlite_t *sq)
{
    if (--sq->cb_depth > 0)
        return;
    struct st_meta_watch *w = sq->watches;
    while (w) {
        struct st_meta_watch *next = w->next;
        if (w->cancelled && !w->err_queued)
            watch_unlink_free(sq, w);
        w = next;
    }
}

static bool watch_wants(const struct st_meta_watch *w, const st_watch_event_t *ev)
{
    return ev->kv.mod_rev >= w->start_rev && strncmp(ev->kv.key, w->prefix, w->prefix_len) == 0;
}

/* Hand the events of completed writes to every live watcher whose prefix
 * matches, in revision order (the order the worker produced them). */
static void deliver_events(st_meta_sqlite_t *sq, const st_evvec_t *evs)
{
    st_watch_event_t *buf = malloc(evs->n * sizeof(*buf));
    if (!buf)
        return; /* cannot happen in practice; a watcher would miss events */
    cb_enter(sq);
    for (struct st_meta_watch *w = sq->watches; w; w = w->next) {
        if (w->cancelled || w->broken)
            continue;
        size_t n = 0;
        for (size_t i = 0; i < evs->n; i++)
            if (watch_wants(w, &evs->v[i]))
                buf[n++] = evs->v[i];
        if (n)
            w->cb(ST_OK, buf, n, w->arg);
    }
    cb_leave(sq);
    free(buf);
}

/* ------------------------------------------------------------ lease timer */

static int submit(st_meta_sqlite_t *sq, job_t *job);

/* Fire at the earliest deadline, but not before @min_ms from now. */
static void lease_timer_arm(st_meta_sqlite_t *sq, int64_t min_ms)
{
    if (sq->closing || sq->expire_queued || sq->next_deadline_ms == 0) {
        evtimer_del(sq->lease_ev);
        return;
    }
    int64_t ms = sq->next_deadline_ms - st_sqlite__now_ms();
    if (ms < min_ms)
        ms = min_ms;
    if (ms > LEASE_RECHECK_MS)
        ms = LEASE_RECHECK_MS;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(sq->lease_ev, &tv);
}

static void lease_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_meta_sqlite_t *sq = arg;
    if (sq->closing || sq->expire_queued || sq->next_deadline_ms == 0)
        return;
    if (st_sqlite__now_ms() < sq->next_deadline_ms) {
        lease_timer_arm(sq, 0);
        return;
    }
    job_t *job = calloc(1, sizeof(*job));
    if (job)
        job->req.kind = ST_SQ_EXPIRE;
    if (job && submit(sq, job) == 0)
        sq->expire_queued = true;
    else
        lease_timer_arm(sq, LEASE_RECHECK_MS); /* out of memory: try again later */
}

/* ------------------------------------------------------------------- jobs */

static void job_free(job_t *job)
{
    st_arena__free(&job->arena);
    free(job);
}

static void job_work(void *arg)
{
    job_t *job = arg;
    st_sqlite_db__run(job->sq->db, &job->req, &job->res, &job->arena);
}

/* The op's own callback (after the watch events). */
static void job_callback(job_t *job)
{
    const st_sqlite_res_t *res = &job->res;
    switch (job->req.kind) {
    case ST_SQ_RANGE:
        job->cb.range(res->err, res->kvs.v, res->kvs.n, res->more, res->rev, job->arg);
        break;
    case ST_SQ_TXN:
        job->cb.txn(res->err, res->succeeded, res->rev, res->results, res->nresults, job->arg);
        break;
    case ST_SQ_GRANT:
    case ST_SQ_KEEPALIVE:
        job->cb.lease(res->err, res->lease, res->ttl_ms, job->arg);
        break;
    case ST_SQ_REVOKE:
        job->cb.done(res->err, job->arg);
        break;
    case ST_SQ_NOOP:
        if (job->watch) {
            struct st_meta_watch *w = job->watch;
            w->err_queued = false;
            if (!w->cancelled)
                w->cb(ST_ERR_NOT_FOUND, NULL, 0, w->arg); /* history not kept */
        } else if (job->cb.done) {
            job->cb.done(res->err, job->arg);
        }
        break;
    case ST_SQ_EXPIRE:
    case ST_SQ_CLOSE:
        break;
    }
}

/* Loop thread, in issue order: events first, then the op's callback. */
static void job_after(void *arg)
{
    job_t *job = arg;
    st_meta_sqlite_t *sq = job->sq;
    if (job->req.kind == ST_SQ_CLOSE) {
        job_free(job);
        return;
    }
    sq->rev = job->res.rev;
    if (job->req.kind == ST_SQ_EXPIRE)
        sq->expire_queued = false;
    if (job->res.has_deadline)
        sq->next_deadline_ms = job->res.next_deadline_ms;
    if (job->req.kind == ST_SQ_EXPIRE && job->res.err != ST_OK)
        lease_timer_arm(sq, LEASE_RECHECK_MS); /* failed: retry in a while, not at once */
    else if (job->res.has_deadline)
        lease_timer_arm(sq, 0);
    if (job->res.events.n)
        deliver_events(sq, &job->res.events);
    cb_enter(sq);
    job_callback(job);
    cb_leave(sq);
    job_free(job);
}

/* Queue @job (taken: freed here on failure).  0, or -1 when closing. */
static int submit(st_meta_sqlite_t *sq, job_t *job)
{
    job->sq = sq;
    if (sq->closing || st_pool_submit(sq->pool, job_work, job_after, job) != 0) {
        job_free(job);
        return -1;
    }
    return 0;
}

static job_t *job_new(st_meta_sqlite_t *sq, st_sqlite_kind_t kind, void *arg)
{
    if (sq->closing)
        return NULL;
    job_t *job = calloc(1, sizeof(*job));
    if (job) {
        job->req.kind = kind;
        job->arg = arg;
    }
    return job;
}

/* ------------------------------------------------------------ txn copying */

static int copy_ops(st_arena_t *a, const st_op_t *in, size_t n, const st_op_t **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    st_op_t *ops = st_arena__alloc(a, n * sizeof(*ops));
    if (!ops)
        return -1;
    for (size_t i = 0; i < n; i++) {
        assert(in[i].key);
        ops[i] = in[i];
        ops[i].key = st_arena__dup(a, in[i].key, strlen(in[i].key));
        ops[i].val = st_arena__dup(a, in[i].val, in[i].type == ST_OP_PUT ? in[i].val_len : 0);
        if (in[i].type != ST_OP_PUT)
            ops[i].val_len = 0;
        if (!ops[i].key || !ops[i].val)
            return -1;
    }
    *out = ops;
    return 0;
}

static int copy_txn(st_arena_t *a, const st_txn_t *in, st_txn_t *out)
{
    *out = *in;
    out->cmps = NULL;
    if (in->ncmps) {
        st_cmp_t *cmps = st_arena__alloc(a, in->ncmps * sizeof(*cmps));
        if (!cmps)
            return -1;
        for (size_t i = 0; i < in->ncmps; i++) {
            assert(in->cmps[i].key);
            cmps[i] = in->cmps[i];
            cmps[i].key = st_arena__dup(a, in->cmps[i].key, strlen(in->cmps[i].key));
            cmps[i].val = st_arena__dup(a, in->cmps[i].val, in->cmps[i].val_len);
            if (!cmps[i].key || !cmps[i].val)
                return -1;
        }
        out->cmps = cmps;
    }
    if (copy_ops(a, in->success, in->nsuccess, &out->success) != 0 ||
        copy_ops(a, in->failure, in->nfailure, &out->failure) != 0)
        return -1;
    return 0;
}

/* Does op @d (DEL or DEL_PREFIX) delete @key? */
static bool deletes(const st_op_t *d, const char *key)
{
    if (d->type == ST_OP_DEL)
        return strcmp(d->key, key) == 0;
    return d->type == ST_OP_DEL_PREFIX && strncmp(key, d->key, strlen(d->key)) == 0;
}

/* etcd refuses a branch that puts a key twice or puts a key it deletes. */
static bool branch_has_dup(const st_op_t *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != ST_OP_PUT)
            continue;
        for (size_t j = 0; j < n; j++) {
            if (j == i)
                continue;
            if (ops[j].type == ST_OP_PUT ? j > i && strcmp(ops[j].key, ops[i].key) == 0
                                         : deletes(&ops[j], ops[i].key))
                return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------- ops */

static int sq_range(st_meta_t *m, const char *key, bool prefix, size_t limit, st_range_cb cb,
                    void *arg)
{
    st_meta_sqlite_t *sq = (st_meta_sqlite_t *)m;
    assert(key && cb);
    job_t *job = job_new(sq, ST_SQ_RANGE, arg);
    if (!job)
        return -1;
    job->cb.range = cb;
    job->req.key = st_arena__dup(&job->arena, key, strlen(key));
    job->req.prefix = prefix;
    job->req.limit = limit;
    if (!job->req.key) {
        job_free(job);
        return -1;
    }
    return submit(sq, job);
}

static int sq_txn(st_meta_t *m, const st_txn_t *txn, st_txn_cb cb, void *arg)
{
    st_meta_sqlite_t *sq = (st_meta_sqlite_t *)m;
    assert(txn && cb);
    if (txn->ncmps > ST_META_MAX_TXN_OPS || txn->nsuccess > ST_META_MAX_TXN_OPS ||
        txn->nfailure > ST_META_MAX_TXN_OPS)
        return -1;
    job_t *job = job_new(sq, ST_SQ_TXN, arg);
    if (!job)
        return -1;
    job->cb.txn = cb;
    if (copy_txn(&job->arena, txn, &job->req.txn) != 0) {
        job_free(job);
        return -1;
    }
    job->req.invalid =
        branch_has_dup(txn->success, txn->nsuccess) || branch_has_dup(txn->failure, txn->nfailure);
    return submit(sq, job);
}

static int lease_op(st_meta_sqlite_t *sq, st_sqlite_kind_t kind, int64_t id, int64_t ttl_ms,
                    st_lease_cb lcb, st_meta_done_cb dcb, void *arg)
{
    job_t *job = job_new(sq, kind, arg);
    if (!job)
        return -1;
    job->req.lease = id;
    job->req.ttl_ms = ttl_ms;
    if (lcb)
        job->cb.lease = lcb;
    else
        job->cb.done = dcb;
    return submit(sq, job);
}

static int sq_lease_grant(st_meta_t *m, int64_t ttl_ms, st_lease_cb cb, void *arg)
{
    assert(cb);
    return lease_op((st_meta_sqlite_t *)m, ST_SQ_GRANT, 0, ttl_ms, cb, NULL, arg);
}

static int sq_lease_keepalive(st_meta_t *m, int64_t id, st_lease_cb cb, void *arg)
{
    assert(cb);
    return lease_op((st_meta_sqlite_t *)m, ST_SQ_KEEPALIVE, id, 0, cb, NULL, arg);
}

static int sq_lease_revoke(st_meta_t *m, int64_t id, st_meta_done_cb cb, void *arg)
{
    assert(cb);
    return lease_op((st_meta_sqlite_t *)m, ST_SQ_REVOKE, id, 0, NULL, cb, arg);
}

static int sq_compact(st_meta_t *m, int64_t rev, st_meta_done_cb cb, void *arg)
{
    (void)rev; /* no history is kept: nothing to drop */
    st_meta_sqlite_t *sq = (st_meta_sqlite_t *)m;
    assert(cb);
    job_t *job = job_new(sq, ST_SQ_NOOP, arg);
    if (!job)
        return -1;
    job->cb.done = cb;
    return submit(sq, job);
}

static st_meta_watch_t *sq_watch(st_meta_t *m, const char *prefix, int64_t start_rev,
                                 st_watch_cb cb, void *arg)
{
    st_meta_sqlite_t *sq = (st_meta_sqlite_t *)m;
    assert(prefix && cb);
    if (sq->closing)
        return NULL;
    struct st_meta_watch *w = calloc(1, sizeof(*w));
    if (!w || !(w->prefix = strdup(prefix))) {
        free(w);
        return NULL;
    }
    w->prefix_len = strlen(prefix);
    w->cb = cb;
    w->arg = arg;
    /* sq->rev is the revision whose events were delivered last: every later
     * event still reaches this watch, so rev + 1 onwards can be served. */
    w->start_rev = start_rev > 0 ? start_rev : sq->rev + 1;
    if (w->start_rev <= sq->rev) {
        job_t *job = job_new(sq, ST_SQ_NOOP, NULL);
        if (!job) {
            free(w->prefix);
            free(w);
            return NULL;
        }
        job->watch = w;
        if (submit(sq, job) != 0) {
            free(w->prefix);
            free(w);
            return NULL;
        }
        w->broken = true;
        w->err_queued = true;
    }
    w->next = sq->watches;
    if (w->next)
        w->next->prev = w;
    sq->watches = w;
    return w;
}

static void sq_watch_cancel(st_meta_t *m, st_meta_watch_t *w)
{
    st_meta_sqlite_t *sq = (st_meta_sqlite_t *)m;
    if (!w)
        return;
    w->cancelled = true;
    if (sq->cb_depth == 0 && !w->err_queued)
        watch_unlink_free(sq, w);
}

static void sq_free(st_meta_t *m)
{
    st_meta_sqlite_t *sq = (st_meta_sqlite_t *)m;
    assert(sq->cb_depth == 0); /* not from inside one of our callbacks */
    sq->closing = true;
    evtimer_del(sq->lease_ev);
    job_t *job = calloc(1, sizeof(*job));
    bool queued = false;
    if (job) {
        job->sq = sq;
        job->req.kind = ST_SQ_CLOSE;
        queued = st_pool_submit(sq->pool, job_work, job_after, job) == 0;
        if (!queued)
            free(job);
    }
    st_pool_free(sq->pool); /* runs the queued ops and their callbacks */
    if (!queued)
        st_sqlite_db__close(sq->db); /* the worker has exited: safe here */
    event_free(sq->lease_ev);
    while (sq->watches) {
        sq->watches->err_queued = false;
        watch_unlink_free(sq, sq->watches);
    }
    free(sq);
}

static const st_meta_ops_t sqlite_ops = {
    .name = "sqlite",
    .range = sq_range,
    .txn = sq_txn,
    .lease_grant = sq_lease_grant,
    .lease_keepalive = sq_lease_keepalive,
    .lease_revoke = sq_lease_revoke,
    .watch = sq_watch,
    .watch_cancel = sq_watch_cancel,
    .compact = sq_compact,
    .free = sq_free,
};

/* ------------------------------------------------------------------- open */

/* The open runs on the worker too (every SQLite call does); the caller
 * waits for it so that failures come back synchronously in @errstr. */
typedef struct open_req {
    const char *path;
    st_sqlite_db_t *db;
    int64_t rev, next_deadline_ms;
    char *errstr;
    size_t errstr_size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done; /* under mu */
} open_req_t;

static void open_work(void *arg)
{
    open_req_t *o = arg;
    o->db = st_sqlite_db__open(o->path, &o->rev, &o->next_deadline_ms, o->errstr, o->errstr_size);
    pthread_mutex_lock(&o->mu);
    o->done = true;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu); /* last touch of @o: the caller frees it next */
}

static int open_on_worker(st_meta_sqlite_t *sq, const char *path, char *errstr, size_t errstr_size)
{
    open_req_t o = {.path = path, .errstr = errstr, .errstr_size = errstr_size};
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    int rc = st_pool_submit(sq->pool, open_work, NULL, &o);
    if (rc == 0) {
        pthread_mutex_lock(&o.mu);
        while (!o.done)
            pthread_cond_wait(&o.cv, &o.mu);
        pthread_mutex_unlock(&o.mu);
    } else {
        snprintf(errstr, errstr_size, "sqlite: cannot queue the open");
    }
    pthread_cond_destroy(&o.cv);
    pthread_mutex_destroy(&o.mu);
    if (rc != 0 || !o.db)
        return -1;
    sq->db = o.db;
    sq->rev = o.rev;
    sq->next_deadline_ms = o.next_deadline_ms;
    return 0;
}

st_meta_t *st_meta_sqlite_new(struct event_base *base, const char *path, char *errstr,
                              size_t errstr_size)
{
    st_meta_sqlite_t *sq = calloc(1, sizeof(*sq));
    if (!sq) {
        snprintf(errstr, errstr_size, "sqlite: out of memory");
        return NULL;
    }
    sq->meta.ops = &sqlite_ops;
    sq->base = base;
    sq->pool = st_pool_new(base, 1, "nh-sqlite");
    sq->lease_ev = evtimer_new(base, lease_timer_cb, sq);
    if (!sq->pool || !sq->lease_ev) {
        snprintf(errstr, errstr_size, "sqlite: cannot start the worker");
        goto fail;
    }
    if (open_on_worker(sq, path, errstr, errstr_size) != 0)
        goto fail;
    lease_timer_arm(sq, 0); /* leases persisted by an earlier run keep their deadline */
    return &sq->meta;
fail:
    st_pool_free(sq->pool);
    if (sq->lease_ev)
        event_free(sq->lease_ev);
    free(sq);
    return NULL;
}
