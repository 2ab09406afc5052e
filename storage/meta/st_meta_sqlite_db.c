/*
 * st_meta_sqlite_db.c: the worker half of the SQLite metadata backend --
 * every SQLite call, with etcd v3 semantics (see st_meta.h).
 *
 * Schema: kv(key BLOB primary key, value, create_rev, mod_rev, version,
 * lease), lease(id, ttl_ms, expiry_ms) and meta(name, val) holding the
 * global revision ("rev") and the last lease id handed out ("lease_seq").
 * Keys are bound as BLOBs, so SQLite orders them with memcmp(), as etcd
 * does.  There is no history: only the latest state of each key is kept.
 *
 * Each write runs in one BEGIN IMMEDIATE..COMMIT; any failing step rolls the
 * whole transaction back and the op reports ST_ERR_IO (nothing applied).
 * Like etcd, a transaction bumps the revision once, and only if it changed
 * something (a delete of an absent key changes nothing).
 */
#include "st_meta_sqlite_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a write waits for another connection's lock before failing.
 * Only this process writes the file, so a wait means something is wrong. */
#define BUSY_TIMEOUT_MS 1000

/* etcd's largest lease TTL (9e9 s), in ms; keeps deadlines far from overflow. */
#define MAX_TTL_MS (9000000000LL * 1000)

/* ------------------------------------------------------------ arrays */

/* Make room for one more element of @size bytes after @n in @v.
 * @returns the (possibly moved) array, or NULL when out of memory. */
static void *vec_grow(st_arena_t *a, void *v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *nv = st_arena__alloc(a, ncap * size);
    if (!nv)
        return NULL;
    if (n)
        memcpy(nv, v, n * size);
    *cap = ncap;
    return nv;
}

static st_kv_t *kvvec_push(st_arena_t *a, st_kvvec_t *vec)
{
    st_kv_t *v = vec_grow(a, vec->v, &vec->cap, vec->n, sizeof(*v));
    if (!v)
        return NULL;
    vec->v = v;
    st_kv_t *kv = &v[vec->n++];
    memset(kv, 0, sizeof(*kv));
    return kv;
}

static st_watch_event_t *evvec_push(st_arena_t *a, st_evvec_t *vec)
{
    st_watch_event_t *v = vec_grow(a, vec->v, &vec->cap, vec->n, sizeof(*v));
    if (!v)
        return NULL;
    vec->v = v;
    st_watch_event_t *ev = &v[vec->n++];
    memset(ev, 0, sizeof(*ev));
    return ev;
}

int64_t st_sqlite__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- statements */

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_META_GET,
    S_META_SET,
    S_KV_GET,
    S_KV_RANGE,      /* [lo, hi) in key order, LIMIT */
    S_KV_RANGE_OPEN, /* [lo, end) */
    S_KV_PUT,
    S_KV_DEL,
    S_KV_DEL_RANGE,
    S_KV_DEL_RANGE_OPEN,
    S_KV_LEASE_KEYS,
    S_KV_LEASE_DEL,
    S_LEASE_GET,
    S_LEASE_PUT,
    S_LEASE_DEL,
    S_LEASE_MIN,
    S_LEASE_EXPIRED,
    S__NUM
};

static const char *const stmt_sql[S__NUM] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_META_GET] = "SELECT val FROM meta WHERE name = ?1",
    [S_META_SET] = "INSERT INTO meta(name, val) VALUES (?1, ?2)"
                   " ON CONFLICT(name) DO UPDATE SET val = excluded.val",
    [S_KV_GET] = "SELECT key, val, create_rev, mod_rev, version, lease FROM kv WHERE key = ?1",
    [S_KV_RANGE] = "SELECT key, val, create_rev, mod_rev, version, lease FROM kv"
                   " WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
    [S_KV_RANGE_OPEN] = "SELECT key, val, create_rev, mod_rev, version, lease FROM kv"
                        " WHERE key >= ?1 ORDER BY key LIMIT ?3",
    [S_KV_PUT] = "INSERT INTO kv(key, val, create_rev, mod_rev, version, lease)"
                 " VALUES (?1, ?2, ?3, ?3, 1, ?4) ON CONFLICT(key) DO UPDATE SET"
                 " val = excluded.val, mod_rev = excluded.mod_rev,"
                 " version = kv.version + 1, lease = excluded.lease"
                 " RETURNING create_rev, version",
    [S_KV_DEL] = "DELETE FROM kv WHERE key = ?1",
    [S_KV_DEL_RANGE] = "DELETE FROM kv WHERE key >= ?1 AND key < ?2",
    [S_KV_DEL_RANGE_OPEN] = "DELETE FROM kv WHERE key >= ?1",
    [S_KV_LEASE_KEYS] = "SELECT key FROM kv WHERE lease = ?1 AND lease <> 0 ORDER BY key",
    [S_KV_LEASE_DEL] = "DELETE FROM kv WHERE lease = ?1 AND lease <> 0",
    [S_LEASE_GET] = "SELECT ttl_ms, expiry_ms FROM lease WHERE id = ?1",
    [S_LEASE_PUT] = "INSERT OR REPLACE INTO lease(id, ttl_ms, expiry_ms) VALUES (?1, ?2, ?3)",
    [S_LEASE_DEL] = "DELETE FROM lease WHERE id = ?1",
    [S_LEASE_MIN] = "SELECT MIN(expiry_ms) FROM lease",
    [S_LEASE_EXPIRED] = "SELECT id FROM lease WHERE expiry_ms <= ?1 ORDER BY expiry_ms, id",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, val INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kv(key BLOB PRIMARY KEY, val BLOB NOT NULL,"
    " create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL,"
    " lease INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease <> 0;"
    "CREATE TABLE IF NOT EXISTS lease(id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL,"
    " expiry_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS lease_expiry ON lease(expiry_ms);"
    /* etcd starts at revision 1: the first write is revision 2. */
    "INSERT OR IGNORE INTO meta(name, val) VALUES ('rev', 1), ('lease_seq', 0);";

struct st_sqlite_db {
    sqlite3 *db;
    sqlite3_stmt *stmt[S__NUM];
    int64_t rev;       /* committed revision (mirrors meta 'rev') */
    int64_t lease_seq; /* last lease id granted (mirrors meta 'lease_seq') */
};

/* A statement ready to bind: reset, bindings cleared. */
static sqlite3_stmt *stmt(st_sqlite_db_t *db, int i)
{
    sqlite3_stmt *s = db->stmt[i];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Bind bytes as a BLOB (never NULL, even when empty); @p must outlive the step. */
static int bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n)
{
    if (n == 0)
        return sqlite3_bind_zeroblob(s, i, 0);
    return sqlite3_bind_blob64(s, i, p, (sqlite3_uint64)n, SQLITE_STATIC);
}

/* Run a statement that returns no rows.  SQLITE_DONE or the error code. */
static int exec_stmt(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc;
}

static int meta_set(st_sqlite_db_t *db, const char *name, int64_t val)
{
    sqlite3_stmt *s = stmt(db, S_META_SET);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, val);
    return exec_stmt(s) == SQLITE_DONE ? 0 : -1;
}

static int meta_get(st_sqlite_db_t *db, const char *name, int64_t *val)
{
    sqlite3_stmt *s = stmt(db, S_META_GET);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *val = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int begin(st_sqlite_db_t *db)
{
    return exec_stmt(stmt(db, S_BEGIN)) == SQLITE_DONE ? 0 : -1;
}

/* COMMIT; on failure the caller rolls back. */
static int commit(st_sqlite_db_t *db)
{
    return exec_stmt(stmt(db, S_COMMIT)) == SQLITE_DONE ? 0 : -1;
}

/* Undo the open transaction, if SQLite has not already done so. */
static void rollback(st_sqlite_db_t *db)
{
    for (int i = 0; i < S__NUM; i++)
        sqlite3_reset(db->stmt[i]); /* a pending statement would block ROLLBACK */
    if (!sqlite3_get_autocommit(db->db))
        exec_stmt(db->stmt[S_ROLLBACK]);
}

/* Copy the current row of a kv SELECT (key, val, create, mod, version, lease). */
static int row_to_kv(sqlite3_stmt *s, st_arena_t *a, st_kv_t *kv)
{
    const void *k = sqlite3_column_blob(s, 0);
    size_t klen = (size_t)sqlite3_column_bytes(s, 0);
    kv->key = st_arena__dup(a, k, klen);
    const void *v = sqlite3_column_blob(s, 1);
    kv->val_len = (size_t)sqlite3_column_bytes(s, 1);
    kv->val = st_arena__dup(a, v, kv->val_len);
    kv->create_rev = sqlite3_column_int64(s, 2);
    kv->mod_rev = sqlite3_column_int64(s, 3);
    kv->version = sqlite3_column_int64(s, 4);
    kv->lease = sqlite3_column_int64(s, 5);
    return kv->key && kv->val ? 0 : -1;
}

/* Exclusive upper bound of the keys starting with @p, as etcd's
 * GetPrefixRangeEnd: drop trailing 0xff bytes, then increment the last byte.
 * Writes it to @out (room for @n bytes) and returns its length; 0 means no
 * bound exists (empty or all-0xff prefix): every key >= @p matches. */
static size_t prefix_end(const uint8_t *p, size_t n, uint8_t *out)
{
    while (n > 0 && p[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

/* Bind ?1 (and ?2 when bounded) of a [key, prefix end) statement pair.
 * @returns the statement to use (@bounded or @open). */
static sqlite3_stmt *bind_prefix(st_sqlite_db_t *db, int bounded, int open, const char *key,
                                 uint8_t *endbuf)
{
    size_t klen = strlen(key);
    size_t elen = prefix_end((const uint8_t *)key, klen, endbuf);
    sqlite3_stmt *s = stmt(db, elen ? bounded : open);
    bind_blob(s, 1, key, klen);
    if (elen)
        bind_blob(s, 2, endbuf, elen);
    return s;
}

/* Read @key exactly, or the keys starting with it, in key order, at most
 * @limit of them (0 = all); @more when more existed. */
static st_err_t read_keys(st_sqlite_db_t *db, const char *key, bool prefix, size_t limit,
                          st_arena_t *a, st_kvvec_t *out, bool *more)
{
    sqlite3_stmt *s;
    uint8_t *endbuf = NULL;
    if (prefix) {
        endbuf = st_arena__alloc(a, strlen(key) + 1);
        if (!endbuf)
            return ST_ERR_NOMEM;
        s = bind_prefix(db, S_KV_RANGE, S_KV_RANGE_OPEN, key, endbuf);
        /* one extra row tells whether the limit cut the result short */
        sqlite3_bind_int64(s, 3, limit ? (sqlite3_int64)limit + 1 : -1);
    } else {
        s = stmt(db, S_KV_GET);
        bind_blob(s, 1, key, strlen(key));
    }
    st_err_t err = ST_OK;
    int rc = SQLITE_DONE;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (limit && out->n == limit) {
            if (more)
                *more = true;
            break;
        }
        st_kv_t *kv = kvvec_push(a, out);
        if (!kv || row_to_kv(s, a, kv) != 0) {
            err = ST_ERR_NOMEM;
            break;
        }
    }
    if (err == ST_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = ST_ERR_IO;
    sqlite3_reset(s);
    return err;
}

/* ---------------------------------------------------------------- compares */

/* Order of two byte strings, memcmp first, then length (etcd's bytes.Compare). */
static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;
    if (r)
        return r < 0 ? -1 : 1;
    return (alen > blen) - (alen < blen);
}

/* Does compare @c hold on the current state?  An absent key has version,
 * create_rev and mod_rev 0 and fails every VALUE compare (etcd). */
static st_err_t cmp_eval(st_sqlite_db_t *db, const st_cmp_t *c, st_arena_t *a, bool *holds)
{
    st_kvvec_t found = {0};
    st_err_t err = read_keys(db, c->key, false, 0, a, &found, NULL);
    if (err)
        return err;
    const st_kv_t *kv = found.n ? &found.v[0] : NULL;
    int r;
    if (c->target == ST_CMP_VALUE) {
        if (!kv) {
            *holds = false;
            return ST_OK;
        }
        r = bytes_cmp(kv->val, kv->val_len, c->val, c->val_len);
    } else {
        int64_t x = 0;
        if (kv)
            x = c->target == ST_CMP_VERSION  ? kv->version
                : c->target == ST_CMP_CREATE ? kv->create_rev
                                             : kv->mod_rev;
        r = (x > c->num) - (x < c->num);
    }
    switch (c->op) {
    case ST_CMP_EQ:
        *holds = r == 0;
        break;
    case ST_CMP_NE:
        *holds = r != 0;
        break;
    case ST_CMP_LT:
        *holds = r < 0;
        break;
    case ST_CMP_GT:
        *holds = r > 0;
        break;
    default:
        *holds = false;
        break;
    }
    return ST_OK;
}

/* -------------------------------------------------------------------- ops */

/* Context of one write transaction on the worker. */
typedef struct wtx {
    st_sqlite_db_t *db;
    st_arena_t *a;
    st_evvec_t *events; /* changes, appended in order */
    int64_t rev;        /* revision the changes get: committed rev + 1 */
    bool wrote;         /* something changed: the revision is bumped */
    int64_t now_ms;     /* wall clock when the transaction started */
} wtx_t;

static st_err_t add_delete_event(wtx_t *tx, const void *key, size_t klen)
{
    st_watch_event_t *ev = evvec_push(tx->a, tx->events);
    if (!ev || !(ev->kv.key = st_arena__dup(tx->a, key, klen)))
        return ST_ERR_NOMEM;
    ev->type = ST_WATCH_DELETE;
    ev->kv.mod_rev = tx->rev;
    return ST_OK;
}

/* Does lease @id exist with its deadline still ahead? */
static st_err_t lease_live(wtx_t *tx, int64_t id, bool *live, int64_t *ttl_ms)
{
    sqlite3_stmt *s = stmt(tx->db, S_LEASE_GET);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    *live = rc == SQLITE_ROW && sqlite3_column_int64(s, 1) > tx->now_ms;
    if (rc == SQLITE_ROW && ttl_ms)
        *ttl_ms = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? ST_OK : ST_ERR_IO;
}

static st_err_t op_put(wtx_t *tx, const st_op_t *op)
{
    if (op->lease) {
        bool live;
        st_err_t err = lease_live(tx, op->lease, &live, NULL);
        if (err)
            return err;
        if (!live)
            return ST_ERR_NOT_FOUND; /* etcd: lease not found; the txn fails */
    }
    size_t klen = strlen(op->key);
    sqlite3_stmt *s = stmt(tx->db, S_KV_PUT);
    bind_blob(s, 1, op->key, klen);
    bind_blob(s, 2, op->val, op->val_len);
    sqlite3_bind_int64(s, 3, tx->rev);
    sqlite3_bind_int64(s, 4, op->lease);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return ST_ERR_IO;
    }
    st_watch_event_t *ev = evvec_push(tx->a, tx->events);
    if (!ev) {
        sqlite3_reset(s);
        return ST_ERR_NOMEM;
    }
    ev->type = ST_WATCH_PUT;
    ev->kv = (st_kv_t){.key = op->key, /* in the request's arena: lives as long */
                       .val = op->val,
                       .val_len = op->val_len,
                       .create_rev = sqlite3_column_int64(s, 0),
                       .mod_rev = tx->rev,
                       .version = sqlite3_column_int64(s, 1),
                       .lease = op->lease};
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return ST_ERR_IO;
    tx->wrote = true;
    return ST_OK;
}

static st_err_t op_del(wtx_t *tx, const st_op_t *op)
{
    size_t klen = strlen(op->key);
    sqlite3_stmt *s = stmt(tx->db, S_KV_DEL);
    bind_blob(s, 1, op->key, klen);
    if (exec_stmt(s) != SQLITE_DONE)
        return ST_ERR_IO;
    if (sqlite3_changes(tx->db->db) == 0)
        return ST_OK; /* absent: no change, no event */
    tx->wrote = true;
    return add_delete_event(tx, op->key, klen);
}

/* Delete the keys starting with op->key, one event per key in key order. */
static st_err_t op_del_prefix(wtx_t *tx, const st_op_t *op)
{
    st_kvvec_t gone = {0};
    st_err_t err = read_keys(tx->db, op->key, true, 0, tx->a, &gone, NULL);
    if (err || gone.n == 0)
        return err;
    uint8_t *endbuf = st_arena__alloc(tx->a, strlen(op->key) + 1);
    if (!endbuf)
        return ST_ERR_NOMEM;
    sqlite3_stmt *s = bind_prefix(tx->db, S_KV_DEL_RANGE, S_KV_DEL_RANGE_OPEN, op->key, endbuf);
    if (exec_stmt(s) != SQLITE_DONE)
        return ST_ERR_IO;
    tx->wrote = true;
    for (size_t i = 0; i < gone.n; i++)
        if ((err = add_delete_event(tx, gone.v[i].key, strlen(gone.v[i].key))) != ST_OK)
            return err;
    return ST_OK;
}

static st_err_t op_apply(wtx_t *tx, const st_op_t *op, st_op_result_t *result)
{
    st_kvvec_t kvs = {0};
    st_err_t err;
    switch (op->type) {
    case ST_OP_PUT:
        return op_put(tx, op);
    case ST_OP_DEL:
        return op_del(tx, op);
    case ST_OP_DEL_PREFIX:
        return op_del_prefix(tx, op);
    case ST_OP_GET:
    case ST_OP_GET_PREFIX:
        err = read_keys(tx->db, op->key, op->type == ST_OP_GET_PREFIX, 0, tx->a, &kvs, NULL);
        result->kvs = kvs.v;
        result->n = kvs.n;
        return err;
    }
    return ST_ERR_INVALID;
}

/* Open a write transaction whose changes get revision committed + 1. */
static st_err_t wtx_begin(wtx_t *tx, st_sqlite_db_t *db, st_arena_t *a, st_evvec_t *events)
{
    *tx = (wtx_t){
        .db = db, .a = a, .events = events, .rev = db->rev + 1, .now_ms = st_sqlite__now_ms()};
    return begin(db) == 0 ? ST_OK : ST_ERR_IO;
}

/* Commit when @err is ST_OK (persisting the new revision if anything
 * changed), else roll back and drop the events.  @returns the outcome. */
static st_err_t wtx_end(wtx_t *tx, st_err_t err)
{
    if (err == ST_OK && tx->wrote && meta_set(tx->db, "rev", tx->rev) != 0)
        err = ST_ERR_IO;
    if (err == ST_OK && commit(tx->db) != 0)
        err = ST_ERR_IO;
    if (err != ST_OK) {
        rollback(tx->db);
        tx->events->n = 0;
        return err;
    }
    if (tx->wrote)
        tx->db->rev = tx->rev;
    return ST_OK;
}

static void run_txn(st_sqlite_db_t *db, const st_sqlite_req_t *req, st_sqlite_res_t *res,
                    st_arena_t *a)
{
    if (req->invalid) {
        res->err = ST_ERR_INVALID; /* etcd: "duplicate key given in txn request" */
        return;
    }
    const st_txn_t *txn = &req->txn;
    wtx_t tx;
    st_err_t err = wtx_begin(&tx, db, a, &res->events);
    bool ok = true;
    for (size_t i = 0; err == ST_OK && ok && i < txn->ncmps; i++)
        err = cmp_eval(db, &txn->cmps[i], a, &ok);
    const st_op_t *ops = ok ? txn->success : txn->failure;
    size_t nops = ok ? txn->nsuccess : txn->nfailure;
    st_op_result_t *results = NULL;
    if (err == ST_OK && nops) {
        results = st_arena__alloc(a, nops * sizeof(*results));
        if (!results)
            err = ST_ERR_NOMEM;
        else
            memset(results, 0, nops * sizeof(*results));
    }
    for (size_t i = 0; err == ST_OK && i < nops; i++)
        err = op_apply(&tx, &ops[i], &results[i]);
    res->err = wtx_end(&tx, err);
    if (res->err == ST_OK) {
        res->succeeded = ok;
        res->results = results;
        res->nresults = nops;
    }
}

/* ----------------------------------------------------------------- leases */

static int64_t next_deadline(st_sqlite_db_t *db, bool *ok)
{
    sqlite3_stmt *s = stmt(db, S_LEASE_MIN);
    int rc = sqlite3_step(s);
    int64_t d = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0; /* NULL -> 0: none */
    sqlite3_reset(s);
    *ok = rc == SQLITE_ROW;
    return d;
}

/* Delete lease @id and its keys (DELETE events at tx->rev, key order). */
static st_err_t lease_drop(wtx_t *tx, int64_t id)
{
    st_sqlite_db_t *db = tx->db;
    sqlite3_stmt *s = stmt(db, S_KV_LEASE_KEYS);
    sqlite3_bind_int64(s, 1, id);
    st_err_t err = ST_OK;
    int rc = SQLITE_DONE;
    size_t nkeys = 0;
    while (err == ST_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        err = add_delete_event(tx, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
        nkeys++;
    }
    if (err == ST_OK && rc != SQLITE_DONE)
        err = ST_ERR_IO;
    sqlite3_reset(s);
    if (err)
        return err;
    if (nkeys) {
        s = stmt(db, S_KV_LEASE_DEL);
        sqlite3_bind_int64(s, 1, id);
        if (exec_stmt(s) != SQLITE_DONE)
            return ST_ERR_IO;
        tx->wrote = true;
    }
    s = stmt(db, S_LEASE_DEL);
    sqlite3_bind_int64(s, 1, id);
    return exec_stmt(s) == SQLITE_DONE ? ST_OK : ST_ERR_IO;
}

static void run_grant(st_sqlite_db_t *db, const st_sqlite_req_t *req, st_sqlite_res_t *res,
                      st_arena_t *a)
{
    if (req->ttl_ms <= 0 || req->ttl_ms > MAX_TTL_MS) {
        res->err = ST_ERR_INVALID;
        return;
    }
    wtx_t tx;
    st_err_t err = wtx_begin(&tx, db, a, &res->events);
    if (err) {
        res->err = err;
        return;
    }
    int64_t id = db->lease_seq + 1;
    sqlite3_stmt *s = stmt(db, S_LEASE_PUT);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, req->ttl_ms);
    sqlite3_bind_int64(s, 3, tx.now_ms + req->ttl_ms);
    if (exec_stmt(s) != SQLITE_DONE || meta_set(db, "lease_seq", id) != 0)
        err = ST_ERR_IO;
    res->err = wtx_end(&tx, err);
    if (res->err == ST_OK) {
        db->lease_seq = id;
        res->lease = id;
        res->ttl_ms = req->ttl_ms;
    }
}

static void run_keepalive(st_sqlite_db_t *db, const st_sqlite_req_t *req, st_sqlite_res_t *res,
                          st_arena_t *a)
{
    wtx_t tx;
    st_err_t err = wtx_begin(&tx, db, a, &res->events);
    if (err) {
        res->err = err;
        return;
    }
    bool live = false;
    int64_t ttl = 0;
    err = lease_live(&tx, req->lease, &live, &ttl);
    if (err == ST_OK && !live)
        err = ST_ERR_NOT_FOUND; /* never granted, revoked, or past its deadline */
    if (err == ST_OK) {
        sqlite3_stmt *s = stmt(db, S_LEASE_PUT);
        sqlite3_bind_int64(s, 1, req->lease);
        sqlite3_bind_int64(s, 2, ttl);
        sqlite3_bind_int64(s, 3, tx.now_ms + ttl);
        if (exec_stmt(s) != SQLITE_DONE)
            err = ST_ERR_IO;
    }
    res->err = wtx_end(&tx, err);
    if (res->err == ST_OK) {
        res->lease = req->lease;
        res->ttl_ms = ttl;
    }
}

/* Revoke one lease; a lease past its deadline that the timer has not yet
 * expired is still revoked (its keys go the same way). */
static void run_revoke(st_sqlite_db_t *db, const st_sqlite_req_t *req, st_sqlite_res_t *res,
                       st_arena_t *a)
{
    wtx_t tx;
    st_err_t err = wtx_begin(&tx, db, a, &res->events);
    if (err) {
        res->err = err;
        return;
    }
    sqlite3_stmt *s = stmt(db, S_LEASE_GET);
    sqlite3_bind_int64(s, 1, req->lease);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        err = ST_ERR_NOT_FOUND;
    else if (rc != SQLITE_ROW)
        err = ST_ERR_IO;
    if (err == ST_OK)
        err = lease_drop(&tx, req->lease);
    res->err = wtx_end(&tx, err);
}

/* Expire every lease past its deadline, like a revoke each: one revision
 * per lease that had keys, all in one SQLite transaction. */
static void run_expire(st_sqlite_db_t *db, st_sqlite_res_t *res, st_arena_t *a)
{
    wtx_t tx;
    st_err_t err = wtx_begin(&tx, db, a, &res->events);
    if (err) {
        res->err = err;
        return;
    }
    st_kvvec_t ids = {0}; /* lease ids in .lease; collected before deleting */
    sqlite3_stmt *s = stmt(db, S_LEASE_EXPIRED);
    sqlite3_bind_int64(s, 1, tx.now_ms);
    int rc = SQLITE_DONE;
    while (err == ST_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        st_kv_t *kv = kvvec_push(a, &ids);
        if (kv)
            kv->lease = sqlite3_column_int64(s, 0);
        else
            err = ST_ERR_NOMEM;
    }
    if (err == ST_OK && rc != SQLITE_DONE)
        err = ST_ERR_IO;
    sqlite3_reset(s);
    int64_t next = tx.rev; /* revision for the next lease that has keys */
    bool any = false;
    for (size_t i = 0; err == ST_OK && i < ids.n; i++) {
        tx.rev = next;
        tx.wrote = false;
        err = lease_drop(&tx, ids.v[i].lease);
        if (tx.wrote) {
            any = true;
            next++;
        }
    }
    tx.wrote = any;
    tx.rev = next - (any ? 1 : 0); /* the last revision used */
    res->err = wtx_end(&tx, err);
}

/* ------------------------------------------------------------------ entry */

void st_sqlite_db__run(st_sqlite_db_t *db, const st_sqlite_req_t *req, st_sqlite_res_t *res,
                       st_arena_t *a)
{
    switch (req->kind) {
    case ST_SQ_RANGE:
        res->err = read_keys(db, req->key, req->prefix, req->limit, a, &res->kvs, &res->more);
        if (res->err != ST_OK) {
            res->kvs.n = 0;
            res->more = false;
        }
        break;
    case ST_SQ_TXN:
        run_txn(db, req, res, a);
        break;
    case ST_SQ_GRANT:
        run_grant(db, req, res, a);
        break;
    case ST_SQ_KEEPALIVE:
        run_keepalive(db, req, res, a);
        break;
    case ST_SQ_REVOKE:
        run_revoke(db, req, res, a);
        break;
    case ST_SQ_EXPIRE:
        run_expire(db, res, a);
        break;
    case ST_SQ_NOOP:
        res->err = ST_OK;
        break;
    case ST_SQ_CLOSE:
        st_sqlite_db__close(db);
        return;
    }
    res->rev = db->rev;
    bool lease_op = req->kind == ST_SQ_GRANT || req->kind == ST_SQ_KEEPALIVE ||
                    req->kind == ST_SQ_REVOKE || req->kind == ST_SQ_EXPIRE;
    if (lease_op)
        res->next_deadline_ms = next_deadline(db, &res->has_deadline);
}

/* ------------------------------------------------------------ open/close */

static int open_fail(st_sqlite_db_t *db, const char *what, char *errstr, size_t errstr_size)
{
    snprintf(errstr, errstr_size, "sqlite: %s: %s", what,
             db->db ? sqlite3_errmsg(db->db) : "out of memory");
    return -1;
}

/* Pragmas, schema and statements; -1 with @errstr set on failure. */
static int open_setup(st_sqlite_db_t *db, char *errstr, size_t errstr_size)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK)
        return open_fail(db, "journal_mode", errstr, errstr_size);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_finalize(s);
        return open_fail(db, "journal_mode", errstr, errstr_size);
    }
    const char *mode = (const char *)sqlite3_column_text(s, 0);
    bool wal = mode && strcmp(mode, "wal") == 0;
    sqlite3_finalize(s);
    if (!wal) {
        snprintf(errstr, errstr_size, "sqlite: cannot use WAL journal mode");
        return -1;
    }
    sqlite3_busy_timeout(db->db, BUSY_TIMEOUT_MS);
    if (sqlite3_exec(db->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK)
        return open_fail(db, "synchronous", errstr, errstr_size);
    if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return open_fail(db, "begin", errstr, errstr_size);
    if (sqlite3_exec(db->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        open_fail(db, "schema", errstr, errstr_size);
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    for (int i = 0; i < S__NUM; i++)
        if (sqlite3_prepare_v3(db->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->stmt[i],
                               NULL) != SQLITE_OK)
            return open_fail(db, stmt_sql[i], errstr, errstr_size);
    if (meta_get(db, "rev", &db->rev) != 0 || meta_get(db, "lease_seq", &db->lease_seq) != 0)
        return open_fail(db, "reading the revision", errstr, errstr_size);
    return 0;
}

st_sqlite_db_t *st_sqlite_db__open(const char *path, int64_t *rev, int64_t *next_deadline_ms,
                                   char *errstr, size_t errstr_size)
{
    st_sqlite_db_t *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(errstr, errstr_size, "sqlite: out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db->db, flags, NULL) != SQLITE_OK) {
        open_fail(db, path, errstr, errstr_size);
        st_sqlite_db__close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db->db, 1);
    bool ok;
    if (open_setup(db, errstr, errstr_size) != 0) {
        st_sqlite_db__close(db);
        return NULL;
    }
    *next_deadline_ms = next_deadline(db, &ok);
    if (!ok) {
        open_fail(db, "reading leases", errstr, errstr_size);
        st_sqlite_db__close(db);
        return NULL;
    }
    *rev = db->rev;
    return db;
}

void st_sqlite_db__close(st_sqlite_db_t *db)
{
    if (!db)
        return;
    for (int i = 0; i < S__NUM; i++)
        sqlite3_finalize(db->stmt[i]);
    sqlite3_close(db->db); /* NULL-safe; checkpoints the WAL */
    free(db);
}
