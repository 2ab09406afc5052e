/*
 * gw_api_delete_groups.c: DeleteGroups (key 42), v0-2.  A group with
 * members is NON_EMPTY_GROUP; one neither held by the coordinator nor with
 * committed offsets is GROUP_ID_NOT_FOUND; otherwise its offsets are
 * deleted from the metadata store and the coordinator forgets it.
 */
#include "gw_api.h"

#include "gw_group.h"
#include "gw_log.h"

typedef kp_delete_groups_response_deletable_group_result_t result_t;

typedef struct dg_state {
    kp_delete_groups_response_t resp;
} dg_state_t;

typedef struct dg_one {
    gw_req_t *req;
    result_t *res;
} dg_one_t;

static void deleted_cb(st_err_t err, void *arg)
{
    dg_one_t *one = arg;
    gw_req_t *req = one->req;
    dg_state_t *ds = req->hstate;
    if (err != ST_OK) {
        gw_log_warn("group", "deleting a group's offsets failed: %s", st_err_str(err));
        one->res->error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
    }
    if (--req->pending == 0)
        gw_req_respond(req, &ds->resp);
}

static void listed_cb(st_err_t err, const char *const *names, const char *const *types, size_t n,
                      void *arg)
{
    (void)types;
    gw_req_t *req = arg;
    const kp_delete_groups_request_t *rq = req->body;
    gw_coord_t *c = req->srv->groups;
    dg_state_t *ds = req->hstate;
    int32_t ng = rq->groups_names_count > 0 ? rq->groups_names_count : 0;
    ds->resp.results = gw_req_alloc(req, (size_t)ng * sizeof *ds->resp.results + 1);
    ds->resp.results_count = ng;
    req->pending = 1; /* held while deletions start */
    for (int32_t i = 0; i < ng; i++) {
        kp_str_t name = rq->groups_names[i];
        result_t *r = &ds->resp.results[i];
        kp_delete_groups_response_deletable_group_result_init(r);
        r->group_id = name;
        if (name.len <= 0) {
            r->error_code = KP_ERR_INVALID_GROUP_ID;
            continue;
        }
        if (!gw_coordinates(req->srv, name)) {
            r->error_code = KP_ERR_NOT_COORDINATOR;
            continue;
        }
        if (err != ST_OK) {
            r->error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
            continue;
        }
        gw_group_t *g = gw_group_find(c, name);
        if (g && !gw_group_is_empty(g)) {
            r->error_code = KP_ERR_NON_EMPTY_GROUP;
            continue;
        }
        bool stored = false;
        for (size_t k = 0; k < n && !stored; k++)
            stored = kp_str_eq(name, names[k]);
        if (!g && !stored) {
            r->error_code = KP_ERR_GROUP_ID_NOT_FOUND;
            continue;
        }
        if (g)
            gw_group_forget(c, g);
        if (!stored)
            continue;
        dg_one_t *one = gw_req_alloc(req, sizeof *one);
        one->req = req;
        one->res = r;
        const char *gname = gw_req_strdup(req, name.ptr, (size_t)name.len);
        int rc = st_log_delete_offsets(req->srv->log, gname, NULL, 0, deleted_cb, one);
        if (rc != 0)
            r->error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
        else
            req->pending++;
    }
    if (--req->pending == 0)
        gw_req_respond(req, &ds->resp);
}

int gw_api_delete_groups(gw_req_t *req)
{
    dg_state_t *ds = gw_req_alloc(req, sizeof *ds);
    req->hstate = ds;
    kp_delete_groups_response_init(&ds->resp);
    ds->resp.throttle_time_ms = 0;
    int rc = st_log_list_groups(req->srv->log, listed_cb, req);
    if (rc != 0)
        listed_cb(gw_st_start_err(rc), NULL, NULL, 0, req);
    return 0;
}
