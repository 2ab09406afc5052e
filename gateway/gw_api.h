/*
 * gw_api.h: the Kafka API handlers (one per gw_api_<name>.c) and what they
 * share: the one mapping from storage errors to Kafka errors, topic-name
 * rules, topic look-ups and automatic topic creation.
 *
 * Ownership: handlers borrow the request; everything they put in a response
 * lives in req->resp_arena or in the log (topic names), and is encoded before
 * control returns to the loop.
 * Threading: loop thread only.
 */
#ifndef GW_API_H
#define GW_API_H

#include <stdbool.h>
#include <stdint.h>

#include "gw_cluster.h"
#include "gw_conn.h"
#include "gw_server.h"
#include "kp_errors.h"
#include "st_err.h"
#include "st_log.h"

/* Kafka's topic-name rules (Topic.validate): at most this many characters
 * of [a-zA-Z0-9._-], and not "." or "..". */
#define GW_TOPIC_NAME_MAX 249

/* Most partitions one topic may have: CreateTopics beyond it is
 * INVALID_PARTITIONS (each partition costs memory whether used or not). */
#define GW_MAX_PARTITIONS 100000

/* OffsetCommit metadata longer than this is OFFSET_METADATA_TOO_LARGE
 * (Kafka's offset.metadata.max.bytes default). */
#define GW_OFFSET_METADATA_MAX 4096

/* Kafka's config resource types (DescribeConfigs). */
#define GW_RESOURCE_TOPIC 2
#define GW_RESOURCE_BROKER 4

int gw_api_api_versions(gw_req_t *req);
int gw_api_metadata(gw_req_t *req);
int gw_api_produce(gw_req_t *req);
int gw_api_fetch(gw_req_t *req);
int gw_api_list_offsets(gw_req_t *req);
int gw_api_create_topics(gw_req_t *req);
int gw_api_delete_topics(gw_req_t *req);
int gw_api_describe_configs(gw_req_t *req);
int gw_api_find_coordinator(gw_req_t *req);
int gw_api_offset_commit(gw_req_t *req);
int gw_api_offset_fetch(gw_req_t *req);
int gw_api_create_partitions(gw_req_t *req);
int gw_api_delete_records(gw_req_t *req);
int gw_api_offset_for_leader_epoch(gw_req_t *req);
int gw_api_describe_cluster(gw_req_t *req);
int gw_api_alter_configs(gw_req_t *req);
int gw_api_incremental_alter_configs(gw_req_t *req);

/* For each of @n names, whether it occurs more than once (an array in the
 * request's arena; null names count as ""). */
bool *gw_names_repeated(gw_req_t *req, const kp_str_t *names, int32_t n);

/* Topic configurations that AlterConfigs and IncrementalAlterConfigs
 * change: true for retention.ms, retention.bytes, max.message.bytes,
 * cleanup.policy, compression.type, flush.ms, flush.messages and
 * message.format.version (gw_api_alter_configs.c). */
bool gw_topic_config_alterable(const char *name);

/* Dynamic per-broker configurations (gw_broker_cfg.c): the Kerberos login
 * settings Kafka changes at run time, met by construction (no SASL
 * listener), kept under /nuthatch/broker-configs/<node>. */
bool gw_broker_config_dynamic(const char *name);
/* NULL when @name = @value may be stored, else why not (in the arena). */
const char *gw_broker_config_check(gw_req_t *req, const char *name, const char *value);
size_t gw_broker_dyn_count(void);
const char *gw_broker_dyn_name(size_t i);
const char *gw_broker_dyn_default(size_t i);
bool gw_broker_dyn_is_long(size_t i); /* else a double */

/* This node's stored dynamic configurations (strings in the request's
 * arena) and the mod revision of their key (0 when absent). */
typedef struct gw_broker_cfgs {
    st_topic_config_t *c;
    size_t n;
    int64_t mod_rev;
} gw_broker_cfgs_t;
typedef void (*gw_broker_cfgs_cb)(st_err_t err, const gw_broker_cfgs_t *cfgs, void *arg);
typedef void (*gw_broker_done_cb)(st_err_t err, void *arg);
/* Read them; @cb runs later.  Returns 0 or an st_err_t (no callback). */
int gw_broker_cfgs_load(gw_req_t *req, gw_broker_cfgs_cb cb, void *arg);
/* Replace them by @c[0..@n) (checked by the caller); with @mod_rev >= 0
 * only if the key's mod revision is still @mod_rev (ST_ERR_CONFLICT
 * otherwise).  Returns 0 or an st_err_t (no callback). */
int gw_broker_cfgs_store(gw_req_t *req, const st_topic_config_t *c, size_t n, int64_t mod_rev,
                         gw_broker_done_cb cb, void *arg);

/* For a configuration AlterConfigs can change, why @value is not valid for
 * it (in the arena), else NULL; NULL for any other name. */
const char *gw_topic_config_check(gw_req_t *req, const char *name, const char *value);

/* The codec @topic's compression.type asks for (a kp_compression_t), or -1
 * for "producer" (the default: batches are stored as sent). */
int gw_topic_codec(const st_topic_t *topic);

/* The value DescribeConfigs reports for topic configuration @name of
 * @topic (override, broker key or fixed default; in the request's arena),
 * or NULL when it lists no such configuration (gw_api_describe_configs.c). */
const char *gw_topic_config_described(gw_req_t *req, const st_topic_t *topic, const char *name);

/* The largest record batch @topic accepts: its max.message.bytes override,
 * else message.max.bytes. */
int32_t gw_topic_max_message_bytes(const gw_server_t *srv, const st_topic_t *topic);
int gw_api_init_producer_id(gw_req_t *req);
int gw_api_join_group(gw_req_t *req);
int gw_api_sync_group(gw_req_t *req);
int gw_api_heartbeat(gw_req_t *req);
int gw_api_leave_group(gw_req_t *req);
int gw_api_list_groups(gw_req_t *req);
int gw_api_describe_groups(gw_req_t *req);
int gw_api_delete_groups(gw_req_t *req);
int gw_api_offset_delete(gw_req_t *req);

/* The only place a storage error becomes a Kafka error (STYLE §8). */
kp_err_t gw_err_from_st(st_err_t err);

/* The st_err_t of an st_log call that returned @rc != 0 without starting
 * (the header promises only "nonzero"; a value that is an st_err_t is kept). */
st_err_t gw_st_start_err(int rc);

/* True when @name follows Kafka's topic-name rules. */
bool gw_topic_name_valid(kp_str_t name);

/* The live topic called @name, or NULL (absent or being deleted). */
st_topic_t *gw_topic_find(gw_server_t *srv, kp_str_t name);

/* The live topic with id @id, or NULL. */
st_topic_t *gw_topic_find_id(gw_server_t *srv, kp_uuid_t id);

/* Partition @index of @topic, or NULL when out of range. */
st_part_t *gw_topic_part(st_topic_t *topic, int32_t index);

/* True when a request of this kind may create missing topics: the server
 * allows it (auto.create.topics.enable) and so does the request. */
bool gw_autocreate_allowed(const gw_server_t *srv, bool request_allows);

/**
 * Create topic @name with the default partition count.
 * @returns 0 when started (@cb will run later), or an st_err_t when it
 *          could not start (no callback).
 */
st_err_t gw_topic_autocreate(gw_server_t *srv, kp_str_t name, st_topic_cb cb, void *arg);

/**
 * Create topic @name (st_log_create_topic), then write its partitions'
 * leader records (gw_leaders_ensure) before @cb runs.
 * @returns as gw_topic_autocreate.
 */
st_err_t gw_topic_create(gw_server_t *srv, kp_str_t name, int32_t nparts,
                         const st_topic_config_t *configs, size_t nconfigs, st_topic_cb cb,
                         void *arg);

/**
 * Raise @topic's partition count to @nparts (st_log_create_partitions),
 * then write the new partitions' leader records before @cb runs.
 * @returns as gw_topic_autocreate.
 */
st_err_t gw_topic_add_partitions(gw_server_t *srv, st_topic_t *topic, int32_t nparts,
                                 void (*cb)(st_err_t err, void *arg), void *arg);

/* The broker this node advertises: host and port (port 0 in the config
 * means the bound port). */
const char *gw_advertised_host(const gw_server_t *srv);
int32_t gw_advertised_port(const gw_server_t *srv);

/* The live brokers (gw_cluster.h), sorted by id: this node alone when the
 * server has no cluster.  Allocated from @req; *@n >= 1. */
const gw_node_t *gw_live_nodes(gw_req_t *req, size_t *n);
/* The coordinator of group @group (gw_cluster_coordinator; this node when
 * the server has no cluster), allocated from @req. */
const gw_node_t *gw_group_coordinator(gw_req_t *req, kp_str_t group);
/* True when this node coordinates @group: the other nodes answer
 * NOT_COORDINATOR to the group's requests. */
bool gw_coordinates(const gw_server_t *srv, kp_str_t group);
/* The leader of partition @p of @topic: the one its record names
 * (gw_leaders.h), -1 while it has none; this node when the server has no
 * cluster. */
int32_t gw_part_leader(const gw_server_t *srv, const st_topic_t *topic, int32_t p);
/* True when this node leads partition @p of @topic: the other nodes answer
 * NOT_LEADER_OR_FOLLOWER to its Produce, Fetch, ListOffsets,
 * OffsetForLeaderEpoch and DeleteRecords. */
bool gw_leads(const gw_server_t *srv, const st_topic_t *topic, int32_t p);
/* Whether this node may acknowledge appends (gw_cluster_lease_state;
 * FRESH when the server has no cluster). */
gw_lease_state_t gw_lease_state(const gw_server_t *srv);
/* The controller reported to clients: the lowest live node id. */
int32_t gw_controller_id(const gw_server_t *srv);

/* The cluster id reported to clients: cluster.id when set, else the log's. */
const char *gw_cluster_id(const gw_server_t *srv);

#endif
