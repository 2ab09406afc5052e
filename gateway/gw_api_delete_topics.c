/*
 * gw_api_delete_topics.c: DeleteTopics (key 20), v1-6.  v1-5 name topics;
 * v6 names each by name or by id.  An unknown topic is
 * UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_ID when named by id).
 */
#include "gw_api.h"

#include <string.h>

#include "gw_log.h"

typedef struct dt_ctx {
    gw_req_t *req;
    kp_delete_topics_response_deletable_topic_result_t *tr;
} dt_ctx_t;

static void deleted_cb(st_err_t err, void *arg)
{
    dt_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    ctx->tr->error_code = (int16_t)gw_err_from_st(err);
    if (err == ST_OK)
        gw_log_info("admin", "deleted topic '%.*s'", (int)ctx->tr->name.len, ctx->tr->name.ptr);
    else
        ctx->tr->error_message = kp_str(st_err_str(err)); /* v5+ */
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

/* Delete @topic (NULL: unknown, error @unknown) for result @tr. */
static void delete_one(gw_req_t *req, st_topic_t *topic, kp_err_t unknown,
                       kp_delete_topics_response_deletable_topic_result_t *tr)
{
    if (!topic) {
        tr->error_code = (int16_t)unknown;
        return;
    }
    /* The topic's name dies with it: keep a copy for the answer. */
    tr->name = kp_str(gw_req_strdup(req, topic->name, strlen(topic->name)));
    tr->topic_id = topic->id; /* v6 */
    dt_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->tr = tr;
    int rc = st_log_delete_topic(req->srv->log, topic, deleted_cb, ctx);
    if (rc != 0)
        tr->error_code = (int16_t)gw_err_from_st(gw_st_start_err(rc));
    else
        req->pending++;
}

int gw_api_delete_topics(gw_req_t *req)
{
    const kp_delete_topics_request_t *rq = req->body;
    kp_delete_topics_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_delete_topics_response_init(resp);
    resp->throttle_time_ms = 0;
    bool v6 = req->api_version >= 6;
    int32_t n = v6 ? rq->topics_count : rq->topic_names_count;
    n = n > 0 ? n : 0;
    resp->responses = gw_req_alloc(req, (size_t)n * sizeof *resp->responses);
    resp->responses_count = n;
    req->pending = 1; /* held while deletions are being started */
    for (int32_t i = 0; i < n; i++) {
        kp_delete_topics_response_deletable_topic_result_t *tr = &resp->responses[i];
        kp_delete_topics_response_deletable_topic_result_init(tr);
        tr->error_message = KP_STR_NULL;
        if (!v6) {
            tr->name = rq->topic_names[i];
            delete_one(req, gw_topic_find(req->srv, tr->name), KP_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                       tr);
        } else if (rq->topics[i].name.len >= 0) {
            tr->name = rq->topics[i].name;
            delete_one(req, gw_topic_find(req->srv, tr->name), KP_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                       tr);
        } else {
            tr->name = KP_STR_NULL; /* nullable in v6 */
            tr->topic_id = rq->topics[i].topic_id;
            delete_one(req, gw_topic_find_id(req->srv, tr->topic_id), KP_ERR_UNKNOWN_TOPIC_ID, tr);
        }
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}
