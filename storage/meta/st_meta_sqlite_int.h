/*
 * st_meta_sqlite_int.h: internals shared by the two halves of the SQLite
 * metadata backend -- st_meta_sqlite.c (loop side: the vtable, copying
 * requests, watchers, the lease timer) and st_meta_sqlite_db.c (worker side:
 * every SQLite call).
 *
 * Ownership: a request and everything the worker builds for its result live
 * in one arena owned by the job; freeing the arena frees them all.
 * Threading: st_sqlite_db__* run only on the store's single worker thread
 * (a one-thread st_pool, i.e. a serial queue).  The arena of a job is used by
 * one thread at a time: the loop fills the request, the worker the result,
 * then the loop reads it; the pool's queue lock orders the hand-offs.
 */
#ifndef ST_META_SQLITE_INT_H
#define ST_META_SQLITE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "st_arena.h"
#include "st_meta.h"

/* A growable array of kvs or events in an arena (growth copies; the old
 * array stays in the arena until it is freed). */
typedef struct st_kvvec {
    st_kv_t *v;
    size_t n, cap; /* elements used, allocated */
} st_kvvec_t;
typedef struct st_evvec {
    st_watch_event_t *v;
    size_t n, cap;
} st_evvec_t;

typedef enum st_sqlite_kind {
    ST_SQ_RANGE,
    ST_SQ_TXN,
    ST_SQ_GRANT,
    ST_SQ_KEEPALIVE,
    ST_SQ_REVOKE,
    ST_SQ_EXPIRE, /* revoke every lease past its deadline */
    ST_SQ_NOOP,   /* compact, or ordering a watch error after earlier ops */
    ST_SQ_CLOSE,
} st_sqlite_kind_t;

/* One request, deep-copied into the job's arena at the call. */
typedef struct st_sqlite_req {
    st_sqlite_kind_t kind;
    const char *key; /* RANGE: key or prefix (NUL-terminated) */
    bool prefix;     /* RANGE */
    size_t limit;    /* RANGE: 0 = no limit */
    st_txn_t txn;    /* TXN: every pointer into the arena */
    bool invalid;    /* TXN: a branch puts a key twice or puts and deletes it */
    int64_t lease;   /* KEEPALIVE, REVOKE: lease id */
    int64_t ttl_ms;  /* GRANT */
} st_sqlite_req_t;

/* What the worker hands back; every pointer is into the job's arena. */
typedef struct st_sqlite_res {
    st_err_t err;
    bool succeeded;          /* TXN: the compares held */
    int64_t rev;             /* store revision after the op (also on error) */
    st_kvvec_t kvs;          /* RANGE */
    bool more;               /* RANGE: the limit cut the result short */
    st_op_result_t *results; /* TXN: one per op of the branch that ran */
    size_t nresults;
    st_evvec_t events;        /* committed changes, in revision order */
    int64_t lease;            /* GRANT: new id; KEEPALIVE: the id */
    int64_t ttl_ms;           /* GRANT, KEEPALIVE */
    bool has_deadline;        /* lease ops: next_deadline_ms is current */
    int64_t next_deadline_ms; /* earliest lease deadline, wall-clock ms; 0 = none */
} st_sqlite_res_t;

typedef struct st_sqlite_db st_sqlite_db_t;

/* Open (creating if needed) the database at @path: WAL, synchronous=FULL,
 * schema, prepared statements.  @rev and @next_deadline_ms return the
 * stored revision and earliest lease deadline (0 = no lease).
 * @returns owned (st_sqlite_db__close), or NULL with a reason in @errstr.
 * @thread worker */
st_sqlite_db_t *st_sqlite_db__open(const char *path, int64_t *rev, int64_t *next_deadline_ms,
                                   char *errstr, size_t errstr_size);

/* Run @req, filling @res (zeroed by the caller); results go into @arena.
 * A failure leaves the database as it was (nothing applied).
 * @thread worker */
void st_sqlite_db__run(st_sqlite_db_t *db, const st_sqlite_req_t *req, st_sqlite_res_t *res,
                       st_arena_t *arena);

/* Finalize statements and close.  @thread worker */
void st_sqlite_db__close(st_sqlite_db_t *db);

/* Wall-clock milliseconds since the epoch (lease deadlines survive restarts). */
int64_t st_sqlite__now_ms(void);

#endif
