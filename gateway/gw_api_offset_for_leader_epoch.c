/*
 * gw_api_offset_for_leader_epoch.c: OffsetForLeaderEpoch (key 23).
 *
 * The epoch history of a partition is its leader records' epochs with
 * their start offsets (epochs/<e>, put by each new leader once it has
 * caught up; st_part_epoch_end).  Answers as Kafka's
 * LeaderEpochFileCache.endOffsetFor:
 *   - the current epoch: its end is the high watermark (the log end of
 *     what is committed; provisional offsets are never visible);
 *   - an earlier epoch: the largest known epoch at or below it (epoch 0
 *     begins the log) and the start offset of the next known epoch;
 *   - -1 (UNDEFINED_EPOCH) or an epoch above the current one: -1, -1.
 * current_leader_epoch (v2+) other than -1 is checked first: below the
 * leader's epoch FENCED_LEADER_EPOCH, above it UNKNOWN_LEADER_EPOCH.  A
 * leader still catching up on a takeover answers NOT_LEADER_OR_FOLLOWER.
 */
#include "gw_api.h"

typedef kp_offset_for_leader_epoch_response_epoch_end_offset_t ep_result_t;

static void end_offset(st_part_t *part,
                       const kp_offset_for_leader_epoch_request_offset_for_leader_partition_t *rp,
                       ep_result_t *r)
{
    int32_t epoch = st_part_leader_epoch(part);
    if (rp->current_leader_epoch != -1 && rp->current_leader_epoch < epoch) {
        r->error_code = KP_ERR_FENCED_LEADER_EPOCH;
        return;
    }
    if (rp->current_leader_epoch > epoch) {
        r->error_code = KP_ERR_UNKNOWN_LEADER_EPOCH;
        return;
    }
    st_part_epoch_end(part, rp->leader_epoch, &r->leader_epoch, &r->end_offset);
}

int gw_api_offset_for_leader_epoch(gw_req_t *req)
{
    const kp_offset_for_leader_epoch_request_t *rq = req->body;
    kp_offset_for_leader_epoch_response_t resp;
    kp_offset_for_leader_epoch_response_init(&resp);
    resp.throttle_time_ms = 0; /* v2+ */
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp.topics = gw_req_alloc(req, (size_t)nt * sizeof *resp.topics);
    resp.topics_count = nt;
    for (int32_t t = 0; t < nt; t++) {
        const kp_offset_for_leader_epoch_request_offset_for_leader_topic_t *rt = &rq->topics[t];
        kp_offset_for_leader_epoch_response_offset_for_leader_topic_result_t *tr = &resp.topics[t];
        kp_offset_for_leader_epoch_response_offset_for_leader_topic_result_init(tr);
        tr->topic = rt->topic;
        int32_t np = rt->partitions_count > 0 ? rt->partitions_count : 0;
        tr->partitions = gw_req_alloc(req, (size_t)np * sizeof *tr->partitions);
        tr->partitions_count = np;
        st_topic_t *topic = gw_topic_find(req->srv, rt->topic);
        for (int32_t p = 0; p < np; p++) {
            ep_result_t *r = &tr->partitions[p];
            kp_offset_for_leader_epoch_response_epoch_end_offset_init(r);
            r->partition = rt->partitions[p].partition;
            r->error_code = KP_ERR_NONE;
            r->leader_epoch = -1;
            r->end_offset = -1;
            st_part_t *part = topic ? gw_topic_part(topic, r->partition) : NULL;
            if (!part)
                r->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            else if (!gw_leads(req->srv, topic, r->partition) || st_part_taking_over(part))
                r->error_code = KP_ERR_NOT_LEADER_OR_FOLLOWER;
            else
                end_offset(part, &rt->partitions[p], r);
        }
    }
    gw_req_respond(req, &resp);
    return 0;
}
