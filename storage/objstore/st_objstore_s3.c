/*
 * st_objstore_s3.c: the object store on S3 (or anything that speaks its
 * protocol: MinIO, GCS's XML API, s3rver), over libcurl's multi interface
 * on the loop (st_curl).
 *
 * Every operation is an s3_op_t that runs one or more attempts, each a fresh
 * curl easy handle on the shared multi handle (so connections are reused
 * across operations).  At most max_inflight attempts run at once; the rest
 * wait in a FIFO.  A failed attempt that may succeed when repeated waits a
 * random backoff on the op's timer (holding no slot) and queues again, as
 * long as the operation's retry budget lasts.  Callbacks run from st_curl's
 * completion or from the op's timer -- always from the loop, never inside
 * the call that started the operation (an argument refused at once is
 * reported through a zero-delay timer).
 *
 * Requests are signed here (st_s3_sign.c), not with CURLOPT_AWS_SIGV4: the
 * headers signed are exactly the ones set on the request (including Host,
 * set explicitly so curl's own choice of port notation cannot differ), the
 * URL's query is the canonical query string itself, and CURLOPT_PATH_AS_IS
 * keeps curl from rewriting the path.  The one header entry that is not
 * signed is "Expect:", a removal that sends nothing (no 100-continue round
 * trip before a PUT body).  A PUT's body is sent as UNSIGNED-PAYLOAD unless
 * st_s3_cfg_t.sign_payload: the signature covers its Content-MD5, which the
 * store checks the body against, so a changed body is refused either way.
 *
 * A PUT whose attempt ended without a clear answer (timeout, connection
 * error, 5xx, or a resend by curl itself) may have landed.  When its retry
 * then meets 412 (the object exists), a HEAD compares the stored ETag with
 * the body's MD5: equal means the earlier attempt landed, and the put
 * succeeds.
 *
 * The file runs past the soft limit of 1,000 lines: it is one state machine
 * (queue, attempts, retries, verification) whose parts all work on s3_op_t
 * and s3_store_t; the pure parts (signing, XML) already live apart.
 */
#include "st_curl.h"
#include "st_objstore.h"
#include "st_pool.h"
#include "st_s3_sign.h"
#include "st_s3_xml.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAX 1024                      /* bytes in a stored key, prefix included (S3's limit) */
#define ERR_BODY_MAX (64u * 1024)         /* bytes of an error body kept */
#define LIST_BODY_MAX (32u * 1024 * 1024) /* bytes of one ListObjectsV2 page */
#define S3_LIST_MAX_KEYS 1000u            /* S3's cap on max-keys */
#define LIST_EMPTY_PAGES_MAX 16           /* truncated pages without keys before giving up */
/* A put of at least this many bytes is hashed (MD5 for Content-MD5 and the
 * ETag check, about 1.4 ms per MB here; with sign_payload also SHA-256 for
 * the signature, 0.6 ms more) on a worker thread, so that the loop goes on
 * serving meanwhile; a smaller one at once, where a worker's round trip
 * would cost more than it saves. */
#define HASH_OFFLOAD_BYTES (256u << 10)
#define HASH_THREADS 2

/* Bytes of a body sent or received per system call (and per curl
 * callback) at most: curl's own buffers, 64 KiB up and 16 KiB down by
 * default, cost a call and a callback per step. */
#define S3_IO_BUFFER (1u << 20)

typedef enum op_kind { OP_PUT, OP_GET, OP_LIST, OP_DEL } op_kind_t;

/* What the next attempt of an op sends. */
typedef enum req_kind {
    REQ_PUT,    /* PUT object */
    REQ_GET,    /* GET object, maybe ranged */
    REQ_HEAD,   /* HEAD object: a get of 0 bytes, or a put's verification after 412 */
    REQ_LIST,   /* GET bucket?list-type=2 */
    REQ_DELETE, /* DELETE object */
} req_kind_t;

/* How the write callback treats the body of the current response. */
typedef enum body_mode {
    BODY_UNSET, /* no byte seen yet */
    BODY_KEEP,  /* 2xx (206 or a list): keep up to body_cap */
    BODY_SLICE, /* 200 to a ranged GET: the whole object; keep [off, off + want) */
    BODY_ERROR, /* not 2xx: keep the first ERR_BODY_MAX bytes */
} body_mode_t;

typedef struct s3_store s3_store_t;

typedef struct s3_op {
    struct s3_op *next, *prev; /* every op of the store */
    struct s3_op *qnext;       /* the wait queue */
    s3_store_t *s;
    op_kind_t kind;
    req_kind_t req; /* what the next attempt sends */
    union {
        st_done_cb done; /* put, del */
        st_data_cb data; /* get */
        st_list_cb list; /* list */
    } cb;
    void *arg;
    char *key; /* full key (prefix included); list: the full prefix */
    /* put */
    const uint8_t *data;     /* the caller's bytes, borrowed until the callback */
    size_t len;              /* bytes in data */
    size_t sent;             /* bytes of data handed to curl in this attempt */
    char md5_hex[33];        /* MD5 of data, hex: what the ETag must be */
    char md5_b64[25];        /* the same, base64: Content-MD5 */
    char content_sha256[65]; /* x-amz-content-sha256 of a put: the SHA-256 of data, hex, or
                              * ST_S3_UNSIGNED_PAYLOAD */
    bool maybe_landed;       /* an earlier attempt may have stored the object */
    /* get */
    uint64_t off;  /* first byte */
    uint64_t want; /* bytes asked for, ST_OBJ_TO_END = all */
    /* list */
    char *start_after;    /* full key, owned; NULL = from the first */
    char *token;          /* continuation token of the next page, owned */
    size_t max_keys;      /* keys the caller asked for */
    st_obj_info_t *objs;  /* collected, keys owned (prefix stripped) */
    size_t nobjs;         /* entries in objs */
    bool more;            /* the listing goes on after objs */
    unsigned empty_pages; /* pages in a row that added no key */
    /* the attempt in flight */
    CURL *easy;
    struct curl_slist *hdrs;
    char *url;
    body_mode_t mode;
    uint8_t *body; /* response bytes kept, owned */
    size_t blen;   /* bytes in body */
    size_t bcap;   /* allocated bytes of body */
    uint64_t skip; /* BODY_SLICE: bytes still to drop before off */
    bool enough;   /* BODY_SLICE: aborted on purpose once want bytes were kept */
    char etag[80]; /* the response's ETag, quotes stripped */
    /* retries */
    unsigned attempts;   /* attempts started for the current request */
    uint64_t deadline;   /* ms (monotonic) when the budget ends; 0 = not started */
    struct event *timer; /* backoff, or delivering a result later */
    bool finish_pending; /* the timer delivers err */
    st_err_t err;        /* result, or the last attempt's error */
} s3_op_t;

struct s3_store {
    st_objstore_t os; /* must be first: the vtable header */
    struct event_base *base;
    st_curl_t *curl;
    char *bucket;
    char *prefix; /* "" or "PREFIX/" */
    char *region;
    char *access_key;
    char *secret_key;
    char *token;     /* session token or NULL */
    char *host;      /* the Host header: authority of the endpoint, "BUCKET." before it
                      * when virtual */
    char *url_base;  /* scheme://host, no trailing '/' */
    char *path_base; /* "/BUCKET" (path style) or "" (virtual) */
    struct curl_slist *connect_to;
    unsigned max_inflight;
    unsigned budget_ms;
    unsigned attempt_ms;
    unsigned backoff_base_ms;
    unsigned backoff_max_ms;
    unsigned page_keys;
    bool etag_check;
    bool sign_payload; /* st_s3_cfg_t.sign_payload */
    void (*log)(void *, const char *);
    void *log_arg;
    unsigned inflight;      /* attempts running */
    s3_op_t all;            /* sentinel: every op not yet finished */
    s3_op_t *qhead, *qtail; /* ops waiting for a slot */
    st_pool_t *hash_pool;   /* workers hashing large puts; NULL: hashed on the loop */
    bool closing;           /* free() is running: refuse new operations */
    uint64_t rng;           /* xorshift state for the jitter */
    char last_error[512];
};

static const char *const method_of[] = {
    [REQ_PUT] = "PUT",  [REQ_GET] = "GET",       [REQ_HEAD] = "HEAD",
    [REQ_LIST] = "GET", [REQ_DELETE] = "DELETE",
};

/* ---------------------------------------------------------------- small helpers */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rng_next(s3_store_t *s)
{
    uint64_t x = s->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* Remember (and log) a failure or a retry of @op. */
static void note(s3_op_t *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(s3_op_t *op, const char *fmt, ...)
{
    s3_store_t *s = op->s;
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(s->last_error, sizeof s->last_error, "%s %s: %s", method_of[op->req],
             op->key ? op->key : "", what);
    if (s->log)
        s->log(s->log_arg, s->last_error);
}

/* A key component: non-empty, not "." or "..". */
static bool comp_ok(const char *c, size_t n)
{
    return n > 0 && !(n == 1 && c[0] == '.') && !(n == 2 && c[0] == '.' && c[1] == '.');
}

/* No control characters (XML 1.0 cannot list them back). */
static bool text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* A key as the directory backend accepts it, at most KEY_MAX bytes once
 * prefixed with @plen bytes. */
static bool key_ok(const char *key, size_t plen)
{
    if (!key || !*key || !text_ok(key))
        return false;
    size_t n = strlen(key);
    if (n + plen > KEY_MAX)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || key[i] == '/') {
            if (!comp_ok(key + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- op lifecycle */

static void op_free(s3_op_t *op)
{
    if (op->timer)
        event_free(op->timer);
    if (op->easy)
        curl_easy_cleanup(op->easy);
    curl_slist_free_all(op->hdrs);
    free(op->url);
    free(op->body);
    free(op->key);
    free(op->start_after);
    free(op->token);
    for (size_t i = 0; i < op->nobjs; i++)
        free((char *)op->objs[i].key);
    free(op->objs);
    free(op);
}

/* Unlink @op, run its callback with @err, free it. */
static void op_finish(s3_op_t *op, st_err_t err)
{
    op->prev->next = op->next;
    op->next->prev = op->prev;
    switch (op->kind) {
    case OP_PUT:
    case OP_DEL:
        op->cb.done(err, op->arg);
        break;
    case OP_GET:
        if (err == ST_OK)
            op->cb.data(ST_OK, op->body ? op->body : (const uint8_t *)"", op->blen, op->arg);
        else
            op->cb.data(err, NULL, 0, op->arg);
        break;
    case OP_LIST:
        if (err == ST_OK)
            op->cb.list(ST_OK, op->objs, op->nobjs, op->more, op->arg);
        else
            op->cb.list(err, NULL, 0, false, op->arg);
        break;
    }
    op_free(op);
}

/* Deliver @err from the loop shortly (never from inside the caller). */
static void op_finish_later(s3_op_t *op, st_err_t err)
{
    op->err = err;
    op->finish_pending = true;
    struct timeval tv = {0, 0};
    evtimer_add(op->timer, &tv);
}

static void op_enqueue(s3_op_t *op)
{
    s3_store_t *s = op->s;
    op->qnext = NULL;
    if (s->qtail)
        s->qtail->qnext = op;
    else
        s->qhead = op;
    s->qtail = op;
}

static void pump(s3_store_t *s);
static void attempt_failed(s3_op_t *op, st_err_t err, bool retriable);

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    s3_op_t *op = arg;
    s3_store_t *s = op->s;
    if (op->finish_pending) {
        op_finish(op, op->err);
        return;
    }
    op_enqueue(op); /* the backoff is over */
    pump(s);
}

/* ---------------------------------------------------------------- curl callbacks */

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    s3_op_t *op = arg;
    size_t room = size * nitems;
    size_t left = op->len - op->sent;
    size_t n = left < room ? left : room;
    memcpy(buf, op->data + op->sent, n);
    op->sent += n;
    return n;
}

/* curl rewinds the body when it resends a request by itself: a reused
 * connection died before any answer came.  The server may have stored the
 * whole body it got before then, so a 412 to the resent request may be our
 * own object. */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    s3_op_t *op = arg;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > op->len)
        return CURL_SEEKFUNC_FAIL;
    if (op->sent == op->len)
        op->maybe_landed = true;
    op->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Append @n bytes to the kept body, up to @cap bytes in all; @returns -1
 * when they do not fit or memory runs out. */
static int body_add(s3_op_t *op, const char *p, size_t n, size_t cap)
{
    if (n > cap - op->blen)
        return -1;
    if (op->blen + n > op->bcap) {
        size_t c = op->bcap ? op->bcap : 16384;
        while (c < op->blen + n)
            c = c > SIZE_MAX / 2 ? SIZE_MAX : c * 2;
        if (c > cap)
            c = cap;
        uint8_t *b = realloc(op->body, c);
        if (!b)
            return -1;
        op->body = b;
        op->bcap = c;
    }
    memcpy(op->body + op->blen, p, n);
    op->blen += n;
    return 0;
}

/* Make room for the body of a successful ranged GET at once: the bytes the
 * server announces (Content-Length; past the skipped part of a whole
 * object), at most the bytes asked for (a get to the end reserves nothing:
 * only the caller's range bounds what is allocated before bytes arrive).
 * Growing the buffer as bytes arrive would copy a large range several
 * times over. */
static void body_reserve(s3_op_t *op)
{
    curl_off_t cl = -1;
    if (op->want == ST_OBJ_TO_END ||
        curl_easy_getinfo(op->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK || cl <= 0)
        return;
    uint64_t n = (uint64_t)cl;
    if (op->mode == BODY_SLICE)
        n = n > op->skip ? n - op->skip : 0;
    if (n > op->want)
        n = op->want;
    if (n == 0 || n > SIZE_MAX || n <= op->bcap)
        return;
    uint8_t *b = realloc(op->body, (size_t)n);
    if (b) { /* else the body grows as it arrives */
        op->body = b;
        op->bcap = (size_t)n;
    }
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    s3_op_t *op = arg;
    size_t n = size * nmemb;
    if (op->mode == BODY_UNSET) {
        long code = 0;
        curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code < 200 || code > 299)
            op->mode = BODY_ERROR;
        else if (op->req == REQ_GET && code == 200 && (op->off > 0 || op->want != ST_OBJ_TO_END))
            op->mode = BODY_SLICE; /* the server ignored Range */
        else
            op->mode = BODY_KEEP;
        op->skip = op->mode == BODY_SLICE ? op->off : 0;
        if (op->req == REQ_GET && op->mode != BODY_ERROR)
            body_reserve(op);
    }
    switch (op->mode) {
    case BODY_ERROR:
        /* Keep the head of an error body; read on so the connection stays usable. */
        if (op->blen < ERR_BODY_MAX) {
            size_t k = ERR_BODY_MAX - op->blen < n ? ERR_BODY_MAX - op->blen : n;
            if (body_add(op, p, k, ERR_BODY_MAX) != 0)
                return 0;
        }
        return n;
    case BODY_SLICE: {
        size_t k = n;
        const char *q = p;
        if (op->skip > 0) {
            size_t d = op->skip < k ? (size_t)op->skip : k;
            op->skip -= d;
            q += d;
            k -= d;
        }
        if (op->want != ST_OBJ_TO_END && op->want - op->blen < k)
            k = (size_t)(op->want - op->blen);
        if (k && body_add(op, q, k, SIZE_MAX) != 0)
            return 0;
        if (op->want != ST_OBJ_TO_END && op->blen == op->want) {
            op->enough = true; /* the rest of the object is not needed */
            return 0;
        }
        return n;
    }
    default:
        if (op->req == REQ_LIST)
            return body_add(op, p, n, LIST_BODY_MAX) == 0 ? n : 0; /* over the cap: fail */
        if (op->req == REQ_GET) {
            /* A 206 carries the range; never keep more than was asked. */
            size_t k = n;
            if (op->want != ST_OBJ_TO_END && op->want - op->blen < k)
                k = (size_t)(op->want - op->blen);
            return body_add(op, p, k, SIZE_MAX) == 0 ? n : 0;
        }
        return n; /* the body of a successful PUT or DELETE says nothing we need */
    }
}

static size_t on_header(char *p, size_t size, size_t nitems, void *arg)
{
    s3_op_t *op = arg;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after a 1xx, say) */
        op->etag[0] = '\0';
        return n;
    }
    if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        const char *v = p + 5, *end = p + n;
        while (v < end && (*v == ' ' || *v == '\t' || *v == '"'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                           end[-1] == '\t' || end[-1] == '"'))
            end--;
        size_t k = (size_t)(end - v);
        if (k >= sizeof op->etag)
            k = sizeof op->etag - 1;
        memcpy(op->etag, v, k);
        op->etag[k] = '\0';
    }
    return n;
}

/* ---------------------------------------------------------------- requests */

/* The request path of @op, encoded. */
static char *req_path(const s3_op_t *op)
{
    const s3_store_t *s = op->s;
    if (op->req == REQ_LIST)
        return strdup(*s->path_base ? s->path_base : "/");
    char *enc = st_s3_uri_encode(op->key, true);
    if (!enc)
        return NULL;
    char *path = str_printf("%s/%s", s->path_base, enc);
    free(enc);
    return path;
}

/* Set the query of a LIST attempt into @q; @returns the count. */
static size_t list_query(const s3_op_t *op, st_s3_kv_t *q, char *maxk, size_t maxk_size)
{
    const s3_store_t *s = op->s;
    size_t n = 0, room = op->max_keys - op->nobjs;
    /* max_keys 0 still asks for one key, to tell whether any follows. */
    size_t page = room == 0 ? 1 : room < s->page_keys ? room : s->page_keys;
    snprintf(maxk, maxk_size, "%zu", page);
    q[n++] = (st_s3_kv_t){"list-type", "2"};
    q[n++] = (st_s3_kv_t){"max-keys", maxk};
    if (op->key[0])
        q[n++] = (st_s3_kv_t){"prefix", op->key};
    if (op->token)
        q[n++] = (st_s3_kv_t){"continuation-token", op->token};
    else if (op->start_after)
        q[n++] = (st_s3_kv_t){"start-after", op->start_after};
    return n;
}

/* The signed header list of the next attempt of @op, as curl header lines
 * (the same pairs that were signed) plus the unsigned "Expect:" removal.
 * @returns 0, or -1 when out of memory. */
static int build_headers(s3_op_t *op, const char *path, const st_s3_kv_t *q, size_t nq)
{
    s3_store_t *s = op->s;
    char amz_date[17], range[64];
    st_s3_amz_date(time(NULL), amz_date);
    st_s3_kv_t h[8];
    size_t nh = 0;
    h[nh++] = (st_s3_kv_t){"Host", s->host};
    h[nh++] = (st_s3_kv_t){"x-amz-date", amz_date};
    h[nh++] = (st_s3_kv_t){"x-amz-content-sha256",
                           op->req == REQ_PUT ? op->content_sha256 : ST_S3_EMPTY_SHA256};
    if (s->token)
        h[nh++] = (st_s3_kv_t){"x-amz-security-token", s->token};
    if (op->req == REQ_PUT) {
        h[nh++] = (st_s3_kv_t){"Content-MD5", op->md5_b64};
        h[nh++] = (st_s3_kv_t){"If-None-Match", "*"};
    }
    if (op->req == REQ_GET && (op->off > 0 || op->want != ST_OBJ_TO_END)) {
        if (op->want == ST_OBJ_TO_END)
            snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)op->off);
        else
            snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)op->off,
                     (unsigned long long)(op->off + op->want - 1));
        h[nh++] = (st_s3_kv_t){"Range", range};
    }
    st_s3_sign_req_t sr = {
        .method = method_of[op->req],
        .path = path,
        .query = q,
        .nquery = nq,
        .headers = h,
        .nheaders = nh,
        .payload_sha256 = op->req == REQ_PUT ? op->content_sha256 : ST_S3_EMPTY_SHA256,
        .amz_date = amz_date,
        .region = s->region,
        .service = "s3",
        .access_key = s->access_key,
        .secret_key = s->secret_key,
    };
    char *auth = st_s3_sign(&sr, NULL);
    if (!auth)
        return -1;
    h[nh++] = (st_s3_kv_t){"Authorization", auth};
    struct curl_slist *list = NULL;
    int rc = 0;
    for (size_t i = 0; i < nh && rc == 0; i++) {
        char *line = str_printf("%s: %s", h[i].name, h[i].value);
        struct curl_slist *l = line ? curl_slist_append(list, line) : NULL;
        free(line);
        if (!l)
            rc = -1;
        else
            list = l;
    }
    free(auth);
    struct curl_slist *l = rc == 0 ? curl_slist_append(list, "Expect:") : NULL;
    if (!l) {
        curl_slist_free_all(list);
        return -1;
    }
    op->hdrs = l;
    return 0;
}

/* Prepare the easy handle of the next attempt of @op. */
static int build_request(s3_op_t *op, long timeout_ms)
{
    s3_store_t *s = op->s;
    st_s3_kv_t q[5];
    char maxk[24];
    size_t nq = op->req == REQ_LIST ? list_query(op, q, maxk, sizeof maxk) : 0;
    char *path = req_path(op);
    char *qs = st_s3_query_string(q, nq);
    int rc = -1;
    if (!path || !qs || build_headers(op, path, q, nq) != 0)
        goto out;
    op->url = str_printf("%s%s%s%s", s->url_base, path, *qs ? "?" : "", qs);
    op->easy = op->url ? curl_easy_init() : NULL;
    if (!op->easy)
        goto out;
    CURL *e = op->easy;
    curl_easy_setopt(e, CURLOPT_URL, op->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, op->hdrs);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nuthatch");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, op);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, op);
    if (s->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, s->connect_to);
    switch (op->req) {
    case REQ_GET:
        /* Read bodies in large steps: curl's default is 16 KiB per recv()
         * and per on_write. */
        {
            uint64_t b = op->want < S3_IO_BUFFER ? op->want : S3_IO_BUFFER;
            curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)(b > 16384 ? b : 16384));
        }
        break;
    case REQ_PUT:
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)S3_IO_BUFFER); /* default 64 KiB */
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)op->len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, op);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, op);
        break;
    case REQ_HEAD:
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case REQ_DELETE:
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    default:
        break;
    }
    rc = 0;
out:
    free(path);
    free(qs);
    return rc;
}

/* Drop what the last attempt left behind. */
static void attempt_reset(s3_op_t *op)
{
    if (op->easy)
        curl_easy_cleanup(op->easy);
    op->easy = NULL;
    curl_slist_free_all(op->hdrs);
    op->hdrs = NULL;
    free(op->url);
    op->url = NULL;
    free(op->body);
    op->body = NULL;
    op->blen = op->bcap = 0;
    op->mode = BODY_UNSET;
    op->enough = false;
    op->etag[0] = '\0';
    op->sent = 0;
}

static void on_done(CURLcode rc, CURL *easy, void *arg);

/* Start the next attempt of @op (it holds no slot yet). */
static void attempt_start(s3_op_t *op)
{
    s3_store_t *s = op->s;
    uint64_t now = now_ms();
    if (op->deadline == 0)
        op->deadline = now + s->budget_ms;
    if (now >= op->deadline) { /* the backoff timer ran late */
        st_err_t err = op->err != ST_OK ? op->err : ST_ERR_TIMEOUT;
        note(op, "giving up after %u attempts (%s)", op->attempts, st_err_str(err));
        op_finish_later(op, err);
        return;
    }
    uint64_t left = op->deadline - now;
    long timeout = (long)(left < s->attempt_ms ? left : s->attempt_ms);
    attempt_reset(op);
    op->attempts++;
    if (build_request(op, timeout) != 0) {
        attempt_reset(op);
        note(op, "out of memory building the request");
        attempt_failed(op, ST_ERR_NOMEM, true);
        return;
    }
    s->inflight++;
    if (st_curl_start(s->curl, op->easy, on_done, op) != 0) {
        s->inflight--;
        attempt_reset(op);
        note(op, "cannot start the transfer");
        attempt_failed(op, ST_ERR_IO, true);
    }
}

/* Start waiting ops while slots are free. */
static void pump(s3_store_t *s)
{
    while (!s->closing && s->qhead && s->inflight < s->max_inflight) {
        s3_op_t *op = s->qhead;
        s->qhead = op->qnext;
        if (!s->qhead)
            s->qtail = NULL;
        op->qnext = NULL;
        attempt_start(op);
    }
}

/* The attempt of @op failed with @err: wait and retry when @retriable and
 * the budget allows, else report @err (from the loop, later). */
static void attempt_failed(s3_op_t *op, st_err_t err, bool retriable)
{
    s3_store_t *s = op->s;
    op->err = err;
    if (!retriable) {
        op_finish_later(op, err);
        return;
    }
    unsigned shift = op->attempts > 1 ? op->attempts - 1 : 0;
    uint64_t cap = (uint64_t)s->backoff_base_ms << (shift > 20 ? 20 : shift);
    if (cap > s->backoff_max_ms)
        cap = s->backoff_max_ms;
    uint64_t wait = rng_next(s) % (cap + 1); /* full jitter */
    uint64_t now = now_ms();
    if (now + wait >= op->deadline) {
        note(op, "giving up after %u attempts (%s)", op->attempts, st_err_str(err));
        op_finish_later(op, err);
        return;
    }
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    if (evtimer_add(op->timer, &tv) != 0)
        op_finish_later(op, err);
}

/* ---------------------------------------------------------------- results */

/* Whether curl's @rc may go away when the request is repeated. */
static bool curl_retriable(CURLcode rc)
{
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR: /* a body over its cap */
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_LOGIN_DENIED:
        return false;
    default:
        return true; /* connection refused or reset, timeouts, partial transfers, DNS */
    }
}

/* S3 error codes that come with a 4xx status and yet may pass on retry. */
static bool code_retriable(const char *code)
{
    static const char *const codes[] = {
        "RequestTimeout",
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",
        "IncompleteBody",
        "XAmzContentSHA256Mismatch",
        "OperationAborted",
        "ConditionalRequestConflict",
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

/* Strip the store's prefix from the page in @l into @op's results. */
static int list_take(s3_op_t *op, st_s3_list_t *l)
{
    size_t plen = strlen(op->s->prefix);
    if (l->n == 0)
        return 0;
    st_obj_info_t *objs = realloc(op->objs, (op->nobjs + l->n) * sizeof(*objs));
    if (!objs)
        return -1;
    op->objs = objs;
    for (size_t i = 0; i < l->n; i++) {
        st_s3_list_entry_t *e = &l->entries[i];
        if (strncmp(e->key, op->s->prefix, plen) != 0 || !e->key[plen])
            continue; /* not ours: a server ignoring prefix= */
        char *key = strdup(e->key + plen);
        if (!key)
            return -1;
        op->objs[op->nobjs++] = (st_obj_info_t){
            .key = key,
            .size = e->size,
            .mtime_ms = e->mtime_ms,
        };
    }
    return 0;
}

/* A page of a listing arrived: finish, or ask for the next page. */
static void list_page(s3_op_t *op)
{
    st_s3_list_t l;
    if (st_s3_xml_parse_list((const char *)op->body, op->blen, &l) != 0) {
        note(op, "unreadable ListObjectsV2 result (%zu bytes)", op->blen);
        op_finish(op, ST_ERR_IO);
        return;
    }
    size_t before = op->nobjs;
    if (list_take(op, &l) != 0) {
        st_s3_list_free(&l);
        op_finish(op, ST_ERR_NOMEM);
        return;
    }
    bool truncated = l.truncated;
    char *token = l.next_token;
    l.next_token = NULL;
    st_s3_list_free(&l);
    if (op->nobjs > op->max_keys) { /* max_keys 0 asked for one: it only tells "more" */
        for (size_t i = op->max_keys; i < op->nobjs; i++)
            free((char *)op->objs[i].key);
        op->nobjs = op->max_keys;
        op->more = true;
        free(token);
        op_finish(op, ST_OK);
        return;
    }
    op->empty_pages = op->nobjs == before ? op->empty_pages + 1 : 0;
    if (op->nobjs == op->max_keys || !truncated || (!token && op->nobjs > 0)) {
        /* Full (more: the server has more), done, or truncated without a
         * continuation token (more: the caller goes on after the last key). */
        op->more = truncated;
        free(token);
        op_finish(op, ST_OK);
        return;
    }
    if (!token || op->empty_pages > LIST_EMPTY_PAGES_MAX) {
        note(op, "truncated listing without keys or a way on");
        free(token);
        op_finish(op, ST_ERR_IO);
        return;
    }
    free(op->token);
    op->token = token;
    op->attempts = 0;
    op->deadline = 0; /* each page gets the whole budget */
    op->err = ST_OK;
    op_enqueue(op);
}

/* A 2xx arrived for @op's current request. */
static void on_success(s3_op_t *op, long code)
{
    s3_store_t *s = op->s;
    switch (op->req) {
    case REQ_PUT:
        if (s->etag_check && strcasecmp(op->etag, op->md5_hex) != 0) {
            note(op, "HTTP %ld with ETag \"%s\", the body's MD5 is %s: stored bytes differ", code,
                 op->etag, op->md5_hex);
            op_finish(op, ST_ERR_CORRUPT);
            return;
        }
        op_finish(op, ST_OK);
        return;
    case REQ_HEAD:
        if (op->kind == OP_GET) { /* a get of 0 bytes: the object exists */
            op->blen = 0;
            op_finish(op, ST_OK);
            return;
        }
        /* A put's check after 412: is the object there the one we sent? */
        if (s->etag_check && strcasecmp(op->etag, op->md5_hex) == 0) {
            op_finish(op, ST_OK);
            return;
        }
        note(op, "object exists (ETag \"%s\", ours %s)", op->etag, op->md5_hex);
        op_finish(op, ST_ERR_EXISTS);
        return;
    case REQ_GET:
        op_finish(op, ST_OK);
        return;
    case REQ_DELETE:
        op_finish(op, ST_OK);
        return;
    case REQ_LIST:
        list_page(op);
        return;
    }
}

/* A non-2xx status @code arrived for @op's current request; @s3code is the
 * S3 error code from the body ("" when none). */
static void on_status(s3_op_t *op, long code, const char *s3code, const char *msg)
{
    if (code == 404) {
        switch (op->req) {
        case REQ_GET:
            op_finish(op, ST_ERR_NOT_FOUND);
            return;
        case REQ_HEAD:
            if (op->kind == OP_GET) {
                op_finish(op, ST_ERR_NOT_FOUND);
                return;
            }
            /* 412 and then gone: try the put again. */
            op->req = REQ_PUT;
            attempt_failed(op, ST_ERR_IO, true);
            return;
        case REQ_DELETE:
            op_finish(op, ST_OK);
            return;
        default:
            break;
        }
    }
    if (code == 412 && op->req == REQ_PUT) {
        if (op->maybe_landed) {
            op->req = REQ_HEAD; /* did an earlier attempt of ours land? */
            op->attempts = 0;
            op_enqueue(op);
            return;
        }
        note(op, "HTTP 412: the object exists");
        op_finish(op, ST_ERR_EXISTS);
        return;
    }
    if (code == 416 && op->req == REQ_GET) { /* the range starts past the end */
        free(op->body);
        op->body = NULL;
        op->blen = 0;
        op_finish(op, ST_OK);
        return;
    }
    bool digest =
        strcmp(s3code, "BadDigest") == 0 || strcmp(s3code, "XAmzContentSHA256Mismatch") == 0;
    bool retriable = code >= 500 || code == 429 || code == 408 || code_retriable(s3code);
    note(op, "HTTP %ld %s%s%s (attempt %u)", code, *s3code ? s3code : "", *msg ? ": " : "", msg,
         op->attempts);
    if (op->req == REQ_PUT && code >= 500)
        op->maybe_landed = true;
    attempt_failed(op, digest ? ST_ERR_CORRUPT : ST_ERR_IO, retriable);
}

static void on_done(CURLcode rc, CURL *easy, void *arg)
{
    s3_op_t *op = arg;
    s3_store_t *s = op->s;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    s->inflight--;
    if (rc == CURLE_WRITE_ERROR && op->enough)
        rc = CURLE_OK; /* stopped reading a whole object once the range was in */
    if (rc != CURLE_OK) {
        note(op, "%s (attempt %u)", curl_easy_strerror(rc), op->attempts);
        if (op->req == REQ_PUT)
            op->maybe_landed = true;
        attempt_failed(op,
                       rc == CURLE_OPERATION_TIMEDOUT ? ST_ERR_TIMEOUT
                       : rc == CURLE_OUT_OF_MEMORY    ? ST_ERR_NOMEM
                                                      : ST_ERR_IO,
                       curl_retriable(rc));
    } else if (code >= 200 && code <= 299) {
        on_success(op, code);
    } else {
        char s3code[64] = "", msg[256] = "";
        if (op->blen)
            st_s3_xml_parse_error((const char *)op->body, op->blen, s3code, sizeof s3code, msg,
                                  sizeof msg);
        on_status(op, code, s3code, msg);
    }
    pump(s);
}

/* ---------------------------------------------------------------- operations */

static s3_op_t *op_new(s3_store_t *s, op_kind_t kind, req_kind_t req, void *arg)
{
    if (s->closing)
        return NULL;
    s3_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->s = s;
    op->kind = kind;
    op->req = req;
    op->arg = arg;
    op->timer = evtimer_new(s->base, timer_cb, op);
    if (!op->timer) {
        free(op);
        return NULL;
    }
    return op;
}

/* Set @op's full key from @key (a bad key is reported through the
 * callback); @returns -1 when out of memory. */
static int op_set_key(s3_op_t *op, const char *key, bool *bad)
{
    *bad = !key_ok(key, strlen(op->s->prefix));
    if (*bad)
        return 0;
    op->key = str_printf("%s%s", op->s->prefix, key);
    return op->key ? 0 : -1;
}

/* Register @op among the ops not yet finished. */
static void op_link(s3_op_t *op)
{
    s3_store_t *s = op->s;
    op->next = &s->all;
    op->prev = s->all.prev;
    s->all.prev->next = op;
    s->all.prev = op;
}

/* Register @op and start or queue it, or report ST_ERR_INVALID later. */
static int op_submit(s3_op_t *op, bool bad)
{
    s3_store_t *s = op->s;
    op_link(op);
    if (bad) {
        op_finish_later(op, ST_ERR_INVALID);
        return 0;
    }
    op_enqueue(op);
    pump(s);
    return 0;
}

/* The digests of a put's body (a worker thread's, or the loop's). */
static void put_hash_work(void *arg)
{
    s3_op_t *op = arg;
    uint8_t md5[16];
    st_s3_md5(op->data, op->len, md5);
    st_s3_hex(md5, sizeof md5, op->md5_hex);
    st_s3_base64(md5, sizeof md5, op->md5_b64);
    if (op->s->sign_payload)
        st_s3_sha256_hex(op->data, op->len, op->content_sha256);
    else
        memcpy(op->content_sha256, ST_S3_UNSIGNED_PAYLOAD, sizeof ST_S3_UNSIGNED_PAYLOAD);
}

static void put_hash_after(void *arg)
{
    s3_op_t *op = arg;
    s3_store_t *s = op->s;
    if (s->closing)
        return; /* s3_free finishes it */
    op_enqueue(op);
    pump(s);
}

static int s3_put(st_objstore_t *os, const char *key, const uint8_t *data, size_t len,
                  st_done_cb cb, void *arg)
{
    s3_store_t *s = (s3_store_t *)os;
    bool bad;
    s3_op_t *op = op_new(s, OP_PUT, REQ_PUT, arg);
    if (!op || op_set_key(op, key, &bad) != 0) {
        if (op)
            op_free(op);
        return -1;
    }
    op->cb.done = cb;
    op->data = data;
    op->len = len;
    if (!bad && len >= HASH_OFFLOAD_BYTES && s->hash_pool) {
        op_link(op); /* s3_free waits for the hashing, then finishes it */
        if (st_pool_submit(s->hash_pool, put_hash_work, put_hash_after, op) != 0) {
            put_hash_work(op); /* the pool is stopping: hash here */
            put_hash_after(op);
        }
        return 0;
    }
    if (!bad)
        put_hash_work(op);
    return op_submit(op, bad);
}

static int s3_get_range(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                        st_data_cb cb, void *arg)
{
    s3_store_t *s = (s3_store_t *)os;
    bool bad;
    /* Nothing to read: a HEAD still tells a missing key from an empty range. */
    s3_op_t *op = op_new(s, OP_GET, len == 0 ? REQ_HEAD : REQ_GET, arg);
    if (!op || op_set_key(op, key, &bad) != 0) {
        if (op)
            op_free(op);
        return -1;
    }
    op->cb.data = cb;
    op->off = off;
    op->want = len;
    if (len != ST_OBJ_TO_END && off > UINT64_MAX - len)
        op->want = ST_OBJ_TO_END; /* the range reaches past any object: read to the end */
    return op_submit(op, bad);
}

static int s3_list(st_objstore_t *os, const char *prefix, const char *start_after, size_t max_keys,
                   st_list_cb cb, void *arg)
{
    s3_store_t *s = (s3_store_t *)os;
    s3_op_t *op = op_new(s, OP_LIST, REQ_LIST, arg);
    if (!op)
        return -1;
    op->cb.list = cb;
    op->max_keys = max_keys;
    bool bad = (prefix && !text_ok(prefix)) || (start_after && !text_ok(start_after));
    op->key = str_printf("%s%s", s->prefix, prefix ? prefix : "");
    if (start_after)
        op->start_after = str_printf("%s%s", s->prefix, start_after);
    if (!op->key || (start_after && !op->start_after)) {
        op_free(op);
        return -1;
    }
    return op_submit(op, bad);
}

static int s3_del(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    s3_store_t *s = (s3_store_t *)os;
    bool bad;
    s3_op_t *op = op_new(s, OP_DEL, REQ_DELETE, arg);
    if (!op || op_set_key(op, key, &bad) != 0) {
        if (op)
            op_free(op);
        return -1;
    }
    op->cb.done = cb;
    return op_submit(op, bad);
}

static void store_free_fields(s3_store_t *s)
{
    free(s->bucket);
    free(s->prefix);
    free(s->region);
    free(s->access_key);
    if (s->secret_key) {
        memset(s->secret_key, 0, strlen(s->secret_key));
        free(s->secret_key);
    }
    free(s->token);
    free(s->host);
    free(s->url_base);
    free(s->path_base);
    curl_slist_free_all(s->connect_to);
    free(s);
}

static void s3_free(st_objstore_t *os)
{
    s3_store_t *s = (s3_store_t *)os;
    s->closing = true; /* callbacks below cannot start new operations */
    if (s->hash_pool)  /* the hashing in progress ends; its ops stay for below */
        st_pool_free(s->hash_pool);
    s->hash_pool = NULL;
    while (s->all.next != &s->all) {
        s3_op_t *op = s->all.next;
        if (op->easy) /* a no-op unless the transfer is still running */
            st_curl_cancel(s->curl, op->easy);
        evtimer_del(op->timer);
        op_finish(op, op->finish_pending ? op->err : ST_ERR_CLOSED); /* a known result stands */
    }
    store_free_fields(s);
}

static const st_objstore_ops_t s3_ops;

const char *st_objstore_s3_last_error(const st_objstore_t *os)
{
    return os->ops == &s3_ops ? ((const s3_store_t *)os)->last_error : "";
}

static const st_objstore_ops_t s3_ops = {
    .name = "s3",
    .put = s3_put,
    .get_range = s3_get_range,
    .list = s3_list,
    .del = s3_del,
    .free = s3_free,
};

/* ---------------------------------------------------------------- creation */

/* Split @endpoint into scheme ("http"/"https") and authority (host[:port]);
 * @returns 0, or -1 with a reason in @why. */
static int parse_endpoint(const char *endpoint, char **scheme, char **authority, const char **why)
{
    const char *rest;
    if (strncmp(endpoint, "http://", 7) == 0) {
        *scheme = strdup("http");
        rest = endpoint + 7;
    } else if (strncmp(endpoint, "https://", 8) == 0) {
        *scheme = strdup("https");
        rest = endpoint + 8;
    } else {
        *why = "must start with http:// or https://";
        return -1;
    }
    size_t n = strcspn(rest, "/?#");
    if (n == 0 || (rest[n] && strcmp(rest + n, "/") != 0)) {
        *why = n == 0 ? "has no host" : "must be scheme://host[:port] without a path";
        free(*scheme);
        *scheme = NULL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rest[i];
        if (c <= ' ' || c == '@' || c >= 0x7f) {
            *why = "has a bad character in its host";
            free(*scheme);
            *scheme = NULL;
            return -1;
        }
    }
    *authority = strndup(rest, n);
    if (!*scheme || !*authority) {
        free(*scheme);
        free(*authority);
        *why = "out of memory";
        return -1;
    }
    return 0;
}

/* A bucket name as S3 allows it: 3..63 of a-z 0-9 . -, starting and ending
 * with a letter or digit. */
static bool bucket_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (c != '.' && c != '-'))
            return false;
        if ((i == 0 || i == n - 1) && !alnum)
            return false;
    }
    return true;
}

/* The prefix with '/' at either end dropped, then "PREFIX/" (or ""). */
static char *norm_prefix(const char *p)
{
    if (!p)
        p = "";
    while (*p == '/')
        p++;
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    return n ? str_printf("%.*s/", (int)n, p) : strdup("");
}

static int fill_store(s3_store_t *s, const st_s3_cfg_t *cfg, char *errstr, size_t errstr_size)
{
    const char *why = NULL;
    char *scheme = NULL, *authority = NULL;
    const char *region = cfg->region && *cfg->region ? cfg->region : "us-east-1";
    char *default_ep =
        cfg->endpoint && *cfg->endpoint ? NULL : str_printf("https://s3.%s.amazonaws.com", region);
    const char *endpoint = default_ep ? default_ep : cfg->endpoint;
    int rc = -1;
    if (!cfg->bucket || !bucket_ok(cfg->bucket)) {
        snprintf(errstr, errstr_size, "s3: bad bucket name \"%s\"", cfg->bucket ? cfg->bucket : "");
        goto out;
    }
    if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key) {
        snprintf(errstr, errstr_size,
                 "s3: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
        goto out;
    }
    if (!endpoint || parse_endpoint(endpoint, &scheme, &authority, &why) != 0) {
        snprintf(errstr, errstr_size, "s3: endpoint \"%s\" %s", endpoint ? endpoint : "",
                 why ? why : "out of memory");
        goto out;
    }
    s->prefix = norm_prefix(cfg->prefix);
    if (s->prefix && (strlen(s->prefix) >= KEY_MAX || !text_ok(s->prefix))) {
        snprintf(errstr, errstr_size, "s3: bad prefix \"%s\"", cfg->prefix);
        goto out;
    }
    bool virt = cfg->addressing == ST_S3_ADDR_VIRTUAL;
    s->bucket = strdup(cfg->bucket);
    s->region = strdup(region);
    s->access_key = strdup(cfg->access_key);
    s->secret_key = strdup(cfg->secret_key);
    if (cfg->session_token && *cfg->session_token)
        s->token = strdup(cfg->session_token);
    s->host = virt ? str_printf("%s.%s", cfg->bucket, authority) : strdup(authority);
    s->url_base = s->host ? str_printf("%s://%s", scheme, s->host) : NULL;
    s->path_base = virt ? strdup("") : str_printf("/%s", cfg->bucket);
    for (const char *const *ct = cfg->connect_to; ct && *ct; ct++) {
        struct curl_slist *l = curl_slist_append(s->connect_to, *ct);
        if (!l)
            goto oom;
        s->connect_to = l;
    }
    if (!s->prefix || !s->bucket || !s->region || !s->access_key || !s->secret_key ||
        (cfg->session_token && *cfg->session_token && !s->token) || !s->host || !s->url_base ||
        !s->path_base)
        goto oom;
    rc = 0;
    goto out;
oom:
    snprintf(errstr, errstr_size, "s3: out of memory");
out:
    free(scheme);
    free(authority);
    free(default_ep);
    return rc;
}

st_objstore_t *st_objstore_s3_new(struct event_base *base, struct st_curl *curl,
                                  const st_s3_cfg_t *cfg, char *errstr, size_t errstr_size)
{
    s3_store_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "s3: out of memory");
        return NULL;
    }
    if (fill_store(s, cfg, errstr, errstr_size) != 0) {
        store_free_fields(s);
        return NULL;
    }
    s->os.ops = &s3_ops;
    s->base = base;
    s->curl = curl;
    s->all.next = s->all.prev = &s->all;
    s->max_inflight = cfg->max_inflight ? cfg->max_inflight : 16;
    s->budget_ms = cfg->retry_budget_ms ? cfg->retry_budget_ms : 30000;
    s->attempt_ms = cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : 10000;
    s->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : 100;
    s->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 5000;
    s->page_keys = cfg->list_page_keys && cfg->list_page_keys < S3_LIST_MAX_KEYS
                       ? cfg->list_page_keys
                       : S3_LIST_MAX_KEYS;
    s->etag_check = !cfg->no_etag_check;
    s->sign_payload = cfg->sign_payload;
    s->hash_pool = st_pool_new(base, HASH_THREADS, "nh-s3hash"); /* NULL: the loop hashes */
    s->log = cfg->log;
    s->log_arg = cfg->log_arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)s ^
             ((uint64_t)getpid() << 40);
    if (s->rng == 0)
        s->rng = 0x9e3779b97f4a7c15ull;
    return &s->os;
}
