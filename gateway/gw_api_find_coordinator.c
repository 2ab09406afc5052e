/*
 * gw_api_find_coordinator.c: FindCoordinator (key 10), v0-4.
 *
 * A group (key type 0) is coordinated by one live node (gw_cluster.h;
 * this node alone without a cluster).  Transactions are not
 * built: key type 1 answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53),
 * which librdkafka treats as fatal instead of retrying until its timeout
 * (DESIGN §8).  Advertising FindCoordinator also makes librdkafka send LZ4
 * batches compressed.
 */
#include "gw_api.h"

#define KEY_TYPE_GROUP 0
#define KEY_TYPE_TRANSACTION 1

/* The answer for one key: node, host, port and error. */
static void coordinator_for(gw_req_t *req, int8_t key_type, kp_str_t key, int16_t *err,
                            int32_t *node_id, kp_str_t *host, int32_t *port)
{
    if (key_type == KEY_TYPE_GROUP) {
        const gw_node_t *c = gw_group_coordinator(req, key);
        *err = KP_ERR_NONE;
        *node_id = c->id;
        *host = kp_str(c->host);
        *port = c->port;
        return;
    }
    *err = key_type == KEY_TYPE_TRANSACTION ? KP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                                            : KP_ERR_INVALID_REQUEST;
    *node_id = -1;
    *host = kp_str("");
    *port = -1;
}

int gw_api_find_coordinator(gw_req_t *req)
{
    const kp_find_coordinator_request_t *rq = req->body;
    kp_find_coordinator_response_t resp;
    kp_find_coordinator_response_init(&resp);
    resp.throttle_time_ms = 0; /* v1+ */
    if (req->api_version < 4) {
        coordinator_for(req, rq->key_type, rq->key, &resp.error_code, &resp.node_id, &resp.host,
                        &resp.port);
        resp.error_message = KP_STR_NULL; /* v1-3 */
        gw_req_respond(req, &resp);
        return 0;
    }
    /* v4+: one answer per key (KIP-699). */
    int32_t n = rq->coordinator_keys_count > 0 ? rq->coordinator_keys_count : 0;
    resp.coordinators = gw_req_alloc(req, (size_t)n * sizeof *resp.coordinators);
    resp.coordinators_count = n;
    for (int32_t i = 0; i < n; i++) {
        kp_find_coordinator_response_coordinator_t *c = &resp.coordinators[i];
        kp_find_coordinator_response_coordinator_init(c);
        c->key = rq->coordinator_keys[i];
        coordinator_for(req, rq->key_type, c->key, &c->error_code, &c->node_id, &c->host, &c->port);
        c->error_message = KP_STR_NULL;
    }
    gw_req_respond(req, &resp);
    return 0;
}
