/*
 * st_life.c: the log's lifecycle -- folding committed manifests into
 * per-partition index keys, retention (dropping whole old chunks and
 * advancing the log start), start-up from the index, and garbage
 * collection of the objects nothing references any more.
 *
 * Index keys.  Each chunk of a committed flush gets, once folded, the key
 * <root>/partitions/<topic-id hex>/<p>/chunks/<base offset, 20 digits>
 * whose value is a manifest (st_manifest_encode) of that one chunk: the
 * object's writer, key and size, the chunk entry, and the chunk's producer
 * entries.  Folding is one transaction per run of manifests (at most 64
 * operations: a compare on this node's fence, the index puts, and the
 * deletes of the manifests whose every chunk is folded).  A manifest with
 * more chunks than one transaction holds is folded over several, its key
 * deleted by the last; a put repeated after a crash writes the same value.
 *
 * Retention.  A partition's oldest chunks go when they are folded and
 * either wholly below the log start (DeleteRecords), older than
 * retention.ms (their max timestamp), or not needed to keep
 * retention.bytes: one transaction (fence compare, deletes of their index
 * keys, a put of the log start past them) per partition and pass, at most
 * 62 chunks each.  Memory follows once it commits.
 *
 * Garbage collection.  A pass lists this node's objects (objects/<node>/)
 * and deletes those that no chunk in memory references, that it has seen
 * unreferenced for gc_grace_ms and whose store timestamp is older than
 * that.  What this node has in memory is exactly what the metadata
 * references for its partitions: chunks join memory only when their commit
 * succeeded and leave it only when their index keys are deleted.  Objects
 * of an older incarnation can never be committed any more (the fence moved
 * at this start).  An object of this incarnation may belong to a flush that
 * is uploaded and not yet committed: a flush held past the grace is failed
 * here before its object is deleted -- its commit is never sent.  A flush
 * whose commit transaction is in flight (or in doubt) counts as
 * referenced: the store answers the transaction before anything issued
 * later, and the pass decides only after its own metadata read, issued
 * after it.
 *
 * Threading: loop thread only.
 */
#include "st_log_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "kp_crc32c.h"

#define LIFE_TXN_OPS 64 /* DESIGN §5: multi-key writes in txns of <= 64 ops */
#define GC_LIST_PAGE 1000
#define GC_DELETES_PER_PASS 10000
#define GC_DELETES_INFLIGHT 16
#define DEFAULT_RETENTION_MS 604800000LL
#define DEFAULT_LIFE_MS 1000
#define DEFAULT_RETAIN_MS 300000
#define DEFAULT_MAX_KEYS 1000
#define DEFAULT_SEGMENT_BYTES (64u << 20)
#define MERGES_PER_RUN 32
/* Bytes of chunk reads of one merge in flight at a time (at least one
 * read): the store's workers are shared with flushes, whose puts must not
 * queue behind a whole run of large chunks; runs of small ones are read at
 * once, a round trip each being most of their cost. */
#define MERGE_READ_BYTES (512u << 10)
#define SEGMENT_OVERHEAD                                                                           \
    (ST_OBJ_HEADER_SIZE + 4 + ST_OBJ_ENTRY_SIZE + ST_OBJ_TRAILER_SIZE) /* one-chunk object */
#define DEFAULT_GC_MS 60000
#define DEFAULT_GRACE_MS 600000

/* A committed manifest waiting to be folded. */
typedef struct fold_item {
    st_link_t link;
    char *mkey;
    int32_t node_id;
    int64_t incarnation, seq;
    char *obj_key;
    uint64_t obj_size;
    st_chunk_desc_t *chunks;
    size_t nchunks;
    st_prod_desc_t *prods;
    size_t nprods;
    size_t next;    /* chunks before it are folded (or skipped) */
    bool keep;      /* a chunk is missing from memory: the manifest stays */
    uint64_t order; /* L->fold_enq when it was queued */
} fold_item_t;

/* An object seen unreferenced, since when. */
typedef struct gc_cand {
    char *key;
    int64_t first_ms;
    int64_t mtime_ms;
    uint64_t size;
} gc_cand_t;

typedef enum life_stage { LIFE_IDLE, LIFE_FOLD, LIFE_RETAIN, LIFE_MERGE, LIFE_GC } life_stage_t;

typedef struct life_waiter {
    struct life_waiter *next;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
} life_waiter_t;

typedef struct st_life {
    st_log_t *log;
    struct event *timer;
    bool stopped;
    life_stage_t stage;
    bool want_gc;           /* this run includes a GC pass */
    bool want_retain;       /* this run applies retention */
    int64_t next_retain_ms; /* when retention is due */
    int64_t next_gc_ms;     /* when the next periodic GC pass is due */
    st_err_t err;           /* first error of this run */
    st_link_t unfolded;
    size_t nunfolded;
    uint64_t fold_enq;  /* manifests queued so far */
    uint64_t fold_upto; /* the run folds those queued up to this one */
    /* retention cursor */
    size_t ret_topic;
    int32_t ret_part;
    /* merge cursor and count this run */
    size_t mrg_topic;
    int32_t mrg_part;
    unsigned merges;
    /* the transaction in flight: what to apply when it commits */
    struct {
        st_chunk_t **chunks; /* fold: chunks to mark folded; retain: dropped */
        size_t n, cap;
        fold_item_t *done_upto; /* fold: items whose manifest delete is in the txn */
        st_part_t *part;        /* retain */
        int64_t log_start;      /* retain */
    } tx;
    /* garbage collection */
    gc_cand_t *cands;
    size_t ncands;
    gc_cand_t *seen; /* this pass's listing: unreferenced objects */
    size_t nseen, seen_cap;
    char list_after[256];
    char **refs; /* sorted keys referenced in memory */
    size_t nrefs;
    size_t del_i; /* next candidate to delete */
    size_t del_count;
    size_t del_inflight; /* deletes in flight */
    life_waiter_t *waiters, *run_waiters;
    bool running;
} st_life_t;

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void life_next(st_life_t *L);

/* ---------------------------------------------------------------- keys */

static void index_prefix(char *key, size_t cap, kp_uuid_t id, int32_t p)
{
    char hex[33];
    st_uuid_hex(id, hex);
    snprintf(key, cap, "%s/partitions/%s/%" PRId32 "/", ST_KEY_ROOT, hex, p);
}

static void index_key(char *key, size_t cap, kp_uuid_t id, int32_t p, int64_t base)
{
    index_prefix(key, cap, id, p);
    size_t n = strlen(key);
    snprintf(key + n, cap - n, "chunks/%020" PRId64, base);
}

/* ---------------------------------------------------------------- fold */

static void item_free(fold_item_t *it)
{
    free(it->mkey);
    free(it->obj_key);
    free(it->chunks);
    free(it->prods);
    free(it);
}

void st_log__fold_add(st_log_t *log, const char *mkey, const st_manifest_t *m)
{
    st_life_t *L = log->life;
    if (!L)
        return; /* out of memory at st_log_new: manifests stay until a restart */
    fold_item_t *it = calloc(1, sizeof(*it));
    if (!it)
        return;
    it->mkey = strdup(mkey);
    it->obj_key = strndup(m->object_key.ptr, (size_t)m->object_key.len);
    it->chunks = malloc((m->nchunks ? m->nchunks : 1) * sizeof(*it->chunks));
    it->prods = malloc((m->nprods ? m->nprods : 1) * sizeof(*it->prods));
    if (!it->mkey || !it->obj_key || !it->chunks || !it->prods) {
        item_free(it);
        return;
    }
    it->node_id = m->node_id;
    it->incarnation = m->incarnation;
    it->seq = m->seq;
    it->obj_size = m->object_size;
    if (m->nchunks)
        memcpy(it->chunks, m->chunks, m->nchunks * sizeof(*it->chunks));
    it->nchunks = m->nchunks;
    if (m->nprods)
        memcpy(it->prods, m->prods, m->nprods * sizeof(*it->prods));
    it->nprods = m->nprods;
    it->order = ++L->fold_enq;
    st_list_push(&L->unfolded, &it->link);
    L->nunfolded++;
    log->stats.manifests_unfolded = L->nunfolded;
}

/* The in-memory chunk @d of @it names, when it is there and not folded. */
static st_chunk_t *fold_target(st_log_t *log, const fold_item_t *it, const st_chunk_desc_t *d)
{
    st_topic_t *t = st_log_topic_by_id(log, d->topic_id);
    if (!t || t->deleting || d->partition < 0 || d->partition >= t->nparts)
        return NULL;
    st_chunk_t *c = st_log__chunk_at(t->parts[d->partition], d->base_offset);
    if (!c || c->folded || strcmp(c->obj->key, it->obj_key) != 0)
        return NULL;
    return c;
}

/* Does memory lack the chunk @d although its partition still holds its
 * offsets (it could not be indexed: out of memory)?  Then the manifest
 * stays in the store, for the next start to apply. */
static bool fold_missing(st_log_t *log, const st_chunk_desc_t *d)
{
    st_topic_t *t = st_log_topic_by_id(log, d->topic_id);
    if (!t || t->deleting || d->partition < 0 || d->partition >= t->nparts)
        return false;
    const st_part_t *part = t->parts[d->partition];
    if (d->last_offset < part->log_start)
        return false;
    size_t lo = 0, hi = part->nchunks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (part->chunks[mid]->last < d->base_offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return !(lo < part->nchunks && part->chunks[lo]->base <= d->base_offset);
}

static bool tx_push(st_life_t *L, st_chunk_t *c)
{
    if (L->tx.n == L->tx.cap) {
        size_t cap = L->tx.cap ? 2 * L->tx.cap : 64;
        st_chunk_t **n = realloc(L->tx.chunks, cap * sizeof(*n));
        if (!n)
            return false;
        L->tx.chunks = n;
        L->tx.cap = cap;
    }
    L->tx.chunks[L->tx.n++] = c;
    return true;
}

/* The index value of chunk @k of @it: a manifest of that chunk alone. */
static bool index_value(kp_writer_t *w, const fold_item_t *it, size_t k)
{
    size_t np = 0;
    for (size_t i = 0; i < it->nprods; i++)
        np += it->prods[i].chunk == k;
    st_prod_desc_t *pd = calloc(np ? np : 1, sizeof(*pd));
    if (!pd)
        return false;
    np = 0;
    for (size_t i = 0; i < it->nprods; i++)
        if (it->prods[i].chunk == k) {
            pd[np] = it->prods[i];
            pd[np++].chunk = 0;
        }
    st_manifest_t m = {.version = ST_MANIFEST_VERSION,
                       .node_id = it->node_id,
                       .incarnation = it->incarnation,
                       .seq = it->seq,
                       .object_key = kp_str(it->obj_key),
                       .object_size = it->obj_size,
                       .chunks = &it->chunks[k],
                       .nchunks = 1,
                       .prods = pd,
                       .nprods = np};
    kp_writer_init(w, 128 + ST_MANIFEST_PRODUCER_SIZE * np);
    st_manifest_encode(w, &m);
    free(pd);
    return !w->err;
}

static void fold_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                      void *arg)
{
    (void)rev, (void)res, (void)n;
    st_life_t *L = arg;
    st_log_t *log = L->log;
    if (err == ST_OK && !ok) {
        err = ST_ERR_CONFLICT; /* fenced: by a move, or another incarnation */
        st_log__refence(log);
    }
    if (err == ST_OK) {
        log->stats.fold_txns++;
        for (size_t i = 0; i < L->tx.n; i++)
            L->tx.chunks[i]->folded = true;
        /* Items up to done_upto had their manifest deleted. */
        while (L->tx.done_upto && !st_list_empty(&L->unfolded)) {
            fold_item_t *it = st_container_of(L->unfolded.next, fold_item_t, link);
            st_list_del(&it->link);
            L->nunfolded--;
            bool last = it == L->tx.done_upto;
            item_free(it);
            if (last)
                break;
        }
        log->stats.manifests_unfolded = L->nunfolded;
    } else {
        /* Try again at the next run: the folded flags were not set, so the
         * same puts are rebuilt. */
        for (st_link_t *l = L->unfolded.next; l != &L->unfolded; l = l->next)
            st_container_of(l, fold_item_t, link)->next = 0;
        if (L->err == ST_OK)
            L->err = err;
    }
    L->tx.n = 0;
    L->tx.done_upto = NULL;
    st_log__op_done(log);
    if (err != ST_OK)
        L->stage = LIFE_RETAIN;
    life_next(L);
}

/* One folding transaction; false when there is nothing to fold. */
static bool fold_step(st_life_t *L)
{
    st_log_t *log = L->log;
    /* Only what was queued when the run began: under a steady stream of
     * flushes the list never empties, and retention, merging and GC come
     * after folding. */
    if (st_list_empty(&L->unfolded) ||
        st_container_of(L->unfolded.next, fold_item_t, link)->order > L->fold_upto)
        return false;
    st_op_t ops[LIFE_TXN_OPS];
    char keys[LIFE_TXN_OPS][160];
    kp_writer_t vals[LIFE_TXN_OPS];
    size_t nops = 0, nvals = 0;
    bool oom = false;
    L->tx.n = 0;
    L->tx.done_upto = NULL;
    for (st_link_t *l = L->unfolded.next; l != &L->unfolded && !oom; l = l->next) {
        fold_item_t *it = st_container_of(l, fold_item_t, link);
        if (it->order > L->fold_upto)
            break;
        while (it->next < it->nchunks && nops < LIFE_TXN_OPS - 1) {
            const st_chunk_desc_t *d = &it->chunks[it->next];
            st_chunk_t *c = fold_target(log, it, d);
            if (c) {
                if (!index_value(&vals[nvals], it, it->next) || !tx_push(L, c)) {
                    kp_writer_deinit(&vals[nvals]);
                    oom = true;
                    break;
                }
                index_key(keys[nops], sizeof keys[nops], d->topic_id, d->partition, d->base_offset);
                ops[nops] = (st_op_t){.type = ST_OP_PUT,
                                      .key = keys[nops],
                                      .val = vals[nvals].buf,
                                      .val_len = vals[nvals].len};
                nops++;
                nvals++;
            } else if (fold_missing(log, d)) {
                it->keep = true;
            }
            it->next++;
        }
        if (oom || it->next < it->nchunks || nops == LIFE_TXN_OPS)
            break;
        if (!it->keep) /* a kept manifest leaves the list only */
            ops[nops++] = (st_op_t){.type = ST_OP_DEL, .key = it->mkey};
        L->tx.done_upto = it;
    }
    if (!oom && nops == 0 && L->tx.done_upto) { /* only kept manifests: nothing to write */
        while (!st_list_empty(&L->unfolded)) {
            fold_item_t *it = st_container_of(L->unfolded.next, fold_item_t, link);
            bool last = it == L->tx.done_upto;
            st_list_del(&it->link);
            L->nunfolded--;
            item_free(it);
            if (last)
                break;
        }
        L->tx.done_upto = NULL;
        log->stats.manifests_unfolded = L->nunfolded;
        return fold_step(L);
    }
    int rc = -1;
    if (!oom && nops > 0) {
        st_cmp_t fence = {.key = log->fence_key,
                          .target = ST_CMP_VALUE,
                          .op = ST_CMP_EQ,
                          .val = (const uint8_t *)log->fence_val,
                          .val_len = strlen(log->fence_val)};
        st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = ops, .nsuccess = nops};
        rc = st_meta_txn(log->meta, &txn, fold_done, L);
    }
    for (size_t i = 0; i < nvals; i++)
        kp_writer_deinit(&vals[i]);
    if (rc != 0) {
        for (st_link_t *l = L->unfolded.next; l != &L->unfolded; l = l->next)
            st_container_of(l, fold_item_t, link)->next = 0;
        L->tx.n = 0;
        L->tx.done_upto = NULL;
        if (L->err == ST_OK)
            L->err = ST_ERR_NOMEM;
        return false;
    }
    log->async_ops++;
    return true;
}

/* ---------------------------------------------------------------- retention */

static int64_t topic_long(const st_topic_t *t, const char *name, int64_t def)
{
    const char *v = st_topic_config(t, name);
    if (!v)
        return def;
    char *end;
    long long x = strtoll(v, &end, 10);
    return end != v && *end == '\0' ? (int64_t)x : def;
}

/* @part's retention: retention.ms and retention.bytes, the topic's or the
 * log's defaults. */
static void part_retention(const st_log_t *log, const st_part_t *part, int64_t *ms, int64_t *bytes)
{
    int64_t def_ms = log->cfg.retention_ms ? log->cfg.retention_ms : DEFAULT_RETENTION_MS;
    int64_t def_bytes = log->cfg.retention_bytes ? log->cfg.retention_bytes : -1;
    *ms = topic_long(part->topic, "retention.ms", def_ms);
    *bytes = topic_long(part->topic, "retention.bytes", def_bytes);
}

static void retain_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg)
{
    (void)rev, (void)res, (void)n;
    st_life_t *L = arg;
    st_log_t *log = L->log;
    st_part_t *part = L->tx.part;
    if (err == ST_OK && !ok) {
        err = ST_ERR_CONFLICT;
        st_log__refence(log);
    }
    if (err == ST_OK && !part->topic->deleting) {
        size_t k = L->tx.n; /* the first k chunks, still at the front: only this drops them */
        for (size_t i = 0; i < k; i++)
            st_log__chunk_free(log, part->chunks[i]);
        memmove(part->chunks, part->chunks + k, (part->nchunks - k) * sizeof(*part->chunks));
        part->nchunks -= k;
        part->dropped += k;
        log->stats.chunks_expired += k;
        if (L->tx.log_start > part->log_start)
            part->log_start = L->tx.log_start;
    } else if (err != ST_OK && L->err == ST_OK) {
        L->err = err;
    }
    L->tx.n = 0;
    L->tx.part = NULL;
    st_log__op_done(log);
    life_next(L);
}

/* One retention transaction for the next partition that has chunks to
 * drop; false when a whole round found none. */
static bool retain_step(st_life_t *L)
{
    st_log_t *log = L->log;
    int64_t now = now_ms();
    while (L->ret_topic < log->ntopics) {
        st_topic_t *t = log->topics[L->ret_topic];
        if (L->ret_part >= t->nparts || t->deleting) {
            L->ret_topic++;
            L->ret_part = 0;
            continue;
        }
        st_part_t *part = t->parts[L->ret_part++];
        if (log->cfg.owns && !log->cfg.owns(log->cfg.owns_arg, t, part->index))
            continue; /* another node leads it */
        int64_t ms, bytes;
        part_retention(log, part, &ms, &bytes);
        uint64_t total = 0;
        for (size_t i = 0; i < part->nchunks; i++)
            total += part->chunks[i]->len;
        size_t k = 0;
        while (k < part->nchunks && k < LIFE_TXN_OPS - 2) {
            const st_chunk_t *c = part->chunks[k];
            if (!c->folded || c->last >= part->hw)
                break;
            bool expired = c->last < part->log_start ||
                           (ms >= 0 && c->max_ts >= 0 && now - ms > c->max_ts) ||
                           (bytes >= 0 && total - c->len >= (uint64_t)bytes);
            if (!expired)
                break;
            total -= c->len;
            k++;
        }
        if (k == 0)
            continue;
        st_op_t ops[LIFE_TXN_OPS];
        char keys[LIFE_TXN_OPS][160];
        char val[24];
        size_t nops = 0;
        for (size_t i = 0; i < k; i++) {
            index_key(keys[nops], sizeof keys[nops], t->id, part->index, part->chunks[i]->base);
            ops[nops] = (st_op_t){.type = ST_OP_DEL, .key = keys[nops]};
            nops++;
            if (!tx_push(L, part->chunks[i])) {
                L->tx.n = 0;
                return false;
            }
        }
        int64_t start = part->chunks[k - 1]->last + 1;
        if (start < part->log_start)
            start = part->log_start;
        /* Never store a smaller start than one already sent (DeleteRecords). */
        if (part->log_start_issued > start)
            start = part->log_start_issued;
        if (start > part->log_start_issued) {
            index_prefix(keys[nops], sizeof keys[nops], t->id, part->index);
            size_t kl = strlen(keys[nops]);
            snprintf(keys[nops] + kl, sizeof keys[nops] - kl, "log-start");
            snprintf(val, sizeof val, "%" PRId64, start);
            ops[nops] = (st_op_t){.type = ST_OP_PUT,
                                  .key = keys[nops],
                                  .val = (const uint8_t *)val,
                                  .val_len = strlen(val)};
            nops++;
        }
        st_cmp_t fence = {.key = log->fence_key,
                          .target = ST_CMP_VALUE,
                          .op = ST_CMP_EQ,
                          .val = (const uint8_t *)log->fence_val,
                          .val_len = strlen(log->fence_val)};
        st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = ops, .nsuccess = nops};
        L->tx.part = part;
        L->tx.log_start = start;
        if (st_meta_txn(log->meta, &txn, retain_done, L) != 0) {
            L->tx.n = 0;
            if (L->err == ST_OK)
                L->err = ST_ERR_NOMEM;
            return false;
        }
        if (start > part->log_start_issued)
            part->log_start_issued = start;
        log->async_ops++;
        return true;
    }
    L->ret_topic = 0;
    L->ret_part = 0;
    return false;
}

/* ---------------------------------------------------------------- merge */

/* A run of folded chunks of one partition copied into one segment object:
 * its chunk replaces theirs, one index key theirs. */
typedef struct merge_op {
    st_life_t *L;
    st_part_t *part;
    st_chunk_t **run; /* the chunks, in offset order */
    size_t k;
    kp_writer_t w; /* the segment object being built: header room, then data
                    * (all zero when it holds nothing) */
    uint8_t *data; /* their bytes, back to back, inside w's buffer */
    uint64_t *off; /* position of each in data */
    uint64_t total;
    size_t next;            /* the next chunk to read */
    size_t pending;         /* reads in flight */
    uint64_t pending_bytes; /* their bytes */
    st_err_t err;
    int64_t seq;
    st_buf_t *obj; /* the segment object */
    st_chunk_desc_t desc;
    st_prod_desc_t *prods; /* the producer entries the segment's index key keeps */
    size_t nprods;
    char key[96];
} merge_op_t;

typedef struct merge_read {
    merge_op_t *op;
    size_t i;
} merge_read_t;

static void merge_free(merge_op_t *op)
{
    free(op->run);
    kp_writer_deinit(&op->w);
    free(op->off);
    free(op->prods);
    if (op->obj)
        st_buf_unref(op->obj);
    free(op);
}

/* Does @c's object hold bytes no chunk in memory refers to (chunks that
 * expired, were copied out, or belong to a deleted topic)?  Its size is
 * the framing (header, footer count, trailer), the chunks and their footer
 * entries.  Chunks within a quarter of their retention of expiring are
 * left where they are. */
static bool chunk_wasted(const st_chunk_t *c, int64_t ret_ms, int64_t now)
{
    const st_obj_t *o = c->obj;
    uint64_t known = ST_OBJ_HEADER_SIZE + 4 + ST_OBJ_TRAILER_SIZE + o->live +
                     (uint64_t)ST_OBJ_ENTRY_SIZE * o->nlive;
    if (o->size <= known)
        return false;
    return ret_ms < 0 || c->max_ts < 0 || c->max_ts + ret_ms - ret_ms / 4 > now;
}

/* How far the chunks of one run may differ in size when a partition has too
 * many index keys: a chunk joins a run only within this factor of the
 * run's smallest and largest.  Runs of flushes become segments, runs of
 * those become larger segments, and each byte is copied about once per
 * tier (a few times in all) instead of once per merge, as when a growing
 * segment took in every next run of small chunks. */
#define MERGE_TIER 8
/* Chunks below a 64th of the segment size count as that size there: the
 * flushes of a busy partition vary widely in size, and all are small. */
#define MERGE_FLOOR 64

/* The length of the run of @part starting at chunk @i that merge_pick
 * would take (0: none); @pass 0: small chunks, 1: also those of mostly
 * dead objects; @tiered: only chunks of a like size (MERGE_TIER). */
static size_t merge_run(const st_part_t *part, size_t i, int pass, bool tiered, uint64_t seg,
                        int64_t span, int64_t ret_ms, int64_t now)
{
    uint64_t total = 0, lo_len = UINT64_MAX, hi_len = 0;
    int64_t hi = INT64_MIN;
    /* The run's records are no older than its predecessor's newest (a chunk
     * records only its newest timestamp).  The oldest chunk has nothing to
     * go by: under a time bound it takes in no other, or a segment at the
     * front could take in each next run of flushes and never expire. */
    bool timed = span != INT64_MAX;
    int64_t from = i > 0 ? part->chunks[i - 1]->run_max_ts : INT64_MIN;
    size_t j = i;
    while (j < part->nchunks && j - i < LIFE_TXN_OPS - 2) {
        const st_chunk_t *d = part->chunks[j];
        bool ok = d->folded && (d->len < seg / 2 || (pass == 1 && chunk_wasted(d, ret_ms, now)));
        int64_t nhi = d->max_ts > hi ? d->max_ts : hi;
        uint64_t len = d->len > seg / MERGE_FLOOR ? d->len : seg / MERGE_FLOOR;
        uint64_t nlo_len = len < lo_len ? len : lo_len;
        uint64_t nhi_len = len > hi_len ? len : hi_len;
        if (!ok || total + d->len > seg || (j > i && timed && (i == 0 || nhi - from > span)) ||
            (tiered && nhi_len > (uint64_t)MERGE_TIER * (nlo_len ? nlo_len : 1)))
            break;
        hi = nhi;
        lo_len = nlo_len;
        hi_len = nhi_len;
        total += d->len;
        j++;
    }
    return j - i;
}

/* The run of @part to rewrite: when the partition has more index keys
 * than the bound, the longest run of at least 2 small chunks of a like
 * size (the oldest of the longest), or failing that of any sizes; else
 * chunks lying in mostly-expired shared objects.  false when there is
 * none. */
static bool merge_pick(const st_log_t *log, const st_part_t *part, size_t *first, size_t *k)
{
    size_t max_keys =
        log->cfg.index_max_keys > 0 ? (size_t)log->cfg.index_max_keys : DEFAULT_MAX_KEYS;
    uint64_t seg =
        log->cfg.segment_bytes > 0 ? (uint64_t)log->cfg.segment_bytes : DEFAULT_SEGMENT_BYTES;
    /* A segment expires as a whole: it spans at most an eighth of the
     * retention (in time and in bytes), so that merging delays retention
     * by that much at most. */
    int64_t ret_ms, ret_bytes, span = INT64_MAX, now = now_ms();
    part_retention(log, part, &ret_ms, &ret_bytes);
    if (ret_ms >= 0)
        span = ret_ms / 8;
    if (ret_bytes >= 0 && (uint64_t)ret_bytes / 8 < seg)
        seg = (uint64_t)ret_bytes / 8 > 1 ? (uint64_t)ret_bytes / 8 : 1;
    size_t nfold = 0;
    for (size_t i = 0; i < part->nchunks; i++)
        nfold += part->chunks[i]->folded;
    if (nfold > max_keys) {
        for (int tiered = 1; tiered >= 0; tiered--) {
            size_t best = 0, at = 0;
            for (size_t i = 0; i < part->nchunks; i++) {
                const st_chunk_t *c = part->chunks[i];
                if (!c->folded || c->len >= seg / 2)
                    continue;
                size_t n = merge_run(part, i, 0, tiered, seg, span, ret_ms, now);
                if (n > best) {
                    best = n;
                    at = i;
                }
                if (n > 1)
                    i += n - 1; /* past the run: one scan of the chunks */
            }
            if (best >= 2) {
                *first = at;
                *k = best;
                return true;
            }
        }
    }
    for (size_t i = 0; i < part->nchunks; i++) {
        const st_chunk_t *c = part->chunks[i];
        if (!c->folded || !chunk_wasted(c, ret_ms, now))
            continue;
        size_t n = merge_run(part, i, 1, false, seg, span, ret_ms, now);
        if (n >= 1) {
            *first = i;
            *k = n;
            return true;
        }
    }
    return false;
}

static void merge_finish(merge_op_t *op, st_err_t err)
{
    st_life_t *L = op->L;
    st_log_t *log = L->log;
    if (err != ST_OK && L->err == ST_OK && err != ST_ERR_CONFLICT)
        L->err = err;
    merge_free(op);
    st_log__op_done(log);
    life_next(L);
}

static void merge_committed(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                            void *arg)
{
    (void)rev, (void)res, (void)n;
    merge_op_t *op = arg;
    st_log_t *log = op->L->log;
    st_part_t *part = op->part;
    if (err == ST_OK && !ok) {
        err = ST_ERR_CONFLICT;
        st_log__refence(log);
    }
    size_t i = 0;
    while (err == ST_OK && i < part->nchunks && part->chunks[i] != op->run[0])
        i++;
    if (err != ST_OK || part->topic->deleting || i + op->k > part->nchunks)
        return merge_finish(op, err); /* the segment is an orphan for GC */
    st_obj_t *obj = st_log__obj_new(log, op->key, strlen(op->key), op->obj->len);
    st_chunk_t *c = calloc(1, sizeof(*c));
    if (!obj || !c) { /* memory keeps the old chunks, which stay readable until a restart */
        free(c);
        st_log__obj_unref(obj);
        return merge_finish(op, ST_ERR_NOMEM);
    }
    c->base = op->desc.base_offset;
    c->last = op->desc.last_offset;
    c->max_ts = op->desc.max_timestamp;
    c->run_max_ts = op->run[op->k - 1]->run_max_ts;
    c->batches = op->desc.batches;
    c->len = op->desc.len;
    c->crc = op->desc.crc;
    c->pos = op->desc.pos;
    c->obj = obj; /* the reference st_log__obj_new took */
    obj->live += c->len;
    obj->nlive++;
    c->where = ST_CHUNK_STORE;
    st_list_init(&c->lru);
    st_list_push(&obj->chunks, &c->olink);
    c->part = part;
    c->folded = true;
    c->prods = op->prods;
    c->nprods = (uint32_t)op->nprods;
    op->prods = NULL;
    for (size_t j = 0; j < op->k; j++)
        st_log__chunk_free(log, part->chunks[i + j]);
    part->chunks[i] = c;
    memmove(&part->chunks[i + 1], &part->chunks[i + op->k],
            (part->nchunks - i - op->k) * sizeof(*part->chunks));
    part->nchunks -= op->k - 1;
    part->dropped += op->k - 1;
    log->stats.segments_written++;
    log->stats.chunks_merged += op->k;
    merge_finish(op, ST_OK);
}

static void merge_put_done(st_err_t err, void *arg)
{
    merge_op_t *op = arg;
    st_log_t *log = op->L->log;
    if (err == ST_OK && (op->part->topic->deleting || log->life->stopped))
        err = ST_ERR_CLOSED;
    if (err != ST_OK)
        return merge_finish(op, err);
    st_op_t ops[LIFE_TXN_OPS];
    char keys[LIFE_TXN_OPS][160];
    kp_uuid_t id = op->part->topic->id;
    int32_t p = op->part->index;
    st_manifest_t m = {.version = ST_MANIFEST_VERSION,
                       .node_id = log->cfg.node_id,
                       .incarnation = log->incarnation,
                       .seq = op->seq,
                       .object_key = kp_str(op->key),
                       .object_size = op->obj->len,
                       .chunks = &op->desc,
                       .nchunks = 1,
                       .prods = op->prods,
                       .nprods = op->nprods};
    kp_writer_t w;
    kp_writer_init(&w, 256 + ST_MANIFEST_PRODUCER_SIZE * op->nprods);
    st_manifest_encode(&w, &m);
    /* The first key is put again (a put and a delete of one key cannot
     * share a transaction); the others are deleted. */
    index_key(keys[0], sizeof keys[0], id, p, op->run[0]->base);
    ops[0] = (st_op_t){.type = ST_OP_PUT, .key = keys[0], .val = w.buf, .val_len = w.len};
    for (size_t j = 1; j < op->k; j++) {
        index_key(keys[j], sizeof keys[j], id, p, op->run[j]->base);
        ops[j] = (st_op_t){.type = ST_OP_DEL, .key = keys[j]};
    }
    st_cmp_t fence = {.key = log->fence_key,
                      .target = ST_CMP_VALUE,
                      .op = ST_CMP_EQ,
                      .val = (const uint8_t *)log->fence_val,
                      .val_len = strlen(log->fence_val)};
    st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = ops, .nsuccess = op->k};
    int rc = w.err ? -1 : st_meta_txn(log->meta, &txn, merge_committed, op);
    kp_writer_deinit(&w);
    if (rc != 0)
        merge_finish(op, ST_ERR_NOMEM);
}

/* Every chunk's bytes are in op->data: write the segment object. */
static void merge_upload(merge_op_t *op)
{
    st_log_t *log = op->L->log;
    if (op->err != ST_OK || op->part->topic->deleting || log->life->stopped)
        return merge_finish(op, op->err != ST_OK ? op->err : ST_ERR_CLOSED);
    st_part_t *part = op->part;
    op->seq = st_log__take_seq(log, op->key, sizeof op->key);
    int32_t batches = 0;
    int64_t max_ts = -1;
    for (size_t j = 0; j < op->k; j++) {
        batches += op->run[j]->batches;
        if (op->run[j]->max_ts > max_ts)
            max_ts = op->run[j]->max_ts;
    }
    /* The run's CRC from its chunks' (each checked when it was read). */
    uint32_t crc = 0;
    for (size_t j = 0; j < op->k; j++)
        crc = kp_crc32c_combine(crc, op->run[j]->crc, op->run[j]->len);
    op->desc = (st_chunk_desc_t){.topic_id = part->topic->id,
                                 .partition = part->index,
                                 .batches = batches,
                                 .base_offset = op->run[0]->base,
                                 .last_offset = op->run[op->k - 1]->last,
                                 .max_timestamp = max_ts,
                                 .pos = ST_OBJ_HEADER_SIZE,
                                 .len = (uint32_t)op->total,
                                 .crc = crc};
    /* The header into the room left for it, the footer after the data. */
    kp_writer_t hw;
    kp_writer_init(&hw, ST_OBJ_HEADER_SIZE);
    st_obj_write_header(&hw, &(st_obj_header_t){log->cfg.node_id, log->incarnation, op->seq});
    if (!hw.err && hw.len == ST_OBJ_HEADER_SIZE)
        memcpy(op->w.buf, hw.buf, ST_OBJ_HEADER_SIZE);
    else
        kp_writer_fail(&op->w, KP_ENCODE_NOMEM);
    kp_writer_deinit(&hw);
    kp_writer_t w = op->w; /* the writer moves here: taken or freed below */
    memset(&op->w, 0, sizeof op->w);
    op->data = NULL;
    st_obj_write_footer(&w, &op->desc, 1);
    /* Producer entries: the last ST_PROD_BATCHES of each producer. */
    size_t n = 0;
    for (size_t j = 0; j < op->k; j++)
        n += op->run[j]->nprods;
    op->prods = calloc(n ? n : 1, sizeof(*op->prods));
    if (w.err || !op->prods) {
        kp_writer_deinit(&w);
        return merge_finish(op, ST_ERR_NOMEM);
    }
    st_prod_desc_t *all = op->prods;
    size_t m = 0;
    for (size_t j = 0; j < op->k; j++)
        for (uint32_t q = 0; q < op->run[j]->nprods; q++)
            all[m++] = op->run[j]->prods[q];
    size_t kept = 0;
    for (size_t a = 0; a < m; a++) {
        int later = 0;
        for (size_t b = a + 1; b < m; b++)
            later += all[b].producer_id == all[a].producer_id;
        if (later < ST_PROD_BATCHES)
            all[kept++] = all[a];
    }
    op->nprods = kept;
    size_t len;
    uint8_t *bytes = kp_writer_take(&w, &len);
    op->obj = bytes ? st_buf_wrap(bytes, len) : NULL;
    if (!op->obj) {
        free(bytes);
        return merge_finish(op, ST_ERR_NOMEM);
    }
    if (st_objstore_put(log->os, op->key, op->obj->data, op->obj->len, merge_put_done, op) != 0)
        merge_finish(op, ST_ERR_IO);
}

static void merge_got(st_err_t err, const uint8_t *data, size_t len, void *arg);

/* Copy the run's chunks into the segment, at most MERGE_READ_BYTES of
 * them being read from the store at a time; the upload once all are in. */
static void merge_read_more(merge_op_t *op)
{
    st_log_t *log = op->L->log;
    while (op->err == ST_OK && op->next < op->k &&
           (op->pending == 0 || op->pending_bytes + op->run[op->next]->len <= MERGE_READ_BYTES)) {
        size_t j = op->next++;
        st_chunk_t *c = op->run[j];
        if (c->where != ST_CHUNK_STORE) {
            memcpy(op->data + op->off[j], c->buf->data + c->buf_off, c->len);
            continue;
        }
        merge_read_t *rd = malloc(sizeof(*rd));
        if (!rd) {
            op->err = ST_ERR_NOMEM;
            break;
        }
        *rd = (merge_read_t){op, j};
        op->pending++;
        op->pending_bytes += c->len;
        if (st_objstore_get_into(log->os, c->obj->key, c->pos, c->len, op->data + op->off[j],
                                 merge_got, rd) != 0) {
            free(rd);
            op->pending--;
            op->pending_bytes -= c->len;
            op->err = ST_ERR_IO;
        }
    }
    if (op->pending == 0)
        merge_upload(op);
}

static void merge_got(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    merge_read_t *rd = arg;
    merge_op_t *op = rd->op;
    const st_chunk_t *c = op->run[rd->i];
    /* The bytes are in place already (st_objstore_get_into). */
    if (err == ST_OK && (len != c->len || kp_crc32c(0, data, len) != c->crc))
        err = ST_ERR_CORRUPT;
    if (err != ST_OK && op->err == ST_OK)
        op->err = err;
    free(rd);
    op->pending--;
    op->pending_bytes -= c->len;
    merge_read_more(op);
}

/* Start rewriting the next run; false when no partition has one. */
static bool merge_step(st_life_t *L)
{
    st_log_t *log = L->log;
    if (L->merges >= MERGES_PER_RUN)
        return false;
    while (L->mrg_topic < log->ntopics) {
        st_topic_t *t = log->topics[L->mrg_topic];
        if (L->mrg_part >= t->nparts || t->deleting) {
            L->mrg_topic++;
            L->mrg_part = 0;
            continue;
        }
        st_part_t *part = t->parts[L->mrg_part];
        size_t first, k;
        if ((log->cfg.owns && !log->cfg.owns(log->cfg.owns_arg, t, part->index)) ||
            !merge_pick(log, part, &first, &k)) {
            L->mrg_part++;
            continue;
        }
        merge_op_t *op = calloc(1, sizeof(*op));
        if (!op)
            return false;
        op->L = L;
        op->part = part;
        op->k = k;
        op->run = malloc(k * sizeof(*op->run));
        op->off = malloc(k * sizeof(*op->off));
        for (size_t j = 0; op->run && op->off && j < k; j++) {
            op->run[j] = part->chunks[first + j];
            op->off[j] = op->total;
            op->total += op->run[j]->len;
        }
        /* The segment's buffer, aligned for a direct write: room for the
         * header, then the chunks' bytes read straight into place. */
        if (op->run && op->off) {
            kp_writer_init_aligned(&op->w, op->total + SEGMENT_OVERHEAD, ST_OBJ_ALIGN);
            if (kp_writer_space(&op->w, ST_OBJ_HEADER_SIZE))
                op->data = kp_writer_space(&op->w, op->total);
        }
        if (!op->data) {
            merge_free(op);
            return false;
        }
        L->merges++;
        log->async_ops++;
        merge_read_more(op);
        return true;
    }
    L->mrg_topic = 0;
    L->mrg_part = 0;
    return false;
}

/* ---------------------------------------------------------------- GC */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void refs_free(st_life_t *L)
{
    for (size_t i = 0; i < L->nrefs; i++)
        free(L->refs[i]);
    free(L->refs);
    L->refs = NULL;
    L->nrefs = 0;
}

/* The keys of every object a chunk in memory or a flush whose commit is in
 * flight refers to (borrowed from them), sorted. */
static bool refs_build(st_life_t *L)
{
    st_log_t *log = L->log;
    refs_free(L);
    size_t cap = 64, n = 0;
    char **r = malloc(cap * sizeof(*r));
    if (!r)
        return false;
#define REF_PUSH(k)                                                                                \
    do {                                                                                           \
        if (n == cap) {                                                                            \
            char **nr = realloc(r, 2 * cap * sizeof(*r));                                          \
            if (!nr) {                                                                             \
                for (size_t j_ = 0; j_ < n; j_++)                                                  \
                    free(r[j_]);                                                                   \
                free(r);                                                                           \
                return false;                                                                      \
            }                                                                                      \
            r = nr;                                                                                \
            cap *= 2;                                                                              \
        }                                                                                          \
        if (!(r[n] = strdup(k))) {                                                                 \
            for (size_t j_ = 0; j_ < n; j_++)                                                      \
                free(r[j_]);                                                                       \
            free(r);                                                                               \
            return false;                                                                          \
        }                                                                                          \
        n++;                                                                                       \
    } while (0)
    st_topic_t **lists[3] = {log->topics, log->graveyard, log->creating};
    size_t counts[3] = {log->ntopics, log->ngraveyard, log->ncreating};
    for (int li = 0; li < 3; li++) {
        for (size_t i = 0; i < counts[li]; i++) {
            st_topic_t *t = lists[li][i];
            if (li == 1)
                continue; /* deleted: its metadata is gone */
            for (int32_t p = 0; p < t->nparts; p++) {
                st_part_t *part = t->parts[p];
                const st_obj_t *last = NULL;
                for (size_t c = 0; c < part->nchunks; c++) {
                    if (part->chunks[c]->obj == last)
                        continue;
                    last = part->chunks[c]->obj;
                    REF_PUSH(last->key);
                }
            }
        }
    }
    for (st_link_t *l = log->flushes.next; l != &log->flushes; l = l->next) {
        st_flush_t *f = st_container_of(l, st_flush_t, link);
        if (f->state == ST_FLUSH_COMMITTING)
            REF_PUSH(f->key);
    }
#undef REF_PUSH
    if (n > 1)
        qsort(r, n, sizeof(*r), str_cmp);
    L->refs = r;
    L->nrefs = n;
    return true;
}

static bool referenced(const st_life_t *L, const char *key)
{
    return L->nrefs > 0 && bsearch(&key, L->refs, L->nrefs, sizeof(*L->refs), str_cmp) != NULL;
}

static int cand_cmp(const void *a, const void *b)
{
    return strcmp(((const gc_cand_t *)a)->key, ((const gc_cand_t *)b)->key);
}

static void cands_free(gc_cand_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(c[i].key);
    free(c);
}

/* "objects/<node>/<incarnation>-<seq>.nho": the incarnation, or -1. */
static int64_t key_incarnation(const char *key)
{
    const char *s = strrchr(key, '/');
    if (!s)
        return -1;
    char *end;
    long long inc = strtoll(s + 1, &end, 10);
    return end != s + 1 && *end == '-' ? (int64_t)inc : -1;
}

static void gc_list(st_life_t *L);
static void gc_delete_next(st_life_t *L);

static void gc_finish(st_life_t *L)
{
    st_log_t *log = L->log;
    refs_free(L);
    cands_free(L->cands, L->ncands);
    L->cands = L->seen;
    L->ncands = L->nseen;
    L->seen = NULL;
    L->nseen = L->seen_cap = 0;
    log->stats.gc_unreferenced = L->ncands;
    log->stats.gc_runs++;
    L->stage = LIFE_IDLE;
    life_next(L);
}

typedef struct gc_del {
    st_life_t *L;
    size_t i; /* in L->seen */
} gc_del_t;

static void gc_deleted(st_err_t err, void *arg)
{
    gc_del_t *d = arg;
    st_life_t *L = d->L;
    st_log_t *log = L->log;
    gc_cand_t *c = &L->seen[d->i];
    free(d);
    if (err == ST_OK) {
        log->stats.gc_objects_deleted++;
        log->stats.gc_bytes_deleted += c->size;
        free(c->key);
        c->key = NULL; /* gone: not carried to the next pass */
    } else if (L->err == ST_OK) {
        L->err = err;
    }
    L->del_inflight--;
    st_log__op_done(log);
    gc_delete_next(L);
}

/* Delete the candidates that are due, GC_DELETES_INFLIGHT requests at a
 * time. */
static void gc_delete_next(st_life_t *L)
{
    st_log_t *log = L->log;
    int64_t now = now_ms();
    int64_t grace = log->cfg.gc_grace_ms > 0 ? log->cfg.gc_grace_ms : DEFAULT_GRACE_MS;
    for (; L->del_i < L->nseen && L->del_inflight < GC_DELETES_INFLIGHT; L->del_i++) {
        gc_cand_t *c = &L->seen[L->del_i];
        if (L->stopped || L->del_count >= GC_DELETES_PER_PASS) {
            L->del_i = L->nseen;
            break;
        }
        if (!c->key || now - c->first_ms < grace || now - c->mtime_ms < grace ||
            referenced(L, c->key))
            continue;
        /* A flush of this object still waiting to commit is failed first:
         * its commit is never sent.  One whose commit went ahead of its
         * upload keeps its object. */
        st_flush_t *fl = NULL;
        for (st_link_t *l = log->flushes.next; l != &log->flushes; l = l->next) {
            st_flush_t *f = st_container_of(l, st_flush_t, link);
            if (f->state != ST_FLUSH_FAILED && strcmp(f->key, c->key) == 0) {
                fl = f;
                break;
            }
        }
        if (fl && fl->ahead)
            continue;
        gc_del_t *d = malloc(sizeof(*d));
        if (!d) {
            L->del_i = L->nseen; /* the rest at the next pass */
            break;
        }
        *d = (gc_del_t){L, L->del_i};
        L->del_count++;
        if (fl) {
            log->stats.gc_flushes_failed++;
            st_log__fail_flush(log, fl, ST_ERR_IO);
        }
        if (st_objstore_del(log->os, c->key, gc_deleted, d) != 0) {
            free(d);
            if (L->err == ST_OK)
                L->err = ST_ERR_IO;
            continue;
        }
        L->del_inflight++;
        log->async_ops++;
    }
    if (L->del_inflight > 0 || L->del_i < L->nseen)
        return;
    /* Drop deleted entries. */
    size_t m = 0;
    for (size_t i = 0; i < L->nseen; i++)
        if (L->seen[i].key)
            L->seen[m++] = L->seen[i];
    L->nseen = m;
    gc_finish(L);
}

/* The metadata read after the listing: every commit issued before it has
 * been answered (and applied) by now. */
static void gc_barrier(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                       void *arg)
{
    (void)kvs, (void)n, (void)more, (void)rev;
    st_life_t *L = arg;
    st_log_t *log = L->log;
    st_log__op_done(log);
    bool fenced = err == ST_OK && (n != 1 || kvs[0].val_len != strlen(log->fence_val) ||
                                   memcmp(kvs[0].val, log->fence_val, kvs[0].val_len) != 0);
    if (fenced)
        st_log__refence(log);
    if (err != ST_OK || fenced || L->stopped || !refs_build(L)) {
        if (L->err == ST_OK)
            L->err = err != ST_OK ? err : fenced ? ST_ERR_CONFLICT : ST_ERR_NOMEM;
        L->del_i = L->nseen; /* delete nothing */
        gc_delete_next(L);
        return;
    }
    L->del_i = 0;
    L->del_count = 0;
    gc_delete_next(L);
}

static void gc_listed(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    st_life_t *L = arg;
    st_log_t *log = L->log;
    st_log__op_done(log);
    if (err != ST_OK || L->stopped) {
        if (L->err == ST_OK)
            L->err = err != ST_OK ? err : ST_ERR_CLOSED;
        L->del_i = L->nseen;
        gc_delete_next(L);
        return;
    }
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        const char *k = objs[i].key;
        int64_t inc = key_incarnation(k);
        if (inc < 0 || inc > log->incarnation || referenced(L, k))
            continue; /* not ours to judge, or a later start's (we are fenced) */
        if (L->nseen == L->seen_cap) {
            size_t cap = L->seen_cap ? 2 * L->seen_cap : 64;
            gc_cand_t *s = realloc(L->seen, cap * sizeof(*s));
            if (!s)
                break;
            L->seen = s;
            L->seen_cap = cap;
        }
        gc_cand_t key = {.key = (char *)k};
        gc_cand_t *prev =
            L->ncands ? bsearch(&key, L->cands, L->ncands, sizeof(*L->cands), cand_cmp) : NULL;
        char *dup = strdup(k);
        if (!dup)
            break;
        L->seen[L->nseen++] = (gc_cand_t){.key = dup,
                                          .first_ms = prev ? prev->first_ms : now,
                                          .mtime_ms = objs[i].mtime_ms,
                                          .size = objs[i].size};
    }
    if (more && n > 0) {
        snprintf(L->list_after, sizeof L->list_after, "%s", objs[n - 1].key);
        gc_list(L);
        return;
    }
    /* Judge again after a metadata round trip (see the header). */
    if (st_meta_range(log->meta, log->fence_key, false, 0, gc_barrier, L) != 0) {
        L->del_i = L->nseen;
        gc_delete_next(L);
        return;
    }
    log->async_ops++;
}

static void gc_list(st_life_t *L)
{
    st_log_t *log = L->log;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "objects/%" PRId32 "/", log->cfg.node_id);
    if (st_objstore_list(log->os, prefix, L->list_after[0] ? L->list_after : NULL, GC_LIST_PAGE,
                         gc_listed, L) != 0) {
        if (L->err == ST_OK)
            L->err = ST_ERR_IO;
        gc_delete_next(L);
        return;
    }
    log->async_ops++;
}

static void gc_start(st_life_t *L)
{
    L->list_after[0] = '\0';
    L->nseen = 0;
    L->del_i = 0;
    /* The listing skips what memory references now; gc_barrier checks
     * again before anything is deleted. */
    if (!refs_build(L)) {
        L->err = ST_ERR_NOMEM;
        L->stage = LIFE_IDLE;
        life_next(L);
        return;
    }
    gc_list(L);
}

/* ---------------------------------------------------------------- driver */

static void run_end(st_life_t *L)
{
    L->running = false;
    life_waiter_t *w = L->run_waiters;
    L->run_waiters = NULL;
    st_err_t err = L->err;
    L->err = ST_OK;
    while (w) {
        life_waiter_t *next = w->next;
        w->cb(err, w->arg);
        free(w);
        w = next;
    }
}

/* Advance the run: fold until nothing is left, then retention over every
 * partition, then GC when due. */
static void life_next(st_life_t *L)
{
    st_log_t *log = L->log;
    if (L->stopped) {
        L->stage = LIFE_IDLE;
        run_end(L);
        return;
    }
    switch (L->stage) {
    case LIFE_IDLE:
        run_end(L);
        return;
    case LIFE_FOLD:
        if (fold_step(L))
            return;
        L->stage = LIFE_RETAIN;
        /* fall through */
    case LIFE_RETAIN:
        if (L->want_retain && retain_step(L))
            return;
        L->want_retain = false;
        L->stage = LIFE_MERGE;
        /* fall through */
    case LIFE_MERGE:
        if (merge_step(L))
            return;
        L->stage = LIFE_GC;
        /* fall through */
    case LIFE_GC:
        if (L->want_gc && log->cfg.gc_interval_ms >= 0) {
            L->want_gc = false;
            gc_start(L);
            return;
        }
        L->stage = LIFE_IDLE;
        run_end(L);
        return;
    }
}

static int64_t retain_ms(const st_log_t *log)
{
    return log->cfg.retention_check_interval_ms > 0 ? log->cfg.retention_check_interval_ms
                                                    : DEFAULT_RETAIN_MS;
}

static void run_begin(st_life_t *L, bool explicit, bool gc)
{
    st_log_t *log = L->log;
    int64_t now = now_ms();
    int64_t gc_ms = log->cfg.gc_interval_ms > 0 ? log->cfg.gc_interval_ms : DEFAULT_GC_MS;
    if (gc || now >= L->next_gc_ms) {
        L->want_gc = true;
        L->next_gc_ms = now + gc_ms;
    }
    if (explicit || now >= L->next_retain_ms) {
        L->want_retain = true;
        L->next_retain_ms = now + retain_ms(log);
    }
    L->running = true;
    L->stage = LIFE_FOLD;
    L->fold_upto = L->fold_enq;
    L->ret_topic = 0;
    L->ret_part = 0;
    L->mrg_topic = 0;
    L->mrg_part = 0;
    L->merges = 0;
    life_next(L);
}

static void life_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    st_life_t *L = arg;
    if (!L->running && !L->stopped && L->log->open)
        run_begin(L, false, false);
}

typedef struct run_req {
    st_life_t *L;
    bool gc;
} run_req_t;

static void run_deferred(void *arg)
{
    run_req_t *r = arg;
    st_life_t *L = r->L;
    bool gc = r->gc;
    free(r);
    st_log__op_done(L->log);
    if (L->stopped) {
        if (!L->running) {
            L->run_waiters = L->waiters;
            L->waiters = NULL;
            L->err = ST_ERR_CLOSED;
            run_end(L);
        }
        return;
    }
    /* A run in progress takes the waiters that joined it at its end; one
     * started here serves them. */
    if (!L->running) {
        L->run_waiters = L->waiters;
        L->waiters = NULL;
        run_begin(L, true, gc);
    }
}

int st_log_lifecycle_run(st_log_t *log, bool gc, void (*cb)(st_err_t err, void *arg), void *arg)
{
    st_life_t *L = log->life;
    if (!L || !log->open || log->closing)
        return -1;
    life_waiter_t *w = calloc(1, sizeof(*w));
    run_req_t *r = calloc(1, sizeof(*r));
    if (!w || !r || st_log__defer(log, run_deferred, r) != 0) {
        free(w);
        free(r);
        return -1;
    }
    r->L = L;
    r->gc = gc;
    w->cb = cb;
    w->arg = arg;
    w->next = L->waiters;
    L->waiters = w;
    log->async_ops++;
    return 0;
}

int st_log__life_start(st_log_t *log)
{
    st_life_t *L = log->life;
    if (!L)
        return -1;
    /* A partition whose chunks are all gone starts at its log start. */
    for (size_t i = 0; i < log->ntopics; i++)
        for (int32_t p = 0; p < log->topics[i]->nparts; p++) {
            st_part_t *part = log->topics[i]->parts[p];
            if (part->hw < part->log_start)
                part->hw = part->leo = part->log_start;
        }
    int64_t ms =
        log->cfg.lifecycle_interval_ms > 0 ? log->cfg.lifecycle_interval_ms : DEFAULT_LIFE_MS;
    int64_t gc_ms = log->cfg.gc_interval_ms > 0 ? log->cfg.gc_interval_ms : DEFAULT_GC_MS;
    L->next_gc_ms = now_ms() + gc_ms;
    L->next_retain_ms = now_ms() + retain_ms(log);
    L->timer = event_new(log->base, -1, EV_PERSIST, life_tick, L);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (!L->timer || event_add(L->timer, &tv) != 0)
        return -1;
    return 0;
}

void st_log__life_stop(st_log_t *log)
{
    st_life_t *L = log->life;
    if (!L)
        return;
    L->stopped = true;
    if (L->timer)
        event_del(L->timer);
}

bool st_log__life_busy(const st_log_t *log)
{
    return log->life && log->life->running;
}

/* Called by st_log_new (st_log.c). */
int st_log__life_new(st_log_t *log)
{
    st_life_t *L = calloc(1, sizeof(*L));
    if (!L)
        return -1;
    L->log = log;
    st_list_init(&L->unfolded);
    log->life = L;
    return 0;
}

void st_log__life_free(st_log_t *log)
{
    st_life_t *L = log->life;
    if (!L)
        return;
    if (L->timer)
        event_free(L->timer);
    while (!st_list_empty(&L->unfolded)) {
        fold_item_t *it = st_container_of(L->unfolded.next, fold_item_t, link);
        st_list_del(&it->link);
        item_free(it);
    }
    for (life_waiter_t *w = L->waiters, *n; w; w = n) {
        n = w->next;
        free(w);
    }
    for (life_waiter_t *w = L->run_waiters, *n; w; w = n) {
        n = w->next;
        free(w);
    }
    free(L->tx.chunks);
    refs_free(L);
    cands_free(L->cands, L->ncands);
    cands_free(L->seen, L->nseen);
    free(L);
    log->life = NULL;
}

/* ---------------------------------------------------------------- start-up */

/* Partitions read at once at start-up. */
#define LOAD_WINDOW 16

typedef struct load_op {
    st_log_t *log;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
    size_t topic; /* the next partition to read */
    int32_t part;
    unsigned inflight;
    st_err_t err; /* the first failure */
} load_op_t;

/* One partition's range in flight. */
typedef struct load_part {
    load_op_t *op;
    st_part_t *part;
    char prefix[160];
} load_part_t;

static void load_next(load_op_t *op);

/* One partition's keys: chunks/<base> in offset order, and log-start. */
static st_err_t part_apply(st_log_t *log, st_part_t *part, const char *prefix, const st_kv_t *kvs,
                           size_t n)
{
    st_err_t err = ST_OK;
    size_t plen = strlen(prefix);
    int64_t start = -1;
    for (size_t i = 0; i < n; i++) {
        const char *rest = kvs[i].key + plen;
        if (strcmp(rest, "log-start") == 0) {
            char num[24] = {0}, *end;
            memcpy(num, kvs[i].val,
                   kvs[i].val_len < sizeof num - 1 ? kvs[i].val_len : sizeof num - 1);
            start = strtoll(num, &end, 10);
            if (end == num || *end != '\0' || start < 0)
                return ST_ERR_CORRUPT;
            continue;
        }
        if (st_log__epoch_key(part, rest, kvs[i].val, kvs[i].val_len))
            continue;
        if (strncmp(rest, "chunks/", 7) != 0)
            continue;
        st_manifest_t m;
        if (st_manifest_decode(kvs[i].val, kvs[i].val_len, &m) != ST_OK)
            return ST_ERR_CORRUPT;
        st_obj_t *obj = m.nchunks == 1 ? st_log__obj_new(log, m.object_key.ptr,
                                                         (size_t)m.object_key.len, m.object_size)
                                       : NULL;
        const st_chunk_desc_t *d = &m.chunks[0];
        if (m.nchunks != 1) {
            err = ST_ERR_CORRUPT;
        } else if (!obj) {
            err = ST_ERR_NOMEM;
        } else if (d->base_offset >= part->hw) {
            if (!st_log__chunk_add(part, obj, d)) {
                err = ST_ERR_NOMEM;
            } else {
                part->chunks[part->nchunks - 1]->folded = true;
                st_log__chunk_prods(part, m.prods, m.nprods, 0);
                part->hw = part->leo = d->last_offset + 1;
                for (size_t q = 0; q < m.nprods; q++)
                    st_log__prod_replay(part, &m.prods[q]);
            }
        }
        st_log__obj_unref(obj);
        free((void *)m.chunks);
        free((void *)m.prods);
        if (err != ST_OK)
            return err;
    }
    if (start >= 0) /* the high watermark follows after the manifests */
        part->log_start = part->log_start_issued = start;
    return ST_OK;
}

static void part_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    load_part_t *lp = arg;
    load_op_t *op = lp->op;
    if (err == ST_OK && op->err == ST_OK)
        err = part_apply(op->log, lp->part, lp->prefix, kvs, n);
    if (err != ST_OK && op->err == ST_OK)
        op->err = err;
    free(lp);
    op->inflight--;
    load_next(op);
}

/* Keep LOAD_WINDOW partitions' ranges in flight; answer when all are in. */
static void load_next(load_op_t *op)
{
    st_log_t *log = op->log;
    while (op->err == ST_OK && op->inflight < LOAD_WINDOW) {
        while (op->topic < log->ntopics && op->part >= log->topics[op->topic]->nparts) {
            op->topic++;
            op->part = 0;
        }
        if (op->topic == log->ntopics)
            break;
        st_topic_t *t = log->topics[op->topic];
        load_part_t *lp = calloc(1, sizeof(*lp));
        if (!lp) {
            op->err = ST_ERR_NOMEM;
            break;
        }
        lp->op = op;
        lp->part = t->parts[op->part];
        index_prefix(lp->prefix, sizeof lp->prefix, t->id, op->part);
        if (st_meta_range(log->meta, lp->prefix, true, 0, part_got, lp) != 0) {
            free(lp);
            op->err = ST_ERR_NOMEM;
            break;
        }
        op->part++;
        op->inflight++;
    }
    if (op->inflight > 0)
        return;
    op->cb(op->err, op->arg);
    free(op);
}

int st_log__load_index(st_log_t *log, void (*cb)(st_err_t err, void *arg), void *arg)
{
    load_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    load_next(op);
    return 0;
}
