/*
 * gw_server.c: the listener, connection accounting, the receive budget,
 * graceful stop, and the process's run path.  See gw_server.h.
 */
#include "gw_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "gw_api.h"
#include "gw_cluster.h"
#include "gw_leaders.h"
#include "gw_conn.h"
#include "gw_group.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "st_curl.h"
#include "st_meta_compactor.h"

#define LISTEN_BACKLOG 511

/* ------------------------------------------------------------------ */
/* Receive budget                                                      */
/* ------------------------------------------------------------------ */

int64_t gw_server__frame_cost(const gw_server_t *srv, int64_t frame_len)
{
    /* Never more than the whole budget: a frame of socket.request.max.bytes
     * must fit when the budget is that small. */
    int64_t room = srv->cfg->request_receive_budget_bytes - frame_len;
    return frame_len + (room < GW_REQ_COST ? (room > 0 ? room : 0) : GW_REQ_COST);
}

bool gw_server__budget_reserve(gw_server_t *srv, int64_t n)
{
    if (srv->recv_reserved + n > srv->cfg->request_receive_budget_bytes)
        return false;
    srv->recv_reserved += n;
    return true;
}

void gw_server__budget_release(gw_server_t *srv, int64_t n)
{
    srv->recv_reserved -= n;
    /* Wake waiters in order while the head's frame fits; it reserves for
     * itself when it resumes (from the loop, not from this stack). */
    int64_t avail = srv->cfg->request_receive_budget_bytes - srv->recv_reserved;
    while (srv->budget_head && gw_server__frame_cost(srv, srv->budget_head->frame_len) <= avail) {
        gw_conn_t *conn = srv->budget_head;
        avail -= gw_server__frame_cost(srv, conn->frame_len);
        srv->budget_head = conn->budget_next;
        if (!srv->budget_head)
            srv->budget_tail = NULL;
        conn->budget_next = NULL;
        conn->in_budget_queue = false;
        gw_conn_resume(conn);
    }
}

void gw_server__budget_wait(gw_server_t *srv, gw_conn_t *conn)
{
    if (conn->in_budget_queue)
        return;
    conn->in_budget_queue = true;
    conn->budget_next = NULL;
    if (srv->budget_tail)
        srv->budget_tail->budget_next = conn;
    else
        srv->budget_head = conn;
    srv->budget_tail = conn;
}

void gw_server__budget_unwait(gw_server_t *srv, gw_conn_t *conn)
{
    if (!conn->in_budget_queue)
        return;
    gw_conn_t **pp = &srv->budget_head, *prev = NULL;
    while (*pp && *pp != conn) {
        prev = *pp;
        pp = &(*pp)->budget_next;
    }
    if (*pp) {
        *pp = conn->budget_next;
        if (srv->budget_tail == conn)
            srv->budget_tail = prev;
    }
    conn->budget_next = NULL;
    conn->in_budget_queue = false;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

void gw_server__conn_gone(gw_server_t *srv, gw_conn_t *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    if (srv->stopping && !srv->conns && srv->stopped_cb)
        event_active(srv->stopped_ev, 0, 0);
}

static void format_peer(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(buf, size, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(buf, size, "[%s]:%d", host, port);
    } else {
        snprintf(buf, size, "local");
    }
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)lev;
    (void)salen;
    gw_server_t *srv = arg;
    char peer[64];
    format_peer(sa, peer, sizeof peer);
    if (srv->stopping || srv->nconns_open >= srv->cfg->max_connections) {
        srv->stats.conns_refused++;
        gw_log_info("server", "refusing connection from %s: %d connections open (max.connections)",
                    peer, srv->nconns_open);
        evutil_closesocket(fd);
        return;
    }
    srv->stats.conns_accepted++;
    if (!gw_conn_new(srv, fd, peer))
        gw_log_error("server", "out of memory accepting a connection from %s", peer);
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
    (void)lev;
    (void)arg;
    /* EMFILE and friends: log and keep listening; libevent retries. */
    gw_log_warn("server", "accept failed: %s", strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Listener                                                            */
/* ------------------------------------------------------------------ */

/* A listening socket for @host ("" = every interface, IPv6 dual-stack when
 * available) and @port; -1 with a reason on failure. */
static evutil_socket_t bind_listener(const char *host, int port, char *errstr, size_t n)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = AF_UNSPEC;
    const char *node = host[0] ? host : "::";
    int rc = getaddrinfo(node, portstr, &hints, &res);
    if (rc != 0 && !host[0])
        rc = getaddrinfo("0.0.0.0", portstr, &hints, &res); /* no IPv6 here */
    if (rc != 0) {
        snprintf(errstr, n, "listeners: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    int err = 0;
    evutil_socket_t fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6 && gw_host_is_wildcard(host)) /* "::" takes IPv4 too */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(errstr, n, "listeners: cannot listen on %s%s%s:%d: %s",
                 strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port,
                 strerror(err));
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    return fd;
}

static int bound_port(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void stopped_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_server_t *srv = arg;
    void (*cb)(void *) = srv->stopped_cb;
    srv->stopped_cb = NULL;
    if (cb)
        cb(srv->stopped_arg);
}

gw_server_t *gw_server_new(struct event_base *base, const gw_config_t *cfg, st_log_t *log,
                           char *errstr, size_t errstr_size)
{
    gw_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    srv->cfg = cfg;
    srv->base = base;
    srv->log = log;
    srv->max_inflight = GW_CONN_MAX_INFLIGHT;
    char ignored[256];
    if (gw_config_defaults(&srv->defaults, ignored, sizeof ignored) != 0)
        srv->defaults = *cfg; /* no host name: report every value as the default */
    srv->stopped_ev = event_new(base, -1, 0, stopped_cb, srv);
    evutil_socket_t fd =
        bind_listener(cfg->listeners.host, cfg->listeners.port, errstr, errstr_size);
    if (fd < 0 || !srv->stopped_ev) {
        if (fd >= 0)
            evutil_closesocket(fd);
        if (srv->stopped_ev)
            event_free(srv->stopped_ev);
        else
            snprintf(errstr, errstr_size, "out of memory");
        free(srv);
        return NULL;
    }
    srv->port = bound_port(fd);
    srv->listener =
        evconnlistener_new(base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, -1, fd);
    if (!srv->listener) {
        snprintf(errstr, errstr_size, "cannot create the listener");
        evutil_closesocket(fd);
        event_free(srv->stopped_ev);
        free(srv);
        return NULL;
    }
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    srv->groups = gw_coord_new(srv);
    if (!srv->groups) {
        snprintf(errstr, errstr_size, "out of memory");
        evconnlistener_free(srv->listener);
        event_free(srv->stopped_ev);
        free(srv);
        return NULL;
    }
    return srv;
}

void gw_server_start(gw_server_t *srv)
{
    if (srv->listener)
        evconnlistener_enable(srv->listener);
}

int gw_server_port(const gw_server_t *srv)
{
    return srv->port;
}

void gw_server_stop(gw_server_t *srv, void (*cb)(void *arg), void *arg)
{
    srv->stopping = true;
    srv->stopped_cb = cb;
    srv->stopped_arg = arg;
    if (srv->listener) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
    }
    /* Draining may close (never free) connections: the list stays intact. */
    for (gw_conn_t *conn = srv->conns; conn; conn = conn->next)
        gw_conn_drain(conn, "server stopping");
    if (!srv->conns)
        event_active(srv->stopped_ev, 0, 0);
}

void gw_server_free(gw_server_t *srv)
{
    if (!srv)
        return;
    srv->stopped_cb = NULL;
    if (srv->listener)
        evconnlistener_free(srv->listener);
    while (srv->conns) {
        gw_conn_t *conn = srv->conns;
        gw_conn_close(conn, "server freed");
        gw_conn__abandon(conn); /* unlinks it */
    }
    gw_coord_free(srv->groups);
    event_free(srv->stopped_ev);
    free(srv);
}

/* ------------------------------------------------------------------ */
/* Run path                                                            */
/* ------------------------------------------------------------------ */

typedef struct run_ctx {
    const gw_config_t *cfg;
    struct event_base *base;
    st_curl_t *curl;           /* the process's HTTP client, with an s3:// or etcd:// store */
    st_objstore_t *os;         /* object store */
    st_meta_t *meta;           /* metadata store */
    st_log_t *log;             /* the log being opened or serving */
    st_log_t *old_log;         /* a log whose open failed, freed before the next try */
    st_compactor_t *compactor; /* etcd: keeps its revision history bounded */
    gw_cluster_t *cluster;     /* this node's registration and the live nodes */
    gw_leaders_t *leaders;     /* the partitions' leader records */
    st_objstore_t *os_raw;     /* the object store under the metered wrapper (os) */
    st_meta_t *meta_raw;       /* the metadata store under the metered wrapper (meta) */
    gw_metrics_t *metrics;     /* counters, /metrics, /healthz, /readyz */
    gw_server_t *srv;
    struct event *sigterm, *sigint, *deadline;
    struct event *retry; /* start-up: the next try to reach the stores */
    int64_t give_up_ms;  /* start-up: no new try after this (monotonic ms) */
    int tries;           /* start-up tries so far */
    int status;          /* exit status */
    int dir_lock;        /* data.dir, flock()ed while stores live there, or -1 */
    bool stopping;       /* a signal arrived */
    bool opened;         /* the log opened: serving */
    bool clean;          /* the log closed within the deadline */
} run_ctx_t;

/* mkdir -p @path (a directory). */
static int mkdirs(const char *path, char *errstr, size_t n)
{
    char buf[GW_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            snprintf(errstr, n, "cannot create directory '%.400s': %s", buf, strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0')
            return 0;
    }
}

/* mkdir -p the directory that holds file @path. */
static int mkdirs_parent(const char *path, char *errstr, size_t n)
{
    char buf[GW_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    return mkdirs(buf, errstr, n);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_closed_cb(void *arg)
{
    run_ctx_t *ctx = arg;
    ctx->clean = true;
    gw_log_info("server", "stopped");
    event_base_loopbreak(ctx->base);
}

static void drained_cb(void *arg)
{
    run_ctx_t *ctx = arg;
    gw_log_info("server", "connections closed; flushing the log");
    st_log_close(ctx->log, log_closed_cb, ctx);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_ctx_t *ctx = arg;
    gw_log_warn("server", "shutdown.timeout.ms (%lld ms) passed; exiting with work pending",
                (long long)ctx->cfg->shutdown_timeout_ms);
    event_base_loopbreak(ctx->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    run_ctx_t *ctx = arg;
    if (ctx->stopping) {
        gw_log_warn("server", "second signal %d: exiting now", (int)sig);
        event_base_loopbreak(ctx->base);
        return;
    }
    ctx->stopping = true;
    gw_log_info("server", "signal %d: stopping", (int)sig);
    if (ctx->cluster)
        gw_cluster_leave(ctx->cluster); /* the other nodes stop naming this one */
    if (!ctx->opened) {
        event_base_loopbreak(ctx->base); /* still starting: nothing to drain */
        return;
    }
    struct timeval tv = {(time_t)(ctx->cfg->shutdown_timeout_ms / 1000),
                         (suseconds_t)(ctx->cfg->shutdown_timeout_ms % 1000) * 1000};
    evtimer_add(ctx->deadline, &tv);
    gw_server_stop(ctx->srv, drained_cb, ctx);
}

static void start_failed(run_ctx_t *ctx, const char *why)
{
    gw_log_error("server", "%s", why);
    ctx->status = 1;
    event_base_loopbreak(ctx->base);
}

/* A start-up try failed with @why: try again after a pause while
 * startup.timeout.ms allows, else give up (exit 1). */
static void start_retry(run_ctx_t *ctx, const char *why)
{
    int64_t pause = ctx->tries < 5 ? 250LL << ctx->tries : 5000; /* 0.5, 1, 2, 4, 5, 5 ... s */
    if (pause > 5000)
        pause = 5000;
    int64_t now = now_ms();
    if (ctx->stopping)
        return;
    if (pause > ctx->give_up_ms - now)
        pause = ctx->give_up_ms - now; /* one last try at the deadline */
    if (pause <= 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "%s; gave up after %d tries (startup.timeout.ms %lld)", why,
                 ctx->tries, (long long)ctx->cfg->startup_timeout_ms);
        start_failed(ctx, msg);
        return;
    }
    gw_log_warn("server", "%s; trying again in %lld ms", why, (long long)pause);
    struct timeval tv = {(time_t)(pause / 1000), (suseconds_t)(pause % 1000) * 1000};
    evtimer_add(ctx->retry, &tv);
}

/* The metadata store's own account of its last failure, if it has one. */
static const char *meta_detail(const run_ctx_t *ctx)
{
    if (ctx->cfg->metadata_url.kind == GW_METADATA_ETCD)
        return st_meta_etcd_last_error(ctx->meta_raw);
    return "";
}

static void compacted_cb(st_err_t err, int64_t rev, void *arg)
{
    run_ctx_t *ctx = arg;
    if (err == ST_OK)
        gw_log_debug("metadata", "etcd history compacted up to revision %lld", (long long)rev);
    else
        gw_log_warn("metadata", "compacting etcd's history up to revision %lld failed: %s%s%s",
                    (long long)rev, st_err_str(err), meta_detail(ctx)[0] ? ": " : "",
                    meta_detail(ctx));
}

/* With etcd, compact its revision history one interval behind (DESIGN §5:
 * a default etcd keeps every revision until told otherwise). */
static void start_compactor(run_ctx_t *ctx)
{
    const gw_config_t *cfg = ctx->cfg;
    if (cfg->metadata_url.kind != GW_METADATA_ETCD || cfg->metadata_compaction_interval_ms <= 0)
        return;
    ctx->compactor = st_compactor_new(ctx->base, ctx->meta, "/nuthatch/cluster/id",
                                      cfg->metadata_compaction_interval_ms, compacted_cb, ctx);
    if (!ctx->compactor)
        gw_log_warn("metadata", "cannot start compacting etcd's history: out of memory");
}

static void registered_cb(st_err_t err, void *arg);
static void leaders_read_cb(st_err_t err, void *arg);

static void log_opened_cb(st_err_t err, void *arg)
{
    run_ctx_t *ctx = arg;
    if (err != ST_OK) {
        char why[700];
        const char *detail = meta_detail(ctx);
        snprintf(why, sizeof why, "cannot open the log: %s%s%s", st_log_open_error(ctx->log),
                 detail[0] ? ": " : "", detail);
        /* Unreachable or unanswering stores may come back; a refusal
         * (authentication, another cluster's data, a full store) will not. */
        ctx->old_log = ctx->log; /* freed from the loop, not from its callback */
        ctx->log = NULL;
        if (err == ST_ERR_IO || err == ST_ERR_TIMEOUT)
            start_retry(ctx, why);
        else
            start_failed(ctx, why);
        return;
    }
    ctx->srv->log = ctx->log;
    if (ctx->stopping)
        return;
    const gw_listener_t *adv = &ctx->cfg->advertised_listeners;
    ctx->cluster = gw_cluster_new(ctx->base, ctx->meta, ctx->cfg->node_id, adv->host,
                                  adv->port ? adv->port : gw_server_port(ctx->srv),
                                  ctx->cfg->cluster_lease_ms);
    if (!ctx->cluster) {
        start_failed(ctx, "cannot set up the cluster membership: out of memory");
        return;
    }
    gw_cluster_start(ctx->cluster, now_ms() + ctx->cfg->startup_timeout_ms, registered_cb, ctx);
}

/* This node is registered among the live nodes: serve. */
static void registered_cb(st_err_t err, void *arg)
{
    run_ctx_t *ctx = arg;
    if (err != ST_OK) {
        char why[700];
        const char *detail = meta_detail(ctx);
        snprintf(why, sizeof why, "cannot register node %d: %s%s%s", ctx->cfg->node_id,
                 st_err_str(err), detail[0] ? ": " : "", detail);
        start_failed(ctx, why);
        return;
    }
    if (ctx->stopping)
        return;
    ctx->leaders = gw_leaders_new(ctx->base, ctx->meta, ctx->log, ctx->cluster, ctx->cfg->node_id);
    if (!ctx->leaders) {
        start_failed(ctx, "cannot set up the leader records: out of memory");
        return;
    }
    gw_leaders_start(ctx->leaders, now_ms() + ctx->cfg->startup_timeout_ms, leaders_read_cb, ctx);
}

/* The leader records are read: serve. */
static void leaders_read_cb(st_err_t err, void *arg)
{
    run_ctx_t *ctx = arg;
    if (err != ST_OK) {
        char why[700];
        const char *detail = meta_detail(ctx);
        snprintf(why, sizeof why, "cannot read the leader records: %s%s%s", st_err_str(err),
                 detail[0] ? ": " : "", detail);
        start_failed(ctx, why);
        return;
    }
    ctx->opened = true;
#if defined(__GLIBC__)
    /* Opening read every index key and manifest and freed them; with the
     * trim threshold raised (gw_main.c) up to 32 MiB of that would stay in
     * the process for good. */
    malloc_trim(0);
#endif
    ctx->srv->cluster = ctx->cluster;
    ctx->srv->leaders = ctx->leaders;
    gw_metrics_set_serving(ctx->metrics, true);
    if (ctx->stopping)
        return;
    gw_server_start(ctx->srv);
    start_compactor(ctx);
    const gw_listener_t *l = &ctx->cfg->listeners, *adv = &ctx->cfg->advertised_listeners;
    bool v6 = strchr(l->host, ':') != NULL, adv6 = strchr(adv->host, ':') != NULL;
    gw_log_info("server", "node %d listening on %s%s%s:%d (advertised %s%s%s:%d), cluster %s",
                ctx->cfg->node_id, v6 ? "[" : "", l->host[0] ? l->host : "*", v6 ? "]" : "",
                gw_server_port(ctx->srv), adv6 ? "[" : "", adv->host, adv6 ? "]" : "",
                adv->port ? adv->port : gw_server_port(ctx->srv), st_log_cluster_id(ctx->log));
}

/* Retention and merging of a partition run on its leader only, and on no
 * partition before this node has registered and read the live nodes (until
 * then it cannot know which partitions it leads; gw_leads alone would say
 * all of them). */
static bool leads_cb(void *arg, const st_topic_t *topic, int32_t p)
{
    const gw_server_t *srv = arg;
    return srv->cluster && gw_leads(srv, topic, p);
}

/* A move bumped this node's fence (st_log_cfg_t.sync): the log waits
 * until the leader records up to that revision are known here.  Before
 * the records are read (not serving yet, nothing appended) at once. */
static void sync_cb(void *arg, int64_t rev, void (*done)(void *done_arg), void *done_arg)
{
    const gw_server_t *srv = arg;
    if (srv->leaders)
        gw_leaders_sync(srv->leaders, rev, done, done_arg);
    else
        done(done_arg);
}

/* st_log_cfg_t.log: events of the log no request reports. */
static void log_line(void *arg, const char *msg)
{
    (void)arg;
    gw_log_warn("log", "%s", msg);
}

/* Make and open the log over the stores. */

static void open_log(run_ctx_t *ctx)
{
    const gw_config_t *cfg = ctx->cfg;
    st_log_cfg_t lcfg = {
        .node_id = cfg->node_id,
        .flush_max_bytes = (size_t)cfg->flush_max_bytes,
        .flush_max_inflight = cfg->flush_max_inflight,
        .tail_cache_bytes = (size_t)cfg->tail_cache_bytes,
        .read_cache_bytes = (size_t)cfg->read_cache_bytes,
        .read_ahead_bytes = (size_t)cfg->read_ahead_bytes,
        .default_partitions = cfg->num_partitions,
        .cluster_id = cfg->cluster_id,
        .write_buffer_bytes = (size_t)cfg->write_buffer_bytes,
        .retention_ms = cfg->log_retention_ms == 0 ? 1 : cfg->log_retention_ms,
        .retention_bytes = cfg->log_retention_bytes == 0 ? 1 : cfg->log_retention_bytes,
        .lifecycle_interval_ms = cfg->log_lifecycle_interval_ms,
        .retention_check_interval_ms = cfg->log_retention_check_interval_ms,
        .gc_interval_ms = cfg->log_gc_interval_ms == 0 ? -1 : cfg->log_gc_interval_ms,
        .gc_grace_ms = cfg->log_gc_grace_ms,
        .on_flush = ctx->metrics ? gw_metrics_on_flush : NULL,
        .on_flush_arg = ctx->metrics,
        .log = log_line,
        .owns = leads_cb,
        .owns_arg = ctx->srv,
        .sync = sync_cb,
        .index_max_keys = cfg->log_index_max_keys,
        .segment_bytes = cfg->log_segment_bytes,
        /* SQLite is this process's own: no other node reads a manifest
         * before its object lands (docs/object-format.md, "Commit ahead"). */
        .commit_ahead = cfg->metadata_url.kind == GW_METADATA_SQLITE,
    };
    ctx->log = st_log_new(ctx->base, ctx->os, ctx->meta, &lcfg);
    if (!ctx->log) {
        start_failed(ctx, "cannot create the log: out of memory");
        return;
    }
    ctx->srv->log = ctx->log;
    if (st_log_open(ctx->log, log_opened_cb, ctx) != 0)
        start_failed(ctx, "cannot start opening the log: out of memory");
}

/* Does an S3 failure read as a refusal (HTTP 4xx other than 408 and 429),
 * which waiting will not fix? */
static bool s3_refused(const char *why)
{
    const char *h = strstr(why, "HTTP 4");
    return h && strncmp(h, "HTTP 408", 8) != 0 && strncmp(h, "HTTP 429", 8) != 0;
}

/* The object store answered the probe: a bucket that exists and can be
 * listed with these credentials. */
static void probe_cb(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    (void)objs, (void)n, (void)more;
    run_ctx_t *ctx = arg;
    if (ctx->stopping)
        return;
    if (err == ST_OK) {
        open_log(ctx);
        return;
    }
    const gw_storage_url_t *u = &ctx->cfg->storage_url;
    const char *detail = st_objstore_s3_last_error(ctx->os_raw);
    char why[700];
    snprintf(why, sizeof why, "object store: cannot list bucket '%s' at %s: %s", u->bucket,
             u->endpoint, detail[0] ? detail : st_err_str(err));
    if (s3_refused(detail) || err == ST_ERR_INVALID)
        start_failed(ctx, why);
    else
        start_retry(ctx, why);
}

/* One start-up try: check the bucket (S3), then open the log. */
static void start_try(run_ctx_t *ctx)
{
    ctx->tries++;
    if (ctx->old_log) {
        st_log_free(ctx->old_log);
        ctx->old_log = NULL;
    }
    if (ctx->cfg->storage_url.kind == GW_STORAGE_S3) {
        if (st_objstore_list(ctx->os, "objects/", NULL, 1, probe_cb, ctx) != 0)
            start_failed(ctx, "object store: cannot start listing the bucket: out of memory");
        return;
    }
    open_log(ctx);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_try(arg);
}

static void s3_log(void *arg, const char *msg)
{
    (void)arg;
    gw_log_warn("s3", "%s", msg);
}

/* The object store of storage.url. */
static int open_objstore(run_ctx_t *ctx, char *errstr, size_t n)
{
    const gw_config_t *cfg = ctx->cfg;
    const gw_storage_url_t *u = &cfg->storage_url;
    if (u->kind == GW_STORAGE_DIR) {
        if (mkdirs(u->path, errstr, n) != 0)
            return -1;
        ctx->os = st_objstore_dir_new(ctx->base, u->path, 2, errstr, n);
        if (ctx->os)
            gw_log_info("server", "object store: directory %s", u->path);
        return ctx->os ? 0 : -1;
    }
    const char *session = getenv("AWS_SESSION_TOKEN");
    st_s3_cfg_t s3 = {
        .bucket = u->bucket,
        .prefix = u->prefix,
        .endpoint = u->endpoint,
        .region = u->region,
        .addressing = u->addressing == GW_S3_VIRTUAL ? ST_S3_ADDR_VIRTUAL : ST_S3_ADDR_PATH,
        .access_key = getenv("AWS_ACCESS_KEY_ID"), /* checked by gw_config_load */
        .secret_key = getenv("AWS_SECRET_ACCESS_KEY"),
        .session_token = session && session[0] ? session : NULL,
        .max_inflight = (unsigned)cfg->storage_s3_max_requests,
        .retry_budget_ms = (unsigned)cfg->storage_s3_request_timeout_ms,
        .attempt_timeout_ms = (unsigned)cfg->storage_s3_attempt_timeout_ms,
        /* A retry waits at most 2 s, so that writes resume within 5 s of
         * the store answering again (the store's default cap, 5 s, alone
         * could use up that time). */
        .backoff_max_ms = 2000,
        .no_etag_check = !cfg->storage_s3_verify_etag,
        .sign_payload = cfg->storage_s3_sign_payload,
        .log = s3_log,
    };
    if (!s3.access_key || !s3.secret_key) {
        snprintf(errstr, n, "storage.url: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
        return -1;
    }
    ctx->os = st_objstore_s3_new(ctx->base, ctx->curl, &s3, errstr, n);
    if (ctx->os)
        gw_log_info("server", "object store: s3 bucket %s%s%s at %s (%s addressing, region %s)",
                    u->bucket, u->prefix[0] ? ", prefix " : "", u->prefix, u->endpoint,
                    u->addressing == GW_S3_VIRTUAL ? "virtual" : "path", u->region);
    return ctx->os ? 0 : -1;
}

/* The metadata store of metadata.url. */
static int open_meta(run_ctx_t *ctx, char *errstr, size_t n)
{
    const gw_config_t *cfg = ctx->cfg;
    const gw_metadata_url_t *u = &cfg->metadata_url;
    if (u->kind == GW_METADATA_SQLITE) {
        if (mkdirs_parent(u->path, errstr, n) != 0)
            return -1;
        ctx->meta = st_meta_sqlite_new(ctx->base, u->path, errstr, n);
        if (ctx->meta)
            gw_log_info("server", "metadata store: SQLite %s", u->path);
        return ctx->meta ? 0 : -1;
    }
    const char *eps[GW_ETCD_ENDPOINTS_MAX];
    for (int i = 0; i < u->nendpoints; i++)
        eps[i] = u->endpoints[i];
    const char *password = getenv("NUTHATCH_ETCD_PASSWORD");
    st_etcd_cfg_t ecfg = {
        .endpoints = eps,
        .nendpoints = (size_t)u->nendpoints,
        .prefix = u->prefix,
        .user = cfg->metadata_etcd_user[0] ? cfg->metadata_etcd_user : NULL,
        .password = cfg->metadata_etcd_user[0] ? password : NULL,
        .timeout_ms = cfg->metadata_etcd_request_timeout_ms,
        .connect_timeout_ms = cfg->metadata_etcd_connect_timeout_ms,
    };
    ctx->meta = st_meta_etcd_new(ctx->base, ctx->curl, &ecfg, errstr, n);
    if (ctx->meta)
        gw_log_info("server", "metadata store: etcd %s (%d endpoint%s)%s%s%s%s", u->endpoints[0],
                    u->nendpoints, u->nendpoints == 1 ? "" : "s", u->prefix[0] ? ", prefix " : "",
                    u->prefix, ecfg.user ? ", user " : "", ecfg.user ? ecfg.user : "");
    return ctx->meta ? 0 : -1;
}

/* One gateway per data.dir: a second one on the same directory would share
 * the SQLite file and the object directory's prepared files (and take the
 * fence from the first at every start).  The lock is the kernel's: it goes
 * with the process however that ends.  0 or -1 with @errstr. */
static int lock_data_dir(run_ctx_t *ctx, const char *dir, char *errstr, size_t n)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errstr, n, "data.dir %.400s: %s", dir, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            snprintf(errstr, n, "data.dir %.400s is in use by another nuthatch process", dir);
        else
            snprintf(errstr, n, "data.dir %.400s: cannot lock it: %s", dir, strerror(e));
        return -1;
    }
    ctx->dir_lock = fd;
    return 0;
}

/* Make the stores, bind the listener and start the first start-up try; 0
 * or -1 with @errstr. */
static int run_open(run_ctx_t *ctx, char *errstr, size_t n)
{
    const gw_config_t *cfg = ctx->cfg;
    bool local =
        cfg->storage_url.kind == GW_STORAGE_DIR || cfg->metadata_url.kind == GW_METADATA_SQLITE;
    bool remote =
        cfg->storage_url.kind == GW_STORAGE_S3 || cfg->metadata_url.kind == GW_METADATA_ETCD;
    /* data.dir is created only when a store lives on local disk: with S3
     * and etcd nothing is written there. */
    if (local && (mkdirs(cfg->data_dir, errstr, n) != 0 ||
                  lock_data_dir(ctx, cfg->data_dir, errstr, n) != 0))
        return -1;
    if (remote && !(ctx->curl = st_curl_new(ctx->base))) {
        snprintf(errstr, n, "cannot set up the HTTP client (libcurl)");
        return -1;
    }
    if (open_objstore(ctx, errstr, n) != 0 || open_meta(ctx, errstr, n) != 0)
        return -1;
    /* Every store operation is counted and timed (gw_metrics.h). */
    ctx->metrics = gw_metrics_new(ctx->base);
    ctx->os_raw = ctx->os;
    ctx->meta_raw = ctx->meta;
    ctx->os = ctx->metrics ? gw_metrics_wrap_objstore(ctx->metrics, ctx->os) : NULL;
    ctx->meta = ctx->metrics ? gw_metrics_wrap_meta(ctx->metrics, ctx->meta) : NULL;
    if (!ctx->os || !ctx->meta) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    ctx->srv = gw_server_new(ctx->base, cfg, NULL, errstr, n);
    if (!ctx->srv)
        return -1;
    ctx->srv->os = ctx->os;
    ctx->srv->meta = ctx->meta;
    ctx->srv->metrics = ctx->metrics;
    gw_metrics_set_server(ctx->metrics, ctx->srv);
    gw_metrics_set_stores(ctx->metrics, ctx->os, ctx->meta);
    if (cfg->metrics_listen[0] &&
        gw_metrics_start(ctx->metrics, cfg->metrics_listen, errstr, n) != 0)
        return -1;
    ctx->give_up_ms = now_ms() + cfg->startup_timeout_ms;
    start_try(ctx);
    return 0;
}

int gw_server_run(const gw_config_t *cfg)
{
    /* Storage's worker threads post completions to the loop. */
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an EPIPE, not a death */
    run_ctx_t ctx = {.cfg = cfg, .dir_lock = -1};
    char errstr[512] = "";
    ctx.base = event_base_new();
    if (!ctx.base) {
        gw_log_error("server", "cannot create the event loop");
        return 1;
    }
    ctx.sigterm = evsignal_new(ctx.base, SIGTERM, signal_cb, &ctx);
    ctx.sigint = evsignal_new(ctx.base, SIGINT, signal_cb, &ctx);
    ctx.deadline = evtimer_new(ctx.base, deadline_cb, &ctx);
    ctx.retry = evtimer_new(ctx.base, retry_cb, &ctx);
    evsignal_add(ctx.sigterm, NULL);
    evsignal_add(ctx.sigint, NULL);
    if (run_open(&ctx, errstr, sizeof errstr) != 0) {
        gw_log_error("server", "%s", errstr);
        ctx.status = 1;
    } else if (ctx.status == 0) {
        event_base_dispatch(ctx.base);
    }
    st_compactor_free(ctx.compactor);
    if (ctx.srv) {
        ctx.srv->cluster = NULL;
        ctx.srv->leaders = NULL;
    }
    gw_leaders_free(ctx.leaders); /* likewise */
    gw_cluster_free(ctx.cluster); /* its operations in flight end with the store */
    gw_metrics_set_server(ctx.metrics, NULL);
    gw_server_free(ctx.srv);
    st_log_free(ctx.log);
    st_log_free(ctx.old_log);
    bool idle = ctx.clean || ctx.status != 0 || !ctx.stopping;
    if (idle) {
        /* Nothing in flight any more: the stores can finish and go. */
        st_meta_free(ctx.meta);
        st_objstore_free(ctx.os);
        st_curl_free(ctx.curl);
        gw_metrics_free(ctx.metrics); /* after the stores: their last callbacks count */
        if (ctx.dir_lock >= 0)
            close(ctx.dir_lock);
    }
    event_free(ctx.sigterm);
    event_free(ctx.sigint);
    event_free(ctx.deadline);
    event_free(ctx.retry);
    if (idle)
        event_base_free(ctx.base);
    return ctx.status;
}
