/*
 * gw_leaders.h: the recorded leader and leader epoch of every partition
 * (DESIGN §6, docs/cluster.md "Leadership").
 *
 * Each partition's leader is recorded in the metadata store:
 *   /nuthatch/leaders/<topic-id, 32 hex>/<p>/state = "leader=<node>\nepoch=<e>\n"
 * Every node reads every state key once (a range of /nuthatch/leaders/)
 * and then watches the prefix, keeping a map of the records it has seen.
 * The records have a prefix of their own, apart from the partitions' index
 * keys: that range and that watch stay as small as the number of
 * partitions whatever the index holds (under /nuthatch/partitions/, a
 * 1,000-partition topic's 200,000 index keys made the start-up range
 * larger than etcd answers, and every fold woke every node's watch).
 *
 * The controller (the lowest live node id) writes them: every tick it
 * compares each partition's record with the live node of the highest
 * rendezvous hash (gw_cluster_coordinator over the topic id and the
 * partition, the spread that existed before records did):
 *   - no record yet: it writes one naming that node, epoch 0 (compare:
 *     the key is absent);
 *   - a record naming another node: a move, epoch + 1 (compare: the
 *     record's mod revision is the one read).
 *     The same transaction bumps the old leader's fence key
 *     (/nuthatch/nodes/<node>/fence = "<incarnation>.m<its mod revision>",
 *     compared with the value read just before): its commits in flight
 *     fail, and it adopts the new value once it has seen the move
 *     (gw_leaders_sync; st_log_cfg_t.sync).
 * Up to GW_LEADERS_TXN_PARTS records per transaction.  A transaction whose
 * compare fails changes nothing; the watch brings the newer record and the
 * next tick tries again.
 *
 * A record (seen by the watch, or written here) that names this node at an
 * epoch it did not lead starts the partition's takeover
 * (st_part_take_over: catch-up on what the previous leaders committed);
 * Produce is refused until it ends.  A record that comes before its topic
 * or partition (the catalog watch is another stream) leaves the partition
 * without a leader here (gw_leaders_get: -1) until it has appeared and
 * its takeover has started (checked every tick).
 *
 * A partition without a record has no leader: no node appends to it (they
 * answer NOT_LEADER_OR_FOLLOWER, Metadata LEADER_NOT_AVAILABLE), so two
 * nodes whose views differ never both append to it unfenced.  The node
 * that creates a topic or adds partitions writes their records itself
 * (gw_leaders_ensure) before it answers, so the creator's clients never
 * see the gap; the controller writes any still missing (e.g. partitions
 * of a store from before records existed).
 *
 * Ownership: borrows @meta, @log and @cl, which must outlive it.
 * Threading: loop thread only.
 */
#ifndef GW_LEADERS_H
#define GW_LEADERS_H

#include <stdbool.h>
#include <stdint.h>

#include "gw_cluster.h"
#include "st_log.h"
#include "st_meta.h"

struct event_base;

typedef struct gw_leaders gw_leaders_t;

/* Records per transaction (one compare and one put each). */
#define GW_LEADERS_TXN_PARTS 48

/* How often the controller compares the records with the live nodes (ms). */
#define GW_LEADERS_TICK_MS 200

/* @returns owned (gw_leaders_free), NULL when out of memory. */
gw_leaders_t *gw_leaders_new(struct event_base *base, st_meta_t *meta, st_log_t *log,
                             gw_cluster_t *cl, int32_t node_id);

/* Read the records and watch them; @cb(ST_OK) once read (a failed read is
 * retried every second until @give_up_ms, monotonic ms, then @cb gets the
 * error).  @cb runs once. */
void gw_leaders_start(gw_leaders_t *ld, int64_t give_up_ms, void (*cb)(st_err_t err, void *arg),
                      void *arg);

/* The recorded leader and epoch of partition @p of topic @id; false when
 * there is no record (then neither is set). */
bool gw_leaders_get(const gw_leaders_t *ld, kp_uuid_t id, int32_t p, int32_t *leader,
                    int32_t *epoch);

/* The live node of the highest rendezvous hash of (node id, topic id,
 * partition) in @cl's view: the leader a record should name. */
int32_t gw_leaders_hashed(const gw_cluster_t *cl, kp_uuid_t id, int32_t p);

/* Write the record of each partition of topic @id in [@from, @nparts)
 * that has none yet: the hashed leader (gw_leaders_hashed) at epoch 0,
 * with a compare that the key is absent (a record another node wrote
 * first is read instead and kept), GW_LEADERS_TXN_PARTS per transaction.
 * Then @done(@arg), once each of those partitions has a record here
 * (unless a write failed: logged; the controller writes the rest).
 * @done may run inside this call.  Dropped, uncalled, by gw_leaders_free
 * while a transaction is in flight. */
void gw_leaders_ensure(gw_leaders_t *ld, kp_uuid_t id, int32_t from, int32_t nparts,
                       void (*done)(void *arg), void *arg);

/* Call @done(@arg) once every record written up to store revision @rev is
 * reflected (gw_leaders_get; the partitions' epochs), from the loop, never
 * from inside this call.  Dropped, uncalled, by gw_leaders_free. */
void gw_leaders_sync(gw_leaders_t *ld, int64_t rev, void (*done)(void *arg), void *arg);

/* Moves written by this node as controller (for logs and tests). */
uint64_t gw_leaders_moves(const gw_leaders_t *ld);
/* Takeovers this node started (records naming it at a new epoch). */
uint64_t gw_leaders_takeovers(const gw_leaders_t *ld);

/* Stop watching and writing, and free.  Operations in flight complete
 * without effect.  NULL is a no-op. */
void gw_leaders_free(gw_leaders_t *ld);

/* The text of a state record ("leader=<node>\nepoch=<e>\n") into @buf of
 * @cap bytes; its length. */
size_t gw_leaders_format(char *buf, size_t cap, int32_t leader, int32_t epoch);
/* Parse a state record; false when it is not one. */
bool gw_leaders_parse(const uint8_t *val, size_t len, int32_t *leader, int32_t *epoch);
/* Parse a state key "/nuthatch/leaders/<32 hex>/<p>/state"; false for
 * any other key. */
bool gw_leaders_parse_key(const char *key, kp_uuid_t *id, int32_t *p);

#endif
