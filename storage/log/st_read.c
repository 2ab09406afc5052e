/*
 * st_read.c: the read path -- the chunk index, the memory tail of recently
 * committed chunks, the read cache of chunks read back from the object
 * store, ranged reads of missing chunks, waiters, and lookups by timestamp.
 */
#include "st_log_int.h"

#include <stdlib.h>
#include <string.h>

#include "kp_batch.h"
#include "kp_compress.h"
#include "kp_crc32c.h"

/* Most slices one read returns (batches are merged when contiguous). */
#define READ_MAX_SLICES 64

/* ---------------------------------------------------------------- index */

bool st_log__chunk_add(st_part_t *part, st_obj_t *obj, const st_chunk_desc_t *d)
{
    if (part->nchunks == part->chunks_cap) {
        size_t cap = part->chunks_cap ? part->chunks_cap * 2 : 4;
        st_chunk_t **n = realloc(part->chunks, cap * sizeof(*n));
        if (!n)
            return false;
        part->chunks = n;
        part->chunks_cap = cap;
    }
    st_chunk_t *c = calloc(1, sizeof(*c));
    if (!c)
        return false;
    c->base = d->base_offset;
    c->last = d->last_offset;
    c->max_ts = d->max_timestamp;
    c->run_max_ts = c->max_ts;
    if (part->nchunks > 0 && part->chunks[part->nchunks - 1]->run_max_ts > c->run_max_ts)
        c->run_max_ts = part->chunks[part->nchunks - 1]->run_max_ts;
    c->batches = d->batches;
    c->len = d->len;
    c->crc = d->crc;
    c->pos = d->pos;
    c->obj = obj;
    obj->refs++;
    obj->live += c->len;
    obj->nlive++;
    c->where = ST_CHUNK_STORE;
    st_list_init(&c->lru);
    st_list_push(&obj->chunks, &c->olink);
    c->part = part;
    part->chunks[part->nchunks++] = c;
    return true;
}

bool st_log__chunk_prods(st_part_t *part, const st_prod_desc_t *prods, size_t n, uint32_t chunk)
{
    st_chunk_t *c = part->chunks[part->nchunks - 1];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += prods[i].chunk == chunk;
    if (k == 0)
        return true;
    st_prod_desc_t *p = realloc(c->prods, (c->nprods + k) * sizeof(*p));
    if (!p)
        return false;
    c->prods = p;
    for (size_t i = 0; i < n; i++)
        if (prods[i].chunk == chunk) {
            p[c->nprods] = prods[i];
            p[c->nprods++].chunk = 0;
        }
    return true;
}

static void chunk_drop_buf(st_log_t *log, st_chunk_t *c)
{
    if (c->where == ST_CHUNK_TAIL)
        log->stats.tail_bytes -= c->len;
    else if (c->where == ST_CHUNK_CACHE)
        log->stats.cache_bytes -= c->len;
    if (c->passed)
        log->passed_bytes -= c->len;
    c->passed = false;
    if (c->buf)
        st_buf_unref(c->buf);
    c->buf = NULL;
    c->where = ST_CHUNK_STORE;
    st_list_del(&c->lru);
}

/* One ranged GET: bytes [pos, pos + len) of obj holding chunks, which lie
 * in that range (a merged GET holds several; the bytes between them are
 * read and dropped). */
struct st_load {
    st_log_t *log;
    st_obj_t *obj; /* referenced */
    uint64_t pos, len;
    st_chunk_t **chunks; /* slots NULL once a chunk is freed or moved to another load */
    size_t n, cap;
    struct read_op *waiting; /* reads to resume when the bytes arrive */
    bool issued;             /* the GET was started */
    size_t ahead;            /* bytes counted in log->ra_inflight */
    st_buf_t *into;          /* one chunk exactly: its buffer, read into in place */
};

void st_log__chunk_free(st_log_t *log, st_chunk_t *c)
{
    chunk_drop_buf(log, c);
    st_list_del(&c->olink);
    if (c->load)
        c->load->chunks[c->load_idx] = NULL;
    c->obj->live -= c->len;
    c->obj->nlive--;
    st_log__obj_unref(c->obj);
    free(c->prods);
    free(c);
}

/* Keep the read cache within its budget, dropping first the chunks readers
 * have gone past, and those within an eighth of it.  A reader going through
 * a partition's objects loads each chunk into a buffer of its own; once it
 * has read on, the chunk is of use only to another reader coming the same
 * way, and its buffer's memory, released, is the next load's (st_buf.c):
 * kept in the cache it would have to be new memory, which the kernel zeroes
 * before reading into it (three quarters of the gateway's time in a
 * one-partition read through objects). */
static void evict_cache(st_log_t *log)
{
    st_link_t *passed = &log->cache_passed, *lru = &log->cache_lru;
    while (log->stats.cache_bytes > log->cfg.read_cache_bytes && !st_list_empty(passed))
        chunk_drop_buf(log, st_container_of(passed->next, st_chunk_t, lru));
    while (log->stats.cache_bytes > log->cfg.read_cache_bytes && !st_list_empty(lru))
        chunk_drop_buf(log, st_container_of(lru->next, st_chunk_t, lru));
    while (log->passed_bytes > log->cfg.read_cache_bytes / 8 && !st_list_empty(passed))
        chunk_drop_buf(log, st_container_of(passed->next, st_chunk_t, lru));
}

/* A read used @c, in the read cache: the most recently used. */
static void cache_touch(st_log_t *log, st_chunk_t *c)
{
    if (c->passed)
        log->passed_bytes -= c->len;
    c->passed = false;
    st_list_del(&c->lru);
    st_list_push(&log->cache_lru, &c->lru);
}

static bool cache_passable(const st_chunk_t *c)
{
    return c->where == ST_CHUNK_CACHE && !c->passed;
}

/* A read began after @c, which it would have read coming from before it. */
static void cache_pass(st_log_t *log, st_chunk_t *c)
{
    c->passed = true;
    log->passed_bytes += c->len;
    st_list_del(&c->lru);
    st_list_push(&log->cache_passed, &c->lru);
}

/* Keep the memory tail within its budget, a whole object at a time: a chunk
 * in the tail holds its entire object, so one left behind by an eviction
 * would keep all of it.  An object's chunks are neighbours in the list (one
 * commit adds them). */
static void evict_tail(st_log_t *log)
{
    const st_obj_t *last = NULL;
    while (!st_list_empty(&log->tail_lru)) {
        st_chunk_t *c = st_container_of(log->tail_lru.next, st_chunk_t, lru);
        if (log->stats.tail_bytes <= log->cfg.tail_cache_bytes && c->obj != last)
            break;
        last = c->obj;
        chunk_drop_buf(log, c);
    }
}

void st_log__tail_add(st_log_t *log, st_chunk_t *c, st_buf_t *obj, size_t off)
{
    if (obj->len > log->cfg.tail_cache_bytes)
        return; /* the object alone is over the budget it would be held in */
    c->where = ST_CHUNK_TAIL;
    c->buf = st_buf_ref(obj);
    c->buf_off = off;
    log->stats.tail_bytes += c->len;
    st_list_push(&log->tail_lru, &c->lru);
    evict_tail(log);
}

/* @c, loaded into @buf (taken), joins the read cache; the caller keeps the
 * cache within its budget (evict_cache) once the reads waiting for it got
 * their share. */
static void cache_add(st_log_t *log, st_chunk_t *c, st_buf_t *buf)
{
    c->where = ST_CHUNK_CACHE;
    c->buf = buf;
    c->buf_off = 0;
    c->passed = false;
    log->stats.cache_bytes += c->len;
    st_list_del(&c->lru);
    st_list_push(&log->cache_lru, &c->lru);
}

/* ---------------------------------------------------------------- waiters */

void st_part_wait(st_part_t *part, st_waiter_t *w)
{
    st_link_t *l = (st_link_t *)w; /* next/prev lead the struct */
    w->part = part;
    st_list_push(&part->waiters, l);
}

void st_part_unwait(st_waiter_t *w)
{
    if (w->part) {
        st_list_del((st_link_t *)w);
        w->part = NULL;
    }
}

void st_log__wake(st_part_t *part)
{
    /* Detach the list first: a woken waiter may wait again. */
    st_link_t woken;
    st_list_init(&woken);
    if (!st_list_empty(&part->waiters)) {
        woken.next = part->waiters.next;
        woken.prev = part->waiters.prev;
        woken.next->prev = &woken;
        woken.prev->next = &woken;
        st_list_init(&part->waiters);
    }
    while (!st_list_empty(&woken)) {
        st_waiter_t *w = (st_waiter_t *)woken.next;
        st_list_del((st_link_t *)w);
        w->part = NULL;
        w->fn(w, w->arg);
    }
}

/* ---------------------------------------------------------------- accessors */

st_topic_t *st_part_topic(const st_part_t *part)
{
    return part->topic;
}
int32_t st_part_index(const st_part_t *part)
{
    return part->index;
}
int64_t st_part_hw(const st_part_t *part)
{
    return part->hw;
}
int64_t st_part_log_start(const st_part_t *part)
{
    return part->log_start;
}
int64_t st_part_leo(const st_part_t *part)
{
    return part->leo;
}
int32_t st_part_leader_epoch(const st_part_t *part)
{
    return part->epoch;
}
void st_part_set_leader_epoch(st_part_t *part, int32_t epoch)
{
    part->epoch = epoch;
}

static size_t chunk_find(const st_part_t *part, int64_t offset);

st_chunk_t *st_log__chunk_at(const st_part_t *part, int64_t base)
{
    size_t i = chunk_find(part, base);
    return i < part->nchunks && part->chunks[i]->base == base ? part->chunks[i] : NULL;
}

/* Index of the first chunk whose last offset >= @offset (nchunks if none). */
static size_t chunk_find(const st_part_t *part, int64_t offset)
{
    size_t lo = 0, hi = part->nchunks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (part->chunks[mid]->last < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---------------------------------------------------------------- reads */

typedef enum read_kind { READ_BATCHES, READ_TIME, READ_MAX } read_kind_t;

typedef struct read_op {
    struct read_op *next; /* in a load's waiting list */
    read_kind_t kind;
    st_part_t *part;
    int64_t offset; /* READ_BATCHES: first wanted offset; READ_TIME: timestamp */
    size_t max_bytes;
    st_read_cb cb;
    st_offset_cb ocb;
    void *arg;
    st_err_t err;
    size_t n; /* slices gathered */
    size_t bytes;
    st_slice_t slices[READ_MAX_SLICES];
    int64_t found_offset, found_ts; /* READ_TIME result */
    size_t chunk;                   /* READ_TIME: the chunk being searched */
    bool started;                   /* READ_TIME: chunk was set */
    uint64_t dropped;               /* part->dropped when chunk was set */
    size_t wait_idx;                /* in a load's waiting list: its chunk's slot */
    int64_t end;                    /* READ_BATCHES: the offset after the last batch taken */
    bool stored; /* READ_BATCHES: sequential or waited for a GET: read ahead when done */
} read_op_t;

/* Chunks dropped from the front of the partition (retention) since op->chunk
 * was set move it down with them. */
static void chunk_rebase(read_op_t *op)
{
    uint64_t d = op->part->dropped - op->dropped;
    op->chunk = op->chunk > d ? op->chunk - (size_t)d : 0;
    op->dropped = op->part->dropped;
}

static void read_ahead(st_part_t *part, size_t want);

/* How far a sequential reader is read ahead: four of its reads, at least
 * 4 MiB (a reader of one partition waits for each answer before asking
 * again, so a shallower read-ahead leaves it waiting on the store), at most
 * a quarter of the read-ahead budget (the budget stays shared). */
static size_t ahead_want(const st_log_t *log, size_t max_bytes)
{
    size_t w = max_bytes > SIZE_MAX / 4 ? SIZE_MAX : max_bytes * 4;
    if (w < (4u << 20))
        w = 4u << 20;
    if (w > log->cfg.read_ahead_bytes / 4)
        w = log->cfg.read_ahead_bytes / 4;
    return w;
}

static void op_finish(void *arg)
{
    read_op_t *op = arg;
    st_log_t *log = op->part->log;
    if (op->kind == READ_BATCHES && op->err == ST_OK) {
        op->part->ra_pos = op->n ? op->end : op->offset;
        if (op->stored)
            read_ahead(op->part, ahead_want(log, op->max_bytes));
    }
    if (op->kind == READ_BATCHES)
        op->cb(op->err, op->slices, op->err == ST_OK ? op->n : 0, op->arg);
    else
        op->ocb(op->err, op->found_offset, op->found_ts, op->arg);
    for (size_t i = 0; i < op->n; i++)
        st_buf_unref(op->slices[i].buf);
    free(op);
    st_log__op_done(log);
}

static void add_slice(read_op_t *op, st_buf_t *buf, size_t off, size_t len)
{
    st_slice_t *last = op->n ? &op->slices[op->n - 1] : NULL;
    if (last && last->buf == buf && last->off + last->len == off) {
        last->len += len;
    } else {
        op->slices[op->n++] = (st_slice_t){st_buf_ref(buf), off, len};
    }
    op->bytes += len;
}

/* Take batches of an in-memory chunk; false when the read is full. */
static bool gather_chunk(read_op_t *op, const st_chunk_t *c)
{
    const uint8_t *data = c->buf->data + c->buf_off;
    kp_batch_cursor_t cur;
    kp_batch_cursor_init(&cur, data, c->len, c->len);
    const uint8_t *b;
    size_t size;
    while (kp_batch_cursor_next(&cur, &b, &size)) {
        int64_t base = (int64_t)kp_be64(b + KP_BATCH_OFF_BASE_OFFSET);
        int64_t last = base + (int32_t)kp_be32(b + KP_BATCH_OFF_LAST_OFFSET_DELTA);
        if (last < op->offset)
            continue;
        if (op->bytes > 0 && (op->bytes + size > op->max_bytes || op->n == READ_MAX_SLICES))
            return false;
        add_slice(op, c->buf, c->buf_off + (size_t)(b - data), size);
        op->end = last + 1;
    }
    return true;
}

static void load_start(st_log_t *log, st_chunk_t *c, read_op_t *op);
static void time_resume(read_op_t *op);
static void max_resume(read_op_t *op);

/* Gather from the chunk at @i on while chunks are in memory; start a load
 * when the first needed chunk is not. */
static void read_gather(read_op_t *op)
{
    st_part_t *part = op->part;
    st_log_t *log = part->log;
    if (part->topic->deleting) {
        op->err = ST_ERR_NOT_FOUND;
    } else if (op->bytes == 0 && (op->offset < part->log_start || op->offset > part->hw)) {
        op->err = ST_ERR_RANGE;
    } else {
        size_t first = chunk_find(part, op->offset);
        /* What lies before the read was read: one chunk when the last
         * read ended in it, more when that read took several (those not
         * passed yet, oldest first). */
        size_t from = first;
        while (from > 0 && cache_passable(part->chunks[from - 1]))
            from--;
        for (; from < first; from++)
            cache_pass(log, part->chunks[from]);
        for (size_t i = first; i < part->nchunks; i++) {
            st_chunk_t *c = part->chunks[i];
            if (c->base >= part->hw)
                break;
            if (c->where == ST_CHUNK_STORE) {
                if (op->bytes == 0) {
                    load_start(log, c, op);
                    return;
                }
                break;
            }
            if (c->where == ST_CHUNK_CACHE)
                cache_touch(log, c);
            if (!gather_chunk(op, c))
                break;
        }
    }
    if (st_log__defer(log, op_finish, op) != 0)
        op_finish(op); /* out of memory: answering now beats never */
}

/* Most chunks a GET merges; gaps up to MERGE_GAP bytes between merged
 * chunks are read along; how many chunks ahead of its reader a partition's
 * chunk may be to join a GET; chunks a sequential read starts ahead of it. */
#define MERGE_MAX_CHUNKS 4096
#define MERGE_GAP (64 * 1024)
#define MERGE_AHEAD 64
#define AHEAD_CHUNKS 4

/* The most bytes one GET merges: a quarter of the read-ahead budget, at
 * most 4 MiB, and an eighth of the read cache (what it reads must stay
 * cached until the reads come); 0 when merging is off. */
static uint64_t merge_max(const st_log_t *log)
{
    uint64_t m = log->cfg.read_ahead_bytes / 4;
    if (m > 4u << 20)
        m = 4u << 20;
    if (m > log->cfg.read_cache_bytes / 8)
        m = log->cfg.read_cache_bytes / 8;
    return m;
}

static void op_resume(read_op_t *op)
{
    if (op->kind == READ_BATCHES)
        read_gather(op);
    else if (op->kind == READ_MAX)
        max_resume(op);
    else
        time_resume(op);
}

static void ra_resume(st_log_t *log);

static void load_free(st_load_t *ld)
{
    st_log_t *log = ld->log;
    log->ra_inflight -= ld->ahead;
    bool freed = ld->ahead > 0;
    st_log__obj_unref(ld->obj);
    st_buf_unref(ld->into);
    free(ld->chunks);
    free(ld);
    if (freed)
        ra_resume(log);
    st_log__op_done(log);
}

static bool load_push(st_load_t *ld, st_chunk_t *c)
{
    if (ld->n == ld->cap) {
        size_t cap = ld->cap ? ld->cap * 2 : 4;
        st_chunk_t **n = realloc(ld->chunks, cap * sizeof(*n));
        if (!n)
            return false;
        ld->chunks = n;
        ld->cap = cap;
    }
    c->load = ld;
    c->load_idx = ld->n;
    ld->chunks[ld->n++] = c;
    return true;
}

static void load_done(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    st_load_t *ld = arg;
    st_log_t *log = ld->log;
    /* Each chunk's outcome; a chunk freed meanwhile has none (the reads
     * waiting for it look again). */
    st_err_t *errs = calloc(ld->n ? ld->n : 1, sizeof(*errs));
    if (!errs)
        err = err == ST_OK ? ST_ERR_NOMEM : err;
    if (err == ST_OK && len != ld->len)
        err = ST_ERR_CORRUPT;
    for (size_t i = 0; i < ld->n; i++) {
        st_chunk_t *c = ld->chunks[i];
        if (!c)
            continue;
        c->load = NULL;
        if (err != ST_OK)
            continue;
        if (c->obj != ld->obj || c->pos < ld->pos || c->pos + c->len > ld->pos + ld->len) {
            ld->chunks[i] = NULL; /* not in the range read (never expected): looked at again */
            continue;
        }
        const uint8_t *p = data + (c->pos - ld->pos);
        if (kp_crc32c(0, p, c->len) != c->crc) {
            errs[i] = ST_ERR_CORRUPT;
        } else if (ld->into && p == ld->into->data && c->len == ld->len) {
            cache_add(log, c, ld->into); /* read in place: no copy */
            ld->into = NULL;
        } else {
            st_buf_t *b = st_buf_new(c->len);
            if (!b) {
                errs[i] = ST_ERR_NOMEM;
                continue;
            }
            memcpy(b->data, p, c->len);
            cache_add(log, c, b);
        }
    }
    log->stats.object_gets++;
    for (read_op_t *op = ld->waiting, *next; op; op = next) {
        next = op->next;
        op->next = NULL;
        st_err_t e = !ld->chunks[op->wait_idx] ? ST_OK /* gone: look again */
                     : err != ST_OK            ? err
                                               : errs[op->wait_idx];
        if (e != ST_OK) {
            op->err = e;
            if (st_log__defer(log, op_finish, op) != 0)
                op_finish(op);
        } else {
            op_resume(op);
        }
    }
    evict_cache(log); /* the chunks were readable for the waiting reads first */
    free(errs);
    load_free(ld);
}

/* Whether @d could join a GET of its object started for a chunk of @t: in
 * the store, no GET of its own started, and among the next MERGE_AHEAD
 * chunks of its partition's sequential reader -- or, for a partition of @t
 * not read yet, among its first AHEAD_CHUNKS (a consumer of a topic reads
 * all its partitions; one that reads a single partition of many should not
 * pull in more than that of the others). */
static bool merge_wanted(const st_chunk_t *d, const st_topic_t *t)
{
    const st_part_t *q = d->part;
    if (d->where != ST_CHUNK_STORE || q->topic->deleting || d->base >= q->hw ||
        d->last < q->log_start)
        return false;
    if (d->load && (d->load->issued || d->load->n != 1))
        return false;
    if (q->ra_pos < 0 && q->topic != t)
        return false;
    int64_t at = q->ra_pos >= 0 ? q->ra_pos : q->log_start;
    if (d->last < at)
        return false;
    return chunk_find(q, d->base) - chunk_find(q, at) <
           (q->ra_pos >= 0 ? MERGE_AHEAD : AHEAD_CHUNKS);
}

static int cand_cmp(const void *a, const void *b)
{
    const st_chunk_t *x = *(st_chunk_t *const *)a, *y = *(st_chunk_t *const *)b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Move @d (its own load not started yet, or none) into @ld, with the reads
 * waiting for it. */
static bool load_take(st_load_t *ld, st_chunk_t *d)
{
    st_load_t *old = d->load;
    if (!load_push(ld, d)) {
        d->load = old;
        return false;
    }
    if (old) {
        old->chunks[0] = NULL;
        for (read_op_t *op = old->waiting, *next; op; op = next) {
            next = op->next;
            op->wait_idx = d->load_idx;
            op->next = ld->waiting;
            ld->waiting = op;
        }
        old->waiting = NULL;
    }
    ld->log->stats.merged_chunks++;
    return true;
}

/* Grow @ld (one chunk, not started) over the neighbouring chunks of its
 * object that sequential readers would read soon (merge_wanted): one GET
 * for what would be many when a flush object holds many partitions' chunks.
 * The object's own list of chunks names them. */
static void load_merge(st_load_t *ld)
{
    st_log_t *log = ld->log;
    uint64_t max = merge_max(log);
    st_chunk_t *c = ld->chunks[0];
    if (!c || max <= ld->len || c->part->topic->deleting)
        return;
    st_chunk_t **cand = malloc(MERGE_MAX_CHUNKS * sizeof(*cand));
    if (!cand)
        return;
    size_t n = 0;
    const st_link_t *h = &ld->obj->chunks;
    for (const st_link_t *l = h->next; l != h && n < MERGE_MAX_CHUNKS; l = l->next) {
        st_chunk_t *d = st_container_of(l, st_chunk_t, olink);
        /* Only chunks within reach of a GET of at most max bytes holding c. */
        if (d != c && d->pos + d->len + max > c->pos + c->len && d->pos < c->pos + max &&
            merge_wanted(d, c->part->topic))
            cand[n++] = d;
    }
    qsort(cand, n, sizeof(*cand), cand_cmp);
    size_t at = 0;
    while (at < n && cand[at]->pos < c->pos)
        at++;
    uint64_t lo = ld->pos, hi = ld->pos + ld->len;
    for (size_t i = at < n && cand[at] == c ? at + 1 : at; i < n; i++) { /* after c */
        st_chunk_t *d = cand[i];
        if (d->pos < hi || d->pos - hi > MERGE_GAP || d->pos + d->len - lo > max)
            break;
        if (!load_take(ld, d))
            break;
        hi = d->pos + d->len;
    }
    for (size_t i = at; i-- > 0;) { /* before c */
        st_chunk_t *d = cand[i];
        if (d->pos + d->len > lo || lo - (d->pos + d->len) > MERGE_GAP || hi - d->pos > max)
            break;
        if (!load_take(ld, d))
            break;
        lo = d->pos;
    }
    if (ld->ahead)
        log->ra_inflight += (hi - lo) - ld->ahead;
    ld->ahead = ld->ahead ? (size_t)(hi - lo) : 0;
    ld->pos = lo;
    ld->len = hi - lo;
    free(cand);
}

/* Start the GET of a load made by load_start, on the loop after the reads
 * of the same round (a Fetch asks for many partitions at once) made theirs:
 * merged, they become one. */
static void load_issue(void *arg)
{
    st_load_t *ld = arg;
    st_log_t *log = ld->log;
    if (!ld->chunks[0] && !ld->waiting) { /* taken by another load, or freed */
        load_free(ld);
        return;
    }
    if (!ld->chunks[0]) { /* freed: its reads look again */
        for (read_op_t *op = ld->waiting, *next; op; op = next) {
            next = op->next;
            op->next = NULL;
            op_resume(op);
        }
        load_free(ld);
        return;
    }
    load_merge(ld);
    ld->issued = true;
    if (ld->ahead)
        log->stats.read_ahead_gets++;
    /* A load of exactly one chunk (one partition's reader going through
     * objects of its own) is read straight into the chunk's cache buffer:
     * neither the copy nor the fresh buffer's page faults on the loop.
     * Loads of several chunks keep one buffer per chunk, so that the
     * cache's budget counts what it holds, and copy. */
    int rc;
    if (ld->n == 1 && ld->chunks[0]->pos == ld->pos && ld->chunks[0]->len == ld->len &&
        (ld->into = st_buf_new_at(ld->len, ld->pos)) != NULL)
        rc = st_objstore_get_into(log->os, ld->obj->key, ld->pos, ld->len, ld->into->data,
                                  load_done, ld);
    else
        rc = st_objstore_get_range(log->os, ld->obj->key, ld->pos, ld->len, load_done, ld);
    if (rc != 0)
        load_done(ST_ERR_IO, NULL, 0, ld);
}

/* Read @c from the store for @op (NULL: ahead of any read); the reads
 * waiting for a chunk resume when its GET answers. */
static void load_start(st_log_t *log, st_chunk_t *c, read_op_t *op)
{
    if (op)
        op->stored = true;
    if (c->load) { /* a GET for this chunk is in flight or about to be: wait for it */
        if (op) {
            op->wait_idx = c->load_idx;
            op->next = c->load->waiting;
            c->load->waiting = op;
        }
        return;
    }
    st_load_t *ld = calloc(1, sizeof(*ld));
    if (!ld || !load_push(ld, c)) {
        free(ld);
        if (op) {
            op->err = ST_ERR_NOMEM;
            op_finish(op);
        }
        return;
    }
    ld->log = log;
    ld->obj = c->obj;
    c->obj->refs++;
    ld->pos = c->pos;
    ld->len = c->len;
    if (op) {
        op->wait_idx = 0;
        ld->waiting = op;
    } else {
        ld->ahead = c->len;
        log->ra_inflight += c->len;
    }
    log->async_ops++;
    if (log->cfg.read_ahead_bytes == 0 || st_log__defer(log, load_issue, ld) != 0)
        load_issue(ld);
}

/* After a sequential read of @part from the store, start the GETs of the
 * chunks after it, up to @want bytes ahead and AHEAD_CHUNKS chunks, within
 * the read-ahead budget.  A partition stopped by the budget waits in
 * log->ra_blocked and goes on when a read-ahead GET ends (ra_resume), not
 * only at its reader's next read: the store stays busy while the client
 * works through the last answer. */
static void read_ahead(st_part_t *part, size_t want)
{
    st_log_t *log = part->log;
    if (log->cfg.read_ahead_bytes == 0 || log->closing || part->topic->deleting || part->ra_pos < 0)
        return;
    part->ra_want = want;
    size_t ahead = 0;
    size_t i = chunk_find(part, part->ra_pos);
    for (size_t k = 0; k < AHEAD_CHUNKS && i + k < part->nchunks && ahead < want; k++) {
        st_chunk_t *d = part->chunks[i + k];
        if (d->base >= part->hw)
            break;
        if (d->where == ST_CHUNK_STORE && !d->load) {
            if (log->ra_inflight + d->len > log->cfg.read_ahead_bytes) {
                /* Only a GET in flight frees budget: with none, this chunk never fits. */
                if (log->ra_inflight > 0 && st_list_empty(&part->ra_link))
                    st_list_push(&log->ra_blocked, &part->ra_link);
                break;
            }
            load_start(log, d, NULL);
        }
        /* Of the chunk the reader is in, only what it has still to read
         * (by offsets): a chunk larger than @want must not hold back the
         * GET of the next one until the reader is through it. */
        if (k == 0 && part->ra_pos > d->base)
            ahead += (size_t)((double)d->len * (double)(d->last - part->ra_pos + 1) /
                              (double)(d->last - d->base + 1));
        else
            ahead += d->len;
    }
}

/* Budget was freed: the partitions stopped by it read ahead again, oldest
 * first, until one is stopped again. */
static void ra_resume(st_log_t *log)
{
    while (!st_list_empty(&log->ra_blocked) && log->ra_inflight < log->cfg.read_ahead_bytes) {
        st_part_t *p = st_container_of(log->ra_blocked.next, st_part_t, ra_link);
        st_list_del(&p->ra_link);
        read_ahead(p, p->ra_want);
        if (!st_list_empty(&p->ra_link))
            break;
    }
}

static read_op_t *op_new(st_part_t *part, read_kind_t kind, void *arg)
{
    read_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    op->part = part;
    op->arg = arg;
    op->dropped = part->dropped;
    part->log->async_ops++;
    return op;
}

int st_part_read(st_part_t *part, int64_t offset, size_t max_bytes, st_read_cb cb, void *arg)
{
    read_op_t *op = op_new(part, READ_BATCHES, arg);
    if (!op)
        return -1;
    op->offset = offset;
    op->max_bytes = max_bytes;
    op->cb = cb;
    op->stored = part->ra_pos == offset; /* sequential: read ahead when done */
    part->ra_pos = offset;
    read_gather(op);
    return 0;
}

/* ---------------------------------------------------------------- by time */

/* Find the first record with timestamp >= op->offset in the chunk @c (in
 * memory) at or above the log start and below the high watermark; true when
 * found. */
static bool time_in_chunk(read_op_t *op, const st_chunk_t *c)
{
    const st_part_t *part = op->part;
    const uint8_t *data = c->buf->data + c->buf_off;
    kp_batch_cursor_t cur;
    kp_batch_cursor_init(&cur, data, c->len, c->len);
    const uint8_t *b;
    size_t size;
    bool found = false;
    while (!found && kp_batch_cursor_next(&cur, &b, &size)) {
        int64_t base = (int64_t)kp_be64(b + KP_BATCH_OFF_BASE_OFFSET);
        int64_t last = base + (int32_t)kp_be32(b + KP_BATCH_OFF_LAST_OFFSET_DELTA);
        if (base >= part->hw)
            break;
        if (last < part->log_start || (int64_t)kp_be64(b + KP_BATCH_OFF_MAX_TIMESTAMP) < op->offset)
            continue;
        kp_zout_t z;
        kp_zout_init_alloc(&z, KP_BATCH_DEFAULT_MAX_DECOMPRESSED, NULL, NULL);
        kp_record_iter_t it;
        kp_record_t rec;
        bool decoded = false;
        if (kp_record_iter_init(&it, b, size, 0, &z) == KP_BATCH_OK) {
            while (kp_record_iter_next(&it, &rec)) {
                if (rec.offset < part->log_start)
                    continue;
                if (rec.offset >= part->hw)
                    break;
                if (rec.timestamp >= op->offset) {
                    op->found_offset = rec.offset;
                    op->found_ts = rec.timestamp;
                    found = true;
                    break;
                }
            }
            decoded = found || it.err == KP_BATCH_OK;
        }
        if (!decoded) { /* undecodable records: answer at batch granularity */
            op->found_offset = base < part->log_start ? part->log_start : base;
            op->found_ts = (int64_t)kp_be64(b + KP_BATCH_OFF_MAX_TIMESTAMP);
            found = true;
        }
        kp_zout_deinit(&z);
    }
    return found;
}

static void time_resume(read_op_t *op)
{
    st_part_t *part = op->part;
    st_log_t *log = part->log;
    op->found_offset = -1;
    op->found_ts = -1;
    chunk_rebase(op);
    if (part->topic->deleting) {
        op->err = ST_ERR_NOT_FOUND;
    } else {
        if (!op->started) {
            /* run_max_ts never decreases: the first chunk that reaches the
             * target holds the first record that does, unless that record
             * is below the log start -- then later chunks are searched. */
            size_t lo = 0, hi = part->nchunks;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (part->chunks[mid]->run_max_ts < op->offset)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            size_t first = chunk_find(part, part->log_start);
            op->chunk = lo > first ? lo : first;
            op->started = true;
        }
        for (; op->chunk < part->nchunks; op->chunk++) {
            st_chunk_t *c = part->chunks[op->chunk];
            if (c->base >= part->hw)
                break;
            if (c->max_ts < op->offset || c->last < part->log_start)
                continue;
            if (c->where == ST_CHUNK_STORE) {
                load_start(log, c, op);
                return;
            }
            if (time_in_chunk(op, c))
                break;
        }
    }
    if (st_log__defer(log, op_finish, op) != 0)
        op_finish(op);
}

int st_part_offset_for_time(st_part_t *part, int64_t ts, st_offset_cb cb, void *arg)
{
    read_op_t *op = op_new(part, READ_TIME, arg);
    if (!op)
        return -1;
    op->offset = ts;
    op->ocb = cb;
    time_resume(op);
    return 0;
}

/* ---------------------------------------------------------------- max timestamp */

/* The largest timestamp of a record at or above the log start and below
 * the high watermark in the in-memory chunk @c; INT64_MIN when none. */
static int64_t chunk_max_ts(const st_part_t *part, const st_chunk_t *c)
{
    int64_t best = INT64_MIN;
    const uint8_t *data = c->buf->data + c->buf_off;
    kp_batch_cursor_t cur;
    kp_batch_cursor_init(&cur, data, c->len, c->len);
    const uint8_t *b;
    size_t size;
    while (kp_batch_cursor_next(&cur, &b, &size)) {
        int64_t base = (int64_t)kp_be64(b + KP_BATCH_OFF_BASE_OFFSET);
        int64_t last = base + (int32_t)kp_be32(b + KP_BATCH_OFF_LAST_OFFSET_DELTA);
        int64_t max_ts = (int64_t)kp_be64(b + KP_BATCH_OFF_MAX_TIMESTAMP);
        if (base >= part->hw)
            break;
        if (last < part->log_start || max_ts <= best)
            continue;
        if (base >= part->log_start && last < part->hw) {
            best = max_ts; /* the whole batch counts */
            continue;
        }
        kp_zout_t z;
        kp_zout_init_alloc(&z, KP_BATCH_DEFAULT_MAX_DECOMPRESSED, NULL, NULL);
        kp_record_iter_t it;
        kp_record_t rec;
        if (kp_record_iter_init(&it, b, size, 0, &z) == KP_BATCH_OK) {
            while (kp_record_iter_next(&it, &rec))
                if (rec.offset >= part->log_start && rec.offset < part->hw && rec.timestamp > best)
                    best = rec.timestamp;
        }
        if (it.err != KP_BATCH_OK && max_ts > best)
            best = max_ts; /* undecodable: the batch's own word */
        kp_zout_deinit(&z);
    }
    return best;
}

/* READ_MAX: every chunk but the one the log start cuts counts with its max
 * timestamp; that one (op->chunk) is read when it could hold the maximum.
 * Then the first record reaching the maximum is found as by time. */
static void max_resume(read_op_t *op)
{
    st_part_t *part = op->part;
    st_log_t *log = part->log;
    chunk_rebase(op);
    if (part->topic->deleting) {
        op->err = ST_ERR_NOT_FOUND;
    } else if (op->chunk < part->nchunks) {
        st_chunk_t *c = part->chunks[op->chunk];
        if (c->where == ST_CHUNK_STORE) {
            load_start(log, c, op);
            return;
        }
        int64_t m = chunk_max_ts(part, c);
        if (m > op->offset)
            op->offset = m;
        op->kind = READ_TIME;
        op->chunk = 0;
        time_resume(op);
        return;
    }
    if (op->offset == INT64_MIN) {
        op->found_offset = op->found_ts = -1;
        op->kind = READ_TIME; /* answered as "none" */
        if (st_log__defer(log, op_finish, op) != 0)
            op_finish(op);
        return;
    }
    op->kind = READ_TIME;
    time_resume(op);
}

int st_part_max_timestamp(st_part_t *part, st_offset_cb cb, void *arg)
{
    read_op_t *op = op_new(part, READ_MAX, arg);
    if (!op)
        return -1;
    op->ocb = cb;
    op->offset = INT64_MIN; /* the maximum so far */
    size_t first = chunk_find(part, part->log_start);
    op->chunk = part->nchunks; /* no chunk to read unless the first one needs it */
    for (size_t i = first; i < part->nchunks && part->chunks[i]->base < part->hw; i++) {
        const st_chunk_t *c = part->chunks[i];
        bool cut = c->base < part->log_start || c->last >= part->hw;
        if (!cut && c->max_ts > op->offset)
            op->offset = c->max_ts;
    }
    /* Chunks the log start or the high watermark cut are read when their
     * max timestamp could win (ties included: an earlier record wins). */
    for (size_t i = first; i < part->nchunks && part->chunks[i]->base < part->hw; i++) {
        const st_chunk_t *c = part->chunks[i];
        bool cut = c->base < part->log_start || c->last >= part->hw;
        if (cut && c->max_ts >= op->offset) {
            op->chunk = i;
            break;
        }
    }
    max_resume(op);
    return 0;
}
