/*
 * test_group.c: the group coordinator driven with hand-built requests over
 * socketpairs against a real log over a temporary directory: join, sync,
 * heartbeat and leave flows, KIP-394 member ids, protocol selection,
 * metadata and assignment bytes carried unchanged, generation and member
 * checks of Heartbeat and OffsetCommit, session expiry, static membership,
 * ListGroups / DescribeGroups / DeleteGroups / OffsetDelete.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_api.h"
#include "gw_conn.h"
#include "gw_server.h"
#include "gw_test_fx.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static int32_t corr_next = 1;

/* Send a request without waiting; returns its correlation id. */
static int32_t send_req(fx_t *f, int fd, int16_t key, int16_t ver, const void *body)
{
    size_t len;
    int32_t corr = ++corr_next;
    uint8_t *b = fx_build(key, ver, corr, body, &len);
    fx_send_all(f, fd, b, len);
    free(b);
    return corr;
}

/* Receive the answer to @corr (decoded into @a); NULL on timeout. */
static void *recv_resp(fx_t *f, int fd, int16_t key, int16_t ver, int32_t corr, kp_arena_t *a,
                       int timeout_ms)
{
    static uint8_t buf[1 << 16];
    int n = fx_recv_frame(f, fd, buf, sizeof buf, timeout_ms);
    if (n == -2)
        return NULL;
    assert_true(n > 0);
    /* The response's strings and bytes point into its frame: keep a copy. */
    uint8_t *copy = kp_arena_alloc(a, (size_t)n);
    memcpy(copy, buf, (size_t)n);
    kp_reader_t r;
    kp_reader_init(&r, copy, (size_t)n);
    kp_response_header_t h;
    assert_int_equal(kp_response_header_decode(&r, a, kp_response_header_version(key, ver), &h),
                     KP_DECODE_OK);
    assert_int_equal(h.correlation_id, corr);
    const kp_api_desc_t *d = kp_api_desc(key);
    void *resp = kp_arena_alloc(a, d->response.size);
    assert_int_equal(d->response.decode(&r, a, ver, resp), KP_DECODE_OK);
    return resp;
}

/* Nothing arrives on @fd within @ms. */
static void assert_silent(fx_t *f, int fd, int ms)
{
    int64_t end = fx_now_ms() + ms;
    uint8_t b;
    while (fx_now_ms() < end) {
        ssize_t r = recv(fd, &b, 1, MSG_PEEK);
        assert_true(r < 0);
        fx_pump(f);
    }
}

static void pump_ms(fx_t *f, int ms)
{
    int64_t end = fx_now_ms() + ms;
    while (fx_now_ms() < end)
        fx_pump(f);
}

typedef struct proto {
    const char *name;
    const uint8_t *meta;
    int32_t len;
} proto_t;

static int32_t send_join(fx_t *f, int fd, int16_t ver, const char *group, const char *member,
                         const char *instance, int32_t session_ms, const proto_t *protos, int n)
{
    kp_join_group_request_t rq;
    kp_join_group_request_init(&rq);
    rq.group_id = kp_str(group);
    rq.session_timeout_ms = session_ms;
    rq.rebalance_timeout_ms = 2000;
    rq.member_id = kp_str(member);
    rq.group_instance_id = instance ? kp_str(instance) : KP_STR_NULL;
    rq.protocol_type = kp_str("consumer");
    kp_join_group_request_join_group_request_protocol_t ps[4];
    for (int i = 0; i < n; i++) {
        kp_join_group_request_join_group_request_protocol_init(&ps[i]);
        ps[i].name = kp_str(protos[i].name);
        ps[i].metadata = (kp_bytes_t){protos[i].meta, protos[i].len};
    }
    rq.protocols = ps;
    rq.protocols_count = n;
    return send_req(f, fd, KP_API_JOIN_GROUP, ver, &rq);
}

static kp_join_group_response_t *join_resp(fx_t *f, int fd, int16_t ver, int32_t corr,
                                           kp_arena_t *a)
{
    kp_join_group_response_t *r = recv_resp(f, fd, KP_API_JOIN_GROUP, ver, corr, a, 8000);
    assert_non_null(r);
    return r;
}

static int32_t send_sync(fx_t *f, int fd, const char *group, int32_t gen, const char *member,
                         const char *instance, const char **ids, const kp_bytes_t *asg, int n)
{
    kp_sync_group_request_t rq;
    kp_sync_group_request_init(&rq);
    rq.group_id = kp_str(group);
    rq.generation_id = gen;
    rq.member_id = kp_str(member);
    rq.group_instance_id = instance ? kp_str(instance) : KP_STR_NULL;
    kp_sync_group_request_sync_group_request_assignment_t as[4];
    for (int i = 0; i < n; i++) {
        kp_sync_group_request_sync_group_request_assignment_init(&as[i]);
        as[i].member_id = kp_str(ids[i]);
        as[i].assignment = asg[i];
    }
    rq.assignments = as;
    rq.assignments_count = n;
    return send_req(f, fd, KP_API_SYNC_GROUP, 3, &rq);
}

static int16_t heartbeat(fx_t *f, int fd, const char *group, int32_t gen, const char *member,
                         const char *instance)
{
    kp_heartbeat_request_t rq;
    kp_heartbeat_request_init(&rq);
    rq.group_id = kp_str(group);
    rq.generation_id = gen;
    rq.member_id = kp_str(member);
    rq.group_instance_id = instance ? kp_str(instance) : KP_STR_NULL;
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    kp_heartbeat_response_t *r = fx_call(f, fd, KP_API_HEARTBEAT, 3, &rq, &a);
    int16_t err = r->error_code;
    kp_arena_deinit(&a);
    return err;
}

static int16_t commit_inst(fx_t *f, int fd, const char *group, int32_t gen, const char *member,
                           const char *instance, const char *topic, int64_t offset)
{
    kp_offset_commit_request_t rq;
    kp_offset_commit_request_init(&rq);
    rq.group_id = kp_str(group);
    rq.generation_id_or_member_epoch = gen;
    rq.member_id = kp_str(member);
    rq.group_instance_id = instance ? kp_str(instance) : KP_STR_NULL;
    kp_offset_commit_request_offset_commit_request_topic_t t;
    kp_offset_commit_request_offset_commit_request_topic_init(&t);
    kp_offset_commit_request_offset_commit_request_partition_t p;
    kp_offset_commit_request_offset_commit_request_partition_init(&p);
    t.name = kp_str(topic);
    p.partition_index = 0;
    p.committed_offset = offset;
    p.committed_metadata = kp_str("md");
    t.partitions = &p;
    t.partitions_count = 1;
    rq.topics = &t;
    rq.topics_count = 1;
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    kp_offset_commit_response_t *r = fx_call(f, fd, KP_API_OFFSET_COMMIT, 7, &rq, &a);
    assert_int_equal(r->topics_count, 1);
    int16_t err = r->topics[0].partitions[0].error_code;
    kp_arena_deinit(&a);
    return err;
}

static int16_t commit(fx_t *f, int fd, const char *group, int32_t gen, const char *member,
                      const char *topic, int64_t offset)
{
    return commit_inst(f, fd, group, gen, member, NULL, topic, offset);
}

/* Committed offset of @group for @topic partition 0, -1 when none. */
static int64_t fetch_offset(fx_t *f, int fd, const char *group, const char *topic)
{
    kp_offset_fetch_request_t rq;
    kp_offset_fetch_request_init(&rq);
    rq.group_id = kp_str(group);
    kp_offset_fetch_request_offset_fetch_request_topic_t t;
    kp_offset_fetch_request_offset_fetch_request_topic_init(&t);
    int32_t part = 0;
    t.name = kp_str(topic);
    t.partition_indexes = &part;
    t.partition_indexes_count = 1;
    rq.topics = &t;
    rq.topics_count = 1;
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    kp_offset_fetch_response_t *r = fx_call(f, fd, KP_API_OFFSET_FETCH, 7, &rq, &a);
    int64_t off = r->topics[0].partitions[0].committed_offset;
    kp_arena_deinit(&a);
    return off;
}

static void topic_cb(st_err_t err, st_topic_t *topic, void *arg)
{
    (void)topic;
    assert_int_equal(err, ST_OK);
    (*(int *)arg)++;
}

static void make_topic(fx_t *f, const char *name)
{
    int done = 0;
    assert_int_equal(st_log_create_topic(f->log, name, strlen(name), 1, NULL, 0, topic_cb, &done),
                     0);
    fx_run_until(f, &done, 1);
}

/* A consumer Subscription (version 0) naming @topic. */
static kp_bytes_t subscription(uint8_t *buf, const char *topic)
{
    size_t tl = strlen(topic);
    uint8_t *p = buf;
    *p++ = 0, *p++ = 0;                     /* version */
    *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 1; /* one topic */
    *p++ = 0, *p++ = (uint8_t)tl;
    memcpy(p, topic, tl);
    p += tl;
    *p++ = 0xff, *p++ = 0xff, *p++ = 0xff, *p++ = 0xff; /* user data: null */
    return (kp_bytes_t){buf, (int32_t)(p - buf)};
}

static int group_setup(void **state)
{
    fx_setup(state);
    fx_t *f = *state;
    f->cfg.group_initial_rebalance_delay_ms = 0;
    f->cfg.group_min_session_timeout_ms = 100;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

/* KIP-394, one member, then a second one: protocol chosen among those
 * both support, metadata and assignments byte for byte, generation and
 * member checks, a batched leave. */
static void test_join_sync_flow(void **state)
{
    fx_t *f = *state;
    make_topic(f, "t");
    int a = fx_client(f), b = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    static const uint8_t meta_a[] = {0, 1, 0xff, 0, 7, 'b', 'y', 't', 'e', 's'};
    static const uint8_t meta_a2[] = {9, 8, 7};
    static const uint8_t meta_b[] = {0, 3, 0, 0, 1};
    proto_t pa[] = {{"cooperative-sticky", meta_a, sizeof meta_a}, {"range", meta_a2, 3}};
    proto_t pb[] = {{"range", meta_b, sizeof meta_b}, {"roundrobin", meta_b, 2}};

    /* v5 with no member id: MEMBER_ID_REQUIRED and an id. */
    int32_t c = send_join(f, a, 5, "g", "", NULL, 6000, pa, 2);
    kp_join_group_response_t *j = join_resp(f, a, 5, c, &ar);
    assert_int_equal(j->error_code, KP_ERR_MEMBER_ID_REQUIRED);
    assert_true(j->member_id.len > 5);
    char ida[256];
    snprintf(ida, sizeof ida, "%.*s", j->member_id.len, j->member_id.ptr);
    assert_int_equal(strncmp(ida, "test-", 5), 0); /* client id, '-', uuid */

    c = send_join(f, a, 5, "g", ida, NULL, 6000, pa, 2);
    j = join_resp(f, a, 5, c, &ar);
    assert_int_equal(j->error_code, KP_ERR_NONE);
    assert_int_equal(j->generation_id, 1);
    assert_true(kp_str_eq(j->protocol_name, "cooperative-sticky"));
    assert_true(kp_str_eq(j->leader, ida));
    assert_int_equal(j->members_count, 1);
    assert_int_equal(j->members[0].metadata.len, sizeof meta_a);
    assert_memory_equal(j->members[0].metadata.ptr, meta_a, sizeof meta_a);

    /* Heartbeat before the sync is fine; checks of generation and id. */
    assert_int_equal(heartbeat(f, a, "g", 1, ida, NULL), KP_ERR_NONE);
    assert_int_equal(heartbeat(f, a, "g", 2, ida, NULL), KP_ERR_ILLEGAL_GENERATION);
    assert_int_equal(heartbeat(f, a, "g", 1, "nobody", NULL), KP_ERR_UNKNOWN_MEMBER_ID);
    assert_int_equal(heartbeat(f, a, "other", 1, ida, NULL), KP_ERR_UNKNOWN_MEMBER_ID);
    /* Commits while CompletingRebalance: REBALANCE_IN_PROGRESS. */
    assert_int_equal(commit(f, a, "g", 1, ida, "t", 5), KP_ERR_REBALANCE_IN_PROGRESS);

    static const uint8_t asg_a[] = {0, 1, 2, 3, 0xfe};
    const char *ids1[] = {ida};
    kp_bytes_t asg1[] = {{asg_a, sizeof asg_a}};
    c = send_sync(f, a, "g", 1, ida, NULL, ids1, asg1, 1);
    kp_sync_group_response_t *s = recv_resp(f, a, KP_API_SYNC_GROUP, 3, c, &ar, 5000);
    assert_non_null(s);
    assert_int_equal(s->error_code, KP_ERR_NONE);
    assert_int_equal(s->assignment.len, sizeof asg_a);
    assert_memory_equal(s->assignment.ptr, asg_a, sizeof asg_a);

    /* OffsetCommit: the right generation and member, else the errors. */
    assert_int_equal(commit(f, a, "g", 1, ida, "t", 5), KP_ERR_NONE);
    assert_int_equal(commit(f, a, "g", 0, ida, "t", 6), KP_ERR_ILLEGAL_GENERATION);
    assert_int_equal(commit(f, a, "g", 1, "nobody", "t", 6), KP_ERR_UNKNOWN_MEMBER_ID);
    assert_int_equal(commit(f, a, "g", -1, "", "t", 6), KP_ERR_UNKNOWN_MEMBER_ID);
    assert_int_equal(fetch_offset(f, a, "g", "t"), 5);
    /* No group here: commits without a group only. */
    assert_int_equal(commit(f, a, "simple", -1, "", "t", 3), KP_ERR_NONE);
    assert_int_equal(commit(f, a, "simple", 4, "", "t", 3), KP_ERR_ILLEGAL_GENERATION);
    assert_int_equal(commit(f, a, "simple", -1, "m", "t", 3), KP_ERR_NONE); /* as Kafka */

    /* A second member (v2: no id round trip): only "range" is common. */
    int32_t cb = send_join(f, b, 2, "g", "", NULL, 6000, pb, 2);
    assert_silent(f, b, 100); /* waits for the others to rejoin */
    assert_int_equal(heartbeat(f, a, "g", 1, ida, NULL), KP_ERR_REBALANCE_IN_PROGRESS);
    c = send_join(f, a, 5, "g", ida, NULL, 6000, pa, 2);
    j = join_resp(f, a, 5, c, &ar);
    kp_join_group_response_t *jb = join_resp(f, b, 2, cb, &ar);
    assert_int_equal(j->error_code, KP_ERR_NONE);
    assert_int_equal(jb->error_code, KP_ERR_NONE);
    assert_int_equal(j->generation_id, 2);
    assert_int_equal(jb->generation_id, 2);
    assert_true(kp_str_eq(j->protocol_name, "range"));
    assert_true(kp_str_eq(jb->protocol_name, "range"));
    assert_true(kp_str_eq(jb->leader, ida));
    assert_int_equal(jb->members_count, 0);
    assert_int_equal(j->members_count, 2);
    char idb[256];
    snprintf(idb, sizeof idb, "%.*s", jb->member_id.len, jb->member_id.ptr);
    for (int i = 0; i < 2; i++) {
        bool is_a = kp_str_eq(j->members[i].member_id, ida);
        assert_true(is_a || kp_str_eq(j->members[i].member_id, idb));
        const uint8_t *want = is_a ? meta_a2 : meta_b;
        int32_t wl = is_a ? 3 : (int32_t)sizeof meta_b;
        assert_int_equal(j->members[i].metadata.len, wl);
        assert_memory_equal(j->members[i].metadata.ptr, want, (size_t)wl);
    }

    /* The follower's SyncGroup waits for the leader's. */
    cb = send_sync(f, b, "g", 2, idb, NULL, NULL, NULL, 0);
    assert_silent(f, b, 100);
    static const uint8_t asg_b[] = {'B', 0, 1};
    const char *ids2[] = {idb, ida};
    kp_bytes_t asg2[] = {{asg_b, sizeof asg_b}, {asg_a, 2}};
    c = send_sync(f, a, "g", 2, ida, NULL, ids2, asg2, 2);
    s = recv_resp(f, a, KP_API_SYNC_GROUP, 3, c, &ar, 5000);
    kp_sync_group_response_t *sb = recv_resp(f, b, KP_API_SYNC_GROUP, 3, cb, &ar, 5000);
    assert_non_null(s);
    assert_non_null(sb);
    assert_int_equal(sb->error_code, KP_ERR_NONE);
    assert_int_equal(sb->assignment.len, sizeof asg_b);
    assert_memory_equal(sb->assignment.ptr, asg_b, sizeof asg_b);
    assert_int_equal(s->assignment.len, 2);
    /* A stale generation's SyncGroup. */
    c = send_sync(f, b, "g", 1, idb, NULL, NULL, NULL, 0);
    sb = recv_resp(f, b, KP_API_SYNC_GROUP, 3, c, &ar, 5000);
    assert_int_equal(sb->error_code, KP_ERR_ILLEGAL_GENERATION);

    /* LeaveGroup v3, batched: one known member and one unknown. */
    kp_leave_group_request_t lq;
    kp_leave_group_request_init(&lq);
    lq.group_id = kp_str("g");
    kp_leave_group_request_member_identity_t mi[2];
    kp_leave_group_request_member_identity_init(&mi[0]);
    kp_leave_group_request_member_identity_init(&mi[1]);
    mi[0].member_id = kp_str(idb);
    mi[1].member_id = kp_str("ghost");
    lq.members = mi;
    lq.members_count = 2;
    kp_leave_group_response_t *lr = fx_call(f, a, KP_API_LEAVE_GROUP, 3, &lq, &ar);
    assert_int_equal(lr->error_code, KP_ERR_NONE);
    assert_int_equal(lr->members_count, 2);
    assert_int_equal(lr->members[0].error_code, KP_ERR_NONE);
    assert_int_equal(lr->members[1].error_code, KP_ERR_UNKNOWN_MEMBER_ID);
    /* b left: a rebalance for a alone. */
    assert_int_equal(heartbeat(f, a, "g", 2, ida, NULL), KP_ERR_REBALANCE_IN_PROGRESS);
    assert_int_equal(heartbeat(f, b, "g", 2, idb, NULL), KP_ERR_UNKNOWN_MEMBER_ID);
    c = send_join(f, a, 5, "g", ida, NULL, 6000, pa, 2);
    j = join_resp(f, a, 5, c, &ar);
    assert_int_equal(j->generation_id, 3);
    assert_true(kp_str_eq(j->protocol_name, "cooperative-sticky"));
    /* LeaveGroup v1 for the last member. */
    kp_leave_group_request_init(&lq);
    lq.group_id = kp_str("g");
    lq.member_id = kp_str(ida);
    lr = fx_call(f, a, KP_API_LEAVE_GROUP, 1, &lq, &ar);
    assert_int_equal(lr->error_code, KP_ERR_NONE);
    lr = fx_call(f, a, KP_API_LEAVE_GROUP, 1, &lq, &ar);
    assert_int_equal(lr->error_code, KP_ERR_UNKNOWN_MEMBER_ID);
    /* Empty again: commits without a group are accepted. */
    assert_int_equal(commit(f, a, "g", -1, "", "t", 9), KP_ERR_NONE);
    assert_int_equal(fetch_offset(f, a, "g", "t"), 9);
    kp_arena_deinit(&ar);
    close(a);
    close(b);
}

/* Bad joins: session timeout bounds, protocol type, unknown member. */
static void test_join_errors(void **state)
{
    fx_t *f = *state;
    int a = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    static const uint8_t m[] = {1};
    proto_t p[] = {{"range", m, 1}};
    proto_t q[] = {{"other", m, 1}};
    int32_t c = send_join(f, a, 5, "g", "", NULL, 50, p, 1);
    assert_int_equal(join_resp(f, a, 5, c, &ar)->error_code, KP_ERR_INVALID_SESSION_TIMEOUT);
    c = send_join(f, a, 5, "", "", NULL, 6000, p, 1);
    assert_int_equal(join_resp(f, a, 5, c, &ar)->error_code, KP_ERR_INVALID_GROUP_ID);
    c = send_join(f, a, 5, "g", "who", NULL, 6000, p, 1);
    assert_int_equal(join_resp(f, a, 5, c, &ar)->error_code, KP_ERR_UNKNOWN_MEMBER_ID);
    c = send_join(f, a, 1, "g", "", NULL, 6000, p, 1);
    kp_join_group_response_t *j = join_resp(f, a, 1, c, &ar);
    assert_int_equal(j->error_code, KP_ERR_NONE);
    /* No protocol in common with the member already there. */
    c = send_join(f, a, 1, "g", "", NULL, 6000, q, 1);
    assert_int_equal(join_resp(f, a, 1, c, &ar)->error_code, KP_ERR_INCONSISTENT_GROUP_PROTOCOL);
    kp_arena_deinit(&ar);
    close(a);
}

/* A member that stops heartbeating is removed after its session timeout;
 * the other one is told to rejoin and gets a generation of its own. */
static void test_session_expiry(void **state)
{
    fx_t *f = *state;
    int a = fx_client(f), b = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    static const uint8_t m[] = {1, 2};
    proto_t p[] = {{"range", m, 2}};
    int32_t ca = send_join(f, a, 2, "g", "", NULL, 6000, p, 1);
    kp_join_group_response_t *ja = join_resp(f, a, 2, ca, &ar);
    assert_int_equal(ja->generation_id, 1); /* alone: no initial delay here */
    char ida[256];
    snprintf(ida, sizeof ida, "%.*s", ja->member_id.len, ja->member_id.ptr);
    int32_t cb = send_join(f, b, 2, "g", "", NULL, 400, p, 1);
    pump_ms(f, 20);
    assert_int_equal(heartbeat(f, a, "g", 1, ida, NULL), KP_ERR_REBALANCE_IN_PROGRESS);
    ca = send_join(f, a, 2, "g", ida, NULL, 6000, p, 1);
    ja = join_resp(f, a, 2, ca, &ar);
    kp_join_group_response_t *jb = join_resp(f, b, 2, cb, &ar);
    int32_t gen = jb->generation_id;
    assert_int_equal(gen, 2);
    assert_int_equal(ja->generation_id, gen);
    assert_int_equal(ja->members_count, 2);
    /* b goes silent; a keeps heartbeating. */
    int16_t err = KP_ERR_NONE;
    int64_t start = fx_now_ms();
    while (err == KP_ERR_NONE && fx_now_ms() - start < 3000) {
        pump_ms(f, 50);
        err = heartbeat(f, a, "g", gen, ida, NULL);
    }
    int64_t took = fx_now_ms() - start;
    assert_int_equal(err, KP_ERR_REBALANCE_IN_PROGRESS);
    assert_true(took >= 350);
    ca = send_join(f, a, 2, "g", ida, NULL, 6000, p, 1);
    ja = join_resp(f, a, 2, ca, &ar);
    assert_int_equal(ja->error_code, KP_ERR_NONE);
    assert_int_equal(ja->generation_id, gen + 1);
    assert_int_equal(ja->members_count, 1);
    kp_arena_deinit(&ar);
    close(a);
    close(b);
}

/* A static member restarting with the same group.instance.id gets a new
 * member id and its old assignment without a rebalance; the old id is
 * fenced. */
static void test_static_member(void **state)
{
    fx_t *f = *state;
    int a = fx_client(f), a2 = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    static const uint8_t m[] = {4, 5, 6};
    proto_t p[] = {{"range", m, 3}};
    /* Static members skip MEMBER_ID_REQUIRED (KIP-394). */
    int32_t c = send_join(f, a, 5, "g", "", "inst-1", 6000, p, 1);
    kp_join_group_response_t *j = join_resp(f, a, 5, c, &ar);
    assert_int_equal(j->error_code, KP_ERR_NONE);
    assert_int_equal(j->members_count, 1);
    assert_true(kp_str_eq(j->members[0].group_instance_id, "inst-1"));
    char id1[256];
    snprintf(id1, sizeof id1, "%.*s", j->member_id.len, j->member_id.ptr);
    static const uint8_t asg[] = {7, 7, 7};
    const char *ids[] = {id1};
    kp_bytes_t as[] = {{asg, 3}};
    c = send_sync(f, a, "g", 1, id1, "inst-1", ids, as, 1);
    assert_int_equal(
        ((kp_sync_group_response_t *)recv_resp(f, a, KP_API_SYNC_GROUP, 3, c, &ar, 5000))
            ->error_code,
        KP_ERR_NONE);

    /* The restart: same instance id, no member id. */
    c = send_join(f, a2, 5, "g", "", "inst-1", 6000, p, 1);
    j = join_resp(f, a2, 5, c, &ar);
    assert_int_equal(j->error_code, KP_ERR_NONE);
    assert_int_equal(j->generation_id, 1); /* no rebalance */
    char id2[256];
    snprintf(id2, sizeof id2, "%.*s", j->member_id.len, j->member_id.ptr);
    assert_string_not_equal(id1, id2);
    c = send_sync(f, a2, "g", 1, id2, "inst-1", NULL, NULL, 0);
    kp_sync_group_response_t *s = recv_resp(f, a2, KP_API_SYNC_GROUP, 3, c, &ar, 5000);
    assert_int_equal(s->error_code, KP_ERR_NONE);
    assert_int_equal(s->assignment.len, 3);
    assert_memory_equal(s->assignment.ptr, asg, 3);
    assert_int_equal(heartbeat(f, a2, "g", 1, id2, "inst-1"), KP_ERR_NONE);
    /* The old incarnation is fenced. */
    assert_int_equal(heartbeat(f, a, "g", 1, id1, "inst-1"), KP_ERR_FENCED_INSTANCE_ID);
    make_topic(f, "t");
    assert_int_equal(commit_inst(f, a, "g", 1, id1, "inst-1", "t", 1), KP_ERR_FENCED_INSTANCE_ID);
    assert_int_equal(commit_inst(f, a2, "g", 1, id2, "inst-1", "t", 1), KP_ERR_NONE);
    c = send_join(f, a, 5, "g", id1, "inst-1", 6000, p, 1);
    assert_int_equal(join_resp(f, a, 5, c, &ar)->error_code, KP_ERR_FENCED_INSTANCE_ID);
    kp_arena_deinit(&ar);
    close(a);
    close(a2);
}

/* A JoinGroup waiting for the rest of its group is answered when its
 * connection closes (nothing left dangling), and the group goes on. */
static void test_waiting_join_conn_closed(void **state)
{
    fx_t *f = *state;
    f->cfg.group_initial_rebalance_delay_ms = 300;
    int a = fx_client(f);
    static const uint8_t m[] = {1};
    proto_t p[] = {{"range", m, 1}};
    send_join(f, a, 2, "g", "", NULL, 300, p, 1);
    pump_ms(f, 50);
    close(a);         /* while it waits for the initial delay */
    pump_ms(f, 1200); /* delay, then the session timeout */
    int b = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    kp_list_groups_request_t lq;
    kp_list_groups_request_init(&lq);
    kp_list_groups_response_t *l = fx_call(f, b, KP_API_LIST_GROUPS, 2, &lq, &ar);
    assert_int_equal(l->error_code, KP_ERR_NONE);
    assert_int_equal(l->groups_count, 0); /* the member timed out: freed */
    kp_arena_deinit(&ar);
    close(b);
}

/* group.initial.rebalance.delay.ms: members arriving during the delay of
 * an empty group's first rebalance share its first generation; once the
 * group is empty again, a member of another protocol type may start it. */
static void test_initial_delay(void **state)
{
    fx_t *f = *state;
    f->cfg.group_initial_rebalance_delay_ms = 400;
    int a = fx_client(f), b = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    static const uint8_t m[] = {1};
    proto_t p[] = {{"range", m, 1}};
    int64_t t0 = fx_now_ms();
    int32_t ca = send_join(f, a, 2, "g", "", NULL, 6000, p, 1);
    assert_silent(f, a, 150);
    int32_t cb = send_join(f, b, 2, "g", "", NULL, 6000, p, 1);
    kp_join_group_response_t *ja = join_resp(f, a, 2, ca, &ar);
    kp_join_group_response_t *jb = join_resp(f, b, 2, cb, &ar);
    int64_t took = fx_now_ms() - t0;
    assert_true(took >= 750); /* 400 ms, then 400 more: b arrived during the first */
    assert_int_equal(ja->generation_id, 1);
    assert_int_equal(jb->generation_id, 1);
    assert_int_equal(ja->members_count + jb->members_count, 2);
    /* Both leave: the group is gone, and another protocol type is fine. */
    kp_leave_group_request_t lq;
    kp_leave_group_request_init(&lq);
    lq.group_id = kp_str("g");
    kp_leave_group_request_member_identity_t mi[2];
    kp_leave_group_request_member_identity_init(&mi[0]);
    kp_leave_group_request_member_identity_init(&mi[1]);
    mi[0].member_id = ja->member_id;
    mi[1].member_id = jb->member_id;
    lq.members = mi;
    lq.members_count = 2;
    kp_leave_group_response_t *lr = fx_call(f, a, KP_API_LEAVE_GROUP, 3, &lq, &ar);
    assert_int_equal(lr->members[0].error_code, KP_ERR_NONE);
    assert_int_equal(lr->members[1].error_code, KP_ERR_NONE);
    f->cfg.group_initial_rebalance_delay_ms = 0;
    kp_join_group_request_t rq;
    kp_join_group_request_init(&rq);
    rq.group_id = kp_str("g");
    rq.session_timeout_ms = 6000;
    rq.rebalance_timeout_ms = 2000;
    rq.member_id = kp_str("");
    rq.protocol_type = kp_str("connect");
    kp_join_group_request_join_group_request_protocol_t pr;
    kp_join_group_request_join_group_request_protocol_init(&pr);
    pr.name = kp_str("default");
    pr.metadata = (kp_bytes_t){m, 1};
    rq.protocols = &pr;
    rq.protocols_count = 1;
    kp_join_group_response_t *j = fx_call(f, a, KP_API_JOIN_GROUP, 2, &rq, &ar);
    assert_int_equal(j->error_code, KP_ERR_NONE);
    assert_int_equal(j->generation_id, 1);
    assert_true(kp_str_eq(j->protocol_name, "default"));
    kp_arena_deinit(&ar);
    close(a);
    close(b);
}

/* ListGroups, DescribeGroups, DeleteGroups and OffsetDelete. */
static void test_admin(void **state)
{
    fx_t *f = *state;
    make_topic(f, "t");
    make_topic(f, "u");
    int a = fx_client(f);
    kp_arena_t ar;
    kp_arena_init(&ar, SIZE_MAX);
    /* "stored": offsets only.  "live": one member subscribed to t. */
    assert_int_equal(commit(f, a, "stored", -1, "", "t", 1), KP_ERR_NONE);
    assert_int_equal(commit(f, a, "stored", -1, "", "u", 2), KP_ERR_NONE);
    uint8_t sb[64];
    kp_bytes_t sub = subscription(sb, "t");
    proto_t p[] = {{"range", sub.ptr, sub.len}};
    int32_t c = send_join(f, a, 2, "live", "", NULL, 6000, p, 1);
    kp_join_group_response_t *j = join_resp(f, a, 2, c, &ar);
    char id[256];
    snprintf(id, sizeof id, "%.*s", j->member_id.len, j->member_id.ptr);
    const char *ids[] = {id};
    kp_bytes_t as[] = {{sb, 3}};
    c = send_sync(f, a, "live", 1, id, NULL, ids, as, 1);
    assert_non_null(recv_resp(f, a, KP_API_SYNC_GROUP, 3, c, &ar, 5000));
    assert_int_equal(commit(f, a, "live", 1, id, "t", 10), KP_ERR_NONE);
    assert_int_equal(commit(f, a, "live", 1, id, "u", 11), KP_ERR_NONE);

    kp_list_groups_request_t lq;
    kp_list_groups_request_init(&lq);
    kp_list_groups_response_t *l = fx_call(f, a, KP_API_LIST_GROUPS, 2, &lq, &ar);
    assert_int_equal(l->groups_count, 2);
    for (int i = 0; i < 2; i++) {
        bool live = kp_str_eq(l->groups[i].group_id, "live");
        assert_true(live || kp_str_eq(l->groups[i].group_id, "stored"));
        assert_true(kp_str_eq(l->groups[i].protocol_type, live ? "consumer" : ""));
    }

    kp_describe_groups_request_t dq;
    kp_describe_groups_request_init(&dq);
    kp_str_t names[] = {kp_str("live"), kp_str("stored"), kp_str("nope")};
    dq.groups = names;
    dq.groups_count = 3;
    kp_describe_groups_response_t *d = fx_call(f, a, KP_API_DESCRIBE_GROUPS, 2, &dq, &ar);
    assert_int_equal(d->groups_count, 3);
    assert_true(kp_str_eq(d->groups[0].group_state, "Stable"));
    assert_true(kp_str_eq(d->groups[0].protocol_data, "range"));
    assert_int_equal(d->groups[0].members_count, 1);
    assert_int_equal(d->groups[0].members[0].member_assignment.len, 3);
    assert_int_equal(d->groups[0].members[0].member_metadata.len, sub.len);
    assert_true(kp_str_eq(d->groups[1].group_state, "Empty"));
    assert_true(kp_str_eq(d->groups[2].group_state, "Dead"));
    assert_int_equal(d->groups[2].error_code, KP_ERR_NONE);

    /* OffsetDelete: subscribed topic refused, the other deleted. */
    kp_offset_delete_request_t oq;
    kp_offset_delete_request_init(&oq);
    kp_offset_delete_request_offset_delete_request_topic_t ot[3];
    kp_offset_delete_request_offset_delete_request_partition_t op = {.partition_index = 0};
    const char *tn[] = {"t", "u", "missing"};
    for (int i = 0; i < 3; i++)
        ot[i] = (kp_offset_delete_request_offset_delete_request_topic_t){
            .name = kp_str(tn[i]), .partitions = &op, .partitions_count = 1};
    oq.group_id = kp_str("live");
    oq.topics = ot;
    oq.topics_count = 3;
    kp_offset_delete_response_t *o = fx_call(f, a, KP_API_OFFSET_DELETE, 0, &oq, &ar);
    assert_int_equal(o->error_code, KP_ERR_NONE);
    assert_int_equal(o->topics[0].partitions[0].error_code, KP_ERR_GROUP_SUBSCRIBED_TO_TOPIC);
    assert_int_equal(o->topics[1].partitions[0].error_code, KP_ERR_NONE);
    assert_int_equal(o->topics[2].partitions[0].error_code, KP_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    assert_int_equal(fetch_offset(f, a, "live", "t"), 10);
    assert_int_equal(fetch_offset(f, a, "live", "u"), -1);
    oq.group_id = kp_str("nope");
    o = fx_call(f, a, KP_API_OFFSET_DELETE, 0, &oq, &ar);
    assert_int_equal(o->error_code, KP_ERR_GROUP_ID_NOT_FOUND);
    oq.group_id = kp_str("stored");
    oq.topics_count = 1;
    o = fx_call(f, a, KP_API_OFFSET_DELETE, 0, &oq, &ar);
    assert_int_equal(o->topics[0].partitions[0].error_code, KP_ERR_NONE);
    assert_int_equal(fetch_offset(f, a, "stored", "t"), -1);
    assert_int_equal(fetch_offset(f, a, "stored", "u"), 2);

    /* DeleteGroups. */
    kp_delete_groups_request_t gq;
    kp_delete_groups_request_init(&gq);
    gq.groups_names = names;
    gq.groups_names_count = 3;
    kp_delete_groups_response_t *g = fx_call(f, a, KP_API_DELETE_GROUPS, 1, &gq, &ar);
    assert_int_equal(g->results_count, 3);
    assert_int_equal(g->results[0].error_code, KP_ERR_NON_EMPTY_GROUP);
    assert_int_equal(g->results[1].error_code, KP_ERR_NONE);
    assert_int_equal(g->results[2].error_code, KP_ERR_GROUP_ID_NOT_FOUND);
    assert_int_equal(fetch_offset(f, a, "stored", "u"), -1);
    g = fx_call(f, a, KP_API_DELETE_GROUPS, 1, &gq, &ar);
    assert_int_equal(g->results[1].error_code, KP_ERR_GROUP_ID_NOT_FOUND);
    l = fx_call(f, a, KP_API_LIST_GROUPS, 2, &lq, &ar);
    assert_int_equal(l->groups_count, 1);
    kp_arena_deinit(&ar);
    close(a);
}

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_sync_flow, group_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_join_errors, group_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_session_expiry, group_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_static_member, group_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_waiting_join_conn_closed, group_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_initial_delay, group_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_admin, group_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
