/*
 * gw_group.h: the consumer-group coordinator of one gateway -- every
 * group's membership, generation and rebalance state machine (Kafka's
 * GroupCoordinator and GroupMetadata: Empty, PreparingRebalance,
 * CompletingRebalance, Stable), session and rebalance timers, static
 * membership (group.instance.id) and KIP-394 member ids.
 *
 * The assignors run in the clients: the coordinator picks the protocol
 * every member supports (the most voted among them, each member voting for
 * the first of its own protocols that all support), gives the leader every
 * member's metadata bytes and hands SyncGroup assignments out byte for byte.
 *
 * Membership lives in memory only (clients rejoin after a restart); the
 * committed offsets are in the log's metadata store.  A group with no
 * members is freed: after that only its offsets say that it exists.  All
 * state is in one gw_coord_t, so that groups can later be split by node.
 *
 * Ownership: the server owns its coordinator (gw_coord_new/gw_coord_free).
 * A JoinGroup or SyncGroup waiting for the rest of its group stays in its
 * connection's FIFO until the group answers it; a connection that closes,
 * or a server that stops, has it answered at once (NOT_COORDINATOR).
 * Threading: loop thread only.
 */
#ifndef GW_GROUP_H
#define GW_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_conn.h"
#include "kp_errors.h"

typedef struct gw_server gw_server_t;
typedef struct gw_coord gw_coord_t;
typedef struct gw_group gw_group_t;

/* Kafka's bounds on the session timeout a member asks for are the
 * configuration keys group.min.session.timeout.ms and
 * group.max.session.timeout.ms (INVALID_SESSION_TIMEOUT outside). */

/* @returns owned, or NULL when out of memory. */
gw_coord_t *gw_coord_new(gw_server_t *srv);
/* Free every group, member and timer; requests still waiting are not
 * answered (call after the server's connections are gone).  NULL: no-op. */
void gw_coord_free(gw_coord_t *c);

/* The request handlers of the state machine: each answers @req now or
 * later (JoinGroup and SyncGroup wait for the rest of the group). */
void gw_group_join(gw_coord_t *c, gw_req_t *req);
void gw_group_sync(gw_coord_t *c, gw_req_t *req);
void gw_group_heartbeat(gw_coord_t *c, gw_req_t *req);
void gw_group_leave(gw_coord_t *c, gw_req_t *req);

/* OffsetCommit's check of generation, member and instance id for @group
 * (Kafka's validateOffsetCommit and doCommitOffsets): NONE when the commit
 * may be stored.  A group without members accepts commits without a group
 * (generation < 0, whatever the member id); a group the coordinator does
 * not hold refuses any generation >= 0 (ILLEGAL_GENERATION).  Resets the
 * member's session timer. */
kp_err_t gw_group_commit_check(gw_coord_t *c, kp_str_t group, int32_t generation,
                               kp_str_t member_id, kp_str_t instance_id);

/* ---- read-only views for ListGroups, DescribeGroups, DeleteGroups, OffsetDelete ---- */

/* The group called @id, or NULL when it has no members. */
gw_group_t *gw_group_find(gw_coord_t *c, kp_str_t id);
/* Groups held, @i from 0; NULL past the end. */
gw_group_t *gw_group_at(gw_coord_t *c, size_t i);
const char *gw_group_id(const gw_group_t *g);
/* "Empty", "PreparingRebalance", "CompletingRebalance" or "Stable". */
const char *gw_group_state_name(const gw_group_t *g);
/* True when no member has joined (members waiting for their id aside). */
bool gw_group_is_empty(const gw_group_t *g);
/* The protocol type ("consumer") and chosen protocol ("" before any). */
const char *gw_group_protocol_type(const gw_group_t *g);
const char *gw_group_protocol(const gw_group_t *g);

typedef struct gw_group_member_view {
    const char *member_id;
    const char *instance_id; /* NULL when dynamic */
    const char *client_id;
    const char *client_host;
    kp_bytes_t metadata;   /* for the chosen protocol (empty before one is chosen) */
    kp_bytes_t assignment; /* from the last SyncGroup (empty before) */
} gw_group_member_view_t;
/* Joined members, @i from 0: false past the end. */
bool gw_group_member(const gw_group_t *g, size_t i, gw_group_member_view_t *out);

/* True when a member of the consumer group @g is subscribed to @topic (its
 * "consumer" protocol metadata names it). */
bool gw_group_subscribed(const gw_group_t *g, kp_str_t topic);

/* Forget the empty group @g (DeleteGroups). */
void gw_group_forget(gw_coord_t *c, gw_group_t *g);

#endif
