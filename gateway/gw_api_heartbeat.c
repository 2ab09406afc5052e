/*
 * gw_api_heartbeat.c: Heartbeat (key 12) -- the group coordinator's state machine
 * answers it (gw_group.h).
 */
#include "gw_api.h"

#include "gw_group.h"

int gw_api_heartbeat(gw_req_t *req)
{
    gw_group_heartbeat(req->srv->groups, req);
    return 0;
}
