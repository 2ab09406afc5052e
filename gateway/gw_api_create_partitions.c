/*
 * gw_api_create_partitions.c: CreatePartitions (key 37).
 *
 * Only increases: a count at or below the topic's current one, or above
 * GW_MAX_PARTITIONS, is INVALID_PARTITIONS.  A manual assignment is
 * accepted as Kafka accepts it on a one-broker cluster: one replica list per
 * new partition, each naming only this gateway's node id; anything else is
 * INVALID_REPLICA_ASSIGNMENT (replication belongs to the object store).  A
 * topic named twice is INVALID_REQUEST for both.  validate_only checks
 * without changing anything.  The new count is stored in the topic key
 * with a compare on its previous value (st_log_create_partitions): a
 * concurrent change of the same topic makes the loser NOT_CONTROLLER, which
 * admin clients retry after refreshing metadata.  The response waits until
 * the new partitions' leader records are written (gw_topic_add_partitions):
 * they take produce and fetch as soon as it is sent.
 */
#include "gw_api.h"

#include <stdio.h>
#include <string.h>

#include "gw_log.h"

typedef kp_create_partitions_response_create_partitions_topic_result_t cp_result_t;

typedef struct cp_ctx {
    gw_req_t *req;
    cp_result_t *tr;
    int32_t count;
} cp_ctx_t;

static void set_error(gw_req_t *req, cp_result_t *tr, kp_err_t err, const char *msg)
{
    tr->error_code = (int16_t)err;
    tr->error_message = msg ? kp_str(gw_req_strdup(req, msg, strlen(msg))) : KP_STR_NULL;
}

static void done_cb(st_err_t err, void *arg)
{
    cp_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    if (err == ST_OK) {
        gw_log_info("admin", "topic '%.*s' now has %d partitions", (int)ctx->tr->name.len,
                    ctx->tr->name.ptr, ctx->count);
    } else if (err == ST_ERR_CONFLICT) {
        set_error(req, ctx->tr, KP_ERR_NOT_CONTROLLER, "the topic changed concurrently: retry");
    } else {
        set_error(req, ctx->tr, gw_err_from_st(err), st_err_str(err));
    }
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

/* Why Kafka would refuse @ct's manual assignment of @added new partitions
 * on a cluster of this one broker, or NULL. */
static const char *
assignment_refused(gw_req_t *req, const kp_create_partitions_request_create_partitions_topic_t *ct,
                   int32_t added)
{
    if (ct->assignments_count != added)
        return "one replica list is needed for each new partition";
    for (int32_t i = 0; i < ct->assignments_count; i++) {
        const kp_create_partitions_request_create_partitions_assignment_t *a = &ct->assignments[i];
        /* Only this broker exists, and a replica may not repeat. */
        if (a->broker_ids_count != 1 || a->broker_ids[0] != req->srv->cfg->node_id)
            return "a replica names a broker that does not exist, or repeats";
    }
    return NULL;
}

static void create_one(gw_req_t *req, int32_t i, bool dup, cp_result_t *tr)
{
    const kp_create_partitions_request_t *rq = req->body;
    const kp_create_partitions_request_create_partitions_topic_t *ct = &rq->topics[i];
    if (dup) {
        set_error(req, tr, KP_ERR_INVALID_REQUEST, "topic named more than once in the request");
        return;
    }
    st_topic_t *topic = gw_topic_find(req->srv, ct->name);
    if (!topic) {
        set_error(req, tr, KP_ERR_UNKNOWN_TOPIC_OR_PARTITION, "unknown topic");
        return;
    }
    char msg[128];
    if (ct->count <= topic->nparts) {
        snprintf(msg, sizeof msg, "topic currently has %d partitions, %s the requested %d",
                 topic->nparts, ct->count == topic->nparts ? "equal to" : "more than", ct->count);
        set_error(req, tr, KP_ERR_INVALID_PARTITIONS, msg);
        return;
    }
    if (ct->count > GW_MAX_PARTITIONS) {
        snprintf(msg, sizeof msg, "at most %d partitions", GW_MAX_PARTITIONS);
        set_error(req, tr, KP_ERR_INVALID_PARTITIONS, msg);
        return;
    }
    if (ct->assignments_count >= 0) {
        const char *why = assignment_refused(req, ct, ct->count - topic->nparts);
        if (why) {
            set_error(req, tr, KP_ERR_INVALID_REPLICA_ASSIGNMENT, why);
            return;
        }
    }
    if (rq->validate_only)
        return;
    cp_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->tr = tr;
    ctx->count = ct->count;
    st_err_t e = gw_topic_add_partitions(req->srv, topic, ct->count, done_cb, ctx);
    if (e != ST_OK) {
        set_error(req, tr, gw_err_from_st(e), st_err_str(e));
    } else {
        req->pending++;
    }
}

int gw_api_create_partitions(gw_req_t *req)
{
    const kp_create_partitions_request_t *rq = req->body;
    kp_create_partitions_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_create_partitions_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->results = gw_req_alloc(req, (size_t)n * sizeof *resp->results);
    resp->results_count = n;
    kp_str_t *names = gw_req_alloc(req, (size_t)n * sizeof *names + 1);
    for (int32_t i = 0; i < n; i++)
        names[i] = rq->topics[i].name;
    bool *dup = gw_names_repeated(req, names, n);
    req->pending = 1; /* held while changes are being started */
    for (int32_t i = 0; i < n; i++) {
        cp_result_t *tr = &resp->results[i];
        kp_create_partitions_response_create_partitions_topic_result_init(tr);
        tr->name = rq->topics[i].name;
        tr->error_code = KP_ERR_NONE;
        tr->error_message = KP_STR_NULL;
        create_one(req, i, dup[i], tr);
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}
