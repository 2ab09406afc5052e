/*
 * gw_api_describe_configs.c: DescribeConfigs (key 32), v0-4.
 *
 * A topic (resource type 2) lists its overrides plus the defaults the
 * gateway applies (retention, message size, cleanup policy, ...), each with
 * its source: DYNAMIC_TOPIC_CONFIG (an override), STATIC_BROKER_CONFIG (a
 * broker key set in the configuration) or DEFAULT_CONFIG; only those
 * AlterConfigs can change are not read-only.  A broker (type 4, named by
 * its node id or "") lists every configuration key of the gateway with its
 * effective value, read-only.  With include_synonyms (v1+) each entry lists
 * its synonyms: the override, then the broker key (or the topic name for a
 * fixed default) with its value and source.  Nothing is sensitive (S3
 * credentials come from the environment, never from a key).  Other types
 * are INVALID_REQUEST.
 */
#include "gw_api.h"

#include <stdio.h>
#include <string.h>

/* ConfigSource values (DescribeConfigsResponse). */
#define SRC_TOPIC_CONFIG 1
#define SRC_DYNAMIC_BROKER_CONFIG 2
#define SRC_STATIC_BROKER_CONFIG 4
#define SRC_DEFAULT_CONFIG 5

/* ConfigType values (v3+). */
#define TYPE_UNKNOWN 0
#define TYPE_STRING 2
#define TYPE_INT 3
#define TYPE_LONG 5
#define TYPE_DOUBLE 6
#define TYPE_LIST 7

typedef kp_describe_configs_response_describe_configs_resource_result_t cfg_entry_t;
typedef kp_describe_configs_response_describe_configs_result_t cfg_result_t;

/* One topic-level default: its name, type, the value the gateway applies
 * and, when it comes from a broker key, that key. */
typedef struct topic_default {
    const char *name;
    int8_t type;
    const char *fixed;      /* value when not from a broker key */
    const char *broker_key; /* gw_config key whose value applies, or NULL */
} topic_default_t;

static const topic_default_t topic_defaults[] = {
    {"cleanup.policy", TYPE_LIST, "delete", NULL},
    {"compression.type", TYPE_STRING, "producer", NULL},
    {"flush.messages", TYPE_LONG, "9223372036854775807", NULL},
    {"flush.ms", TYPE_LONG, "9223372036854775807", NULL},
    {"max.message.bytes", TYPE_INT, NULL, "message.max.bytes"},
    {"message.format.version", TYPE_STRING, "3.0-IV1", NULL},
    {"message.timestamp.type", TYPE_STRING, "CreateTime", NULL},
    {"min.insync.replicas", TYPE_INT, "1", NULL},
    {"retention.bytes", TYPE_LONG, NULL, "log.retention.bytes"},
    {"retention.ms", TYPE_LONG, NULL, "log.retention.ms"},
    {"segment.bytes", TYPE_INT, "1073741824", NULL},
};
#define N_TOPIC_DEFAULTS (sizeof topic_defaults / sizeof topic_defaults[0])

/* True when @name is asked for (@keys null: everything). */
static bool wanted(const kp_describe_configs_request_describe_configs_resource_t *res,
                   const char *name)
{
    if (res->configuration_keys_count < 0)
        return true;
    for (int32_t i = 0; i < res->configuration_keys_count; i++)
        if (kp_str_eq(res->configuration_keys[i], name))
            return true;
    return false;
}

static cfg_entry_t *add_entry(gw_req_t *req, cfg_result_t *r, const char *name, const char *value,
                              bool is_default, int8_t source, int8_t type, bool read_only)
{
    cfg_entry_t *e = &r->configs[r->configs_count++];
    kp_describe_configs_response_describe_configs_resource_result_init(e);
    e->name = kp_str(gw_req_strdup(req, name, strlen(name)));
    e->value = kp_str(gw_req_strdup(req, value, strlen(value)));
    e->read_only = read_only;
    e->is_default = is_default; /* v0 */
    e->config_source = source;  /* v1+ */
    e->is_sensitive = false;
    e->synonyms_count = 0; /* v1+ */
    e->config_type = type; /* v3+ */
    e->documentation = KP_STR_NULL;
    return e;
}

/* Synonyms (v1+, when asked for): the sources of @e's value in precedence
 * order -- the topic's override, then the broker key or the default. */
static void add_synonyms(gw_req_t *req, cfg_entry_t *e, const char *override, const char *name,
                         const char *value, int8_t source)
{
    const kp_describe_configs_request_t *rq = req->body;
    if (req->api_version < 1 || !rq->include_synonyms)
        return;
    e->synonyms = gw_req_alloc(req, 2 * sizeof *e->synonyms);
    e->synonyms_count = 0;
    kp_describe_configs_response_describe_configs_synonym_t *y;
    if (override) {
        y = &e->synonyms[e->synonyms_count++];
        kp_describe_configs_response_describe_configs_synonym_init(y);
        y->name = e->name;
        y->value = kp_str(gw_req_strdup(req, override, strlen(override)));
        y->source = SRC_TOPIC_CONFIG;
    }
    y = &e->synonyms[e->synonyms_count++];
    kp_describe_configs_response_describe_configs_synonym_init(y);
    y->name = kp_str(gw_req_strdup(req, name, strlen(name)));
    y->value = kp_str(gw_req_strdup(req, value, strlen(value)));
    y->source = source;
}

/* The value of broker key @key in @cfg. */
static const char *broker_value(gw_req_t *req, const gw_config_t *cfg, const char *key)
{
    char buf[GW_URL_MAX];
    if (gw_config_value_str(cfg, key, buf, sizeof buf) != 0)
        buf[0] = '\0';
    return gw_req_strdup(req, buf, strlen(buf));
}

static const char *override_of(const st_topic_t *topic, const char *name)
{
    for (size_t i = 0; i < topic->nconfigs; i++)
        if (strcmp(topic->configs[i].name, name) == 0)
            return topic->configs[i].value;
    return NULL;
}

const char *gw_topic_config_described(gw_req_t *req, const st_topic_t *topic, const char *name)
{
    const char *ov = override_of(topic, name);
    if (ov)
        return ov;
    for (size_t i = 0; i < N_TOPIC_DEFAULTS; i++) {
        const topic_default_t *d = &topic_defaults[i];
        if (strcmp(d->name, name) == 0)
            return d->broker_key ? broker_value(req, req->srv->cfg, d->broker_key) : d->fixed;
    }
    return NULL;
}

static void describe_topic(gw_req_t *req,
                           const kp_describe_configs_request_describe_configs_resource_t *res,
                           cfg_result_t *r)
{
    st_topic_t *topic = gw_topic_find(req->srv, res->resource_name);
    if (!topic) {
        r->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        r->error_message = kp_str("unknown topic");
        return;
    }
    r->configs = gw_req_alloc(req, (N_TOPIC_DEFAULTS + topic->nconfigs) * sizeof *r->configs);
    for (size_t i = 0; i < N_TOPIC_DEFAULTS; i++) {
        const topic_default_t *d = &topic_defaults[i];
        if (!wanted(res, d->name))
            continue;
        const char *ov = override_of(topic, d->name);
        /* Only what AlterConfigs can change is writable. */
        bool ro = !gw_topic_config_alterable(d->name);
        const char *name = d->broker_key ? d->broker_key : d->name;
        const char *v = d->fixed;
        int8_t src = SRC_DEFAULT_CONFIG;
        if (d->broker_key) {
            v = broker_value(req, req->srv->cfg, d->broker_key);
            if (strcmp(v, broker_value(req, &req->srv->defaults, d->broker_key)) != 0)
                src = SRC_STATIC_BROKER_CONFIG;
        }
        cfg_entry_t *e;
        if (ov)
            e = add_entry(req, r, d->name, ov, false, SRC_TOPIC_CONFIG, d->type, ro);
        else
            e = add_entry(req, r, d->name, v, src == SRC_DEFAULT_CONFIG, src, d->type, ro);
        add_synonyms(req, e, ov, name, v, src);
    }
    /* Overrides of keys without a listed default. */
    for (size_t i = 0; i < topic->nconfigs; i++) {
        const st_topic_config_t *c = &topic->configs[i];
        bool listed = false;
        for (size_t k = 0; k < N_TOPIC_DEFAULTS && !listed; k++)
            listed = strcmp(topic_defaults[k].name, c->name) == 0;
        if (!listed && wanted(res, c->name))
            add_entry(req, r, c->name, c->value, false, SRC_TOPIC_CONFIG, TYPE_UNKNOWN, true);
    }
}

static void describe_broker(gw_req_t *req,
                            const kp_describe_configs_request_describe_configs_resource_t *res,
                            cfg_result_t *r, const gw_broker_cfgs_t *dyn)
{
    const gw_config_t *cfg = req->srv->cfg;
    size_t n = gw_config_key_count(), nd = gw_broker_dyn_count();
    r->configs = gw_req_alloc(req, (n + nd) * sizeof *r->configs);
    for (size_t i = 0; i < n; i++) {
        const char *key = gw_config_key_name(i);
        if (!wanted(res, key))
            continue;
        const char *v = broker_value(req, cfg, key);
        bool dflt = strcmp(v, broker_value(req, &req->srv->defaults, key)) == 0;
        int8_t src = dflt ? SRC_DEFAULT_CONFIG : SRC_STATIC_BROKER_CONFIG;
        cfg_entry_t *e = add_entry(req, r, key, v, dflt, src, TYPE_UNKNOWN, true);
        add_synonyms(req, e, NULL, key, v, src);
    }
    /* The dynamic ones (gw_broker_cfg.c): stored value or Kafka's default. */
    for (size_t i = 0; i < nd; i++) {
        const char *key = gw_broker_dyn_name(i);
        if (!wanted(res, key))
            continue;
        const char *v = NULL;
        for (size_t k = 0; dyn && k < dyn->n && !v; k++)
            if (strcmp(dyn->c[k].name, key) == 0)
                v = dyn->c[k].value;
        int8_t src = v ? SRC_DYNAMIC_BROKER_CONFIG : SRC_DEFAULT_CONFIG;
        cfg_entry_t *e = add_entry(req, r, key, v ? v : gw_broker_dyn_default(i), !v, src,
                                   gw_broker_dyn_is_long(i) ? TYPE_LONG : TYPE_DOUBLE, false);
        add_synonyms(req, e, NULL, key, v ? v : gw_broker_dyn_default(i), src);
    }
}

/* A broker resource waiting for the stored dynamic configurations. */
typedef struct broker_ctx {
    gw_req_t *req;
    const kp_describe_configs_request_describe_configs_resource_t *res;
    cfg_result_t *r;
} broker_ctx_t;

static void broker_loaded(st_err_t err, const gw_broker_cfgs_t *dyn, void *arg)
{
    broker_ctx_t *bc = arg;
    gw_req_t *req = bc->req;
    if (err == ST_OK) {
        describe_broker(req, bc->res, bc->r, dyn);
    } else {
        bc->r->error_code = (int16_t)gw_err_from_st(err);
        bc->r->error_message = kp_str(st_err_str(err));
    }
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

static void start_broker(gw_req_t *req,
                         const kp_describe_configs_request_describe_configs_resource_t *res,
                         cfg_result_t *r)
{
    char id[16];
    snprintf(id, sizeof id, "%d", req->srv->cfg->node_id);
    if (res->resource_name.len > 0 && !kp_str_eq(res->resource_name, id)) {
        r->error_code = KP_ERR_INVALID_REQUEST;
        r->error_message = kp_str("no such broker on this node");
        return;
    }
    if (!req->srv->meta) { /* no metadata store (tests): nothing dynamic is stored */
        describe_broker(req, res, r, NULL);
        return;
    }
    broker_ctx_t *bc = gw_req_alloc(req, sizeof *bc);
    bc->req = req;
    bc->res = res;
    bc->r = r;
    int rc = gw_broker_cfgs_load(req, broker_loaded, bc);
    if (rc != 0) {
        st_err_t e = gw_st_start_err(rc);
        r->error_code = (int16_t)gw_err_from_st(e);
        r->error_message = kp_str(st_err_str(e));
    } else {
        req->pending++;
    }
}

int gw_api_describe_configs(gw_req_t *req)
{
    const kp_describe_configs_request_t *rq = req->body;
    kp_describe_configs_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_describe_configs_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->resources_count > 0 ? rq->resources_count : 0;
    resp->results = gw_req_alloc(req, (size_t)n * sizeof *resp->results);
    resp->results_count = n;
    req->pending = 1; /* held while broker resources are being read */
    for (int32_t i = 0; i < n; i++) {
        const kp_describe_configs_request_describe_configs_resource_t *res = &rq->resources[i];
        cfg_result_t *r = &resp->results[i];
        kp_describe_configs_response_describe_configs_result_init(r);
        r->error_code = KP_ERR_NONE;
        r->error_message = KP_STR_NULL;
        r->resource_type = res->resource_type;
        r->resource_name = res->resource_name;
        r->configs_count = 0;
        if (res->resource_type == GW_RESOURCE_TOPIC) {
            describe_topic(req, res, r);
        } else if (res->resource_type == GW_RESOURCE_BROKER) {
            start_broker(req, res, r);
        } else {
            r->error_code = KP_ERR_INVALID_REQUEST;
            r->error_message = kp_str("unsupported resource type");
        }
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}
