/*
 * st_meta.h: an etcd-shaped key-value store for Nuthatch's metadata -- get,
 * range by prefix, transactions with compares, leases, watch.  Backends:
 * SQLite (st_meta_sqlite.c, the embedded default) and etcd (st_meta_etcd.c,
 * etcd v3's JSON gateway).  All of Nuthatch's metadata logic is written once
 * against this interface.
 *
 * Semantics follow etcd v3: every transaction that writes bumps one global
 * revision; each key has create_rev, mod_rev and version (number of puts
 * since creation; 0 = absent in compares); a key put with a lease is deleted
 * when the lease expires or is revoked.
 *
 * Ownership: every pointer passed in is borrowed for the duration of the
 * call (the store copies what it keeps).  Results handed to callbacks are
 * borrowed and valid only during the callback.
 * Threading: every function is called on the event-loop thread; every
 * callback runs later on the loop thread, never from inside the call that
 * started the operation.  Operations complete in the order they were issued.
 */
#ifndef ST_META_H
#define ST_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "st_err.h"

typedef struct st_meta st_meta_t;

typedef struct st_kv {
    const char *key;    /* NUL-terminated */
    const uint8_t *val; /* value bytes (not NUL-terminated) */
    size_t val_len;
    int64_t create_rev; /* revision that created the key */
    int64_t mod_rev;    /* revision of the last put */
    int64_t version;    /* puts since creation, >= 1 */
    int64_t lease;      /* lease id, 0 = none */
} st_kv_t;

typedef enum st_cmp_target {
    ST_CMP_VALUE,   /* compare the value bytes */
    ST_CMP_VERSION, /* compare version (0 when absent) */
    ST_CMP_CREATE,  /* compare create_rev (0 when absent) */
    ST_CMP_MOD,     /* compare mod_rev (0 when absent) */
} st_cmp_target_t;

typedef enum st_cmp_op { ST_CMP_EQ, ST_CMP_NE, ST_CMP_LT, ST_CMP_GT } st_cmp_op_t;

typedef struct st_cmp {
    const char *key;
    st_cmp_target_t target;
    st_cmp_op_t op;
    int64_t num;        /* for VERSION/CREATE/MOD */
    const uint8_t *val; /* for VALUE (an absent key never compares true for VALUE) */
    size_t val_len;
} st_cmp_t;

typedef enum st_op_type {
    ST_OP_PUT,        /* put key = val (with lease) */
    ST_OP_DEL,        /* delete key */
    ST_OP_DEL_PREFIX, /* delete every key starting with key */
    ST_OP_GET,        /* read key (its result is in the callback's results) */
    ST_OP_GET_PREFIX, /* read every key starting with key */
} st_op_type_t;

typedef struct st_op {
    st_op_type_t type;
    const char *key;
    const uint8_t *val; /* PUT */
    size_t val_len;     /* PUT */
    int64_t lease;      /* PUT: 0 = none */
} st_op_t;

/* etcd's default --max-txn-ops is 128; Nuthatch keeps its own at 64. */
#define ST_META_MAX_TXN_OPS 128

typedef struct st_txn {
    const st_cmp_t *cmps; /* all must hold for the success branch */
    size_t ncmps;
    const st_op_t *success; /* applied atomically when every compare holds */
    size_t nsuccess;
    const st_op_t *failure; /* applied atomically otherwise */
    size_t nfailure;
} st_txn_t;

/* Result of one GET/GET_PREFIX op of the branch that ran (other ops: n = 0). */
typedef struct st_op_result {
    const st_kv_t *kvs;
    size_t n;
} st_op_result_t;

/* @succeeded: the compares held and the success branch ran.  @rev: the
 * store's revision after the transaction.  @results: one per op of the
 * branch that ran.  On err != ST_OK nothing was applied (or, for
 * ST_ERR_TIMEOUT on a remote store, the outcome is unknown). */
typedef void (*st_txn_cb)(st_err_t err, bool succeeded, int64_t rev, const st_op_result_t *results,
                          size_t nresults, void *arg);
/* @kvs sorted by key; @more: @limit cut the result short. */
typedef void (*st_range_cb)(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                            void *arg);
typedef void (*st_lease_cb)(st_err_t err, int64_t lease_id, int64_t ttl_ms, void *arg);
typedef void (*st_meta_done_cb)(st_err_t err, void *arg);

typedef enum st_watch_type { ST_WATCH_PUT, ST_WATCH_DELETE } st_watch_type_t;
typedef struct st_watch_event {
    st_watch_type_t type;
    st_kv_t kv; /* DELETE: key and mod_rev (the deleting revision) only */
} st_watch_event_t;
/* Events of one revision or more, in revision order.  err != ST_OK: the
 * watch is broken (e.g. compacted past start_rev) and will send nothing
 * more; cancel it. */
typedef void (*st_watch_cb)(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg);

typedef struct st_meta_watch st_meta_watch_t;

typedef struct st_meta_ops {
    const char *name; /* "sqlite", "etcd" */
    /* Keys in [@key, @key + prefix) if @prefix, else exactly @key; at most
     * @limit (0 = no limit). */
    int (*range)(st_meta_t *m, const char *key, bool prefix, size_t limit, st_range_cb cb,
                 void *arg);
    int (*txn)(st_meta_t *m, const st_txn_t *txn, st_txn_cb cb, void *arg);
    int (*lease_grant)(st_meta_t *m, int64_t ttl_ms, st_lease_cb cb, void *arg);
    int (*lease_keepalive)(st_meta_t *m, int64_t lease_id, st_lease_cb cb, void *arg);
    int (*lease_revoke)(st_meta_t *m, int64_t lease_id, st_meta_done_cb cb, void *arg);
    /* Events for keys starting with @prefix from revision @start_rev (0:
     * from now on).  A @start_rev whose history is no longer kept gets one
     * callback with ST_ERR_NOT_FOUND and nothing more (SQLite keeps no
     * history: it serves only 0 and current revision + 1 onwards).
     * @returns owned handle (cancel with watch_cancel). */
    st_meta_watch_t *(*watch)(st_meta_t *m, const char *prefix, int64_t start_rev, st_watch_cb cb,
                              void *arg);
    /* After cancel returns, @cb is never called again. */
    void (*watch_cancel)(st_meta_t *m, st_meta_watch_t *w);
    /* Drop history before @rev (a no-op where no history is kept). */
    int (*compact)(st_meta_t *m, int64_t rev, st_meta_done_cb cb, void *arg);
    /* Finish in-flight operations (their callbacks run), then free. */
    void (*free)(st_meta_t *m);
} st_meta_ops_t;

struct st_meta {
    const st_meta_ops_t *ops;
};

/* Calls through the vtable.  Each returns 0 when the operation was started
 * (its callback will run exactly once), or -1 when it could not be (too many
 * ops, store closed, out of memory; no callback will run). */
static inline int st_meta_range(st_meta_t *m, const char *key, bool prefix, size_t limit,
                                st_range_cb cb, void *arg)
{
    return m->ops->range(m, key, prefix, limit, cb, arg);
}
static inline int st_meta_txn(st_meta_t *m, const st_txn_t *txn, st_txn_cb cb, void *arg)
{
    return m->ops->txn(m, txn, cb, arg);
}
static inline int st_meta_lease_grant(st_meta_t *m, int64_t ttl_ms, st_lease_cb cb, void *arg)
{
    return m->ops->lease_grant(m, ttl_ms, cb, arg);
}
static inline int st_meta_lease_keepalive(st_meta_t *m, int64_t id, st_lease_cb cb, void *arg)
{
    return m->ops->lease_keepalive(m, id, cb, arg);
}
static inline int st_meta_lease_revoke(st_meta_t *m, int64_t id, st_meta_done_cb cb, void *arg)
{
    return m->ops->lease_revoke(m, id, cb, arg);
}
static inline st_meta_watch_t *st_meta_watch(st_meta_t *m, const char *prefix, int64_t start_rev,
                                             st_watch_cb cb, void *arg)
{
    return m->ops->watch(m, prefix, start_rev, cb, arg);
}
static inline void st_meta_watch_cancel(st_meta_t *m, st_meta_watch_t *w)
{
    m->ops->watch_cancel(m, w);
}
static inline int st_meta_compact(st_meta_t *m, int64_t rev, st_meta_done_cb cb, void *arg)
{
    return m->ops->compact(m, rev, cb, arg);
}
static inline void st_meta_free(st_meta_t *m)
{
    if (m)
        m->ops->free(m);
}

struct event_base;

/* The SQLite backend on the file @path (created if absent; WAL mode,
 * synchronous=FULL so a committed transaction survives power loss).  All
 * SQLite calls run on one worker thread, in issue order.  The watch events
 * of a write are delivered before the callback of the op that made it.
 * @returns owned, or NULL with a reason in @errstr. */
st_meta_t *st_meta_sqlite_new(struct event_base *base, const char *path, char *errstr,
                              size_t errstr_size);

typedef struct st_curl st_curl_t;

/* Where and how the etcd backend talks to etcd.  Every pointer is borrowed
 * for the duration of st_meta_etcd_new() (it copies them). */
typedef struct st_etcd_cfg {
    const char *const *endpoints; /* "http://host:port" each; tried in order, >= 1 */
    size_t nendpoints;
    const char *prefix;        /* prepended to every key as is; NULL or "" = none */
    const char *user;          /* NULL = no authentication */
    const char *password;      /* with @user (the gateway reads NUTHATCH_ETCD_PASSWORD) */
    long timeout_ms;           /* per HTTP request; 0 = 5000 */
    long connect_timeout_ms;   /* per connection attempt; 0 = 1000 */
    size_t max_response_bytes; /* largest response body or watch message; 0 = 64 MiB */
} st_etcd_cfg_t;

/* The etcd backend over etcd v3's JSON gateway (etcd >= 3.4, /v3/...),
 * through @curl on @base (both borrowed; they must outlive the store).
 * Keys: the etcd key of st_meta key K is cfg->prefix followed by K (plain
 * concatenation; "etcd://h:p/nuthatch-test-1" gives the prefix
 * "/nuthatch-test-1").  Nothing is sent before the first op.
 *
 * Behaviour beyond the interface:
 * - Issue order: a write (txn, lease op, compact) goes out only when every
 *   op issued before it has completed, and nothing issued after it goes out
 *   before it completes; consecutive ranges run in parallel.  Completions
 *   are delivered in issue order.  Watch events and op callbacks are not
 *   ordered with each other (events come over another connection).
 * - Endpoints: one is in use; a connection error, a timeout or an
 *   "unavailable" answer (no leader, leader changed) moves to the next one
 *   in the list, which is then kept while it works.  An op that surely was
 *   not sent (connection refused) is retried on the next endpoint, as is
 *   any read, keep-alive, grant or compaction; each endpoint is tried at
 *   most once per op.
 * - Errors: a txn or revoke sent whose answer is lost (timeout, connection
 *   dropped, "unavailable", an answer that is not etcd's) is ST_ERR_TIMEOUT:
 *   the outcome is unknown, the caller resolves it by reading back.  Every
 *   endpoint refusing connections (nothing sent) is ST_ERR_IO; other ops
 *   whose tries all timed out are ST_ERR_TIMEOUT.  etcd's own refusals:
 *   lease not found -> ST_ERR_NOT_FOUND; bad request, duplicate key in a
 *   txn, permission denied, authentication failed -> ST_ERR_INVALID; no
 *   space -> ST_ERR_FULL; a response larger than max_response_bytes ->
 *   ST_ERR_FULL (ST_ERR_TIMEOUT for a txn).  succeeded is true only when
 *   etcd's answer says "succeeded": true.
 * - Authentication: with @user, a token from /v3/auth/authenticate is sent
 *   as the Authorization header; when etcd calls it invalid (expired), the
 *   store authenticates again and resends.  A failed authentication fails
 *   the ops waiting for it (ST_ERR_INVALID for a wrong password).
 * - Leases: TTLs are whole seconds in etcd (ttl_ms is rounded up, and etcd
 *   raises TTLs below its minimum, about 2 s); the callback reports etcd's
 *   TTL.  A keep-alive of an unknown or expired lease is ST_ERR_NOT_FOUND.
 * - Watches: a stream each; a stream that ends or fails is reopened from the
 *   revision after the last event delivered; a watch from a compacted
 *   revision gets ST_ERR_NOT_FOUND, a watch message that is not etcd's gets
 *   ST_ERR_CORRUPT, one larger than max_response_bytes ST_ERR_FULL (then
 *   nothing more).  start_rev 0 means the revision after those of the ops
 *   issued before the watch call.
 * - compact(rev) of a revision already compacted succeeds; of a future
 *   revision is ST_ERR_INVALID.
 * - free() runs the loop until the ops in flight complete (it must be
 *   called outside the loop, not from one of its callbacks).
 * @returns owned, or NULL with a reason in @errstr.  @thread loop */
st_meta_t *st_meta_etcd_new(struct event_base *base, st_curl_t *curl, const st_etcd_cfg_t *cfg,
                            char *errstr, size_t errstr_size);
/* The endpoint in use (borrowed, valid until the next op completes). */
const char *st_meta_etcd_endpoint(const st_meta_t *m);
/* The last failure seen, for logs ("" when none; borrowed, as above). */
const char *st_meta_etcd_last_error(const st_meta_t *m);

/* What the fault-injecting wrapper does to transactions. */
typedef struct st_meta_fault {
    uint64_t txn_nth;   /* the Nth transaction after the plan is set (1-based); 0 = none */
    uint64_t txn_count; /* with txn_nth: this many transactions from the Nth on (0 = 1) */
    bool txn_all;       /* every transaction while set */
    bool txn_apply;     /* apply it on the inner store, then report @err (a lost
                         * reply); otherwise it never reaches the inner store */
    st_err_t err;       /* what is reported (ST_ERR_TIMEOUT: outcome unknown);
                         * ST_OK is taken as ST_ERR_IO */
    /* The first range after the plan is set whose key starts with this
     * (borrowed) is held until st_meta_faulty_release: a read delayed while
     * other writers go on (later operations may complete before it). */
    const char *hold_range;
} st_meta_fault_t;

/* A wrapper around @inner (taken, freed with the wrapper) that fails chosen
 * transactions, for tests; everything else passes through.  A transaction
 * failed without reaching the inner store completes from a deferred event,
 * possibly before earlier operations still in flight.  @thread loop */
st_meta_t *st_meta_faulty_new(st_meta_t *inner, struct event_base *base);
/* Replace the plan (NULL: pass everything through); counting restarts. */
void st_meta_faulty_set(st_meta_t *m, const st_meta_fault_t *plan);
/* Is a range held (plan.hold_range)? */
bool st_meta_faulty_holding(const st_meta_t *m);
/* Send the held range on to the inner store (0 when none is held). */
int st_meta_faulty_release(st_meta_t *m);

#endif
