/*
 * gw_server.h: one gateway -- the listener, the set of client connections,
 * the receive budget shared by them, graceful shutdown, and the process's
 * run path (object store, metadata store, log, signals).
 *
 * Everything a connection or a handler needs hangs off gw_server_t; there is
 * no mutable global state (STYLE §9), so one process can run several
 * servers (tests do).
 *
 * Ownership: gw_server_new() borrows the configuration, the event base and
 * the log, which must outlive the server.  The server owns its listener and
 * its connections.
 * Threading: every function runs on the event-loop thread of @base.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"
#include "st_log.h"

struct event_base;
struct event;
struct evconnlistener;

typedef struct gw_conn gw_conn_t;
typedef struct gw_cluster gw_cluster_t;
typedef struct gw_coord gw_coord_t;
typedef struct gw_metrics gw_metrics_t;

/* Requests one connection may have in flight (read, not yet answered)
 * before it stops reading: the backpressure of STYLE §11.  Deep enough that a
 * client pipelining small produce requests (librdkafka with linger.ms=0
 * sends one every few records) is not held back while a flush is slow: at
 * 64, one 25 ms flush stopped such a client for the length of the backlog.
 * Memory stays bounded by the receive budget, which every request in flight
 * holds GW_REQ_COST of until it is answered. */
#define GW_CONN_MAX_INFLIGHT 1024
/* Receive budget a request holds from its read to its response, besides its
 * frame: its decoded form, state and response outlive the frame. */
#define GW_REQ_COST 4096
/* Bytes of responses queued on one connection above which it stops reading
 * new requests until the client catches up. */
#define GW_CONN_MAX_OUTPUT (64u << 20)

/* Counters only; read by tests (and, later, metrics). */
typedef struct gw_stats {
    uint64_t conns_accepted; /* connections accepted */
    uint64_t conns_refused;  /* connections closed at once: max.connections reached */
    uint64_t requests;       /* requests decoded and dispatched */
    uint64_t bad_frames;     /* connections closed for a bad length, timeout or decode error */
    uint64_t produce_waits;  /* times a connection stopped reading: write buffer full */
    uint64_t resp_referred;  /* response bytes queued by reference to kept buffers, not copied */
} gw_stats_t;

typedef struct gw_server {
    const gw_config_t *cfg;          /* borrowed; frozen after gw_config_load() */
    gw_config_t defaults;            /* every key at its default (for DescribeConfigs) */
    struct event_base *base;         /* borrowed */
    st_log_t *log;                   /* borrowed; topics, partitions, offsets */
    st_objstore_t *os;               /* borrowed, may be NULL (tests): the object store */
    st_meta_t *meta;                 /* borrowed, may be NULL (tests): the metadata store */
    gw_cluster_t *cluster;           /* borrowed, may be NULL (tests): the live nodes
                                        (gw_cluster.h); NULL = this node alone */
    struct gw_leaders *leaders;      /* borrowed, may be NULL: the partitions' leader
                                        records (gw_leaders.h); NULL = none read */
    gw_coord_t *groups;              /* owned: the consumer-group coordinator (gw_group.h) */
    struct evconnlistener *listener; /* owned; NULL once stopped */
    int port;                        /* TCP port actually bound (cfg may say 0) */
    gw_conn_t *conns;                /* every connection not yet freed (closed ones wait
                                        for their pending storage callbacks) */
    int32_t nconns_open;             /* connections whose socket is open; <= max.connections */
    uint64_t next_conn_id;           /* id of the next accepted connection, from 1 */
    int max_inflight;                /* per-connection cap, GW_CONN_MAX_INFLIGHT (tests lower it) */
    int64_t recv_reserved;           /* bytes reserved for frames being received or held by
                                        requests in flight; <= request.receive.budget.bytes */
    gw_conn_t *budget_head;          /* connections waiting for receive budget, FIFO */
    gw_conn_t *budget_tail;
    bool stopping;                 /* gw_server_stop() called: no new connections */
    void (*stopped_cb)(void *arg); /* called once every connection is freed */
    void *stopped_arg;
    struct event *stopped_ev; /* defers stopped_cb out of the freeing call */
    gw_stats_t stats;
    gw_metrics_t *metrics; /* borrowed, may be NULL: counts requests and bytes */
} gw_server_t;

/**
 * Create a server on @base and bind its listener (cfg->listeners: a host,
 * an IPv4 or IPv6 literal, or "" for every interface; port 0 = any free
 * port, see gw_server_port()).  Accepting starts with gw_server_start().
 * @param cfg, base, log  borrowed; must outlive the server.
 * @returns owned (gw_server_free), or NULL with a reason in @errstr.
 * @thread loop
 */
gw_server_t *gw_server_new(struct event_base *base, const gw_config_t *cfg, st_log_t *log,
                           char *errstr, size_t errstr_size);

/* Start accepting connections.  @thread loop */
void gw_server_start(gw_server_t *srv);

/* The TCP port the listener is bound to. */
int gw_server_port(const gw_server_t *srv);

/**
 * Graceful stop: close the listener, stop reading new requests, answer the
 * requests in flight (long-poll fetches are answered at once), close each
 * connection once its responses are written, and call @cb(@arg) from the
 * loop when every connection is gone.  The log is left open.
 * @thread loop
 */
void gw_server_stop(gw_server_t *srv, void (*cb)(void *arg), void *arg);

/* Close every connection at once and free the server.  Requests still
 * waiting for storage are abandoned: call only after gw_server_stop()
 * completed, or after the log was freed.  NULL is a no-op.  @thread loop */
void gw_server_free(gw_server_t *srv);

/**
 * The process's run path: make the object store of storage.url (a directory,
 * or S3) and the metadata store of metadata.url (SQLite, or etcd) -- with one
 * HTTP client (st_curl) shared by the remote ones, and data.dir created only
 * when a store lives on local disk -- bind the listener, check that the
 * bucket can be listed (S3), open the log, then serve until SIGTERM or
 * SIGINT; then stop gracefully (in-flight requests finish, the log flushes
 * what it holds) within shutdown.timeout.ms.  Stores that do not answer at
 * start-up are tried again for startup.timeout.ms; a refusal (a missing
 * bucket, rejected credentials, another cluster's metadata) fails at once.
 * @param cfg  borrowed.
 * @returns the process exit status: 0 after a signal, 1 when start-up failed.
 * @thread main (creates and runs its own event loop)
 */
int gw_server_run(const gw_config_t *cfg);

/* ---- internal, for gw_conn.c ---- */

/* Budget a frame of @frame_len bytes reserves: the frame plus GW_REQ_COST
 * (less when the whole budget is smaller than that). */
int64_t gw_server__frame_cost(const gw_server_t *srv, int64_t frame_len);
/* Reserve @n bytes of the receive budget; false when they do not fit. */
bool gw_server__budget_reserve(gw_server_t *srv, int64_t n);
/* Return @n bytes to the budget and wake connections waiting for it. */
void gw_server__budget_release(gw_server_t *srv, int64_t n);
/* Queue @conn until budget frees (it has stopped reading). */
void gw_server__budget_wait(gw_server_t *srv, gw_conn_t *conn);
/* Remove @conn from the budget queue if it is there. */
void gw_server__budget_unwait(gw_server_t *srv, gw_conn_t *conn);
/* @conn was freed: unlink it, and finish a stop when it was the last. */
void gw_server__conn_gone(gw_server_t *srv, gw_conn_t *conn);

#endif
