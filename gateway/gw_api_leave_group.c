/*
 * gw_api_leave_group.c: LeaveGroup (key 13), batched members from v3 --
 * the group coordinator's state machine answers it (gw_group.h).
 */
#include "gw_api.h"

#include "gw_group.h"

int gw_api_leave_group(gw_req_t *req)
{
    gw_group_leave(req->srv->groups, req);
    return 0;
}
