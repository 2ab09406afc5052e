/*
 * gw_api_sync_group.c: SyncGroup (key 14) -- the group coordinator's state machine
 * answers it (gw_group.h).
 */
#include "gw_api.h"

#include "gw_group.h"

int gw_api_sync_group(gw_req_t *req)
{
    gw_group_sync(req->srv->groups, req);
    return 0;
}
