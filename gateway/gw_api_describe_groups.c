/*
 * gw_api_describe_groups.c: DescribeGroups (key 15), v0-4.  A group with
 * members is described from the coordinator (member metadata and
 * assignments only once Stable, as Kafka does); a group known only by its
 * committed offsets or a stored protocol type is Empty with that protocol
 * type ("" when only offsets were committed); any other is Dead with
 * no error, as in Kafka.
 */
#include "gw_api.h"

#include <string.h>

#include "gw_group.h"
#include "gw_log.h"

typedef kp_describe_groups_response_described_group_t described_t;
typedef kp_describe_groups_response_described_group_member_t dmember_t;

static void describe(gw_req_t *req, described_t *d, gw_group_t *g)
{
    size_t n = 0;
    gw_group_member_view_t v;
    while (gw_group_member(g, n, &v))
        n++;
    bool stable = strcmp(gw_group_state_name(g), "Stable") == 0;
    d->group_state = kp_str(gw_group_state_name(g));
    d->protocol_type = kp_str(gw_group_protocol_type(g));
    d->protocol_data = kp_str(stable ? gw_group_protocol(g) : ""); /* as Kafka's summary */
    d->members = gw_req_alloc(req, (n + 1) * sizeof *d->members);
    d->members_count = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        gw_group_member(g, i, &v);
        dmember_t *m = &d->members[i];
        kp_describe_groups_response_described_group_member_init(m);
        m->member_id = kp_str(v.member_id);
        m->group_instance_id = v.instance_id ? kp_str(v.instance_id) : KP_STR_NULL;
        m->client_id = kp_str(v.client_id);
        m->client_host = kp_str(v.client_host);
        m->member_metadata = stable ? v.metadata : (kp_bytes_t){NULL, 0};
        m->member_assignment = stable ? v.assignment : (kp_bytes_t){NULL, 0};
    }
}

static void listed_cb(st_err_t err, const char *const *names, const char *const *types, size_t n,
                      void *arg)
{
    gw_req_t *req = arg;
    const kp_describe_groups_request_t *rq = req->body;
    gw_coord_t *c = req->srv->groups;
    if (err != ST_OK)
        gw_log_warn("group", "listing groups failed: %s", st_err_str(err));
    kp_describe_groups_response_t resp;
    kp_describe_groups_response_init(&resp);
    resp.throttle_time_ms = 0;
    int32_t ng = rq->groups_count > 0 ? rq->groups_count : 0;
    resp.groups = gw_req_alloc(req, (size_t)ng * sizeof *resp.groups + 1);
    resp.groups_count = ng;
    for (int32_t i = 0; i < ng; i++) {
        described_t *d = &resp.groups[i];
        kp_describe_groups_response_described_group_init(d);
        d->group_id = rq->groups[i];
        d->authorized_operations = INT32_MIN;
        d->group_state = kp_str("Dead");
        d->protocol_type = kp_str("");
        d->protocol_data = kp_str("");
        d->members_count = 0;
        if (rq->groups[i].len <= 0) {
            d->error_code = KP_ERR_INVALID_GROUP_ID;
            continue;
        }
        if (!gw_coordinates(req->srv, rq->groups[i])) {
            d->error_code = KP_ERR_NOT_COORDINATOR;
            continue;
        }
        gw_group_t *g = gw_group_find(c, rq->groups[i]);
        if (g) {
            describe(req, d, g);
            continue;
        }
        if (err != ST_OK) {
            d->error_code = KP_ERR_COORDINATOR_NOT_AVAILABLE;
            continue;
        }
        for (size_t k = 0; k < n; k++)
            if (kp_str_eq(rq->groups[i], names[k])) {
                d->group_state = kp_str("Empty");
                d->protocol_type = kp_str(gw_req_strdup(req, types[k], strlen(types[k])));
            }
    }
    gw_req_respond(req, &resp);
}

int gw_api_describe_groups(gw_req_t *req)
{
    int rc = st_log_list_groups(req->srv->log, listed_cb, req);
    if (rc != 0)
        listed_cb(gw_st_start_err(rc), NULL, NULL, 0, req);
    return 0;
}
