/*
 * st_meta_etcd.c: st_meta.h on etcd v3's JSON gateway, over libcurl on the
 * loop (st_curl.h).  This half holds the vtable, the op queue, endpoints and
 * failover, authentication and delivery; watch streams are in
 * st_meta_etcd_watch.c, the JSON in st_etcd_json.c.  Behaviour beyond the
 * interface is documented at st_meta_etcd_new() in st_meta.h.
 *
 * The queue: every op becomes a request in one FIFO.  A request goes out
 * when every request before it has completed, or, for a read, when every
 * request before it is a read (completed or in flight).  A completed
 * request waits at its place until those before it are delivered: the
 * deferred delivery event pops completed requests from the head only, so
 * callbacks run in issue order and never inside the starting call.
 */
#include "st_meta_etcd_int.h"

#include <assert.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_MS 1000
#define DEFAULT_MAX_BODY (64u << 20)
/* etcd's largest lease TTL (9e9 s), as in the SQLite backend. */
#define MAX_TTL_MS (9000000000LL * 1000)
/* A request refused for its token is resent after authenticating again at
 * most this many times (then etcd's refusal is the answer). */
#define MAX_AUTH_RETRIES 2
/* A txn unanswered this long has its member asked for its raft term, and
 * again every half of it while it waits (see "leader watch" below). */
#define LEADER_CHECK_MS 1000

typedef enum req_kind {
    R_RANGE,
    R_TXN,
    R_GRANT,
    R_KEEPALIVE,
    R_REVOKE,
    R_COMPACT,
    R_PROBE, /* a watch's start revision; internal */
    R_AUTH,  /* authenticate; internal, never in the queue */
} req_kind_t;

typedef enum req_state { Q_WAITING, Q_RUNNING, Q_DONE } req_state_t;

static const char *const req_paths[] = {
    [R_RANGE] = "/v3/kv/range",      [R_TXN] = "/v3/kv/txn",
    [R_GRANT] = "/v3/lease/grant",   [R_KEEPALIVE] = "/v3/lease/keepalive",
    [R_REVOKE] = "/v3/lease/revoke", [R_COMPACT] = "/v3/kv/compaction",
    [R_PROBE] = "/v3/kv/range",      [R_AUTH] = "/v3/auth/authenticate",
};

struct st_etcd_req {
    st_etcd_req_t *next; /* in the queue */
    st_etcd_t *e;
    req_kind_t kind;
    char *body;      /* owned: the request JSON */
    size_t body_len; /* strlen(body) */
    size_t body_off; /* bytes of body handed to curl (since the last rewind) */
    bool body_out;   /* some body byte was handed to curl in the current try */
    uint8_t *types;  /* owned, R_TXN: the op types (shape.types) */
    st_etcd_txn_shape_t shape;
    union {
        st_range_cb range;
        st_txn_cb txn;
        st_lease_cb lease;
        st_meta_done_cb done;
    } cb;
    void *arg;
    struct st_meta_watch *watch; /* R_PROBE */
    req_state_t state;
    /* the transfer of the current try */
    CURL *easy;              /* owned, reused across tries */
    struct curl_slist *hdrs; /* owned */
    char *resp;              /* owned: response body so far */
    size_t resp_len, resp_cap;
    bool overflow;         /* the body passed e->max_body: abandoned */
    size_t ep;             /* endpoint of the current try */
    uint64_t token_gen;    /* token generation the try carried */
    unsigned tries;        /* tries started (each on the endpoint in use) */
    unsigned auth_retries; /* resends after a refused token */
    bool sent;             /* some try may have reached etcd */
    int64_t started_ms;    /* when the current try started (monotonic) */
    int64_t term;          /* the raft term known when it started (0: none yet) */
    /* the result */
    st_err_t err;
    st_etcd_res_t res; /* pointers into arena */
    st_arena_t arena;
};

static const st_meta_ops_t etcd_ops;

static void pump(st_etcd_t *e);
static void leader_watch_arm(st_etcd_t *e);

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- helpers */

void st_etcd__error(st_etcd_t *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof e->last_error, fmt, ap);
    va_end(ap);
}

void st_etcd__kick(st_etcd_t *e)
{
    event_active(e->deliver_ev, 0, 0);
}

void st_etcd__cb_enter(st_etcd_t *e)
{
    e->cb_depth++;
}

void st_etcd__cb_leave(st_etcd_t *e)
{
    if (--e->cb_depth == 0)
        st_etcd__watch_sweep(e);
}

void st_etcd__endpoint_failed(st_etcd_t *e, size_t ep, const char *why)
{
    st_etcd__error(e, "etcd %s: %s", e->eps[ep], why);
    if (e->ep != ep)
        return; /* another request already moved on */
    e->ep = (ep + 1) % e->neps;
    if (e->neps > 1)
        st_etcd__watch_moved(e);
}

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    st_etcd_req_t *r = arg;
    size_t len = size * n;
    if (r->resp_len + len > r->e->max_body) {
        r->overflow = true;
        return 0; /* abort the transfer */
    }
    if (r->resp_len + len + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + len + 1)
            cap *= 2;
        char *np = realloc(r->resp, cap);
        if (!np)
            return 0;
        r->resp = np;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, p, len);
    r->resp_len += len;
    r->resp[r->resp_len] = 0;
    return len;
}

int st_etcd__easy_setup(st_etcd_t *e, CURL *easy, size_t ep, const char *path, const char *body,
                        struct curl_slist **hdrs, long timeout_ms)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", e->eps[ep], path);
    curl_slist_free_all(*hdrs);
    *hdrs = NULL;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
    if (!h2) {
        curl_slist_free_all(h);
        return -1;
    }
    h = h2;
    if (e->token && path != req_paths[R_AUTH]) {
        size_t n = strlen(e->token) + sizeof "Authorization: ";
        char *line = malloc(n);
        if (line) {
            snprintf(line, n, "Authorization: %s", e->token);
            h2 = curl_slist_append(h, line);
            free(line);
        }
        if (!line || !h2) {
            curl_slist_free_all(h);
            return -1;
        }
        h = h2;
    }
    *hdrs = h;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, e->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
    return 0;
}

/* ------------------------------------------------------- authentication */

bool st_etcd__auth_error(const st_etcd_t *e, int code, const char *msg)
{
    if (!e->user)
        return false;
    return code == ST_GRPC_UNAUTHENTICATED || strstr(msg, "invalid auth token") ||
           strstr(msg, "user name is empty") || strstr(msg, "auth token");
}

static void auth_start(st_etcd_t *e);

void st_etcd__reauth(st_etcd_t *e, uint64_t gen)
{
    e->auth_off = false;
    if (gen == e->token_gen && e->token) {
        free(e->token);
        e->token = NULL;
        e->token_gen++;
    }
    if (!e->auth)
        auth_start(e);
}

bool st_etcd__auth_ready(st_etcd_t *e)
{
    if (!e->user || e->token || e->auth_off)
        return true;
    if (!e->auth)
        auth_start(e);
    return false;
}

static void req_free(st_etcd_req_t *r);
static void finish(st_etcd_req_t *r, st_err_t err);

/* Authentication failed for good: the ops waiting for it fail with @err. */
static void auth_failed(st_etcd_t *e, st_err_t err)
{
    for (st_etcd_req_t *r = e->head; r; r = r->next)
        if (r->state == Q_WAITING)
            finish(r, err);
}

static void auth_done(CURLcode rc, CURL *easy, void *arg)
{
    st_etcd_req_t *r = arg;
    st_etcd_t *e = r->e;
    long http = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
    if (rc != CURLE_OK) {
        st_etcd__endpoint_failed(e, r->ep, curl_easy_strerror(rc));
        if (r->tries < e->neps && !e->closing) {
            if (st_etcd__easy_setup(e, r->easy, e->ep, req_paths[R_AUTH], r->body, &r->hdrs,
                                    e->timeout_ms) == 0) {
                r->ep = e->ep;
                r->tries++;
                r->resp_len = 0;
                if (st_curl_start(e->curl, r->easy, auth_done, r) == 0)
                    return;
            }
        }
        e->auth = NULL;
        req_free(r);
        auth_failed(e, rc == CURLE_COULDNT_CONNECT ? ST_ERR_IO : ST_ERR_TIMEOUT);
        st_etcd__kick(e);
        return;
    }
    e->auth = NULL;
    st_err_t err = ST_OK;
    int code;
    char msg[200];
    if (http == 200 && st_etcd__parse_auth(r->resp, r->resp_len, &r->arena, &r->res) == ST_OK &&
        r->res.token && r->res.token[0]) {
        free(e->token);
        e->token = strdup(r->res.token);
        e->token_gen++;
        err = e->token ? ST_OK : ST_ERR_NOMEM;
    } else if (http != 200 && st_etcd__parse_error(r->resp, r->resp_len, &code, msg, sizeof msg) &&
               strstr(msg, "authentication is not enabled")) {
        e->auth_off = true; /* go without a token */
    } else {
        if (http != 200 && st_etcd__parse_error(r->resp, r->resp_len, &code, msg, sizeof msg))
            st_etcd__error(e, "etcd authentication as '%s' failed: %s", e->user, msg);
        else
            st_etcd__error(e, "etcd authentication as '%s' failed: HTTP %ld", e->user, http);
        err = ST_ERR_INVALID;
    }
    req_free(r);
    if (err != ST_OK)
        auth_failed(e, err);
    pump(e);
    st_etcd__kick(e);
}

static void auth_start(st_etcd_t *e)
{
    st_etcd_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        auth_failed(e, ST_ERR_NOMEM);
        st_etcd__kick(e);
        return;
    }
    r->e = e;
    r->kind = R_AUTH;
    r->body = st_etcd__req_auth(e->user, e->password ? e->password : "");
    r->easy = curl_easy_init();
    r->ep = e->ep;
    r->tries = 1;
    if (!r->body || !r->easy ||
        st_etcd__easy_setup(e, r->easy, r->ep, req_paths[R_AUTH], r->body, &r->hdrs,
                            e->timeout_ms) != 0) {
        req_free(r);
        auth_failed(e, ST_ERR_NOMEM);
        st_etcd__kick(e);
        return;
    }
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    e->auth = r;
    if (st_curl_start(e->curl, r->easy, auth_done, r) != 0) {
        e->auth = NULL;
        req_free(r);
        auth_failed(e, ST_ERR_NOMEM);
        st_etcd__kick(e);
    }
}

/* -------------------------------------------------------------- requests */

static bool is_read(const st_etcd_req_t *r)
{
    return r->kind == R_RANGE || r->kind == R_PROBE;
}

/* May a try whose answer was lost be repeated?  Not a txn (it may have been
 * applied) nor a revoke (a repeat would say "not found"). */
static bool repeatable(const st_etcd_req_t *r)
{
    return r->kind != R_TXN && r->kind != R_REVOKE;
}

static void req_free(st_etcd_req_t *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->types);
    free(r->resp);
    st_arena__free(&r->arena);
    free(r);
}

/* The request has its outcome; it is delivered when it reaches the head. */
static void finish(st_etcd_req_t *r, st_err_t err)
{
    r->err = err;
    r->state = Q_DONE;
    st_etcd__kick(r->e);
}

/* The body goes to curl through a read callback, not CURLOPT_POSTFIELDS,
 * for one reason: libcurl (before 8.16's CURLOPT_FORBID_RETRY_ON_REUSE)
 * silently sends a request again on a fresh connection when a reused one
 * dies before any answer -- after etcd may have applied it.  Refusing to
 * rewind a body already handed out makes that a CURLE_SEND_FAIL_REWIND
 * (outcome unknown) for a txn or revoke; other requests may go again. */
static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    st_etcd_req_t *r = arg;
    size_t len = r->body_len - r->body_off;
    if (len > size * n)
        len = size * n;
    memcpy(buf, r->body + r->body_off, len);
    r->body_off += len;
    r->body_out = true;
    return len;
}

static int seek_cb(void *arg, curl_off_t offset, int origin)
{
    st_etcd_req_t *r = arg;
    if (offset != 0 || origin != SEEK_SET)
        return CURL_SEEKFUNC_CANTSEEK;
    if (r->body_off > 0 && !repeatable(r))
        return CURL_SEEKFUNC_FAIL; /* it may have reached etcd: never twice */
    r->body_off = 0;
    return CURL_SEEKFUNC_OK;
}

static void req_done(CURLcode rc, CURL *easy, void *arg);

static void start(st_etcd_t *e, st_etcd_req_t *r)
{
    r->state = Q_RUNNING;
    r->ep = e->ep;
    r->tries++;
    r->token_gen = e->token_gen;
    r->started_ms = mono_ms();
    r->term = e->term;
    if (r->kind == R_TXN)
        leader_watch_arm(e);
    r->resp_len = 0;
    r->overflow = false;
    if (!r->easy)
        r->easy = curl_easy_init();
    if (!r->easy || st_etcd__easy_setup(e, r->easy, r->ep, req_paths[r->kind], r->body, &r->hdrs,
                                        e->timeout_ms) != 0) {
        finish(r, ST_ERR_NOMEM);
        return;
    }
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    r->body_len = strlen(r->body);
    r->body_off = 0;
    r->body_out = false;
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(r->easy, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(r->easy, CURLOPT_READDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(r->easy, CURLOPT_SEEKDATA, r);
    if (st_curl_start(e->curl, r->easy, req_done, r) != 0)
        finish(r, ST_ERR_NOMEM);
}

/* Start every request that may go out now (see the file comment). */
static void pump(st_etcd_t *e)
{
    bool all_done = true, only_reads = true;
    for (st_etcd_req_t *r = e->head; r; r = r->next) {
        if (r->state == Q_WAITING) {
            if (!all_done && !(only_reads && is_read(r)))
                break;
            if (!st_etcd__auth_ready(e))
                break; /* authenticating: pumped again when it ends */
            start(e, r);
        }
        if (r->state != Q_DONE) {
            all_done = false;
            if (!is_read(r))
                only_reads = false;
        }
        if (!all_done && !only_reads)
            break;
    }
}

/* Was nothing of the request's body sent?  Then it surely was not applied.
 * A refused connection counts only if no body byte went out before (curl
 * reconnects by itself when a reused connection died; see read_cb), a
 * timeout only when not even the request line went out. */
static bool not_sent(const st_etcd_req_t *r, CURLcode rc, CURL *easy)
{
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
        return !r->body_out;
    long reqsize = 0;
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &reqsize);
    return rc == CURLE_OPERATION_TIMEDOUT && reqsize == 0 && !r->body_out;
}

/* Try again on the endpoint in use, if the rules allow. */
static bool retry(st_etcd_t *e, st_etcd_req_t *r, bool lost)
{
    if (e->closing && r->kind == R_PROBE)
        return false;
    if (r->tries >= e->neps || (lost && !repeatable(r)))
        return false;
    r->state = Q_WAITING;
    pump(e);
    return true;
}

/* Map an etcd refusal (@code, @msg) of request @r to its error. */
static st_err_t refusal(const st_etcd_req_t *r, int code, const char *msg)
{
    switch (code) {
    case ST_GRPC_NOT_FOUND:
        return ST_ERR_NOT_FOUND; /* lease not found */
    case ST_GRPC_OUT_OF_RANGE:
        if (r->kind == R_COMPACT && strstr(msg, "compacted"))
            return ST_OK; /* already compacted at least that far */
        return ST_ERR_INVALID;
    case ST_GRPC_RESOURCE_EXHAUSTED:
        return ST_ERR_FULL;
    case ST_GRPC_INVALID_ARGUMENT:
    case ST_GRPC_FAILED_PRECONDITION:
    case ST_GRPC_PERMISSION_DENIED:
    case ST_GRPC_UNAUTHENTICATED:
        return ST_ERR_INVALID;
    default:
        return ST_ERR_IO;
    }
}

/* A 200 answer: decode it into r->res. */
static st_err_t decode(st_etcd_t *e, st_etcd_req_t *r)
{
    const char *b = r->resp ? r->resp : "";
    size_t n = r->resp_len;
    st_err_t err = ST_ERR_CORRUPT;
    switch (r->kind) {
    case R_RANGE:
    case R_PROBE:
        err = st_etcd__parse_range(b, n, e->prefix, &r->arena, &r->res);
        break;
    case R_TXN:
        err = st_etcd__parse_txn(b, n, e->prefix, &r->shape, &r->arena, &r->res);
        break;
    case R_GRANT:
        err = st_etcd__parse_lease(b, n, false, &r->res);
        if (err == ST_OK && (r->res.lease_id == 0 || r->res.ttl_s <= 0))
            err = ST_ERR_CORRUPT;
        break;
    case R_KEEPALIVE: {
        /* A stream: the first line answers our one request. */
        const char *nl = memchr(b, '\n', n);
        size_t first = nl ? (size_t)(nl - b) : n;
        int code;
        char msg[200];
        if (st_etcd__parse_error(b, first, &code, msg, sizeof msg)) {
            st_etcd__error(e, "etcd keep-alive: %s", msg);
            return refusal(r, code, msg);
        }
        err = st_etcd__parse_lease(b, first, true, &r->res);
        if (err == ST_OK && r->res.ttl_s <= 0)
            err = ST_ERR_NOT_FOUND; /* etcd's answer for an unknown or expired lease */
        break;
    }
    case R_REVOKE:
    case R_COMPACT:
        err = st_etcd__parse_header(b, n, &r->res);
        break;
    case R_AUTH:
        break;
    }
    if (err == ST_ERR_CORRUPT) {
        st_etcd__error(e, "etcd %s%s: an answer that is not etcd's", e->eps[r->ep],
                       req_paths[r->kind]);
        /* A txn answered with something unreadable may have been applied. */
        if (r->kind == R_TXN)
            err = ST_ERR_TIMEOUT;
        else
            err = ST_ERR_IO;
    }
    return err;
}

/* A transfer failed below HTTP (refused, timed out, dropped, too large). */
static void transport_failed(st_etcd_t *e, st_etcd_req_t *r, CURLcode rc, CURL *easy)
{
    if (r->overflow) {
        st_etcd__error(e, "etcd %s%s: answer larger than %zu bytes", e->eps[r->ep],
                       req_paths[r->kind], e->max_body);
        finish(r, r->kind == R_TXN ? ST_ERR_TIMEOUT : ST_ERR_FULL);
        return;
    }
    bool lost = !not_sent(r, rc, easy);
    if (lost)
        r->sent = true;
    st_etcd__endpoint_failed(e, r->ep, curl_easy_strerror(rc));
    if (retry(e, r, lost))
        return;
    finish(r, r->sent ? ST_ERR_TIMEOUT : ST_ERR_IO);
}

static void req_done(CURLcode rc, CURL *easy, void *arg)
{
    st_etcd_req_t *r = arg;
    st_etcd_t *e = r->e;
    long http = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
    if (rc != CURLE_OK || http == 0) {
        transport_failed(e, r, rc != CURLE_OK ? rc : CURLE_RECV_ERROR, easy);
        pump(e);
        return;
    }
    r->sent = true;
    if (http == 200) {
        st_err_t err = decode(e, r);
        if (err == ST_OK && r->res.term > e->term)
            e->term = r->res.term;
        finish(r, err);
        pump(e);
        return;
    }
    int code = 0;
    char msg[200];
    if (!st_etcd__parse_error(r->resp ? r->resp : "", r->resp_len, &code, msg, sizeof msg)) {
        snprintf(msg, sizeof msg, "HTTP %ld", http);
        code = -1;
    }
    st_etcd__error(e, "etcd %s%s: %s", e->eps[r->ep], req_paths[r->kind], msg);
    if (code >= 0 && st_etcd__auth_error(e, code, msg) && r->auth_retries < MAX_AUTH_RETRIES) {
        /* Refused before it was applied: authenticate again, resend. */
        r->auth_retries++;
        r->tries--;
        r->state = Q_WAITING;
        st_etcd__reauth(e, r->token_gen);
        pump(e);
        return;
    }
    if (code == ST_GRPC_UNAVAILABLE || code == ST_GRPC_DEADLINE_EXCEEDED || code < 0) {
        /* No leader, leader changed, timed out inside etcd, or not etcd at
         * all: this member cannot serve us now, and a write may or may not
         * have been proposed. */
        st_etcd__endpoint_failed(e, r->ep, msg);
        if (!retry(e, r, true))
            finish(r, ST_ERR_TIMEOUT);
        pump(e);
        return;
    }
    finish(r, refusal(r, code, msg));
    pump(e);
}

/* --------------------------------------------------------- leader watch */

/* A write that a follower forwarded to its leader is never answered when
 * that leader dies before proposing it: etcd holds it until its own
 * request timeout (7 s), and this client would wait for
 * metadata.etcd.request.timeout.ms -- while the survivors elect a new
 * leader in one or two seconds and every write behind it waits.  So while
 * a txn has waited LEADER_CHECK_MS, its member is asked for its status
 * (one request at a time, each LEADER_CHECK_MS / 2): a raft term past the
 * one known when the txn left means an election happened meanwhile, and
 * the txn ends as one whose answer was lost (ST_ERR_TIMEOUT: its outcome
 * is unknown, the caller resolves it, DESIGN §5) instead of being waited
 * for.  Should the old proposal still commit, it orders before anything
 * the caller sends next, which is what resolving relies on. */

static size_t status_write(char *p, size_t size, size_t n, void *arg)
{
    st_etcd_t *e = arg;
    size_t len = size * n;
    if (e->status_len + len >= sizeof e->status_resp)
        return 0; /* not a status answer: abandoned */
    memcpy(e->status_resp + e->status_len, p, len);
    e->status_len += len;
    e->status_resp[e->status_len] = 0;
    return len;
}

static void status_done(CURLcode rc, CURL *easy, void *arg)
{
    st_etcd_t *e = arg;
    e->status_running = false;
    long http = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
    st_etcd_res_t res;
    if (rc != CURLE_OK || http != 200 ||
        st_etcd__parse_header(e->status_resp, e->status_len, &res) != ST_OK || res.term <= 0)
        return; /* the txn's own transfer tells what is wrong with the member */
    int64_t now = mono_ms();
    bool ended = false;
    for (st_etcd_req_t *r = e->head; r; r = r->next) {
        if (r->state != Q_RUNNING || r->kind != R_TXN || r->ep != e->status_ep || r->term <= 0 ||
            res.term <= r->term || now - r->started_ms < LEADER_CHECK_MS)
            continue;
        st_etcd__error(e,
                       "etcd %s/v3/kv/txn: no answer after %lld ms and a new raft term "
                       "(%lld, %lld when it left): its outcome is checked",
                       e->eps[r->ep], (long long)(now - r->started_ms), (long long)res.term,
                       (long long)r->term);
        st_curl_cancel(e->curl, r->easy);
        r->sent = true;
        finish(r, ST_ERR_TIMEOUT);
        ended = true;
    }
    if (res.term > e->term)
        e->term = res.term;
    if (ended)
        pump(e);
}

static void status_start(st_etcd_t *e, size_t ep)
{
    if (!e->status_easy && !(e->status_easy = curl_easy_init()))
        return;
    curl_slist_free_all(e->status_hdrs);
    e->status_hdrs = NULL;
    long ms = LEADER_CHECK_MS < e->timeout_ms ? LEADER_CHECK_MS : e->timeout_ms;
    if (st_etcd__easy_setup(e, e->status_easy, ep, "/v3/maintenance/status", "{}", &e->status_hdrs,
                            ms) != 0)
        return;
    curl_easy_setopt(e->status_easy, CURLOPT_WRITEFUNCTION, status_write);
    curl_easy_setopt(e->status_easy, CURLOPT_WRITEDATA, e);
    e->status_len = 0;
    e->status_resp[0] = 0;
    e->status_ep = ep;
    if (st_curl_start(e->curl, e->status_easy, status_done, e) == 0)
        e->status_running = true;
}

static void leader_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    st_etcd_t *e = arg;
    int64_t now = mono_ms();
    bool waiting = false;
    for (st_etcd_req_t *r = e->head; r; r = r->next) {
        if (r->state != Q_RUNNING || r->kind != R_TXN)
            continue;
        waiting = true;
        if (!e->status_running && !e->closing && r->term > 0 &&
            now - r->started_ms >= LEADER_CHECK_MS)
            status_start(e, r->ep);
    }
    if (waiting)
        leader_watch_arm(e);
}

static void leader_watch_arm(st_etcd_t *e)
{
    if (e->leader_ev && !evtimer_pending(e->leader_ev, NULL)) {
        struct timeval tv = {0, (LEADER_CHECK_MS / 2) * 1000};
        evtimer_add(e->leader_ev, &tv);
    }
}

/* ------------------------------------------------------------- delivery */

static void deliver_one(st_etcd_t *e, st_etcd_req_t *r)
{
    const st_etcd_res_t *res = &r->res;
    bool ok = r->err == ST_OK;
    switch (r->kind) {
    case R_RANGE:
        r->cb.range(r->err, ok ? res->kvs : NULL, ok ? res->nkvs : 0, ok && res->more, res->rev,
                    r->arg);
        break;
    case R_TXN:
        r->cb.txn(r->err, ok && res->succeeded, res->rev, ok ? res->results : NULL,
                  ok ? res->nresults : 0, r->arg);
        break;
    case R_GRANT:
    case R_KEEPALIVE:
        r->cb.lease(r->err, ok ? res->lease_id : 0, ok ? res->ttl_s * 1000 : 0, r->arg);
        break;
    case R_REVOKE:
    case R_COMPACT:
        r->cb.done(r->err, r->arg);
        break;
    case R_PROBE:
        st_etcd__watch_probed(e, r->watch, r->err, res->rev);
        break;
    case R_AUTH:
        break;
    }
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_etcd_t *e = arg;
    st_etcd__cb_enter(e);
    st_etcd__watch_deliver(e);
    while (e->head && e->head->state == Q_DONE) {
        st_etcd_req_t *r = e->head;
        e->head = r->next;
        if (!e->head)
            e->tail = NULL;
        deliver_one(e, r);
        req_free(r);
    }
    st_etcd__cb_leave(e);
    pump(e);
}

/* ------------------------------------------------------------------- ops */

static st_etcd_req_t *req_new(st_etcd_t *e, req_kind_t kind, void *arg)
{
    if (e->closing)
        return NULL;
    st_etcd_req_t *r = calloc(1, sizeof(*r));
    if (r) {
        r->e = e;
        r->kind = kind;
        r->arg = arg;
    }
    return r;
}

/* Queue @r (taken) whose body is built; 0, or -1 when it could not be. */
static int submit(st_etcd_t *e, st_etcd_req_t *r)
{
    if (!r->body) {
        req_free(r);
        return -1;
    }
    if (e->tail)
        e->tail->next = r;
    else
        e->head = r;
    e->tail = r;
    pump(e);
    return 0;
}

/* Queue @r (taken) with an outcome already known: delivered in order, later. */
static int submit_done(st_etcd_t *e, st_etcd_req_t *r, st_err_t err)
{
    r->state = Q_DONE;
    r->err = err;
    if (e->tail)
        e->tail->next = r;
    else
        e->head = r;
    e->tail = r;
    st_etcd__kick(e);
    return 0;
}

static int etcd_range(st_meta_t *m, const char *key, bool prefix, size_t limit, st_range_cb cb,
                      void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(key && cb);
    st_etcd_req_t *r = req_new(e, R_RANGE, arg);
    if (!r)
        return -1;
    r->cb.range = cb;
    r->body = st_etcd__req_range(e->prefix, key, prefix, limit);
    return submit(e, r);
}

static int etcd_txn(st_meta_t *m, const st_txn_t *txn, st_txn_cb cb, void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(txn && cb);
    /* etcd's --max-txn-ops counts compares, success and failure ops apart. */
    if (txn->ncmps > ST_META_MAX_TXN_OPS || txn->nsuccess > ST_META_MAX_TXN_OPS ||
        txn->nfailure > ST_META_MAX_TXN_OPS)
        return -1;
    st_etcd_req_t *r = req_new(e, R_TXN, arg);
    if (!r)
        return -1;
    r->cb.txn = cb;
    size_t n = txn->nsuccess + txn->nfailure;
    r->types = malloc(n ? n : 1);
    if (!r->types) {
        req_free(r);
        return -1;
    }
    for (size_t i = 0; i < txn->nsuccess; i++)
        r->types[i] = (uint8_t)txn->success[i].type;
    for (size_t i = 0; i < txn->nfailure; i++)
        r->types[txn->nsuccess + i] = (uint8_t)txn->failure[i].type;
    r->shape = (st_etcd_txn_shape_t){
        .types = r->types, .nsuccess = txn->nsuccess, .nfailure = txn->nfailure};
    r->body = st_etcd__req_txn(e->prefix, txn);
    return submit(e, r);
}

static int etcd_lease_grant(st_meta_t *m, int64_t ttl_ms, st_lease_cb cb, void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(cb);
    st_etcd_req_t *r = req_new(e, R_GRANT, arg);
    if (!r)
        return -1;
    r->cb.lease = cb;
    if (ttl_ms <= 0 || ttl_ms > MAX_TTL_MS)
        return submit_done(e, r, ST_ERR_INVALID);
    r->body = st_etcd__req_grant((ttl_ms + 999) / 1000);
    return submit(e, r);
}

static int etcd_lease_keepalive(st_meta_t *m, int64_t id, st_lease_cb cb, void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(cb);
    st_etcd_req_t *r = req_new(e, R_KEEPALIVE, arg);
    if (!r)
        return -1;
    r->cb.lease = cb;
    r->body = st_etcd__req_lease(id);
    return submit(e, r);
}

static int etcd_lease_revoke(st_meta_t *m, int64_t id, st_meta_done_cb cb, void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(cb);
    st_etcd_req_t *r = req_new(e, R_REVOKE, arg);
    if (!r)
        return -1;
    r->cb.done = cb;
    r->body = st_etcd__req_lease(id);
    return submit(e, r);
}

static int etcd_compact(st_meta_t *m, int64_t rev, st_meta_done_cb cb, void *arg)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(cb);
    st_etcd_req_t *r = req_new(e, R_COMPACT, arg);
    if (!r)
        return -1;
    r->cb.done = cb;
    if (rev <= 0)
        return submit_done(e, r, ST_OK); /* nothing before revision 1 */
    r->body = st_etcd__req_compact(rev);
    return submit(e, r);
}

int st_etcd__probe(st_etcd_t *e, struct st_meta_watch *w)
{
    st_etcd_req_t *r = req_new(e, R_PROBE, NULL);
    if (!r)
        return -1;
    r->watch = w;
    r->body = st_etcd__req_probe(e->prefix);
    return submit(e, r);
}

/* --------------------------------------------------------------- closing */

/* The loop could not be run to drain: end everything here.  Ops in flight
 * get ST_ERR_TIMEOUT when they may have been applied, else ST_ERR_CLOSED. */
static void abandon_all(st_etcd_t *e)
{
    if (e->status_running) {
        st_curl_cancel(e->curl, e->status_easy);
        e->status_running = false;
    }
    if (e->auth) {
        st_curl_cancel(e->curl, e->auth->easy);
        req_free(e->auth);
        e->auth = NULL;
    }
    for (st_etcd_req_t *r = e->head; r; r = r->next) {
        if (r->state == Q_RUNNING) {
            st_curl_cancel(e->curl, r->easy);
            r->err = repeatable(r) ? ST_ERR_CLOSED : ST_ERR_TIMEOUT;
            r->state = Q_DONE;
        } else if (r->state == Q_WAITING) {
            r->err = ST_ERR_CLOSED;
            r->state = Q_DONE;
        }
    }
    st_etcd__cb_enter(e);
    while (e->head) {
        st_etcd_req_t *r = e->head;
        e->head = r->next;
        deliver_one(e, r);
        req_free(r);
    }
    e->tail = NULL;
    st_etcd__cb_leave(e);
}

static void etcd_free(st_meta_t *m)
{
    st_etcd_t *e = (st_etcd_t *)m;
    assert(e->cb_depth == 0); /* not from inside one of our callbacks */
    e->closing = true;
    st_etcd__watch_free_all(e);
    while (e->head || e->auth) {
        if (event_base_loop(e->base, EVLOOP_ONCE) != 0)
            break; /* reentrant, or nothing left to wait for */
    }
    abandon_all(e);
    st_etcd__watch_free_all(e);
    if (e->deliver_ev)
        event_free(e->deliver_ev);
    if (e->leader_ev)
        event_free(e->leader_ev);
    if (e->status_easy)
        curl_easy_cleanup(e->status_easy);
    curl_slist_free_all(e->status_hdrs);
    for (size_t i = 0; i < e->neps; i++)
        free(e->eps[i]);
    free(e->eps);
    free(e->prefix);
    free(e->user);
    if (e->password)
        memset(e->password, 0, strlen(e->password));
    free(e->password);
    free(e->token);
    free(e);
}

static const st_meta_ops_t etcd_ops = {
    .name = "etcd",
    .range = etcd_range,
    .txn = etcd_txn,
    .lease_grant = etcd_lease_grant,
    .lease_keepalive = etcd_lease_keepalive,
    .lease_revoke = etcd_lease_revoke,
    .watch = st_etcd__watch,
    .watch_cancel = st_etcd__watch_cancel,
    .compact = etcd_compact,
    .free = etcd_free,
};

/* ------------------------------------------------------------------ open */

/* Copy endpoint @s without trailing slashes; NULL when it is not http(s). */
static char *endpoint_dup(const char *s)
{
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return NULL;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    if (n >= 900) /* leaves room for the path in the URL buffer */
        return NULL;
    return strndup(s, n);
}

st_meta_t *st_meta_etcd_new(struct event_base *base, st_curl_t *curl, const st_etcd_cfg_t *cfg,
                            char *errstr, size_t errstr_size)
{
    if (!cfg->nendpoints) {
        snprintf(errstr, errstr_size, "etcd: no endpoint");
        return NULL;
    }
    st_etcd_t *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(errstr, errstr_size, "etcd: out of memory");
        return NULL;
    }
    e->meta.ops = &etcd_ops;
    e->base = base;
    e->curl = curl;
    e->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    e->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    e->max_body = cfg->max_response_bytes ? cfg->max_response_bytes : DEFAULT_MAX_BODY;
    e->eps = calloc(cfg->nendpoints, sizeof(*e->eps));
    e->prefix = strdup(cfg->prefix ? cfg->prefix : "");
    e->deliver_ev = event_new(base, -1, 0, deliver_cb, e);
    e->leader_ev = evtimer_new(base, leader_tick, e);
    if (!e->eps || !e->prefix || !e->deliver_ev || !e->leader_ev)
        goto nomem;
    e->neps = cfg->nendpoints;
    for (size_t i = 0; i < e->neps; i++) {
        if (!(e->eps[i] = endpoint_dup(cfg->endpoints[i]))) {
            snprintf(errstr, errstr_size, "etcd: endpoint '%s' is not an http:// URL",
                     cfg->endpoints[i]);
            goto fail;
        }
    }
    if (cfg->user && cfg->user[0]) {
        e->user = strdup(cfg->user);
        e->password = strdup(cfg->password ? cfg->password : "");
        if (!e->user || !e->password)
            goto nomem;
    }
    return &e->meta;
nomem:
    snprintf(errstr, errstr_size, "etcd: out of memory");
fail:
    e->closing = true;
    etcd_free(&e->meta);
    return NULL;
}

const char *st_meta_etcd_endpoint(const st_meta_t *m)
{
    const st_etcd_t *e = (const st_etcd_t *)m;
    assert(m->ops == &etcd_ops);
    return e->eps[e->ep];
}

const char *st_meta_etcd_last_error(const st_meta_t *m)
{
    const st_etcd_t *e = (const st_etcd_t *)m;
    assert(m->ops == &etcd_ops);
    return e->last_error;
}
