/*
 * gw_api_offset_delete.c: OffsetDelete (key 47), v0.  As Kafka's
 * GroupCoordinator: a group neither held by the coordinator nor with
 * committed offsets is GROUP_ID_NOT_FOUND; a group with members is
 * NON_EMPTY_GROUP unless it is a consumer group, whose partitions of
 * topics some member is subscribed to are GROUP_SUBSCRIBED_TO_TOPIC; the
 * other offsets are deleted from the metadata store.
 */
#include "gw_api.h"

#include "gw_group.h"
#include "gw_log.h"

typedef kp_offset_delete_response_offset_delete_response_partition_t od_part_t;

typedef struct od_state {
    kp_offset_delete_response_t resp;
    od_part_t **pending; /* partitions whose offsets are being deleted */
    size_t npending;
} od_state_t;

static void deleted_cb(st_err_t err, void *arg)
{
    gw_req_t *req = arg;
    od_state_t *os = req->hstate;
    if (err != ST_OK) {
        gw_log_warn("group", "deleting offsets failed: %s", st_err_str(err));
        for (size_t i = 0; i < os->npending; i++)
            os->pending[i]->error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
    }
    gw_req_respond(req, &os->resp);
}

static void fetched_cb(st_err_t err, const st_offset_commit_t *offs, size_t n, void *arg)
{
    (void)offs;
    gw_req_t *req = arg;
    const kp_offset_delete_request_t *rq = req->body;
    od_state_t *os = req->hstate;
    gw_group_t *g = gw_group_find(req->srv->groups, rq->group_id);
    if (err != ST_OK) {
        gw_log_warn("group", "reading committed offsets failed: %s", st_err_str(err));
        os->resp.error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
    } else if (!g && n == 0) {
        os->resp.error_code = KP_ERR_GROUP_ID_NOT_FOUND;
    } else if (g && !gw_group_is_empty(g) &&
               !kp_str_eq(kp_str(gw_group_protocol_type(g)), "consumer")) {
        os->resp.error_code = KP_ERR_NON_EMPTY_GROUP;
    }
    if (os->resp.error_code != KP_ERR_NONE) {
        gw_req_respond(req, &os->resp);
        return;
    }
    bool live = g && !gw_group_is_empty(g);
    size_t total = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        total += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    st_offset_commit_t *del = gw_req_alloc(req, total * sizeof *del + 1);
    os->pending = gw_req_alloc(req, total * sizeof *os->pending + 1);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    os->resp.topics = gw_req_alloc(req, (size_t)nt * sizeof *os->resp.topics + 1);
    os->resp.topics_count = nt;
    for (int32_t t = 0; t < nt; t++) {
        const kp_offset_delete_request_offset_delete_request_topic_t *rt = &rq->topics[t];
        kp_offset_delete_response_offset_delete_response_topic_t *tr = &os->resp.topics[t];
        tr->name = rt->name;
        int32_t np = rt->partitions_count > 0 ? rt->partitions_count : 0;
        tr->partitions = gw_req_alloc(req, (size_t)np * sizeof *tr->partitions + 1);
        tr->partitions_count = np;
        st_topic_t *topic = gw_topic_find(req->srv, rt->name);
        bool subscribed = live && gw_group_subscribed(g, rt->name);
        const char *tname =
            gw_req_strdup(req, rt->name.ptr, rt->name.len > 0 ? (size_t)rt->name.len : 0);
        for (int32_t p = 0; p < np; p++) {
            od_part_t *pr = &tr->partitions[p];
            pr->partition_index = rt->partitions[p].partition_index;
            if (!topic || !gw_topic_part(topic, pr->partition_index)) {
                pr->error_code = KP_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (subscribed) {
                pr->error_code = KP_ERR_GROUP_SUBSCRIBED_TO_TOPIC;
            } else {
                del[os->npending] =
                    (st_offset_commit_t){.topic = tname, .partition = pr->partition_index};
                os->pending[os->npending++] = pr;
            }
        }
    }
    if (os->npending == 0) {
        gw_req_respond(req, &os->resp);
        return;
    }
    const char *group = gw_req_strdup(req, rq->group_id.ptr, (size_t)rq->group_id.len);
    int rc = st_log_delete_offsets(req->srv->log, group, del, os->npending, deleted_cb, req);
    if (rc != 0)
        deleted_cb(gw_st_start_err(rc), req);
}

int gw_api_offset_delete(gw_req_t *req)
{
    const kp_offset_delete_request_t *rq = req->body;
    od_state_t *os = gw_req_alloc(req, sizeof *os);
    req->hstate = os;
    kp_offset_delete_response_init(&os->resp);
    os->resp.throttle_time_ms = 0;
    if (rq->group_id.len <= 0) {
        os->resp.error_code = KP_ERR_INVALID_GROUP_ID;
        gw_req_respond(req, &os->resp);
        return 0;
    }
    if (!gw_coordinates(req->srv, rq->group_id)) {
        os->resp.error_code = KP_ERR_NOT_COORDINATOR;
        gw_req_respond(req, &os->resp);
        return 0;
    }
    const char *group = gw_req_strdup(req, rq->group_id.ptr, (size_t)rq->group_id.len);
    int rc = st_log_fetch_offsets(req->srv->log, group, fetched_cb, req);
    if (rc != 0)
        fetched_cb(gw_st_start_err(rc), NULL, 0, req);
    return 0;
}
