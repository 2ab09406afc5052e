/*
 * gw_api_delete_records.c: DeleteRecords (key 21).
 *
 * Advances each partition's log start offset durably
 * (st_part_delete_records): offset -1 means the high watermark, an offset
 * above the high watermark or below -1 is OFFSET_OUT_OF_RANGE, one at or
 * below the current log start changes nothing.  The response carries the
 * log start afterwards as the low watermark (-1 on error).  Fetch below it
 * is OFFSET_OUT_OF_RANGE and ListOffsets earliest returns it; the bytes
 * below it are freed later by garbage collection.
 */
#include "gw_api.h"

#include "gw_log.h"

typedef kp_delete_records_response_delete_records_partition_result_t dr_part_t;

typedef struct dr_ctx {
    gw_req_t *req;
    dr_part_t *pr;
} dr_ctx_t;

static void deleted_cb(st_err_t err, int64_t log_start, void *arg)
{
    dr_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    ctx->pr->error_code = (int16_t)gw_err_from_st(err);
    ctx->pr->low_watermark = err == ST_OK ? log_start : -1;
    if (--req->pending == 0)
        gw_req_respond(req, req->hstate);
}

static void delete_one(gw_req_t *req, st_topic_t *topic,
                       const kp_delete_records_request_delete_records_partition_t *rp,
                       dr_part_t *pr)
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
    dr_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->pr = pr;
    int rc = st_part_delete_records(part, rp->offset, deleted_cb, ctx);
    if (rc != 0)
        pr->error_code = (int16_t)gw_err_from_st(gw_st_start_err(rc));
    else
        req->pending++;
}

int gw_api_delete_records(gw_req_t *req)
{
    const kp_delete_records_request_t *rq = req->body;
    kp_delete_records_response_t *resp = gw_req_alloc(req, sizeof *resp);
    req->hstate = resp;
    kp_delete_records_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->topics = gw_req_alloc(req, (size_t)nt * sizeof *resp->topics);
    resp->topics_count = nt;
    req->pending = 1; /* held while deletions are being started */
    for (int32_t t = 0; t < nt; t++) {
        const kp_delete_records_request_delete_records_topic_t *rt = &rq->topics[t];
        kp_delete_records_response_delete_records_topic_result_t *tr = &resp->topics[t];
        kp_delete_records_response_delete_records_topic_result_init(tr);
        tr->name = rt->name;
        int32_t np = rt->partitions_count > 0 ? rt->partitions_count : 0;
        tr->partitions = gw_req_alloc(req, (size_t)np * sizeof *tr->partitions);
        tr->partitions_count = np;
        st_topic_t *topic = gw_topic_find(req->srv, rt->name);
        for (int32_t p = 0; p < np; p++) {
            dr_part_t *pr = &tr->partitions[p];
            kp_delete_records_response_delete_records_partition_result_init(pr);
            pr->partition_index = rt->partitions[p].partition_index;
            pr->low_watermark = -1;
            pr->error_code = KP_ERR_NONE;
            delete_one(req, topic, &rt->partitions[p], pr);
        }
        if (topic)
            gw_log_debug("admin", "delete records of '%s': %d partitions", topic->name, np);
    }
    if (--req->pending == 0)
        gw_req_respond(req, resp);
    return 0;
}
