/*
 * gw_group.c: the consumer-group coordinator (see gw_group.h), after Kafka's
 * GroupCoordinator (2.8) and librdkafka's mock broker (rdkafka_mock_cgrp.c).
 *
 * Timers: each member has one (session.timeout.ms from its last heartbeat,
 * join, sync or commit; a member waiting in JoinGroup is kept alive), each
 * group one (the end of the join phase: group.initial.rebalance.delay.ms
 * for a group that was empty, extended while new members keep arriving, up
 * to the rebalance timeout; otherwise the longest rebalance timeout of the
 * members, or earlier once every member has rejoined).
 *
 * Entry points never free a group from inside the state machine: they call
 * maybe_free() last, which drops a group with no members, no members
 * waiting for an id and no timer.
 */
#include "gw_group.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "gw_api.h"
#include "gw_log.h"
#include "gw_server.h"

typedef enum gg_state {
    GG_EMPTY,
    GG_PREPARING,  /* PreparingRebalance: collecting JoinGroups */
    GG_COMPLETING, /* CompletingRebalance: waiting for the leader's SyncGroup */
    GG_STABLE,
} gg_state_t;

static const char *const state_names[] = {"Empty", "PreparingRebalance", "CompletingRebalance",
                                          "Stable"};

typedef struct gg_proto {
    char *name;
    uint8_t *meta;
    int32_t len;
} gg_proto_t;

typedef struct gg_member gg_member_t;
struct gg_member {
    gg_member_t *next;
    gw_group_t *group;
    char *id;
    char *instance_id; /* NULL: dynamic member */
    char *client_id;
    char *client_host;
    int32_t session_ms;
    int32_t rebalance_ms;
    gg_proto_t *protos;
    int32_t nprotos;
    uint8_t *assignment;
    int32_t alen;
    gw_req_t *join_req; /* JoinGroup waiting for the join phase to end */
    gw_req_t *sync_req; /* SyncGroup waiting for the leader's */
    bool pending;       /* KIP-394: got MEMBER_ID_REQUIRED, has not joined yet */
    bool is_new;        /* joined in the current join phase */
    struct event *timer;
};

struct gw_group {
    gw_group_t *next;
    gw_coord_t *coord;
    char *id;
    gg_state_t state;
    int32_t generation;
    char *protocol_type;  /* NULL until a member joins */
    bool type_stored;     /* protocol_type sent to the store (st_log_set_group_type) */
    char *protocol;       /* chosen for the generation; NULL before */
    char *leader;         /* member id; NULL when none */
    gg_member_t *members; /* joined and pending ones, in join order */
    struct event *timer;  /* end of the join phase */
    bool timer_armed;
    bool initial;          /* the join phase is the delayed first one */
    bool new_during_delay; /* a new member arrived during the initial delay */
    int64_t delay_left_ms; /* rebalance timeout left for extending the initial delay */
};

struct gw_coord {
    gw_server_t *srv;
    gw_group_t *groups;
};

/* ---------------------------------------------------------------- helpers */

static char *dup_str(kp_str_t s)
{
    size_t n = s.len > 0 ? (size_t)s.len : 0;
    char *p = malloc(n + 1);
    if (!p)
        abort();
    if (n)
        memcpy(p, s.ptr, n);
    p[n] = '\0';
    return p;
}

static char *dup_cstr(const char *s)
{
    return dup_str(kp_str(s));
}

static bool str_is(kp_str_t a, const char *b)
{
    return b && a.len >= 0 && kp_str_eq(a, b);
}

static kp_str_t view(const char *s)
{
    return s ? kp_str(s) : KP_STR_NULL;
}

static void new_member_id(kp_str_t client_id, char *out, size_t cap)
{
    uint8_t b[16] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        static uint64_t ctr;
        ctr++;
        memcpy(b, &ctr, sizeof ctr);
    }
    int n = client_id.len > 0 ? (client_id.len > 200 ? 200 : client_id.len) : 0;
    snprintf(out, cap, "%.*s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             n, n ? client_id.ptr : "", b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
             b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int32_t cfg_initial_delay(const gw_group_t *g)
{
    return g->coord->srv->cfg->group_initial_rebalance_delay_ms;
}

/* ---------------------------------------------------------------- members */

static gg_member_t *member_find(const gw_group_t *g, kp_str_t id)
{
    if (id.len <= 0)
        return NULL;
    for (gg_member_t *m = g->members; m; m = m->next)
        if (kp_str_eq(id, m->id))
            return m;
    return NULL;
}

static gg_member_t *member_by_instance(const gw_group_t *g, kp_str_t inst)
{
    if (inst.len < 0)
        return NULL;
    for (gg_member_t *m = g->members; m; m = m->next)
        if (m->instance_id && !m->pending && kp_str_eq(inst, m->instance_id))
            return m;
    return NULL;
}

/* Kafka's isStaticMemberFenced: @inst belongs to a member other than @id. */
static bool fenced(const gw_group_t *g, kp_str_t id, kp_str_t inst)
{
    const gg_member_t *m = member_by_instance(g, inst);
    return m && !(id.len >= 0 && kp_str_eq(id, m->id));
}

static size_t joined_count(const gw_group_t *g)
{
    size_t n = 0;
    for (const gg_member_t *m = g->members; m; m = m->next)
        n += !m->pending;
    return n;
}

static void protos_free(gg_member_t *m)
{
    for (int32_t i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    m->protos = NULL;
    m->nprotos = 0;
}

static void set_assignment(gg_member_t *m, const uint8_t *p, int32_t len)
{
    free(m->assignment);
    m->assignment = NULL;
    m->alen = 0;
    if (len > 0) {
        m->assignment = malloc((size_t)len);
        if (!m->assignment)
            abort();
        memcpy(m->assignment, p, (size_t)len);
        m->alen = len;
    }
}

static void member_timer_cb(evutil_socket_t fd, short what, void *arg);

static void touch(gg_member_t *m)
{
    struct timeval tv = {m->session_ms / 1000, (m->session_ms % 1000) * 1000};
    evtimer_add(m->timer, &tv);
}

/* Copy what a JoinGroup says about its member. */
static void member_update(gg_member_t *m, gw_req_t *req, const kp_join_group_request_t *rq)
{
    protos_free(m);
    int32_t n = rq->protocols_count > 0 ? rq->protocols_count : 0;
    m->protos = calloc((size_t)n + 1, sizeof *m->protos);
    if (!m->protos)
        abort();
    for (int32_t i = 0; i < n; i++) {
        m->protos[i].name = dup_str(rq->protocols[i].name);
        int32_t len = rq->protocols[i].metadata.len > 0 ? rq->protocols[i].metadata.len : 0;
        m->protos[i].meta = malloc((size_t)len + 1);
        if (!m->protos[i].meta)
            abort();
        if (len)
            memcpy(m->protos[i].meta, rq->protocols[i].metadata.ptr, (size_t)len);
        m->protos[i].len = len;
    }
    m->nprotos = n;
    m->session_ms = rq->session_timeout_ms;
    /* v0 has no rebalance timeout: Kafka uses the session timeout (and so
     * do we for a value that is no duration). */
    m->rebalance_ms = req->api_version >= 1 && rq->rebalance_timeout_ms > 0
                          ? rq->rebalance_timeout_ms
                          : rq->session_timeout_ms;
    free(m->client_id);
    m->client_id = dup_str(req->hdr.client_id);
    free(m->client_host);
    char host[80];
    const char *colon = strrchr(req->conn->peer, ':');
    int hl = colon ? (int)(colon - req->conn->peer) : (int)strlen(req->conn->peer);
    snprintf(host, sizeof host, "/%.*s", hl, req->conn->peer);
    m->client_host = dup_cstr(host);
}

static gg_member_t *member_new(gw_group_t *g, const char *id, kp_str_t inst)
{
    gg_member_t *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->group = g;
    m->id = dup_cstr(id);
    m->instance_id = inst.len >= 0 ? dup_str(inst) : NULL;
    m->timer = evtimer_new(g->coord->srv->base, member_timer_cb, m);
    if (!m->timer)
        abort();
    gg_member_t **pp = &g->members;
    while (*pp)
        pp = &(*pp)->next;
    *pp = m;
    return m;
}

static void member_free(gg_member_t *m)
{
    event_free(m->timer);
    protos_free(m);
    free(m->assignment);
    free(m->id);
    free(m->instance_id);
    free(m->client_id);
    free(m->client_host);
    free(m);
}

/* True when @m supports @name; its metadata in @meta. */
static bool member_proto(const gg_member_t *m, const char *name, kp_bytes_t *meta)
{
    for (int32_t i = 0; i < m->nprotos; i++)
        if (strcmp(m->protos[i].name, name) == 0) {
            if (meta)
                *meta = (kp_bytes_t){m->protos[i].meta, m->protos[i].len};
            return true;
        }
    return false;
}

/* Kafka's MemberMetadata.matches: the same protocols with the same bytes. */
static bool member_matches(const gg_member_t *m, const kp_join_group_request_t *rq)
{
    if (rq->protocols_count != m->nprotos)
        return false;
    for (int32_t i = 0; i < m->nprotos; i++) {
        const kp_join_group_request_join_group_request_protocol_t *p = &rq->protocols[i];
        if (!kp_str_eq(p->name, m->protos[i].name))
            return false;
        int32_t len = p->metadata.len > 0 ? p->metadata.len : 0;
        if (len != m->protos[i].len ||
            (len && memcmp(p->metadata.ptr, m->protos[i].meta, (size_t)len) != 0))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- answers */

static void join_answer(gw_req_t *req, const gw_group_t *g, const char *member_id, kp_err_t err,
                        bool with_members)
{
    kp_join_group_response_t resp;
    kp_join_group_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = (int16_t)err;
    bool ok = err == KP_ERR_NONE && g;
    resp.generation_id = ok ? g->generation : -1;
    resp.protocol_type = ok && g->protocol_type ? kp_str(g->protocol_type) : KP_STR_NULL;
    const char *proto = ok ? g->protocol : NULL;
    resp.protocol_name = proto ? kp_str(proto) : req->api_version >= 7 ? KP_STR_NULL : kp_str("");
    resp.leader = kp_str(ok && g->leader ? g->leader : "");
    resp.member_id = kp_str(member_id ? member_id : "");
    if (ok && with_members) {
        resp.members = gw_req_alloc(req, joined_count(g) * sizeof *resp.members + 1);
        for (const gg_member_t *m = g->members; m; m = m->next) {
            if (m->pending)
                continue;
            kp_join_group_response_join_group_response_member_t *rm =
                &resp.members[resp.members_count++];
            kp_join_group_response_join_group_response_member_init(rm);
            rm->member_id = kp_str(m->id);
            rm->group_instance_id = view(m->instance_id);
            kp_bytes_t meta = {NULL, 0};
            if (proto)
                member_proto(m, proto, &meta);
            rm->metadata = meta;
        }
    }
    gw_req_respond(req, &resp);
}

static void sync_answer(gw_req_t *req, const gw_group_t *g, const gg_member_t *m, kp_err_t err)
{
    kp_sync_group_response_t resp;
    kp_sync_group_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = (int16_t)err;
    bool ok = err == KP_ERR_NONE && g && m;
    resp.protocol_type = ok && g->protocol_type ? kp_str(g->protocol_type) : KP_STR_NULL;
    resp.protocol_name = ok && g->protocol ? kp_str(g->protocol) : KP_STR_NULL;
    resp.assignment = ok ? (kp_bytes_t){m->assignment, m->alen} : (kp_bytes_t){NULL, 0};
    gw_req_respond(req, &resp);
}

/* Answer @m's waiting JoinGroup. */
static void finish_join(gg_member_t *m, kp_err_t err)
{
    gw_req_t *req = m->join_req;
    if (!req)
        return;
    m->join_req = NULL;
    req->cancel = NULL;
    req->hstate = NULL;
    const gw_group_t *g = m->group;
    bool leader = g->leader && strcmp(g->leader, m->id) == 0;
    join_answer(req, g, m->id, err, leader);
}

static void finish_sync(gg_member_t *m, kp_err_t err)
{
    gw_req_t *req = m->sync_req;
    if (!req)
        return;
    m->sync_req = NULL;
    req->cancel = NULL;
    req->hstate = NULL;
    sync_answer(req, m->group, m, err);
}

/* A waiting request whose connection closed or whose server stops. */
static void join_cancel(gw_req_t *req)
{
    gg_member_t *m = req->hstate;
    if (m && m->join_req == req) {
        m->join_req = NULL;
        req->hstate = NULL;
    }
    join_answer(req, NULL, m ? m->id : NULL, KP_ERR_NOT_COORDINATOR, false);
}

static void sync_cancel(gw_req_t *req)
{
    gg_member_t *m = req->hstate;
    if (m && m->sync_req == req) {
        m->sync_req = NULL;
        req->hstate = NULL;
    }
    sync_answer(req, NULL, NULL, KP_ERR_NOT_COORDINATOR);
}

static void wait_join(gg_member_t *m, gw_req_t *req)
{
    if (m->join_req && m->join_req != req)
        finish_join(m, KP_ERR_REBALANCE_IN_PROGRESS); /* superseded */
    m->join_req = req;
    req->hstate = m;
    req->cancel = join_cancel;
}

/* ---------------------------------------------------------------- groups */

static void group_timer_cb(evutil_socket_t fd, short what, void *arg);

static gw_group_t *group_new(gw_coord_t *c, kp_str_t id)
{
    gw_group_t *g = calloc(1, sizeof *g);
    if (!g)
        abort();
    g->coord = c;
    g->id = dup_str(id);
    g->state = GG_EMPTY;
    g->timer = evtimer_new(c->srv->base, group_timer_cb, g);
    if (!g->timer)
        abort();
    g->next = c->groups;
    c->groups = g;
    return g;
}

static void group_free(gw_group_t *g)
{
    while (g->members) {
        gg_member_t *m = g->members;
        g->members = m->next;
        member_free(m);
    }
    event_free(g->timer);
    free(g->id);
    free(g->protocol_type);
    free(g->protocol);
    free(g->leader);
    free(g);
}

static void unlink_group(gw_coord_t *c, gw_group_t *g)
{
    for (gw_group_t **pp = &c->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            return;
        }
}

/* Drop @g once nothing is left in it. */
static void maybe_free(gw_group_t *g)
{
    if (g->members || g->timer_armed)
        return;
    gw_log_debug("group", "group %s: no members left", g->id);
    unlink_group(g->coord, g);
    group_free(g);
}

static void arm_group_timer(gw_group_t *g, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(g->timer, &tv);
    g->timer_armed = true;
}

static void disarm_group_timer(gw_group_t *g)
{
    evtimer_del(g->timer);
    g->timer_armed = false;
}

/* Kafka's selectProtocol: among the protocols every joined member
 * supports, each member votes for its first; the most votes win (a tie
 * goes to the one listed first by the first member). */
static const char *select_protocol(const gw_group_t *g)
{
    const gg_member_t *first = NULL;
    for (const gg_member_t *m = g->members; m && !first; m = m->next)
        if (!m->pending)
            first = m;
    if (!first)
        return NULL;
    const char *best = NULL;
    int best_votes = -1;
    for (int32_t i = 0; i < first->nprotos; i++) {
        const char *cand = first->protos[i].name;
        bool all = true;
        for (const gg_member_t *m = g->members; m && all; m = m->next)
            all = m->pending || member_proto(m, cand, NULL);
        if (!all)
            continue;
        int votes = 0;
        for (const gg_member_t *m = g->members; m; m = m->next) {
            if (m->pending)
                continue;
            for (int32_t j = 0; j < m->nprotos; j++) {
                const char *p = m->protos[j].name;
                bool every = true;
                for (const gg_member_t *o = g->members; o && every; o = o->next)
                    every = o->pending || member_proto(o, p, NULL);
                if (every) {
                    votes += strcmp(p, cand) == 0;
                    break;
                }
            }
        }
        if (votes > best_votes) {
            best = cand;
            best_votes = votes;
        }
    }
    return best;
}

/* Kafka's supportsProtocols. */
static bool supports(const gw_group_t *g, const kp_join_group_request_t *rq)
{
    if (rq->protocol_type.len <= 0 || rq->protocols_count <= 0)
        return false;
    if (joined_count(g) == 0)
        return true;
    if (!g->protocol_type || !kp_str_eq(rq->protocol_type, g->protocol_type))
        return false;
    for (int32_t i = 0; i < rq->protocols_count; i++) {
        char *name = dup_str(rq->protocols[i].name);
        bool all = true;
        for (const gg_member_t *m = g->members; m && all; m = m->next)
            all = m->pending || member_proto(m, name, NULL);
        free(name);
        if (all)
            return true;
    }
    return false;
}

static void complete_join(gw_group_t *g);

/* Every joined member waits in JoinGroup and none is waiting for its id. */
static bool all_joined(const gw_group_t *g)
{
    for (const gg_member_t *m = g->members; m; m = m->next)
        if (m->pending || !m->join_req)
            return false;
    return true;
}

static void try_complete_join(gw_group_t *g)
{
    if (g->state == GG_PREPARING && !g->initial && all_joined(g)) {
        disarm_group_timer(g);
        complete_join(g);
    }
}

/* Kafka's prepareRebalance. */
static void prepare_rebalance(gw_group_t *g, const char *why)
{
    if (g->state == GG_COMPLETING)
        for (gg_member_t *m = g->members; m; m = m->next) {
            set_assignment(m, NULL, 0);
            finish_sync(m, KP_ERR_REBALANCE_IN_PROGRESS);
        }
    bool was_empty = g->state == GG_EMPTY;
    gw_log_info("group", "group %s: rebalancing (generation %d): %s", g->id, g->generation, why);
    g->state = GG_PREPARING;
    int64_t rebalance_ms = 0;
    for (const gg_member_t *m = g->members; m; m = m->next)
        if (!m->pending && m->rebalance_ms > rebalance_ms)
            rebalance_ms = m->rebalance_ms;
    if (was_empty) {
        int64_t delay = cfg_initial_delay(g);
        if (delay > rebalance_ms)
            delay = rebalance_ms;
        g->initial = delay > 0;
        g->new_during_delay = false;
        g->delay_left_ms = rebalance_ms - delay;
        if (g->initial) {
            arm_group_timer(g, delay);
            return;
        }
    }
    g->initial = false;
    arm_group_timer(g, rebalance_ms);
}

static void maybe_prepare_rebalance(gw_group_t *g, const char *why)
{
    if (g->state == GG_STABLE || g->state == GG_COMPLETING || g->state == GG_EMPTY)
        prepare_rebalance(g, why);
}

static void remove_member(gw_group_t *g, gg_member_t *m, kp_err_t err)
{
    finish_join(m, err);
    finish_sync(m, err);
    for (gg_member_t **pp = &g->members; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    if (g->leader && strcmp(g->leader, m->id) == 0) {
        free(g->leader);
        g->leader = NULL;
        for (gg_member_t *o = g->members; o && !g->leader; o = o->next)
            if (!o->pending)
                g->leader = dup_cstr(o->id);
    }
    member_free(m);
}

/* Kafka's removeMemberAndUpdateGroup. */
static void remove_and_update(gw_group_t *g, gg_member_t *m, const char *why)
{
    bool was_pending = m->pending;
    remove_member(g, m, KP_ERR_UNKNOWN_MEMBER_ID);
    if (was_pending) {
        try_complete_join(g);
        return;
    }
    if (g->state == GG_STABLE || g->state == GG_COMPLETING)
        prepare_rebalance(g, why);
    else if (g->state == GG_PREPARING)
        try_complete_join(g);
}

static void complete_join(gw_group_t *g)
{
    /* Members that did not rejoin in time are out. */
    for (gg_member_t *m = g->members, *next; m; m = next) {
        next = m->next;
        if (!m->pending && !m->join_req) {
            gw_log_info("group", "group %s: member %s did not rejoin in time", g->id, m->id);
            remove_member(g, m, KP_ERR_UNKNOWN_MEMBER_ID);
        }
    }
    g->generation++;
    free(g->protocol);
    g->protocol = NULL;
    if (joined_count(g) == 0) {
        g->state = GG_EMPTY;
        gw_log_info("group", "group %s: generation %d is empty", g->id, g->generation);
        return;
    }
    const char *p = select_protocol(g);
    g->protocol = p ? dup_cstr(p) : NULL;
    if (!g->leader) {
        for (gg_member_t *m = g->members; m && !g->leader; m = m->next)
            if (!m->pending)
                g->leader = dup_cstr(m->id);
    }
    g->state = GG_COMPLETING;
    gw_log_info("group", "group %s: generation %d with %zu members, protocol %s, leader %s", g->id,
                g->generation, joined_count(g), g->protocol ? g->protocol : "(none)", g->leader);
    for (gg_member_t *m = g->members; m; m = m->next) {
        if (m->pending)
            continue;
        m->is_new = false;
        finish_join(m, KP_ERR_NONE);
        touch(m);
    }
}

static void group_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_group_t *g = arg;
    g->timer_armed = false;
    if (g->state != GG_PREPARING) {
        maybe_free(g);
        return;
    }
    if (g->initial && g->new_during_delay && g->delay_left_ms > 0) {
        int64_t d = cfg_initial_delay(g);
        if (d > g->delay_left_ms)
            d = g->delay_left_ms;
        g->delay_left_ms -= d;
        g->new_during_delay = false;
        arm_group_timer(g, d);
        return;
    }
    g->initial = false;
    complete_join(g);
    maybe_free(g);
}

static void member_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gg_member_t *m = arg;
    gw_group_t *g = m->group;
    if (m->join_req) { /* waiting in JoinGroup: alive */
        touch(m);
        return;
    }
    gw_log_info("group", "group %s: member %s %s", g->id, m->id,
                m->pending ? "never joined with its id" : "timed out (session.timeout.ms)");
    remove_and_update(g, m, "a member's session timed out");
    maybe_free(g);
}

/* Kafka's addMemberAndRebalance (@m may be a pending member). */
static void add_and_rebalance(gw_group_t *g, gw_req_t *req, const kp_join_group_request_t *rq,
                              gg_member_t *m, const char *id)
{
    if (joined_count(g) == 0) { /* the first member sets the protocol type */
        free(g->protocol_type);
        g->protocol_type = dup_str(rq->protocol_type);
        g->type_stored = false;
    }
    if (!m)
        m = member_new(g, id, rq->group_instance_id);
    m->pending = false;
    m->is_new = true;
    member_update(m, req, rq);
    if (g->state == GG_PREPARING && g->initial)
        g->new_during_delay = true;
    wait_join(m, req);
    touch(m);
    maybe_prepare_rebalance(g, "a member joined");
    try_complete_join(g);
}

static void update_and_rebalance(gw_group_t *g, gg_member_t *m, gw_req_t *req,
                                 const kp_join_group_request_t *rq, const char *why)
{
    member_update(m, req, rq);
    wait_join(m, req);
    touch(m);
    maybe_prepare_rebalance(g, why);
    try_complete_join(g);
}

/* ---------------------------------------------------------------- JoinGroup */

static void join_unknown(gw_coord_t *c, gw_group_t *g, gw_req_t *req,
                         const kp_join_group_request_t *rq)
{
    (void)c;
    char id[300];
    new_member_id(req->hdr.client_id, id, sizeof id);
    gg_member_t *old = member_by_instance(g, rq->group_instance_id);
    if (old) {
        /* A static member restarting: it takes the old member's place
         * (Kafka's updateStaticMemberAndRebalance). */
        gw_log_info("group", "group %s: static member %s rejoins as %s", g->id, old->instance_id,
                    id);
        finish_join(old, KP_ERR_FENCED_INSTANCE_ID);
        finish_sync(old, KP_ERR_FENCED_INSTANCE_ID);
        if (g->leader && strcmp(g->leader, old->id) == 0) {
            free(g->leader);
            g->leader = dup_cstr(id);
        }
        free(old->id);
        old->id = dup_cstr(id);
        char *prev = g->protocol ? dup_cstr(g->protocol) : NULL;
        member_update(old, req, rq);
        touch(old);
        const char *next = select_protocol(g);
        bool same = prev && next && strcmp(prev, next) == 0;
        free(prev);
        if (g->state == GG_STABLE && same) {
            join_answer(req, g, old->id, KP_ERR_NONE, false);
        } else {
            wait_join(old, req);
            maybe_prepare_rebalance(g, "a static member rejoined with other protocols");
            try_complete_join(g);
        }
        return;
    }
    if (req->api_version >= 4 && rq->group_instance_id.len < 0) {
        /* KIP-394: a member id first, then the real join. */
        gg_member_t *m = member_new(g, id, KP_STR_NULL);
        m->pending = true;
        m->session_ms = rq->session_timeout_ms;
        touch(m);
        join_answer(req, NULL, m->id, KP_ERR_MEMBER_ID_REQUIRED, false);
        return;
    }
    add_and_rebalance(g, req, rq, NULL, id);
}

static void join_known(gw_group_t *g, gw_req_t *req, const kp_join_group_request_t *rq)
{
    gg_member_t *m = member_find(g, rq->member_id);
    if (m && m->pending) {
        add_and_rebalance(g, req, rq, m, m->id);
        return;
    }
    if (fenced(g, rq->member_id, rq->group_instance_id)) {
        join_answer(req, NULL, NULL, KP_ERR_FENCED_INSTANCE_ID, false);
        return;
    }
    if (!m || g->state == GG_EMPTY) {
        join_answer(req, NULL, NULL, KP_ERR_UNKNOWN_MEMBER_ID, false);
        return;
    }
    bool leader = g->leader && strcmp(g->leader, m->id) == 0;
    switch (g->state) {
    case GG_PREPARING:
        update_and_rebalance(g, m, req, rq, "a member rejoined");
        return;
    case GG_COMPLETING:
        if (member_matches(m, rq)) {
            touch(m);
            join_answer(req, g, m->id, KP_ERR_NONE, leader);
        } else {
            update_and_rebalance(g, m, req, rq, "a member changed its protocols");
        }
        return;
    case GG_STABLE:
        if (leader || !member_matches(m, rq)) {
            update_and_rebalance(g, m, req, rq,
                                 leader ? "the leader rejoined" : "a member changed its protocols");
        } else {
            touch(m);
            join_answer(req, g, m->id, KP_ERR_NONE, false);
        }
        return;
    case GG_EMPTY:
        break;
    }
}

void gw_group_join(gw_coord_t *c, gw_req_t *req)
{
    const kp_join_group_request_t *rq = req->body;
    const gw_config_t *cfg = c->srv->cfg;
    if (rq->group_id.len <= 0) {
        join_answer(req, NULL, NULL, KP_ERR_INVALID_GROUP_ID, false);
        return;
    }
    if (!gw_coordinates(c->srv, rq->group_id)) {
        join_answer(req, NULL, NULL, KP_ERR_NOT_COORDINATOR, false);
        return;
    }
    if (rq->session_timeout_ms < cfg->group_min_session_timeout_ms ||
        rq->session_timeout_ms > cfg->group_max_session_timeout_ms) {
        join_answer(req, NULL, NULL, KP_ERR_INVALID_SESSION_TIMEOUT, false);
        return;
    }
    gw_group_t *g = gw_group_find(c, rq->group_id);
    bool unknown = rq->member_id.len <= 0;
    if (!g && !unknown) {
        join_answer(req, NULL, NULL, KP_ERR_UNKNOWN_MEMBER_ID, false);
        return;
    }
    if (!g)
        g = group_new(c, rq->group_id);
    if (!supports(g, rq)) {
        join_answer(req, NULL, NULL, KP_ERR_INCONSISTENT_GROUP_PROTOCOL, false);
    } else if (unknown) {
        join_unknown(c, g, req, rq);
    } else {
        join_known(g, req, rq);
    }
    maybe_free(g);
}

/* ---------------------------------------------------------------- SyncGroup */

void gw_group_sync(gw_coord_t *c, gw_req_t *req)
{
    const kp_sync_group_request_t *rq = req->body;
    gw_group_t *g = gw_group_find(c, rq->group_id);
    gg_member_t *m = g ? member_find(g, rq->member_id) : NULL;
    kp_err_t err = KP_ERR_NONE;
    if (rq->group_id.len <= 0)
        err = KP_ERR_INVALID_GROUP_ID;
    else if (!gw_coordinates(c->srv, rq->group_id))
        err = KP_ERR_NOT_COORDINATOR;
    else if (!g)
        err = KP_ERR_UNKNOWN_MEMBER_ID;
    else if (fenced(g, rq->member_id, rq->group_instance_id))
        err = KP_ERR_FENCED_INSTANCE_ID;
    else if (!m || m->pending)
        err = KP_ERR_UNKNOWN_MEMBER_ID;
    else if (rq->generation_id != g->generation)
        err = KP_ERR_ILLEGAL_GENERATION;
    else if ((rq->protocol_type.len >= 0 && !str_is(rq->protocol_type, g->protocol_type)) ||
             (rq->protocol_name.len >= 0 && !str_is(rq->protocol_name, g->protocol)))
        err = KP_ERR_INCONSISTENT_GROUP_PROTOCOL;
    else if (g->state == GG_EMPTY)
        err = KP_ERR_UNKNOWN_MEMBER_ID;
    else if (g->state == GG_PREPARING)
        err = KP_ERR_REBALANCE_IN_PROGRESS;
    if (err != KP_ERR_NONE) {
        sync_answer(req, NULL, NULL, err);
        return;
    }
    touch(m);
    if (g->state == GG_STABLE) {
        sync_answer(req, g, m, KP_ERR_NONE);
        return;
    }
    /* CompletingRebalance: wait for the leader's assignments. */
    if (m->sync_req)
        finish_sync(m, KP_ERR_REBALANCE_IN_PROGRESS); /* superseded */
    m->sync_req = req;
    req->hstate = m;
    req->cancel = sync_cancel;
    if (!(g->leader && strcmp(g->leader, m->id) == 0))
        return;
    for (gg_member_t *o = g->members; o; o = o->next) {
        set_assignment(o, NULL, 0);
        for (int32_t i = 0; i < rq->assignments_count; i++)
            if (kp_str_eq(rq->assignments[i].member_id, o->id))
                set_assignment(o, rq->assignments[i].assignment.ptr,
                               rq->assignments[i].assignment.len);
    }
    g->state = GG_STABLE;
    gw_log_info("group", "group %s: generation %d is stable", g->id, g->generation);
    /* The protocol type is kept in the store, as Kafka stores a group's
     * metadata once a generation has its assignments: after the members
     * are gone the group is listed Empty with this type. */
    st_log_t *log = g->coord->srv->log;
    if (log && !g->type_stored && g->protocol_type && !strchr(g->protocol_type, '\n')) {
        if (st_log_set_group_type(log, g->id, g->protocol_type, NULL, NULL) == 0)
            g->type_stored = true;
        else
            gw_log_warn("group", "group %s: storing its protocol type failed", g->id);
    }
    for (gg_member_t *o = g->members; o; o = o->next)
        finish_sync(o, KP_ERR_NONE);
}

/* ---------------------------------------------------------------- Heartbeat */

void gw_group_heartbeat(gw_coord_t *c, gw_req_t *req)
{
    const kp_heartbeat_request_t *rq = req->body;
    gw_group_t *g = gw_group_find(c, rq->group_id);
    gg_member_t *m = g ? member_find(g, rq->member_id) : NULL;
    kp_err_t err = KP_ERR_NONE;
    if (rq->group_id.len <= 0)
        err = KP_ERR_INVALID_GROUP_ID;
    else if (!gw_coordinates(c->srv, rq->group_id))
        err = KP_ERR_NOT_COORDINATOR;
    else if (!g)
        err = KP_ERR_UNKNOWN_MEMBER_ID;
    else if (fenced(g, rq->member_id, rq->group_instance_id))
        err = KP_ERR_FENCED_INSTANCE_ID;
    else if (!m || m->pending || g->state == GG_EMPTY)
        err = KP_ERR_UNKNOWN_MEMBER_ID;
    else if (rq->generation_id != g->generation)
        err = KP_ERR_ILLEGAL_GENERATION;
    else {
        touch(m);
        if (g->state == GG_PREPARING)
            err = KP_ERR_REBALANCE_IN_PROGRESS;
    }
    kp_heartbeat_response_t resp;
    kp_heartbeat_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = (int16_t)err;
    gw_req_respond(req, &resp);
}

/* ---------------------------------------------------------------- LeaveGroup */

/* One leaving member (Kafka's handleLeaveGroup). */
static kp_err_t leave_one(gw_group_t *g, kp_str_t id, kp_str_t inst)
{
    if (!g)
        return KP_ERR_UNKNOWN_MEMBER_ID;
    gg_member_t *m = member_find(g, id);
    if (m && m->pending) {
        remove_and_update(g, m, "a member left");
        return KP_ERR_NONE;
    }
    if (id.len > 0 && fenced(g, id, inst))
        return KP_ERR_FENCED_INSTANCE_ID;
    gg_member_t *s = member_by_instance(g, inst);
    if (s)
        m = s;
    if (!m)
        return KP_ERR_UNKNOWN_MEMBER_ID;
    gw_log_info("group", "group %s: member %s leaves", g->id, m->id);
    remove_and_update(g, m, "a member left");
    return KP_ERR_NONE;
}

void gw_group_leave(gw_coord_t *c, gw_req_t *req)
{
    const kp_leave_group_request_t *rq = req->body;
    gw_group_t *g = gw_group_find(c, rq->group_id);
    kp_leave_group_response_t resp;
    kp_leave_group_response_init(&resp);
    resp.throttle_time_ms = 0;
    if (rq->group_id.len <= 0) {
        resp.error_code = KP_ERR_INVALID_GROUP_ID;
    } else if (!gw_coordinates(c->srv, rq->group_id)) {
        resp.error_code = KP_ERR_NOT_COORDINATOR;
    } else if (req->api_version < 3) {
        resp.error_code = (int16_t)leave_one(g, rq->member_id, KP_STR_NULL);
    } else {
        int32_t n = rq->members_count > 0 ? rq->members_count : 0;
        resp.members = gw_req_alloc(req, (size_t)n * sizeof *resp.members + 1);
        resp.members_count = n;
        for (int32_t i = 0; i < n; i++) {
            kp_leave_group_response_member_response_t *r = &resp.members[i];
            kp_leave_group_response_member_response_init(r);
            r->member_id = rq->members[i].member_id;
            r->group_instance_id = rq->members[i].group_instance_id;
            g = gw_group_find(c, rq->group_id); /* kept: maybe_free runs last */
            r->error_code =
                (int16_t)leave_one(g, rq->members[i].member_id, rq->members[i].group_instance_id);
        }
    }
    gw_req_respond(req, &resp);
    if (g)
        maybe_free(g);
}

/* ---------------------------------------------------------------- OffsetCommit */

kp_err_t gw_group_commit_check(gw_coord_t *c, kp_str_t group, int32_t generation,
                               kp_str_t member_id, kp_str_t instance_id)
{
    gw_group_t *g = gw_group_find(c, group);
    if (!g) /* not managed here: commits without a group only */
        return generation < 0 ? KP_ERR_NONE : KP_ERR_ILLEGAL_GENERATION;
    /* Kafka's validateOffsetCommit, then the state. */
    if (generation < 0 && joined_count(g) == 0)
        return KP_ERR_NONE;
    gg_member_t *m = NULL;
    if (generation >= 0 || member_id.len > 0 || instance_id.len >= 0) {
        if (fenced(g, member_id, instance_id))
            return KP_ERR_FENCED_INSTANCE_ID;
        m = member_find(g, member_id);
        if (!m || m->pending)
            return KP_ERR_UNKNOWN_MEMBER_ID;
        if (generation != g->generation)
            return KP_ERR_ILLEGAL_GENERATION;
    } else {
        return KP_ERR_UNKNOWN_MEMBER_ID; /* only members commit to a live group */
    }
    if (g->state == GG_COMPLETING)
        return KP_ERR_REBALANCE_IN_PROGRESS;
    touch(m);
    return KP_ERR_NONE;
}

/* ---------------------------------------------------------------- views */

gw_coord_t *gw_coord_new(gw_server_t *srv)
{
    gw_coord_t *c = calloc(1, sizeof *c);
    if (c)
        c->srv = srv;
    return c;
}

void gw_coord_free(gw_coord_t *c)
{
    if (!c)
        return;
    while (c->groups) {
        gw_group_t *g = c->groups;
        c->groups = g->next;
        group_free(g);
    }
    free(c);
}

gw_group_t *gw_group_find(gw_coord_t *c, kp_str_t id)
{
    if (id.len < 0)
        return NULL;
    for (gw_group_t *g = c->groups; g; g = g->next)
        if (kp_str_eq(id, g->id))
            return g;
    return NULL;
}

gw_group_t *gw_group_at(gw_coord_t *c, size_t i)
{
    gw_group_t *g = c->groups;
    while (g && i--)
        g = g->next;
    return g;
}

const char *gw_group_id(const gw_group_t *g)
{
    return g->id;
}

const char *gw_group_state_name(const gw_group_t *g)
{
    return state_names[g->state];
}

bool gw_group_is_empty(const gw_group_t *g)
{
    return joined_count(g) == 0;
}

const char *gw_group_protocol_type(const gw_group_t *g)
{
    return g->protocol_type ? g->protocol_type : "";
}

const char *gw_group_protocol(const gw_group_t *g)
{
    return g->protocol && g->state != GG_PREPARING ? g->protocol : "";
}

bool gw_group_member(const gw_group_t *g, size_t i, gw_group_member_view_t *out)
{
    for (const gg_member_t *m = g->members; m; m = m->next) {
        if (m->pending || i-- > 0)
            continue;
        out->member_id = m->id;
        out->instance_id = m->instance_id;
        out->client_id = m->client_id ? m->client_id : "";
        out->client_host = m->client_host ? m->client_host : "";
        out->metadata = (kp_bytes_t){NULL, 0};
        if (g->protocol)
            member_proto(m, g->protocol, &out->metadata);
        out->assignment = (kp_bytes_t){m->assignment, m->alen};
        return true;
    }
    return false;
}

/* Does the consumer protocol's Subscription in @meta (version i16, topics
 * [string], ...) name @topic? */
static bool subscription_names(kp_bytes_t meta, kp_str_t topic)
{
    kp_reader_t r;
    kp_reader_init(&r, meta.ptr, meta.len > 0 ? (size_t)meta.len : 0);
    (void)kp_read_i16(&r);
    int32_t n = kp_read_i32(&r);
    for (int32_t i = 0; i < n && !r.err; i++) {
        kp_str_t t = kp_read_string(&r, false, false);
        if (!r.err && t.len == topic.len && t.len >= 0 &&
            memcmp(t.ptr, topic.ptr, (size_t)t.len) == 0)
            return true;
    }
    return false;
}

bool gw_group_subscribed(const gw_group_t *g, kp_str_t topic)
{
    if (!g->protocol_type || strcmp(g->protocol_type, "consumer") != 0)
        return false;
    for (const gg_member_t *m = g->members; m; m = m->next) {
        if (m->pending)
            continue;
        if (g->protocol) {
            kp_bytes_t meta;
            if (member_proto(m, g->protocol, &meta) && subscription_names(meta, topic))
                return true;
        } else {
            for (int32_t i = 0; i < m->nprotos; i++)
                if (subscription_names((kp_bytes_t){m->protos[i].meta, m->protos[i].len}, topic))
                    return true;
        }
    }
    return false;
}

void gw_group_forget(gw_coord_t *c, gw_group_t *g)
{
    for (gg_member_t *m = g->members; m; m = m->next) {
        finish_join(m, KP_ERR_UNKNOWN_MEMBER_ID);
        finish_sync(m, KP_ERR_UNKNOWN_MEMBER_ID);
    }
    unlink_group(c, g);
    group_free(g);
}
