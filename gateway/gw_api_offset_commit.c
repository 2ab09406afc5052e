/*
 * gw_api_offset_commit.c: OffsetCommit (key 8), v2-8.  The group
 * coordinator checks generation, member and instance id as Kafka does
 * (gw_group_commit_check); a group without members takes commits without
 * a group (generation -1).  Offsets are stored
 * durably with st_log_commit_offsets() (transactions of at most 64
 * operations).
 */
#include "gw_api.h"

#include "gw_group.h"
#include "gw_log.h"

typedef kp_offset_commit_response_offset_commit_response_partition_t oc_part_t;

typedef struct oc_state {
    kp_offset_commit_response_t resp;
    oc_part_t **pending; /* response partitions whose offsets are being stored */
    size_t npending;
} oc_state_t;

static void committed_cb(st_err_t err, void *arg)
{
    gw_req_t *req = arg;
    oc_state_t *os = req->hstate;
    if (err != ST_OK)
        gw_log_warn("group", "committing offsets failed: %s", st_err_str(err));
    for (size_t i = 0; i < os->npending; i++)
        os->pending[i]->error_code = (int16_t)gw_err_from_st(err);
    gw_req_respond(req, &os->resp);
}

/* The error every partition gets before any is looked at, or NONE. */
static kp_err_t request_error(gw_req_t *req, const kp_offset_commit_request_t *rq)
{
    if (rq->group_id.len <= 0)
        return KP_ERR_INVALID_GROUP_ID;
    if (!gw_coordinates(req->srv, rq->group_id))
        return KP_ERR_NOT_COORDINATOR;
    return gw_group_commit_check(req->srv->groups, rq->group_id, rq->generation_id_or_member_epoch,
                                 rq->member_id, rq->group_instance_id);
}

/* Count the request's partitions. */
static size_t count_parts(const kp_offset_commit_request_t *rq)
{
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    return n;
}

int gw_api_offset_commit(gw_req_t *req)
{
    const kp_offset_commit_request_t *rq = req->body;
    oc_state_t *os = gw_req_alloc(req, sizeof *os);
    req->hstate = os;
    kp_offset_commit_response_init(&os->resp);
    os->resp.throttle_time_ms = 0; /* v3+ */
    kp_err_t rerr = request_error(req, rq);
    size_t total = count_parts(rq);
    st_offset_commit_t *offs = gw_req_alloc(req, total * sizeof *offs);
    os->pending = gw_req_alloc(req, total * sizeof *os->pending);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    os->resp.topics = gw_req_alloc(req, (size_t)nt * sizeof *os->resp.topics);
    os->resp.topics_count = nt;
    for (int32_t t = 0; t < nt; t++) {
        const kp_offset_commit_request_offset_commit_request_topic_t *rt = &rq->topics[t];
        kp_offset_commit_response_offset_commit_response_topic_t *tr = &os->resp.topics[t];
        kp_offset_commit_response_offset_commit_response_topic_init(tr);
        tr->name = rt->name;
        int32_t np = rt->partitions_count > 0 ? rt->partitions_count : 0;
        tr->partitions = gw_req_alloc(req, (size_t)np * sizeof *tr->partitions);
        tr->partitions_count = np;
        st_topic_t *topic = rerr == KP_ERR_NONE ? gw_topic_find(req->srv, rt->name) : NULL;
        const char *tname = topic ? gw_req_strdup(req, rt->name.ptr, (size_t)rt->name.len) : NULL;
        for (int32_t p = 0; p < np; p++) {
            const kp_offset_commit_request_offset_commit_request_partition_t *rp =
                &rt->partitions[p];
            oc_part_t *pr = &tr->partitions[p];
            kp_offset_commit_response_offset_commit_response_partition_init(pr);
            pr->partition_index = rp->partition_index;
            if (rerr != KP_ERR_NONE) {
                pr->error_code = (int16_t)rerr;
            } else if (!topic || !gw_topic_part(topic, rp->partition_index)) {
                pr->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (rp->committed_metadata.len > GW_OFFSET_METADATA_MAX) {
                pr->error_code = KP_ERR_OFFSET_METADATA_TOO_LARGE;
            } else {
                st_offset_commit_t *o = &offs[os->npending];
                o->topic = tname;
                o->partition = rp->partition_index;
                o->offset = rp->committed_offset;
                o->leader_epoch = rp->committed_leader_epoch; /* v6+, else -1 */
                o->metadata = rp->committed_metadata.len >= 0
                                  ? gw_req_strdup(req, rp->committed_metadata.ptr,
                                                  (size_t)rp->committed_metadata.len)
                                  : NULL;
                os->pending[os->npending++] = pr;
            }
        }
    }
    if (os->npending == 0) {
        gw_req_respond(req, &os->resp);
        return 0;
    }
    const char *group = gw_req_strdup(req, rq->group_id.ptr, (size_t)rq->group_id.len);
    int rc = st_log_commit_offsets(req->srv->log, group, offs, os->npending, committed_cb, req);
    if (rc != 0)
        committed_cb(gw_st_start_err(rc), req);
    return 0;
}
