/*
 * gw_api_produce.c: Produce (key 0), v3-9.
 *
 * Each partition must carry exactly one valid RecordBatch v2 (magic 2,
 * CRC32C, consistent lengths and counts, at most message.max.bytes,
 * transactional bit clear); otherwise that partition gets an error and
 * nothing of it is stored while the others proceed (DESIGN §3).  acks=1 and
 * acks=-1 are answered after st_part_append() reports the batch durable;
 * acks=0 is not answered at all, and any failure closes the connection,
 * which is how a client learns of it.  Topics missing from the catalog are
 * created first when auto.create.topics.enable allows.  Once the log holds
 * its copies of the batches the frame is freed: the write buffer bounds the
 * bytes waiting for their commit, which would otherwise be in memory twice.
 *
 * Only a partition's leader appends (gw_leads; NOT_LEADER_OR_FOLLOWER
 * elsewhere), and only while its lease is fresh (gw_lease_state): with
 * renewals late, appends are refused and acknowledgements held until the
 * lease is renewed; once it may have expired, appends that succeeded are
 * answered NOT_LEADER_OR_FOLLOWER (whether stored or not, as after a lost
 * answer).
 */
#include "gw_api.h"

#include "gw_log.h"
#include "kp_batch.h"

#include <event2/event.h>

typedef struct produce_state {
    kp_produce_response_t resp; /* built up as partitions finish */
    bool failed;                /* some partition failed: acks=0 closes the connection */
    struct event *hold;         /* the answer waits for the lease (hold_tick), or NULL */
} produce_state_t;

/* Where one append's result goes. */
typedef struct append_ctx {
    gw_req_t *req;
    kp_str_t topic; /* the response's copy of the name */
    kp_produce_response_partition_produce_response_t *pr;
} append_ctx_t;

/* The Kafka error for a partition's records, or NONE when they are one
 * valid batch. */
static kp_err_t check_records(const gw_server_t *srv, const st_topic_t *topic, kp_bytes_t records)
{
    if (records.len <= 0)
        return KP_ERR_INVALID_RECORD;
    kp_batch_limits_t lim = {
        /* the topic's max.message.bytes, else message.max.bytes */
        .max_size = (size_t)gw_topic_max_message_bytes(srv, topic),
        .flags = KP_BATCH_CHECK_PRODUCE,
        .zout = NULL, /* compressed payloads are stored as sent, not inspected */
    };
    kp_batch_summary_t sum;
    kp_batch_err_t e = kp_batch_validate(records.ptr, (size_t)records.len, &lim, &sum);
    switch (e) {
    case KP_BATCH_OK:
        break;
    case KP_BATCH_TOO_LARGE:
        return KP_ERR_MESSAGE_TOO_LARGE;
    case KP_BATCH_BAD_MAGIC: /* Produce v3+ must carry magic 2 */
    case KP_BATCH_BAD_COUNT:
        return KP_ERR_INVALID_RECORD;
    default: /* truncated, bad length, CRC, codec bits, record framing */
        return KP_ERR_CORRUPT_MESSAGE;
    }
    if (sum.count != 1 || sum.control)
        return KP_ERR_INVALID_RECORD;
    if (sum.transactional)
        return KP_ERR_INVALID_TXN_STATE; /* transactions are not built (DESIGN §8) */
    return KP_ERR_NONE;
}

/* Recompress the valid batch @batch with @codec into @w, as Kafka does for
 * a topic whose compression.type is not the producer's codec: offsets,
 * timestamps, producer id, epoch and sequence stay as sent (the idempotence
 * checks see the same batch), the records are decompressed within the
 * bound reads use (KP_BATCH_DEFAULT_MAX_DECOMPRESSED) and the result must
 * still fit max.message.bytes. */
static kp_err_t recompress(const gw_server_t *srv, const st_topic_t *topic, const uint8_t *batch,
                           size_t len, kp_compression_t codec, kp_writer_t *w)
{
    kp_zout_t zout;
    kp_zout_init_alloc(&zout, KP_BATCH_DEFAULT_MAX_DECOMPRESSED, NULL, NULL);
    kp_batch_err_t e = kp_batch_recompress(batch, len, codec, 0, KP_BATCH_CHECK_PRODUCE, &zout, w);
    kp_zout_deinit(&zout);
    switch (e) {
    case KP_BATCH_OK:
        break;
    case KP_BATCH_TOO_LARGE:
    case KP_BATCH_DECOMPRESS_LIMIT:
        return KP_ERR_MESSAGE_TOO_LARGE;
    case KP_BATCH_NOMEM:
        return KP_ERR_UNKNOWN_SERVER_ERROR;
    case KP_BATCH_BAD_COUNT:
        return KP_ERR_INVALID_RECORD;
    default: /* corrupt compressed bytes, record framing */
        return KP_ERR_CORRUPT_MESSAGE;
    }
    if (w->len > (size_t)gw_topic_max_message_bytes(srv, topic))
        return KP_ERR_MESSAGE_TOO_LARGE; /* Kafka checks the size again after recompressing */
    return KP_ERR_NONE;
}

#define HOLD_POLL_MS 50

/* Appends that succeeded are answered NOT_LEADER_OR_FOLLOWER instead: this
 * node's lease may have expired, another node may lead the partitions. */
static void refuse_successes(produce_state_t *ps)
{
    for (int32_t t = 0; t < ps->resp.responses_count; t++) {
        kp_produce_response_topic_produce_response_t *tr = &ps->resp.responses[t];
        for (int32_t p = 0; p < tr->partition_responses_count; p++) {
            kp_produce_response_partition_produce_response_t *pr = &tr->partition_responses[p];
            if (pr->error_code == KP_ERR_NONE) {
                pr->error_code = KP_ERR_NOT_LEADER_OR_FOLLOWER;
                pr->base_offset = -1;
            }
        }
    }
}

static bool any_success(const produce_state_t *ps)
{
    for (int32_t t = 0; t < ps->resp.responses_count; t++)
        for (int32_t p = 0; p < ps->resp.responses[t].partition_responses_count; p++)
            if (ps->resp.responses[t].partition_responses[p].error_code == KP_ERR_NONE)
                return true;
    return false;
}

static void produce_free(gw_req_t *req)
{
    produce_state_t *ps = req->hstate;
    if (ps && ps->hold)
        event_free(ps->hold);
}

static void hold_arm(produce_state_t *ps)
{
    struct timeval tv = {0, HOLD_POLL_MS * 1000};
    evtimer_add(ps->hold, &tv);
}

/* A held answer: sent once the lease is renewed, refused once it may have
 * expired, polled meanwhile. */
static void hold_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_req_t *req = arg;
    produce_state_t *ps = req->hstate;
    gw_lease_state_t st = gw_lease_state(req->srv);
    if (st == GW_LEASE_STALE) {
        hold_arm(ps);
        return;
    }
    req->cancel = NULL;
    if (st == GW_LEASE_LOST)
        refuse_successes(ps);
    gw_req_respond(req, &ps->resp);
}

/* The connection closes or the server stops while an answer is held. */
static void hold_cancel(gw_req_t *req)
{
    produce_state_t *ps = req->hstate;
    evtimer_del(ps->hold);
    if (gw_lease_state(req->srv) != GW_LEASE_FRESH)
        refuse_successes(ps);
    gw_req_respond(req, &ps->resp);
}

static void finish(gw_req_t *req)
{
    produce_state_t *ps = req->hstate;
    const kp_produce_request_t *rq = req->body;
    gw_lease_state_t lease = rq->acks == 0 ? GW_LEASE_FRESH : gw_lease_state(req->srv);
    if (lease == GW_LEASE_LOST)
        refuse_successes(ps);
    if (lease == GW_LEASE_STALE && any_success(ps)) {
        /* Renewals are late: acknowledge only once the lease is known to live. */
        ps->hold = evtimer_new(req->srv->base, hold_tick, req);
        if (ps->hold) {
            req->hfree = produce_free;
            req->cancel = hold_cancel;
            hold_arm(ps);
            return;
        }
        refuse_successes(ps);
    }
    if (rq->acks == 0) {
        if (ps->failed && gw_req_conn_open(req)) {
            gw_log_debug("produce", "conn %llu: acks=0 produce failed, closing",
                         (unsigned long long)req->conn->id);
            gw_conn_close(req->conn, "acks=0 produce failed");
        }
        gw_req_finish_silent(req);
        return;
    }
    gw_req_respond(req, &ps->resp);
}

static void set_error(gw_req_t *req, kp_produce_response_partition_produce_response_t *pr,
                      kp_err_t err)
{
    produce_state_t *ps = req->hstate;
    pr->error_code = (int16_t)err;
    if (err != KP_ERR_NONE)
        ps->failed = true;
}

static void appended_cb(st_err_t err, int64_t base_offset, void *arg)
{
    append_ctx_t *ac = arg;
    gw_req_t *req = ac->req;
    set_error(req, ac->pr, gw_err_from_st(err));
    if (err == ST_OK) {
        ac->pr->base_offset = base_offset;
        st_topic_t *topic = gw_topic_find(req->srv, ac->topic);
        st_part_t *part = topic ? gw_topic_part(topic, ac->pr->index) : NULL;
        if (part)
            ac->pr->log_start_offset = st_part_log_start(part); /* v5+ */
    } else {
        gw_log_debug("produce", "append to %.*s/%d failed: %s", (int)ac->topic.len, ac->topic.ptr,
                     ac->pr->index, st_err_str(err));
    }
    if (--req->pending == 0)
        finish(req);
}

/* Validate and append one partition's batch; its result lands in @pr. */
static void produce_partition(gw_req_t *req, kp_str_t tname,
                              const kp_produce_request_partition_produce_data_t *pd,
                              kp_produce_response_partition_produce_response_t *pr)
{
    st_topic_t *topic = gw_topic_find(req->srv, tname);
    st_part_t *part = topic ? gw_topic_part(topic, pd->index) : NULL;
    if (!part) {
        set_error(req, pr,
                  gw_topic_name_valid(tname) ? KP_ERR_UNKNOWN_TOPIC_OR_PARTITION
                                             : KP_ERR_INVALID_TOPIC_EXCEPTION);
        return;
    }
    if (!gw_leads(req->srv, topic, pd->index) || gw_lease_state(req->srv) != GW_LEASE_FRESH ||
        st_part_taking_over(part)) {
        /* not, maybe no more, or not yet (catching up on a takeover) */
        set_error(req, pr, KP_ERR_NOT_LEADER_OR_FOLLOWER);
        return;
    }
    kp_err_t err = check_records(req->srv, topic, pd->records);
    if (err != KP_ERR_NONE) {
        gw_log_debug("produce", "%s/%d: refusing records: %s", topic->name, pd->index,
                     kp_err_str(err));
        set_error(req, pr, err);
        return;
    }
    /* The topic's compression.type, when it names a codec other than the
     * batch's: the records are stored recompressed (the copy is freed
     * once the log holds its own). */
    kp_writer_t w;
    kp_writer_init(&w, 0);
    const uint8_t *batch = pd->records.ptr;
    size_t len = (size_t)pd->records.len;
    int codec = gw_topic_codec(topic);
    if (codec >= 0 &&
        codec != (batch[KP_BATCH_OFF_ATTRIBUTES + 1] & KP_BATCH_ATTR_COMPRESSION_MASK)) {
        err = recompress(req->srv, topic, batch, len, (kp_compression_t)codec, &w);
        if (err != KP_ERR_NONE) {
            gw_log_debug("produce", "%s/%d: refusing records: %s", topic->name, pd->index,
                         kp_err_str(err));
            set_error(req, pr, err);
            kp_writer_deinit(&w);
            return;
        }
        batch = w.buf;
        len = w.len;
    }
    append_ctx_t *ac = gw_req_alloc(req, sizeof *ac);
    ac->req = req;
    ac->topic = tname;
    ac->pr = pr;
    /* A batch stored as sent stays in the frame, which the log keeps until
     * it is in an object: its one copy is into that object. */
    st_buf_t *fb = batch == pd->records.ptr ? gw_req_frame_buf(req) : NULL;
    int rc = fb ? st_part_append_buf(part, fb, (size_t)(batch - fb->data), len, appended_cb, ac)
                : st_part_append(part, batch, len, appended_cb, ac);
    kp_writer_deinit(&w);
    if (rc != 0)
        set_error(req, pr, gw_err_from_st(gw_st_start_err(rc)));
    else
        req->pending++;
}

/* Phase 2: every partition, once missing topics were created. */
static void append_all(gw_req_t *req)
{
    const kp_produce_request_t *rq = req->body;
    produce_state_t *ps = req->hstate;
    req->pending = 1; /* held while appends are being started */
    for (int32_t t = 0; t < rq->topic_data_count; t++) {
        const kp_produce_request_topic_produce_data_t *td = &rq->topic_data[t];
        for (int32_t p = 0; p < td->partition_data_count; p++)
            produce_partition(req, ps->resp.responses[t].name, &td->partition_data[p],
                              &ps->resp.responses[t].partition_responses[p]);
    }
    gw_req_drop_frame(req); /* rq's views die with it; finish() reads only rq->acks */
    if (--req->pending == 0)
        finish(req);
}

static void created_cb(st_err_t err, st_topic_t *topic, void *arg)
{
    gw_req_t *req = arg;
    if (err == ST_OK)
        gw_log_info("produce", "auto-created topic '%s' with %d partitions", topic->name,
                    topic->nparts);
    else if (err != ST_ERR_EXISTS)
        gw_log_warn("produce", "auto-creating a topic failed: %s", st_err_str(err));
    if (--req->pending == 0)
        append_all(req);
}

/* The response skeleton, every partition at NONE / offset -1; or every
 * partition at @err when it is not NONE. */
static void init_response(gw_req_t *req, kp_err_t err)
{
    const kp_produce_request_t *rq = req->body;
    produce_state_t *ps = req->hstate;
    kp_produce_response_init(&ps->resp);
    int32_t nt = rq->topic_data_count > 0 ? rq->topic_data_count : 0;
    ps->resp.responses = gw_req_alloc(req, (size_t)nt * sizeof *ps->resp.responses);
    ps->resp.responses_count = nt;
    ps->resp.throttle_time_ms = 0;
    for (int32_t t = 0; t < nt; t++) {
        const kp_produce_request_topic_produce_data_t *td = &rq->topic_data[t];
        kp_produce_response_topic_produce_response_t *tr = &ps->resp.responses[t];
        kp_produce_response_topic_produce_response_init(tr);
        tr->name = td->name; /* copied: the frame goes before the answer */
        if (td->name.len >= 0)
            tr->name.ptr = gw_req_strdup(req, td->name.ptr, (size_t)td->name.len);
        int32_t np = td->partition_data_count > 0 ? td->partition_data_count : 0;
        tr->partition_responses = gw_req_alloc(req, (size_t)np * sizeof *tr->partition_responses);
        tr->partition_responses_count = np;
        for (int32_t p = 0; p < np; p++) {
            kp_produce_response_partition_produce_response_t *pr = &tr->partition_responses[p];
            kp_produce_response_partition_produce_response_init(pr);
            pr->index = td->partition_data[p].index;
            pr->base_offset = -1;
            pr->log_append_time_ms = -1; /* v2+: CreateTime topics */
            pr->record_errors_count = 0; /* v8+ */
            pr->error_message = KP_STR_NULL;
            set_error(req, pr, err);
        }
    }
}

int gw_api_produce(gw_req_t *req)
{
    const kp_produce_request_t *rq = req->body;
    produce_state_t *ps = gw_req_alloc(req, sizeof *ps);
    req->hstate = ps;
    kp_err_t err = KP_ERR_NONE;
    if (rq->transactional_id.len >= 0)
        err = KP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED; /* no transactions yet */
    else if (rq->acks != 0 && rq->acks != 1 && rq->acks != -1)
        err = KP_ERR_INVALID_REQUIRED_ACKS;
    init_response(req, err);
    if (err != KP_ERR_NONE) {
        finish(req);
        return 0;
    }
    /* Phase 1: create missing topics (librdkafka producers create through
     * Metadata, but a client may produce first). */
    req->pending = 1;
    if (gw_autocreate_allowed(req->srv, true)) {
        for (int32_t t = 0; t < rq->topic_data_count; t++) {
            kp_str_t name = rq->topic_data[t].name;
            if (!gw_topic_name_valid(name) || gw_topic_find(req->srv, name))
                continue;
            if (gw_topic_autocreate(req->srv, name, created_cb, req) == ST_OK)
                req->pending++;
        }
    }
    if (--req->pending == 0)
        append_all(req);
    return 0;
}
