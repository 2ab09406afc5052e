/*
 * gw_api_metadata.c: Metadata (key 3), v0-12.
 *
 * Which topics (DESIGN §8): v0 reads an empty list as "all topics"
 * (kafka-python probes with it); v1+ reads null as all and empty as none.
 * Requested topics that do not exist are created when auto.create.topics
 * .enable is on and, from v4, the request sets AllowAutoTopicCreation; the
 * answer waits for the creation.  The brokers are the live nodes
 * (gw_cluster.h) and the controller the lowest of them (admin clients send
 * CreateTopics/DeleteTopics to it and time out on -1).  Each partition's
 * leader is gw_part_leader() (this node alone without a cluster), its only
 * replica and in-sync replica: replicas = isr = [leader]; a partition
 * without a leader record yet is LEADER_NOT_AVAILABLE, leader -1, no
 * replicas (clients retry, as right after a creation on Kafka).
 */
#include "gw_api.h"

#include "gw_log.h"

static bool wants_all(const gw_req_t *req, const kp_metadata_request_t *rq)
{
    if (req->api_version == 0)
        return rq->topics_count <= 0;
    return rq->topics_count < 0;
}

static bool may_create(const gw_req_t *req, const kp_metadata_request_t *rq)
{
    return gw_autocreate_allowed(req->srv, req->api_version < 4 || rq->allow_auto_topic_creation);
}

static void fill_topic(gw_req_t *req, st_topic_t *topic,
                       kp_metadata_response_metadata_response_topic_t *t)
{
    int32_t n = topic->nparts;
    t->error_code = KP_ERR_NONE;
    t->name = kp_str(topic->name);
    t->topic_id = topic->id; /* v10+ */
    t->is_internal = false;  /* v1+ */
    t->partitions = gw_req_alloc(req, (size_t)n * sizeof *t->partitions);
    t->partitions_count = n;
    int32_t *leaders = gw_req_alloc(req, (size_t)n * sizeof *leaders);
    for (int32_t i = 0; i < n; i++) {
        kp_metadata_response_metadata_response_partition_t *p = &t->partitions[i];
        kp_metadata_response_metadata_response_partition_init(p);
        leaders[i] = gw_part_leader(req->srv, topic, i);
        bool led = leaders[i] >= 0; /* no leader record yet: none (retriable) */
        p->error_code = led ? KP_ERR_NONE : KP_ERR_LEADER_NOT_AVAILABLE;
        p->partition_index = i;
        p->leader_id = leaders[i];
        p->leader_epoch = led ? st_part_leader_epoch(topic->parts[i]) : -1; /* v7+ */
        p->replica_nodes = &leaders[i]; /* borrowed for encoding */
        p->replica_nodes_count = led ? 1 : 0;
        p->isr_nodes = &leaders[i];
        p->isr_nodes_count = led ? 1 : 0;
        p->offline_replicas_count = 0; /* v5+ */
    }
}

/* One requested topic's entry: the topic, or why there is none. */
static void fill_requested(gw_req_t *req, const kp_metadata_request_t *rq,
                           const kp_metadata_request_metadata_request_topic_t *want,
                           kp_metadata_response_metadata_response_topic_t *t)
{
    st_topic_t *topic;
    if (want->name.len < 0) { /* v10+: by id */
        topic = gw_topic_find_id(req->srv, want->topic_id);
        if (!topic) {
            t->error_code = KP_ERR_UNKNOWN_TOPIC_ID;
            t->name = req->api_version >= 12 ? KP_STR_NULL : kp_str("");
            t->topic_id = want->topic_id;
            t->partitions_count = 0;
            return;
        }
    } else {
        topic = gw_topic_find(req->srv, want->name);
        if (!topic) {
            t->name = want->name;
            t->partitions_count = 0;
            if (!gw_topic_name_valid(want->name))
                t->error_code = KP_ERR_INVALID_TOPIC_EXCEPTION;
            else if (may_create(req, rq))
                t->error_code = KP_ERR_LEADER_NOT_AVAILABLE; /* creation failed: retriable */
            else
                t->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            return;
        }
    }
    fill_topic(req, topic, t);
}

static void respond(gw_req_t *req)
{
    const kp_metadata_request_t *rq = req->body;
    gw_server_t *srv = req->srv;

    kp_metadata_response_t resp;
    kp_metadata_response_init(&resp);
    resp.throttle_time_ms = 0; /* v3+ */
    size_t nnodes;
    const gw_node_t *nodes = gw_live_nodes(req, &nnodes);
    resp.brokers = gw_req_alloc(req, nnodes * sizeof *resp.brokers);
    resp.brokers_count = (int32_t)nnodes;
    for (size_t i = 0; i < nnodes; i++) {
        kp_metadata_response_metadata_response_broker_init(&resp.brokers[i]);
        resp.brokers[i].node_id = nodes[i].id;
        resp.brokers[i].host = kp_str(nodes[i].host);
        resp.brokers[i].port = nodes[i].port;
        resp.brokers[i].rack = KP_STR_NULL; /* v1+ */
    }
    resp.cluster_id = kp_str(gw_cluster_id(srv)); /* v2+ */
    resp.controller_id = gw_controller_id(srv);   /* v1+ */

    if (wants_all(req, rq)) {
        size_t n = st_log_topic_count(srv->log), k = 0;
        resp.topics = gw_req_alloc(req, n * sizeof *resp.topics);
        for (size_t i = 0; i < n; i++) {
            st_topic_t *topic = st_log_topic_at(srv->log, i);
            if (!topic || topic->deleting)
                continue;
            kp_metadata_response_metadata_response_topic_init(&resp.topics[k]);
            fill_topic(req, topic, &resp.topics[k++]);
        }
        resp.topics_count = (int32_t)k;
    } else {
        int32_t n = rq->topics_count > 0 ? rq->topics_count : 0;
        resp.topics = gw_req_alloc(req, (size_t)n * sizeof *resp.topics);
        resp.topics_count = n;
        for (int32_t i = 0; i < n; i++) {
            kp_metadata_response_metadata_response_topic_init(&resp.topics[i]);
            fill_requested(req, rq, &rq->topics[i], &resp.topics[i]);
        }
    }
    gw_req_respond(req, &resp);
}

static void created_cb(st_err_t err, st_topic_t *topic, void *arg)
{
    gw_req_t *req = arg;
    if (err == ST_OK)
        gw_log_info("metadata", "auto-created topic '%s' with %d partitions", topic->name,
                    topic->nparts);
    else if (err != ST_ERR_EXISTS)
        gw_log_warn("metadata", "auto-creating a topic failed: %s", st_err_str(err));
    if (--req->pending == 0)
        respond(req);
}

int gw_api_metadata(gw_req_t *req)
{
    const kp_metadata_request_t *rq = req->body;
    req->pending = 1; /* held until every creation has started */
    if (!wants_all(req, rq) && may_create(req, rq)) {
        for (int32_t i = 0; i < rq->topics_count; i++) {
            kp_str_t name = rq->topics[i].name;
            if (name.len < 0 || !gw_topic_name_valid(name) || gw_topic_find(req->srv, name))
                continue;
            /* A name requested twice is created once: the second creation
             * fails with ST_ERR_EXISTS, which created_cb ignores. */
            if (gw_topic_autocreate(req->srv, name, created_cb, req) == ST_OK)
                req->pending++;
        }
    }
    if (--req->pending == 0)
        respond(req);
    return 0;
}
