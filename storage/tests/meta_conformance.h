/*
 * meta_conformance.h: one behaviour suite for every st_meta backend.  A
 * backend's test binary describes how to open a store (mc_backend_t), adds
 * the suite's tests (mc_add_tests) to its own table next to its
 * backend-specific tests, which may use the same fixture and helpers.
 *
 * Revisions are checked relative to the store's revision when a test
 * starts (etcd's is global; SQLite's fresh store is at 1).
 * Threading: the tests run the loop themselves, on the thread in
 * F->loop_thread.
 */
#ifndef META_CONFORMANCE_H
#define META_CONFORMANCE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>

#include "st_meta.h"

struct event_base;

typedef struct mc_backend {
    const char *name; /* the store's ops->name */
    /* Open the store under test: an empty one (as far as the tests can
     * see) when @fresh, else the one opened last (after a close).  NULL
     * with a reason in @err. */
    st_meta_t *(*open)(struct event_base *base, bool fresh, char *err, size_t err_size);
    /* After a test closed its store (may be NULL). */
    void (*cleanup)(void);
    int64_t short_ttl_ms; /* the shortest lease TTL it keeps exactly (etcd: 2 s) */
} mc_backend_t;

/* ------------------------------------------------------------- fixture */

#define MC_MAXLEASES 64

typedef struct fx {
    const mc_backend_t *b;
    struct event_base *base;
    st_meta_t *m;
    pthread_t loop_thread;
    int in_call; /* set while a st_meta_* call runs: callbacks must not see it */
    int seq;     /* completion counter */
    int log[1024];
    int nlog;                     /* callbacks in completion order, by tag */
    int64_t leases[MC_MAXLEASES]; /* granted by lease_grant(): revoked at teardown */
    int nleases;
} fx_t;

extern fx_t *F;

/* Setup/teardown for a test whose initial state is its mc_backend_t. */
int mc_setup(void **state);
int mc_teardown(void **state);
#define MC_TEST(f, backend)                                                                        \
    cmocka_unit_test_prestate_setup_teardown(f, mc_setup, mc_teardown, (void *)(backend))

/* Append the suite's tests for @b to @tests (room for @max); @returns the
 * number appended. */
size_t mc_add_tests(const mc_backend_t *b, struct CMUnitTest *tests, size_t max);

void mc_open_store(bool fresh);
void mc_close_store(void);

/* -------------------------------------------------------------- helpers */

int64_t mc_now_ms(void);
/* Run the loop until *@flag is set (fails the test after 15 s). */
void loop_until(const int *flag);
void pump_ms(int ms);

#define CALL(expr) (F->in_call = 1, _rc = (expr), F->in_call = 0, _rc)

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

void range_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg);
void txn_cb(st_err_t err, bool succeeded, int64_t rev, const st_op_result_t *results,
            size_t nresults, void *arg);
void lease_cb(st_err_t err, int64_t id, int64_t ttl_ms, void *arg);
void done_cb(st_err_t err, void *arg);
/* Checks every callback: on the loop thread, never inside a call, once. */
void finish(res_t *r, st_err_t err);

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

void watch_cb(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg);
void wait_events(const wl_t *wl, size_t nev);
/* Wait for @wl's callback count to reach @calls. */
void wait_calls(const wl_t *wl, int calls);

void range_sync(const char *key, bool prefix, size_t limit, res_t *r);
void txn_sync(const st_txn_t *txn, res_t *r);
st_op_t op_put(const char *key, const char *val, int64_t lease);
st_op_t op_of(st_op_type_t type, const char *key);
/* Put @key = @val; @returns the revision after it. */
int64_t put(const char *key, const char *val, int64_t lease);
int64_t del(st_op_type_t type, const char *key);
/* @returns the number of kvs at @key (0 or 1), copying it to @out. */
size_t get(const char *key, kvc_t *out);
int64_t current_rev(void);
/* Grant (checked to succeed with exactly @ttl_ms); revoked at teardown. */
int64_t lease_grant(int64_t ttl_ms);
st_err_t lease_keepalive(int64_t id, int64_t *ttl);
st_err_t lease_revoke(int64_t id);
st_err_t compact(int64_t rev);
st_meta_watch_t *watch(const char *prefix, int64_t start_rev, wl_t *wl);

#endif
