/*
 * test_conn.c: the gateway's connections and dispatch, driven through a
 * socketpair (and loopback TCP for the connection limit) against a real
 * log over a temporary directory: framing limits, the receive budget,
 * deadlines, ordering of pipelined answers, backpressure, the dispatch
 * table, ApiVersions bytes (hand-written, independent of the generator),
 * acks=0, long-poll fetch and graceful stop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw_api.h"
#include "gw_conn.h"
#include "gw_dispatch.h"
#include "gw_server.h"
#include "kp_batch.h"

typedef struct fx {
    char dir[256];
    struct event_base *base;
    st_objstore_t *os;
    st_meta_t *meta;
    st_log_t *log;
    gw_config_t cfg;
    gw_server_t *srv;
} fx_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the loop once without blocking; sleep a little when idle. */
static void pump(fx_t *f)
{
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    usleep(500);
}

static void flag_cb(st_err_t err, void *arg)
{
    assert_int_equal(err, ST_OK);
    (*(int *)arg)++;
}

static void closed_cb(void *arg)
{
    (*(int *)arg)++;
}

static void run_until(fx_t *f, const int *flag, int want)
{
    int64_t end = now_ms() + 10000;
    while (*flag < want && now_ms() < end)
        pump(f);
    assert_true(*flag >= want);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char errstr[256], path[512];
    snprintf(f->dir, sizeof f->dir, "/tmp/nh-test-conn-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    assert_int_equal(gw_config_defaults(&f->cfg, errstr, sizeof errstr), 0);
    snprintf(f->cfg.listeners.host, sizeof f->cfg.listeners.host, "127.0.0.1");
    f->cfg.listeners.port = 0;
    f->cfg.advertised_listeners = f->cfg.listeners; /* port 0: the bound port */
    snprintf(path, sizeof path, "%s/objects", f->dir);
    f->os = st_objstore_dir_new(f->base, path, 1, errstr, sizeof errstr);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    f->meta = st_meta_sqlite_new(f->base, path, errstr, sizeof errstr);
    assert_non_null(f->os);
    assert_non_null(f->meta);
    st_log_cfg_t lcfg = {.node_id = 1,
                         .flush_max_bytes = 1 << 20,
                         .flush_max_inflight = 2,
                         .tail_cache_bytes = 1 << 20,
                         .read_cache_bytes = 1 << 20,
                         .default_partitions = 1};
    f->log = st_log_new(f->base, f->os, f->meta, &lcfg);
    int opened = 0;
    assert_int_equal(st_log_open(f->log, flag_cb, &opened), 0);
    run_until(f, &opened, 1);
    f->srv = gw_server_new(f->base, &f->cfg, f->log, errstr, sizeof errstr);
    assert_non_null(f->srv);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    int stopped = 0;
    if (!f->srv->stopping)
        gw_server_stop(f->srv, closed_cb, &stopped);
    else
        stopped = 1;
    run_until(f, &stopped, 1);
    gw_server_free(f->srv);
    int closed = 0;
    st_log_close(f->log, closed_cb, &closed);
    run_until(f, &closed, 1);
    st_log_free(f->log);
    st_meta_free(f->meta);
    st_objstore_free(f->os);
    event_base_free(f->base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A connection over a socketpair; returns the client's end (nonblocking). */
static int client(fx_t *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_non_null(gw_conn_new(f->srv, sv[0], "test"));
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    return sv[1];
}

static void send_all(fx_t *f, int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            assert_true(errno == EAGAIN);
            pump(f);
            continue;
        }
        b += w;
        n -= (size_t)w;
    }
}

/* Read exactly @n bytes, pumping the loop; 0, -1 on EOF, -2 on timeout. */
static int recv_exact(fx_t *f, int fd, uint8_t *buf, size_t n, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r == 0)
            return -1;
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (now_ms() > end)
            return -2;
        pump(f);
    }
    return 0;
}

/* One response frame into @buf (without its length); its length, -1 on
 * EOF, -2 on timeout. */
static int recv_frame(fx_t *f, int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    uint8_t lenbuf[4];
    int rc = recv_exact(f, fd, lenbuf, 4, timeout_ms);
    if (rc != 0)
        return rc;
    uint32_t len = kp_be32(lenbuf);
    assert_true(len <= cap);
    rc = recv_exact(f, fd, buf, len, timeout_ms);
    return rc != 0 ? rc : (int)len;
}

static bool is_closed(fx_t *f, int fd, int timeout_ms)
{
    uint8_t b;
    return recv_exact(f, fd, &b, 1, timeout_ms) == -1;
}

/* Encode a request: length, header, body. */
static uint8_t *build(int16_t key, int16_t ver, int32_t corr, const void *body, size_t *len)
{
    kp_writer_t w;
    kp_writer_init(&w, 128);
    size_t pos = kp_writer_reserve_i32(&w);
    kp_request_header_t h;
    kp_request_header_init(&h);
    h.request_api_key = key;
    h.request_api_version = ver;
    h.correlation_id = corr;
    h.client_id = kp_str("test");
    kp_request_header_encode(&w, kp_request_header_version(key, ver), &h);
    kp_api_desc(key)->request.encode(&w, ver, body);
    assert_int_equal(w.err, KP_ENCODE_OK);
    kp_writer_patch_i32(&w, pos, (int32_t)(w.len - 4));
    return kp_writer_take(&w, len);
}

static void send_api_versions(fx_t *f, int fd, int16_t ver, int32_t corr)
{
    kp_api_versions_request_t rq;
    kp_api_versions_request_init(&rq);
    rq.client_software_name = kp_str("test");
    rq.client_software_version = kp_str("1");
    size_t len;
    uint8_t *b = build(KP_API_API_VERSIONS, ver, corr, &rq, &len);
    send_all(f, fd, b, len);
    free(b);
}

/* ------------------------------------------------------------------ */
/* Dispatch table and ApiVersions bytes                                */
/* ------------------------------------------------------------------ */

static void test_table(void **state)
{
    (void)state;
    static const int16_t want[][3] = {{18, 0, 3}, {3, 0, 12}, {0, 3, 9},  {1, 4, 13},
                                      {2, 1, 7},  {19, 2, 7}, {20, 1, 6}, {32, 0, 4},
                                      {10, 0, 4}, {8, 2, 8},  {9, 1, 8}};
    int handled = 0;
    for (int k = -1; k <= KP_API_MAX_KEY + 1; k++)
        handled += gw_api_lookup((int16_t)k) != NULL;
    assert_int_equal(handled, 11);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gw_api_t *api = gw_api_lookup(want[i][0]);
        assert_non_null(api);
        assert_int_equal(api->min_ver, want[i][1]);
        assert_int_equal(api->max_ver, want[i][2]);
    }
    assert_null(gw_api_lookup(KP_API_JOIN_GROUP));
    assert_null(gw_api_lookup(KP_API_INIT_PRODUCER_ID));
}

/* The version ranges as ApiVersions v0 lists them: key, min, max. */
static const uint8_t ranges_v0[] = {
    0, 0,  0, 3, 0, 9,  0, 1, 0, 4, 0, 13, 0, 2, 0, 1,  0, 7,  0, 3, 0, 0,
    0, 12, 0, 8, 0, 2,  0, 8, 0, 9, 0, 1,  0, 8, 0, 10, 0, 0,  0, 4, 0, 18,
    0, 0,  0, 3, 0, 19, 0, 2, 0, 7, 0, 20, 0, 1, 0, 6,  0, 32, 0, 0, 0, 4,
};

static void test_api_versions_v99(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    /* Header v1 by hand: key 18, version 99, correlation 7, client "t". */
    static const uint8_t req[] = {0, 0, 0, 11, 0, 18, 0, 99, 0, 0, 0, 7, 0, 1, 't'};
    send_all(f, fd, req, sizeof req);
    uint8_t buf[256];
    int n = recv_frame(f, fd, buf, sizeof buf, 5000);
    /* Header v0 (correlation id), ErrorCode 35, ApiKeys int32 count 11. */
    static const uint8_t head[] = {0, 0, 0, 7, 0, 35, 0, 0, 0, 11};
    assert_int_equal(n, (int)(sizeof head + sizeof ranges_v0));
    assert_memory_equal(buf, head, sizeof head);
    assert_memory_equal(buf + sizeof head, ranges_v0, sizeof ranges_v0);
    /* The connection stays usable: v4 (a version the codec knows but the
     * table does not list) gets the same v0 answer. */
    send_api_versions(f, fd, 4, 8);
    n = recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(n, (int)(sizeof head + sizeof ranges_v0));
    assert_int_equal(buf[3], 8);
    assert_int_equal(buf[5], 35);
    close(fd);
}

static void test_api_versions_v3(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    send_api_versions(f, fd, 3, 9);
    uint8_t buf[256];
    int n = recv_frame(f, fd, buf, sizeof buf, 5000);
    /* Header v0 even for a flexible version: correlation id, no tags. */
    uint8_t want[128], *w = want;
    static const uint8_t head[] = {0, 0, 0, 9, 0, 0, 12}; /* compact array: 11 + 1 */
    memcpy(w, head, sizeof head);
    w += sizeof head;
    for (size_t i = 0; i < sizeof ranges_v0; i += 6) {
        memcpy(w, ranges_v0 + i, 6);
        w += 6;
        *w++ = 0; /* entry's tag buffer */
    }
    static const uint8_t tail[] = {0, 0, 0, 0, 0}; /* ThrottleTimeMs, tag buffer */
    memcpy(w, tail, sizeof tail);
    w += sizeof tail;
    assert_int_equal(n, (int)(w - want));
    assert_memory_equal(buf, want, (size_t)n);
    close(fd);
}

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

static void test_frame_too_small(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    static const uint8_t req[] = {0, 0, 0, 7, 0, 18, 0, 0, 0, 0, 0};
    send_all(f, fd, req, sizeof req);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
}

static void test_frame_too_large(void **state)
{
    fx_t *f = *state;
    f->cfg.socket_request_max_bytes = 1000;
    int fd = client(f);
    static const uint8_t req[] = {0, 0, 0x03, 0xe9}; /* 1001 */
    send_all(f, fd, req, sizeof req);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
    /* A negative length is refused just the same. */
    fd = client(f);
    static const uint8_t neg[] = {0xff, 0xff, 0xff, 0xf0};
    send_all(f, fd, neg, sizeof neg);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
    assert_int_equal(f->srv->recv_reserved, 0);
}

static void test_partial_timeout(void **state)
{
    fx_t *f = *state;
    f->cfg.request_partial_timeout_ms = 100;
    int fd = client(f);
    static const uint8_t req[] = {0, 0, 0, 20, 0, 18, 0, 0};
    send_all(f, fd, req, sizeof req);
    int64_t t0 = now_ms();
    assert_true(is_closed(f, fd, 3000));
    assert_true(now_ms() - t0 >= 80);
    assert_int_equal(f->srv->recv_reserved, 0);
    close(fd);
}

static void test_idle_timeout(void **state)
{
    fx_t *f = *state;
    f->cfg.connections_max_idle_ms = 150;
    int fd = client(f);
    send_api_versions(f, fd, 0, 1);
    uint8_t buf[256];
    assert_true(recv_frame(f, fd, buf, sizeof buf, 2000) > 0);
    assert_true(is_closed(f, fd, 3000));
    close(fd);
}

/* A frame that does not fit the budget waits until another one's bytes
 * are released; nothing beyond the budget is read meanwhile. */
static void test_receive_budget(void **state)
{
    fx_t *f = *state;
    f->cfg.socket_request_max_bytes = 1000;
    f->cfg.request_receive_budget_bytes = 1000;
    int a = client(f), b = client(f);
    /* A: an ApiVersions v0 padded to 1000 bytes, its first half only. */
    uint8_t big[1004] = {0, 0, 0x03, 0xe8, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0};
    send_all(f, a, big, 500);
    for (int i = 0; i < 50; i++)
        pump(f);
    assert_int_equal(f->srv->recv_reserved, 1000);
    send_api_versions(f, b, 0, 2);
    uint8_t buf[256];
    assert_int_equal(recv_frame(f, b, buf, sizeof buf, 200), -2); /* waits for budget */
    send_all(f, a, big + 500, sizeof big - 500);
    assert_true(recv_frame(f, a, buf, sizeof buf, 2000) > 0);
    assert_int_equal(kp_be32(buf), 1);
    assert_true(recv_frame(f, b, buf, sizeof buf, 2000) > 0);
    assert_int_equal(kp_be32(buf), 2);
    close(a);
    close(b);
}

static void test_rejects(void **state)
{
    fx_t *f = *state;
    /* An API without a handler (JoinGroup). */
    int fd = client(f);
    static const uint8_t join[] = {0, 0, 0, 10, 0, 11, 0, 0, 0, 0, 0, 1, 0, 0};
    send_all(f, fd, join, sizeof join);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
    /* An unknown key. */
    fd = client(f);
    static const uint8_t unknown[] = {0, 0, 0, 8, 0x03, 0xe7, 0, 0, 0, 0, 0, 1};
    send_all(f, fd, unknown, sizeof unknown);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
    /* A known API at a version outside its range (Produce v2). */
    fd = client(f);
    static const uint8_t produce_v2[] = {0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0};
    send_all(f, fd, produce_v2, sizeof produce_v2);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
    /* A malformed body: Metadata v1 whose topic array runs past the end. */
    fd = client(f);
    static const uint8_t bad[] = {0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 5};
    send_all(f, fd, bad, sizeof bad);
    assert_true(is_closed(f, fd, 2000));
    close(fd);
}

/* ------------------------------------------------------------------ */
/* Ordering, produce, fetch                                            */
/* ------------------------------------------------------------------ */

/* A Produce request for @topic partition 0 with one batch of one record;
 * @corrupt flips a CRC-covered byte. */
static uint8_t *build_produce(const char *topic, int16_t acks, int32_t corr, bool corrupt,
                              size_t *len)
{
    kp_writer_t bw;
    kp_writer_init(&bw, 128);
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = KP_COMPRESSION_NONE,
                            .producer_id = -1,
                            .producer_epoch = -1,
                            .base_sequence = -1};
    kp_record_in_t rec = {
        .timestamp = 1700000000000, .key = KP_BYTES_NULL, .value = {(const uint8_t *)"hello", 5}};
    assert_int_equal(kp_batch_build(&bw, &spec, &rec, 1), KP_BATCH_OK);
    if (corrupt)
        bw.buf[bw.len - 1] ^= 0xff;
    kp_produce_request_partition_produce_data_t pd;
    kp_produce_request_partition_produce_data_init(&pd);
    pd.index = 0;
    pd.records = (kp_bytes_t){bw.buf, (int32_t)bw.len};
    kp_produce_request_topic_produce_data_t td;
    kp_produce_request_topic_produce_data_init(&td);
    td.name = kp_str(topic);
    td.partition_data = &pd;
    td.partition_data_count = 1;
    kp_produce_request_t rq;
    kp_produce_request_init(&rq);
    rq.acks = acks;
    rq.timeout_ms = 5000;
    rq.topic_data = &td;
    rq.topic_data_count = 1;
    uint8_t *out = build(KP_API_PRODUCE, 7, corr, &rq, len);
    kp_writer_deinit(&bw);
    return out;
}

/* Decode a Produce v7 response (header v0) and check partition 0. */
static void check_produce_resp(const uint8_t *buf, int n, int32_t corr, int16_t err, int64_t base)
{
    assert_true(n > 4);
    assert_int_equal((int32_t)kp_be32(buf), corr);
    kp_reader_t r;
    kp_reader_init(&r, buf + 4, (size_t)n - 4);
    kp_arena_t a;
    kp_arena_init(&a, 1 << 16);
    kp_produce_response_t resp;
    assert_int_equal(kp_produce_response_decode(&r, &a, 7, &resp), KP_DECODE_OK);
    assert_int_equal(resp.responses_count, 1);
    assert_int_equal(resp.responses[0].partition_responses[0].error_code, err);
    if (err == 0)
        assert_int_equal(resp.responses[0].partition_responses[0].base_offset, base);
    kp_arena_deinit(&a);
}

/* A produce that completes after its flush, pipelined with an ApiVersions
 * that completes at once: the answers still come in request order. */
static void test_pipelined_order(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    size_t len;
    uint8_t *p = build_produce("ordered", 1, 1, false, &len);
    send_all(f, fd, p, len);
    free(p);
    send_api_versions(f, fd, 0, 2);
    p = build_produce("ordered", -1, 3, false, &len);
    send_all(f, fd, p, len);
    free(p);
    send_api_versions(f, fd, 1, 4);
    uint8_t buf[512];
    int n = recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, 0, 0);
    n = recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 2);
    n = recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 3, 0, 1);
    n = recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 4);
    close(fd);
}

/* With a cap of one request in flight the connection stops reading, and
 * still answers everything in order. */
static void test_inflight_cap(void **state)
{
    fx_t *f = *state;
    f->srv->max_inflight = 1;
    int fd = client(f);
    for (int i = 1; i <= 3; i++) {
        size_t len;
        uint8_t *p = build_produce("capped", 1, i, false, &len);
        send_all(f, fd, p, len);
        free(p);
    }
    uint8_t buf[512];
    for (int i = 1; i <= 3; i++) {
        int n = recv_frame(f, fd, buf, sizeof buf, 5000);
        check_produce_resp(buf, n, i, 0, i - 1);
    }
    close(fd);
}

static void test_produce_errors(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    size_t len;
    uint8_t *p = build_produce("errs", 1, 1, true, &len);
    send_all(f, fd, p, len);
    free(p);
    uint8_t buf[512];
    int n = recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, KP_ERR_CORRUPT_MESSAGE, -1);
    p = build_produce("bad/name", 1, 2, false, &len);
    send_all(f, fd, p, len);
    free(p);
    n = recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 2, KP_ERR_INVALID_TOPIC_EXCEPTION, -1);
    /* acks=0: no answer when it works (the next answer is the next
     * request's), the connection closed when it does not. */
    p = build_produce("errs", 0, 3, false, &len);
    send_all(f, fd, p, len);
    free(p);
    send_api_versions(f, fd, 0, 4);
    n = recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 4);
    p = build_produce("errs", 0, 5, true, &len);
    send_all(f, fd, p, len);
    free(p);
    assert_true(is_closed(f, fd, 5000));
    close(fd);
}

static uint8_t *build_fetch(const char *topic, int64_t offset, int32_t max_wait, int32_t corr,
                            size_t *len)
{
    kp_fetch_request_fetch_partition_t fp;
    kp_fetch_request_fetch_partition_init(&fp);
    fp.partition = 0;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = 1 << 20;
    kp_fetch_request_fetch_topic_t ft;
    kp_fetch_request_fetch_topic_init(&ft);
    ft.topic = kp_str(topic);
    ft.partitions = &fp;
    ft.partitions_count = 1;
    kp_fetch_request_t rq;
    kp_fetch_request_init(&rq);
    rq.max_wait_ms = max_wait;
    rq.min_bytes = 1;
    rq.max_bytes = 1 << 20;
    rq.topics = &ft;
    rq.topics_count = 1;
    return build(KP_API_FETCH, 11, corr, &rq, len);
}

/* Decode a Fetch v11 answer; returns the records' length of partition 0. */
static int32_t fetch_records(const uint8_t *buf, int n, int16_t *err, int64_t *hw)
{
    kp_reader_t r;
    kp_reader_init(&r, buf + 4, (size_t)n - 4);
    kp_arena_t a;
    kp_arena_init(&a, 1 << 20);
    kp_fetch_response_t resp;
    assert_int_equal(kp_fetch_response_decode(&r, &a, 11, &resp), KP_DECODE_OK);
    kp_fetch_response_partition_data_t *pd = &resp.responses[0].partitions[0];
    *err = pd->error_code;
    *hw = pd->high_watermark;
    int32_t len = pd->records.len;
    kp_arena_deinit(&a);
    return len;
}

/* A long poll answers when a produce commits, well before max_wait. */
static void test_fetch_long_poll(void **state)
{
    fx_t *f = *state;
    int pfd = client(f), cfd = client(f);
    size_t len;
    uint8_t *p = build_produce("polled", 1, 1, false, &len);
    send_all(f, pfd, p, len);
    free(p);
    uint8_t buf[4096];
    int n = recv_frame(f, pfd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, 0, 0);
    /* Empty at the high watermark: max_wait 200 ms passes. */
    int64_t t0 = now_ms();
    p = build_fetch("polled", 1, 200, 2, &len);
    send_all(f, cfd, p, len);
    free(p);
    n = recv_frame(f, cfd, buf, sizeof buf, 5000);
    assert_true(now_ms() - t0 >= 150);
    int16_t err;
    int64_t hw;
    assert_int_equal(fetch_records(buf, n, &err, &hw), 0);
    assert_int_equal(err, 0);
    assert_int_equal(hw, 1);
    /* Waiting 10 s, woken by the next commit. */
    t0 = now_ms();
    p = build_fetch("polled", 1, 10000, 3, &len);
    send_all(f, cfd, p, len);
    free(p);
    for (int i = 0; i < 20; i++)
        pump(f);
    p = build_produce("polled", 1, 4, false, &len);
    send_all(f, pfd, p, len);
    free(p);
    n = recv_frame(f, cfd, buf, sizeof buf, 5000);
    assert_true(now_ms() - t0 < 5000);
    assert_true(fetch_records(buf, n, &err, &hw) > 0);
    assert_int_equal(hw, 2);
    n = recv_frame(f, pfd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 4, 0, 1);
    /* Out of range. */
    p = build_fetch("polled", 7, 0, 5, &len);
    send_all(f, cfd, p, len);
    free(p);
    n = recv_frame(f, cfd, buf, sizeof buf, 5000);
    fetch_records(buf, n, &err, &hw);
    assert_int_equal(err, KP_ERR_OFFSET_OUT_OF_RANGE);
    close(pfd);
    close(cfd);
}

/* Send one request and decode its answer (body in @a); asserts the
 * correlation id. */
static void *call(fx_t *f, int fd, int16_t key, int16_t ver, const void *body, kp_arena_t *a)
{
    static int32_t corr = 1000;
    size_t len;
    uint8_t *b = build(key, ver, ++corr, body, &len);
    send_all(f, fd, b, len);
    free(b);
    static uint8_t buf[1 << 16];
    int n = recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_true(n > 0);
    kp_reader_t r;
    kp_reader_init(&r, buf, (size_t)n);
    kp_response_header_t h;
    assert_int_equal(kp_response_header_decode(&r, a, kp_response_header_version(key, ver), &h),
                     KP_DECODE_OK);
    assert_int_equal(h.correlation_id, corr);
    const kp_api_desc_t *d = kp_api_desc(key);
    void *resp = kp_arena_alloc(a, d->response.size);
    assert_int_equal(d->response.decode(&r, a, ver, resp), KP_DECODE_OK);
    return resp;
}

static kp_metadata_response_t *metadata(fx_t *f, int fd, int16_t ver, const char *topic,
                                        int32_t count, bool allow, kp_arena_t *a)
{
    kp_metadata_request_metadata_request_topic_t t;
    kp_metadata_request_metadata_request_topic_init(&t);
    t.name = kp_str(topic);
    kp_metadata_request_t rq;
    kp_metadata_request_init(&rq);
    rq.topics = count > 0 ? &t : NULL;
    rq.topics_count = count;
    rq.allow_auto_topic_creation = allow;
    return call(f, fd, KP_API_METADATA, ver, &rq, a);
}

/* Metadata: which topics, auto-creation rules, names, ids, the broker. */
static void test_metadata(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    kp_metadata_response_t *m = metadata(f, fd, 4, "m-created", 1, true, &a);
    assert_int_equal(m->topics_count, 1);
    assert_int_equal(m->topics[0].error_code, 0);
    assert_int_equal(m->topics[0].partitions_count, 1);
    assert_int_equal(m->topics[0].partitions[0].leader_id, 1);
    assert_int_equal(m->topics[0].partitions[0].replica_nodes_count, 1);
    assert_int_equal(m->topics[0].partitions[0].replica_nodes[0], 1);
    assert_int_equal(m->topics[0].partitions[0].isr_nodes[0], 1);
    assert_int_equal(m->controller_id, 1);
    assert_int_equal(m->brokers_count, 1);
    assert_int_equal(m->brokers[0].port, f->srv->port);
    m = metadata(f, fd, 4, "m-not-created", 1, false, &a);
    assert_int_equal(m->topics[0].error_code, KP_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    m = metadata(f, fd, 1, "bad name", 1, true, &a);
    assert_int_equal(m->topics[0].error_code, KP_ERR_INVALID_TOPIC_EXCEPTION);
    m = metadata(f, fd, 0, NULL, 0, true, &a); /* v0: empty = all */
    assert_int_equal(m->topics_count, 1);
    assert_true(kp_str_eq(m->topics[0].name, "m-created"));
    m = metadata(f, fd, 1, NULL, 0, true, &a); /* v1+: empty = none */
    assert_int_equal(m->topics_count, 0);
    m = metadata(f, fd, 12, NULL, -1, true, &a); /* v1+: null = all */
    assert_int_equal(m->topics_count, 1);
    assert_non_null(m->cluster_id.ptr);
    kp_uuid_t zero = {{0}};
    assert_memory_not_equal(&m->topics[0].topic_id, &zero, sizeof zero);
    /* v13 Fetch names the topic by that id; an unknown id is an error. */
    kp_uuid_t id = m->topics[0].topic_id;
    kp_fetch_request_fetch_partition_t fp;
    kp_fetch_request_fetch_partition_init(&fp);
    fp.partition_max_bytes = 1024;
    kp_fetch_request_fetch_topic_t ft;
    kp_fetch_request_fetch_topic_init(&ft);
    ft.topic_id = id;
    ft.partitions = &fp;
    ft.partitions_count = 1;
    kp_fetch_request_t rq;
    kp_fetch_request_init(&rq);
    rq.max_bytes = 1024;
    rq.topics = &ft;
    rq.topics_count = 1;
    kp_fetch_response_t *fr = call(f, fd, KP_API_FETCH, 13, &rq, &a);
    assert_int_equal(fr->responses[0].partitions[0].error_code, 0);
    assert_int_equal(fr->responses[0].partitions[0].high_watermark, 0);
    ft.topic_id.b[0] ^= 1;
    fr = call(f, fd, KP_API_FETCH, 13, &rq, &a);
    assert_int_equal(fr->responses[0].partitions[0].error_code, KP_ERR_UNKNOWN_TOPIC_ID);
    kp_arena_deinit(&a);
    close(fd);
}

static void test_find_coordinator(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    kp_find_coordinator_request_t rq;
    kp_find_coordinator_request_init(&rq);
    rq.key = kp_str("g");
    kp_find_coordinator_response_t *r = call(f, fd, KP_API_FIND_COORDINATOR, 3, &rq, &a);
    assert_int_equal(r->error_code, 0);
    assert_int_equal(r->node_id, 1);
    assert_int_equal(r->port, f->srv->port);
    rq.key_type = 1; /* transaction */
    r = call(f, fd, KP_API_FIND_COORDINATOR, 3, &rq, &a);
    assert_int_equal(r->error_code, KP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    kp_str_t keys[2] = {kp_str("a"), kp_str("b")};
    rq.key_type = 0;
    rq.coordinator_keys = keys;
    rq.coordinator_keys_count = 2;
    r = call(f, fd, KP_API_FIND_COORDINATOR, 4, &rq, &a);
    assert_int_equal(r->coordinators_count, 2);
    assert_true(kp_str_eq(r->coordinators[1].key, "b"));
    assert_int_equal(r->coordinators[1].node_id, 1);
    kp_arena_deinit(&a);
    close(fd);
}

static int64_t list_offset(fx_t *f, int fd, const char *topic, int64_t ts, int64_t *ts_out,
                           kp_arena_t *a)
{
    kp_list_offsets_request_list_offsets_partition_t lp;
    kp_list_offsets_request_list_offsets_partition_init(&lp);
    lp.timestamp = ts;
    kp_list_offsets_request_list_offsets_topic_t lt;
    kp_list_offsets_request_list_offsets_topic_init(&lt);
    lt.name = kp_str(topic);
    lt.partitions = &lp;
    lt.partitions_count = 1;
    kp_list_offsets_request_t rq;
    kp_list_offsets_request_init(&rq);
    rq.replica_id = -1;
    rq.topics = &lt;
    rq.topics_count = 1;
    kp_list_offsets_response_t *r = call(f, fd, KP_API_LIST_OFFSETS, 7, &rq, a);
    assert_int_equal(r->topics[0].partitions[0].error_code, 0);
    *ts_out = r->topics[0].partitions[0].timestamp;
    return r->topics[0].partitions[0].offset;
}

/* ListOffsets: latest, earliest, max timestamp (v7) and by timestamp. */
static void test_list_offsets(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    uint8_t buf[512];
    for (int i = 1; i <= 2; i++) {
        size_t len;
        uint8_t *p = build_produce("listed", 1, i, false, &len);
        send_all(f, fd, p, len);
        free(p);
        check_produce_resp(buf, recv_frame(f, fd, buf, sizeof buf, 5000), i, 0, i - 1);
    }
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    int64_t ts;
    assert_int_equal(list_offset(f, fd, "listed", -1, &ts, &a), 2);
    assert_int_equal(list_offset(f, fd, "listed", -2, &ts, &a), 0);
    assert_int_equal(list_offset(f, fd, "listed", -3, &ts, &a), 1);
    assert_int_equal(ts, 1700000000000);
    assert_int_equal(list_offset(f, fd, "listed", 1600000000000, &ts, &a), 0);
    assert_int_equal(list_offset(f, fd, "listed", 1800000000000, &ts, &a), -1);
    kp_arena_deinit(&a);
    close(fd);
}

/* OffsetCommit without a group, then OffsetFetch v8 for two groups. */
static void test_offsets_commit_fetch(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    metadata(f, fd, 4, "committed", 1, true, &a); /* create it */
    kp_offset_commit_request_offset_commit_request_partition_t cp;
    kp_offset_commit_request_offset_commit_request_partition_init(&cp);
    cp.committed_offset = 42;
    cp.committed_metadata = kp_str("m");
    kp_offset_commit_request_offset_commit_request_topic_t ct;
    kp_offset_commit_request_offset_commit_request_topic_init(&ct);
    ct.name = kp_str("committed");
    ct.partitions = &cp;
    ct.partitions_count = 1;
    kp_offset_commit_request_t oc;
    kp_offset_commit_request_init(&oc);
    oc.group_id = kp_str("g1");
    oc.topics = &ct;
    oc.topics_count = 1;
    kp_offset_commit_response_t *cr = call(f, fd, KP_API_OFFSET_COMMIT, 8, &oc, &a);
    assert_int_equal(cr->topics[0].partitions[0].error_code, 0);
    oc.member_id = kp_str("member-1"); /* a group member: no coordinator yet */
    cr = call(f, fd, KP_API_OFFSET_COMMIT, 2, &oc, &a);
    assert_int_equal(cr->topics[0].partitions[0].error_code, KP_ERR_UNKNOWN_MEMBER_ID);
    ct.name = kp_str("no-such-topic");
    oc.member_id = kp_str("");
    cr = call(f, fd, KP_API_OFFSET_COMMIT, 8, &oc, &a);
    assert_int_equal(cr->topics[0].partitions[0].error_code, KP_ERR_UNKNOWN_TOPIC_OR_PARTITION);

    int32_t parts[2] = {0, 3};
    kp_offset_fetch_request_offset_fetch_request_topics_t ft;
    kp_offset_fetch_request_offset_fetch_request_topics_init(&ft);
    ft.name = kp_str("committed");
    ft.partition_indexes = parts;
    ft.partition_indexes_count = 2;
    kp_offset_fetch_request_offset_fetch_request_group_t groups[2];
    kp_offset_fetch_request_offset_fetch_request_group_init(&groups[0]);
    kp_offset_fetch_request_offset_fetch_request_group_init(&groups[1]);
    groups[0].group_id = kp_str("g1");
    groups[0].topics = &ft;
    groups[0].topics_count = 1;
    groups[1].group_id = kp_str("g1");
    groups[1].topics_count = -1; /* every committed offset */
    kp_offset_fetch_request_t of;
    kp_offset_fetch_request_init(&of);
    of.groups = groups;
    of.groups_count = 2;
    kp_offset_fetch_response_t *fr = call(f, fd, KP_API_OFFSET_FETCH, 8, &of, &a);
    assert_int_equal(fr->groups_count, 2);
    assert_int_equal(fr->groups[0].topics[0].partitions[0].committed_offset, 42);
    assert_true(kp_str_eq(fr->groups[0].topics[0].partitions[0].metadata, "m"));
    assert_int_equal(fr->groups[0].topics[0].partitions[1].committed_offset, -1);
    assert_int_equal(fr->groups[1].topics_count, 1);
    assert_int_equal(fr->groups[1].topics[0].partitions_count, 1);
    assert_int_equal(fr->groups[1].topics[0].partitions[0].committed_offset, 42);
    kp_arena_deinit(&a);
    close(fd);
}

/* Stopping answers a waiting fetch at once and closes the connection. */
static void test_stop_answers_long_poll(void **state)
{
    fx_t *f = *state;
    int fd = client(f);
    size_t len;
    uint8_t *p = build_produce("stopping", 1, 1, false, &len);
    send_all(f, fd, p, len);
    free(p);
    uint8_t buf[4096];
    recv_frame(f, fd, buf, sizeof buf, 5000);
    p = build_fetch("stopping", 1, 30000, 2, &len);
    send_all(f, fd, p, len);
    free(p);
    for (int i = 0; i < 20; i++)
        pump(f);
    int stopped = 0;
    int64_t t0 = now_ms();
    gw_server_stop(f->srv, closed_cb, &stopped);
    int n = recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 2);
    assert_true(n > 0);
    assert_true(is_closed(f, fd, 5000));
    run_until(f, &stopped, 1);
    assert_true(now_ms() - t0 < 5000);
    close(fd);
}

/* max.connections: the connection past the limit is closed at once. */
static void test_connection_limit(void **state)
{
    fx_t *f = *state;
    f->cfg.max_connections = 1;
    gw_server_start(f->srv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->srv->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(a, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(a, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 50 && f->srv->nconns_open < 1; i++)
        pump(f);
    assert_int_equal(connect(b, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(b, F_SETFL, O_NONBLOCK);
    assert_true(is_closed(f, b, 3000));
    send_api_versions(f, a, 0, 1);
    uint8_t buf[256];
    assert_true(recv_frame(f, a, buf, sizeof buf, 3000) > 0);
    assert_int_equal(f->srv->stats.conns_refused, 1);
    close(a);
    close(b);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test_setup_teardown(test_api_versions_v99, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_versions_v3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_too_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_produce_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_long_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_answers_long_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_coordinator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets_commit_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
