/*
 * st_meta_etcd_int.h: internals shared by the two halves of the etcd
 * metadata backend -- st_meta_etcd.c (the vtable, the op queue, endpoints
 * and failover, authentication, delivery) and st_meta_etcd_watch.c (watch
 * streams).
 *
 * Ownership: the store owns its requests, watches and their transfers.
 * Threading: everything on the loop thread.
 */
#ifndef ST_META_ETCD_INT_H
#define ST_META_ETCD_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "st_curl.h"
#include "st_etcd_json.h"
#include "st_meta.h"

struct event;

typedef struct st_etcd_req st_etcd_req_t;

typedef struct st_etcd {
    st_meta_t meta;                /* must be first: the vtable */
    struct event_base *base;       /* borrowed */
    st_curl_t *curl;               /* borrowed */
    char **eps;                    /* owned: endpoint base URLs, no trailing '/' */
    size_t neps;                   /* >= 1 */
    size_t ep;                     /* the endpoint in use: the last one that worked */
    char *prefix;                  /* owned: prepended to every key ("" = none) */
    char *user, *password;         /* owned; user NULL = no authentication */
    long timeout_ms;               /* per HTTP request */
    long connect_timeout_ms;       /* per connection attempt */
    size_t max_body;               /* cap on a response body or watch line, bytes */
    char *token;                   /* owned: the auth token, NULL = none yet */
    uint64_t token_gen;            /* bumped whenever the token changes */
    bool auth_off;                 /* etcd said authentication is not enabled */
    st_etcd_req_t *auth;           /* the authenticate request in flight, or NULL */
    st_etcd_req_t *head, *tail;    /* ops in issue order (completed ones wait at the head) */
    struct st_meta_watch *watches; /* every watch not yet freed */
    struct event *deliver_ev;      /* deferred delivery of completions and watch events */
    unsigned cb_depth;             /* > 0 while one of our callbacks runs */
    bool closing;                  /* free() has started: new ops are refused */
    int64_t term;                  /* the highest raft term an answer carried */
    struct event *leader_ev;       /* the leader watch's tick (st_meta_etcd.c) */
    CURL *status_easy;             /* owned: its status request */
    struct curl_slist *status_hdrs;
    bool status_running;
    size_t status_ep;
    char status_resp[4096];
    size_t status_len;
    char last_error[256]; /* the last failure, for humans */
} st_etcd_t;

/* Record a failure for st_meta_etcd_last_error(). */
void st_etcd__error(st_etcd_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Endpoint @ep failed (connection error, timeout, unavailable): move on to
 * the next one if it is still the one in use, and move the watches too. */
void st_etcd__endpoint_failed(st_etcd_t *e, size_t ep, const char *why);

/* Common options of every transfer: URL @ep + @path, POST @body (borrowed
 * until the transfer ends), the token's Authorization header (into *@hdrs,
 * owned by the caller), timeouts.  -1 when out of memory. */
int st_etcd__easy_setup(st_etcd_t *e, CURL *easy, size_t ep, const char *path, const char *body,
                        struct curl_slist **hdrs, long timeout_ms);

/* Is @code/@msg an authentication problem that a fresh token fixes? */
bool st_etcd__auth_error(const st_etcd_t *e, int code, const char *msg);
/* Drop the token if it is still generation @gen; start authenticating. */
void st_etcd__reauth(st_etcd_t *e, uint64_t gen);
/* True when a request may go out now (a token is there or none is needed);
 * otherwise starts authenticating. */
bool st_etcd__auth_ready(st_etcd_t *e);

/* Schedule the deferred delivery. */
void st_etcd__kick(st_etcd_t *e);
void st_etcd__cb_enter(st_etcd_t *e);
void st_etcd__cb_leave(st_etcd_t *e);

/* Queue the revision probe of a watch from "now" (an internal range in the
 * op queue, so that it orders after every op issued before the watch).
 * -1 when out of memory or closing. */
int st_etcd__probe(st_etcd_t *e, struct st_meta_watch *w);

/* ------------------------------------------------ st_meta_etcd_watch.c */

st_meta_watch_t *st_etcd__watch(st_meta_t *m, const char *prefix, int64_t start_rev, st_watch_cb cb,
                                void *arg);
void st_etcd__watch_cancel(st_meta_t *m, st_meta_watch_t *w);
/* The probe of @w completed: current revision @rev, or @err. */
void st_etcd__watch_probed(st_etcd_t *e, struct st_meta_watch *w, st_err_t err, int64_t rev);
/* Deliver the parsed events and errors of every watch (under cb_enter). */
void st_etcd__watch_deliver(st_etcd_t *e);
/* The endpoint in use changed: reconnect the streams on other endpoints. */
void st_etcd__watch_moved(st_etcd_t *e);
/* Free the cancelled watches that nothing refers to any more. */
void st_etcd__watch_sweep(st_etcd_t *e);
/* Stop every stream and free every watch (store shutting down). */
void st_etcd__watch_free_all(st_etcd_t *e);

#endif
