/*
 * st_meta.h: an etcd-shaped key-value store for Nuthatch's metadata -- get,
 * range by prefix, transactions with compares, leases, watch.  Backends:
 * SQLite (st_meta_sqlite.c, the embedded default) and, later, etcd.  All of
 * Nuthatch's metadata logic is written once against this interface.
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

/* What the fault-injecting wrapper does to transactions. */
typedef struct st_meta_fault {
    uint64_t txn_nth; /* the Nth transaction after the plan is set (1-based); 0 = none */
    bool txn_all;     /* every transaction while set */
    bool txn_apply;   /* apply it on the inner store, then report @err (a lost
                       * reply); otherwise it never reaches the inner store */
    st_err_t err;     /* what is reported (ST_ERR_TIMEOUT: outcome unknown);
                       * ST_OK is taken as ST_ERR_IO */
} st_meta_fault_t;

/* A wrapper around @inner (taken, freed with the wrapper) that fails chosen
 * transactions, for tests; everything else passes through.  A transaction
 * failed without reaching the inner store completes from a deferred event,
 * possibly before earlier operations still in flight.  @thread loop */
st_meta_t *st_meta_faulty_new(st_meta_t *inner, struct event_base *base);
/* Replace the plan (NULL: pass everything through); counting restarts. */
void st_meta_faulty_set(st_meta_t *m, const st_meta_fault_t *plan);

#endif
