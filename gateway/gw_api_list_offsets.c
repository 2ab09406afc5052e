/*
 * gw_api_list_offsets.c: ListOffsets (key 2), v1-7.
 *
 * Timestamp -1 (latest) answers the high watermark, -2 (earliest) the log
 * start offset, -3 (v7+, max timestamp) the record with the largest
 * timestamp of the partition's last batch (Kafka looks at the whole log;
 * producers' timestamps rarely go backwards across batches), and any other
 * value the first offset whose batch holds a timestamp >= it
 * (st_part_offset_for_time).  Only committed offsets are ever returned.
 *
 * Proposed for st_log.h: the manifests already carry each partition's
 * running max timestamp, so
 *     int st_part_max_timestamp(st_part_t *part, st_offset_cb cb, void *arg);
 * (the offset and timestamp of the record with the largest timestamp in
 * the whole log) would let -3 follow Kafka exactly instead of looking at
 * the last batch only.
 */
#include "gw_api.h"

#include "kp_batch.h"

#define TS_LATEST -1
#define TS_EARLIEST -2
#define TS_MAX_TIMESTAMP -3

typedef struct lo_ctx {
    gw_req_t *req;
    kp_list_offsets_response_list_offsets_partition_response_t *pr;
} lo_ctx_t;

static void done_one(gw_req_t *req)
{
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

static void by_time_cb(st_err_t err, int64_t offset, int64_t timestamp, void *arg)
{
    lo_ctx_t *ctx = arg;
    ctx->pr->error_code = (int16_t)gw_err_from_st(err);
    if (err == ST_OK && offset >= 0) {
        ctx->pr->offset = offset;
        ctx->pr->timestamp = timestamp;
    }
    done_one(ctx->req);
}

/* The offset and timestamp of the largest-timestamp record in @batch. */
static void max_timestamp_of(const uint8_t *batch, size_t len, int64_t *offset, int64_t *ts)
{
    kp_batch_hdr_t hdr;
    if (kp_batch_hdr_parse(batch, len, &hdr) != KP_BATCH_OK)
        return;
    *ts = hdr.max_timestamp;
    *offset = hdr.base_offset + hdr.last_offset_delta; /* if the records cannot be walked */
    kp_zout_t z;
    kp_zout_init_alloc(&z, KP_BATCH_DEFAULT_MAX_DECOMPRESSED, NULL, NULL);
    kp_record_iter_t it;
    if (kp_record_iter_init(&it, batch, len, 0, &z) == KP_BATCH_OK) {
        kp_record_t rec;
        while (kp_record_iter_next(&it, &rec)) {
            if (rec.timestamp == hdr.max_timestamp) {
                *offset = rec.offset;
                break;
            }
        }
    }
    kp_zout_deinit(&z);
}

static void last_batch_cb(st_err_t err, const st_slice_t *slices, size_t n, void *arg)
{
    lo_ctx_t *ctx = arg;
    ctx->pr->error_code = (int16_t)gw_err_from_st(err);
    if (err == ST_OK && n > 0) {
        /* The slices start at the batch holding hw - 1: the last batch. */
        const st_slice_t *s = &slices[n - 1];
        max_timestamp_of(s->buf->data + s->off, s->len, &ctx->pr->offset, &ctx->pr->timestamp);
    }
    done_one(ctx->req);
}

static void list_partition(gw_req_t *req, st_topic_t *topic,
                           const kp_list_offsets_request_list_offsets_partition_t *rp,
                           kp_list_offsets_response_list_offsets_partition_response_t *pr)
{
    st_part_t *part = topic ? gw_topic_part(topic, rp->partition_index) : NULL;
    if (!part) {
        pr->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    pr->leader_epoch = st_part_leader_epoch(part); /* v4+ */
    int64_t hw = st_part_hw(part), start = st_part_log_start(part);
    if (rp->timestamp == TS_LATEST || rp->timestamp == TS_EARLIEST) {
        pr->offset = rp->timestamp == TS_LATEST ? hw : start;
        return;
    }
    lo_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->pr = pr;
    int rc;
    if (rp->timestamp == TS_MAX_TIMESTAMP && req->api_version >= 7) {
        if (hw <= start)
            return; /* empty: offset -1, timestamp -1 */
        rc = st_part_read(part, hw - 1, 1, last_batch_cb, ctx);
    } else {
        rc = st_part_offset_for_time(part, rp->timestamp, by_time_cb, ctx);
    }
    if (rc != 0)
        pr->error_code = (int16_t)gw_err_from_st(gw_st_start_err(rc));
    else
        req->pending++;
}

int gw_api_list_offsets(gw_req_t *req)
{
    const kp_list_offsets_request_t *rq = req->body;
    kp_list_offsets_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_list_offsets_response_init(resp);
    resp->throttle_time_ms = 0; /* v2+ */
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->topics = gw_req_alloc(req, (size_t)nt * sizeof *resp->topics);
    resp->topics_count = nt;
    req->pending = 1; /* held while lookups are being started */
    for (int32_t t = 0; t < nt; t++) {
        const kp_list_offsets_request_list_offsets_topic_t *rt = &rq->topics[t];
        kp_list_offsets_response_list_offsets_topic_response_t *tr = &resp->topics[t];
        kp_list_offsets_response_list_offsets_topic_response_init(tr);
        tr->name = rt->name;
        int32_t np = rt->partitions_count > 0 ? rt->partitions_count : 0;
        tr->partitions = gw_req_alloc(req, (size_t)np * sizeof *tr->partitions);
        tr->partitions_count = np;
        st_topic_t *topic = gw_topic_find(req->srv, rt->name);
        for (int32_t p = 0; p < np; p++) {
            kp_list_offsets_response_list_offsets_partition_response_t *pr = &tr->partitions[p];
            kp_list_offsets_response_list_offsets_partition_response_init(pr);
            pr->partition_index = rt->partitions[p].partition_index;
            pr->timestamp = -1;
            pr->offset = -1;
            pr->leader_epoch = -1;
            list_partition(req, topic, &rt->partitions[p], pr);
        }
    }
    done_one(req);
    return 0;
}
