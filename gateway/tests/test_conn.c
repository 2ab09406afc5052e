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
#include <signal.h>
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
#include "gw_test_fx.h"
#include "kp_batch.h"

/* ------------------------------------------------------------------ */
/* Dispatch table and ApiVersions bytes                                */
/* ------------------------------------------------------------------ */

static void test_table(void **state)
{
    (void)state;
    static const int16_t want[][3] = {
        {18, 0, 3}, {3, 0, 6},  {0, 3, 7},  {1, 4, 11}, {2, 1, 7},  {19, 2, 4}, {20, 1, 3},
        {32, 0, 2}, {10, 0, 4}, {8, 2, 7},  {9, 1, 8},  {21, 0, 1}, {23, 0, 3}, {33, 0, 1},
        {37, 0, 1}, {44, 0, 0}, {60, 0, 0}, {22, 0, 4}, {11, 0, 5}, {14, 0, 3}, {12, 0, 3},
        {13, 0, 3}, {16, 0, 4}, {15, 0, 4}, {42, 0, 1}, {47, 0, 0}};
    int handled = 0;
    for (int k = -1; k <= KP_API_MAX_KEY + 1; k++)
        handled += gw_api_lookup((int16_t)k) != NULL;
    assert_int_equal(handled, 26);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gw_api_t *api = gw_api_lookup(want[i][0]);
        assert_non_null(api);
        assert_int_equal(api->min_ver, want[i][1]);
        assert_int_equal(api->max_ver, want[i][2]);
    }
}

/* The version ranges as ApiVersions v0 lists them: key, min, max. */
static const uint8_t ranges_v0[] = {
    0, 0,  0, 0, 0, 7,  /* Produce: listed from v0, answered from v3 */
    0, 1,  0, 4, 0, 11, /* Fetch */
    0, 2,  0, 1, 0, 7,  /* ListOffsets */
    0, 3,  0, 0, 0, 6,  /* Metadata */
    0, 8,  0, 2, 0, 7,  /* OffsetCommit */
    0, 9,  0, 1, 0, 8,  /* OffsetFetch */
    0, 10, 0, 0, 0, 4,  /* FindCoordinator */
    0, 11, 0, 0, 0, 5,  /* JoinGroup */
    0, 12, 0, 0, 0, 3,  /* Heartbeat */
    0, 13, 0, 0, 0, 3,  /* LeaveGroup */
    0, 14, 0, 0, 0, 3,  /* SyncGroup */
    0, 15, 0, 0, 0, 4,  /* DescribeGroups */
    0, 16, 0, 0, 0, 4,  /* ListGroups */
    0, 18, 0, 0, 0, 3,  /* ApiVersions */
    0, 19, 0, 2, 0, 4,  /* CreateTopics */
    0, 20, 0, 1, 0, 3,  /* DeleteTopics */
    0, 21, 0, 0, 0, 1,  /* DeleteRecords */
    0, 22, 0, 0, 0, 4,  /* InitProducerId */
    0, 23, 0, 0, 0, 3,  /* OffsetForLeaderEpoch */
    0, 32, 0, 0, 0, 2,  /* DescribeConfigs */
    0, 33, 0, 0, 0, 1,  /* AlterConfigs */
    0, 37, 0, 0, 0, 1,  /* CreatePartitions */
    0, 42, 0, 0, 0, 1,  /* DeleteGroups */
    0, 44, 0, 0, 0, 0,  /* IncrementalAlterConfigs */
    0, 47, 0, 0, 0, 0,  /* OffsetDelete */
    0, 60, 0, 0, 0, 0,  /* DescribeCluster */
};

static void test_api_versions_v99(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    /* Header v1 by hand: key 18, version 99, correlation 7, client "t". */
    static const uint8_t req[] = {0, 0, 0, 11, 0, 18, 0, 99, 0, 0, 0, 7, 0, 1, 't'};
    fx_send_all(f, fd, req, sizeof req);
    uint8_t buf[256];
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    /* Header v0 (correlation id), ErrorCode 35, ApiKeys int32 count 26. */
    static const uint8_t head[] = {0, 0, 0, 7, 0, 35, 0, 0, 0, 26};
    assert_int_equal(n, (int)(sizeof head + sizeof ranges_v0));
    assert_memory_equal(buf, head, sizeof head);
    assert_memory_equal(buf + sizeof head, ranges_v0, sizeof ranges_v0);
    /* The connection stays usable: v4 (a version the codec knows but the
     * table does not list) gets the same v0 answer. */
    fx_send_api_versions(f, fd, 4, 8);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(n, (int)(sizeof head + sizeof ranges_v0));
    assert_int_equal(buf[3], 8);
    assert_int_equal(buf[5], 35);
    close(fd);
}

static void test_api_versions_v3(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    fx_send_api_versions(f, fd, 3, 9);
    uint8_t buf[256];
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    /* Header v0 even for a flexible version: correlation id, no tags. */
    uint8_t want[256], *w = want;
    static const uint8_t head[] = {0, 0, 0, 9, 0, 0, 27}; /* compact array: 26 + 1 */
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
    int fd = fx_client(f);
    static const uint8_t req[] = {0, 0, 0, 7, 0, 18, 0, 0, 0, 0, 0};
    fx_send_all(f, fd, req, sizeof req);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
}

static void test_frame_too_large(void **state)
{
    fx_t *f = *state;
    f->cfg.socket_request_max_bytes = 1000;
    int fd = fx_client(f);
    static const uint8_t req[] = {0, 0, 0x03, 0xe9}; /* 1001 */
    fx_send_all(f, fd, req, sizeof req);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
    /* A negative length is refused just the same. */
    fd = fx_client(f);
    static const uint8_t neg[] = {0xff, 0xff, 0xff, 0xf0};
    fx_send_all(f, fd, neg, sizeof neg);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
    assert_int_equal(f->srv->recv_reserved, 0);
}

static void test_partial_timeout(void **state)
{
    fx_t *f = *state;
    f->cfg.request_partial_timeout_ms = 100;
    int fd = fx_client(f);
    static const uint8_t req[] = {0, 0, 0, 20, 0, 18, 0, 0};
    fx_send_all(f, fd, req, sizeof req);
    int64_t t0 = fx_now_ms();
    assert_true(fx_is_closed(f, fd, 3000));
    assert_true(fx_now_ms() - t0 >= 80);
    assert_int_equal(f->srv->recv_reserved, 0);
    close(fd);
}

static void test_idle_timeout(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    /* Set after the accept: the answer re-arms the idle timer with it, so a
     * slow start cannot close the connection before the request. */
    f->cfg.connections_max_idle_ms = 150;
    fx_send_api_versions(f, fd, 0, 1);
    uint8_t buf[256];
    assert_true(fx_recv_frame(f, fd, buf, sizeof buf, 2000) > 0);
    assert_true(fx_is_closed(f, fd, 3000));
    close(fd);
}

/* Frames cut anywhere: a small request, one larger than what is read
 * ahead between frames (its rest read straight into it) and another small
 * one, sent in pieces that split the length prefixes and the bodies, with
 * the loop running between the pieces.  Each is answered, in order. */
static void test_frame_pieces(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    size_t big = GW_CONN_READ_AHEAD * 3 + 17; /* an ApiVersions v0 padded to this length */
    size_t len = 14 + 4 + big + 14;
    uint8_t *b = calloc(1, len);
    assert_non_null(b);
    static const uint8_t small1[] = {0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0};
    static const uint8_t small3[] = {0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 3, 0, 0};
    memcpy(b, small1, sizeof small1);
    uint8_t *p = b + sizeof small1;
    p[0] = (uint8_t)(big >> 24), p[1] = (uint8_t)(big >> 16), p[2] = (uint8_t)(big >> 8),
    p[3] = (uint8_t)big;
    static const uint8_t hdr2[] = {0, 18, 0, 0, 0, 0, 0, 2, 0, 0};
    memcpy(p + 4, hdr2, sizeof hdr2);
    memcpy(p + 4 + big, small3, sizeof small3);
    static const size_t cuts[] = {3, 1, 12, 2, 70000, 1, 4093, 65536, 9};
    size_t off = 0;
    for (size_t i = 0; off < len; i++) {
        size_t n = cuts[i % (sizeof cuts / sizeof cuts[0])];
        if (n > len - off)
            n = len - off;
        fx_send_all(f, fd, b + off, n);
        off += n;
        fx_pump(f);
    }
    free(b);
    uint8_t buf[512];
    for (int32_t corr = 1; corr <= 3; corr++) {
        assert_true(fx_recv_frame(f, fd, buf, sizeof buf, 5000) > 0);
        assert_int_equal(kp_be32(buf), corr);
    }
    assert_int_equal(f->srv->recv_reserved, 0);
    close(fd);
}

/* A client that closes in the middle of a large frame: the frame being
 * received is dropped with its budget, and the server goes on serving. */
static void test_frame_cut_by_close(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    size_t big = GW_CONN_READ_AHEAD * 2;
    uint8_t *b = calloc(1, 4 + big / 2);
    assert_non_null(b);
    b[0] = (uint8_t)(big >> 24), b[1] = (uint8_t)(big >> 16), b[2] = (uint8_t)(big >> 8),
    b[3] = (uint8_t)big;
    static const uint8_t hdr[] = {0, 18, 0, 0, 0, 0, 0, 1, 0, 0};
    memcpy(b + 4, hdr, sizeof hdr);
    fx_send_all(f, fd, b, 4 + big / 2);
    free(b);
    for (int64_t end = fx_now_ms() + 5000; f->srv->recv_reserved == 0 && fx_now_ms() < end;)
        fx_pump(f);
    assert_true(f->srv->recv_reserved >= (int64_t)big);
    close(fd);
    for (int64_t end = fx_now_ms() + 5000; f->srv->recv_reserved != 0 && fx_now_ms() < end;)
        fx_pump(f);
    assert_int_equal(f->srv->recv_reserved, 0);
    fd = fx_client(f);
    fx_send_api_versions(f, fd, 0, 2);
    uint8_t buf[512];
    assert_true(fx_recv_frame(f, fd, buf, sizeof buf, 5000) > 0);
    assert_int_equal(kp_be32(buf), 2);
    close(fd);
}

/* A frame that does not fit the budget waits until another one's bytes
 * are released; nothing beyond the budget is read meanwhile. */
static void test_receive_budget(void **state)
{
    fx_t *f = *state;
    f->cfg.socket_request_max_bytes = 1000;
    f->cfg.request_receive_budget_bytes = 1000;
    int a = fx_client(f), b = fx_client(f);
    /* A: an ApiVersions v0 padded to 1000 bytes, its first half only. */
    uint8_t big[1004] = {0, 0, 0x03, 0xe8, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0};
    fx_send_all(f, a, big, 500);
    for (int64_t end = fx_now_ms() + 5000; f->srv->recv_reserved < 1000 && fx_now_ms() < end;)
        fx_pump(f);
    assert_int_equal(f->srv->recv_reserved, 1000);
    fx_send_api_versions(f, b, 0, 2);
    uint8_t buf[256];
    assert_int_equal(fx_recv_frame(f, b, buf, sizeof buf, 200), -2); /* waits for budget */
    fx_send_all(f, a, big + 500, sizeof big - 500);
    assert_true(fx_recv_frame(f, a, buf, sizeof buf, 2000) > 0);
    assert_int_equal(kp_be32(buf), 1);
    assert_true(fx_recv_frame(f, b, buf, sizeof buf, 2000) > 0);
    assert_int_equal(kp_be32(buf), 2);
    close(a);
    close(b);
}

static void test_rejects(void **state)
{
    fx_t *f = *state;
    /* An API without a handler (AlterPartition, between brokers). */
    int fd = fx_client(f);
    static const uint8_t join[] = {0, 0, 0, 10, 0, 56, 0, 0, 0, 0, 0, 1, 0, 0};
    fx_send_all(f, fd, join, sizeof join);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
    /* An unknown key. */
    fd = fx_client(f);
    static const uint8_t unknown[] = {0, 0, 0, 8, 0x03, 0xe7, 0, 0, 0, 0, 0, 1};
    fx_send_all(f, fd, unknown, sizeof unknown);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
    /* A known API at a version outside its range (Produce v2). */
    fd = fx_client(f);
    static const uint8_t produce_v2[] = {0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0};
    fx_send_all(f, fd, produce_v2, sizeof produce_v2);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
    /* A malformed body: Metadata v1 whose topic array runs past the end. */
    fd = fx_client(f);
    static const uint8_t bad[] = {0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 5};
    fx_send_all(f, fd, bad, sizeof bad);
    assert_true(fx_is_closed(f, fd, 2000));
    close(fd);
}

/* ------------------------------------------------------------------ */
/* Ordering, produce, fetch                                            */
/* ------------------------------------------------------------------ */

static uint8_t *build_produce_value(const char *topic, int16_t acks, int32_t corr, bool corrupt,
                                    kp_bytes_t value, size_t *len);

/* A Produce request for @topic partition 0 with one batch of one record;
 * @corrupt flips a CRC-covered byte. */
static uint8_t *build_produce(const char *topic, int16_t acks, int32_t corr, bool corrupt,
                              size_t *len)
{
    return build_produce_value(topic, acks, corr, corrupt,
                               (kp_bytes_t){(const uint8_t *)"hello", 5}, len);
}

/* The same with the record's @value (borrowed). */
static uint8_t *build_produce_value(const char *topic, int16_t acks, int32_t corr, bool corrupt,
                                    kp_bytes_t value, size_t *len)
{
    kp_writer_t bw;
    kp_writer_init(&bw, 128);
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = KP_COMPRESSION_NONE,
                            .producer_id = -1,
                            .producer_epoch = -1,
                            .base_sequence = -1};
    kp_record_in_t rec = {.timestamp = 1700000000000, .key = KP_BYTES_NULL, .value = value};
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
    uint8_t *out = fx_build(KP_API_PRODUCE, 7, corr, &rq, len);
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
    int fd = fx_client(f);
    size_t len;
    uint8_t *p = build_produce("ordered", 1, 1, false, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    fx_send_api_versions(f, fd, 0, 2);
    p = build_produce("ordered", -1, 3, false, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    fx_send_api_versions(f, fd, 1, 4);
    uint8_t buf[512];
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, 0, 0);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 2);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 3, 0, 1);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 4);
    close(fd);
}

/* A write buffer of one byte is full while any produce is uncommitted: a
 * second produce, pipelined right behind the first with an ApiVersions
 * after it, waits whole in its frame until the first commits, then both
 * are answered and so is the ApiVersions, in order. */
static int fx_setup_tiny_buffer(void **state)
{
    fx_write_buffer_bytes = 1;
    int rc = fx_setup(state);
    fx_write_buffer_bytes = 0;
    return rc;
}

static void test_produce_waits_for_space(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    uint8_t buf[512];
    size_t l0, la, lb, lv;
    uint8_t *p0 = build_produce("waits", 1, 1, false, &l0); /* creates the topic */
    fx_send_all(f, fd, p0, l0);
    free(p0);
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, 0, 0);
    uint8_t *a = build_produce("waits", 1, 2, false, &la);
    uint8_t *b = build_produce("waits", 1, 3, false, &lb);
    kp_api_versions_request_t rq;
    kp_api_versions_request_init(&rq);
    uint8_t *v = fx_build(KP_API_API_VERSIONS, 0, 4, &rq, &lv);
    uint8_t *all = malloc(la + lb + lv);
    assert_non_null(all);
    memcpy(all, a, la);
    memcpy(all + la, b, lb);
    memcpy(all + la + lb, v, lv);
    fx_send_all(f, fd, all, la + lb + lv); /* one read takes all three */
    free(a), free(b), free(v), free(all);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 2, 0, 1);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 3, 0, 2);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_true(n > 4);
    assert_int_equal(kp_be32(buf), 4);
    assert_true(f->srv->stats.produce_waits >= 1);
    close(fd);
}

/* With a cap of one request in flight the connection stops reading, and
 * still answers everything in order. */
static void test_inflight_cap(void **state)
{
    fx_t *f = *state;
    f->srv->max_inflight = 1;
    int fd = fx_client(f);
    for (int i = 1; i <= 3; i++) {
        size_t len;
        uint8_t *p = build_produce("capped", 1, i, false, &len);
        fx_send_all(f, fd, p, len);
        free(p);
    }
    uint8_t buf[512];
    for (int i = 1; i <= 3; i++) {
        int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
        check_produce_resp(buf, n, i, 0, i - 1);
    }
    close(fd);
}

/* Create @topic with one acknowledged produce (correlation id 1), hold
 * commits, and send produce requests 2..@n+1 behind each other; @returns
 * the server's request count before them. */
static uint64_t pipeline_held(fx_t *f, int fd, const char *topic, int n)
{
    size_t len;
    uint8_t *p = build_produce(topic, -1, 1, false, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    uint8_t buf[512];
    check_produce_resp(buf, fx_recv_frame(f, fd, buf, sizeof buf, 5000), 1, 0, 0);
    st_log_hold_commits(f->srv->log, true);
    uint64_t before = f->srv->stats.requests;
    for (int i = 2; i <= n + 1; i++) {
        p = build_produce(topic, -1, i, false, &len);
        fx_send_all(f, fd, p, len);
        free(p);
    }
    return before;
}

/* Release commits and check the answers to requests 2..@n+1, in order. */
static void release_and_check(fx_t *f, int fd, int n)
{
    uint8_t buf[512];
    st_log_hold_commits(f->srv->log, false);
    for (int i = 2; i <= n + 1; i++)
        check_produce_resp(buf, fx_recv_frame(f, fd, buf, sizeof buf, 5000), i, 0, i - 1);
}

/* A client pipelining many small produce requests while commits are slow
 * has every one of them read (far more than the 64 of a shallower cap),
 * and they are answered in order once commits go on. */
static void test_inflight_deep(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    uint64_t before = pipeline_held(f, fd, "deep", 300);
    for (int64_t end = fx_now_ms() + 5000;
         f->srv->stats.requests - before < 300 && fx_now_ms() < end;)
        fx_pump(f);
    assert_int_equal(f->srv->stats.requests - before, 300);
    uint8_t buf[512];
    assert_int_equal(fx_recv_frame(f, fd, buf, sizeof buf, 100), -2); /* none answered */
    release_and_check(f, fd, 300);
    close(fd);
}

/* Every request in flight holds GW_REQ_COST of the receive budget until it
 * is answered, so a small budget bounds how many are read. */
static void test_budget_bounds_inflight(void **state)
{
    fx_t *f = *state;
    f->cfg.request_receive_budget_bytes = 10 * GW_REQ_COST;
    int fd = fx_client(f);
    uint64_t before = pipeline_held(f, fd, "bounded", 40);
    for (int64_t end = fx_now_ms() + 1000; fx_now_ms() < end;)
        fx_pump(f);
    uint64_t read = f->srv->stats.requests - before;
    print_message("requests read with a budget of 10 x GW_REQ_COST: %llu\n",
                  (unsigned long long)read);
    assert_true(read >= 5 && read < 10);
    assert_true(f->srv->recv_reserved <= f->cfg.request_receive_budget_bytes);
    release_and_check(f, fd, 40);
    for (int64_t end = fx_now_ms() + 2000; f->srv->recv_reserved > 0 && fx_now_ms() < end;)
        fx_pump(f);
    assert_int_equal(f->srv->recv_reserved, 0);
    close(fd);
}

static void test_produce_errors(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    size_t len;
    uint8_t *p = build_produce("errs", 1, 1, true, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    uint8_t buf[512];
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, KP_ERR_CORRUPT_MESSAGE, -1);
    p = build_produce("bad/name", 1, 2, false, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 2, KP_ERR_INVALID_TOPIC_EXCEPTION, -1);
    /* acks=0: no answer when it works (the next answer is the next
     * request's), the connection closed when it does not. */
    p = build_produce("errs", 0, 3, false, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    fx_send_api_versions(f, fd, 0, 4);
    n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 4);
    p = build_produce("errs", 0, 5, true, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    assert_true(fx_is_closed(f, fd, 5000));
    close(fd);
}

static uint8_t *build_fetch_max(const char *topic, int64_t offset, int32_t max_wait, int32_t corr,
                                int32_t part_max, size_t *len)
{
    kp_fetch_request_fetch_partition_t fp;
    kp_fetch_request_fetch_partition_init(&fp);
    fp.partition = 0;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = part_max;
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
    return fx_build(KP_API_FETCH, 11, corr, &rq, len);
}

static uint8_t *build_fetch(const char *topic, int64_t offset, int32_t max_wait, int32_t corr,
                            size_t *len)
{
    return build_fetch_max(topic, offset, max_wait, corr, 1 << 20, len);
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
    int pfd = fx_client(f), cfd = fx_client(f);
    size_t len;
    uint8_t *p = build_produce("polled", 1, 1, false, &len);
    fx_send_all(f, pfd, p, len);
    free(p);
    uint8_t buf[4096];
    int n = fx_recv_frame(f, pfd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 1, 0, 0);
    /* Empty at the high watermark: max_wait 200 ms passes. */
    int64_t t0 = fx_now_ms();
    p = build_fetch("polled", 1, 200, 2, &len);
    fx_send_all(f, cfd, p, len);
    free(p);
    n = fx_recv_frame(f, cfd, buf, sizeof buf, 5000);
    assert_true(fx_now_ms() - t0 >= 150);
    int16_t err;
    int64_t hw;
    assert_int_equal(fetch_records(buf, n, &err, &hw), 0);
    assert_int_equal(err, 0);
    assert_int_equal(hw, 1);
    /* Waiting 10 s, woken by the next commit. */
    t0 = fx_now_ms();
    p = build_fetch("polled", 1, 10000, 3, &len);
    fx_send_all(f, cfd, p, len);
    free(p);
    for (int i = 0; i < 20; i++)
        fx_pump(f);
    p = build_produce("polled", 1, 4, false, &len);
    fx_send_all(f, pfd, p, len);
    free(p);
    n = fx_recv_frame(f, cfd, buf, sizeof buf, 5000);
    assert_true(fx_now_ms() - t0 < 5000);
    assert_true(fetch_records(buf, n, &err, &hw) > 0);
    assert_int_equal(hw, 2);
    n = fx_recv_frame(f, pfd, buf, sizeof buf, 5000);
    check_produce_resp(buf, n, 4, 0, 1);
    /* Out of range. */
    p = build_fetch("polled", 7, 0, 5, &len);
    fx_send_all(f, cfd, p, len);
    free(p);
    n = fx_recv_frame(f, cfd, buf, sizeof buf, 5000);
    fetch_records(buf, n, &err, &hw);
    assert_int_equal(err, KP_ERR_OFFSET_OUT_OF_RANGE);
    close(pfd);
    close(cfd);
}

/* Byte @i of the value of record @k in the large-record tests. */
static uint8_t big_byte(int k, size_t i)
{
    return (uint8_t)(i * 131 + (size_t)k * 7 + (i >> 9));
}

/* Produce @n records to @topic with values of @vlen(k) bytes (one batch
 * each, so a read returns them as several slices); checks the answers. */
static void produce_big(fx_t *f, int fd, const char *topic, int n, size_t (*vlen)(int k))
{
    for (int k = 0; k < n; k++) {
        size_t vl = vlen(k), len;
        uint8_t *v = malloc(vl + 1);
        for (size_t i = 0; i < vl; i++)
            v[i] = big_byte(k, i);
        uint8_t *p =
            build_produce_value(topic, 1, 100 + k, false, (kp_bytes_t){v, (int32_t)vl}, &len);
        fx_send_all(f, fd, p, len);
        free(p);
        free(v);
        uint8_t buf[512];
        int r = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
        check_produce_resp(buf, r, 100 + k, 0, k);
    }
}

/* Check every byte of a Fetch v11 answer's records: batches @first.. in
 * order, whole, each record's value as produced.  Returns the batches. */
static int check_big_records(const uint8_t *buf, int n, int first, size_t (*vlen)(int k))
{
    kp_reader_t r;
    kp_reader_init(&r, buf + 4, (size_t)n - 4);
    kp_arena_t a;
    kp_arena_init(&a, 1 << 20);
    kp_fetch_response_t resp;
    assert_int_equal(kp_fetch_response_decode(&r, &a, 11, &resp), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);
    kp_fetch_response_partition_data_t *pd = &resp.responses[0].partitions[0];
    assert_int_equal(pd->error_code, 0);
    const uint8_t *p = pd->records.ptr;
    size_t left = (size_t)pd->records.len;
    int k = first;
    while (left > 0) {
        size_t size;
        assert_int_equal(kp_batch_frame(p, left, left, &size), KP_BATCH_OK);
        kp_batch_info_t info;
        assert_int_equal(kp_batch_validate_one(p, size, NULL, &info), KP_BATCH_OK);
        assert_int_equal((int64_t)kp_be64(p), k); /* base offset */
        kp_record_iter_t it;
        assert_int_equal(kp_record_iter_init(&it, p, size, 0, NULL), KP_BATCH_OK);
        kp_record_t rec;
        assert_true(kp_record_iter_next(&it, &rec));
        assert_int_equal(rec.value.len, (int32_t)vlen(k));
        for (size_t i = 0; i < vlen(k); i++)
            if (rec.value.ptr[i] != big_byte(k, i))
                fail_msg("record %d: byte %zu differs", k, i);
        p += size;
        left -= size;
        k++;
    }
    kp_arena_deinit(&a);
    return k - first;
}

/* Large values, a small one between them: slices above and below
 * GW_RESP_REFER_MIN. */
static size_t big_len(int k)
{
    return k % 3 == 1 ? 100 : 30000 + (size_t)k * 1000;
}

/* Records of several slices, some large, come back whole and byte-exact,
 * the large ones sent by reference; pipelined fetches stay in order. */
static void test_fetch_large_records(void **state)
{
    fx_t *f = *state;
    int pfd = fx_client(f), cfd = fx_client(f);
    produce_big(f, pfd, "large", 12, big_len);
    uint8_t *buf = malloc(1 << 21);
    /* From offset 0, from the middle, and from offset 4 with room for a
     * few batches only; all sent before any answer is read. */
    const int64_t from[] = {0, 5, 4};
    const int32_t pmax[] = {1 << 20, 1 << 20, 70000};
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *p = build_fetch_max("large", from[i], 0, 10 + i, pmax[i], &len);
        fx_send_all(f, cfd, p, len);
        free(p);
    }
    const int want[] = {12, 7, -1};
    for (int i = 0; i < 3; i++) {
        int n = fx_recv_frame(f, cfd, buf, 1 << 21, 5000);
        assert_true(n > 0);
        assert_int_equal(kp_be32(buf), 10 + i);
        int got = check_big_records(buf, n, (int)from[i], big_len);
        if (want[i] >= 0)
            assert_int_equal(got, want[i]);
        else
            assert_true(got >= 1 && got < 8);
    }
    assert_true(f->srv->stats.resp_referred >= 2 * 30000);
    free(buf);
    close(pfd);
    close(cfd);
}

/* A connection closed with large answers still queued by reference: the
 * kept buffers are released once (ASan's leak check and double-free
 * detection watch this), and the server keeps serving. */
static void test_fetch_close_unsent(void **state)
{
    fx_t *f = *state;
    int pfd = fx_client(f), cfd = fx_client(f);
    produce_big(f, pfd, "unsent", 12, big_len);
    /* Far more than the socket holds: most stays in the output evbuffer. */
    for (int i = 0; i < 40; i++) {
        size_t len;
        uint8_t *p = build_fetch("unsent", 0, 0, 10 + i, &len);
        fx_send_all(f, cfd, p, len);
        free(p);
    }
    uint64_t before = f->srv->stats.resp_referred;
    for (int64_t end = fx_now_ms() + 5000;
         f->srv->stats.resp_referred < before + 10 * 300000 && fx_now_ms() < end;)
        fx_pump(f);
    assert_true(f->srv->stats.resp_referred >= before + 10 * 300000);
    int32_t open_before = f->srv->nconns_open;
    close(cfd);
    for (int64_t end = fx_now_ms() + 5000; f->srv->nconns_open == open_before && fx_now_ms() < end;)
        fx_pump(f);
    assert_int_equal(f->srv->nconns_open, open_before - 1);
    /* The same bytes are still served to another connection. */
    int fd = fx_client(f);
    size_t len;
    uint8_t *p = build_fetch("unsent", 0, 0, 99, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    uint8_t *buf = malloc(1 << 21);
    int n = fx_recv_frame(f, fd, buf, 1 << 21, 5000);
    assert_int_equal(check_big_records(buf, n, 0, big_len), 12);
    free(buf);
    close(fd);
    close(pfd);
}

/* A request at a version the table does not list, though the codec speaks
 * it: no answer, the connection closed (a fresh one, as that ends it). */
static void assert_refused(fx_t *f, int16_t key, int16_t ver, const void *body)
{
    const gw_api_t *api = gw_api_lookup(key);
    assert_non_null(api);
    assert_true(ver > api->max_ver);
    int fd = fx_client(f);
    uint64_t bad = f->srv->stats.bad_frames;
    size_t len;
    uint8_t *b = fx_build(key, ver, 99, body, &len);
    fx_send_all(f, fd, b, len);
    free(b);
    assert_true(fx_is_closed(f, fd, 2000));
    assert_int_equal(f->srv->stats.bad_frames, bad + 1);
    close(fd);
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
    return fx_call(f, fd, KP_API_METADATA, ver, &rq, a);
}

/* Metadata: which topics, auto-creation rules, names, the broker.  Topic
 * ids (Metadata v10+, Fetch v13) are not advertised: those are refused. */
static void test_metadata(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
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
    m = metadata(f, fd, 6, NULL, -1, true, &a); /* v1+: null = all */
    assert_int_equal(m->topics_count, 1);
    assert_true(kp_str_eq(m->topics[0].name, "m-created"));
    assert_int_equal(m->topics[0].partitions_count, 1);
    assert_non_null(m->cluster_id.ptr);
    assert_int_equal(m->brokers[0].port, f->srv->port);
    kp_metadata_request_t mrq;
    kp_metadata_request_init(&mrq);
    mrq.topics_count = -1;
    assert_refused(f, KP_API_METADATA, 12, &mrq);
    /* Fetch v13 would name the topic by its id. */
    kp_fetch_request_fetch_partition_t fp;
    kp_fetch_request_fetch_partition_init(&fp);
    fp.partition_max_bytes = 1024;
    kp_fetch_request_fetch_topic_t ft;
    kp_fetch_request_fetch_topic_init(&ft);
    ft.topic_id.b[15] = 1;
    ft.partitions = &fp;
    ft.partitions_count = 1;
    kp_fetch_request_t rq;
    kp_fetch_request_init(&rq);
    rq.max_bytes = 1024;
    rq.topics = &ft;
    rq.topics_count = 1;
    assert_refused(f, KP_API_FETCH, 13, &rq);
    kp_arena_deinit(&a);
    close(fd);
}

static void test_find_coordinator(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    kp_find_coordinator_request_t rq;
    kp_find_coordinator_request_init(&rq);
    rq.key = kp_str("g");
    kp_find_coordinator_response_t *r = fx_call(f, fd, KP_API_FIND_COORDINATOR, 2, &rq, &a);
    assert_int_equal(r->error_code, 0);
    assert_int_equal(r->node_id, 1);
    assert_int_equal(r->port, f->srv->port);
    rq.key_type = 1; /* transaction */
    r = fx_call(f, fd, KP_API_FIND_COORDINATOR, 2, &rq, &a);
    assert_int_equal(r->error_code, KP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert_int_equal(r->node_id, -1);
    /* v4 batches keys (KIP-699): one answer per key, in order. */
    kp_str_t keys[2] = {kp_str("a"), kp_str("b")};
    rq.key_type = 0;
    rq.coordinator_keys = keys;
    rq.coordinator_keys_count = 2;
    r = fx_call(f, fd, KP_API_FIND_COORDINATOR, 4, &rq, &a);
    assert_int_equal(r->coordinators_count, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(kp_str_eq(r->coordinators[i].key, i ? "b" : "a"));
        assert_int_equal(r->coordinators[i].error_code, 0);
        assert_int_equal(r->coordinators[i].node_id, 1);
        assert_int_equal(r->coordinators[i].port, f->srv->port);
    }
    /* Beyond the table: refused. */
    assert_refused(f, KP_API_FIND_COORDINATOR, 5, &rq);
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
    kp_list_offsets_response_t *r = fx_call(f, fd, KP_API_LIST_OFFSETS, 3, &rq, a);
    assert_int_equal(r->topics[0].partitions[0].error_code, 0);
    *ts_out = r->topics[0].partitions[0].timestamp;
    return r->topics[0].partitions[0].offset;
}

/* ListOffsets: latest, earliest, by timestamp and max timestamp (-3, v7);
 * v8 is not advertised: refused. */
static void test_list_offsets(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    uint8_t buf[512];
    for (int i = 1; i <= 2; i++) {
        size_t len;
        uint8_t *p = build_produce("listed", 1, i, false, &len);
        fx_send_all(f, fd, p, len);
        free(p);
        check_produce_resp(buf, fx_recv_frame(f, fd, buf, sizeof buf, 5000), i, 0, i - 1);
    }
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    int64_t ts;
    assert_int_equal(list_offset(f, fd, "listed", -1, &ts, &a), 2);
    assert_int_equal(list_offset(f, fd, "listed", -2, &ts, &a), 0);
    assert_int_equal(list_offset(f, fd, "listed", 1600000000000, &ts, &a), 0);
    assert_int_equal(ts, 1700000000000);
    assert_int_equal(list_offset(f, fd, "listed", 1800000000000, &ts, &a), -1);
    kp_list_offsets_request_list_offsets_partition_t lp;
    kp_list_offsets_request_list_offsets_partition_init(&lp);
    lp.timestamp = -3;
    kp_list_offsets_request_list_offsets_topic_t lt;
    kp_list_offsets_request_list_offsets_topic_init(&lt);
    lt.name = kp_str("listed");
    lt.partitions = &lp;
    lt.partitions_count = 1;
    kp_list_offsets_request_t rq;
    kp_list_offsets_request_init(&rq);
    rq.replica_id = -1;
    rq.topics = &lt;
    rq.topics_count = 1;
    /* v7: the first record with the largest timestamp (both have it) */
    kp_list_offsets_response_t *r = fx_call(f, fd, KP_API_LIST_OFFSETS, 7, &rq, &a);
    assert_int_equal(r->topics[0].partitions[0].error_code, 0);
    assert_int_equal(r->topics[0].partitions[0].offset, 0);
    assert_int_equal(r->topics[0].partitions[0].timestamp, 1700000000000);
    /* v4+: a current leader epoch above the leader's */
    lp.current_leader_epoch = 5;
    r = fx_call(f, fd, KP_API_LIST_OFFSETS, 5, &rq, &a);
    assert_int_equal(r->topics[0].partitions[0].error_code, KP_ERR_UNKNOWN_LEADER_EPOCH);
    assert_refused(f, KP_API_LIST_OFFSETS, 8, &rq);
    kp_arena_deinit(&a);
    close(fd);
}

/* OffsetCommit v7 without a group, then OffsetFetch v7 for some and for
 * all of the group's offsets.  OffsetFetch v8 (several groups at once) is
 * not advertised: refused. */
static void test_offsets_commit_fetch(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
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
    kp_offset_commit_response_t *cr = fx_call(f, fd, KP_API_OFFSET_COMMIT, 7, &oc, &a);
    assert_int_equal(cr->topics[0].partitions[0].error_code, 0);
    oc.member_id = kp_str("member-1"); /* not a member: the group has none */
    oc.generation_id_or_member_epoch = 3;
    cr = fx_call(f, fd, KP_API_OFFSET_COMMIT, 2, &oc, &a);
    assert_int_equal(cr->topics[0].partitions[0].error_code, KP_ERR_ILLEGAL_GENERATION);
    oc.generation_id_or_member_epoch = -1;
    ct.name = kp_str("no-such-topic");
    oc.member_id = kp_str("");
    cr = fx_call(f, fd, KP_API_OFFSET_COMMIT, 7, &oc, &a);
    assert_int_equal(cr->topics[0].partitions[0].error_code, KP_ERR_UNKNOWN_TOPIC_OR_PARTITION);

    int32_t parts[2] = {0, 3};
    kp_offset_fetch_request_offset_fetch_request_topic_t ft;
    kp_offset_fetch_request_offset_fetch_request_topic_init(&ft);
    ft.name = kp_str("committed");
    ft.partition_indexes = parts;
    ft.partition_indexes_count = 2;
    kp_offset_fetch_request_t of;
    kp_offset_fetch_request_init(&of);
    of.group_id = kp_str("g1");
    of.topics = &ft;
    of.topics_count = 1;
    kp_offset_fetch_response_t *fr = fx_call(f, fd, KP_API_OFFSET_FETCH, 7, &of, &a);
    assert_int_equal(fr->error_code, 0);
    assert_int_equal(fr->topics_count, 1);
    assert_int_equal(fr->topics[0].partitions_count, 2);
    assert_int_equal(fr->topics[0].partitions[0].committed_offset, 42);
    assert_true(kp_str_eq(fr->topics[0].partitions[0].metadata, "m"));
    assert_int_equal(fr->topics[0].partitions[1].committed_offset, -1);
    of.topics = NULL;
    of.topics_count = -1; /* every committed offset */
    fr = fx_call(f, fd, KP_API_OFFSET_FETCH, 7, &of, &a);
    assert_int_equal(fr->topics_count, 1);
    assert_true(kp_str_eq(fr->topics[0].name, "committed"));
    assert_int_equal(fr->topics[0].partitions_count, 1);
    assert_int_equal(fr->topics[0].partitions[0].committed_offset, 42);

    kp_offset_fetch_request_offset_fetch_request_topics_t gt;
    kp_offset_fetch_request_offset_fetch_request_topics_init(&gt);
    gt.name = kp_str("committed");
    gt.partition_indexes = parts;
    gt.partition_indexes_count = 2;
    kp_offset_fetch_request_offset_fetch_request_group_t groups[2];
    kp_offset_fetch_request_offset_fetch_request_group_init(&groups[0]);
    kp_offset_fetch_request_offset_fetch_request_group_init(&groups[1]);
    groups[0].group_id = kp_str("g1");
    groups[0].topics = &gt;
    groups[0].topics_count = 1;
    groups[1].group_id = kp_str("g1");
    groups[1].topics_count = -1;
    kp_offset_fetch_request_init(&of);
    of.groups = groups;
    of.groups_count = 2;
    /* v8: several groups in one request (KIP-709), answered in order. */
    kp_offset_fetch_response_t *gr = fx_call(f, fd, KP_API_OFFSET_FETCH, 8, &of, &a);
    assert_int_equal(gr->groups_count, 2);
    for (int g = 0; g < 2; g++) {
        assert_true(kp_str_eq(gr->groups[g].group_id, "g1"));
        assert_int_equal(gr->groups[g].error_code, 0);
        assert_int_equal(gr->groups[g].topics_count, 1);
        assert_int_equal(gr->groups[g].topics[0].partitions[0].committed_offset, 42);
    }
    assert_int_equal(gr->groups[0].topics[0].partitions_count, 2); /* asked: 0 and 3 */
    assert_int_equal(gr->groups[0].topics[0].partitions[1].committed_offset, -1);
    assert_int_equal(gr->groups[1].topics[0].partitions_count, 1); /* every committed one */
    assert_refused(f, KP_API_OFFSET_FETCH, 9, &of);
    kp_arena_deinit(&a);
    close(fd);
}

/* Stopping answers a waiting fetch at once and closes the connection. */
static void test_stop_answers_long_poll(void **state)
{
    fx_t *f = *state;
    int fd = fx_client(f);
    size_t len;
    uint8_t *p = build_produce("stopping", 1, 1, false, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    uint8_t buf[4096];
    fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    p = build_fetch("stopping", 1, 30000, 2, &len);
    fx_send_all(f, fd, p, len);
    free(p);
    /* Wait until the fetch is read and waiting. */
    for (int64_t end = fx_now_ms() + 5000; !f->srv->conns->head && fx_now_ms() < end;)
        fx_pump(f);
    assert_non_null(f->srv->conns->head);
    int stopped = 0;
    int64_t t0 = fx_now_ms();
    gw_server_stop(f->srv, fx_closed_cb, &stopped);
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_int_equal(kp_be32(buf), 2);
    assert_true(n > 0);
    assert_true(fx_is_closed(f, fd, 5000));
    fx_run_until(f, &stopped, 1);
    assert_true(fx_now_ms() - t0 < 5000);
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
    for (int64_t end = fx_now_ms() + 5000; f->srv->nconns_open < 1 && fx_now_ms() < end;)
        fx_pump(f);
    assert_int_equal(f->srv->nconns_open, 1);
    assert_int_equal(connect(b, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(b, F_SETFL, O_NONBLOCK);
    assert_true(fx_is_closed(f, b, 3000));
    fx_send_api_versions(f, a, 0, 1);
    uint8_t buf[256];
    assert_true(fx_recv_frame(f, a, buf, sizeof buf, 3000) > 0);
    assert_int_equal(f->srv->stats.conns_refused, 1);
    close(a);
    close(b);
}

int main(void)
{
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN); /* as the server: a client gone mid-answer is an EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test_setup_teardown(test_api_versions_v99, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_api_versions_v3, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_frame_too_small, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_frame_too_large, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_partial_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_receive_budget, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_frame_pieces, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_frame_cut_by_close, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_inflight_deep, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_budget_bounds_inflight, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rejects, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_inflight_cap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_produce_waits_for_space, fx_setup_tiny_buffer,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_produce_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_long_poll, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_large_records, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_close_unsent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_answers_long_poll, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_metadata, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_find_coordinator, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_offsets, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_offsets_commit_fetch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
