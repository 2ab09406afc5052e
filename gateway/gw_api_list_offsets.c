/*
 * gw_api_list_offsets.c: ListOffsets (key 2), v1-7.
 *
 * Timestamp -1 (latest) answers the high watermark, -2 (earliest) the log
 * start offset, -3 (v7+, max timestamp, KIP-734) the first record with the
 * largest timestamp of the partition (st_part_max_timestamp), and any other
 * value the first record whose timestamp >= it (st_part_offset_for_time,
 * record granularity, decompressing the batch).  Only committed offsets at
 * or above the log start are ever returned.  current_leader_epoch (v4+)
 * other than -1 is checked as Kafka does: below the leader's epoch
 * FENCED_LEADER_EPOCH, above it UNKNOWN_LEADER_EPOCH.
 */
#include "gw_api.h"

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

static void list_partition(gw_req_t *req, st_topic_t *topic,
                           const kp_list_offsets_request_list_offsets_partition_t *rp,
                           kp_list_offsets_response_list_offsets_partition_response_t *pr)
{
    st_part_t *part = topic ? gw_topic_part(topic, rp->partition_index) : NULL;
    if (!part) {
        pr->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    if (!gw_leads(req->srv, topic, rp->partition_index)) {
        pr->error_code = KP_ERR_NOT_LEADER_OR_FOLLOWER;
        return;
    }
    int32_t epoch = st_part_leader_epoch(part);
    if (rp->current_leader_epoch != -1 && rp->current_leader_epoch < epoch) { /* v4+ */
        pr->error_code = KP_ERR_FENCED_LEADER_EPOCH;
        return;
    }
    if (rp->current_leader_epoch > epoch) {
        pr->error_code = KP_ERR_UNKNOWN_LEADER_EPOCH;
        return;
    }
    pr->leader_epoch = epoch; /* v4+ */
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
        rc = st_part_max_timestamp(part, by_time_cb, ctx);
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
