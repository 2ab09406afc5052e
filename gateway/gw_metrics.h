/*
 * gw_metrics.h: what an operator watches -- Prometheus metrics in the text
 * format at /metrics, /healthz and /readyz, on libevent's HTTP server at
 * metrics.listen -- and the probe of both stores that readiness and the
 * outage and recovery log records come from.
 *
 * Counters are plain integers updated on the loop thread: request counts
 * and latency histograms per API (gw_conn.c), bytes received and sent,
 * every object-store operation and metadata transaction with its latency
 * (through wrappers around the stores that time each call), flush-object
 * sizes; the log's own counters (st_log_stats), buffers, caches, topics,
 * partitions and connections are read when /metrics is asked for.
 *
 * /healthz answers 200 while the process serves HTTP.  /readyz answers 200
 * when the log is open and the last probe of both stores succeeded and
 * none has been unanswered for more than GW_METRICS_PROBE_TIMEOUT_MS;
 * 503 otherwise, with the reason in the body.  Every GW_METRICS_PROBE_MS
 * the probe reads one metadata key and lists one object-store key.
 *
 * Ownership: gw_metrics_new() borrows the event base; the wrappers take
 * their inner stores (freed with them).  The metrics must outlive the
 * wrapped stores (their callbacks count into it): free them last.
 * Threading: every function runs on the loop thread.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "st_meta.h"
#include "st_objstore.h"

struct event_base;
struct gw_server;

#define GW_METRICS_PROBE_MS 1000
#define GW_METRICS_PROBE_TIMEOUT_MS 2000
#define GW_METRICS_LAG_MS 100 /* nuthatch_event_loop_lag_seconds: a timer this often */

/* Latency buckets (seconds) and size buckets (bytes); +Inf implied. */
#define GW_HIST_LAT_N 15
#define GW_HIST_SIZE_N 10
#define GW_HIST_MAX 15

typedef struct gw_hist {
    uint64_t bucket[GW_HIST_MAX + 1]; /* per bucket, not cumulative; last = +Inf */
    uint64_t count;
    double sum;
} gw_hist_t;

enum { GW_OBJ_PUT, GW_OBJ_GET, GW_OBJ_LIST, GW_OBJ_DELETE, GW_OBJ__NUM };

#define GW_METRICS_APIS 128

typedef struct gw_metrics gw_metrics_t;

/* @returns owned (gw_metrics_free), or NULL when out of memory. */
gw_metrics_t *gw_metrics_new(struct event_base *base);

/* Serve HTTP on @listen ("HOST:PORT", port 0 = any free port; "[::]:P" for
 * IPv6) and start probing @os and @meta.  0, or -1 with @errstr. */
int gw_metrics_start(gw_metrics_t *m, const char *listen, char *errstr, size_t errstr_size);

/* The bound HTTP port (0 when not serving). */
int gw_metrics_port(const gw_metrics_t *m);

/* The server whose connections, log and stores are reported (borrowed;
 * NULL before it exists or once it is gone). */
void gw_metrics_set_server(gw_metrics_t *m, struct gw_server *srv);
/* The log is open and serving (readiness needs it). */
void gw_metrics_set_serving(gw_metrics_t *m, bool serving);

/* The stores to probe for readiness (the wrapped ones; borrowed). */
void gw_metrics_set_stores(gw_metrics_t *m, st_objstore_t *os, st_meta_t *meta);

/* One request of @api_key answered after @seconds, @in bytes received and
 * @out bytes sent for it. */
void gw_metrics_request(gw_metrics_t *m, int api_key, double seconds);
void gw_metrics_bytes(gw_metrics_t *m, uint64_t in, uint64_t out);
/* A committed flush (st_log_cfg_t.on_flush; @arg is the metrics). */
void gw_metrics_on_flush(void *arg, size_t bytes, double seconds);

/* Wrap a store so that each operation is counted and timed.  Takes
 * @inner (freed with the wrapper, or at once when out of memory: NULL). */
st_objstore_t *gw_metrics_wrap_objstore(gw_metrics_t *m, st_objstore_t *inner);
st_meta_t *gw_metrics_wrap_meta(gw_metrics_t *m, st_meta_t *inner);

/* The Prometheus text of every metric, NUL-terminated, malloc'ed. */
char *gw_metrics_render(gw_metrics_t *m);

/* Ready, and if not, why (one line). */
bool gw_metrics_ready(const gw_metrics_t *m, const char **why);

/* Stop serving and probing; free.  NULL is a no-op. */
void gw_metrics_free(gw_metrics_t *m);

#endif
