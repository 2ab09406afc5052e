/*
 * st_curl.h: libcurl's multi interface driven by the libevent loop -- the
 * one piece of glue the S3 object store and the etcd metadata store share,
 * so that no HTTP request ever blocks the loop.
 *
 * Ownership: the caller owns each easy handle and everything set on it
 * (buffers, header lists) until its done callback has run or it was
 * cancelled; then it may reuse or free it.  Connections are cached by the
 * multi handle and reused across transfers.
 * Threading: everything on the loop thread.  Callbacks (the done callback
 * and the easy handle's own read/write/header functions) run from the loop,
 * never from inside st_curl_start().
 */
#ifndef ST_CURL_H
#define ST_CURL_H

#include <curl/curl.h>

struct event_base;

typedef struct st_curl st_curl_t;

/* A transfer finished: @rc is curl's result (CURLE_OK also for HTTP error
 * statuses; read CURLINFO_RESPONSE_CODE). */
typedef void (*st_curl_done_cb)(CURLcode rc, CURL *easy, void *arg);

/* @returns owned (st_curl_free), or NULL.  Calls curl_global_init once. */
st_curl_t *st_curl_new(struct event_base *base);

/* Abort every transfer still running (their callbacks are not called) and
 * free the multi handle.  Not from inside one of its callbacks. */
void st_curl_free(st_curl_t *c);

/* Start @easy; @done runs once when it ends.  @returns 0, or -1 (nothing
 * started, no callback). */
int st_curl_start(st_curl_t *c, CURL *easy, st_curl_done_cb done, void *arg);

/* Abort a started transfer: its done callback will not run.  Safe to call
 * from the easy handle's own callbacks only via a deferred event, not
 * directly (curl forbids removing a handle from inside its callbacks). */
void st_curl_cancel(st_curl_t *c, CURL *easy);

/* Transfers started and not yet finished or cancelled. */
unsigned st_curl_running(const st_curl_t *c);

#endif
