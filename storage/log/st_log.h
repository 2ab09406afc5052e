/*
 * st_log.h: the node's write-ahead log -- topics and partitions, provisional
 * offsets, adaptive group-commit flushing of every partition's pending
 * batches into one object per flush, the manifest commit, recovery, and the
 * read path (memory tail, read cache, ranged object reads).
 * See docs/object-format.md and DESIGN §3-§5.
 *
 * Write path: st_part_append() copies a validated RecordBatch v2 (or
 * st_part_append_buf() keeps it where it is), assigns it
 * provisional offsets (log end offset) and queues it.  The flusher writes
 * one object with the pending batches of all partitions, then commits one
 * manifest to the metadata store with a compare on this node's fence key
 * (2 operations whatever the number of partitions); then the appends are
 * acknowledged with their base offsets and the high watermarks advance.
 * A failed or fenced flush fails every later pending and in-flight append
 * too, and each partition's log end offset returns to its high watermark.
 *
 * Ownership: the log owns topics, partitions and their buffers; st_topic_t
 * and st_part_t pointers stay valid until the topic is deleted (the
 * deletion callback is the last moment) or the log is freed.  Inputs are
 * borrowed and copied.  Read results are reference-counted buffers
 * (st_buf_t) the callback may keep with st_buf_ref().
 * Threading: every function is called on the event-loop thread; callbacks
 * run later on the loop thread, never from inside the starting call.
 */
#ifndef ST_LOG_H
#define ST_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_codec.h"
#include "st_err.h"
#include "st_meta.h"
#include "st_objstore.h"

struct event_base;

typedef struct st_log st_log_t;
typedef struct st_topic st_topic_t;
typedef struct st_part st_part_t;

/* ------------------------------------------------------------------ */
/* Reference-counted bytes                                             */
/* ------------------------------------------------------------------ */

typedef struct st_buf {
    uint8_t *data;  /* in mem */
    size_t len;     /* bytes in data */
    int refs;       /* freed when it drops to 0 */
    void *mem;      /* the allocation data lies in (owned) */
    size_t map_len; /* > 0: mem is a mapping of this many bytes from the pool */
} st_buf_t;

/* Buffers of 1 MiB and more come from a pool that keeps released ones for
 * the next (st_buf.c): their memory is reused, not faulted in afresh. */
st_buf_t *st_buf_new(size_t len);
/* A buffer of @len bytes placed for bytes read from offset @at of an object:
 * at @at's place in a block of ST_OBJ_GET_ALIGN bytes (st_objstore_get_into).
 * With @at = 0, data is aligned to ST_OBJ_GET_ALIGN. */
st_buf_t *st_buf_new_at(size_t len, uint64_t at);
/* Takes @data (malloc'ed). */
st_buf_t *st_buf_wrap(uint8_t *data, size_t len);
static inline st_buf_t *st_buf_ref(st_buf_t *b)
{
    b->refs++;
    return b;
}
void st_buf_unref(st_buf_t *b);

/* The pool of large buffers' memory, process-wide: buffers of
 * ST_BUF_BIG_MIN bytes and more are whole ST_BUF_POOL_UNITs of it, and at
 * most ST_BUF_POOL_KEEP_BYTES of released ones are kept for the next. */
#define ST_BUF_BIG_MIN (1u << 20)
#define ST_BUF_POOL_UNIT (2u << 20)
#define ST_BUF_POOL_KEEP_BYTES (32u << 20)
typedef struct st_buf_pool_stats {
    uint64_t mapped;      /* new mappings made */
    uint64_t reused;      /* buffers given a kept mapping */
    uint64_t unmapped;    /* kept ranges given back to the kernel */
    uint64_t moved_bytes; /* kept memory moved into new mappings (mremap) */
    size_t kept;          /* mappings kept for reuse now */
    size_t kept_bytes;    /* bytes in them */
} st_buf_pool_stats_t;
void st_buf_pool_stats(st_buf_pool_stats_t *s);
/* Give every kept mapping back to the kernel. */
void st_buf_pool_drain(void);

/* Bytes [off, off + len) of buf. */
typedef struct st_slice {
    st_buf_t *buf;
    size_t off;
    size_t len;
} st_slice_t;

/* ------------------------------------------------------------------ */
/* The log                                                             */
/* ------------------------------------------------------------------ */

typedef struct st_log_cfg {
    int32_t node_id;
    size_t flush_max_bytes;     /* close a pending flush at this many bytes */
    int flush_max_inflight;     /* object uploads in parallel, >= 1 */
    size_t tail_cache_bytes;    /* committed batches kept in memory, all partitions */
    size_t read_cache_bytes;    /* object ranges cached for reads, all partitions */
    size_t read_ahead_bytes;    /* ranged GETs started ahead of sequential reads, in
                                 * flight over all partitions; it also bounds how far
                                 * one GET is merged with its object's neighbouring
                                 * chunks (docs/storage.md "Read-ahead"); 0 = neither */
    int32_t default_partitions; /* for st_log_create_topic with nparts -1 */
    size_t write_buffer_bytes;  /* bytes of appended batches not yet committed (pending
                                 * and in flight) above which st_log_buffer_full() says
                                 * so; 0 = no limit */
    const char *cluster_id;     /* NULL or "": generate one at the first start;
                                 * else the id to keep (a different stored id
                                 * fails st_log_open); borrowed during new */
    /* The log's lifecycle (st_life.c, docs/storage.md "Retention and garbage
     * collection"). */
    int64_t retention_ms;          /* default of a topic's retention.ms; 0 = 604800000 (7 days),
                                    * -1 = forever */
    int64_t retention_bytes;       /* default of a topic's retention.bytes per partition;
                                    * 0 or -1 = no limit */
    int64_t lifecycle_interval_ms; /* folding runs this often; 0 = 1000 */
    int64_t retention_check_interval_ms; /* retention is applied this often; 0 = 300000 */
    int64_t gc_interval_ms; /* garbage collection runs this often; 0 = 60000, -1 = never */
    int64_t index_max_keys; /* above this many index keys a partition's small chunks are
                             * merged into segment objects; 0 = 1000 */
    int64_t segment_bytes;  /* largest segment object merging writes; 0 = 64 MiB */
    /* Does this node run retention and merging for partition @p of @topic
     * (its leader)?  NULL: every partition. */
    bool (*owns)(void *arg, const st_topic_t *topic, int32_t p);
    void *owns_arg;
    /* NULL, or leadership moves (docs/cluster.md): a flush's commit then
     * leaves out the partitions @owns says this node no longer leads, or
     * whose leader epoch changed since the flush was built (their appends
     * fail with ST_ERR_CONFLICT; their chunks stay in the object,
     * unreferenced).  A commit whose fence compare fails reads the fence:
     * a value of this incarnation bumped by a move ("<incarnation>.m<rev>")
     * makes the log call @sync(owns_arg, rev of that bump, done, done_arg),
     * which calls @done(done_arg) once @owns reflects every move written up
     * to that revision; the log then adopts the value and commits again
     * what it still leads.  Any other value fences as before. */
    void (*sync)(void *arg, int64_t rev, void (*done)(void *done_arg), void *done_arg);
    int64_t gc_grace_ms; /* an unreferenced object is deleted once it has been
                          * seen unreferenced and is older than this; 0 = 600000 */
    /* NULL, or called for each committed flush with its object's size and
     * the seconds from the start of its upload to its commit (metrics). */
    void (*on_flush)(void *arg, size_t bytes, double seconds);
    void *on_flush_arg;
    /* NULL, or called with one line (no newline) for each event an
     * operator should see that no request reports: a manifest deleted at
     * start-up because its object never landed. */
    void (*log)(void *log_arg, const char *msg);
    void *log_arg;
    /* Send a flush's manifest commit while its object is still being
     * written, when every flush before it is applied or in the same
     * transaction (at most one such flush at a time): the append is answered
     * once both are done, in about the longer of the two instead of their
     * sum.  A manifest may then name an object that never landed (a crash,
     * a failed put): a failed put's manifest is deleted before anything else
     * commits, and st_log_open deletes the newest manifest of each earlier
     * incarnation of this node whose object is missing.  Only for a store
     * no other node reads while this one writes (the embedded SQLite
     * metadata): another node could take such a manifest for committed
     * data (docs/object-format.md, "Commit ahead"). */
    bool commit_ahead;
} st_log_cfg_t;

/* @returns owned (st_log_free); borrows @base, @os and @meta, which must
 * outlive it. */
st_log_t *st_log_new(struct event_base *base, st_objstore_t *os, st_meta_t *meta,
                     const st_log_cfg_t *cfg);

/* Start: bump this node's incarnation and fence, load the catalog and every
 * partition's committed state.  @cb(ST_OK) when the log serves. */
int st_log_open(st_log_t *log, void (*cb)(st_err_t err, void *arg), void *arg);

/* Graceful stop: flush what is pending, wait for in-flight flushes and
 * commits; @cb when done.  Appends after this fail with ST_ERR_CLOSED. */
void st_log_close(st_log_t *log, void (*cb)(void *arg), void *arg);

/* Free everything; pending callbacks are not called. */
void st_log_free(st_log_t *log);

/* A stable cluster id, kept in the metadata store: the configured one, or
 * at the first start 22 characters of base64url of a random UUID. */
const char *st_log_cluster_id(const st_log_t *log);

/* Why the last st_log_open failed, one line ("" when it did not). */
const char *st_log_open_error(const st_log_t *log);

/* True when the write buffer (appended batches not yet committed) holds
 * at least cfg.write_buffer_bytes: callers should stop taking produce
 * requests until st_log_wait_space() wakes them.  Appends are still
 * accepted (a request already read is not refused). */
bool st_log_buffer_full(const st_log_t *log);
/* Bytes appended and not yet committed or failed. */
size_t st_log_buffered(const st_log_t *log);

struct st_waiter;
/* Wake @w (once; its fn is called and it is removed) when the write buffer
 * drops below its budget.  Remove it earlier with st_log_unwait_space().
 * The memory the buffer pool keeps goes back to the kernel meanwhile. */
void st_log_wait_space(st_log_t *log, struct st_waiter *w);
void st_log_unwait_space(struct st_waiter *w);

/* Counters for metrics and tests. */
typedef struct st_log_stats {
    uint64_t flushes;           /* objects written and committed */
    uint64_t flush_failures;    /* flushes that failed or were fenced */
    uint64_t commits_in_doubt;  /* commits whose outcome had to be resolved */
    uint64_t manifests_unwound; /* committed ahead, object failed: manifest deleted again */
    uint64_t parts_left_out;    /* partitions left out of a flush's commit: moved away */
    uint64_t refences;          /* fence values of this incarnation adopted after a move */
    uint64_t takeover_rebuilds; /* takeovers that rebuilt a partition's chunks from the store */
    uint64_t flush_bytes;       /* bytes in committed objects */
    uint64_t appends;           /* batches acknowledged */
    uint64_t object_gets;       /* ranged reads that missed the caches */
    uint64_t read_ahead_gets;   /* of them, started ahead of any read asking for them */
    uint64_t merged_chunks;     /* chunks read by a GET started for another chunk */
    size_t tail_bytes;          /* bytes held by memory tails */
    size_t cache_bytes;         /* bytes held by the read cache */
    /* lifecycle (st_life.c) */
    size_t manifests_unfolded;  /* committed manifests not yet folded into index keys */
    size_t index_keys;          /* folded chunks (one index key each) in memory */
    size_t index_keys_max_part; /* the most index keys of one partition */
    uint64_t fold_txns;         /* folding transactions committed */
    uint64_t chunks_expired;    /* chunks dropped by retention or below the log start */
    uint64_t gc_runs;           /* garbage collection passes completed */
    uint64_t gc_objects_deleted;
    uint64_t gc_bytes_deleted;
    uint64_t gc_flushes_failed; /* held flushes failed because their object was collected */
    size_t gc_unreferenced;     /* unreferenced objects seen by the last pass */
    uint64_t segments_written;  /* segment objects committed (merges and rewrites) */
    uint64_t chunks_merged;     /* chunks copied into them */
} st_log_stats_t;
void st_log_stats(const st_log_t *log, st_log_stats_t *out);

/* Run folding, retention and (when @gc) a garbage collection pass now,
 * instead of waiting for their intervals; @cb when done (ST_OK, or the
 * first error).  For tests and tools. */
int st_log_lifecycle_run(st_log_t *log, bool gc, void (*cb)(st_err_t err, void *arg), void *arg);
/* Hold (true) or release commits: uploaded flushes wait before their
 * commit transaction while held.  For tests of a commit delayed past the
 * GC grace period. */
void st_log_hold_commits(st_log_t *log, bool hold);

/* ------------------------------------------------------------------ */
/* Topics                                                              */
/* ------------------------------------------------------------------ */

/* A per-topic configuration override. */
typedef struct st_topic_config {
    char *name; /* e.g. "retention.ms" */
    char *value;
} st_topic_config_t;

struct st_topic {
    char *name;                 /* owned, NUL-terminated */
    kp_uuid_t id;               /* random v4 UUID, new for every creation */
    int32_t nparts;             /* partitions, >= 1 */
    st_part_t **parts;          /* nparts partitions */
    st_topic_config_t *configs; /* overrides, sorted by name */
    size_t nconfigs;
    bool deleting; /* deletion in progress: treat as absent */
};

st_topic_t *st_log_topic(st_log_t *log, const char *name, size_t name_len);
st_topic_t *st_log_topic_by_id(st_log_t *log, kp_uuid_t id);
/* Topics in name order: @i from 0; NULL past the end. */
st_topic_t *st_log_topic_at(st_log_t *log, size_t i);
size_t st_log_topic_count(const st_log_t *log);

typedef void (*st_topic_cb)(st_err_t err, st_topic_t *topic, void *arg);
/* Create a topic: @cb gets ST_ERR_EXISTS if it exists, or, if it is being
 * created, once that creation has ended (with its error if it failed).
 * @nparts -1: the configured default.  Returns -1 (no callback) for an
 * invalid name or partition count or when the log is not open. */
int st_log_create_topic(st_log_t *log, const char *name, size_t name_len, int32_t nparts,
                        const st_topic_config_t *configs, size_t nconfigs, st_topic_cb cb,
                        void *arg);
/* Delete a topic and its metadata at once (its objects are reclaimed later
 * by garbage collection).  Pending appends to it fail with
 * ST_ERR_NOT_FOUND. */
int st_log_delete_topic(st_log_t *log, st_topic_t *topic, void (*cb)(st_err_t err, void *arg),
                        void *arg);

/* Raise @topic's partition count to @nparts (more than it has): one
 * transaction that compares the topic key with the value this node knows,
 * so that of two concurrent changes only one wins (the other gets
 * ST_ERR_CONFLICT).  The new partitions exist, empty, once @cb(ST_OK)
 * runs.  ST_ERR_INVALID: @nparts is not larger. */
int st_log_create_partitions(st_log_t *log, st_topic_t *topic, int32_t nparts,
                             void (*cb)(st_err_t err, void *arg), void *arg);
/* Replace every configuration override of @topic by @configs (borrowed;
 * names unique), compared like st_log_create_partitions.  Names and values
 * must not contain '\n' or '=' in names (ST_ERR_INVALID). */
int st_log_set_topic_configs(st_log_t *log, st_topic_t *topic, const st_topic_config_t *configs,
                             size_t nconfigs, void (*cb)(st_err_t err, void *arg), void *arg);
/* The override of @name, or NULL. */
const char *st_topic_config(const st_topic_t *topic, const char *name);

/* ------------------------------------------------------------------ */
/* Partitions                                                          */
/* ------------------------------------------------------------------ */

st_topic_t *st_part_topic(const st_part_t *part);
int32_t st_part_index(const st_part_t *part);
/* High watermark: last committed offset + 1; reads see offsets < hw. */
int64_t st_part_hw(const st_part_t *part);
/* Log start offset: the first offset still stored. */
int64_t st_part_log_start(const st_part_t *part);
/* Log end offset: next offset to assign; hw <= leo. */
int64_t st_part_leo(const st_part_t *part);
int32_t st_part_leader_epoch(const st_part_t *part);
/* Set the leader epoch the partition's appends carry (from its leader
 * record; 0 until one exists). */
void st_part_set_leader_epoch(st_part_t *part, int32_t epoch);

/* This node became the partition's leader at st_part_leader_epoch()
 * (set first): fail its appends not yet flushed (ST_ERR_CONFLICT), read at
 * one revision its keys and every manifest not yet folded (of every node),
 * apply the chunks at or above its high watermark in offset order with
 * their producer entries (log end offset, high watermark and idempotent
 * producer state as the previous leaders committed them; a chunk across
 * the high watermark -- a segment merged by a later leader -- makes it
 * rebuild the partition's chunks from the read instead), put the index
 * keys of the chunks found only in manifests, then put epochs/<epoch> =
 * the high watermark (docs/object-format.md).  A failed
 * read is retried every 0.5 s while the epoch stays.  @cb (may be NULL)
 * when done; st_part_taking_over() is true until then.  Returns -1 (no
 * callback) when out of memory. */
int st_part_take_over(st_part_t *part, void (*cb)(st_err_t err, void *arg), void *arg);
bool st_part_taking_over(const st_part_t *part);
/* OffsetForLeaderEpoch (Kafka's LeaderEpochFileCache.endOffsetFor) from
 * the epochs' start offsets: for the current epoch the high watermark; for
 * an earlier one the largest known epoch at or below it (epoch 0 starts
 * the log) and the start offset of the next known epoch; -1, -1 for an
 * epoch below 0 or above the current one. */
void st_part_epoch_end(const st_part_t *part, int32_t epoch, int32_t *out_epoch, int64_t *out_end);

/* @base_offset: the offset of the batch's first record on ST_OK. */
typedef void (*st_append_cb)(st_err_t err, int64_t base_offset, void *arg);
/* Append one RecordBatch v2 the caller validated (its CRC field, which
 * the object's chunk CRC is derived from, matches its bytes).  The batch
 * is copied; its base offset and leader epoch are set in the copy.  ST_ERR_IO /
 * ST_ERR_TIMEOUT: the flush failed; ST_ERR_CONFLICT: this node was fenced;
 * ST_ERR_NOT_FOUND: the topic was deleted; ST_ERR_CLOSED: shutting down.
 *
 * A batch with a producer id (>= 0) is checked against the partition's
 * state for that producer (Kafka >= 2.5, DESIGN §3): a retry of one of its
 * last five batches (same epoch, first and last sequence) is not stored
 * again and @cb gets the original base offset (once the original commits,
 * or its failure, when it is still in flight).  Returns ST_ERR_EPOCH
 * (no callback) for an epoch older than the producer's, ST_ERR_SEQUENCE
 * for a gap, or a newer epoch not starting at sequence 0; a producer with
 * no state on the partition is accepted at any sequence. */
int st_part_append(st_part_t *part, const uint8_t *batch, size_t len, st_append_cb cb, void *arg);
/* The same for the batch at bytes [@off, @off + @len) of @buf, without a
 * copy: the log takes a reference to @buf and sets the batch's base offset
 * and leader epoch in place; the caller must not change those bytes
 * afterwards.  -1 (no callback) also when the range is not inside @buf. */
int st_part_append_buf(st_part_t *part, st_buf_t *buf, size_t off, size_t len, st_append_cb cb,
                       void *arg);

/* @slices: whole batches from the one containing the requested offset,
 * borrowed (take st_buf_ref to keep); n == 0 at the high watermark.
 * ST_ERR_RANGE: offset below the log start or above the high watermark. */
typedef void (*st_read_cb)(st_err_t err, const st_slice_t *slices, size_t n, void *arg);
/* Read committed batches starting with the one that contains @offset, up to
 * @max_bytes (but always at least one whole batch). */
int st_part_read(st_part_t *part, int64_t offset, size_t max_bytes, st_read_cb cb, void *arg);

/* Offset of the first record at or above the log start and below the high
 * watermark whose timestamp >= @ts, and that timestamp; offset -1 when there
 * is none.  Record granularity: the batch is decompressed when needed (a
 * batch whose records cannot be decoded answers with its base offset and
 * max timestamp). */
typedef void (*st_offset_cb)(st_err_t err, int64_t offset, int64_t timestamp, void *arg);
int st_part_offset_for_time(st_part_t *part, int64_t ts, st_offset_cb cb, void *arg);
/* The offset and timestamp of the record with the largest timestamp at or
 * above the log start and below the high watermark (the first such record
 * when several share it; KIP-734); offset -1 when there is none.  Chunks'
 * max timestamps narrow the search: at most the chunk the log start cuts
 * and the one holding the maximum are read. */
int st_part_max_timestamp(st_part_t *part, st_offset_cb cb, void *arg);

/* Advance the log start offset to @offset durably (DeleteRecords): -1
 * means the high watermark; above the high watermark or below -1 is
 * ST_ERR_RANGE; at or below the current log start changes nothing.  The
 * new start is visible to reads and ListOffsets once stored; the bytes
 * below it are reclaimed later by garbage collection.  @cb gets the log
 * start (low watermark) after the call. */
typedef void (*st_log_start_cb)(st_err_t err, int64_t log_start, void *arg);
int st_part_delete_records(st_part_t *part, int64_t offset, st_log_start_cb cb, void *arg);

/* Waiters are woken (their fn called, then they are removed) when the
 * partition's high watermark advances or the topic is deleted.  Intrusive:
 * the caller owns the struct and removes it with st_part_unwait() if it is
 * no longer interested. */
typedef struct st_waiter {
    struct st_waiter *next, *prev; /* owned by the partition's list */
    st_part_t *part;               /* set while waiting */
    void (*fn)(struct st_waiter *w, void *arg);
    void *arg;
} st_waiter_t;
void st_part_wait(st_part_t *part, st_waiter_t *w);
void st_part_unwait(st_waiter_t *w);

/* ------------------------------------------------------------------ */
/* Producer ids                                                        */
/* ------------------------------------------------------------------ */

/* InitProducerId without a transactional id.  @pid and @epoch: the
 * caller's current producer id and epoch (KIP-360), or -1.  When this log
 * handed out @pid and its epoch is @epoch, the answer is @pid with the
 * epoch bumped; when @epoch is another one, ST_ERR_EPOCH; otherwise a new
 * id with epoch 0, from blocks taken off /nuthatch/counters/producer-id by
 * compare-and-swap (unique across restarts and gateways sharing the
 * metadata store).  Returns nonzero (no callback) when it cannot start. */
typedef void (*st_producer_cb)(st_err_t err, int64_t pid, int16_t epoch, void *arg);
int st_log_init_producer(st_log_t *log, int64_t pid, int16_t epoch, st_producer_cb cb, void *arg);

/* ------------------------------------------------------------------ */
/* Consumer offsets (committed without a group coordinator)            */
/* ------------------------------------------------------------------ */

typedef struct st_offset_commit {
    const char *topic; /* NUL-terminated */
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;
    const char *metadata; /* may be NULL */
} st_offset_commit_t;

/* Store @n offsets of @group durably (in transactions of at most 64 ops). */
int st_log_commit_offsets(st_log_t *log, const char *group, const st_offset_commit_t *offs,
                          size_t n, void (*cb)(st_err_t err, void *arg), void *arg);
/* Every committed offset of @group: @offs borrowed during the callback. */
typedef void (*st_offsets_cb)(st_err_t err, const st_offset_commit_t *offs, size_t n, void *arg);
int st_log_fetch_offsets(st_log_t *log, const char *group, st_offsets_cb cb, void *arg);
/* Delete the committed offsets of @group named by @offs (topic and
 * partition; the other fields are ignored), or every one of them and the
 * group's key prefix when @offs is NULL (in transactions of at most 64
 * ops).  Deleting an offset that is not there is no error. */
int st_log_delete_offsets(st_log_t *log, const char *group, const st_offset_commit_t *offs,
                          size_t n, void (*cb)(st_err_t err, void *arg), void *arg);
/* Every group with at least one committed offset or a stored protocol
 * type: @groups (NUL-terminated names, in key order) and @types (each
 * group's protocol type, "" when none is stored) borrowed during the
 * callback. */
typedef void (*st_groups_cb)(st_err_t err, const char *const *groups, const char *const *types,
                             size_t n, void *arg);
int st_log_list_groups(st_log_t *log, st_groups_cb cb, void *arg);

/* Store @type (no line break) as @group's protocol type, the key
 * <root>/groups/<group>/protocol-type, which DeleteGroups removes with the
 * rest of the group's prefix.  @cb (may be NULL) gets the outcome.
 * Returns 0 or an st_err_t (no callback). */
int st_log_set_group_type(st_log_t *log, const char *group, const char *type,
                          void (*cb)(st_err_t err, void *arg), void *arg);

#endif
