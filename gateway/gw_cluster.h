/*
 * gw_cluster.h: membership of the gateways sharing one metadata store
 * (DESIGN §6, docs/cluster.md).
 *
 * Each gateway puts /nuthatch/nodes/<node.id> = its advertised listener
 * ("PLAINTEXT://host:port") under a lease of cluster.lease.ms that it keeps
 * alive (a keep-alive every third of the lease), and keeps a view of every
 * live node: one range of /nuthatch/nodes/ at start, then a watch from the
 * revision after it (a broken watch is replaced by a new range and watch).
 * A node that dies stops renewing; its key goes when the lease expires, and
 * the watches remove it from every other node's view.  A graceful stop
 * revokes the lease, so the node leaves at once.
 *
 * A node.id already registered under another lease (a previous run killed
 * before its lease expired, or another gateway configured with the same
 * id) is taken over with a warning: the log's fence already guarantees
 * that of two incarnations of one node id only the newest commits.  A lease
 * that expired while the node lived (it could not reach the store in time)
 * is replaced by a new one and the key put again.
 *
 * The controller is the lowest live node id; each consumer group has one
 * coordinator among the live nodes (gw_cluster_coordinator).
 *
 * Ownership: borrows @base and @meta, which must outlive the cluster; the
 * node array handed out is borrowed until the next return to the loop.
 * Threading: loop thread only.
 */
#ifndef GW_CLUSTER_H
#define GW_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "gw_url.h"
#include "st_meta.h"

struct event_base;

typedef struct gw_cluster gw_cluster_t;

/* One live node as its key says. */
typedef struct gw_node {
    int32_t id;             /* node.id, >= 0 */
    char host[GW_HOST_MAX]; /* advertised host (IPv6 without brackets) */
    int32_t port;           /* advertised port */
} gw_node_t;

/* Most nodes kept in the view; more keys are ignored (and logged). */
#define GW_CLUSTER_MAX_NODES 1024

/* The key prefix of node registrations. */
#define GW_CLUSTER_NODES_PREFIX "/nuthatch/nodes/"

/**
 * A member with id @node_id advertising @host:@port, lease @lease_ms.
 * Nothing is sent before gw_cluster_start().
 * @returns owned (gw_cluster_free), NULL when out of memory.
 */
gw_cluster_t *gw_cluster_new(struct event_base *base, st_meta_t *meta, int32_t node_id,
                             const char *host, int32_t port, int64_t lease_ms);

/**
 * Register and load the view; @cb(ST_OK) once this node's key is stored and
 * the view read (then the view is kept current).  A store error is retried
 * every second until @give_up_ms (monotonic clock, ms) passes, then @cb gets
 * it.  @cb runs once.
 */
void gw_cluster_start(gw_cluster_t *cl, int64_t give_up_ms, void (*cb)(st_err_t err, void *arg),
                      void *arg);

/* The live nodes, sorted by id; this node is always among them. */
const gw_node_t *gw_cluster_nodes(const gw_cluster_t *cl, size_t *n);

/* The lowest live node id. */
int32_t gw_cluster_controller(const gw_cluster_t *cl);

/* The coordinator of the group (or other key) @key of @len bytes: the live
 * node with the highest rendezvous hash of (node id, key), so that a node
 * leaving moves only its own keys and every node with the same view picks
 * the same one. */
const gw_node_t *gw_cluster_coordinator(const gw_cluster_t *cl, const char *key, size_t len);

/* Whether this node may acknowledge appends: FRESH while its lease is
 * known to live at least a third of cluster.lease.ms more (a grant or
 * keep-alive answered: the lease lives until its sending time plus the
 * TTL), STALE after that (renewals are late: acknowledgements wait),
 * LOST once the lease may have expired (and when there is none). */
typedef enum gw_lease_state { GW_LEASE_FRESH, GW_LEASE_STALE, GW_LEASE_LOST } gw_lease_state_t;
gw_lease_state_t gw_cluster_lease_state(const gw_cluster_t *cl);

/* Leave: stop renewing and revoke the lease (this node's key goes with
 * it).  The revocation is sent and not waited for. */
void gw_cluster_leave(gw_cluster_t *cl);

/* Stop and free (after gw_cluster_leave, or without: the lease then
 * expires on its own).  Operations in flight complete without effect.
 * NULL is a no-op. */
void gw_cluster_free(gw_cluster_t *cl);

#endif
