/*
 * st_log_int.h: the log's internal structures, shared by st_log.c
 * (lifecycle, recovery, catalog, offsets), st_flush.c (append, flush,
 * commit) and st_read.c (read path and caches).  Not for use outside
 * storage/log/.
 */
#ifndef ST_LOG_INT_H
#define ST_LOG_INT_H

#include "st_format.h"
#include "st_log.h"

#include <event2/event.h>
#include <stdlib.h>

/* A doubly linked list link; lists have a sentinel head. */
typedef struct st_link {
    struct st_link *next, *prev;
} st_link_t;

static inline void st_list_init(st_link_t *h)
{
    h->next = h->prev = h;
}
static inline bool st_list_empty(const st_link_t *h)
{
    return h->next == h;
}
static inline void st_list_push(st_link_t *h, st_link_t *l) /* at the tail */
{
    l->prev = h->prev;
    l->next = h;
    h->prev->next = l;
    h->prev = l;
}
static inline void st_list_del(st_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = l;
}
#define st_container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* An object in the store that committed chunks point into. */
typedef struct st_obj {
    char *key;            /* object key, owned */
    uint64_t size;        /* bytes */
    int refs;             /* chunks (and callers) referring to it */
    uint64_t live;        /* bytes of the chunks in memory that lie in it */
    uint32_t nlive;       /* those chunks */
    st_link_t chunks;     /* st_chunk_t in it (olink), for merged reads */
    struct st_obj *hnext; /* in log->objtab's bucket */
    st_log_t *log;
} st_obj_t;

typedef enum st_chunk_where {
    ST_CHUNK_STORE, /* only in the object store */
    ST_CHUNK_TAIL,  /* buf is the object this node flushed (memory tail) */
    ST_CHUNK_CACHE, /* buf holds the chunk, read back from the store */
} st_chunk_where_t;

typedef struct st_load st_load_t;

/* One committed chunk: a run of batches of one partition in one object. */
typedef struct st_chunk {
    int64_t base;       /* first offset */
    int64_t last;       /* last offset; base <= last */
    int64_t max_ts;     /* largest batch max timestamp in the chunk */
    int64_t run_max_ts; /* max of max_ts over this and every earlier chunk */
    int32_t batches;    /* RecordBatches in the chunk */
    uint32_t len;       /* bytes */
    uint32_t crc;       /* CRC32C of the chunk bytes */
    uint64_t pos;       /* position in obj */
    st_obj_t *obj;      /* referenced */
    st_chunk_where_t where;
    st_buf_t *buf; /* TAIL/CACHE: referenced bytes; chunk at buf->data + buf_off */
    size_t buf_off;
    bool folded;           /* an index key holds it (st_life.c); else only a manifest */
    bool passed;           /* CACHE: in log->cache_passed, not log->cache_lru */
    st_prod_desc_t *prods; /* its producer entries (chunk 0), owned, or NULL */
    uint32_t nprods;
    st_link_t lru;   /* in log->tail_lru, log->cache_lru or log->cache_passed */
    st_link_t olink; /* in obj->chunks */
    st_load_t *load; /* ranged GET in flight or about to start, or NULL */
    size_t load_idx; /* this chunk's slot in load */
    st_part_t *part;
} st_chunk_t;

/* Idempotent producers (st_producer.c): per partition and producer id,
 * the epoch and the last ST_PROD_BATCHES committed batches, plus the
 * batches appended and not yet committed.  At most ST_PROD_MAX_PER_PART
 * producers per partition: the least recently used one without uncommitted
 * batches is forgotten to make room (it is then a producer with no state,
 * accepted at any sequence, as after Kafka's producer id expiration). */
#define ST_PROD_BATCHES 5
#define ST_PROD_MAX_PER_PART 1024

typedef struct st_pbatch {
    int32_t first_seq, last_seq;
    int64_t base, last;
} st_pbatch_t;

struct st_pend;

typedef struct st_prod {
    st_link_t lru; /* in part->prods, most recently used first */
    int64_t pid;
    int16_t epoch;                       /* committed epoch */
    int n;                               /* committed batches in b, oldest first */
    st_pbatch_t b[ST_PROD_BATCHES];      /* the last committed batches of epoch */
    struct st_pend *unc_head, *unc_tail; /* appended, not committed, in append order */
    int scratch;                         /* flush_build's per-chunk count */
} st_prod_t;

/* A retry of a batch not yet committed, answered with the batch's outcome. */
typedef struct st_dup {
    struct st_dup *next;
    st_append_cb cb;
    void *arg;
} st_dup_t;

/* One appended batch waiting for its flush to commit. */
typedef struct st_pend {
    struct st_pend *next;
    st_prod_t *prod;               /* idempotent batch: its producer; NULL otherwise */
    struct st_pend *pnext, *pprev; /* in prod's uncommitted list */
    int16_t epoch;                 /* producer epoch, first and last sequence */
    int32_t first_seq, last_seq;
    st_dup_t *dups;  /* retries waiting for this batch */
    uint8_t *data;   /* base offset and epoch patched; released once in an object */
    st_buf_t *owner; /* data lies in owner's bytes (a reference), or NULL: data is malloc'ed */
    size_t len;
    int64_t base;   /* first offset (provisional until commit) */
    int64_t last;   /* last offset */
    int64_t max_ts; /* batch max timestamp */
    st_append_cb cb;
    void *arg;
} st_pend_t;

/* Release @b's bytes (its reference to the buffer they lie in, or its copy). */
static inline void st_pend_release_data(st_pend_t *b)
{
    if (b->owner)
        st_buf_unref(b->owner);
    else
        free(b->data);
    b->data = NULL;
    b->owner = NULL;
}

/* A leader epoch and its start offset (epochs/<epoch>). */
typedef struct st_epoch {
    int32_t epoch;
    int64_t start;
} st_epoch_t;

struct st_part {
    st_log_t *log;
    st_topic_t *topic;
    int32_t index;
    int32_t epoch;       /* leader epoch */
    int64_t hw;          /* high watermark: last committed offset + 1 */
    int64_t leo;         /* log end offset: next offset to assign; hw <= leo */
    int64_t log_start;   /* first offset still stored */
    st_chunk_t **chunks; /* committed chunks in offset order */
    size_t nchunks, chunks_cap;
    st_pend_t *pend_head, *pend_tail; /* appended, not yet in a flush */
    size_t pend_bytes;
    bool dirty; /* on log->dirty (has pending batches) */
    st_link_t dirty_link;
    st_link_t waiters; /* st_waiter_t, woken on commit */
    /* The largest log start put to the store so far (st_admin.c). */
    int64_t log_start_issued;
    st_link_t prods; /* st_prod_t, most recently used first */
    size_t nprods;
    uint64_t dropped;   /* chunks removed from the front of chunks so far (retention) */
    st_epoch_t *epochs; /* recorded epochs' start offsets, by epoch (st_takeover.c) */
    size_t nepochs;
    int taking_over;   /* st_part_take_over in progress */
    int64_t ra_pos;    /* where the next sequential read starts (the end of the last
                        * read, or the offset of the one in progress); -1 = never read */
    size_t ra_want;    /* bytes its last sequential read asked to be read ahead */
    st_link_t ra_link; /* in log->ra_blocked while its read-ahead waits for the budget */
};

typedef enum st_flush_state {
    ST_FLUSH_UPLOADING,
    ST_FLUSH_UPLOADED,
    ST_FLUSH_COMMITTING,
    ST_FLUSH_AHEAD,  /* committed ahead of its upload (cfg.commit_ahead), which is
                      * still in flight: applied when it returns */
    ST_FLUSH_FAILED, /* abandoned; waits for its upload to return */
} st_flush_state_t;

/* One partition's chunk in a flush. */
typedef struct st_fpart {
    st_part_t *part;
    st_pend_t *batches; /* list, offset order */
    st_chunk_desc_t desc;
    int32_t epoch; /* the partition's leader epoch when the flush was built */
} st_fpart_t;

typedef struct st_flush {
    st_link_t link; /* in log->flushes, flush order */
    st_log_t *log;
    int64_t seq;
    st_flush_state_t state;
    bool upload_done;    /* the put's callback ran */
    bool ahead;          /* its commit was sent before its upload returned */
    st_err_t upload_err; /* the put's result, once upload_done */
    st_err_t err;        /* why it failed */
    st_fpart_t *parts;
    size_t nparts;
    st_prod_desc_t *prods; /* idempotent batches for the manifest (chunk = index in parts) */
    size_t nprods;
    st_buf_t *obj; /* the object bytes */
    char key[96];
    char mkey[128];      /* its manifest key */
    double upload_start; /* monotonic seconds, for cfg.on_flush */
} st_flush_t;

struct st_log {
    struct event_base *base;
    st_objstore_t *os; /* borrowed */
    st_meta_t *meta;   /* borrowed */
    st_log_cfg_t cfg;
    bool open, closing;
    int64_t incarnation; /* this start's number; object keys and the fence carry it */
    int64_t next_seq;    /* sequence of the next flush */
    char fence_key[128];
    char fence_val[32];       /* the fence value this node's commits compare with */
    unsigned fence_gen;       /* resolutions of commits in doubt so far */
    bool refencing;           /* st_log__refence is reading or waiting */
    char cluster_id[65];      /* up to 64 characters */
    char want_cluster_id[65]; /* configured, or "" */
    char open_error[256];
    /* catalog: topics sorted by name */
    st_topic_t **topics;
    size_t ntopics, topics_cap;
    st_topic_t **creating; /* creation in flight, not in topics */
    size_t ncreating;
    struct create_op *create_waiters; /* creates of a name in flight, answered with it */
    st_topic_t **graveyard;           /* deleted topics, freed when no async op can see them */
    size_t ngraveyard;
    unsigned async_ops; /* flushes, reads and metadata ops in flight */
    /* write path */
    st_link_t dirty;         /* st_part_t with pending batches, in arrival order */
    size_t pend_bytes;       /* bytes pending over all partitions */
    size_t flight_bytes;     /* bytes of flush objects not yet freed (uploading, committing) */
    st_link_t space_waiters; /* st_waiter_t woken when the write buffer has room */
    st_link_t flushes;       /* st_flush_t in flush order */
    int inflight;            /* flushes uploading or committing */
    int uploading;           /* flushes whose object PUT has not answered yet */
    bool committing;         /* a commit transaction is in flight */
    st_flush_t *ahead;       /* the flush in ST_FLUSH_AHEAD, or NULL: nothing commits after
                              * it until its upload returns */
    bool unwinding;          /* a committed manifest whose object failed is being
                              * deleted (unwind_key); nothing commits until it is */
    unsigned unwind_tries;
    char unwind_key[128];
    struct event *kick; /* deferred flush trigger */
    void (*close_cb)(void *arg);
    void *close_arg;
    /* read path */
    st_link_t tail_lru;     /* chunks in the memory tail, oldest first */
    st_link_t cache_lru;    /* chunks in the read cache, least recent first */
    st_link_t cache_passed; /* of them, those a reader has gone past, oldest first */
    size_t passed_bytes;    /* bytes of the chunks in cache_passed */
    st_log_stats_t stats;
    size_t ra_inflight;   /* bytes of read-ahead GETs in flight (cfg.read_ahead_bytes) */
    st_link_t ra_blocked; /* st_part_t whose read-ahead stopped at the budget, oldest first */
    struct st_pids *pids; /* producer id allocation (st_producer.c), or NULL */
    bool hold_commits;    /* st_log_hold_commits */
    struct st_life *life; /* folding, retention, GC (st_life.c), or NULL */
    st_obj_t **objtab;    /* objects by key (chains), objtab_cap buckets */
    size_t objtab_cap, objtab_n;
    /* the topic catalog watch (topics created by other nodes), from open */
    struct st_meta_watch *topics_watch; /* owned while watched */
    struct event *topics_retry;         /* re-read after a failed read or a broken watch */
    bool topics_reading;                /* a read of the catalog is in flight */
};

/* st_flush.c */
/* The next object sequence of this incarnation (log->next_seq++), its key
 * ("objects/<node>/<incarnation>-<seq>.nho") into @key. */
int64_t st_log__take_seq(st_log_t *log, char *key, size_t cap);
/* Tell the store which key the next object put will use (see
 * st_objstore_prepare). */
void st_log__prepare_next(st_log_t *log);
void st_log__space_check(st_log_t *log);
void st_log__kick(st_log_t *log);
void st_log__flush_cb(evutil_socket_t fd, short what, void *arg);
void st_log__fail_pending(st_part_t *part, st_err_t err);
/* Fail @from and every flush after it (as a failed upload does). */
void st_log__fail_flush(st_log_t *log, st_flush_t *from, st_err_t err);
/* st_producer.c */
/* Check an idempotent batch @b (prod NULL, epoch and sequences set) of
 * @pid against @part's state.  ST_OK: a new batch, to be linked with
 * prod_link once queued.  ST_ERR_EXISTS: a retry -- of a committed batch
 * (*orig NULL, its base offset in *orig_base) or of the uncommitted *orig.
 * ST_ERR_SEQUENCE / ST_ERR_EPOCH: refused.  ST_ERR_NOMEM. */
st_err_t st_log__prod_check(st_part_t *part, int64_t pid, st_pend_t *b, st_pend_t **orig,
                            int64_t *orig_base);
void st_log__prod_link(st_part_t *part, int64_t pid, st_pend_t *b);
/* @b committed at its offsets / failed: the producer state moves on / forgets it. */
void st_log__prod_commit(st_pend_t *b);
void st_log__prod_unlink(st_pend_t *b);
/* Append the producer entries of the batches from @head to @arr (the last
 * ST_PROD_BATCHES per producer), tagged @chunk; false when out of memory. */
bool st_log__prod_descs(const st_pend_t *head, uint32_t chunk, st_prod_desc_t **arr, size_t *n,
                        size_t *cap);
/* A committed manifest's entry, at start-up. */
void st_log__prod_replay(st_part_t *part, const st_prod_desc_t *d);
void st_log__prod_free(st_part_t *part);
void st_log__pids_free(st_log_t *log);
/* Call @b's callback and its retries' with the outcome, free the retries. */
void st_log__pend_answer(st_pend_t *b, st_err_t err, int64_t base);
/* Free @b and its retries without calling anyone (st_log_free). */
void st_log__pend_drop(st_pend_t *b);
/* st_read.c */
void st_log__chunk_free(st_log_t *log, st_chunk_t *c);
bool st_log__chunk_add(st_part_t *part, st_obj_t *obj, const st_chunk_desc_t *d);
/* Give the last chunk of @part the producer entries of @prods with chunk
 * index @chunk (copied, renumbered 0); false when out of memory. */
bool st_log__chunk_prods(st_part_t *part, const st_prod_desc_t *prods, size_t n, uint32_t chunk);
void st_log__tail_add(st_log_t *log, st_chunk_t *c, st_buf_t *obj, size_t off);
void st_log__wake(st_part_t *part);
/* st_life.c */
/* A committed manifest (at its commit or at start-up) waits to be folded. */
void st_log__fold_add(st_log_t *log, const char *mkey, const st_manifest_t *m);
/* Load every partition's index keys and log start (start-up, before the
 * manifests). */
int st_log__load_index(st_log_t *log, void (*cb)(st_err_t err, void *arg), void *arg);
/* The log is made / opened / is closing / is freed. */
int st_log__life_new(st_log_t *log);
/* (start: after the manifests; a partition with no chunks left gets its
 * high watermark from its log start) */
int st_log__life_start(st_log_t *log);
void st_log__life_stop(st_log_t *log);
void st_log__life_free(st_log_t *log);
/* The chunk of @part starting at @base, or NULL. */
st_chunk_t *st_log__chunk_at(const st_part_t *part, int64_t base);
/* st_log.c */
st_part_t *st_log__part_new(st_log_t *log, st_topic_t *t, int32_t index);
/* The topic key's value (malloc'ed) and key. */
char *st_log__topic_encode(const st_topic_t *t, size_t *len);
void st_log__topic_key(char *key, size_t cap, const char *name, size_t len);
#define ST_LOG_KEY_MAX 1024
/* Run @fn(@arg) on the loop soon, never from inside this call. */
int st_log__defer(st_log_t *log, void (*fn)(void *arg), void *arg);
/* One line to cfg.log, when set. */
void st_log__logf(const st_log_t *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void st_log__op_done(st_log_t *log);
/* The object of @key: the one chunks already share, referenced, or a new
 * one (refs 1). */
st_obj_t *st_log__obj_new(st_log_t *log, const char *key, size_t key_len, uint64_t size);
void st_log__obj_unref(st_obj_t *o);

/* Is @val (@len bytes) a fence value of this incarnation bumped by a
 * leadership move ("<incarnation>.m<digits>"), other than the one held? */
bool st_log__fence_moved(const st_log_t *log, const uint8_t *val, size_t len);
/* A compare on the fence failed outside a flush commit (folding,
 * retention, merging, GC): read the fence and, if a move bumped it, adopt
 * it once the leaders reflect the move (cfg.sync).  At most one at a time. */
void st_log__refence(st_log_t *log);

/* Record @start as @epoch's start offset (st_takeover.c). */
void st_log__epoch_put(st_part_t *part, int32_t epoch, int64_t start);
/* A partition key's @rest (after the partition prefix) when it is
 * epochs/<e>: recorded (ignored when malformed), true; false otherwise. */
bool st_log__epoch_key(st_part_t *part, const char *rest, const uint8_t *val, size_t len);

/* Is a lifecycle run (folding, retention, merging, GC) in progress? */
bool st_log__life_busy(const st_log_t *log);

#endif
