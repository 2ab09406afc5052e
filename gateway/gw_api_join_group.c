/*
 * gw_api_join_group.c: JoinGroup (key 11) -- the group coordinator's state machine
 * answers it (gw_group.h).
 */
#include "gw_api.h"

#include "gw_group.h"

int gw_api_join_group(gw_req_t *req)
{
    gw_group_join(req->srv->groups, req);
    return 0;
}
