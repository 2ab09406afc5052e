/*
 * gw_api_init_producer_id.c: InitProducerId (key 22), v0-4.
 *
 * Idempotent producers only: a new producer id with epoch 0, or (v3+,
 * KIP-360) the caller's id with its epoch bumped when this gateway handed
 * it out (st_log_init_producer).  Transactions are not built: a
 * transactional id answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53),
 * which librdkafka and kafkajs treat as fatal instead of retrying until
 * their timeouts (DESIGN §8).
 */
#include "gw_api.h"

#include "gw_log.h"

static void answer(gw_req_t *req, kp_err_t err, int64_t pid, int16_t epoch)
{
    kp_init_producer_id_response_t resp;
    kp_init_producer_id_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = (int16_t)err;
    resp.producer_id = err == KP_ERR_NONE ? pid : -1;
    resp.producer_epoch = err == KP_ERR_NONE ? epoch : -1;
    gw_req_respond(req, &resp);
}

static void producer_cb(st_err_t err, int64_t pid, int16_t epoch, void *arg)
{
    gw_req_t *req = arg;
    if (err != ST_OK)
        gw_log_info("producer", "InitProducerId failed: %s", st_err_str(err));
    else
        gw_log_debug("producer", "producer id %lld epoch %d", (long long)pid, epoch);
    answer(req, gw_err_from_st(err), pid, epoch);
}

int gw_api_init_producer_id(gw_req_t *req)
{
    const kp_init_producer_id_request_t *rq = req->body;
    if (rq->transactional_id.len >= 0) {
        answer(req, KP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1);
        return 0;
    }
    int64_t pid = req->api_version >= 3 ? rq->producer_id : -1;
    int16_t epoch = req->api_version >= 3 ? rq->producer_epoch : -1;
    if ((pid >= 0) != (epoch >= 0)) {
        answer(req, KP_ERR_INVALID_REQUEST, -1, -1);
        return 0;
    }
    int rc = st_log_init_producer(req->srv->log, pid, epoch, producer_cb, req);
    if (rc != 0)
        answer(req, gw_err_from_st(gw_st_start_err(rc)), -1, -1);
    return 0;
}
