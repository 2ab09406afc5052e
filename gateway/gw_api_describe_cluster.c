/*
 * gw_api_describe_cluster.c: DescribeCluster (key 60), v0.
 *
 * The cluster id (gw_cluster_id), the live brokers and the controller, as
 * Metadata says; authorized operations are not computed
 * (INT32_MIN, "not requested", whatever the request asks: there are no
 * ACLs to evaluate).
 */
#include "gw_api.h"

#include <stdint.h>

int gw_api_describe_cluster(gw_req_t *req)
{
    gw_server_t *srv = req->srv;
    kp_describe_cluster_response_t resp;
    kp_describe_cluster_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = KP_ERR_NONE;
    resp.error_message = KP_STR_NULL;
    resp.endpoint_type = 1; /* v1: brokers */
    resp.cluster_id = kp_str(gw_cluster_id(srv));
    resp.controller_id = gw_controller_id(srv);
    size_t nnodes;
    const gw_node_t *nodes = gw_live_nodes(req, &nnodes);
    resp.brokers = gw_req_alloc(req, nnodes * sizeof *resp.brokers);
    resp.brokers_count = (int32_t)nnodes;
    for (size_t i = 0; i < nnodes; i++) {
        kp_describe_cluster_response_describe_cluster_broker_init(&resp.brokers[i]);
        resp.brokers[i].broker_id = nodes[i].id;
        resp.brokers[i].host = kp_str(nodes[i].host);
        resp.brokers[i].port = nodes[i].port;
        resp.brokers[i].rack = KP_STR_NULL;
    }
    resp.cluster_authorized_operations = INT32_MIN;
    gw_req_respond(req, &resp);
    return 0;
}
