/*
 * gw_api_list_groups.c: ListGroups (key 16), v0-4.  The groups with members
 * here, and every group that has committed offsets or a protocol type in
 * the metadata store (state Empty, with the protocol type stored when a
 * member first joined it, "" for a group that only committed offsets), of
 * those this node coordinates (as each Kafka broker lists its own: admin
 * clients ask every broker).  v4 filters by state, case-insensitively as
 * Kafka does.
 */
#include "gw_api.h"

#include <strings.h>

#include "gw_group.h"
#include "gw_log.h"

typedef kp_list_groups_response_listed_group_t listed_t;

static bool state_wanted(const kp_list_groups_request_t *rq, int16_t version, const char *state)
{
    if (version < 4 || rq->states_filter_count <= 0)
        return true;
    for (int32_t i = 0; i < rq->states_filter_count; i++) {
        kp_str_t f = rq->states_filter[i];
        if (f.len >= 0 && (size_t)f.len == strlen(state) &&
            strncasecmp(f.ptr, state, (size_t)f.len) == 0)
            return true;
    }
    return false;
}

static void add(gw_req_t *req, kp_list_groups_response_t *resp, const char *id, const char *ptype,
                const char *state)
{
    const kp_list_groups_request_t *rq = req->body;
    if (!state_wanted(rq, req->api_version, state) || !gw_coordinates(req->srv, kp_str(id)))
        return;
    listed_t *l = &resp->groups[resp->groups_count++];
    kp_list_groups_response_listed_group_init(l);
    l->group_id = kp_str(gw_req_strdup(req, id, strlen(id)));
    l->protocol_type = kp_str(gw_req_strdup(req, ptype, strlen(ptype)));
    l->group_state = kp_str(state);
    l->group_type = kp_str("classic");
}

static void listed_cb(st_err_t err, const char *const *names, const char *const *types, size_t n,
                      void *arg)
{
    gw_req_t *req = arg;
    gw_coord_t *c = req->srv->groups;
    kp_list_groups_response_t resp;
    kp_list_groups_response_init(&resp);
    resp.throttle_time_ms = 0;
    if (err != ST_OK) {
        gw_log_warn("group", "listing groups failed: %s", st_err_str(err));
        resp.error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
        n = 0;
    }
    size_t nmem = 0;
    while (gw_group_at(c, nmem))
        nmem++;
    resp.groups = gw_req_alloc(req, (nmem + n + 1) * sizeof *resp.groups);
    for (size_t i = 0; i < nmem; i++) {
        gw_group_t *g = gw_group_at(c, i);
        add(req, &resp, gw_group_id(g), gw_group_protocol_type(g), gw_group_state_name(g));
    }
    for (size_t i = 0; i < n; i++)
        if (!gw_group_find(c, kp_str(names[i])))
            add(req, &resp, names[i], types[i], "Empty");
    gw_req_respond(req, &resp);
}

int gw_api_list_groups(gw_req_t *req)
{
    int rc = st_log_list_groups(req->srv->log, listed_cb, req);
    if (rc != 0)
        listed_cb(gw_st_start_err(rc), NULL, NULL, 0, req);
    return 0;
}
