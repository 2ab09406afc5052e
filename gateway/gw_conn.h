/*
 * gw_conn.h: one client connection -- framing with limits checked before
 * anything is allocated, the receive budget, deadlines, backpressure, the
 * FIFO of requests that keeps responses in request order, and a lifecycle
 * with explicit states and deferred free (STYLE §10, §11).
 *
 * Framing: a 4-byte big-endian length, then the request.  A length below
 * GW_MIN_FRAME or above socket.request.max.bytes closes the connection
 * before anything is allocated.  The bytes of a frame are reserved against
 * the server's receive budget when its length is read (if they do not fit,
 * the connection stops reading until budget frees) and stay reserved until
 * the frame is freed; GW_REQ_COST more stays reserved until the request's
 * response is queued.  A frame must arrive
 * whole within request.partial.timeout.ms of its length; a connection with
 * nothing in flight closes after connections.max.idle.ms.
 *
 * Reading: the socket is read by the connection itself, not by the
 * bufferevent (which writes the responses): libevent 2.1 reads at most
 * 4 KiB per call, three system calls per 4 KiB of a produce.  Between
 * frames up to GW_CONN_READ_AHEAD bytes are read at once into a small
 * buffer (a whole small request, or several pipelined ones, in one call);
 * once a frame's length is known and its bytes reserved, the rest of it is
 * read straight into the frame's own buffer, as much as the socket has in
 * one call.  That buffer starts at twice what has arrived (at least
 * 2 * GW_CONN_READ_AHEAD) and doubles as the bytes come, so a frame that
 * never arrives whole holds little memory whatever length it announced.
 * At most GW_CONN_READ_AHEAD bytes beyond the reserved frames are held per
 * connection.
 *
 * Ownership: the server owns its connections; a connection owns its
 * requests (gw_req_t), and each request owns its frame, its arenas and its
 * encoded response.  Decoded views point into the frame.  A closed
 * connection is freed only once every request it holds has finished (storage
 * callbacks may still hold them), never from inside its own callbacks.
 * Threading: loop thread only.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_codec.h"
#include "kp_msgs.h"
#include "st_log.h"

typedef struct gw_server gw_server_t;
typedef struct gw_conn gw_conn_t;
typedef struct gw_req gw_req_t;

/* Smallest request: ApiKey i16, ApiVersion i16, CorrelationId i32. */
#define GW_MIN_FRAME 8

/* Bytes read at once while no frame is being received (see Reading). */
#define GW_CONN_READ_AHEAD (64u << 10)

/* Most bytes of responses handed to one write (libevent's default: 16 KiB). */
#define GW_CONN_WRITE_MAX (4 << 20)

/* A response of a request that keeps buffers (gw_req_keep) refers to its
 * RECORDS pieces of at least this many bytes instead of copying them; below
 * it, an evbuffer reference of its own costs more than the copy. */
#define GW_RESP_REFER_MIN 4096

typedef enum gw_conn_state {
    GW_CONN_READING,  /* reading and dispatching requests */
    GW_CONN_BLOCKED,  /* not reading: in-flight cap, output backlog or receive budget */
    GW_CONN_DRAINING, /* server stopping: no new requests; close once answered */
    GW_CONN_CLOSED,   /* socket closed; freed once its requests have finished */
    GW_CONN__NUM
} gw_conn_state_t;

/* One request, from its frame to its queued response. */
struct gw_req {
    gw_req_t *next;          /* FIFO link, towards newer requests */
    gw_conn_t *conn;         /* the connection; may be CLOSED while storage works */
    gw_server_t *srv;        /* the server, for handlers and callbacks */
    uint8_t *frame;          /* owned; every decoded view points into it */
    st_buf_t *frame_buf;     /* frame once shared (gw_req_frame_buf), or NULL */
    size_t frame_len;        /* bytes, without the length prefix */
    int64_t reserved;        /* receive budget held, bytes; released with the frame */
    int64_t held;            /* receive budget held until the request is freed */
    kp_arena_t arena;        /* decoded request, limit kp_arena_limit_for(frame_len) */
    kp_arena_t resp_arena;   /* response arrays and strings (handler's scratch) */
    kp_request_header_t hdr; /* decoded header; client_id is a view */
    int16_t api_key;         /* hdr.request_api_key */
    int16_t api_version;     /* hdr.request_api_version */
    void *body;              /* decoded kp_<api>_request_t in arena; NULL if not decoded */
    bool done;               /* answered (or no answer due); may leave the FIFO head */
    uint8_t *resp;           /* owned: length prefix + header + body; NULL = nothing to send */
    size_t resp_len;         /* bytes in resp (the spans' bytes excluded) */
    kp_span_t *resp_spans;   /* owned: bytes sent between resp's, not copied; NULL = none */
    size_t resp_nspans;      /* spans in resp_spans */
    st_buf_t **keep;         /* owned references (gw_req_keep), released with the response */
    size_t nkeep, keep_cap;  /* references in keep, slots allocated */
    bool keep_failed;        /* a gw_req_keep ran out of memory: the response copies */
    int pending;             /* handler's storage operations in flight */
    double start_s;          /* monotonic time its frame was taken, seconds */
    void *hstate;            /* handler state, freed by hfree when the request is freed */
    void (*hfree)(gw_req_t *req);
    void (*cancel)(gw_req_t *req); /* answer now (long poll) when the connection closes or
                                      the server stops; NULL = wait for storage */
};

struct gw_conn {
    gw_server_t *srv;            /* owner */
    gw_conn_t *prev, *next;      /* server's connection list */
    gw_conn_t *budget_next;      /* server's budget queue link */
    bool in_budget_queue;        /* waiting for receive budget */
    st_waiter_t space_wait;      /* waiting for room in the log's write buffer */
    bool in_space_wait;          /* space_wait is registered */
    uint64_t id;                 /* 1, 2, ... in accept order; for logs */
    char peer[64];               /* "host:port" of the client */
    gw_conn_state_t state;       /* change only with gw_conn_set_state() */
    struct bufferevent *bev;     /* owned, writes only (and closes the socket); NULL once closed */
    struct event *read_ev;       /* owned: the socket is readable; added only while READING */
    struct evbuffer *in;         /* owned: bytes read before their frame's length was known */
    int32_t frame_len;           /* length of the frame being received; 0 = none yet */
    bool frame_reserved;         /* gw_server__frame_cost(frame_len) reserved in the budget */
    uint8_t *frame;              /* owned: the frame being received, once reserved; or NULL */
    size_t frame_cap;            /* bytes allocated for it (grows up to frame_len) */
    size_t frame_got;            /* bytes of it received */
    gw_req_t *head, *tail;       /* requests in flight, oldest first */
    int inflight;                /* requests in the FIFO */
    struct event *partial_timer; /* deadline of the frame being received */
    struct event *idle_timer;    /* connections.max.idle.ms with nothing in flight */
    struct event *resume_ev;     /* deferred: read frames already buffered */
    struct event *free_ev;       /* deferred free once CLOSED and the FIFO is empty */
    const char *drain_reason;    /* DRAINING: why it will close (static string) */
};

/**
 * Take the accepted socket @fd and start reading requests.
 * @param peer  borrowed, copied (for logs).
 * @returns the connection (owned by the server), or NULL when out of
 *          memory (the socket is closed).
 * @thread loop
 */
gw_conn_t *gw_conn_new(gw_server_t *srv, int fd, const char *peer);

/* Change state, tracing the transition at debug level. */
void gw_conn_set_state(gw_conn_t *conn, gw_conn_state_t st);

/* Close the socket at once (without flushing output), answer long polls,
 * and free the connection later, once every request has finished.  @reason
 * is logged.  Idempotent.  @thread loop */
void gw_conn_close(gw_conn_t *conn, const char *reason);

/* Stop reading new requests; close after the ones in flight are answered
 * and written.  @reason (a static string) is logged.  @thread loop */
void gw_conn_drain(gw_conn_t *conn, const char *reason);

/* Resume reading (budget freed, in-flight requests answered), from the
 * loop rather than the caller's stack.  @thread loop */
void gw_conn_resume(gw_conn_t *conn);

/* For gw_server_free(): free the CLOSED @conn and every request it still
 * holds without waiting for storage (their callbacks must never run). */
void gw_conn__abandon(gw_conn_t *conn);

/**
 * Answer @req with @body (a kp_<api>_response_t of req->api_key), encoded
 * with the request's version and header version.  Marks the request done
 * and writes every finished response at the head of the FIFO.
 * @param body  borrowed.
 * @returns 0, or -1 when encoding failed (the connection is closed).
 * @thread loop
 */
int gw_req_respond(gw_req_t *req, const void *body);

/* Like gw_req_respond() with a body encoded in a version other than the
 * request's (ApiVersions' v0 answer to a version it does not know). */
int gw_req_respond_version(gw_req_t *req, int16_t version, const void *body);

/**
 * Keep @buf until @req's response has been written to the socket or dropped
 * with its connection, so that the response can refer to its bytes: once a
 * request keeps a buffer, its response's RECORDS pieces of at least
 * GW_RESP_REFER_MIN bytes are sent by reference (evbuffer_add_reference),
 * not copied -- each of them must then lie in a kept buffer.  Out of memory,
 * the response copies everything instead.
 * @param buf  borrowed; the request takes its own reference.
 * @thread loop
 */
void gw_req_keep(gw_req_t *req, st_buf_t *buf);

/* Mark @req done without a response (acks=0 produce). */
void gw_req_finish_silent(gw_req_t *req);

/* True when the request's connection can still receive its answer. */
bool gw_req_conn_open(const gw_req_t *req);

/* Arena allocation for handlers: @n zeroed bytes living as long as @req;
 * aborts on out of memory (the arena has no limit). */
void *gw_req_alloc(gw_req_t *req, size_t n);
/* Copy of @len bytes of @s, NUL-terminated, living as long as @req. */
char *gw_req_strdup(gw_req_t *req, const char *s, size_t len);

/* Free @req's frame (the log keeps the batches it holds of it, see
 * gw_req_frame_buf) and release its receive budget before the request
 * ends, once the handler has copied what it still needs (a produce whose
 * batches the log holds): every view into the frame -- the decoded body's
 * strings and bytes, hdr.client_id -- is invalid afterwards. */
void gw_req_drop_frame(gw_req_t *req);

/* @req's frame as a reference-counted buffer, for the log to keep the
 * batches it holds without copying them (st_part_append_buf); the request
 * keeps one reference, dropped with the frame.  NULL when out of memory. */
st_buf_t *gw_req_frame_buf(gw_req_t *req);

#endif
