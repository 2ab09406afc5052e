/*
 * gw_metrics.c: Prometheus metrics, /healthz, /readyz and the store probe
 * (see gw_metrics.h).
 */
#include "gw_metrics.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "gw_log.h"
#include "gw_server.h"
#include "kp_msgs.h"
#include "st_log.h"

static const double lat_bounds[GW_HIST_LAT_N] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double size_bounds[GW_HIST_SIZE_N] = {1024,    4096,    16384,    65536,    262144,
                                                   1048576, 4194304, 16777216, 67108864, 268435456};
static const char *const obj_op_name[GW_OBJ__NUM] = {"put", "get", "list", "delete"};

/* A store as the probe sees it. */
typedef struct probe {
    const char *what;   /* "object store", "metadata store" */
    bool inflight;      /* a probe waits for its answer */
    int64_t started_ms; /* when it was sent */
    bool ok;            /* the last answer was a success */
    bool reported_down; /* an outage was logged and no recovery yet */
    int64_t down_since_ms;
    char why[320]; /* why it is not reachable: "<what> unreachable: " and a cause of < 260 */
} probe_t;

struct gw_metrics {
    struct event_base *base;
    struct gw_server *srv;
    bool serving;
    struct evhttp *http;
    int port;
    struct event *tick;
    st_objstore_t *os;
    st_meta_t *meta;
    const st_meta_t *etcd;        /* the unwrapped etcd store, for its endpoint */
    const st_objstore_t *s3;      /* the unwrapped S3 store, for its last error */
    char etcd_endpoint[256];      /* last seen */
    uint64_t last_flush_failures; /* at the last tick */
    probe_t pos, pmeta;
    gw_hist_t api[GW_METRICS_APIS];
    gw_hist_t api_unknown;
    uint64_t bytes_in, bytes_out;
    gw_hist_t obj[GW_OBJ__NUM];
    uint64_t obj_err[GW_OBJ__NUM];
    uint64_t obj_put_bytes, obj_get_bytes;
    gw_hist_t flush_size, flush_dur;
    gw_hist_t txn, range;
    uint64_t txn_err, txn_cmp_failed, range_err;
    struct event *lag; /* a timer due every GW_METRICS_LAG_MS */
    double lag_due;    /* when it is due (monotonic s) */
    gw_hist_t loop_lag;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hist_add(gw_hist_t *h, const double *bounds, int n, double v)
{
    int i = 0;
    while (i < n && v > bounds[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

/* ------------------------------------------------------------------ */
/* Counting                                                            */
/* ------------------------------------------------------------------ */

void gw_metrics_request(gw_metrics_t *m, int api_key, double seconds)
{
    if (!m)
        return;
    gw_hist_t *h = api_key >= 0 && api_key < GW_METRICS_APIS && kp_api_desc((int16_t)api_key)
                       ? &m->api[api_key]
                       : &m->api_unknown;
    hist_add(h, lat_bounds, GW_HIST_LAT_N, seconds);
}

void gw_metrics_on_flush(void *arg, size_t bytes, double seconds)
{
    gw_metrics_t *m = arg;
    hist_add(&m->flush_size, size_bounds, GW_HIST_SIZE_N, (double)bytes);
    hist_add(&m->flush_dur, lat_bounds, GW_HIST_LAT_N, seconds);
}

void gw_metrics_bytes(gw_metrics_t *m, uint64_t in, uint64_t out)
{
    if (!m)
        return;
    m->bytes_in += in;
    m->bytes_out += out;
}

/* ------------------------------------------------------------------ */
/* The object-store wrapper                                            */
/* ------------------------------------------------------------------ */

typedef struct wos {
    st_objstore_t base; /* must be first */
    st_objstore_t *inner;
    gw_metrics_t *m;
} wos_t;

typedef struct octx {
    gw_metrics_t *m;
    int op;
    double start;
    size_t len;
    union {
        st_done_cb done;
        st_data_cb data;
        st_list_cb list;
    } cb;
    void *arg;
} octx_t;

static octx_t *octx_new(wos_t *w, int op, size_t len, void *arg)
{
    octx_t *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = (octx_t){.m = w->m, .op = op, .start = now_s(), .len = len, .arg = arg};
    return c;
}

static void octx_count(octx_t *c, st_err_t err)
{
    gw_metrics_t *m = c->m;
    hist_add(&m->obj[c->op], lat_bounds, GW_HIST_LAT_N, now_s() - c->start);
    if (err != ST_OK && !(c->op == GW_OBJ_GET && err == ST_ERR_NOT_FOUND))
        m->obj_err[c->op]++;
}

static void o_done(st_err_t err, void *arg)
{
    octx_t *c = arg;
    octx_count(c, err);
    if (c->op == GW_OBJ_PUT && err == ST_OK)
        c->m->obj_put_bytes += c->len;
    st_done_cb cb = c->cb.done;
    void *a = c->arg;
    free(c);
    cb(err, a);
}

static void o_data(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    octx_t *c = arg;
    octx_count(c, err);
    if (err == ST_OK)
        c->m->obj_get_bytes += len;
    st_data_cb cb = c->cb.data;
    void *a = c->arg;
    free(c);
    cb(err, data, len, a);
}

static void o_list(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    octx_t *c = arg;
    octx_count(c, err);
    st_list_cb cb = c->cb.list;
    void *a = c->arg;
    free(c);
    cb(err, objs, n, more, a);
}

static int w_put(st_objstore_t *os, const char *key, const uint8_t *data, size_t len, st_done_cb cb,
                 void *arg)
{
    wos_t *w = (wos_t *)os;
    octx_t *c = octx_new(w, GW_OBJ_PUT, len, arg);
    if (!c)
        return -1;
    c->cb.done = cb;
    int rc = st_objstore_put(w->inner, key, data, len, o_done, c);
    if (rc != 0)
        free(c);
    return rc;
}

/* get_range (@dst NULL) or get_into, counted alike. */
static int w_get(st_objstore_t *os, const char *key, uint64_t off, uint64_t len, uint8_t *dst,
                 st_data_cb cb, void *arg)
{
    wos_t *w = (wos_t *)os;
    octx_t *c = octx_new(w, GW_OBJ_GET, 0, arg);
    if (!c)
        return -1;
    c->cb.data = cb;
    int rc = dst ? st_objstore_get_into(w->inner, key, off, len, dst, o_data, c)
                 : st_objstore_get_range(w->inner, key, off, len, o_data, c);
    if (rc != 0)
        free(c);
    return rc;
}

static int w_get_range(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                       st_data_cb cb, void *arg)
{
    return w_get(os, key, off, len, NULL, cb, arg);
}

static int w_list(st_objstore_t *os, const char *prefix, const char *start_after, size_t max_keys,
                  st_list_cb cb, void *arg)
{
    wos_t *w = (wos_t *)os;
    octx_t *c = octx_new(w, GW_OBJ_LIST, 0, arg);
    if (!c)
        return -1;
    c->cb.list = cb;
    int rc = st_objstore_list(w->inner, prefix, start_after, max_keys, o_list, c);
    if (rc != 0)
        free(c);
    return rc;
}

static int w_del(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    wos_t *w = (wos_t *)os;
    octx_t *c = octx_new(w, GW_OBJ_DELETE, 0, arg);
    if (!c)
        return -1;
    c->cb.done = cb;
    int rc = st_objstore_del(w->inner, key, o_done, c);
    if (rc != 0)
        free(c);
    return rc;
}

/* Not requests of their own (no metric): a preparation is at most a file
 * created ahead of its put, a sync a flush at start-up. */
static void w_prepare(st_objstore_t *os, const char *key)
{
    st_objstore_prepare(((wos_t *)os)->inner, key);
}

static int w_sync(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    return st_objstore_sync(((wos_t *)os)->inner, key, cb, arg);
}

static void w_free(st_objstore_t *os)
{
    wos_t *w = (wos_t *)os;
    st_objstore_free(w->inner);
    free(w);
}

static const st_objstore_ops_t wos_ops = {
    .name = "metered",
    .put = w_put,
    .get_range = w_get_range,
    .get_into = w_get,
    .list = w_list,
    .del = w_del,
    .prepare = w_prepare,
    .sync = w_sync,
    .free = w_free,
};

st_objstore_t *gw_metrics_wrap_objstore(gw_metrics_t *m, st_objstore_t *inner)
{
    wos_t *w = calloc(1, sizeof *w);
    if (!w) {
        st_objstore_free(inner);
        return NULL;
    }
    w->base.ops = &wos_ops;
    w->inner = inner;
    w->m = m;
    if (strcmp(inner->ops->name, "s3") == 0)
        m->s3 = inner;
    return &w->base;
}

/* ------------------------------------------------------------------ */
/* The metadata-store wrapper: transactions and reads timed            */
/* ------------------------------------------------------------------ */

typedef struct wmeta {
    st_meta_t base; /* must be first */
    st_meta_t *inner;
    gw_metrics_t *m;
} wmeta_t;

typedef struct mctx {
    gw_metrics_t *m;
    double start;
    st_txn_cb txn_cb;
    st_range_cb range_cb;
    void *arg;
} mctx_t;

static void m_txn_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                       void *arg)
{
    mctx_t *c = arg;
    hist_add(&c->m->txn, lat_bounds, GW_HIST_LAT_N, now_s() - c->start);
    if (err != ST_OK)
        c->m->txn_err++;
    else if (!ok)
        c->m->txn_cmp_failed++;
    st_txn_cb cb = c->txn_cb;
    void *a = c->arg;
    free(c);
    cb(err, ok, rev, res, n, a);
}

static void m_range_done(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                         void *arg)
{
    mctx_t *c = arg;
    hist_add(&c->m->range, lat_bounds, GW_HIST_LAT_N, now_s() - c->start);
    if (err != ST_OK && err != ST_ERR_NOT_FOUND)
        c->m->range_err++;
    st_range_cb cb = c->range_cb;
    void *a = c->arg;
    free(c);
    cb(err, kvs, n, more, rev, a);
}

static int m_txn(st_meta_t *mm, const st_txn_t *txn, st_txn_cb cb, void *arg)
{
    wmeta_t *w = (wmeta_t *)mm;
    mctx_t *c = malloc(sizeof *c);
    if (!c)
        return -1;
    *c = (mctx_t){.m = w->m, .start = now_s(), .txn_cb = cb, .arg = arg};
    int rc = st_meta_txn(w->inner, txn, m_txn_done, c);
    if (rc != 0)
        free(c);
    return rc;
}

static int m_range(st_meta_t *mm, const char *key, bool prefix, size_t limit, st_range_cb cb,
                   void *arg)
{
    wmeta_t *w = (wmeta_t *)mm;
    mctx_t *c = malloc(sizeof *c);
    if (!c)
        return -1;
    *c = (mctx_t){.m = w->m, .start = now_s(), .range_cb = cb, .arg = arg};
    int rc = st_meta_range(w->inner, key, prefix, limit, m_range_done, c);
    if (rc != 0)
        free(c);
    return rc;
}

static int m_lease_grant(st_meta_t *m, int64_t ttl_ms, st_lease_cb cb, void *arg)
{
    return st_meta_lease_grant(((wmeta_t *)m)->inner, ttl_ms, cb, arg);
}

static int m_lease_keepalive(st_meta_t *m, int64_t id, st_lease_cb cb, void *arg)
{
    return st_meta_lease_keepalive(((wmeta_t *)m)->inner, id, cb, arg);
}

static int m_lease_revoke(st_meta_t *m, int64_t id, st_meta_done_cb cb, void *arg)
{
    return st_meta_lease_revoke(((wmeta_t *)m)->inner, id, cb, arg);
}

static st_meta_watch_t *m_watch(st_meta_t *m, const char *prefix, int64_t start_rev, st_watch_cb cb,
                                void *arg)
{
    return st_meta_watch(((wmeta_t *)m)->inner, prefix, start_rev, cb, arg);
}

static void m_watch_cancel(st_meta_t *m, st_meta_watch_t *w)
{
    st_meta_watch_cancel(((wmeta_t *)m)->inner, w);
}

static int m_compact(st_meta_t *m, int64_t rev, st_meta_done_cb cb, void *arg)
{
    return st_meta_compact(((wmeta_t *)m)->inner, rev, cb, arg);
}

static void m_free(st_meta_t *m)
{
    wmeta_t *w = (wmeta_t *)m;
    st_meta_free(w->inner);
    free(w);
}

static const st_meta_ops_t wmeta_ops = {
    .name = "metered",
    .range = m_range,
    .txn = m_txn,
    .lease_grant = m_lease_grant,
    .lease_keepalive = m_lease_keepalive,
    .lease_revoke = m_lease_revoke,
    .watch = m_watch,
    .watch_cancel = m_watch_cancel,
    .compact = m_compact,
    .free = m_free,
};

st_meta_t *gw_metrics_wrap_meta(gw_metrics_t *m, st_meta_t *inner)
{
    wmeta_t *w = calloc(1, sizeof *w);
    if (!w) {
        st_meta_free(inner);
        return NULL;
    }
    w->base.ops = &wmeta_ops;
    w->inner = inner;
    w->m = m;
    if (strcmp(inner->ops->name, "etcd") == 0)
        m->etcd = inner;
    return &w->base;
}

/* ------------------------------------------------------------------ */
/* The probe                                                           */
/* ------------------------------------------------------------------ */

static void probe_answer(gw_metrics_t *m, probe_t *p, bool ok, const char *why)
{
    p->inflight = false;
    int64_t now = now_ms();
    if (ok) {
        if (p->reported_down)
            gw_log_info("health", "%s reachable again after %.1f s", p->what,
                        (double)(now - p->down_since_ms) / 1000.0);
        p->reported_down = false;
        p->ok = true;
        p->why[0] = '\0';
        return;
    }
    if (p->ok || !p->reported_down) {
        if (!p->reported_down)
            p->down_since_ms = p->ok ? now : p->down_since_ms ? p->down_since_ms : now;
        gw_log_warn("health", "%s unreachable: %s; not ready until it answers", p->what, why);
        p->reported_down = true;
    }
    p->ok = false;
    snprintf(p->why, sizeof p->why, "%s unreachable: %s", p->what, why);
    (void)m;
}

static void probe_os_cb(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    (void)objs, (void)n, (void)more;
    gw_metrics_t *m = arg;
    char why[260];
    const char *detail = m->s3 ? st_objstore_s3_last_error(m->s3) : "";
    snprintf(why, sizeof why, "listing failed: %s%s%s", st_err_str(err), detail[0] ? ": " : "",
             detail);
    probe_answer(m, &m->pos, err == ST_OK, why);
}

static void probe_meta_cb(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                          void *arg)
{
    (void)kvs, (void)n, (void)more, (void)rev;
    gw_metrics_t *m = arg;
    char why[260];
    const char *detail = m->etcd ? st_meta_etcd_last_error(m->etcd) : "";
    snprintf(why, sizeof why, "a read failed: %s%s%s", st_err_str(err), detail[0] ? ": " : "",
             detail);
    probe_answer(m, &m->pmeta, err == ST_OK || err == ST_ERR_NOT_FOUND, why);
}

/* A probe unanswered for too long counts as a failure (etcd frozen, say). */
static void probe_check_late(probe_t *p, int64_t now)
{
    if (!p->inflight || now - p->started_ms <= GW_METRICS_PROBE_TIMEOUT_MS)
        return;
    char why[100];
    snprintf(why, sizeof why, "no answer within %d ms", GW_METRICS_PROBE_TIMEOUT_MS);
    if (!p->reported_down) {
        p->down_since_ms = p->started_ms;
        gw_log_warn("health", "%s unreachable: %s; not ready until it answers", p->what, why);
        p->reported_down = true;
    }
    p->ok = false;
    snprintf(p->why, sizeof p->why, "%s unreachable: %s", p->what, why);
}

/* The loop's lag: how late a timer due every GW_METRICS_LAG_MS runs, which
 * is how long the loop was elsewhere -- in callbacks, in page faults, or
 * waiting for a CPU -- when it should have run it.  Re-armed from the time
 * it ran, so one long stall counts once. */
static void lag_arm(gw_metrics_t *m, double now)
{
    struct timeval tv = {GW_METRICS_LAG_MS / 1000, (GW_METRICS_LAG_MS % 1000) * 1000};
    m->lag_due = now + GW_METRICS_LAG_MS / 1000.0;
    event_add(m->lag, &tv);
}

static void lag_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_metrics_t *m = arg;
    double now = now_s();
    double late = now - m->lag_due; /* the loop's clock may run it a hair early */
    hist_add(&m->loop_lag, lat_bounds, GW_HIST_LAT_N, late > 0 ? late : 0);
    lag_arm(m, now);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_metrics_t *m = arg;
    int64_t now = now_ms();
    probe_check_late(&m->pos, now);
    probe_check_late(&m->pmeta, now);
    if (m->os && !m->pos.inflight) {
        m->pos.inflight = true;
        m->pos.started_ms = now;
        if (st_objstore_list(m->os, "objects/", NULL, 1, probe_os_cb, m) != 0) {
            probe_answer(m, &m->pos, false, "cannot start a listing");
        }
    }
    if (m->meta && !m->pmeta.inflight) {
        m->pmeta.inflight = true;
        m->pmeta.started_ms = now;
        if (st_meta_range(m->meta, "/nuthatch/cluster/id", false, 1, probe_meta_cb, m) != 0) {
            probe_answer(m, &m->pmeta, false, "cannot start a read");
        }
    }
    /* etcd switched endpoints: say so, and why. */
    if (m->etcd) {
        const char *ep = st_meta_etcd_endpoint(m->etcd);
        if (ep && strcmp(ep, m->etcd_endpoint) != 0) {
            if (m->etcd_endpoint[0]) {
                const char *e = st_meta_etcd_last_error(m->etcd);
                gw_log_warn("metadata", "etcd endpoint switched from %s to %s%s%s",
                            m->etcd_endpoint, ep, e[0] ? " after: " : "", e);
            }
            snprintf(m->etcd_endpoint, sizeof m->etcd_endpoint, "%s", ep);
        }
    }
    /* Failed flushes: the log fails their produce requests; say how many. */
    if (m->srv && m->srv->log) {
        st_log_stats_t s;
        st_log_stats(m->srv->log, &s);
        if (s.flush_failures > m->last_flush_failures) {
            gw_log_warn("flush",
                        "%llu flushes failed in the last %d ms (object store %s, "
                        "metadata store %s); their produce requests got errors",
                        (unsigned long long)(s.flush_failures - m->last_flush_failures),
                        GW_METRICS_PROBE_MS, m->pos.ok ? "reachable" : "unreachable",
                        m->pmeta.ok ? "reachable" : "unreachable");
        }
        m->last_flush_failures = s.flush_failures;
    }
}

bool gw_metrics_ready(const gw_metrics_t *m, const char **why)
{
    static const char *const not_open = "the log is not open";
    if (!m->serving) {
        *why = not_open;
        return false;
    }
    if (m->os && !m->pos.ok) {
        *why = m->pos.why[0] ? m->pos.why : "object store not probed yet";
        return false;
    }
    if (m->meta && !m->pmeta.ok) {
        *why = m->pmeta.why[0] ? m->pmeta.why : "metadata store not probed yet";
        return false;
    }
    *why = "";
    return true;
}

/* ------------------------------------------------------------------ */
/* Rendering                                                           */
/* ------------------------------------------------------------------ */

static void put_hist(struct evbuffer *b, const char *name, const char *labels, const gw_hist_t *h,
                     const double *bounds, int n)
{
    uint64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum += h->bucket[i];
        evbuffer_add_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
                            labels[0] ? "," : "", bounds[i], (unsigned long long)cum);
    }
    cum += h->bucket[n];
    evbuffer_add_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, labels[0] ? "," : "",
                        (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    evbuffer_add_printf(b, "%s_sum%s%s%s %.9g\n", name, open, labels, close, h->sum);
    evbuffer_add_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
                        (unsigned long long)h->count);
}

static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(struct evbuffer *b, const char *name, const char *type, const char *help, double v)
{
    head(b, name, type, help);
    evbuffer_add_printf(b, "%s %.17g\n", name, v);
}

char *gw_metrics_render(gw_metrics_t *m)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return NULL;
    char labels[128];

    head(b, "nuthatch_requests_total", "counter", "Kafka requests answered, by API.");
    for (int k = 0; k < GW_METRICS_APIS; k++)
        if (m->api[k].count)
            evbuffer_add_printf(b, "nuthatch_requests_total{api=\"%s\"} %llu\n",
                                kp_api_desc((int16_t)k)->name, (unsigned long long)m->api[k].count);
    evbuffer_add_printf(b, "nuthatch_requests_total{api=\"unknown\"} %llu\n",
                        (unsigned long long)m->api_unknown.count);
    head(b, "nuthatch_request_duration_seconds", "histogram",
         "Time from a Kafka request read to its response queued, by API.");
    for (int k = 0; k < GW_METRICS_APIS; k++)
        if (m->api[k].count) {
            snprintf(labels, sizeof labels, "api=\"%s\"", kp_api_desc((int16_t)k)->name);
            put_hist(b, "nuthatch_request_duration_seconds", labels, &m->api[k], lat_bounds,
                     GW_HIST_LAT_N);
        }
    one(b, "nuthatch_received_bytes_total", "counter", "Bytes of Kafka requests received.",
        (double)m->bytes_in);
    one(b, "nuthatch_sent_bytes_total", "counter", "Bytes of Kafka responses sent.",
        (double)m->bytes_out);

    head(b, "nuthatch_object_requests_total", "counter", "Object-store operations, by operation.");
    for (int i = 0; i < GW_OBJ__NUM; i++)
        evbuffer_add_printf(b, "nuthatch_object_requests_total{op=\"%s\"} %llu\n", obj_op_name[i],
                            (unsigned long long)m->obj[i].count);
    head(b, "nuthatch_object_request_errors_total", "counter",
         "Object-store operations that failed (retries included in one), by operation.");
    for (int i = 0; i < GW_OBJ__NUM; i++)
        evbuffer_add_printf(b, "nuthatch_object_request_errors_total{op=\"%s\"} %llu\n",
                            obj_op_name[i], (unsigned long long)m->obj_err[i]);
    head(b, "nuthatch_object_request_duration_seconds", "histogram",
         "Object-store operation latency, retries included, by operation.");
    for (int i = 0; i < GW_OBJ__NUM; i++) {
        snprintf(labels, sizeof labels, "op=\"%s\"", obj_op_name[i]);
        put_hist(b, "nuthatch_object_request_duration_seconds", labels, &m->obj[i], lat_bounds,
                 GW_HIST_LAT_N);
    }
    one(b, "nuthatch_object_written_bytes_total", "counter", "Bytes of objects written.",
        (double)m->obj_put_bytes);
    one(b, "nuthatch_object_read_bytes_total", "counter", "Bytes read from objects.",
        (double)m->obj_get_bytes);
    head(b, "nuthatch_flush_size_bytes", "histogram", "Size of each committed flush object.");
    put_hist(b, "nuthatch_flush_size_bytes", "", &m->flush_size, size_bounds, GW_HIST_SIZE_N);
    head(b, "nuthatch_flush_duration_seconds", "histogram",
         "Time from the start of a flush object's upload to its manifest's commit.");
    put_hist(b, "nuthatch_flush_duration_seconds", "", &m->flush_dur, lat_bounds, GW_HIST_LAT_N);
    head(b, "nuthatch_event_loop_lag_seconds", "histogram",
         "How late a timer due every 100 ms ran on the event loop.");
    put_hist(b, "nuthatch_event_loop_lag_seconds", "", &m->loop_lag, lat_bounds, GW_HIST_LAT_N);

    head(b, "nuthatch_metadata_commit_duration_seconds", "histogram",
         "Metadata-store transaction latency (manifest commits and catalog changes).");
    put_hist(b, "nuthatch_metadata_commit_duration_seconds", "", &m->txn, lat_bounds,
             GW_HIST_LAT_N);
    one(b, "nuthatch_metadata_commit_errors_total", "counter",
        "Metadata-store transactions that failed.", (double)m->txn_err);
    one(b, "nuthatch_metadata_commit_compare_failures_total", "counter",
        "Metadata-store transactions whose compare did not hold.", (double)m->txn_cmp_failed);
    head(b, "nuthatch_metadata_read_duration_seconds", "histogram", "Metadata-store read latency.");
    put_hist(b, "nuthatch_metadata_read_duration_seconds", "", &m->range, lat_bounds,
             GW_HIST_LAT_N);
    one(b, "nuthatch_metadata_read_errors_total", "counter", "Metadata-store reads that failed.",
        (double)m->range_err);

    gw_server_t *srv = m->srv;
    if (srv) {
        one(b, "nuthatch_connections", "gauge", "Client connections open.",
            (double)srv->nconns_open);
        one(b, "nuthatch_connections_accepted_total", "counter", "Client connections accepted.",
            (double)srv->stats.conns_accepted);
        one(b, "nuthatch_connections_refused_total", "counter",
            "Client connections refused (max.connections).", (double)srv->stats.conns_refused);
        one(b, "nuthatch_produce_waits_total", "counter",
            "Times a connection stopped reading because the write buffer was full.",
            (double)srv->stats.produce_waits);
        one(b, "nuthatch_write_buffer_limit_bytes", "gauge", "write.buffer.bytes.",
            (double)srv->cfg->write_buffer_bytes);
    }
    if (srv && srv->log && m->serving) {
        st_log_stats_t s;
        st_log_stats(srv->log, &s);
        one(b, "nuthatch_flushes_total", "counter", "Flushes written and committed.",
            (double)s.flushes);
        one(b, "nuthatch_flush_failures_total", "counter", "Flushes that failed or were fenced.",
            (double)s.flush_failures);
        one(b, "nuthatch_flush_commits_in_doubt_total", "counter",
            "Manifest commits whose outcome had to be resolved.", (double)s.commits_in_doubt);
        one(b, "nuthatch_manifests_unwound_total", "counter",
            "Manifests committed ahead of an object that never landed, deleted again.",
            (double)s.manifests_unwound);
        one(b, "nuthatch_flushed_bytes_total", "counter", "Bytes in committed flush objects.",
            (double)s.flush_bytes);
        one(b, "nuthatch_appends_total", "counter", "Record batches acknowledged.",
            (double)s.appends);
        one(b, "nuthatch_object_reads_missed_total", "counter",
            "Ranged object reads that missed the caches.", (double)s.object_gets);
        one(b, "nuthatch_object_reads_ahead_total", "counter",
            "Of them, started ahead of a sequential fetch.", (double)s.read_ahead_gets);
        one(b, "nuthatch_object_reads_merged_chunks_total", "counter",
            "Chunks read by a ranged object read started for another chunk of the object.",
            (double)s.merged_chunks);
        one(b, "nuthatch_manifests_unfolded", "gauge",
            "Committed flush manifests not yet folded into index keys.",
            (double)s.manifests_unfolded);
        one(b, "nuthatch_index_keys", "gauge", "Index keys (folded chunks) of the partitions.",
            (double)s.index_keys);
        one(b, "nuthatch_index_keys_partition_max", "gauge",
            "The most index keys of one partition (log.index.max.keys bounds it).",
            (double)s.index_keys_max_part);
        one(b, "nuthatch_segments_written_total", "counter",
            "Segment objects committed by merging or rewriting chunks.",
            (double)s.segments_written);
        one(b, "nuthatch_segment_chunks_total", "counter", "Chunks copied into segment objects.",
            (double)s.chunks_merged);
        one(b, "nuthatch_chunks_expired_total", "counter",
            "Chunks dropped by retention or below the log start.", (double)s.chunks_expired);
        one(b, "nuthatch_gc_objects_deleted_total", "counter",
            "Objects deleted by garbage collection.", (double)s.gc_objects_deleted);
        one(b, "nuthatch_gc_deleted_bytes_total", "counter",
            "Bytes of the objects garbage collection deleted.", (double)s.gc_bytes_deleted);
        one(b, "nuthatch_write_buffer_bytes", "gauge",
            "Bytes produced and not yet committed (waiting or uploading).",
            (double)st_log_buffered(srv->log));
        one(b, "nuthatch_tail_cache_bytes", "gauge", "Bytes held by the memory tails.",
            (double)s.tail_bytes);
        one(b, "nuthatch_read_cache_bytes", "gauge", "Bytes held by the read cache.",
            (double)s.cache_bytes);
        st_buf_pool_stats_t ps;
        st_buf_pool_stats(&ps);
        one(b, "nuthatch_buffer_pool_mapped_total", "counter",
            "Large buffers (objects, chunks) given new memory.", (double)ps.mapped);
        one(b, "nuthatch_buffer_pool_reused_total", "counter",
            "Large buffers given the memory of a released one.", (double)ps.reused);
        one(b, "nuthatch_buffer_pool_moved_bytes_total", "counter",
            "Memory of released large buffers moved into new ones.", (double)ps.moved_bytes);
        one(b, "nuthatch_buffer_pool_kept_bytes", "gauge",
            "Memory of released large buffers kept for the next ones.", (double)ps.kept_bytes);
        size_t topics = 0, parts = 0;
        st_topic_t *t;
        for (size_t i = 0; (t = st_log_topic_at(srv->log, i)) != NULL; i++)
            if (!t->deleting) {
                topics++;
                parts += (size_t)t->nparts;
            }
        one(b, "nuthatch_topics", "gauge", "Topics.", (double)topics);
        one(b, "nuthatch_partitions", "gauge", "Partitions of all topics.", (double)parts);
    }
    const char *why;
    head(b, "nuthatch_store_reachable", "gauge",
         "1 when the last probe of the store succeeded in time.");
    evbuffer_add_printf(b, "nuthatch_store_reachable{store=\"object\"} %d\n", m->pos.ok ? 1 : 0);
    evbuffer_add_printf(b, "nuthatch_store_reachable{store=\"metadata\"} %d\n",
                        m->pmeta.ok ? 1 : 0);
    one(b, "nuthatch_ready", "gauge", "1 when /readyz answers 200.",
        gw_metrics_ready(m, &why) ? 1 : 0);

    size_t len = evbuffer_get_length(b);
    char *out = malloc(len + 1);
    if (out) {
        evbuffer_remove(b, out, len);
        out[len] = '\0';
    }
    evbuffer_free(b);
    return out;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */
/* ------------------------------------------------------------------ */

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                       const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void http_cb(struct evhttp_request *req, void *arg)
{
    gw_metrics_t *m = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "only GET");
        return;
    }
    if (path && strcmp(path, "/metrics") == 0) {
        char *text = gw_metrics_render(m);
        if (!text) {
            evhttp_send_error(req, 500, "out of memory");
            return;
        }
        reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text);
        free(text);
    } else if (path && strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "OK", "text/plain", "ok\n");
    } else if (path && strcmp(path, "/readyz") == 0) {
        const char *why;
        char body[400];
        if (gw_metrics_ready(m, &why)) {
            reply_text(req, 200, "OK", "text/plain", "ready\n");
        } else {
            snprintf(body, sizeof body, "not ready: %s\n", why);
            reply_text(req, 503, "Service Unavailable", "text/plain", body);
        }
    } else {
        evhttp_send_error(req, 404, "try /metrics, /healthz or /readyz");
    }
}

gw_metrics_t *gw_metrics_new(struct event_base *base)
{
    gw_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->base = base;
    m->pos.what = "object store";
    m->pmeta.what = "metadata store";
    return m;
}

int gw_metrics_start(gw_metrics_t *m, const char *listen, char *errstr, size_t n)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535 ||
        (size_t)(colon - listen) >= sizeof host) {
        snprintf(errstr, n, "metrics.listen '%.200s': expected HOST:PORT", listen);
        return -1;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host) - 2);
        host[strlen(host) - 2] = '\0';
    }
    m->http = evhttp_new(m->base);
    m->tick = event_new(m->base, -1, EV_PERSIST, tick_cb, m);
    m->lag = evtimer_new(m->base, lag_cb, m);
    if (!m->http || !m->tick || !m->lag) {
        snprintf(errstr, n, "metrics: out of memory");
        return -1;
    }
    evhttp_set_gencb(m->http, http_cb, m);
    evhttp_set_timeout(m->http, 30);
    /* Only GETs are served: a request with a body or large headers is refused
     * before it is buffered. */
    evhttp_set_max_body_size(m->http, 1024);
    evhttp_set_max_headers_size(m->http, 16384);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(m->http, host[0] ? host : "0.0.0.0", (uint16_t)port);
    if (!bs) {
        snprintf(errstr, n, "metrics.listen '%.200s': cannot bind", listen);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0)
        m->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    struct timeval tv = {GW_METRICS_PROBE_MS / 1000, (GW_METRICS_PROBE_MS % 1000) * 1000};
    event_add(m->tick, &tv);
    event_active(m->tick, 0, 0);
    lag_arm(m, now_s());
    gw_log_info("metrics", "serving /metrics, /healthz and /readyz on %s:%d",
                host[0] ? host : "0.0.0.0", m->port);
    return 0;
}

int gw_metrics_port(const gw_metrics_t *m)
{
    return m ? m->port : 0;
}

void gw_metrics_set_server(gw_metrics_t *m, struct gw_server *srv)
{
    if (m)
        m->srv = srv;
}

void gw_metrics_set_serving(gw_metrics_t *m, bool serving)
{
    if (m)
        m->serving = serving;
}

void gw_metrics_set_stores(gw_metrics_t *m, st_objstore_t *os, st_meta_t *meta)
{
    if (!m)
        return;
    m->os = os;
    m->meta = meta;
}

void gw_metrics_free(gw_metrics_t *m)
{
    if (!m)
        return;
    if (m->tick)
        event_free(m->tick);
    if (m->lag)
        event_free(m->lag);
    if (m->http)
        evhttp_free(m->http);
    free(m);
}
