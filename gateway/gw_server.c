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
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "gw_conn.h"
#include "gw_log.h"

#define LISTEN_BACKLOG 511

/* ------------------------------------------------------------------ */
/* Receive budget                                                      */
/* ------------------------------------------------------------------ */

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
    while (srv->budget_head && srv->budget_head->frame_len <= avail) {
        gw_conn_t *conn = srv->budget_head;
        avail -= conn->frame_len;
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
    event_free(srv->stopped_ev);
    free(srv);
}

/* ------------------------------------------------------------------ */
/* Run path                                                            */
/* ------------------------------------------------------------------ */

typedef struct run_ctx {
    const gw_config_t *cfg;
    struct event_base *base;
    st_log_t *log;
    gw_server_t *srv;
    struct event *sigterm, *sigint, *deadline;
    int status;    /* exit status */
    bool stopping; /* a signal arrived */
    bool clean;    /* the log closed within the deadline */
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
    struct timeval tv = {(time_t)(ctx->cfg->shutdown_timeout_ms / 1000),
                         (suseconds_t)(ctx->cfg->shutdown_timeout_ms % 1000) * 1000};
    evtimer_add(ctx->deadline, &tv);
    if (ctx->srv)
        gw_server_stop(ctx->srv, drained_cb, ctx);
    else
        event_base_loopbreak(ctx->base); /* still opening: nothing to drain */
}

static void log_opened_cb(st_err_t err, void *arg)
{
    run_ctx_t *ctx = arg;
    if (err != ST_OK) {
        gw_log_error("server", "cannot open the log: %s", st_log_open_error(ctx->log));
        ctx->status = 1;
        event_base_loopbreak(ctx->base);
        return;
    }
    if (ctx->stopping)
        return;
    gw_server_start(ctx->srv);
    const gw_listener_t *l = &ctx->cfg->listeners, *adv = &ctx->cfg->advertised_listeners;
    bool v6 = strchr(l->host, ':') != NULL, adv6 = strchr(adv->host, ':') != NULL;
    gw_log_info("server", "node %d listening on %s%s%s:%d (advertised %s%s%s:%d), cluster %s",
                ctx->cfg->node_id, v6 ? "[" : "", l->host[0] ? l->host : "*", v6 ? "]" : "",
                gw_server_port(ctx->srv), adv6 ? "[" : "", adv->host, adv6 ? "]" : "",
                adv->port ? adv->port : gw_server_port(ctx->srv), st_log_cluster_id(ctx->log));
}

/* Open the stores and the log and bind the listener; 0 or -1 with @errstr. */
static int run_open(run_ctx_t *ctx, st_objstore_t **os, st_meta_t **meta, char *errstr, size_t n)
{
    const gw_config_t *cfg = ctx->cfg;
    if (mkdirs(cfg->data_dir, errstr, n) != 0 || mkdirs(cfg->storage_url.path, errstr, n) != 0 ||
        mkdirs_parent(cfg->metadata_url.path, errstr, n) != 0)
        return -1;
    *os = st_objstore_dir_new(ctx->base, cfg->storage_url.path, 2, errstr, n);
    if (!*os)
        return -1;
    *meta = st_meta_sqlite_new(ctx->base, cfg->metadata_url.path, errstr, n);
    if (!*meta)
        return -1;
    st_log_cfg_t lcfg = {
        .node_id = cfg->node_id,
        .flush_max_bytes = (size_t)cfg->flush_max_bytes,
        .flush_max_inflight = cfg->flush_max_inflight,
        .tail_cache_bytes = (size_t)cfg->tail_cache_bytes,
        .read_cache_bytes = (size_t)cfg->read_cache_bytes,
        .default_partitions = cfg->num_partitions,
        .cluster_id = cfg->cluster_id,
        .write_buffer_bytes = (size_t)cfg->write_buffer_bytes,
    };
    ctx->log = st_log_new(ctx->base, *os, *meta, &lcfg);
    if (!ctx->log) {
        snprintf(errstr, n, "cannot create the log");
        return -1;
    }
    ctx->srv = gw_server_new(ctx->base, cfg, ctx->log, errstr, n);
    if (!ctx->srv)
        return -1;
    ctx->srv->os = *os;
    ctx->srv->meta = *meta;
    if (st_log_open(ctx->log, log_opened_cb, ctx) != 0) {
        snprintf(errstr, n, "cannot start opening the log");
        return -1;
    }
    return 0;
}

int gw_server_run(const gw_config_t *cfg)
{
    /* Storage's worker threads post completions to the loop. */
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an EPIPE, not a death */
    run_ctx_t ctx = {.cfg = cfg};
    st_objstore_t *os = NULL;
    st_meta_t *meta = NULL;
    char errstr[512] = "";
    ctx.base = event_base_new();
    if (!ctx.base) {
        gw_log_error("server", "cannot create the event loop");
        return 1;
    }
    ctx.sigterm = evsignal_new(ctx.base, SIGTERM, signal_cb, &ctx);
    ctx.sigint = evsignal_new(ctx.base, SIGINT, signal_cb, &ctx);
    ctx.deadline = evtimer_new(ctx.base, deadline_cb, &ctx);
    evsignal_add(ctx.sigterm, NULL);
    evsignal_add(ctx.sigint, NULL);
    if (run_open(&ctx, &os, &meta, errstr, sizeof errstr) != 0) {
        gw_log_error("server", "%s", errstr);
        ctx.status = 1;
    } else {
        event_base_dispatch(ctx.base);
    }
    gw_server_free(ctx.srv);
    if (ctx.log)
        st_log_free(ctx.log);
    if (ctx.clean || ctx.status != 0 || !ctx.stopping) {
        /* Nothing in flight any more: the stores can finish and go. */
        st_meta_free(meta);
        st_objstore_free(os);
    }
    event_free(ctx.sigterm);
    event_free(ctx.sigint);
    event_free(ctx.deadline);
    if (ctx.clean || ctx.status != 0 || !ctx.stopping)
        event_base_free(ctx.base);
    return ctx.status;
}
