/*
 * gw_api_alter_configs.c: AlterConfigs (key 33) and IncrementalAlterConfigs
 * (key 44) for topics.
 *
 * The topic configurations that can be changed are those the gateway
 * applies or meets by construction (docs/compatibility.md, "Topic
 * configurations"): retention.ms (a long >= -1), retention.bytes (a long
 * >= -1), max.message.bytes (an int >= 0; Produce enforces it at once),
 * cleanup.policy (a list whose only supported value is "delete": compact is
 * not built, DESIGN §5), compression.type (producer, uncompressed, gzip,
 * snappy, lz4 or zstd; Produce recompresses batches of another codec),
 * flush.ms (a long >= 0) and flush.messages (a long >= 1) -- every
 * acknowledged record is already durable, so any value is met -- and
 * message.format.version (a Kafka release such as 0.10.0 or 2.8-IV1;
 * batches are always written in format v2, as Kafka 3.0 and later do
 * whatever the value, KIP-724).  Any other configuration set to exactly the
 * value DescribeConfigs reports for it is a no-op and accepted, as a client re-sending the
 * described set expects; any other name or value (a DELETE of one that cannot be changed included),
 * APPEND or SUBTRACT on a non-list configuration, or a SET without a value is INVALID_CONFIG
 * (nothing is stored and ignored). AlterConfigs replaces every override of the topic by the given
 * ones (Kafka's legacy semantics: the rest revert to their defaults); IncrementalAlterConfigs
 * applies SET, DELETE, APPEND and SUBTRACT to the current overrides.  A configuration named twice
 * in one resource of AlterConfigs takes its last value (Kafka reads them into a Properties, and
 * librdkafka's test_AlterConfigs_simple sends a changed one after the described set); in
 * IncrementalAlterConfigs it is INVALID_REQUEST, as is a topic named twice in one request.
 * validate_only checks without storing.  The overrides are stored in the topic key with a compare
 * on its previous value (st_log_set_topic_configs); a concurrent change makes the loser
 * NOT_CONTROLLER (retriable).
 *
 * A broker resource (type 4) naming this node may change only the dynamic
 * Kerberos login settings of gw_broker_cfg.c (met by construction: there
 * is no SASL listener), stored per node: AlterConfigs replaces them,
 * IncrementalAlterConfigs SETs and DELETEs them (compare on the key's
 * revision; a concurrent change is NOT_CONTROLLER).  Every other broker
 * configuration is static (file and command line) and INVALID_REQUEST, as
 * Kafka answers for a broker configuration that cannot be updated
 * dynamically; so are a bad value, another node's id, the cluster-wide
 * default (""), a broker named twice, and other resource types.
 */
#include "gw_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "kp_compress.h"

/* IncrementalAlterConfigs operations. */
#define OP_SET 0
#define OP_DELETE 1
#define OP_APPEND 2
#define OP_SUBTRACT 3

typedef enum cfg_kind { KIND_LONG, KIND_INT, KIND_LIST, KIND_CODEC, KIND_VERSION } cfg_kind_t;

typedef struct alterable {
    const char *name;
    cfg_kind_t kind;
    long long min; /* KIND_LONG: the smallest value */
} alterable_t;

static const alterable_t alterables[] = {
    {"cleanup.policy", KIND_LIST, 0},   {"compression.type", KIND_CODEC, 0},
    {"flush.messages", KIND_LONG, 1},   {"flush.ms", KIND_LONG, 0},
    {"max.message.bytes", KIND_INT, 0}, {"message.format.version", KIND_VERSION, 0},
    {"retention.bytes", KIND_LONG, -1}, {"retention.ms", KIND_LONG, -1},
};

/* compression.type values, indexed by kp_compression_t; "producer" is -1. */
static const char *const codec_names[KP_COMPRESSION__NUM] = {
    [KP_COMPRESSION_NONE] = "uncompressed", [KP_COMPRESSION_GZIP] = "gzip",
    [KP_COMPRESSION_SNAPPY] = "snappy",     [KP_COMPRESSION_LZ4] = "lz4",
    [KP_COMPRESSION_ZSTD] = "zstd",
};

/* The codec @v names, -1 for "producer", -2 for anything else. */
static int codec_parse(const char *v)
{
    if (strcmp(v, "producer") == 0)
        return -1;
    for (int c = 0; c < KP_COMPRESSION__NUM; c++)
        if (strcmp(v, codec_names[c]) == 0)
            return c;
    return -2;
}

int gw_topic_codec(const st_topic_t *topic)
{
    const char *v = topic ? st_topic_config(topic, "compression.type") : NULL;
    int c = v ? codec_parse(v) : -1;
    return c >= 0 ? c : -1;
}

/* A Kafka release as message.format.version takes it: 0.8.0 to 0.11.0
 * (three or more numbers), 1.0 to 3.9 (two or more), optionally followed
 * by an inter-broker protocol suffix "-IV<n>". */
static bool version_valid(const char *v)
{
    long part[8];
    int n = 0;
    const char *p = v;
    for (;;) {
        if (*p < '0' || *p > '9' || n == 8)
            return false;
        char *end;
        part[n++] = strtol(p, &end, 10);
        if (end - p > 4)
            return false;
        p = end;
        if (*p != '.')
            break;
        p++;
    }
    if (*p == '-') {
        if (p[1] != 'I' || p[2] != 'V' || p[3] < '0' || p[3] > '9')
            return false;
        for (p += 3; *p >= '0' && *p <= '9'; p++)
            ;
    }
    if (*p)
        return false;
    switch (part[0]) {
    case 0:
        return n >= 3 && part[1] >= 8 && part[1] <= 11;
    case 1:
        return n >= 2 && part[1] <= 1;
    case 2:
        return n >= 2 && part[1] <= 8;
    case 3:
        return n >= 2 && part[1] <= 9;
    default:
        return false;
    }
}
#define N_ALTERABLE (sizeof alterables / sizeof alterables[0])

static const alterable_t *alterable_find(const char *name)
{
    for (size_t i = 0; i < N_ALTERABLE; i++)
        if (strcmp(alterables[i].name, name) == 0)
            return &alterables[i];
    return NULL;
}

bool gw_topic_config_alterable(const char *name)
{
    return alterable_find(name) != NULL;
}

/* A decimal integer in [@min, @max], spaces around it allowed. */
static bool parse_int(const char *s, long long min, long long max, long long *out)
{
    while (*s == ' ')
        s++;
    if (!*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (*end == ' ')
        end++;
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int32_t gw_topic_max_message_bytes(const gw_server_t *srv, const st_topic_t *topic)
{
    const char *v = topic ? st_topic_config(topic, "max.message.bytes") : NULL;
    long long n;
    if (v && parse_int(v, 0, INT32_MAX, &n))
        return (int32_t)n;
    return srv->cfg->message_max_bytes;
}

/* The error message for @name = @value, or NULL when the pair may be
 * stored. */
static const char *check_value(gw_req_t *req, const char *name, const char *value)
{
    const alterable_t *a = alterable_find(name);
    char msg[384];
    if (!a) {
        snprintf(msg, sizeof msg,
                 "'%.64s' cannot be changed: only retention.ms, retention.bytes, "
                 "max.message.bytes, cleanup.policy, compression.type, flush.ms, "
                 "flush.messages and message.format.version can (others only to the value "
                 "DescribeConfigs reports)",
                 name);
        return gw_req_strdup(req, msg, strlen(msg));
    }
    if (!value)
        return "a value is required";
    if (strchr(value, '\n'))
        return "the value contains a line break";
    long long n;
    switch (a->kind) {
    case KIND_LONG:
        if (!parse_int(value, a->min, INT64_MAX, &n)) {
            snprintf(msg, sizeof msg, "%s must be an integer >= %lld, not '%.64s'", name, a->min,
                     value);
            return gw_req_strdup(req, msg, strlen(msg));
        }
        return NULL;
    case KIND_CODEC:
        if (codec_parse(value) == -2) {
            snprintf(msg, sizeof msg,
                     "compression.type '%.64s' is not one of [producer, uncompressed, gzip, "
                     "snappy, lz4, zstd]",
                     value);
            return gw_req_strdup(req, msg, strlen(msg));
        }
        return NULL;
    case KIND_VERSION:
        if (!version_valid(value)) {
            snprintf(msg, sizeof msg,
                     "message.format.version '%.64s' is not a Kafka version (0.8.0 to 3.x)", value);
            return gw_req_strdup(req, msg, strlen(msg));
        }
        return NULL;
    case KIND_INT:
        if (!parse_int(value, 0, INT32_MAX, &n)) {
            snprintf(msg, sizeof msg, "%s must be an integer in 0..2147483647, not '%.64s'", name,
                     value);
            return gw_req_strdup(req, msg, strlen(msg));
        }
        return NULL;
    case KIND_LIST: {
        /* cleanup.policy: a comma-separated list; only "delete" is built. */
        bool any = false;
        const char *p = value;
        while (*p) {
            while (*p == ' ' || *p == ',')
                p++;
            const char *e = p;
            while (*e && *e != ',')
                e++;
            const char *t = e;
            while (t > p && t[-1] == ' ')
                t--;
            if (t > p) {
                size_t len = (size_t)(t - p);
                if (len == 7 && memcmp(p, "compact", 7) == 0)
                    return "cleanup.policy=compact is not supported";
                if (len != 6 || memcmp(p, "delete", 6) != 0) {
                    snprintf(msg, sizeof msg, "cleanup.policy '%.*s' is not one of [delete]",
                             (int)(len > 64 ? 64 : len), p);
                    return gw_req_strdup(req, msg, strlen(msg));
                }
                any = true;
            }
            p = e;
        }
        return any ? NULL : "cleanup.policy must be delete";
    }
    }
    return "unknown configuration";
}

const char *gw_topic_config_check(gw_req_t *req, const char *name, const char *value)
{
    return alterable_find(name) ? check_value(req, name, value) : NULL;
}

/* ---------------------------------------------------------------- overrides */

/* A topic's overrides while a request edits them (strings in the arena). */
typedef struct cfg_set {
    st_topic_config_t *c;
    size_t n, cap;
} cfg_set_t;

static void set_init(gw_req_t *req, cfg_set_t *s, size_t cap)
{
    s->cap = cap + 1;
    s->c = gw_req_alloc(req, s->cap * sizeof *s->c);
    s->n = 0;
}

static st_topic_config_t *set_find(cfg_set_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->c[i].name, name) == 0)
            return &s->c[i];
    return NULL;
}

static void set_put(cfg_set_t *s, char *name, char *value)
{
    st_topic_config_t *c = set_find(s, name);
    if (c) {
        c->value = value;
    } else {
        s->c[s->n].name = name;
        s->c[s->n++].value = value;
    }
}

static void set_del(cfg_set_t *s, const char *name)
{
    st_topic_config_t *c = set_find(s, name);
    if (c)
        *c = s->c[--s->n];
}

static char *dup_str(gw_req_t *req, kp_str_t s)
{
    return s.len < 0 ? NULL : gw_req_strdup(req, s.ptr, (size_t)s.len);
}

/* ---------------------------------------------------------------- results */

/* Both responses have the same resource result layout. */
typedef struct res_out {
    int16_t *error_code;
    kp_str_t *error_message;
} res_out_t;

typedef struct alter_ctx {
    gw_req_t *req;
    res_out_t out;
    const char *topic;
} alter_ctx_t;

static void set_error(res_out_t *o, kp_err_t err, const char *msg)
{
    *o->error_code = (int16_t)err;
    *o->error_message = msg ? kp_str(msg) : KP_STR_NULL;
}

static void stored_cb(st_err_t err, void *arg)
{
    alter_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    if (err == ST_OK)
        gw_log_info("admin", "configuration of topic '%s' changed", ctx->topic);
    else if (err == ST_ERR_CONFLICT)
        set_error(&ctx->out, KP_ERR_NOT_CONTROLLER, "the topic changed concurrently: retry");
    else
        set_error(&ctx->out, gw_err_from_st(err), st_err_str(err));
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

/* Check the resource; the topic to change or NULL with the error set. */
static st_topic_t *resource_topic(gw_req_t *req, int8_t type, kp_str_t name, bool dup, res_out_t *o)
{
    if (type == GW_RESOURCE_BROKER) {
        set_error(o, KP_ERR_INVALID_REQUEST,
                  "broker configuration is static: change the configuration file or command "
                  "line and restart");
        return NULL;
    }
    if (type != GW_RESOURCE_TOPIC) {
        set_error(o, KP_ERR_INVALID_REQUEST, "unsupported resource type");
        return NULL;
    }
    if (dup) {
        set_error(o, KP_ERR_INVALID_REQUEST, "topic named more than once in the request");
        return NULL;
    }
    st_topic_t *topic = gw_topic_find(req->srv, name);
    if (!topic)
        set_error(o, KP_ERR_UNKNOWN_TOPIC_OR_PARTITION, "unknown topic");
    return topic;
}

/* Check every override of @s and store them unless @validate_only. */
static void finish_resource(gw_req_t *req, st_topic_t *topic, cfg_set_t *s, bool validate_only,
                            res_out_t *o)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *now = st_topic_config(topic, s->c[i].name);
        if (!gw_topic_config_alterable(s->c[i].name) && now && strcmp(now, s->c[i].value) == 0)
            continue; /* an override kept as it is */
        const char *msg = check_value(req, s->c[i].name, s->c[i].value);
        if (msg) {
            set_error(o, KP_ERR_INVALID_CONFIG, msg);
            return;
        }
    }
    if (validate_only)
        return;
    alter_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->out = *o;
    ctx->topic = topic->name;
    int rc = st_log_set_topic_configs(req->srv->log, topic, s->c, s->n, stored_cb, ctx);
    if (rc != 0) {
        st_err_t e = gw_st_start_err(rc);
        set_error(o, gw_err_from_st(e), st_err_str(e));
    } else {
        req->pending++;
    }
}

/* True when @value is what DescribeConfigs reports for @name: setting it
 * changes nothing. */
static bool unchanged(gw_req_t *req, const st_topic_t *topic, const char *name, const char *value)
{
    const char *now = gw_topic_config_described(req, topic, name);
    return now && value && strcmp(now, value) == 0;
}

/* True when a configuration name occurs twice among @n. */
static bool names_repeat(gw_req_t *req, const kp_str_t *names, int32_t n)
{
    bool *dup = gw_names_repeated(req, names, n);
    for (int32_t i = 0; i < n; i++)
        if (dup[i])
            return true;
    return false;
}

/* ---------------------------------------------------------------- broker */

/* The broker resource @name: true when it is this node, else the error is
 * set.  The cluster-wide default ("") cannot be changed. */
static bool broker_is_us(gw_req_t *req, kp_str_t name, bool dup, res_out_t *o)
{
    char id[16];
    snprintf(id, sizeof id, "%d", req->srv->cfg->node_id);
    if (!kp_str_eq(name, id)) {
        set_error(o, KP_ERR_INVALID_REQUEST,
                  name.len > 0 ? "no such broker on this node"
                               : "cluster-wide broker defaults cannot be changed");
        return false;
    }
    if (dup) {
        set_error(o, KP_ERR_INVALID_REQUEST, "broker named more than once in the request");
        return false;
    }
    return true;
}

static void broker_stored(st_err_t err, void *arg)
{
    alter_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    if (err == ST_OK)
        gw_log_info("admin", "dynamic configuration of broker %d changed", req->srv->cfg->node_id);
    else if (err == ST_ERR_CONFLICT)
        set_error(&ctx->out, KP_ERR_NOT_CONTROLLER, "changed concurrently: retry");
    else
        set_error(&ctx->out, gw_err_from_st(err), st_err_str(err));
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

/* Start storing @s for the broker (compare on @mod_rev when >= 0); on
 * failure to start, the error is set. */
static void broker_store(gw_req_t *req, alter_ctx_t *ctx, cfg_set_t *s, int64_t mod_rev)
{
    int rc = gw_broker_cfgs_store(req, s->c, s->n, mod_rev, broker_stored, ctx);
    if (rc != 0) {
        st_err_t e = gw_st_start_err(rc);
        set_error(&ctx->out, gw_err_from_st(e), st_err_str(e));
    } else {
        req->pending++;
    }
}

/* AlterConfigs of this broker: the given dynamic configurations replace
 * the stored ones (null values are left out, the last of a repeated name
 * counts). */
static void alter_broker(gw_req_t *req,
                         const kp_alter_configs_request_alter_configs_resource_t *res, bool dup,
                         res_out_t *o)
{
    const kp_alter_configs_request_t *rq = req->body;
    if (!broker_is_us(req, res->resource_name, dup, o))
        return;
    int32_t n = res->configs_count > 0 ? res->configs_count : 0;
    cfg_set_t s;
    set_init(req, &s, (size_t)n);
    for (int32_t i = 0; i < n; i++) {
        const kp_alter_configs_request_alterable_config_t *c = &res->configs[i];
        char *name = dup_str(req, c->name);
        char *value = dup_str(req, c->value);
        const char *msg = gw_broker_config_check(req, name ? name : "", value);
        if (msg && !(name && value == NULL && gw_broker_config_dynamic(name))) {
            set_error(o, KP_ERR_INVALID_REQUEST, msg);
            return;
        }
        if (value)
            set_put(&s, name, value);
    }
    if (rq->validate_only)
        return;
    alter_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->out = *o;
    ctx->topic = NULL;
    broker_store(req, ctx, &s, -1);
}

/* IncrementalAlterConfigs of this broker: checked first, then applied to
 * the stored configurations once they are read. */
typedef struct incr_broker {
    alter_ctx_t ctx;
    const kp_incremental_alter_configs_request_alter_configs_resource_t *res;
} incr_broker_t;

static void incr_broker_loaded(st_err_t err, const gw_broker_cfgs_t *cur, void *arg)
{
    incr_broker_t *ib = arg;
    gw_req_t *req = ib->ctx.req;
    if (err != ST_OK) {
        set_error(&ib->ctx.out, gw_err_from_st(err), st_err_str(err));
    } else {
        int32_t n = ib->res->configs_count > 0 ? ib->res->configs_count : 0;
        cfg_set_t s;
        set_init(req, &s, cur->n + (size_t)n);
        for (size_t i = 0; i < cur->n; i++)
            set_put(&s, cur->c[i].name, cur->c[i].value);
        for (int32_t i = 0; i < n; i++) {
            const kp_incremental_alter_configs_request_alterable_config_t *c = &ib->res->configs[i];
            char *name = dup_str(req, c->name);
            if (c->config_operation == OP_SET)
                set_put(&s, name, dup_str(req, c->value));
            else
                set_del(&s, name);
        }
        broker_store(req, &ib->ctx, &s, cur->mod_rev);
    }
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

static void
incremental_broker(gw_req_t *req,
                   const kp_incremental_alter_configs_request_alter_configs_resource_t *res,
                   bool dup, res_out_t *o)
{
    const kp_incremental_alter_configs_request_t *rq = req->body;
    if (!broker_is_us(req, res->resource_name, dup, o))
        return;
    int32_t n = res->configs_count > 0 ? res->configs_count : 0;
    kp_str_t *names = gw_req_alloc(req, (size_t)n * sizeof *names + 1);
    for (int32_t i = 0; i < n; i++)
        names[i] = res->configs[i].name;
    if (names_repeat(req, names, n)) {
        set_error(o, KP_ERR_INVALID_REQUEST, "a configuration is named more than once");
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        const kp_incremental_alter_configs_request_alterable_config_t *c = &res->configs[i];
        char *name = dup_str(req, c->name);
        char *value = dup_str(req, c->value);
        const char *msg = NULL;
        if (!name || !gw_broker_config_dynamic(name))
            msg = gw_broker_config_check(req, name ? name : "", value);
        else if (c->config_operation == OP_SET)
            msg = gw_broker_config_check(req, name, value);
        else if (c->config_operation != OP_DELETE)
            msg = "only SET and DELETE apply to this configuration";
        if (msg) {
            set_error(o, KP_ERR_INVALID_REQUEST, msg);
            return;
        }
    }
    if (rq->validate_only)
        return;
    incr_broker_t *ib = gw_req_alloc(req, sizeof *ib);
    ib->ctx.req = req;
    ib->ctx.out = *o;
    ib->ctx.topic = NULL;
    ib->res = res;
    int rc = gw_broker_cfgs_load(req, incr_broker_loaded, ib);
    if (rc != 0) {
        st_err_t e = gw_st_start_err(rc);
        set_error(o, gw_err_from_st(e), st_err_str(e));
    } else {
        req->pending++;
    }
}

/* ---------------------------------------------------------------- AlterConfigs */

static void alter_one(gw_req_t *req, const kp_alter_configs_request_alter_configs_resource_t *res,
                      bool dup, res_out_t *o)
{
    const kp_alter_configs_request_t *rq = req->body;
    if (res->resource_type == GW_RESOURCE_BROKER) {
        alter_broker(req, res, dup, o);
        return;
    }
    st_topic_t *topic = resource_topic(req, res->resource_type, res->resource_name, dup, o);
    if (!topic)
        return;
    /* A configuration named twice: the last value counts, as in Kafka
     * (its legacy AlterConfigs reads the entries into a Properties). */
    int32_t n = res->configs_count > 0 ? res->configs_count : 0;
    cfg_set_t s;
    set_init(req, &s, (size_t)n);
    for (int32_t i = 0; i < n; i++) {
        const kp_alter_configs_request_alterable_config_t *c = &res->configs[i];
        char *name = dup_str(req, c->name);
        if (!name || !name[0]) {
            set_error(o, KP_ERR_INVALID_CONFIG, "a configuration without a name");
            return;
        }
        if (c->value.len < 0) { /* null: the default, if it is one we could change */
            if (!gw_topic_config_alterable(name)) {
                set_error(o, KP_ERR_INVALID_CONFIG, check_value(req, name, NULL));
                return;
            }
            continue;
        }
        char *value = dup_str(req, c->value);
        if (!gw_topic_config_alterable(name) && unchanged(req, topic, name, value)) {
            /* The value it has: nothing changes.  An override it has
             * (from CreateTopics) stays; a default is not stored. */
            if (st_topic_config(topic, name))
                set_put(&s, name, value);
            else
                set_del(&s, name);
            continue;
        }
        set_put(&s, name, value);
    }
    finish_resource(req, topic, &s, rq->validate_only, o);
}

int gw_api_alter_configs(gw_req_t *req)
{
    const kp_alter_configs_request_t *rq = req->body;
    kp_alter_configs_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_alter_configs_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->resources_count > 0 ? rq->resources_count : 0;
    resp->responses = gw_req_alloc(req, (size_t)n * sizeof *resp->responses);
    resp->responses_count = n;
    kp_str_t *names = gw_req_alloc(req, (size_t)n * sizeof *names + 1);
    for (int32_t i = 0; i < n; i++)
        names[i] = rq->resources[i].resource_type == GW_RESOURCE_TOPIC
                       ? rq->resources[i].resource_name
                       : (kp_str_t){"\n", 1}; /* never a topic name */
    kp_str_t *bnames = gw_req_alloc(req, (size_t)n * sizeof *bnames + 1);
    for (int32_t i = 0; i < n; i++)
        bnames[i] = rq->resources[i].resource_type == GW_RESOURCE_BROKER
                        ? rq->resources[i].resource_name
                        : (kp_str_t){"\n", 1};
    bool *bdup = gw_names_repeated(req, bnames, n);
    for (int32_t i = 0; i < n; i++)
        bdup[i] = bdup[i] && rq->resources[i].resource_type == GW_RESOURCE_BROKER;
    bool *dup = gw_names_repeated(req, names, n);
    req->pending = 1; /* held while changes are being started */
    for (int32_t i = 0; i < n; i++) {
        kp_alter_configs_response_alter_configs_resource_response_t *r = &resp->responses[i];
        kp_alter_configs_response_alter_configs_resource_response_init(r);
        r->error_code = KP_ERR_NONE;
        r->error_message = KP_STR_NULL;
        r->resource_type = rq->resources[i].resource_type;
        r->resource_name = rq->resources[i].resource_name;
        res_out_t o = {&r->error_code, &r->error_message};
        alter_one(req, &rq->resources[i],
                  (dup[i] && rq->resources[i].resource_type == GW_RESOURCE_TOPIC) || bdup[i], &o);
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}

/* ---------------------------------------------------------------- Incremental */

/* APPEND or SUBTRACT @value's items to or from the list @cur. */
static char *list_op(gw_req_t *req, const char *cur, const char *value, bool append)
{
    size_t cap = strlen(cur) + strlen(value) + 2;
    char *out = gw_req_alloc(req, cap);
    out[0] = '\0';
    /* items of cur, minus value's items when subtracting */
    const char *lists[2] = {cur, value};
    for (int l = 0; l < (append ? 2 : 1); l++) {
        const char *p = lists[l];
        while (*p) {
            while (*p == ' ' || *p == ',')
                p++;
            const char *e = p;
            while (*e && *e != ',')
                e++;
            const char *t = e;
            while (t > p && t[-1] == ' ')
                t--;
            size_t len = (size_t)(t - p);
            bool drop = len == 0;
            /* already there (append) or named in value (subtract) */
            const char *in = append ? out : value;
            for (const char *q = in; !drop && *q;) {
                while (*q == ' ' || *q == ',')
                    q++;
                const char *qe = q;
                while (*qe && *qe != ',')
                    qe++;
                const char *qt = qe;
                while (qt > q && qt[-1] == ' ')
                    qt--;
                drop = (size_t)(qt - q) == len && memcmp(q, p, len) == 0;
                q = qe;
            }
            if (!drop) {
                size_t o = strlen(out);
                snprintf(out + o, cap - o, "%s%.*s", o ? "," : "", (int)len, p);
            }
            p = e;
        }
    }
    return out;
}

static void
incremental_one(gw_req_t *req,
                const kp_incremental_alter_configs_request_alter_configs_resource_t *res, bool dup,
                res_out_t *o)
{
    const kp_incremental_alter_configs_request_t *rq = req->body;
    if (res->resource_type == GW_RESOURCE_BROKER) {
        incremental_broker(req, res, dup, o);
        return;
    }
    st_topic_t *topic = resource_topic(req, res->resource_type, res->resource_name, dup, o);
    if (!topic)
        return;
    int32_t n = res->configs_count > 0 ? res->configs_count : 0;
    kp_str_t *names = gw_req_alloc(req, (size_t)n * sizeof *names + 1);
    for (int32_t i = 0; i < n; i++)
        names[i] = res->configs[i].name;
    if (names_repeat(req, names, n)) {
        set_error(o, KP_ERR_INVALID_REQUEST, "a configuration is named more than once");
        return;
    }
    cfg_set_t s;
    set_init(req, &s, topic->nconfigs + (size_t)n);
    for (size_t i = 0; i < topic->nconfigs; i++)
        set_put(&s, topic->configs[i].name, topic->configs[i].value);
    for (int32_t i = 0; i < n; i++) {
        const kp_incremental_alter_configs_request_alterable_config_t *c = &res->configs[i];
        char *name = dup_str(req, c->name);
        char *value = dup_str(req, c->value);
        const alterable_t *a = name ? alterable_find(name) : NULL;
        /* Not changeable: a SET to its current value changes nothing. */
        if (!a && name && c->config_operation == OP_SET && unchanged(req, topic, name, value))
            continue;
        if (!a) {
            set_error(o, KP_ERR_INVALID_CONFIG, check_value(req, name ? name : "", value));
            return;
        }
        switch (c->config_operation) {
        case OP_SET:
            if (!value) {
                set_error(o, KP_ERR_INVALID_CONFIG, "SET needs a value");
                return;
            }
            set_put(&s, name, value);
            break;
        case OP_DELETE:
            set_del(&s, name);
            break;
        case OP_APPEND:
        case OP_SUBTRACT: {
            if (a->kind != KIND_LIST) {
                set_error(o, KP_ERR_INVALID_CONFIG,
                          "APPEND and SUBTRACT apply only to list configurations");
                return;
            }
            if (!value) {
                set_error(o, KP_ERR_INVALID_CONFIG, "APPEND and SUBTRACT need a value");
                return;
            }
            st_topic_config_t *cur = set_find(&s, name);
            const char *now = cur ? cur->value : "delete"; /* the default */
            set_put(&s, name, list_op(req, now, value, c->config_operation == OP_APPEND));
            break;
        }
        default:
            set_error(o, KP_ERR_INVALID_REQUEST, "unknown configuration operation");
            return;
        }
    }
    /* Overrides stored before (CreateTopics keeps what it is given) stay
     * as they are; only the changed ones are checked. */
    cfg_set_t changed;
    set_init(req, &changed, (size_t)n);
    for (size_t i = 0; i < s.n; i++)
        if (gw_topic_config_alterable(s.c[i].name))
            set_put(&changed, s.c[i].name, s.c[i].value);
    for (size_t i = 0; i < changed.n; i++) {
        const char *msg = check_value(req, changed.c[i].name, changed.c[i].value);
        if (msg) {
            set_error(o, KP_ERR_INVALID_CONFIG, msg);
            return;
        }
    }
    if (rq->validate_only)
        return;
    alter_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->out = *o;
    ctx->topic = topic->name;
    int rc = st_log_set_topic_configs(req->srv->log, topic, s.c, s.n, stored_cb, ctx);
    if (rc != 0) {
        st_err_t e = gw_st_start_err(rc);
        set_error(o, gw_err_from_st(e), st_err_str(e));
    } else {
        req->pending++;
    }
}

int gw_api_incremental_alter_configs(gw_req_t *req)
{
    const kp_incremental_alter_configs_request_t *rq = req->body;
    kp_incremental_alter_configs_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_incremental_alter_configs_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->resources_count > 0 ? rq->resources_count : 0;
    resp->responses = gw_req_alloc(req, (size_t)n * sizeof *resp->responses);
    resp->responses_count = n;
    kp_str_t *names = gw_req_alloc(req, (size_t)n * sizeof *names + 1);
    for (int32_t i = 0; i < n; i++)
        names[i] = rq->resources[i].resource_type == GW_RESOURCE_TOPIC
                       ? rq->resources[i].resource_name
                       : (kp_str_t){"\n", 1};
    kp_str_t *bnames = gw_req_alloc(req, (size_t)n * sizeof *bnames + 1);
    for (int32_t i = 0; i < n; i++)
        bnames[i] = rq->resources[i].resource_type == GW_RESOURCE_BROKER
                        ? rq->resources[i].resource_name
                        : (kp_str_t){"\n", 1};
    bool *bdup = gw_names_repeated(req, bnames, n);
    for (int32_t i = 0; i < n; i++)
        bdup[i] = bdup[i] && rq->resources[i].resource_type == GW_RESOURCE_BROKER;
    bool *dup = gw_names_repeated(req, names, n);
    req->pending = 1; /* held while changes are being started */
    for (int32_t i = 0; i < n; i++) {
        kp_incremental_alter_configs_response_alter_configs_resource_response_t *r =
            &resp->responses[i];
        kp_incremental_alter_configs_response_alter_configs_resource_response_init(r);
        r->error_code = KP_ERR_NONE;
        r->error_message = KP_STR_NULL;
        r->resource_type = rq->resources[i].resource_type;
        r->resource_name = rq->resources[i].resource_name;
        res_out_t o = {&r->error_code, &r->error_message};
        incremental_one(req, &rq->resources[i],
                        (dup[i] && rq->resources[i].resource_type == GW_RESOURCE_TOPIC) || bdup[i],
                        &o);
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}
