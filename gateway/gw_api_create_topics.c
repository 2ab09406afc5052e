/*
 * gw_api_create_topics.c: CreateTopics (key 19), v2-7.
 *
 * Partitions -1 take num.partitions; 0, below -1 or above GW_MAX_PARTITIONS
 * is INVALID_PARTITIONS.
 * Replication factor -1 or any value >= 1 is accepted (durability comes
 * from the object store, DESIGN §8); 0 or below -1 is
 * INVALID_REPLICATION_FACTOR.  Manual replica assignments are
 * INVALID_REQUEST.  Configs are stored as the topic's overrides, except
 * that cleanup.policy=compact is INVALID_CONFIG (key-based compaction is
 * not supported, DESIGN §5), and so is a name that is empty or holds '='
 * or a line break, or a value with a line break (the topic key is made of
 * "config.<name>=<value>" lines).  validate_only checks without creating.
 */
#include "gw_api.h"

#include <string.h>

#include "gw_log.h"

typedef struct ct_ctx {
    gw_req_t *req;
    kp_create_topics_response_creatable_topic_result_t *tr;
} ct_ctx_t;

static void set_error(kp_create_topics_response_creatable_topic_result_t *tr, kp_err_t err,
                      const char *msg)
{
    tr->error_code = (int16_t)err;
    tr->error_message = msg ? kp_str(msg) : KP_STR_NULL;
}

/* True when @v mentions compact (cleanup.policy is a list: "compact,delete"). */
static bool mentions_compact(kp_str_t v)
{
    static const char word[] = "compact";
    size_t n = sizeof word - 1;
    for (int32_t i = 0; v.len >= 0 && (size_t)v.len >= n && i <= v.len - (int32_t)n; i++)
        if (memcmp(v.ptr + i, word, n) == 0)
            return true;
    return false;
}

/* Copy the request's configs for the log; NULL with an error set when one
 * is refused.  Null values mean "the default" and are left out. */
static st_topic_config_t *copy_configs(gw_req_t *req,
                                       const kp_create_topics_request_creatable_topic_t *ct,
                                       kp_create_topics_response_creatable_topic_result_t *tr,
                                       size_t *n)
{
    int32_t count = ct->configs_count > 0 ? ct->configs_count : 0;
    st_topic_config_t *cfgs = gw_req_alloc(req, (size_t)count * sizeof *cfgs);
    *n = 0;
    for (int32_t i = 0; i < count; i++) {
        const kp_create_topics_request_creatable_topic_config_t *c = &ct->configs[i];
        if (c->value.len < 0)
            continue;
        /* The topic key stores "config.<name>=<value>" lines. */
        if (c->name.len <= 0 || memchr(c->name.ptr, '\n', (size_t)c->name.len) ||
            memchr(c->name.ptr, '=', (size_t)c->name.len) ||
            (c->value.len > 0 && memchr(c->value.ptr, '\n', (size_t)c->value.len))) {
            set_error(tr, KP_ERR_INVALID_CONFIG, "a configuration name or value is malformed");
            return NULL;
        }
        if (kp_str_eq(c->name, "cleanup.policy") && mentions_compact(c->value)) {
            set_error(tr, KP_ERR_INVALID_CONFIG, "cleanup.policy=compact is not supported");
            return NULL;
        }
        cfgs[*n].name = gw_req_strdup(req, c->name.ptr, (size_t)c->name.len);
        cfgs[*n].value = gw_req_strdup(req, c->value.ptr, (size_t)c->value.len);
        (*n)++;
    }
    return cfgs;
}

static void fill_created(kp_create_topics_response_creatable_topic_result_t *tr,
                         const st_topic_t *topic)
{
    tr->topic_id = topic->id;           /* v7 */
    tr->num_partitions = topic->nparts; /* v5+ */
}

static void created_cb(st_err_t err, st_topic_t *topic, void *arg)
{
    ct_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    if (err == ST_OK) {
        fill_created(ctx->tr, topic);
        gw_log_info("admin", "created topic '%s' with %d partitions", topic->name, topic->nparts);
    } else {
        set_error(ctx->tr, gw_err_from_st(err), st_err_str(err));
    }
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

/* Check one topic and start creating it (unless validate_only). */
static void create_one(gw_req_t *req, const kp_create_topics_request_creatable_topic_t *ct,
                       kp_create_topics_response_creatable_topic_result_t *tr)
{
    const kp_create_topics_request_t *rq = req->body;
    gw_server_t *srv = req->srv;
    if (!gw_topic_name_valid(ct->name)) {
        set_error(tr, KP_ERR_INVALID_TOPIC_EXCEPTION, "invalid topic name");
        return;
    }
    if (ct->assignments_count > 0) {
        set_error(tr, KP_ERR_INVALID_REQUEST, "manual replica assignment is not supported");
        return;
    }
    if (ct->num_partitions == 0 || ct->num_partitions < -1 ||
        ct->num_partitions > GW_MAX_PARTITIONS) {
        set_error(tr, KP_ERR_INVALID_PARTITIONS, "partitions must be -1 or 1..100000");
        return;
    }
    if (ct->replication_factor == 0 || ct->replication_factor < -1) {
        set_error(tr, KP_ERR_INVALID_REPLICATION_FACTOR, "replication factor must be -1 or >= 1");
        return;
    }
    size_t ncfg;
    st_topic_config_t *cfgs = copy_configs(req, ct, tr, &ncfg);
    if (!cfgs)
        return;
    if (gw_topic_find(srv, ct->name)) {
        set_error(tr, KP_ERR_TOPIC_ALREADY_EXISTS, "topic already exists");
        return;
    }
    int32_t nparts = ct->num_partitions == -1 ? srv->cfg->num_partitions : ct->num_partitions;
    tr->num_partitions = nparts; /* v5+ */
    tr->replication_factor =
        (int16_t)(ct->replication_factor == -1 ? srv->cfg->default_replication_factor
                                               : ct->replication_factor);
    if (rq->validate_only)
        return;
    ct_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->tr = tr;
    int rc = st_log_create_topic(srv->log, ct->name.ptr, (size_t)ct->name.len, nparts, cfgs, ncfg,
                                 created_cb, ctx);
    if (rc != 0) {
        st_err_t e = gw_st_start_err(rc);
        set_error(tr, gw_err_from_st(e), st_err_str(e));
    } else {
        req->pending++;
    }
}

int gw_api_create_topics(gw_req_t *req)
{
    const kp_create_topics_request_t *rq = req->body;
    kp_create_topics_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_create_topics_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->topics = gw_req_alloc(req, (size_t)n * sizeof *resp->topics);
    resp->topics_count = n;
    req->pending = 1; /* held while creations are being started */
    for (int32_t i = 0; i < n; i++) {
        kp_create_topics_response_creatable_topic_result_t *tr = &resp->topics[i];
        kp_create_topics_response_creatable_topic_result_init(tr);
        tr->name = rq->topics[i].name;
        tr->error_message = KP_STR_NULL;
        tr->configs_count = 0; /* v5+: the configs are listed by DescribeConfigs */
        create_one(req, &rq->topics[i], tr);
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}
