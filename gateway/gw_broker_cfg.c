/*
 * gw_broker_cfg.c: the dynamic per-broker configurations that
 * AlterConfigs and IncrementalAlterConfigs accept for this node's broker
 * resource, and DescribeConfigs lists.
 *
 * The gateway's own configuration is static (file and command line).  The
 * only dynamic ones are the Kerberos login settings Kafka lets a broker
 * change at run time (DynamicBrokerConfig's listener settings):
 * sasl.kerberos.min.time.before.relogin (a long >= 0),
 * sasl.kerberos.ticket.renew.window.factor and
 * sasl.kerberos.ticket.renew.jitter (numbers >= 0).  The gateway has no
 * SASL listener and never logs in to Kerberos, so whatever they say holds
 * by construction -- as on a Kafka broker whose listeners are all
 * PLAINTEXT, which accepts them the same way (docs/compatibility.md,
 * "Broker configurations").
 *
 * They are kept in the metadata store under
 * /nuthatch/broker-configs/<node> as "name=value" lines
 * (docs/object-format.md); a change is one transaction comparing the key's
 * mod revision with the one read, so a concurrent change makes the loser
 * ST_ERR_CONFLICT.
 */
#include "gw_api.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dyn_cfg {
    const char *name;
    bool is_long; /* else a double */
    const char *dflt;
} dyn_cfg_t;

static const dyn_cfg_t dyn_cfgs[] = {
    {"sasl.kerberos.min.time.before.relogin", true, "60000"},
    {"sasl.kerberos.ticket.renew.jitter", false, "0.05"},
    {"sasl.kerberos.ticket.renew.window.factor", false, "0.8"},
};
#define N_DYN (sizeof dyn_cfgs / sizeof dyn_cfgs[0])

size_t gw_broker_dyn_count(void)
{
    return N_DYN;
}

const char *gw_broker_dyn_name(size_t i)
{
    return dyn_cfgs[i].name;
}

const char *gw_broker_dyn_default(size_t i)
{
    return dyn_cfgs[i].dflt;
}

bool gw_broker_dyn_is_long(size_t i)
{
    return dyn_cfgs[i].is_long;
}

static const dyn_cfg_t *dyn_find(const char *name)
{
    for (size_t i = 0; i < N_DYN; i++)
        if (strcmp(dyn_cfgs[i].name, name) == 0)
            return &dyn_cfgs[i];
    return NULL;
}

bool gw_broker_config_dynamic(const char *name)
{
    return dyn_find(name) != NULL;
}

const char *gw_broker_config_check(gw_req_t *req, const char *name, const char *value)
{
    const dyn_cfg_t *d = dyn_find(name);
    char msg[256];
    if (!d) {
        snprintf(msg, sizeof msg,
                 "'%.64s' cannot be updated dynamically: change the configuration file or "
                 "command line and restart",
                 name);
        return gw_req_strdup(req, msg, strlen(msg));
    }
    if (!value)
        return "a value is required";
    const char *s = value;
    while (*s == ' ')
        s++;
    char *end;
    errno = 0;
    bool ok;
    if (d->is_long) {
        long long v = strtoll(s, &end, 10);
        ok = end != s && !errno && v >= 0;
    } else {
        double v = strtod(s, &end);
        ok = end != s && !errno && isfinite(v) && v >= 0;
    }
    while (ok && *end == ' ')
        end++;
    if (ok && !*end)
        return NULL;
    snprintf(msg, sizeof msg, "%s must be %s, not '%.64s'", name,
             d->is_long ? "an integer >= 0" : "a number >= 0", value);
    return gw_req_strdup(req, msg, strlen(msg));
}

/* ---------------------------------------------------------------- store */

static void key_of(const gw_server_t *srv, char *key, size_t cap)
{
    snprintf(key, cap, "/nuthatch/broker-configs/%" PRId32, srv->cfg->node_id);
}

typedef struct load_op {
    gw_req_t *req;
    gw_broker_cfgs_cb cb;
    void *arg;
} load_op_t;

static void loaded(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    load_op_t *op = arg;
    gw_req_t *req = op->req;
    gw_broker_cfgs_t c = {NULL, 0, 0};
    if (err == ST_OK && n == 1) {
        c.mod_rev = kvs[0].mod_rev;
        size_t len = kvs[0].val_len;
        char *text = gw_req_strdup(req, (const char *)kvs[0].val, len);
        size_t lines = 1;
        for (size_t i = 0; i < len; i++)
            lines += text[i] == '\n';
        c.c = gw_req_alloc(req, lines * sizeof *c.c);
        for (char *p = text; *p;) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            char *eq = strchr(p, '=');
            if (eq && eq > p) {
                *eq = '\0';
                c.c[c.n].name = p;
                c.c[c.n++].value = eq + 1;
            }
            if (!nl)
                break;
            p = nl + 1;
        }
    }
    op->cb(err, &c, op->arg);
}

int gw_broker_cfgs_load(gw_req_t *req, gw_broker_cfgs_cb cb, void *arg)
{
    if (!req->srv->meta)
        return ST_ERR_CLOSED;
    load_op_t *op = gw_req_alloc(req, sizeof *op);
    op->req = req;
    op->cb = cb;
    op->arg = arg;
    char *key = gw_req_alloc(req, 64);
    key_of(req->srv, key, 64);
    return st_meta_range(req->srv->meta, key, false, 1, loaded, op) != 0 ? ST_ERR_IO : 0;
}

typedef struct store_op {
    gw_broker_done_cb cb;
    void *arg;
} store_op_t;

static void stored(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                   void *arg)
{
    (void)rev, (void)res, (void)n;
    store_op_t *op = arg;
    if (err == ST_OK && !ok)
        err = ST_ERR_CONFLICT;
    op->cb(err, op->arg);
}

int gw_broker_cfgs_store(gw_req_t *req, const st_topic_config_t *c, size_t n, int64_t mod_rev,
                         gw_broker_done_cb cb, void *arg)
{
    if (!req->srv->meta)
        return ST_ERR_CLOSED;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(c[i].name) + strlen(c[i].value) + 2;
    char *val = gw_req_alloc(req, len + 1);
    val[0] = '\0';
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += (size_t)snprintf(val + pos, len + 1 - pos, "%s=%s\n", c[i].name, c[i].value);
    char *key = gw_req_alloc(req, 64);
    key_of(req->srv, key, 64);
    store_op_t *op = gw_req_alloc(req, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    st_cmp_t cmp = {.key = key, .target = ST_CMP_MOD, .op = ST_CMP_EQ, .num = mod_rev};
    st_op_t put = {
        .type = n ? ST_OP_PUT : ST_OP_DEL, .key = key, .val = (const uint8_t *)val, .val_len = pos};
    st_txn_t txn = {.cmps = mod_rev >= 0 ? &cmp : NULL,
                    .ncmps = mod_rev >= 0 ? 1 : 0,
                    .success = &put,
                    .nsuccess = 1};
    return st_meta_txn(req->srv->meta, &txn, stored, op) != 0 ? ST_ERR_IO : 0;
}
