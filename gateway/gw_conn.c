/*
 * gw_conn.c: connection lifecycle, framing and the in-order response FIFO.
 * See gw_conn.h for the contract.
 */
#include "gw_conn.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gw_dispatch.h"
#include "gw_metrics.h"
#include "gw_log.h"
#include "gw_server.h"

static const char *const state_names[GW_CONN__NUM] = {"reading", "blocked", "draining", "closed"};

static void conn_read_frames(gw_conn_t *conn);
static void conn_flush(gw_conn_t *conn);

void gw_conn_set_state(gw_conn_t *conn, gw_conn_state_t st)
{
    assert(st >= 0 && st < GW_CONN__NUM);
    if (conn->state != st)
        gw_log_debug("conn", "conn %llu: %s -> %s", (unsigned long long)conn->id,
                     state_names[conn->state], state_names[st]);
    conn->state = st;
}

static void ms_to_tv(int64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* A request taking over the received @frame of @len bytes (on success);
 * the budget reservation moves from the connection to the request. */
static gw_req_t *req_new(gw_conn_t *conn, uint8_t *frame, size_t len)
{
    gw_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->conn = conn;
    req->srv = conn->srv;
    req->frame = frame;
    req->frame_len = len;
    kp_arena_init(&req->arena, kp_arena_limit_for(len));
    kp_arena_init(&req->resp_arena, SIZE_MAX);
    return req;
}

static void free_frame(gw_req_t *req)
{
    if (req->frame_buf)
        st_buf_unref(req->frame_buf); /* frees the frame unless the log holds part of it */
    else
        free(req->frame);
    req->frame_buf = NULL;
    req->frame = NULL;
}

/* The only place a request is freed: after its response was queued (or
 * dropped with its closed connection). */
static void req_free(gw_req_t *req)
{
    if (req->hfree)
        req->hfree(req);
    kp_arena_deinit(&req->arena);
    kp_arena_deinit(&req->resp_arena);
    free_frame(req);
    free(req->resp);
    free(req->resp_spans);
    for (size_t i = 0; i < req->nkeep; i++)
        st_buf_unref(req->keep[i]);
    free(req->keep);
    if (req->reserved + req->held)
        gw_server__budget_release(req->srv, req->reserved + req->held);
    free(req);
}

void *gw_req_alloc(gw_req_t *req, size_t n)
{
    void *p = kp_arena_alloc(&req->resp_arena, n ? n : 1);
    if (!p) {
        gw_log_error("conn", "out of memory allocating %zu bytes for a response", n);
        abort();
    }
    return p;
}

char *gw_req_strdup(gw_req_t *req, const char *s, size_t len)
{
    char *p = gw_req_alloc(req, len + 1);
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void gw_req_drop_frame(gw_req_t *req)
{
    free_frame(req);
    req->frame_len = 0;
    req->hdr.client_id = KP_STR_NULL;
    if (req->reserved)
        gw_server__budget_release(req->srv, req->reserved);
    req->reserved = 0;
}

st_buf_t *gw_req_frame_buf(gw_req_t *req)
{
    if (!req->frame_buf && req->frame)
        req->frame_buf = st_buf_wrap(req->frame, req->frame_len);
    return req->frame_buf;
}

void gw_req_keep(gw_req_t *req, st_buf_t *buf)
{
    if (req->keep_failed || (req->nkeep > 0 && req->keep[req->nkeep - 1] == buf))
        return; /* copying anyway, or kept already (slices of one buffer come together) */
    if (req->nkeep == req->keep_cap) {
        size_t cap = req->keep_cap ? 2 * req->keep_cap : 8;
        st_buf_t **nk = realloc(req->keep, cap * sizeof *nk);
        if (!nk) {
            req->keep_failed = true;
            return;
        }
        req->keep = nk;
        req->keep_cap = cap;
    }
    req->keep[req->nkeep++] = st_buf_ref(buf);
}

bool gw_req_conn_open(const gw_req_t *req)
{
    return req->conn->state != GW_CONN_CLOSED;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void req_done(gw_req_t *req)
{
    assert(!req->done);
    req->done = true;
    gw_metrics_request(req->srv->metrics, req->api_key, mono_s() - req->start_s);
    conn_flush(req->conn);
}

void gw_req_finish_silent(gw_req_t *req)
{
    req_done(req);
}

int gw_req_respond_version(gw_req_t *req, int16_t version, const void *body)
{
    const kp_api_desc_t *d = kp_api_desc(req->api_key);
    assert(d);
    if (req->conn->state == GW_CONN_CLOSED) {
        req_done(req); /* nobody to answer */
        return 0;
    }
    kp_writer_t w;
    kp_writer_init(&w, 256);
    if (req->nkeep > 0 && !req->keep_failed)
        kp_writer_refer(&w, GW_RESP_REFER_MIN);
    size_t pos = kp_writer_reserve_i32(&w); /* frame length, patched below */
    kp_response_header_t h;
    kp_response_header_init(&h);
    h.correlation_id = req->hdr.correlation_id;
    /* ApiVersions' response header is v0 whatever the version (DESIGN §8). */
    kp_response_header_encode(&w, kp_response_header_version(req->api_key, version), &h);
    d->response.encode(&w, version, body);
    if (w.err != KP_ENCODE_OK || kp_writer_size(&w) - 4 > INT32_MAX) {
        gw_log_error("conn", "conn %llu: cannot encode %s v%d response (error %d)",
                     (unsigned long long)req->conn->id, d->name, version, (int)w.err);
        kp_writer_deinit(&w);
        gw_conn_close(req->conn, "response encoding failed");
        req_done(req);
        return -1;
    }
    kp_writer_patch_i32(&w, pos, (int32_t)(kp_writer_size(&w) - 4));
    req->resp_spans = kp_writer_take_spans(&w, &req->resp_nspans);
    req->resp = kp_writer_take(&w, &req->resp_len);
    req_done(req);
    return 0;
}

int gw_req_respond(gw_req_t *req, const void *body)
{
    return gw_req_respond_version(req, req->api_version, body);
}

static void free_resp_cb(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* A response with spans on its way out: freed when libevent has released
 * the last of its pieces (written, or dropped with the connection). */
typedef struct resp_out {
    uint8_t *buf;    /* owned: the encoded response without the spans' bytes */
    st_buf_t **keep; /* owned references: the spans' bytes lie in these */
    size_t nkeep;    /* references in keep */
    size_t pieces;   /* evbuffer pieces still referring to buf or keep, + 1 while queueing */
} resp_out_t;

static void piece_done_cb(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    resp_out_t *o = arg;
    if (--o->pieces > 0)
        return;
    for (size_t i = 0; i < o->nkeep; i++)
        st_buf_unref(o->keep[i]);
    free(o->keep);
    free(o->buf);
    free(o);
}

static int add_piece(struct evbuffer *out, resp_out_t *o, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    o->pieces++;
    if (evbuffer_add_reference(out, p, n, piece_done_cb, o) == 0)
        return 0;
    o->pieces--; /* libevent does not call the cleanup of a piece it refused */
    return -1;
}

/* Queue @req's response on @out without copying anything: its buffer alone,
 * or with spans the pieces in order -- buffer part, span, buffer part, ...
 * -- whose bytes (the buffer and the kept references) move to a resp_out_t.
 * Returns 0, or -1 when a piece was refused (the output is then torn). */
static int send_resp(gw_conn_t *conn, struct evbuffer *out, gw_req_t *req)
{
    size_t referred = 0;
    for (size_t i = 0; i < req->resp_nspans; i++)
        referred += req->resp_spans[i].len;
    gw_metrics_bytes(conn->srv->metrics, 0, req->resp_len + referred);
    if (req->resp_nspans == 0) {
        if (evbuffer_add_reference(out, req->resp, req->resp_len, free_resp_cb, NULL) != 0)
            return -1;
        req->resp = NULL;
        return 0;
    }
    resp_out_t *o = malloc(sizeof *o);
    if (!o)
        return -1;
    *o = (resp_out_t){.buf = req->resp, .keep = req->keep, .nkeep = req->nkeep, .pieces = 1};
    req->resp = NULL;
    req->keep = NULL;
    req->nkeep = req->keep_cap = 0;
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i < req->resp_nspans && rc == 0; i++) {
        const kp_span_t *sp = &req->resp_spans[i];
        rc = add_piece(out, o, o->buf + at, sp->pos - at);
        if (rc == 0)
            rc = add_piece(out, o, sp->ptr, sp->len);
        at = sp->pos;
    }
    if (rc == 0)
        rc = add_piece(out, o, o->buf + at, req->resp_len - at);
    piece_done_cb(NULL, 0, o); /* the hold taken while queueing */
    if (rc == 0)
        conn->srv->stats.resp_referred += referred;
    return rc;
}

/* Write the finished responses at the head of the FIFO, in order, and free
 * their requests; then resume, drain or free the connection as due. */
static void conn_flush(gw_conn_t *conn)
{
    struct evbuffer *out = conn->bev ? bufferevent_get_output(conn->bev) : NULL;
    bool torn = false;
    while (conn->head && conn->head->done) {
        gw_req_t *req = conn->head;
        conn->head = req->next;
        if (!conn->head)
            conn->tail = NULL;
        conn->inflight--;
        /* The evbuffer takes the response without copying it. */
        if (out && req->resp && send_resp(conn, out, req) != 0) {
            torn = true; /* a response is missing or cut: nothing after it makes sense */
            out = NULL;
        }
        req_free(req);
    }
    if (torn) {
        gw_log_error("conn", "conn %llu: out of memory queueing a response",
                     (unsigned long long)conn->id);
        gw_conn_close(conn, "out of memory"); /* flushes again */
        return;
    }
    switch (conn->state) {
    case GW_CONN_CLOSED:
        if (!conn->head)
            event_active(conn->free_ev, 0, 0);
        break;
    case GW_CONN_BLOCKED:
        if (!conn->in_budget_queue && !conn->in_space_wait)
            gw_conn_resume(conn);
        break;
    case GW_CONN_DRAINING:
        if (!conn->head && evbuffer_get_length(out) == 0)
            gw_conn_close(conn, conn->drain_reason);
        break;
    case GW_CONN_READING:
        if (!conn->head && conn->frame_len == 0 && conn->srv->cfg->connections_max_idle_ms > 0) {
            struct timeval tv;
            ms_to_tv(conn->srv->cfg->connections_max_idle_ms, &tv);
            evtimer_add(conn->idle_timer, &tv);
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

static void conn_block(gw_conn_t *conn)
{
    gw_conn_set_state(conn, GW_CONN_BLOCKED);
    event_del(conn->read_ev);
}

/* Read the next frame's length.  Returns false when more bytes are needed
 * or the connection was closed. */
static bool read_length(gw_conn_t *conn)
{
    uint8_t lenbuf[4];
    if (evbuffer_copyout(conn->in, lenbuf, 4) < 4)
        return false;
    evbuffer_drain(conn->in, 4);
    int32_t len = (int32_t)kp_be32(lenbuf);
    if (len < GW_MIN_FRAME || len > conn->srv->cfg->socket_request_max_bytes) {
        conn->srv->stats.bad_frames++;
        gw_log_info("conn", "conn %llu from %s: frame length %d outside [%d, %d], closing",
                    (unsigned long long)conn->id, conn->peer, len, GW_MIN_FRAME,
                    conn->srv->cfg->socket_request_max_bytes);
        gw_conn_close(conn, "bad frame length");
        return false;
    }
    conn->frame_len = len;
    evtimer_del(conn->idle_timer);
    return true;
}

/* Make room for at least @want bytes of the frame being received (never
 * more than its length); false when memory ran out (then closed). */
static bool frame_grow(gw_conn_t *conn, size_t want)
{
    if (want > (size_t)conn->frame_len)
        want = (size_t)conn->frame_len;
    if (conn->frame && want <= conn->frame_cap)
        return true;
    uint8_t *p = realloc(conn->frame, want);
    if (!p) {
        gw_log_error("conn", "conn %llu: out of memory for a %d-byte request",
                     (unsigned long long)conn->id, conn->frame_len);
        gw_conn_close(conn, "out of memory");
        return false;
    }
    conn->frame = p;
    conn->frame_cap = want;
    return true;
}

/* Reserve the frame's bytes; false (and queued for budget) when they do
 * not fit. */
static bool reserve_frame(gw_conn_t *conn)
{
    if (!gw_server__budget_reserve(conn->srv, gw_server__frame_cost(conn->srv, conn->frame_len))) {
        gw_log_debug("conn", "conn %llu: receive budget exhausted, waiting for %d bytes",
                     (unsigned long long)conn->id, conn->frame_len);
        conn_block(conn);
        gw_server__budget_wait(conn->srv, conn);
        return false;
    }
    conn->frame_reserved = true;
    /* What was read ahead of the length, then the rest straight from the
     * socket (conn_read) into a buffer that grows as it comes. */
    size_t have = evbuffer_get_length(conn->in);
    if (have > (size_t)conn->frame_len)
        have = (size_t)conn->frame_len;
    if (!frame_grow(conn, 2 * (have > GW_CONN_READ_AHEAD ? have : GW_CONN_READ_AHEAD)))
        return false;
    conn->frame_got = (size_t)evbuffer_remove(conn->in, conn->frame, have);
    struct timeval tv;
    ms_to_tv(conn->srv->cfg->request_partial_timeout_ms, &tv);
    evtimer_add(conn->partial_timer, &tv);
    return true;
}

static void space_cb(st_waiter_t *w, void *arg)
{
    (void)w;
    gw_conn_t *conn = arg;
    conn->in_space_wait = false;
    gw_conn_resume(conn);
}

/* Back-pressure before errors: while the log's write buffer is full, a
 * connection whose next request is a Produce stops reading until there is
 * room.  The frame itself stays buffered (its bytes are already in the
 * receive budget).  Returns true when the connection now waits. */
static bool produce_must_wait(gw_conn_t *conn)
{
    if (!st_log_buffer_full(conn->srv->log) || kp_be16(conn->frame) != KP_API_PRODUCE)
        return false;
    evtimer_del(conn->partial_timer); /* the frame is complete */
    gw_log_debug("conn", "conn %llu: write buffer full (%zu bytes), produce waits",
                 (unsigned long long)conn->id, st_log_buffered(conn->srv->log));
    conn_block(conn);
    conn->space_wait.fn = space_cb;
    conn->space_wait.arg = conn;
    conn->in_space_wait = true;
    st_log_wait_space(conn->srv->log, &conn->space_wait);
    conn->srv->stats.produce_waits++;
    return true;
}

/* The whole frame is here: hand it to a request and dispatch it. */
static void take_frame(gw_conn_t *conn)
{
    size_t len = (size_t)conn->frame_len;
    evtimer_del(conn->partial_timer);
    gw_req_t *req = req_new(conn, conn->frame, len);
    if (!req) {
        gw_log_error("conn", "conn %llu: out of memory for a %zu-byte request",
                     (unsigned long long)conn->id, len);
        gw_conn_close(conn, "out of memory");
        return;
    }
    conn->frame = NULL;
    conn->frame_cap = conn->frame_got = 0;
    req->start_s = mono_s();
    gw_metrics_bytes(conn->srv->metrics, len + 4, 0);
    req->reserved = conn->frame_len;
    req->held = gw_server__frame_cost(conn->srv, conn->frame_len) - conn->frame_len;
    conn->frame_reserved = false;
    conn->frame_len = 0;
    if (conn->tail)
        conn->tail->next = req;
    else
        conn->head = req;
    conn->tail = req;
    conn->inflight++;
    conn->srv->stats.requests++;
    gw_dispatch(req);
}

/* Read and dispatch every whole frame received, within the limits. */
static void conn_read_frames(gw_conn_t *conn)
{
    while (conn->state == GW_CONN_READING) {
        struct evbuffer *out = bufferevent_get_output(conn->bev);
        if (conn->inflight >= conn->srv->max_inflight ||
            evbuffer_get_length(out) >= GW_CONN_MAX_OUTPUT) {
            conn_block(conn); /* resumed by conn_flush() / the write callback */
            return;
        }
        if (conn->frame_len == 0 && !read_length(conn))
            return;
        if (!conn->frame_reserved && !reserve_frame(conn))
            return;
        if (conn->frame_got < (size_t)conn->frame_len)
            return; /* conn_read() reads the rest when it is here */
        if (produce_must_wait(conn))
            return;
        take_frame(conn);
    }
}

/* One read from the socket: the rest of the frame being received straight
 * into it, else up to GW_CONN_READ_AHEAD bytes into conn->in.  Then the
 * frames it completed are dispatched. */
static void conn_read(gw_conn_t *conn)
{
    ssize_t n;
    int fd = bufferevent_getfd(conn->bev);
    if (conn->frame && conn->frame_got == (size_t)conn->frame_len) {
        /* Whole, held by a wait just ended (produce_must_wait); resume_cb
         * is due too.  A read of 0 bytes would look like the end. */
        conn_read_frames(conn);
        return;
    }
    if (conn->frame) {
        if (conn->frame_got == conn->frame_cap && !frame_grow(conn, 2 * conn->frame_cap))
            return; /* full, not whole: doubled, or closed */
        n = read(fd, conn->frame + conn->frame_got, conn->frame_cap - conn->frame_got);
        if (n > 0)
            conn->frame_got += (size_t)n;
    } else {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(conn->in, GW_CONN_READ_AHEAD, &v, 1) != 1) {
            gw_log_error("conn", "conn %llu: out of memory for its receive buffer",
                         (unsigned long long)conn->id);
            gw_conn_close(conn, "out of memory");
            return;
        }
        n = read(fd, v.iov_base, v.iov_len < GW_CONN_READ_AHEAD ? v.iov_len : GW_CONN_READ_AHEAD);
        v.iov_len = n > 0 ? (size_t)n : 0;
        evbuffer_commit_space(conn->in, &v, 1);
    }
    if (n == 0) {
        gw_conn_close(conn, "closed by client");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            gw_conn_close(conn, "socket error");
        return;
    }
    conn_read_frames(conn);
}

/* ------------------------------------------------------------------ */
/* libevent callbacks                                                  */
/* ------------------------------------------------------------------ */

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *conn = arg;
    if (conn->state == GW_CONN_READING)
        conn_read(conn);
}

static void writecb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    gw_conn_t *conn = arg;
    /* The output drained: a connection blocked on its backlog reads again,
     * a draining one closes once it has nothing left. */
    if (conn->state == GW_CONN_BLOCKED && !conn->in_budget_queue && !conn->in_space_wait)
        gw_conn_resume(conn);
    else if (conn->state == GW_CONN_DRAINING && !conn->head)
        gw_conn_close(conn, conn->drain_reason);
}

static void eventcb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    gw_conn_t *conn = arg;
    if (what & BEV_EVENT_EOF)
        gw_conn_close(conn, "closed by client");
    else if (what & BEV_EVENT_ERROR)
        gw_conn_close(conn, "socket error");
}

static void partial_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *conn = arg;
    conn->srv->stats.bad_frames++;
    gw_log_info("conn", "conn %llu from %s: frame of %d bytes not received within %d ms",
                (unsigned long long)conn->id, conn->peer, conn->frame_len,
                conn->srv->cfg->request_partial_timeout_ms);
    gw_conn_close(conn, "partial frame timeout");
}

static void idle_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *conn = arg;
    if (conn->head || conn->frame_len)
        return; /* not idle after all */
    gw_conn_close(conn, "idle");
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *conn = arg;
    if (conn->state == GW_CONN_READING)
        conn_read_frames(conn);
}

static void conn_free(gw_conn_t *conn)
{
    assert(conn->state == GW_CONN_CLOSED && !conn->head);
    event_free(conn->partial_timer);
    event_free(conn->idle_timer);
    event_free(conn->resume_ev);
    event_free(conn->free_ev);
    gw_server__conn_gone(conn->srv, conn);
    free(conn);
}

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_conn_t *conn = arg;
    if (conn->state == GW_CONN_CLOSED && !conn->head)
        conn_free(conn);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

gw_conn_t *gw_conn_new(gw_server_t *srv, int fd, const char *peer)
{
    gw_conn_t *conn = calloc(1, sizeof *conn);
    if (!conn) {
        evutil_closesocket(fd);
        return NULL;
    }
    conn->srv = srv;
    conn->id = ++srv->next_conn_id;
    snprintf(conn->peer, sizeof conn->peer, "%s", peer);
    conn->state = GW_CONN_READING;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on non-TCP: fine */
    evutil_make_socket_nonblocking(fd);
    conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    conn->read_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, read_cb, conn);
    conn->in = evbuffer_new();
    conn->partial_timer = evtimer_new(srv->base, partial_timeout_cb, conn);
    conn->idle_timer = evtimer_new(srv->base, idle_timeout_cb, conn);
    conn->resume_ev = event_new(srv->base, -1, 0, resume_cb, conn);
    conn->free_ev = event_new(srv->base, -1, 0, free_cb, conn);
    if (!conn->bev || !conn->read_ev || !conn->in || !conn->partial_timer || !conn->idle_timer ||
        !conn->resume_ev || !conn->free_ev) {
        if (conn->read_ev)
            event_free(conn->read_ev);
        if (conn->in)
            evbuffer_free(conn->in);
        if (conn->bev)
            bufferevent_free(conn->bev);
        else
            evutil_closesocket(fd);
        if (conn->partial_timer)
            event_free(conn->partial_timer);
        if (conn->idle_timer)
            event_free(conn->idle_timer);
        if (conn->resume_ev)
            event_free(conn->resume_ev);
        if (conn->free_ev)
            event_free(conn->free_ev);
        free(conn);
        return NULL;
    }
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    srv->nconns_open++;
    bufferevent_setcb(conn->bev, NULL, writecb, eventcb, conn);
    /* Write fetch responses in large steps: libevent's default is 16 KiB
     * per call; the socket takes what fits in its buffer. */
    bufferevent_set_max_single_write(conn->bev, GW_CONN_WRITE_MAX);
    bufferevent_enable(conn->bev, EV_WRITE);
    event_add(conn->read_ev, NULL);
    if (srv->cfg->connections_max_idle_ms > 0) {
        struct timeval tv;
        ms_to_tv(srv->cfg->connections_max_idle_ms, &tv);
        evtimer_add(conn->idle_timer, &tv);
    }
    gw_log_debug("conn", "conn %llu: accepted from %s", (unsigned long long)conn->id, peer);
    return conn;
}

/* Ask every request that waits on a timer rather than storage to answer
 * now.  An answer may free requests (conn_flush), so start over from the
 * head after each one; cancel is cleared first, so this ends. */
static void cancel_waiting(gw_conn_t *conn)
{
    for (;;) {
        gw_req_t *req = conn->head;
        while (req && (req->done || !req->cancel))
            req = req->next;
        if (!req)
            return;
        void (*cancel)(gw_req_t *) = req->cancel;
        req->cancel = NULL;
        cancel(req);
    }
}

/* Forget the frame being received, if any, and release its budget. */
static void drop_frame(gw_conn_t *conn)
{
    if (conn->frame_reserved) {
        conn->frame_reserved = false;
        gw_server__budget_release(conn->srv, gw_server__frame_cost(conn->srv, conn->frame_len));
    }
    free(conn->frame);
    conn->frame = NULL;
    conn->frame_cap = conn->frame_got = 0;
    conn->frame_len = 0;
}

void gw_conn_close(gw_conn_t *conn, const char *reason)
{
    if (conn->state == GW_CONN_CLOSED)
        return;
    gw_log_debug("conn", "conn %llu from %s: closing: %s", (unsigned long long)conn->id, conn->peer,
                 reason);
    gw_conn_set_state(conn, GW_CONN_CLOSED);
    evtimer_del(conn->partial_timer);
    evtimer_del(conn->idle_timer);
    event_del(conn->resume_ev);
    gw_server__budget_unwait(conn->srv, conn);
    if (conn->in_space_wait) {
        st_log_unwait_space(&conn->space_wait);
        conn->in_space_wait = false;
    }
    drop_frame(conn);
    /* Closing inside the bufferevent's own callback is safe: libevent
     * defers the actual free until the callback returns; read_cb touches
     * nothing of its event after it. */
    event_free(conn->read_ev);
    conn->read_ev = NULL;
    evbuffer_free(conn->in);
    conn->in = NULL;
    bufferevent_free(conn->bev);
    conn->bev = NULL;
    conn->srv->nconns_open--;
    /* Requests on the FIFO keep the connection alive until they finish;
     * answers to a closed connection are dropped in conn_flush(). */
    cancel_waiting(conn);
    conn_flush(conn);
}

void gw_conn_drain(gw_conn_t *conn, const char *reason)
{
    if (conn->state == GW_CONN_CLOSED || conn->state == GW_CONN_DRAINING)
        return;
    conn->drain_reason = reason;
    gw_server__budget_unwait(conn->srv, conn);
    if (conn->in_space_wait) {
        st_log_unwait_space(&conn->space_wait);
        conn->in_space_wait = false;
    }
    drop_frame(conn); /* a frame being received is never read now */
    gw_conn_set_state(conn, GW_CONN_DRAINING);
    event_del(conn->read_ev);
    evtimer_del(conn->idle_timer);
    evtimer_del(conn->partial_timer);
    cancel_waiting(conn);
    if (conn->state == GW_CONN_DRAINING && !conn->head &&
        evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0)
        gw_conn_close(conn, reason);
}

void gw_conn_resume(gw_conn_t *conn)
{
    if (conn->state != GW_CONN_BLOCKED)
        return;
    gw_conn_set_state(conn, GW_CONN_READING);
    event_add(conn->read_ev, NULL);
    event_active(conn->resume_ev, 0, 0);
}

void gw_conn__abandon(gw_conn_t *conn)
{
    assert(conn->state == GW_CONN_CLOSED);
    while (conn->head) {
        gw_req_t *req = conn->head;
        conn->head = req->next;
        req_free(req);
    }
    conn->tail = NULL;
    conn->inflight = 0;
    conn_free(conn);
}
