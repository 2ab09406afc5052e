/*
 * gw_cluster.c: node registration under a lease and the view of live nodes
 * (see the header).
 */
#include "gw_cluster.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_log.h"

#define RETRY_MS 1000 /* pause before a failed start-up or re-registration step is retried */

struct gw_cluster {
    struct event_base *base; /* borrowed */
    st_meta_t *meta;         /* borrowed */
    int32_t node_id;
    gw_node_t self;
    int64_t lease_ms;           /* requested lease TTL */
    char key[64];               /* /nuthatch/nodes/<node_id> */
    char val[GW_HOST_MAX + 32]; /* PLAINTEXT://host:port */
    int64_t lease;              /* lease the key is under; 0 = none yet */
    int64_t lease_sent_ms;      /* when the grant or keep-alive in flight was sent */
    int64_t lease_until_ms;     /* the lease lives at least until then (0: lost or none) */
    struct event *timer;        /* keep-alive, or the next try of a failed step */
    st_meta_watch_t *watch;     /* owned while the view is watched */
    gw_node_t *nodes;           /* the view, sorted by id, self included */
    size_t nnodes, cap;
    int inflight;       /* metadata operations not yet completed */
    bool ready;         /* registered and the view loaded once */
    bool registering;   /* a grant/put sequence is running */
    bool registered;    /* the key was put under the current lease */
    bool reloading;     /* a range of the view is running */
    bool left;          /* gw_cluster_leave: nothing is renewed any more */
    bool freed;         /* gw_cluster_free with operations in flight */
    int64_t give_up_ms; /* start-up: report the error after this */
    void (*start_cb)(st_err_t err, void *arg);
    void *start_arg;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void destroy(gw_cluster_t *cl)
{
    free(cl->nodes);
    free(cl);
}

/* An operation completed: false when the cluster is gone (then nothing
 * more may be done with it). */
static bool settle(gw_cluster_t *cl)
{
    cl->inflight--;
    if (cl->freed) {
        if (cl->inflight == 0)
            destroy(cl);
        return false;
    }
    return true;
}

static void arm(gw_cluster_t *cl, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(cl->timer, &tv);
}

/* ------------------------------------------------------------------ */
/* The view                                                            */
/* ------------------------------------------------------------------ */

/* The node id of a registration key, or -1 for any other key under the
 * prefix (e.g. /nuthatch/nodes/<id>/fence). */
static int32_t key_node_id(const char *key)
{
    size_t plen = strlen(GW_CLUSTER_NODES_PREFIX);
    if (strncmp(key, GW_CLUSTER_NODES_PREFIX, plen) != 0)
        return -1;
    const char *p = key + plen;
    if (!*p || strlen(p) > 10)
        return -1;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v <= INT32_MAX ? (int32_t)v : -1;
}

static size_t view_find(const gw_cluster_t *cl, int32_t id, bool *found)
{
    size_t i = 0;
    while (i < cl->nnodes && cl->nodes[i].id < id)
        i++;
    *found = i < cl->nnodes && cl->nodes[i].id == id;
    return i;
}

static void view_put(gw_cluster_t *cl, const gw_node_t *node)
{
    bool found;
    size_t i = view_find(cl, node->id, &found);
    if (found) {
        if (node->id != cl->node_id)
            cl->nodes[i] = *node;
        return;
    }
    if (cl->nnodes == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 8;
        if (cap > GW_CLUSTER_MAX_NODES)
            cap = GW_CLUSTER_MAX_NODES;
        if (cap == cl->cap) {
            gw_log_warn("cluster", "more than %d nodes registered: node %d left out of the view",
                        GW_CLUSTER_MAX_NODES, node->id);
            return;
        }
        gw_node_t *nodes = realloc(cl->nodes, cap * sizeof *nodes);
        if (!nodes) {
            gw_log_warn("cluster", "out of memory: node %d left out of the view", node->id);
            return;
        }
        cl->nodes = nodes;
        cl->cap = cap;
    }
    memmove(&cl->nodes[i + 1], &cl->nodes[i], (cl->nnodes - i) * sizeof *cl->nodes);
    cl->nodes[i] = *node;
    cl->nnodes++;
    if (node->id != cl->node_id && cl->ready)
        gw_log_info("cluster", "node %d joined (%s:%d)", node->id, node->host, node->port);
}

static void view_del(gw_cluster_t *cl, int32_t id)
{
    bool found;
    size_t i = view_find(cl, id, &found);
    if (!found || id == cl->node_id) /* this node is in its own view while it runs */
        return;
    memmove(&cl->nodes[i], &cl->nodes[i + 1], (cl->nnodes - i - 1) * sizeof *cl->nodes);
    cl->nnodes--;
    gw_log_info("cluster", "node %d left", id);
}

/* A registration key's value as a node; false (logged) when it is none. */
static bool parse_node(int32_t id, const uint8_t *val, size_t len, gw_node_t *out)
{
    char buf[GW_HOST_MAX + 32], err[300];
    if (len >= sizeof buf) {
        gw_log_warn("cluster", "node %d: registration of %zu bytes ignored", id, len);
        return false;
    }
    memcpy(buf, val, len);
    buf[len] = '\0';
    gw_listener_t l;
    if (gw_listener_parse("node", buf, true, &l, err, sizeof err) != 0) {
        gw_log_warn("cluster", "node %d: registration '%s' ignored: %s", id, buf, err);
        return false;
    }
    out->id = id;
    memcpy(out->host, l.host, sizeof out->host);
    out->port = l.port;
    return true;
}

static void reregister(gw_cluster_t *cl);
static void reload(gw_cluster_t *cl);

static void watch_cb(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg)
{
    gw_cluster_t *cl = arg;
    if (err != ST_OK) {
        gw_log_warn("cluster", "watch of the nodes broke (%s): reading them again",
                    st_err_str(err));
        st_meta_watch_cancel(cl->meta, cl->watch);
        cl->watch = NULL;
        reload(cl);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const st_kv_t *kv = &evs[i].kv;
        int32_t id = key_node_id(kv->key);
        if (id < 0)
            continue;
        if (evs[i].type == ST_WATCH_DELETE) {
            if (id == cl->node_id && !cl->left) {
                gw_log_warn("cluster", "this node's registration was deleted (lease expired?): "
                                       "registering again");
                reregister(cl);
            }
            view_del(cl, id);
            continue;
        }
        if (id == cl->node_id && kv->lease != cl->lease && cl->lease != 0 && !cl->registering)
            gw_log_error("cluster",
                         "node.id %d was registered by another gateway (%.*s): "
                         "node ids must be unique",
                         id, (int)kv->val_len, (const char *)kv->val);
        gw_node_t node;
        if (parse_node(id, kv->val, kv->val_len, &node))
            view_put(cl, &node);
    }
}

static void loaded(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more;
    gw_cluster_t *cl = arg;
    if (!settle(cl))
        return;
    cl->reloading = false;
    if (cl->left)
        return;
    if (err != ST_OK) {
        gw_log_warn("cluster", "cannot read the nodes: %s", st_err_str(err));
        if (!cl->ready && now_ms() >= cl->give_up_ms) {
            cl->start_cb(err, cl->start_arg);
            return;
        }
        arm(cl, RETRY_MS); /* the timer sees no watch and reloads */
        return;
    }
    cl->nnodes = 0;
    view_put(cl, &cl->self);
    for (size_t i = 0; i < n; i++) {
        int32_t id = key_node_id(kvs[i].key);
        gw_node_t node;
        if (id >= 0 && id != cl->node_id && parse_node(id, kvs[i].val, kvs[i].val_len, &node))
            view_put(cl, &node);
    }
    cl->watch = st_meta_watch(cl->meta, GW_CLUSTER_NODES_PREFIX, rev + 1, watch_cb, cl);
    if (!cl->watch)
        gw_log_warn("cluster", "cannot watch the nodes: out of memory");
    if (!cl->ready) {
        cl->ready = true;
        gw_log_info("cluster", "node %d registered (%s, lease %lld ms); %zu live node%s",
                    cl->node_id, cl->val, (long long)cl->lease_ms, cl->nnodes,
                    cl->nnodes == 1 ? "" : "s");
        arm(cl, cl->lease_ms / 3);
        cl->start_cb(ST_OK, cl->start_arg);
    }
}

static void reload(gw_cluster_t *cl)
{
    if (cl->reloading || cl->left)
        return;
    if (st_meta_range(cl->meta, GW_CLUSTER_NODES_PREFIX, true, 0, loaded, cl) != 0) {
        arm(cl, RETRY_MS);
        return;
    }
    cl->reloading = true;
    cl->inflight++;
}

/* ------------------------------------------------------------------ */
/* Registration and keep-alive                                         */
/* ------------------------------------------------------------------ */

/* A step of the registration failed: try again later, or at start-up
 * give up past the deadline. */
static void register_failed(gw_cluster_t *cl, const char *what, st_err_t err)
{
    cl->registering = false;
    gw_log_warn("cluster", "%s: %s", what, st_err_str(err));
    if (!cl->ready && now_ms() >= cl->give_up_ms) {
        cl->start_cb(err, cl->start_arg);
        return;
    }
    arm(cl, RETRY_MS);
}

static void put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                     void *arg)
{
    (void)rev, (void)res, (void)n;
    gw_cluster_t *cl = arg;
    if (!settle(cl) || cl->left)
        return;
    if (err != ST_OK) {
        register_failed(cl, "cannot register this node", err);
        return;
    }
    cl->registering = false;
    cl->registered = true;
    if (!ok)
        gw_log_warn("cluster",
                    "node.id %d was registered already (a previous run, or another "
                    "gateway with the same node.id): taken over",
                    cl->node_id);
    if (!cl->ready) {
        reload(cl);
        return;
    }
    arm(cl, cl->lease_ms / 3);
}

/* Put this node's key under the current lease: the success branch when
 * the key is absent, the same put (noted) when it was there. */
static void put_key(gw_cluster_t *cl)
{
    st_cmp_t cmp = {.key = cl->key, .target = ST_CMP_VERSION, .op = ST_CMP_EQ, .num = 0};
    st_op_t put = {.type = ST_OP_PUT,
                   .key = cl->key,
                   .val = (const uint8_t *)cl->val,
                   .val_len = strlen(cl->val),
                   .lease = cl->lease};
    st_txn_t txn = {
        .cmps = &cmp, .ncmps = 1, .success = &put, .nsuccess = 1, .failure = &put, .nfailure = 1};
    if (st_meta_txn(cl->meta, &txn, put_done, cl) != 0) {
        register_failed(cl, "cannot register this node", ST_ERR_NOMEM);
        return;
    }
    cl->inflight++;
}

static void granted(st_err_t err, int64_t lease_id, int64_t ttl_ms, void *arg)
{
    gw_cluster_t *cl = arg;
    if (!settle(cl) || cl->left)
        return;
    if (err != ST_OK) {
        register_failed(cl, "cannot obtain a lease", err);
        return;
    }
    cl->lease = lease_id;
    cl->lease_until_ms = cl->lease_sent_ms + (ttl_ms > 0 ? ttl_ms : cl->lease_ms);
    put_key(cl);
}

/* Grant a new lease and put this node's key under it. */
static void reregister(gw_cluster_t *cl)
{
    if (cl->registering || cl->left)
        return;
    evtimer_del(cl->timer);
    cl->lease_until_ms = 0; /* the old lease is gone, or about to be replaced */
    cl->lease_sent_ms = now_ms();
    if (st_meta_lease_grant(cl->meta, cl->lease_ms, granted, cl) != 0) {
        arm(cl, RETRY_MS);
        return;
    }
    cl->registering = true;
    cl->registered = false;
    cl->inflight++;
}

static void kept_alive(st_err_t err, int64_t lease_id, int64_t ttl_ms, void *arg)
{
    (void)lease_id;
    gw_cluster_t *cl = arg;
    if (!settle(cl) || cl->left || cl->registering)
        return;
    if (err == ST_OK)
        cl->lease_until_ms = cl->lease_sent_ms + (ttl_ms > 0 ? ttl_ms : cl->lease_ms);
    if (err == ST_ERR_NOT_FOUND) {
        gw_log_warn("cluster", "the lease of node %d expired: registering again", cl->node_id);
        reregister(cl);
        return;
    }
    if (err != ST_OK)
        gw_log_warn("cluster", "cannot renew the lease of node %d: %s", cl->node_id,
                    st_err_str(err));
    arm(cl, err == ST_OK ? cl->lease_ms / 3 : RETRY_MS);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_cluster_t *cl = arg;
    if (cl->left || cl->registering)
        return;
    if (!cl->registered) { /* a failed grant or put */
        reregister(cl);
        return;
    }
    if (!cl->watch)
        reload(cl); /* start-up's first read, or a broken watch, failed */
    if (!cl->ready)
        return;
    cl->lease_sent_ms = now_ms();
    if (st_meta_lease_keepalive(cl->meta, cl->lease, kept_alive, cl) != 0) {
        arm(cl, RETRY_MS);
        return;
    }
    cl->inflight++;
}

/* ------------------------------------------------------------------ */
/* Life                                                                */
/* ------------------------------------------------------------------ */

gw_cluster_t *gw_cluster_new(struct event_base *base, st_meta_t *meta, int32_t node_id,
                             const char *host, int32_t port, int64_t lease_ms)
{
    gw_cluster_t *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->base = base;
    cl->meta = meta;
    cl->node_id = node_id;
    cl->lease_ms = lease_ms;
    cl->self.id = node_id;
    snprintf(cl->self.host, sizeof cl->self.host, "%s", host);
    cl->self.port = port;
    snprintf(cl->key, sizeof cl->key, GW_CLUSTER_NODES_PREFIX "%" PRId32, node_id);
    gw_listener_t l = {.port = port};
    snprintf(l.host, sizeof l.host, "%s", host);
    gw_listener_format(&l, cl->val, sizeof cl->val);
    cl->timer = evtimer_new(base, timer_cb, cl);
    if (!cl->timer) {
        free(cl);
        return NULL;
    }
    view_put(cl, &cl->self);
    if (cl->nnodes != 1) {
        event_free(cl->timer);
        destroy(cl);
        return NULL;
    }
    return cl;
}

void gw_cluster_start(gw_cluster_t *cl, int64_t give_up_ms, void (*cb)(st_err_t err, void *arg),
                      void *arg)
{
    cl->give_up_ms = give_up_ms;
    cl->start_cb = cb;
    cl->start_arg = arg;
    reregister(cl);
}

const gw_node_t *gw_cluster_nodes(const gw_cluster_t *cl, size_t *n)
{
    *n = cl->nnodes;
    return cl->nodes;
}

int32_t gw_cluster_controller(const gw_cluster_t *cl)
{
    return cl->nodes[0].id; /* sorted, never empty */
}

/* 64-bit FNV-1a of the node id (4 bytes, big-endian) then the key, through
 * splitmix64's finalizer so that close ids spread. */
gw_lease_state_t gw_cluster_lease_state(const gw_cluster_t *cl)
{
    int64_t now = now_ms();
    if (now >= cl->lease_until_ms)
        return GW_LEASE_LOST;
    if (now >= cl->lease_until_ms - cl->lease_ms / 3)
        return GW_LEASE_STALE;
    return GW_LEASE_FRESH;
}

static uint64_t rendezvous(int32_t id, const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 3; i >= 0; i--) {
        h ^= (uint8_t)((uint32_t)id >> (8 * i));
        h *= 0x100000001b3ULL;
    }
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

const gw_node_t *gw_cluster_coordinator(const gw_cluster_t *cl, const char *key, size_t len)
{
    const gw_node_t *best = &cl->nodes[0];
    uint64_t best_h = rendezvous(best->id, key, len);
    for (size_t i = 1; i < cl->nnodes; i++) {
        uint64_t h = rendezvous(cl->nodes[i].id, key, len);
        if (h > best_h) { /* ties (never in practice) keep the lower id */
            best = &cl->nodes[i];
            best_h = h;
        }
    }
    return best;
}

static void revoked(st_err_t err, void *arg)
{
    gw_cluster_t *cl = arg;
    if (!settle(cl))
        return;
    if (err != ST_OK)
        gw_log_warn("cluster", "cannot revoke the lease of node %d (it expires on its own): %s",
                    cl->node_id, st_err_str(err));
}

void gw_cluster_leave(gw_cluster_t *cl)
{
    if (cl->left)
        return;
    cl->left = true;
    evtimer_del(cl->timer);
    if (cl->watch) {
        st_meta_watch_cancel(cl->meta, cl->watch);
        cl->watch = NULL;
    }
    if (cl->lease != 0 && st_meta_lease_revoke(cl->meta, cl->lease, revoked, cl) == 0)
        cl->inflight++;
}

void gw_cluster_free(gw_cluster_t *cl)
{
    if (!cl)
        return;
    cl->left = true;
    if (cl->watch)
        st_meta_watch_cancel(cl->meta, cl->watch);
    cl->watch = NULL;
    event_free(cl->timer);
    cl->timer = NULL;
    if (cl->inflight > 0) {
        cl->freed = true;
        return;
    }
    destroy(cl);
}
