/*
 * test_meta_sqlite.c: the SQLite metadata store -- the shared st_meta
 * conformance suite (meta_conformance.c), plus what is SQLite's own: watch
 * events delivered before the op's callback, no history, lease deadlines to
 * the millisecond, persistence across reopen, and failing SQLite steps.
 */
#include "meta_conformance.h"

#include <event2/thread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --------------------------------------------------------------- backend */

static char sq_dir[64];  /* the store's directory ("" = none yet) */
static char sq_path[96]; /* the store's file */

static st_meta_t *sq_open(struct event_base *base, bool fresh, char *err, size_t err_size)
{
    if (fresh) {
        snprintf(sq_dir, sizeof sq_dir, "/tmp/nh-meta-XXXXXX");
        if (!mkdtemp(sq_dir)) {
            snprintf(err, err_size, "mkdtemp failed");
            return NULL;
        }
        snprintf(sq_path, sizeof sq_path, "%s/meta.db", sq_dir);
    }
    return st_meta_sqlite_new(base, sq_path, err, err_size);
}

static void sq_cleanup(void)
{
    char p[128];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", sq_path, sfx[i]);
        unlink(p);
    }
    rmdir(sq_dir);
}

static const mc_backend_t sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .cleanup = sq_cleanup,
    .short_ttl_ms = 300,
};

/* ------------------------------------------------------- SQLite's own */

/* On the loop, each op's watch events come before that op's callback. */
static void test_events_before_callback(void **state)
{
    (void)state;
    int _rc;
    wl_t wall = {.tag = 100};
    watch("", 0, &wall);
    enum { N = 6 };
    res_t r[N];
    char k[N][16];
    st_op_t ops[N];
    st_txn_t txn[N];
    F->nlog = 0;
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].tag = i + 1;
        snprintf(k[i], sizeof k[i], "a/%d", i);
        ops[i] = op_put(k[i], "v", 0);
        txn[i] = (st_txn_t){.success = &ops[i], .nsuccess = 1};
        assert_int_equal(CALL(st_meta_txn(F->m, &txn[i], txn_cb, &r[i])), 0);
    }
    loop_until(&r[N - 1].done);
    assert_int_equal(wall.calls, N); /* one call per revision */
    assert_int_equal(F->nlog, 2 * N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(F->log[2 * i], 100);
        assert_int_equal(F->log[2 * i + 1], i + 1);
    }

    /* A revoke's events too. */
    int64_t id = lease_grant(60000);
    put("l/1", "a", id);
    F->nlog = 0;
    res_t rv = {.tag = 1};
    assert_int_equal(CALL(st_meta_lease_revoke(F->m, id, done_cb, &rv)), 0);
    loop_until(&rv.done);
    assert_int_equal(rv.err, ST_OK);
    assert_int_equal(F->nlog, 2);
    assert_int_equal(F->log[0], 100);
    assert_int_equal(F->log[1], 1);
    st_meta_watch_cancel(F->m, wall.w);
}

/* No history: not even the current revision can be watched from. */
static void test_no_history(void **state)
{
    (void)state;
    int64_t rev = put("w/a", "1", 0);
    wl_t cur = {.tag = 100};
    watch("w/", rev, &cur);
    put("w/b", "2", 0);
    assert_int_equal(cur.calls, 1);
    assert_int_equal(cur.err, ST_ERR_NOT_FOUND);
    assert_int_equal(cur.nev, 0);
    st_meta_watch_cancel(F->m, cur.w);
}

/* Deadlines to the millisecond: a lease past its deadline is gone for PUTs
 * even before the timer expires it. */
static void test_lease_deadline_ms(void **state)
{
    (void)state;
    int64_t r0 = current_rev();
    int64_t shortl = lease_grant(1);
    usleep(5000);
    st_op_t op = op_put("e/late", "x", shortl);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    assert_int_equal(r.rev, r0); /* the store's revision comes with errors too */
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
    mc_close_store();
    usleep(400 * 1000); /* the short lease's deadline passes while closed */
    mc_open_store(false);

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

    mc_close_store(); /* and once more, now with a committed expiry */
    mc_open_store(false);
    assert_int_equal(current_rev(), rev + 2);
    assert_int_equal(get("p/c", NULL), 0);
    assert_int_equal(lease_revoke(id), ST_OK);
    assert_int_equal(get("p/b", NULL), 0);
}

static sqlite3 *raw_open(void)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(sq_path, &db), SQLITE_OK);
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

static void test_open_errors(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(st_meta_sqlite_new(F->base, "/nonexistent-dir/x/meta.db", err, sizeof err));
    assert_true(err[0] != 0);
    char junk[128];
    snprintf(junk, sizeof junk, "%s/junk.db", sq_dir);
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
    struct CMUnitTest tests[64];
    size_t n = mc_add_tests(&sqlite_backend, tests, 64);
    const struct CMUnitTest own[] = {
        MC_TEST(test_events_before_callback, &sqlite_backend),
        MC_TEST(test_no_history, &sqlite_backend),
        MC_TEST(test_lease_deadline_ms, &sqlite_backend),
        MC_TEST(test_persistence, &sqlite_backend),
        MC_TEST(test_failing_step, &sqlite_backend),
        MC_TEST(test_locked_db, &sqlite_backend),
        MC_TEST(test_open_errors, &sqlite_backend),
    };
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        tests[n++] = own[i];
    return _cmocka_run_group_tests("test_meta_sqlite", tests, n, NULL, NULL);
}
