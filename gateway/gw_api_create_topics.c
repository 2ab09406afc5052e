/*
 * gw_api_create_topics.c: CreateTopics (key 19), v2-7.
 *
 * Partitions -1 take num.partitions; 0, below -1 or above GW_MAX_PARTITIONS
 * is INVALID_PARTITIONS.
 * Replication factor -1 or any value >= 1 is accepted (durability comes
 * from the object store, DESIGN §8); 0 or below -1 is
 * INVALID_REPLICATION_FACTOR.  A manual replica assignment is accepted as
 * Kafka accepts it on a one-broker cluster: partitions and replication
 * factor both -1 (else INVALID_REQUEST), partitions 0..n-1 each listed
 * once, every replica list the same length and naming this gateway's node
 * id without repeats (else INVALID_REPLICA_ASSIGNMENT); the topic gets n
 * partitions.  Configs are stored as the topic's overrides; a name that is
 * not one of Kafka's topic configs is INVALID_CONFIG, as Kafka answers, and
 * so is cleanup.policy=compact (key-based compaction is not supported,
 * DESIGN §5), a bad value of a configuration the gateway applies
 * (gw_topic_config_check: compression.type brotli, retention.ms -2, ...), a name that is empty or
 * holds '=' or a line break, or a value with a line break (the topic key is made of
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

/* Kafka's topic-level configuration names (LogConfig, Kafka 2.4 to 3.x). */
static const char *const topic_config_names[] = {
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
};

static bool topic_config_known(kp_str_t name)
{
    for (size_t i = 0; i < sizeof topic_config_names / sizeof topic_config_names[0]; i++)
        if (kp_str_eq(name, topic_config_names[i]))
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
        if (!topic_config_known(c->name)) {
            set_error(tr, KP_ERR_INVALID_CONFIG, "unknown topic config name");
            return NULL;
        }
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
        /* The ones the gateway applies get the checks AlterConfigs makes. */
        const char *msg = gw_topic_config_check(req, cfgs[*n].name, cfgs[*n].value);
        if (msg) {
            set_error(tr, KP_ERR_INVALID_CONFIG, msg);
            return NULL;
        }
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

/* The partition count of a manual replica assignment, or -1 with an error
 * set when Kafka would refuse it on a cluster of this one broker. */
static int32_t check_assignments(gw_req_t *req,
                                 const kp_create_topics_request_creatable_topic_t *ct,
                                 kp_create_topics_response_creatable_topic_result_t *tr)
{
    int32_t n = ct->assignments_count;
    if (ct->num_partitions != -1 || ct->replication_factor != -1) {
        set_error(tr, KP_ERR_INVALID_REQUEST,
                  "partitions and replication factor must be -1 with a replica assignment");
        return -1;
    }
    if (n > GW_MAX_PARTITIONS) {
        set_error(tr, KP_ERR_INVALID_PARTITIONS, "partitions must be -1 or 1..100000");
        return -1;
    }
    bool *seen = gw_req_alloc(req, (size_t)n * sizeof *seen);
    memset(seen, 0, (size_t)n * sizeof *seen);
    int32_t node = req->srv->cfg->node_id;
    for (int32_t i = 0; i < n; i++) {
        const kp_create_topics_request_creatable_replica_assignment_t *a = &ct->assignments[i];
        if (a->partition_index < 0 || a->partition_index >= n || seen[a->partition_index]) {
            set_error(tr, KP_ERR_INVALID_REPLICA_ASSIGNMENT,
                      "partitions must be 0..n-1, each assigned once");
            return -1;
        }
        seen[a->partition_index] = true;
        if (a->broker_ids_count != ct->assignments[0].broker_ids_count || a->broker_ids_count < 1) {
            set_error(tr, KP_ERR_INVALID_REPLICA_ASSIGNMENT,
                      "every partition needs the same number of replicas, at least one");
            return -1;
        }
        /* Only this broker exists, and a replica may not repeat. */
        if (a->broker_ids_count != 1 || a->broker_ids[0] != node) {
            set_error(tr, KP_ERR_INVALID_REPLICA_ASSIGNMENT,
                      "a replica names a broker that does not exist, or repeats");
            return -1;
        }
    }
    return n;
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
    int32_t assigned = 0;
    if (ct->assignments_count > 0) {
        assigned = check_assignments(req, ct, tr);
        if (assigned < 0)
            return;
    } else if (ct->num_partitions == 0 || ct->num_partitions < -1 ||
               ct->num_partitions > GW_MAX_PARTITIONS) {
        set_error(tr, KP_ERR_INVALID_PARTITIONS, "partitions must be -1 or 1..100000");
        return;
    } else if (ct->replication_factor == 0 || ct->replication_factor < -1) {
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
    int32_t nparts = assigned > 0               ? assigned
                     : ct->num_partitions == -1 ? srv->cfg->num_partitions
                                                : ct->num_partitions;
    tr->num_partitions = nparts; /* v5+ */
    tr->replication_factor =
        (int16_t)(assigned > 0                   ? 1
                  : ct->replication_factor == -1 ? srv->cfg->default_replication_factor
                                                 : ct->replication_factor);
    if (rq->validate_only)
        return;
    ct_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->tr = tr;
    st_err_t e = gw_topic_create(srv, ct->name, nparts, cfgs, ncfg, created_cb, ctx);
    if (e != ST_OK) {
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
