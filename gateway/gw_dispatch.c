/*
 * gw_dispatch.c: the API table, request dispatch and the ApiVersions list.
 */
#include "gw_dispatch.h"

#include <assert.h>

#include "gw_api.h"
#include "gw_log.h"
#include "gw_server.h"

/*
 * One row per handled API.  ApiVersions lists exactly these rows and
 * ranges, so what is advertised cannot drift from what is answered.  The
 * minimums are what old clients need: kafka-python 2.0.2 sends exactly
 * Metadata v0, Fetch v4, ListOffsets v1, OffsetCommit v2 and OffsetFetch v1;
 * librdkafka needs Produce v3 and Fetch v4 for MsgVer2, Produce v7 and Fetch
 * v10 for zstd, and FindCoordinator for LZ4 (DESIGN §8).  Fetch v13 names
 * topics by id, so Metadata v10+ returns topic ids.
 *
 * Two header gotchas live in the codec, not here: the ApiVersions response
 * header is always v0 (no tagged fields), and the request header's ClientId
 * stays a non-compact string even in header v2.
 */
/* The maxima are the highest versions a real client sends in a test
 * (compat-tests/, protocol/tests/golden/): the codec covers more, but a
 * client always uses the highest version both sides list, so only tested
 * versions are listed (DESIGN §8).  Raise one when a test exercises it. */
static const gw_api_t apis[KP_API_MAX_KEY + 1] = {
    /* Produce is listed from v0 though v0-v2 (message formats 0 and 1) are
     * refused: librdkafka sends gzip, snappy and lz4 batches uncompressed
     * to a broker that does not list Produce v0 (librdkafka issue #4956;
     * Kafka 4.0 lists them the same way, KAFKA-18659). */
    [KP_API_PRODUCE] = {3, 7, gw_api_produce, true}, /* 7: librdkafka, kafka-python, kafkajs */
    [KP_API_FETCH] = {4, 11, gw_api_fetch, false},   /* 11: librdkafka, kafkajs */
    [KP_API_LIST_OFFSETS] = {1, 7, gw_api_list_offsets,
                             false},                    /* 3: kafkajs; 7: 0044 (hand-encoded) */
    [KP_API_METADATA] = {0, 6, gw_api_metadata, false}, /* 6: kafkajs */
    [KP_API_OFFSET_COMMIT] = {2, 7, gw_api_offset_commit, false}, /* 7: librdkafka */
    [KP_API_OFFSET_FETCH] = {1, 8, gw_api_offset_fetch, false},   /* 7: librdkafka; 8: 0024 */
    [KP_API_FIND_COORDINATOR] = {0, 4, gw_api_find_coordinator,
                                 false}, /* 2: librdkafka, kafkajs; 3-4: 0024 */
    [KP_API_API_VERSIONS] = {0, 3, gw_api_api_versions, false},         /* 3: librdkafka */
    [KP_API_CREATE_TOPICS] = {2, 4, gw_api_create_topics, false},       /* 4: confluent-kafka */
    [KP_API_DELETE_TOPICS] = {1, 3, gw_api_delete_topics, false},       /* 3: kafka-python */
    [KP_API_DESCRIBE_CONFIGS] = {0, 2, gw_api_describe_configs, false}, /* 2: kafkajs */
    [KP_API_ALTER_CONFIGS] = {0, 1, gw_api_alter_configs, false}, /* 1: kafkajs, kafka-python */
    /* 0: hand-encoded (compat-tests/0044); no installed client sends it */
    [KP_API_INCREMENTAL_ALTER_CONFIGS] = {0, 0, gw_api_incremental_alter_configs, false},
    [KP_API_CREATE_PARTITIONS] = {0, 1, gw_api_create_partitions, false}, /* 1: kafkajs */
    [KP_API_DELETE_RECORDS] = {0, 1, gw_api_delete_records, false},       /* 1: kafkajs, 0044 */
    /* 3: hand-encoded v0-v3 (0044); librdkafka 2.0.2 does not send it */
    [KP_API_OFFSET_FOR_LEADER_EPOCH] = {0, 3, gw_api_offset_for_leader_epoch, false},
    [KP_API_DESCRIBE_CLUSTER] = {0, 0, gw_api_describe_cluster, false}, /* 0: hand-encoded (0044) */
    /* 4: librdkafka (KIP-360 epoch bumps from v3); kafkajs sends v1 */
    [KP_API_INIT_PRODUCER_ID] = {0, 4, gw_api_init_producer_id, false},
    [KP_API_JOIN_GROUP] = {0, 5, gw_api_join_group, false},   /* 5: librdkafka, kafkajs */
    [KP_API_SYNC_GROUP] = {0, 3, gw_api_sync_group, false},   /* 3: librdkafka, kafkajs */
    [KP_API_HEARTBEAT] = {0, 3, gw_api_heartbeat, false},     /* 3: librdkafka, kafkajs */
    [KP_API_LEAVE_GROUP] = {0, 3, gw_api_leave_group, false}, /* 3: kafkajs (batched) */
    /* 4: librdkafka's ListConsumerGroups (0081: the state filter); kafkajs sends v2 */
    [KP_API_LIST_GROUPS] = {0, 4, gw_api_list_groups, false},
    /* 4: librdkafka's DescribeConsumerGroups (0081: group.instance.id); kafkajs sends v2 */
    [KP_API_DESCRIBE_GROUPS] = {0, 4, gw_api_describe_groups, false},
    [KP_API_DELETE_GROUPS] = {0, 1, gw_api_delete_groups, false}, /* 1: kafkajs, librdkafka */
    [KP_API_OFFSET_DELETE] = {0, 0, gw_api_offset_delete, false}, /* 0: librdkafka */
};

const gw_api_t *gw_api_lookup(int16_t api_key)
{
    if (api_key < 0 || api_key > KP_API_MAX_KEY || !apis[api_key].handle)
        return NULL;
    return &apis[api_key];
}

void gw_api_versions_fill(gw_req_t *req, int16_t error_code, kp_api_versions_response_t *resp)
{
    kp_api_versions_response_init(resp);
    int32_t n = 0;
    for (int k = 0; k <= KP_API_MAX_KEY; k++)
        n += apis[k].handle != NULL;
    resp->error_code = error_code;
    resp->api_keys = gw_req_alloc(req, (size_t)n * sizeof *resp->api_keys);
    resp->api_keys_count = n;
    int32_t i = 0;
    for (int k = 0; k <= KP_API_MAX_KEY; k++) {
        if (!apis[k].handle)
            continue;
        kp_api_versions_response_api_version_init(&resp->api_keys[i]);
        resp->api_keys[i].api_key = (int16_t)k;
        resp->api_keys[i].min_version = apis[k].list_from_v0 ? 0 : apis[k].min_ver;
        resp->api_keys[i].max_version = apis[k].max_ver;
        i++;
    }
    resp->throttle_time_ms = 0;
}

/* Answer an ApiVersions request whose version we do not speak: error 35
 * and our ranges, in v0 format, so that any client can read it and retry
 * with a version it finds in the list (DESIGN §8, KIP-511). */
static void api_versions_unsupported(gw_req_t *req)
{
    kp_api_versions_response_t resp;
    gw_api_versions_fill(req, KP_ERR_UNSUPPORTED_VERSION, &resp);
    gw_log_debug("dispatch", "conn %llu: ApiVersions v%d unsupported, answering v0",
                 (unsigned long long)req->conn->id, req->api_version);
    gw_req_respond_version(req, 0, &resp);
}

/* Close the connection for a request we will not answer -- after the
 * requests before it are answered, as Kafka does: a produce stored just
 * before a bad frame is still acknowledged rather than retried twice. */
static void reject(gw_req_t *req, const char *why)
{
    req->srv->stats.bad_frames++;
    gw_log_info("dispatch", "conn %llu from %s: %s (api %d v%d, correlation id %d), closing",
                (unsigned long long)req->conn->id, req->conn->peer, why, req->api_key,
                req->api_version, req->hdr.correlation_id);
    gw_conn_drain(req->conn, why);
    gw_req_finish_silent(req);
}

void gw_dispatch(gw_req_t *req)
{
    /* The frame is at least GW_MIN_FRAME bytes: key and version are there. */
    req->api_key = (int16_t)kp_be16(req->frame);
    req->api_version = (int16_t)kp_be16(req->frame + 2);
    kp_request_header_init(&req->hdr);
    const gw_api_t *api = gw_api_lookup(req->api_key);
    bool in_range = api && req->api_version >= api->min_ver && req->api_version <= api->max_ver;
    kp_derr_t err = KP_DECODE_VERSION;
    if (in_range) {
        err = kp_decode_request(req->frame, req->frame_len, &req->arena, &req->hdr, &req->body);
    } else {
        /* Only the header is needed, read as v1 (ClientId is never
         * compact): ApiVersions answers with it, the others log it.  The
         * body of an unknown version is not parsed. */
        kp_reader_t r;
        kp_reader_init(&r, req->frame, req->frame_len);
        err = kp_request_header_decode(&r, &req->arena, 1, &req->hdr);
        if (err == KP_DECODE_OK && req->api_key == KP_API_API_VERSIONS) {
            api_versions_unsupported(req);
            return;
        }
    }
    if (!api) {
        reject(req, "unknown api key");
        return;
    }
    if (!in_range) {
        reject(req, "unsupported api version");
        return;
    }
    if (err != KP_DECODE_OK) {
        gw_log_debug("dispatch", "decode error: %s", kp_derr_str(err));
        reject(req, "malformed request");
        return;
    }
    gw_log_debug("dispatch", "conn %llu: api %d v%d correlation id %d",
                 (unsigned long long)req->conn->id, req->api_key, req->api_version,
                 req->hdr.correlation_id);
    if (api->handle(req) != 0 && !req->done)
        reject(req, "protocol violation");
}
