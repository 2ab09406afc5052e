/*
 * gw_api_util.c: what the handlers share -- the storage-to-Kafka error
 * mapping, topic-name rules, look-ups and automatic topic creation.
 *
 * Proposed for st_log.h:
 *   - the starting calls (st_part_append, st_part_read, ...) returning
 *     st_err_t rather than "nonzero", so that a refusal says why;
 *     gw_st_start_err() keeps a value that already is one.
 */
#include "gw_api.h"
#include "gw_leaders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kp_err_t gw_err_from_st(st_err_t err)
{
    switch (err) {
    case ST_OK:
        return KP_ERR_NONE;
    case ST_ERR_NOT_FOUND:
        return KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    case ST_ERR_IO:
    case ST_ERR_TIMEOUT:
    case ST_ERR_FULL:    /* a storage budget: retriable, like a slow disk */
    case ST_ERR_NOMEM:   /* retriable as well; UNKNOWN_SERVER_ERROR would not be */
    case ST_ERR_CORRUPT: /* stored bytes fail their checks: the storage is at fault */
        return KP_ERR_KAFKA_STORAGE_ERROR;
    case ST_ERR_CONFLICT: /* fenced: another node leads now; refresh metadata */
        return KP_ERR_NOT_LEADER_OR_FOLLOWER;
    case ST_ERR_CLOSED: /* shutting down: the client retries elsewhere or later */
        return KP_ERR_NOT_LEADER_OR_FOLLOWER;
    case ST_ERR_EXISTS:
        return KP_ERR_TOPIC_ALREADY_EXISTS;
    case ST_ERR_INVALID:
        return KP_ERR_INVALID_REQUEST;
    case ST_ERR_RANGE:
        return KP_ERR_OFFSET_OUT_OF_RANGE;
    case ST_ERR_SEQUENCE:
        return KP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    case ST_ERR_EPOCH:
        return KP_ERR_INVALID_PRODUCER_EPOCH;
    case ST_ERR__NUM:
        break;
    }
    return KP_ERR_UNKNOWN_SERVER_ERROR;
}

st_err_t gw_st_start_err(int rc)
{
    if (rc > 0 && rc < ST_ERR__NUM)
        return (st_err_t)rc;
    return ST_ERR_IO;
}

bool gw_topic_name_valid(kp_str_t name)
{
    if (name.len <= 0 || name.len > GW_TOPIC_NAME_MAX)
        return false;
    if ((name.len == 1 && name.ptr[0] == '.') ||
        (name.len == 2 && name.ptr[0] == '.' && name.ptr[1] == '.'))
        return false;
    for (int32_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

st_topic_t *gw_topic_find(gw_server_t *srv, kp_str_t name)
{
    if (name.len < 0)
        return NULL;
    st_topic_t *topic = st_log_topic(srv->log, name.ptr, (size_t)name.len);
    return topic && !topic->deleting ? topic : NULL;
}

st_topic_t *gw_topic_find_id(gw_server_t *srv, kp_uuid_t id)
{
    st_topic_t *topic = st_log_topic_by_id(srv->log, id);
    return topic && !topic->deleting ? topic : NULL;
}

st_part_t *gw_topic_part(st_topic_t *topic, int32_t index)
{
    if (index < 0 || index >= topic->nparts)
        return NULL;
    return topic->parts[index];
}

bool gw_autocreate_allowed(const gw_server_t *srv, bool request_allows)
{
    return srv->cfg->auto_create_topics_enable && request_allows;
}

/* A creation whose partitions' leader records are being written. */
typedef struct created {
    gw_server_t *srv;
    kp_uuid_t id;
    st_topic_cb cb;
    void *arg;
    void (*parts_cb)(st_err_t err, void *arg);
} created_t;

static void records_written(void *arg)
{
    created_t *c = arg;
    st_topic_cb cb = c->cb;
    void (*parts_cb)(st_err_t err, void *arg) = c->parts_cb;
    void *cb_arg = c->arg;
    st_topic_t *topic = gw_topic_find_id(c->srv, c->id);
    free(c);
    if (parts_cb)
        parts_cb(ST_OK, cb_arg);
    else if (topic)
        cb(ST_OK, topic, cb_arg);
    else /* deleted meanwhile */
        cb(ST_ERR_NOT_FOUND, NULL, cb_arg);
}

/* The new partitions [@from, topic's count) get their leader records
 * before the caller hears of them (gw_leaders_ensure). */
static void ensure_records(created_t *c, const st_topic_t *topic, int32_t from)
{
    c->id = topic->id;
    gw_leaders_ensure(c->srv->leaders, topic->id, from, topic->nparts, records_written, c);
}

static void topic_created(st_err_t err, st_topic_t *topic, void *arg)
{
    created_t *c = arg;
    if (err != ST_OK || !c->srv->leaders) {
        st_topic_cb cb = c->cb;
        void *cb_arg = c->arg;
        free(c);
        cb(err, topic, cb_arg);
        return;
    }
    ensure_records(c, topic, 0);
}

st_err_t gw_topic_create(gw_server_t *srv, kp_str_t name, int32_t nparts,
                         const st_topic_config_t *configs, size_t nconfigs, st_topic_cb cb,
                         void *arg)
{
    created_t *c = malloc(sizeof *c);
    if (!c)
        return ST_ERR_NOMEM;
    *c = (created_t){.srv = srv, .cb = cb, .arg = arg};
    int rc = st_log_create_topic(srv->log, name.ptr, (size_t)name.len, nparts, configs, nconfigs,
                                 topic_created, c);
    if (rc != 0) {
        free(c);
        return gw_st_start_err(rc);
    }
    return ST_OK;
}

st_err_t gw_topic_autocreate(gw_server_t *srv, kp_str_t name, st_topic_cb cb, void *arg)
{
    return gw_topic_create(srv, name, srv->cfg->num_partitions, NULL, 0, cb, arg);
}

typedef struct parts_added {
    created_t c;
    int32_t from;
} parts_added_t;

static void parts_created(st_err_t err, void *arg)
{
    parts_added_t *a = arg;
    st_topic_t *topic = err == ST_OK ? gw_topic_find_id(a->c.srv, a->c.id) : NULL;
    if (!topic || !a->c.srv->leaders) {
        void (*cb)(st_err_t err, void *arg) = a->c.parts_cb;
        void *cb_arg = a->c.arg;
        free(a);
        cb(err, cb_arg);
        return;
    }
    ensure_records(&a->c, topic, a->from); /* records_written frees &a->c, a's start */
}

st_err_t gw_topic_add_partitions(gw_server_t *srv, st_topic_t *topic, int32_t nparts,
                                 void (*cb)(st_err_t err, void *arg), void *arg)
{
    parts_added_t *a = malloc(sizeof *a);
    if (!a)
        return ST_ERR_NOMEM;
    *a = (parts_added_t){.c = {.srv = srv, .id = topic->id, .parts_cb = cb, .arg = arg},
                         .from = topic->nparts};
    int rc = st_log_create_partitions(srv->log, topic, nparts, parts_created, a);
    if (rc != 0) {
        free(a);
        return gw_st_start_err(rc);
    }
    return ST_OK;
}

const char *gw_advertised_host(const gw_server_t *srv)
{
    const char *h = srv->cfg->advertised_listeners.host;
    if (h[0])
        return h;
    h = srv->cfg->listeners.host;
    return h[0] ? h : "localhost";
}

int32_t gw_advertised_port(const gw_server_t *srv)
{
    int port = srv->cfg->advertised_listeners.port;
    return port ? port : srv->port;
}

const gw_node_t *gw_live_nodes(gw_req_t *req, size_t *n)
{
    gw_server_t *srv = req->srv;
    if (srv->cluster)
        return gw_cluster_nodes(srv->cluster, n);
    gw_node_t *self = gw_req_alloc(req, sizeof *self);
    self->id = srv->cfg->node_id;
    snprintf(self->host, sizeof self->host, "%s", gw_advertised_host(srv));
    self->port = gw_advertised_port(srv);
    *n = 1;
    return self;
}

const gw_node_t *gw_group_coordinator(gw_req_t *req, kp_str_t group)
{
    gw_server_t *srv = req->srv;
    if (srv->cluster)
        return gw_cluster_coordinator(srv->cluster, group.ptr,
                                      group.len > 0 ? (size_t)group.len : 0);
    size_t n;
    return gw_live_nodes(req, &n);
}

bool gw_coordinates(const gw_server_t *srv, kp_str_t group)
{
    if (!srv->cluster)
        return true;
    const gw_node_t *c =
        gw_cluster_coordinator(srv->cluster, group.ptr, group.len > 0 ? (size_t)group.len : 0);
    return c->id == srv->cfg->node_id;
}

int32_t gw_part_leader(const gw_server_t *srv, const st_topic_t *topic, int32_t p)
{
    if (!srv->cluster)
        return srv->cfg->node_id;
    int32_t leader, epoch;
    if (srv->leaders && gw_leaders_get(srv->leaders, topic->id, p, &leader, &epoch)) {
        if (p >= 0 && p < topic->nparts)
            st_part_set_leader_epoch(topic->parts[p], epoch);
        return leader;
    }
    if (!srv->leaders) /* not serving yet */
        return gw_leaders_hashed(srv->cluster, topic->id, p);
    return -1; /* no record yet: no leader (gw_leaders.h) */
}

bool gw_leads(const gw_server_t *srv, const st_topic_t *topic, int32_t p)
{
    return gw_part_leader(srv, topic, p) == srv->cfg->node_id;
}

gw_lease_state_t gw_lease_state(const gw_server_t *srv)
{
    return srv->cluster ? gw_cluster_lease_state(srv->cluster) : GW_LEASE_FRESH;
}

int32_t gw_controller_id(const gw_server_t *srv)
{
    return srv->cluster ? gw_cluster_controller(srv->cluster) : srv->cfg->node_id;
}

const char *gw_cluster_id(const gw_server_t *srv)
{
    return st_log_cluster_id(srv->log); /* the configured one when cluster.id is set */
}

typedef struct name_ix {
    kp_str_t name;
    int32_t i;
} name_ix_t;

static int name_cmp(const void *a, const void *b)
{
    kp_str_t x = ((const name_ix_t *)a)->name, y = ((const name_ix_t *)b)->name;
    int c = memcmp(x.ptr, y.ptr, (size_t)(x.len < y.len ? x.len : y.len));
    return c ? c : (x.len > y.len) - (x.len < y.len);
}

bool *gw_names_repeated(gw_req_t *req, const kp_str_t *names, int32_t n)
{
    n = n > 0 ? n : 0;
    bool *dup = gw_req_alloc(req, (size_t)n * sizeof *dup + 1);
    name_ix_t *ix = gw_req_alloc(req, (size_t)n * sizeof *ix + 1);
    for (int32_t i = 0; i < n; i++) {
        dup[i] = false;
        ix[i] = (name_ix_t){names[i].len >= 0 ? names[i] : (kp_str_t){"", 0}, i};
    }
    qsort(ix, (size_t)n, sizeof *ix, name_cmp); /* n log n: requests may name millions */
    for (int32_t k = 1; k < n; k++)
        if (name_cmp(&ix[k - 1], &ix[k]) == 0)
            dup[ix[k - 1].i] = dup[ix[k].i] = true;
    return dup;
}
