/*
 * gw_api_describe_cluster.c: DescribeCluster (key 60), v0.
 *
 * The cluster id (gw_cluster_id), this node as the only broker and the
 * controller, as Metadata says; authorized operations are not computed
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
    resp.controller_id = srv->cfg->node_id;
    resp.brokers = gw_req_alloc(req, sizeof *resp.brokers);
    resp.brokers_count = 1;
    kp_describe_cluster_response_describe_cluster_broker_init(&resp.brokers[0]);
    resp.brokers[0].broker_id = srv->cfg->node_id;
    resp.brokers[0].host = kp_str(gw_advertised_host(srv));
    resp.brokers[0].port = gw_advertised_port(srv);
    resp.brokers[0].rack = KP_STR_NULL;
    resp.cluster_authorized_operations = INT32_MIN;
    gw_req_respond(req, &resp);
    return 0;
}
