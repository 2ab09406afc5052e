/*
 * gw_api_fetch.c: Fetch (key 1), v4-13.
 *
 * A fetch reads every requested partition (committed data only: offsets
 * below the high watermark), then answers when it has min_bytes, when
 * max_wait_ms passed, or at once when a partition has an error.  Otherwise
 * it waits -- a long poll woken by commits through st_waiter_t, bounded by a
 * libevent timer, never polling -- and reads again.  max_bytes bounds the
 * answer except that the first partition with data always gets at least one
 * whole batch; partition_max_bytes bounds each partition the same way.
 * Sessionless (session_id 0), no aborted transactions, last stable offset =
 * high watermark (kafkajs reads READ_COMMITTED), no preferred read replica.
 * v13 names topics by id (UNKNOWN_TOPIC_ID when unknown).  A partition this
 * node does not lead gets NOT_LEADER_OR_FOLLOWER; a current_leader_epoch
 * (v9+) other than -1 below the partition's FENCED_LEADER_EPOCH, above it
 * UNKNOWN_LEADER_EPOCH.
 *
 * Records are not copied: the request keeps the st_buf_t its slices lie in
 * (gw_req_keep), and the response refers to every slice of at least
 * GW_RESP_REFER_MIN bytes, which gw_conn.c hands to the socket's evbuffer
 * by reference.  A partition read as several slices answers them as the
 * pieces of one records value (records_parts).
 */
#include "gw_api.h"

#include <stdlib.h>

#include <event2/event.h>

#include "gw_log.h"

typedef struct fetch_part {
    gw_req_t *req;
    const kp_fetch_request_fetch_topic_t *ft;     /* request topic (view) */
    const kp_fetch_request_fetch_partition_t *fp; /* request partition (view) */
    kp_fetch_response_partition_data_t *pd;       /* response slot */
    st_waiter_t waiter;                           /* long-poll registration */
    st_slice_t *slices;                           /* batches read this round (refs held) */
    size_t nslices;
    size_t bytes; /* sum of the slices' lengths */
} fetch_part_t;

typedef struct fetch_state {
    kp_fetch_response_t resp;
    fetch_part_t *parts; /* every requested partition, in request order */
    int32_t nparts;
    struct event *deadline; /* max_wait_ms */
    struct event *wake_ev;  /* deferred wake-up after a commit */
    bool waiting;           /* registered as waiters, no read in flight */
    bool expired;           /* max_wait passed or cancelled: answer after this round */
} fetch_state_t;

static void start_round(gw_req_t *req);

static void drop_slices(fetch_part_t *p)
{
    for (size_t i = 0; i < p->nslices; i++)
        st_buf_unref(p->slices[i].buf);
    free(p->slices);
    p->slices = NULL;
    p->nslices = 0;
    p->bytes = 0;
}

static void unwait_all(fetch_state_t *fs)
{
    for (int32_t i = 0; i < fs->nparts; i++)
        if (fs->parts[i].waiter.part)
            st_part_unwait(&fs->parts[i].waiter);
    fs->waiting = false;
}

static void fetch_free(gw_req_t *req)
{
    fetch_state_t *fs = req->hstate;
    unwait_all(fs);
    for (int32_t i = 0; i < fs->nparts; i++)
        drop_slices(&fs->parts[i]);
    if (fs->deadline)
        event_free(fs->deadline);
    if (fs->wake_ev)
        event_free(fs->wake_ev);
}

/* The partition @p names, or NULL with the error set in its response. */
static st_part_t *resolve(gw_req_t *req, fetch_part_t *p)
{
    st_topic_t *topic = req->api_version >= 13 ? gw_topic_find_id(req->srv, p->ft->topic_id)
                                               : gw_topic_find(req->srv, p->ft->topic);
    st_part_t *part = topic ? gw_topic_part(topic, p->fp->partition) : NULL;
    if (!part)
        p->pd->error_code =
            (int16_t)(!topic && req->api_version >= 13 ? KP_ERR_UNKNOWN_TOPIC_ID
                                                       : KP_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    else if (!gw_leads(req->srv, topic, p->fp->partition)) {
        p->pd->error_code = KP_ERR_NOT_LEADER_OR_FOLLOWER;
        part = NULL;
    } else if (p->fp->current_leader_epoch != -1 && /* v9+ */
               p->fp->current_leader_epoch != st_part_leader_epoch(part)) {
        p->pd->error_code = p->fp->current_leader_epoch < st_part_leader_epoch(part)
                                ? KP_ERR_FENCED_LEADER_EPOCH
                                : KP_ERR_UNKNOWN_LEADER_EPOCH;
        part = NULL;
    }
    return part;
}

/* Point each partition's records at its slices, kept for the response,
 * dropping partitions past max_bytes, and answer. */
static void respond(gw_req_t *req)
{
    const kp_fetch_request_t *rq = req->body;
    fetch_state_t *fs = req->hstate;
    req->cancel = NULL;
    unwait_all(fs);
    evtimer_del(fs->deadline);
    size_t total = 0, max = rq->max_bytes > 0 ? (size_t)rq->max_bytes : 1;
    for (int32_t i = 0; i < fs->nparts; i++) {
        fetch_part_t *p = &fs->parts[i];
        if (p->bytes == 0)
            continue;
        if (total > 0 && total + p->bytes > max) {
            drop_slices(p); /* the client asks again from the same offset */
            continue;
        }
        total += p->bytes;
        kp_bytes_t *parts = gw_req_alloc(req, p->nslices * sizeof *parts);
        for (size_t k = 0; k < p->nslices; k++) {
            const st_slice_t *s = &p->slices[k];
            gw_req_keep(req, s->buf);
            parts[k] = (kp_bytes_t){s->buf->data + s->off, (int32_t)s->len};
        }
        if (p->nslices == 1) {
            p->pd->records = parts[0];
        } else {
            p->pd->records_parts = parts;
            p->pd->records_parts_count = (int32_t)p->nslices;
        }
    }
    gw_req_respond(req, &fs->resp);
}

static void waiter_fn(st_waiter_t *w, void *arg)
{
    (void)w;
    gw_req_t *req = arg;
    fetch_state_t *fs = req->hstate;
    /* Never re-enter the log from its own wake-up: continue from the loop. */
    event_active(fs->wake_ev, 0, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_req_t *req = arg;
    fetch_state_t *fs = req->hstate;
    if (!fs->waiting)
        return;
    req->cancel = NULL;
    unwait_all(fs);
    start_round(req);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_req_t *req = arg;
    fetch_state_t *fs = req->hstate;
    fs->expired = true;
    if (fs->waiting) { /* else a round is reading and answers when done */
        req->cancel = NULL;
        unwait_all(fs);
        start_round(req);
    }
}

/* Connection closing or server stopping while waiting: answer now. */
static void fetch_cancel(gw_req_t *req)
{
    fetch_state_t *fs = req->hstate;
    fs->expired = true;
    respond(req);
}

/* Register as a waiter on every partition; false when one already has data
 * beyond what was read (a commit landed while reading). */
static bool wait_all(gw_req_t *req)
{
    fetch_state_t *fs = req->hstate;
    for (int32_t i = 0; i < fs->nparts; i++) {
        fetch_part_t *p = &fs->parts[i];
        st_part_t *part = resolve(req, p);
        if (!part)
            return false;
        if (p->bytes == 0 && st_part_hw(part) > p->fp->fetch_offset)
            return false;
        p->waiter.fn = waiter_fn;
        p->waiter.arg = req;
        st_part_wait(part, &p->waiter);
    }
    fs->waiting = true;
    req->cancel = fetch_cancel;
    return true;
}

static void round_done(gw_req_t *req)
{
    const kp_fetch_request_t *rq = req->body;
    fetch_state_t *fs = req->hstate;
    size_t total = 0;
    bool error = false;
    for (int32_t i = 0; i < fs->nparts; i++) {
        total += fs->parts[i].bytes;
        error |= fs->parts[i].pd->error_code != KP_ERR_NONE;
    }
    bool enough = rq->min_bytes <= 0 || total >= (size_t)rq->min_bytes;
    if (error || enough || fs->expired || rq->max_wait_ms <= 0 || req->srv->stopping ||
        !gw_req_conn_open(req)) {
        respond(req);
        return;
    }
    if (!wait_all(req)) {
        /* New data, or a topic vanished: read again (an error answers). */
        unwait_all(fs);
        start_round(req);
    }
}

static void read_cb(st_err_t err, const st_slice_t *slices, size_t n, void *arg)
{
    fetch_part_t *p = arg;
    gw_req_t *req = p->req;
    if (err != ST_OK) {
        p->pd->error_code = (int16_t)gw_err_from_st(err);
    } else if (n > 0) {
        p->slices = malloc(n * sizeof *p->slices);
        if (!p->slices) {
            p->pd->error_code = (int16_t)gw_err_from_st(ST_ERR_NOMEM);
        } else {
            for (size_t i = 0; i < n; i++) {
                p->slices[i] = slices[i];
                st_buf_ref(slices[i].buf);
                p->bytes += slices[i].len;
            }
            p->nslices = n;
        }
    }
    if (--req->pending == 0)
        round_done(req);
}

/* Read one partition from its fetch offset, if there is anything to read. */
static void read_part(gw_req_t *req, fetch_part_t *p, size_t limit)
{
    kp_fetch_response_partition_data_t *pd = p->pd;
    pd->error_code = KP_ERR_NONE;
    pd->high_watermark = pd->last_stable_offset = pd->log_start_offset = -1;
    pd->records = (kp_bytes_t){(const uint8_t *)"", 0};
    pd->records_parts = NULL;
    pd->records_parts_count = 0;
    st_part_t *part = resolve(req, p);
    if (!part)
        return;
    int64_t hw = st_part_hw(part), start = st_part_log_start(part), off = p->fp->fetch_offset;
    pd->high_watermark = hw;
    pd->last_stable_offset = hw;  /* v4+: no transactions, so LSO = HW */
    pd->log_start_offset = start; /* v5+ */
    if (off < start || off > hw) {
        pd->error_code = KP_ERR_OFFSET_OUT_OF_RANGE;
        return;
    }
    if (off == hw)
        return; /* nothing new yet */
    size_t pmax = p->fp->partition_max_bytes > 0 ? (size_t)p->fp->partition_max_bytes : 1;
    int rc = st_part_read(part, off, pmax < limit ? pmax : limit, read_cb, p);
    if (rc != 0)
        pd->error_code = (int16_t)gw_err_from_st(gw_st_start_err(rc));
    else
        req->pending++;
}

static void start_round(gw_req_t *req)
{
    const kp_fetch_request_t *rq = req->body;
    fetch_state_t *fs = req->hstate;
    size_t limit = rq->max_bytes > 0 ? (size_t)rq->max_bytes : 1;
    req->pending = 1; /* held while reads are being started */
    for (int32_t i = 0; i < fs->nparts; i++) {
        drop_slices(&fs->parts[i]);
        read_part(req, &fs->parts[i], limit);
    }
    if (--req->pending == 0)
        round_done(req);
}

/* The response skeleton and one fetch_part_t per requested partition. */
static void init_state(gw_req_t *req, fetch_state_t *fs)
{
    const kp_fetch_request_t *rq = req->body;
    kp_fetch_response_init(&fs->resp);
    fs->resp.throttle_time_ms = 0;
    fs->resp.error_code = KP_ERR_NONE; /* v7+ */
    fs->resp.session_id = 0;           /* v7+: sessionless */
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0, np = 0;
    for (int32_t t = 0; t < nt; t++)
        np += rq->topics[t].partitions_count > 0 ? rq->topics[t].partitions_count : 0;
    fs->resp.responses = gw_req_alloc(req, (size_t)nt * sizeof *fs->resp.responses);
    fs->resp.responses_count = nt;
    fs->parts = gw_req_alloc(req, (size_t)np * sizeof *fs->parts);
    fs->nparts = np;
    int32_t k = 0;
    for (int32_t t = 0; t < nt; t++) {
        const kp_fetch_request_fetch_topic_t *ft = &rq->topics[t];
        kp_fetch_response_fetchable_topic_response_t *tr = &fs->resp.responses[t];
        kp_fetch_response_fetchable_topic_response_init(tr);
        tr->topic = ft->topic;       /* v0-12 */
        tr->topic_id = ft->topic_id; /* v13+ */
        int32_t n = ft->partitions_count > 0 ? ft->partitions_count : 0;
        tr->partitions = gw_req_alloc(req, (size_t)n * sizeof *tr->partitions);
        tr->partitions_count = n;
        for (int32_t i = 0; i < n; i++, k++) {
            kp_fetch_response_partition_data_t *pd = &tr->partitions[i];
            kp_fetch_response_partition_data_init(pd);
            pd->partition_index = ft->partitions[i].partition;
            pd->aborted_transactions_count = 0; /* v4+: empty, not null */
            pd->preferred_read_replica = -1;    /* v11+ */
            fs->parts[k] = (fetch_part_t){.req = req, .ft = ft, .fp = &ft->partitions[i], .pd = pd};
        }
    }
}

int gw_api_fetch(gw_req_t *req)
{
    const kp_fetch_request_t *rq = req->body;
    fetch_state_t *fs = gw_req_alloc(req, sizeof *fs);
    req->hstate = fs;
    req->hfree = fetch_free;
    init_state(req, fs);
    fs->deadline = evtimer_new(req->srv->base, deadline_cb, req);
    fs->wake_ev = event_new(req->srv->base, -1, 0, wake_cb, req);
    if (!fs->deadline || !fs->wake_ev) {
        gw_log_error("fetch", "out of memory for a fetch");
        return -1;
    }
    if (rq->max_wait_ms > 0) {
        struct timeval tv = {rq->max_wait_ms / 1000, (rq->max_wait_ms % 1000) * 1000};
        evtimer_add(fs->deadline, &tv);
    }
    start_round(req);
    return 0;
}
