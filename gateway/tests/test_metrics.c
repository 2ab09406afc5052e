/*
 * test_metrics.c: gw_metrics -- request histograms and their text, the
 * metered wrappers around a real directory object store and a real SQLite
 * metadata store, and the HTTP endpoints with the readiness probe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_metrics.h"
#include "kp_msgs.h"

#define WAIT_LIMIT_S 30

typedef struct fix {
    struct event_base *base;
    gw_metrics_t *m;
    char root[64];
} fix_t;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof *f);
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN); /* a refused upload is an EPIPE, not a death */
    f->base = event_base_new();
    f->m = gw_metrics_new(f->base);
    snprintf(f->root, sizeof f->root, "/tmp/nh-test-metrics.XXXXXX");
    assert_non_null(mkdtemp(f->root));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    gw_metrics_free(f->m);
    event_base_free(f->base);
    nftw(f->root, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* The value of the sample named exactly @name (with its labels) in @text. */
static double sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    fail_msg("no sample %s", name);
    return -1;
}

/* Run the loop until *@flag is set (at most WAIT_LIMIT_S). */
static void wait_for(fix_t *f, const int *flag)
{
    for (int i = 0; i < WAIT_LIMIT_S * 100 && !*flag; i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
    assert_true(*flag);
}

static void test_requests_text(void **state)
{
    fix_t *f = *state;
    gw_metrics_request(f->m, KP_API_PRODUCE, 0.003);
    gw_metrics_request(f->m, KP_API_PRODUCE, 2.0);
    gw_metrics_request(f->m, KP_API_FETCH, 0.5);
    gw_metrics_request(f->m, 999, 0.1);
    gw_metrics_request(f->m, -1, 0.1);
    gw_metrics_bytes(f->m, 100, 0);
    gw_metrics_bytes(f->m, 20, 50);
    char *t = gw_metrics_render(f->m);
    assert_non_null(t);
    assert_int_equal(sample(t, "nuthatch_requests_total{api=\"Produce\"}"), 2);
    assert_int_equal(sample(t, "nuthatch_requests_total{api=\"Fetch\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_requests_total{api=\"unknown\"}"), 2);
    assert_null(strstr(t, "{api=\"Metadata\"}")); /* never seen: not listed */
    /* Cumulative buckets. */
    assert_int_equal(
        sample(t, "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"0.001\"}"), 0);
    assert_int_equal(
        sample(t, "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0025\"}"), 0);
    assert_int_equal(
        sample(t, "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"}"), 1);
    assert_int_equal(
        sample(t, "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"1\"}"), 1);
    assert_int_equal(
        sample(t, "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"2.5\"}"), 2);
    assert_int_equal(
        sample(t, "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"}"), 2);
    assert_int_equal(sample(t, "nuthatch_request_duration_seconds_count{api=\"Produce\"}"), 2);
    assert_true(sample(t, "nuthatch_request_duration_seconds_sum{api=\"Produce\"}") > 2.002 &&
                sample(t, "nuthatch_request_duration_seconds_sum{api=\"Produce\"}") < 2.004);
    assert_int_equal(sample(t, "nuthatch_received_bytes_total"), 120);
    assert_int_equal(sample(t, "nuthatch_sent_bytes_total"), 50);
    /* Not serving, no stores: not ready. */
    assert_int_equal(sample(t, "nuthatch_ready"), 0);
    /* Every sample's family has its TYPE line before it. */
    for (const char *p = t; *p; p = strchr(p, '\n') + 1) {
        assert_non_null(strchr(p, '\n'));
        if (*p == '#')
            continue;
        char name[128], want[160];
        size_t n = strcspn(p, "{ ");
        assert_true(n < sizeof name);
        memcpy(name, p, n);
        name[n] = '\0';
        static const char *const sufs[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3; i++) {
            size_t l = strlen(sufs[i]);
            snprintf(want, sizeof want, "# TYPE %.*s histogram\n", (int)(n - l), name);
            if (n > l && strcmp(name + n - l, sufs[i]) == 0 && strstr(t, want)) {
                name[n - l] = '\0';
                break;
            }
        }
        snprintf(want, sizeof want, "# HELP %s ", name);
        const char *help = strstr(t, want);
        snprintf(want, sizeof want, "# TYPE %s ", name);
        const char *type = strstr(t, want);
        if (!help || !type || type > p || help > type)
            fail_msg("no HELP and TYPE before the samples of %s", name);
    }
    free(t);
}

/* ---- the wrapped stores */

typedef struct res {
    int done;
    st_err_t err;
    size_t len;
} res_t;

static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->done = 1;
}

static void data_cb(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    (void)data;
    res_t *r = arg;
    r->err = err;
    r->len = len;
    r->done = 1;
}

static void list_cb(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    (void)objs, (void)more;
    res_t *r = arg;
    r->err = err;
    r->len = n;
    r->done = 1;
}

static void txn_cb(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                   void *arg)
{
    (void)rev, (void)res, (void)n;
    res_t *r = arg;
    r->err = err;
    r->len = ok;
    r->done = 1;
}

static void range_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)kvs, (void)more, (void)rev;
    res_t *r = arg;
    r->err = err;
    r->len = n;
    r->done = 1;
}

static void test_wrapped_stores(void **state)
{
    fix_t *f = *state;
    char err[256], path[128];
    snprintf(path, sizeof path, "%s/objects", f->root);
    st_objstore_t *inner = st_objstore_dir_new(f->base, path, 1, err, sizeof err);
    assert_non_null(inner);
    st_objstore_t *os = gw_metrics_wrap_objstore(f->m, inner);
    snprintf(path, sizeof path, "%s/meta.db", f->root);
    st_meta_t *minner = st_meta_sqlite_new(f->base, path, err, sizeof err);
    assert_non_null(minner);
    st_meta_t *meta = gw_metrics_wrap_meta(f->m, minner);

    static uint8_t data[3000];
    memset(data, 7, sizeof data);
    res_t r = {0};
    assert_int_equal(st_objstore_put(os, "objects/a", data, sizeof data, done_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.err, ST_OK);
    r = (res_t){0};
    assert_int_equal(st_objstore_get_range(os, "objects/a", 1000, ST_OBJ_TO_END, data_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.len, 2000);
    r = (res_t){0};
    assert_int_equal(st_objstore_get_range(os, "objects/missing", 0, 10, data_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    r = (res_t){0};
    assert_int_equal(st_objstore_put(os, "objects/a", data, 10, done_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.err, ST_ERR_EXISTS); /* no overwrite: an error */
    r = (res_t){0};
    assert_int_equal(st_objstore_list(os, "objects/", NULL, 10, list_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.len, 1);
    r = (res_t){0};
    assert_int_equal(st_objstore_del(os, "objects/a", done_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.err, ST_OK);

    st_op_t put = {.type = ST_OP_PUT, .key = "/nuthatch/x", .val = data, .val_len = 5};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    r = (res_t){0};
    assert_int_equal(st_meta_txn(meta, &txn, txn_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.err, ST_OK);
    r = (res_t){0};
    assert_int_equal(st_meta_range(meta, "/nuthatch/x", false, 0, range_cb, &r), 0);
    wait_for(f, &r.done);
    assert_int_equal(r.len, 1);
    gw_metrics_on_flush(f->m, 3000, 0.02);

    char *t = gw_metrics_render(f->m);
    assert_int_equal(sample(t, "nuthatch_object_requests_total{op=\"put\"}"), 2);
    assert_int_equal(sample(t, "nuthatch_object_request_errors_total{op=\"put\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_object_requests_total{op=\"get\"}"), 2);
    assert_int_equal(sample(t, "nuthatch_object_request_errors_total{op=\"get\"}"), 0);
    assert_int_equal(sample(t, "nuthatch_object_requests_total{op=\"list\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_object_requests_total{op=\"delete\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_object_request_duration_seconds_count{op=\"put\"}"), 2);
    assert_int_equal(sample(t, "nuthatch_object_written_bytes_total"), 3000);
    assert_int_equal(sample(t, "nuthatch_object_read_bytes_total"), 2000);
    assert_int_equal(sample(t, "nuthatch_metadata_commit_duration_seconds_count"), 1);
    assert_int_equal(sample(t, "nuthatch_metadata_commit_errors_total"), 0);
    assert_int_equal(sample(t, "nuthatch_metadata_read_duration_seconds_count"), 1);
    assert_int_equal(sample(t, "nuthatch_flush_size_bytes_bucket{le=\"4096\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_flush_size_bytes_bucket{le=\"1024\"}"), 0);
    assert_int_equal(sample(t, "nuthatch_flush_duration_seconds_bucket{le=\"0.025\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_flush_duration_seconds_bucket{le=\"0.01\"}"), 0);
    free(t);
    st_meta_free(meta);
    st_objstore_free(os);
}

/* ---- HTTP and readiness */

typedef struct http_res {
    int done;
    int code;
    char body[512];
} http_res_t;

static void http_done(struct evhttp_request *req, void *arg)
{
    http_res_t *r = arg;
    r->done = 1;
    if (!req)
        return;
    r->code = evhttp_request_get_response_code(req);
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(b);
    if (n >= sizeof r->body)
        n = sizeof r->body - 1;
    evbuffer_remove(b, r->body, n);
    r->body[n] = '\0';
}

static http_res_t get(fix_t *f, const char *path, enum evhttp_cmd_type cmd)
{
    http_res_t r = {0};
    struct evhttp_connection *c =
        evhttp_connection_base_new(f->base, NULL, "127.0.0.1", (uint16_t)gw_metrics_port(f->m));
    struct evhttp_request *req = evhttp_request_new(http_done, &r);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    assert_int_equal(evhttp_make_request(c, req, cmd, path), 0);
    wait_for(f, &r.done);
    evhttp_connection_free(c);
    return r;
}

static void test_http_and_readiness(void **state)
{
    fix_t *f = *state;
    char err[256], path[128];
    snprintf(path, sizeof path, "%s/objects", f->root);
    st_objstore_t *os =
        gw_metrics_wrap_objstore(f->m, st_objstore_dir_new(f->base, path, 1, err, sizeof err));
    snprintf(path, sizeof path, "%s/meta.db", f->root);
    st_meta_t *meta =
        gw_metrics_wrap_meta(f->m, st_meta_sqlite_new(f->base, path, err, sizeof err));
    assert_non_null(os);
    assert_non_null(meta);
    gw_metrics_set_stores(f->m, os, meta);
    assert_int_equal(gw_metrics_start(f->m, "nohost", err, sizeof err), -1);
    assert_non_null(strstr(err, "expected HOST:PORT"));
    assert_int_equal(gw_metrics_start(f->m, "127.0.0.1:99999", err, sizeof err), -1);
    assert_int_equal(gw_metrics_start(f->m, "127.0.0.1:0", err, sizeof err), 0);
    assert_true(gw_metrics_port(f->m) > 0);

    http_res_t r = get(f, "/healthz", EVHTTP_REQ_GET);
    assert_int_equal(r.code, 200);
    /* The log is not open yet. */
    r = get(f, "/readyz", EVHTTP_REQ_GET);
    assert_int_equal(r.code, 503);
    assert_non_null(strstr(r.body, "the log is not open"));
    gw_metrics_set_serving(f->m, true);
    /* Both stores answer their first probe (sent at the start). */
    for (int i = 0; i < WAIT_LIMIT_S * 10; i++) {
        r = get(f, "/readyz", EVHTTP_REQ_GET);
        if (r.code == 200)
            break;
        usleep(100000);
    }
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "ready\n");
    r = get(f, "/metrics", EVHTTP_REQ_GET);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "# TYPE nuthatch_requests_total counter"));
    r = get(f, "/metrics", EVHTTP_REQ_POST);
    assert_int_equal(r.code, 405);
    r = get(f, "/other", EVHTTP_REQ_GET);
    assert_int_equal(r.code, 404);
    /* A body larger than any GET needs is refused before it is buffered. */
    {
        http_res_t big = {0};
        struct evhttp_connection *c =
            evhttp_connection_base_new(f->base, NULL, "127.0.0.1", (uint16_t)gw_metrics_port(f->m));
        struct evhttp_request *req = evhttp_request_new(http_done, &big);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
        static char body[1 << 20];
        memset(body, 'x', sizeof body);
        evbuffer_add(evhttp_request_get_output_buffer(req), body, sizeof body);
        assert_int_equal(evhttp_make_request(c, req, EVHTTP_REQ_POST, "/metrics"), 0);
        wait_for(f, &big.done);
        evhttp_connection_free(c);
        assert_true(big.code == 413 || big.code == 0);
    }
    char *t = gw_metrics_render(f->m);
    assert_int_equal(sample(t, "nuthatch_ready"), 1);
    assert_int_equal(sample(t, "nuthatch_store_reachable{store=\"object\"}"), 1);
    assert_int_equal(sample(t, "nuthatch_store_reachable{store=\"metadata\"}"), 1);
    free(t);
    /* The stores go before the metrics (their last callbacks count). */
    st_meta_free(meta);
    st_objstore_free(os);
    gw_metrics_set_stores(f->m, NULL, NULL);
}

static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    usleep(300000); /* a callback that keeps the loop for 300 ms */
    *(int *)arg = 1;
}

/* The loop's lag: a timer every 100 ms, on time (within a second, on a busy machine) while the loop
 * idles; a callback that holds the loop 300 ms makes one tick at least 100 ms late. */
static void test_loop_lag(void **state)
{
    fix_t *f = *state;
    char err[256];
    assert_int_equal(gw_metrics_start(f->m, "127.0.0.1:0", err, sizeof err), 0);
    for (int i = 0; i < 10; i++) { /* about a second of an idle loop */
        struct timeval tv = {0, 100000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
    char *t = gw_metrics_render(f->m);
    double ticks = sample(t, "nuthatch_event_loop_lag_seconds_count");
    assert_true(ticks >= 5);
    assert_int_equal(sample(t, "nuthatch_event_loop_lag_seconds_bucket{le=\"1\"}"), ticks);
    free(t);
    int stalled = 0;
    struct event *ev = evtimer_new(f->base, stall_cb, &stalled);
    struct timeval now = {0, 0};
    evtimer_add(ev, &now);
    wait_for(f, &stalled);
    for (int i = 0; i < 3; i++) { /* the late tick runs, and later ones */
        struct timeval tv = {0, 100000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
    event_free(ev);
    t = gw_metrics_render(f->m);
    ticks = sample(t, "nuthatch_event_loop_lag_seconds_count");
    double late = ticks - sample(t, "nuthatch_event_loop_lag_seconds_bucket{le=\"0.1\"}");
    assert_true(late >= 1);
    assert_true(sample(t, "nuthatch_event_loop_lag_seconds_sum") >= 0.2);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrapped_stores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_and_readiness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_lag, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
