/*
 * st_meta_etcd_watch.c: watches of the etcd backend -- one POST /v3/watch
 * stream each, whose answer is a never-ending sequence of newline-delimited
 * JSON objects, each {"result": WatchResponse} (or {"error": ...} when the
 * stream fails).
 *
 * Lines are cut and decoded in curl's write callback, in a buffer bounded by
 * max_response_bytes; the events are queued and delivered from the store's
 * deferred delivery event (never from inside curl).  The watch remembers
 * the revision after the last event received, and a stream that ends or
 * fails is reopened from there after a back-off (0 after a stream that
 * worked, then 50 ms doubling to 2 s), on the endpoint in use -- so events
 * arrive in order, each once.  A stream also moves when the store fails
 * over to another endpoint (a frozen member keeps a stream open but
 * silent; the ops' timeouts are what notice it).
 *
 * A watch ends with one error callback when etcd cancels it for compaction
 * (ST_ERR_NOT_FOUND, as the SQLite backend), or for another reason
 * (ST_ERR_IO), when a message is not etcd's (ST_ERR_CORRUPT) or too large
 * (ST_ERR_FULL), or when its start revision could not be learned.
 */
#include "st_meta_etcd_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 2000

/* Events decoded from one message, waiting for delivery. */
typedef struct wbatch {
    struct wbatch *next;
    st_arena_t arena; /* owns evs and what they point to */
    st_watch_event_t *evs;
    size_t n;
} wbatch_t;

typedef enum wstate {
    W_PROBING,   /* waiting for the start revision (watch from "now") */
    W_IDLE,      /* the timer will (re)open the stream */
    W_STREAMING, /* a stream is open */
    W_BROKEN,    /* ended with an error; nothing more */
} wstate_t;

struct st_meta_watch {
    struct st_meta_watch *next, *prev; /* in st_etcd_t.watches */
    st_etcd_t *e;
    char *key; /* owned: the st_meta key prefix watched */
    st_watch_cb cb;
    void *arg;
    int64_t next_rev; /* first revision not yet received (0 while probing) */
    wstate_t state;
    bool cancelled;          /* never call cb again; freed when nothing refers to it */
    bool probe_pending;      /* a probe request in the queue points here */
    bool reconnect;          /* the write callback ended the stream to reopen it */
    bool reauth;             /* ... after authenticating again */
    CURL *easy;              /* owned, reused across streams */
    struct curl_slist *hdrs; /* owned */
    char *body;              /* owned: the create_request of the current stream */
    bool running;            /* easy is started in st_curl */
    size_t ep;               /* endpoint of the current stream */
    uint64_t token_gen;      /* token generation the stream carried */
    char *buf;               /* owned: bytes received, not yet a whole line */
    size_t buf_len, buf_cap;
    wbatch_t *bh, *bt;  /* decoded, undelivered (oldest first) */
    st_err_t final_err; /* with final_pending: delivered after the batches */
    bool final_pending;
    struct event *timer; /* (re)open the stream */
    long backoff_ms;     /* delay before the next reopen */
};

static void schedule(struct st_meta_watch *w, long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
}

/* Reopen later, backing off while reopening does not help. */
static void schedule_reconnect(struct st_meta_watch *w)
{
    w->state = W_IDLE;
    schedule(w, w->backoff_ms);
    w->backoff_ms = w->backoff_ms < BACKOFF_FIRST_MS ? BACKOFF_FIRST_MS : w->backoff_ms * 2;
    if (w->backoff_ms > BACKOFF_MAX_MS)
        w->backoff_ms = BACKOFF_MAX_MS;
}

/* End the watch with @err (delivered after the events already decoded). */
static void breaks(struct st_meta_watch *w, st_err_t err)
{
    w->state = W_BROKEN;
    w->final_err = err;
    w->final_pending = true;
    st_etcd__kick(w->e);
}

static void stop_stream(struct st_meta_watch *w)
{
    if (w->running) {
        st_curl_cancel(w->e->curl, w->easy);
        w->running = false;
    }
}

static void batches_free(struct st_meta_watch *w)
{
    while (w->bh) {
        wbatch_t *b = w->bh;
        w->bh = b->next;
        st_arena__free(&b->arena);
        free(b);
    }
    w->bt = NULL;
}

static void watch_free(st_etcd_t *e, struct st_meta_watch *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        e->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    stop_stream(w);
    batches_free(w);
    if (w->timer)
        event_free(w->timer);
    if (w->easy)
        curl_easy_cleanup(w->easy);
    curl_slist_free_all(w->hdrs);
    free(w->body);
    free(w->buf);
    free(w->key);
    free(w);
}

/* ------------------------------------------------------------- decoding */

/* One line of the stream.  @returns 0 to go on, -1 to end the stream (the
 * watch is broken, or w->reconnect asks for a new one). */
static int on_line(struct st_meta_watch *w, const char *p, size_t n)
{
    st_etcd_t *e = w->e;
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0)
        return 0;
    wbatch_t *b = calloc(1, sizeof(*b));
    st_etcd_watch_msg_t msg;
    st_err_t err = b ? st_etcd__parse_watch(p, n, e->prefix, &b->arena, &msg) : ST_ERR_NOMEM;
    int rc = 0;
    if (err == ST_ERR_NOMEM) {
        w->reconnect = true; /* try again from the same revision */
        rc = -1;
    } else if (err != ST_OK) {
        st_etcd__error(e, "etcd watch %s: a message that is not etcd's", w->key);
        breaks(w, ST_ERR_CORRUPT);
        rc = -1;
    } else if (msg.error) {
        st_etcd__error(e, "etcd watch %s: %s", w->key, msg.err_msg ? msg.err_msg : "stream error");
        w->reconnect = true;
        w->reauth = st_etcd__auth_error(e, msg.err_code, msg.err_msg ? msg.err_msg : "");
        rc = -1;
    } else if (msg.canceled) {
        const char *why = msg.cancel_reason ? msg.cancel_reason : "";
        if (msg.compact_rev > 0) {
            st_etcd__error(e, "etcd watch %s: revision %lld is compacted (to %lld)", w->key,
                           (long long)w->next_rev, (long long)msg.compact_rev);
            breaks(w, ST_ERR_NOT_FOUND);
        } else if (st_etcd__auth_error(e, 0, why)) {
            w->reconnect = w->reauth = true;
        } else {
            st_etcd__error(e, "etcd watch %s: cancelled: %s", w->key, why);
            breaks(w, ST_ERR_IO);
        }
        rc = -1;
    } else {
        if (msg.created)
            w->backoff_ms = 0; /* the stream works */
        size_t first = 0;
        while (first < msg.nevs && msg.evs[first].kv.mod_rev < w->next_rev)
            first++; /* already delivered (cannot happen; keeps each event once) */
        if (first < msg.nevs) {
            b->evs = msg.evs + first;
            b->n = msg.nevs - first;
            w->next_rev = b->evs[b->n - 1].kv.mod_rev + 1;
            if (w->bt)
                w->bt->next = b;
            else
                w->bh = b;
            w->bt = b;
            b = NULL;
            st_etcd__kick(e);
        }
    }
    if (b) {
        st_arena__free(&b->arena);
        free(b);
    }
    return rc;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
    struct st_meta_watch *w = arg;
    size_t len = size * nmemb;
    if (w->cancelled || w->state == W_BROKEN)
        return 0;
    if (w->state != W_STREAMING) { /* moving to another endpoint */
        w->reconnect = true;
        return 0;
    }
    if (w->buf_len + len + 1 > w->buf_cap) {
        size_t cap = w->buf_cap ? w->buf_cap : 4096;
        while (cap < w->buf_len + len + 1)
            cap *= 2;
        char *nb = realloc(w->buf, cap);
        if (!nb) {
            w->reconnect = true;
            return 0;
        }
        w->buf = nb;
        w->buf_cap = cap;
    }
    memcpy(w->buf + w->buf_len, p, len);
    w->buf_len += len;
    size_t start = 0;
    char *nl;
    while ((nl = memchr(w->buf + start, '\n', w->buf_len - start)) != NULL) {
        size_t n = (size_t)(nl - (w->buf + start));
        if (on_line(w, w->buf + start, n) != 0)
            return 0;
        start += n + 1;
    }
    memmove(w->buf, w->buf + start, w->buf_len - start);
    w->buf_len -= start;
    if (w->buf_len > w->e->max_body) {
        st_etcd__error(w->e, "etcd watch %s: a message larger than %zu bytes", w->key,
                       w->e->max_body);
        breaks(w, ST_ERR_FULL);
        return 0;
    }
    return len;
}

/* -------------------------------------------------------------- streams */

static void stream_done(CURLcode rc, CURL *easy, void *arg)
{
    struct st_meta_watch *w = arg;
    st_etcd_t *e = w->e;
    w->running = false;
    if (w->cancelled || w->state == W_BROKEN || e->closing)
        return;
    long http = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
    if (w->reconnect) { /* asked for by the write callback */
        w->reconnect = false;
        if (w->reauth)
            st_etcd__reauth(e, w->token_gen);
        w->reauth = false;
    } else if (rc != CURLE_OK) {
        st_etcd__endpoint_failed(e, w->ep, curl_easy_strerror(rc));
    } else if (http != 200) {
        int code;
        char msg[200];
        if (!st_etcd__parse_error(w->buf ? w->buf : "", w->buf_len, &code, msg, sizeof msg)) {
            snprintf(msg, sizeof msg, "HTTP %ld", http);
            code = -1;
        }
        st_etcd__error(e, "etcd watch %s: %s", w->key, msg);
        if (st_etcd__auth_error(e, code, msg))
            st_etcd__reauth(e, w->token_gen);
        else if (code == ST_GRPC_UNAVAILABLE || code < 0)
            st_etcd__endpoint_failed(e, w->ep, msg);
    }
    schedule_reconnect(w);
}

static void stream_open(struct st_meta_watch *w)
{
    st_etcd_t *e = w->e;
    stop_stream(w);
    free(w->body);
    w->body = st_etcd__req_watch(e->prefix, w->key, w->next_rev);
    if (!w->easy)
        w->easy = curl_easy_init();
    w->buf_len = 0;
    w->ep = e->ep;
    w->token_gen = e->token_gen;
    w->reconnect = w->reauth = false;
    if (!w->body || !w->easy ||
        st_etcd__easy_setup(e, w->easy, w->ep, "/v3/watch", w->body, &w->hdrs, 0) != 0) {
        schedule_reconnect(w);
        return;
    }
    curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
    /* An idle stream is normal; a dead peer host is found by keep-alives. */
    curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPIDLE, 10L);
    curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPINTVL, 5L);
    w->state = W_STREAMING;
    if (st_curl_start(e->curl, w->easy, stream_done, w) != 0) {
        schedule_reconnect(w);
        return;
    }
    w->running = true;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct st_meta_watch *w = arg;
    st_etcd_t *e = w->e;
    if (w->cancelled || w->state == W_BROKEN || w->state == W_PROBING || e->closing)
        return;
    if (!st_etcd__auth_ready(e)) {
        schedule_reconnect(w); /* backing off: a wrong password stays wrong */
        return;
    }
    stream_open(w);
}

/* ------------------------------------------------------------ interface */

st_meta_watch_t *st_etcd__watch(st_meta_t *m, const char *prefix, int64_t start_rev, st_watch_cb cb,
                                void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    if (e->closing)
        return NULL;
    struct st_meta_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->e = e;
    w->cb = cb;
    w->arg = arg;
    w->key = strdup(prefix);
    w->timer = evtimer_new(e->base, timer_cb, w);
    w->next = e->watches;
    if (w->next)
        w->next->prev = w;
    e->watches = w;
    if (!w->key || !w->timer) {
        watch_free(e, w);
        return NULL;
    }
    if (start_rev > 0) {
        w->next_rev = start_rev;
        w->state = W_IDLE;
        schedule(w, 0); /* open from the loop */
        return w;
    }
    /* "From now on": the revision after every op issued before this call. */
    w->state = W_PROBING;
    if (st_etcd__probe(e, w) != 0) {
        watch_free(e, w);
        return NULL;
    }
    w->probe_pending = true;
    return w;
}

void st_etcd__watch_probed(st_etcd_t *e, struct st_meta_watch *w, st_err_t err, int64_t rev)
{
    w->probe_pending = false;
    if (w->cancelled || e->closing)
        return;
    if (err != ST_OK) {
        /* Retrying later could miss the events of ops issued after the watch. */
        breaks(w, err);
        return;
    }
    w->next_rev = rev + 1;
    w->state = W_IDLE;
    schedule(w, 0);
}

void st_etcd__watch_cancel(st_meta_t *m, st_meta_watch_t *w)
{
    st_etcd_t *e = (st_etcd_t *)m;
    if (!w)
        return;
    w->cancelled = true;
    stop_stream(w);
    evtimer_del(w->timer);
    batches_free(w);
    if (e->cb_depth == 0)
        st_etcd__watch_sweep(e);
}

void st_etcd__watch_deliver(st_etcd_t *e)
{
    for (struct st_meta_watch *w = e->watches; w; w = w->next) {
        while (!w->cancelled && w->bh) {
            wbatch_t *b = w->bh;
            w->bh = b->next;
            if (!w->bh)
                w->bt = NULL;
            w->cb(ST_OK, b->evs, b->n, w->arg);
            st_arena__free(&b->arena);
            free(b);
        }
        if (!w->cancelled && w->final_pending) {
            w->final_pending = false;
            w->cb(w->final_err, NULL, 0, w->arg);
        }
    }
}

void st_etcd__watch_moved(st_etcd_t *e)
{
    for (struct st_meta_watch *w = e->watches; w; w = w->next)
        if (!w->cancelled && w->state == W_STREAMING && w->ep != e->ep) {
            w->state = W_IDLE; /* the timer closes this stream and opens one on e->ep */
            w->backoff_ms = 0;
            schedule(w, 0);
        }
}

void st_etcd__watch_sweep(st_etcd_t *e)
{
    struct st_meta_watch *w = e->watches;
    while (w) {
        struct st_meta_watch *next = w->next;
        if (w->cancelled && !w->probe_pending)
            watch_free(e, w);
        w = next;
    }
}

void st_etcd__watch_free_all(st_etcd_t *e)
{
    for (struct st_meta_watch *w = e->watches; w; w = w->next) {
        w->cancelled = true;
        stop_stream(w);
        evtimer_del(w->timer);
    }
    st_etcd__watch_sweep(e);
}
