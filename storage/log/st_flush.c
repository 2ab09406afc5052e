/*
 * st_flush.c: the write path -- provisional offsets, adaptive group-commit
 * flushing of every partition's pending batches into one object, the
 * manifest commit in flush order, and the failure rule (DESIGN §3.6).
 */
#include "st_log_int.h"

#include <inttypes.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kp_batch.h"
#include "kp_crc32c.h"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A manifest entry is 64 bytes: 8192 partitions keep one manifest at
 * 512 KiB, well inside etcd's 1.5 MiB request limit. */
#define FLUSH_MAX_PARTS 8192

static void try_commit(st_log_t *log);

/* ---------------------------------------------------------------- append */

typedef struct dup_answer {
    st_log_t *log;
    st_append_cb cb;
    void *arg;
    int64_t base;
} dup_answer_t;

static void dup_answer_cb(void *arg)
{
    dup_answer_t *d = arg;
    st_log_t *log = d->log;
    d->cb(ST_OK, d->base, d->arg);
    free(d);
    st_log__op_done(log);
}

/* Kafka's DefaultRecordBatch.incrementSequence: wraps at INT32_MAX. */
static int32_t seq_add(int32_t seq, int32_t inc)
{
    return seq > INT32_MAX - inc ? inc - (INT32_MAX - seq) - 1 : seq + inc;
}

/* An idempotent batch: check it against the producer state.  0: append
 * it; 1: answered as a retry; else the st_err_t refusing it. */
static int check_producer(st_part_t *part, const uint8_t *batch, int32_t last_delta, st_pend_t *b,
                          int64_t *pid, st_append_cb cb, void *arg)
{
    *pid = (int64_t)kp_be64(batch + KP_BATCH_OFF_PRODUCER_ID);
    b->epoch = (int16_t)kp_be16(batch + KP_BATCH_OFF_PRODUCER_EPOCH);
    b->first_seq = (int32_t)kp_be32(batch + KP_BATCH_OFF_BASE_SEQUENCE);
    if (*pid < 0 || b->epoch < 0 || b->first_seq < 0)
        return 0; /* not idempotent */
    b->last_seq = seq_add(b->first_seq, last_delta);
    st_pend_t *orig = NULL;
    int64_t orig_base = -1;
    st_err_t e = st_log__prod_check(part, *pid, b, &orig, &orig_base);
    if (e == ST_OK)
        return 0;
    if (e != ST_ERR_EXISTS)
        return (int)e;
    if (orig) { /* still in flight: answered with its outcome */
        st_dup_t *d = malloc(sizeof(*d));
        if (!d)
            return ST_ERR_NOMEM;
        d->cb = cb;
        d->arg = arg;
        d->next = orig->dups;
        orig->dups = d;
        return 1;
    }
    dup_answer_t *d = malloc(sizeof(*d));
    if (!d)
        return ST_ERR_NOMEM;
    *d = (dup_answer_t){part->log, cb, arg, orig_base};
    if (st_log__defer(part->log, dup_answer_cb, d) != 0) {
        free(d);
        return ST_ERR_NOMEM;
    }
    part->log->async_ops++;
    return 1;
}

/* Append the batch @batch of @len bytes: in @owner's bytes, which are kept
 * (a reference) and patched in place; or copied when @owner is NULL. */
static int append(st_part_t *part, uint8_t *batch, st_buf_t *owner, size_t len, st_append_cb cb,
                  void *arg)
{
    st_log_t *log = part->log;
    if (!log->open || log->closing || part->topic->deleting || len < KP_BATCH_HEADER_SIZE)
        return -1;
    st_pend_t *b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    int32_t last_delta = (int32_t)kp_be32(batch + KP_BATCH_OFF_LAST_OFFSET_DELTA);
    if (last_delta < 0)
        last_delta = 0;
    int64_t pid = -1;
    int rc = check_producer(part, batch, last_delta, b, &pid, cb, arg);
    if (rc != 0) {
        free(b);
        return rc == 1 ? 0 : rc;
    }
    uint8_t *copy = batch;
    if (owner) {
        b->owner = st_buf_ref(owner);
    } else {
        copy = malloc(len);
        if (!copy) {
            free(b);
            return -1;
        }
        memcpy(copy, batch, len);
    }
    /* Offsets are provisional until the flush commits; the CRC does not
     * cover base offset and leader epoch, so patching keeps it valid. */
    kp_batch_set_base_offset(copy, part->leo);
    kp_batch_set_leader_epoch(copy, part->epoch);
    b->next = NULL;
    b->data = copy;
    b->len = len;
    b->base = part->leo;
    b->last = part->leo + last_delta;
    b->max_ts = (int64_t)kp_be64(copy + KP_BATCH_OFF_MAX_TIMESTAMP);
    b->cb = cb;
    b->arg = arg;
    if (pid >= 0)
        st_log__prod_link(part, pid, b);
    part->leo = b->last + 1;
    if (part->pend_tail)
        part->pend_tail->next = b;
    else
        part->pend_head = b;
    part->pend_tail = b;
    part->pend_bytes += len;
    log->pend_bytes += len;
    if (!part->dirty) {
        part->dirty = true;
        st_list_push(&log->dirty, &part->dirty_link);
    }
    st_log__kick(log);
    return 0;
}

int st_part_append(st_part_t *part, const uint8_t *batch, size_t len, st_append_cb cb, void *arg)
{
    return append(part, (uint8_t *)batch, NULL, len, cb, arg); /* not written: copied */
}

int st_part_append_buf(st_part_t *part, st_buf_t *buf, size_t off, size_t len, st_append_cb cb,
                       void *arg)
{
    if (off > buf->len || len > buf->len - off)
        return -1;
    return append(part, buf->data + off, buf, len, cb, arg);
}

/* Call every batch's callback (and its retries') with @err and free the
 * batches, after unlinking them from their producers' state (which returns
 * to what was committed).  The state (offsets, lists) must already be
 * consistent: callbacks may re-enter. */
static void fail_batches(st_pend_t *b, st_err_t err)
{
    for (st_pend_t *u = b; u; u = u->next)
        st_log__prod_unlink(u);
    while (b) {
        st_pend_t *next = b->next;
        st_log__pend_answer(b, err, -1);
        st_pend_release_data(b);
        free(b);
        b = next;
    }
}

/* Detach @part's pending batches, rewinding its log end offset. */
static st_pend_t *detach_pending(st_part_t *part)
{
    st_pend_t *b = part->pend_head;
    if (b && b->base < part->leo)
        part->leo = b->base;
    part->log->pend_bytes -= part->pend_bytes;
    part->pend_head = part->pend_tail = NULL;
    part->pend_bytes = 0;
    if (part->dirty) {
        part->dirty = false;
        st_list_del(&part->dirty_link);
    }
    return b;
}

void st_log__fail_pending(st_part_t *part, st_err_t err)
{
    st_log_t *log = part->log;
    fail_batches(detach_pending(part), err);
    st_log__space_check(log);
}

/* ---------------------------------------------------------------- flush */

void st_log__kick(st_log_t *log)
{
    if (st_list_empty(&log->dirty) || log->inflight >= log->cfg.flush_max_inflight)
        return;
    /* Adaptive group commit: flush at once when no object is uploading
     * (earlier flushes may still be committing: the next upload overlaps
     * their commit, commits stay in flush order); while uploads are in
     * flight, accumulate until one completes (which kicks again) or
     * flush.max.bytes is pending. */
    if (log->uploading == 0 || log->closing || log->pend_bytes >= log->cfg.flush_max_bytes)
        event_active(log->kick, EV_TIMEOUT, 0); /* deferred: batches of this turn join */
}

static void flush_free(st_flush_t *f)
{
    st_log_t *log = f->log;
    st_list_del(&f->link);
    free(f->parts);
    free(f->prods);
    if (f->obj)
        log->flight_bytes -= f->obj->len;
    st_buf_unref(f->obj);
    free(f);
    st_log__space_check(log);
    st_log__op_done(log);
}

size_t st_log_buffered(const st_log_t *log)
{
    return log->pend_bytes + log->flight_bytes;
}

bool st_log_buffer_full(const st_log_t *log)
{
    return log->cfg.write_buffer_bytes > 0 && st_log_buffered(log) >= log->cfg.write_buffer_bytes;
}

void st_log_wait_space(st_log_t *log, st_waiter_t *w)
{
    w->part = NULL;
    bool first = st_list_empty(&log->space_waiters);
    st_list_push(&log->space_waiters, (st_link_t *)w);
    if (!first)
        return; /* the memory went back when the first began to wait */
    /* Produce stops for memory: what the buffer pool keeps for later goes
     * back to the kernel first, and so does the free memory the heap keeps
     * (up to the trim threshold the gateway raises, gw_main.c, and the
     * free pages between live blocks). */
    st_buf_pool_drain();
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void st_log_unwait_space(st_waiter_t *w)
{
    st_link_t *l = (st_link_t *)w;
    if (l->next && l->next != l)
        st_list_del(l);
    l->next = l->prev = NULL;
}

static void obj_key(const st_log_t *log, int64_t seq, char *key, size_t cap)
{
    snprintf(key, cap, "objects/%" PRId32 "/%010" PRId64 "-%012" PRId64 ".nho", log->cfg.node_id,
             log->incarnation, seq);
}

int64_t st_log__take_seq(st_log_t *log, char *key, size_t cap)
{
    int64_t seq = log->next_seq++;
    obj_key(log, seq, key, cap);
    return seq;
}

/* Called as each flush's put is answered: at a light load the next flush
 * comes milliseconds later and finds its file made; under load puts follow
 * each other closely and go the usual way when it is not (yet) ready.  A
 * closing log prepares nothing (the store would only unlink it again). */
void st_log__prepare_next(st_log_t *log)
{
    if (log->closing)
        return;
    char key[96];
    obj_key(log, log->next_seq, key, sizeof key);
    st_objstore_prepare(log->os, key);
}

void st_log__space_check(st_log_t *log)
{
    /* Wake every waiter at once: each re-checks and may wait again. */
    while (!st_log_buffer_full(log) && !st_list_empty(&log->space_waiters)) {
        st_waiter_t *w = (st_waiter_t *)log->space_waiters.next;
        st_log_unwait_space(w);
        w->fn(w, w->arg);
    }
}

/* Move one dirty partition's pending batches into @fp, writing the chunk. */
static void take_partition(kp_writer_t *w, st_fpart_t *fp, st_part_t *part)
{
    fp->part = part;
    fp->batches = part->pend_head;
    fp->epoch = part->epoch;
    st_chunk_desc_t *d = &fp->desc;
    d->topic_id = part->topic->id;
    d->partition = part->index;
    d->base_offset = part->pend_head->base;
    d->last_offset = part->pend_tail->last;
    d->max_timestamp = INT64_MIN;
    d->pos = w->len;
    /* The chunk CRC without a second pass over the bytes: each batch was
     * validated on append, so its CRC field is the CRC of everything from
     * its attributes on; only the 21 bytes before (with the offset and
     * epoch set here) are read again. */
    uint32_t crc = 0;
    for (st_pend_t *b = part->pend_head; b; b = b->next) {
        size_t at = w->len;
        kp_write_raw(w, b->data, b->len);
        if (!w->err) {
            crc = kp_crc32c(crc, w->buf + at, KP_BATCH_OFF_ATTRIBUTES);
            crc = kp_crc32c_combine(crc, kp_be32(b->data + KP_BATCH_OFF_CRC),
                                    b->len - KP_BATCH_OFF_ATTRIBUTES);
        }
        st_pend_release_data(b);
        d->batches++;
        if (b->max_ts > d->max_timestamp)
            d->max_timestamp = b->max_ts;
    }
    d->len = (uint32_t)(w->len - d->pos);
    d->crc = w->err ? 0 : crc;
    part->log->pend_bytes -= part->pend_bytes;
    part->pend_head = part->pend_tail = NULL;
    part->pend_bytes = 0;
    part->dirty = false;
    st_list_del(&part->dirty_link);
}

_Static_assert(ST_OBJ_ALIGN == ST_OBJ_GET_ALIGN, "flush objects come from st_buf_new_at(n, 0)");

static void put_done(st_err_t err, void *arg);
static void apply_flush(st_log_t *log, st_flush_t *f);

/* Build one object from the dirty partitions (in arrival order). */
static st_flush_t *flush_build(st_log_t *log)
{
    size_t nparts = 0, bytes = ST_OBJ_HEADER_SIZE + 4 + ST_OBJ_TRAILER_SIZE;
    for (st_link_t *l = log->dirty.next; l != &log->dirty && nparts < FLUSH_MAX_PARTS;
         l = l->next, nparts++)
        bytes += st_container_of(l, st_part_t, dirty_link)->pend_bytes + ST_OBJ_ENTRY_SIZE;
    st_flush_t *f = calloc(1, sizeof(*f));
    st_fpart_t *fps = calloc(nparts, sizeof(*fps));
    st_chunk_desc_t *descs = calloc(nparts, sizeof(*descs));
    /* Aligned for the directory store's direct writes; from the pool of
     * large buffers, so that the pages of evicted objects are reused. */
    st_buf_t *obj = st_buf_new_at(bytes, 0);
    kp_writer_t w;
    kp_writer_init_over(&w, obj ? obj->data : NULL, bytes);
    if (!f || !fps || !descs || !obj)
        goto fail;
    f->log = log;
    f->seq = st_log__take_seq(log, f->key, sizeof f->key);
    st_obj_write_header(&w, &(st_obj_header_t){log->cfg.node_id, log->incarnation, f->seq});
    size_t prods_cap = 0;
    bool prods_ok = true;
    for (size_t i = 0; i < nparts; i++) {
        take_partition(&w, &fps[i], st_container_of(log->dirty.next, st_part_t, dirty_link));
        descs[i] = fps[i].desc;
        if (!st_log__prod_descs(fps[i].batches, (uint32_t)i, &f->prods, &f->nprods, &prods_cap))
            prods_ok = false;
    }
    st_obj_write_footer(&w, descs, nparts);
    free(descs);
    descs = NULL;
    f->parts = fps;
    f->nparts = nparts;
    if (w.err || !prods_ok) {
        f->state = ST_FLUSH_FAILED;
        f->err = ST_ERR_NOMEM;
        kp_writer_deinit(&w);
        st_buf_unref(obj);
        return f;
    }
    obj->len = w.len;
    kp_writer_deinit(&w);
    f->obj = obj;
    log->flight_bytes += obj->len;
    return f;
fail:
    free(f);
    free(fps);
    free(descs);
    kp_writer_deinit(&w);
    st_buf_unref(obj);
    return NULL;
}

/* Fail @from and every later flush, and everything pending (DESIGN §3.6):
 * the log end offsets return to where the failed data began. */
static void fail_from(st_log_t *log, st_flush_t *from, st_err_t err);

void st_log__fail_flush(st_log_t *log, st_flush_t *from, st_err_t err)
{
    fail_from(log, from, err);
}

void st_log_hold_commits(st_log_t *log, bool hold)
{
    log->hold_commits = hold;
    if (!hold)
        try_commit(log);
}

static void unwind_start(st_log_t *log, const char *mkey);

static void fail_from(st_log_t *log, st_flush_t *from, st_err_t err)
{
    st_pend_t *failed = NULL, **tailp = &failed;
    log->stats.flush_failures++;
    for (st_link_t *l = &from->link, *next; l != &log->flushes; l = next) {
        next = l->next;
        st_flush_t *f = st_container_of(l, st_flush_t, link);
        if (f->state == ST_FLUSH_AHEAD) {
            /* Its manifest is committed: deleted before anything else
             * commits, since the offsets it names are given out again. */
            log->ahead = NULL;
            unwind_start(log, f->mkey);
        }
        if (f->state == ST_FLUSH_FAILED && f->nparts == 0)
            continue;
        if (f->state != ST_FLUSH_FAILED) {
            f->state = ST_FLUSH_FAILED;
            log->inflight--;
        }
        f->err = err;
        for (size_t i = 0; i < f->nparts; i++) {
            st_pend_t *b = f->parts[i].batches;
            if (b && b->base < f->parts[i].part->leo)
                f->parts[i].part->leo = b->base;
            *tailp = b;
            while (*tailp)
                tailp = &(*tailp)->next;
            f->parts[i].batches = NULL;
        }
        f->nparts = 0;
    }
    while (!st_list_empty(&log->dirty)) {
        *tailp = detach_pending(st_container_of(log->dirty.next, st_part_t, dirty_link));
        while (*tailp)
            tailp = &(*tailp)->next;
    }
    /* Flushes whose upload already returned can go; the others are freed
     * when it does (their objects stay unreferenced: orphans for GC). */
    for (st_link_t *l = log->flushes.next, *next; l != &log->flushes; l = next) {
        next = l->next;
        st_flush_t *f = st_container_of(l, st_flush_t, link);
        if (f->state == ST_FLUSH_FAILED && f->upload_done)
            flush_free(f);
    }
    fail_batches(failed, err);
    st_log__space_check(log);
}

void st_log__flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    st_log_t *log = arg;
    while (!st_list_empty(&log->dirty) && log->inflight < log->cfg.flush_max_inflight) {
        st_flush_t *f = flush_build(log);
        if (!f) {
            fail_from(log, st_container_of(&log->flushes, st_flush_t, link), ST_ERR_NOMEM);
            return;
        }
        st_list_push(&log->flushes, &f->link);
        log->async_ops++;
        log->inflight++;
        if (f->state == ST_FLUSH_FAILED) {
            f->upload_done = true;
            log->inflight--;
            f->state = ST_FLUSH_UPLOADING;
            fail_from(log, f, f->err);
            return;
        }
        f->state = ST_FLUSH_UPLOADING;
        f->upload_start = mono_s();
        if (st_objstore_put(log->os, f->key, f->obj->data, f->obj->len, put_done, f) != 0) {
            f->upload_done = true;
            fail_from(log, f, ST_ERR_IO);
            return;
        }
        log->uploading++;
        /* One object at a time unless enough is pending to justify another
         * in parallel. */
        if (log->pend_bytes < log->cfg.flush_max_bytes)
            break;
    }
    if (log->cfg.commit_ahead)
        try_commit(log);
}

static void put_done(st_err_t err, void *arg)
{
    st_flush_t *f = arg;
    st_log_t *log = f->log;
    st_log__prepare_next(log);
    f->upload_done = true;
    f->upload_err = err;
    log->uploading--;
    if (f->state == ST_FLUSH_FAILED) {
        flush_free(f); /* abandoned earlier; its object is an orphan */
        return;
    }
    if (f->state == ST_FLUSH_COMMITTING) { /* committed ahead: commit_end goes on */
        st_log__kick(log);
        return;
    }
    if (f->state == ST_FLUSH_AHEAD) {
        if (err != ST_OK) {
            fail_from(log, f, err); /* and its manifest deleted */
            return;
        }
        log->ahead = NULL;
        apply_flush(log, f);
        try_commit(log);
        st_log__kick(log);
        return;
    }
    if (err != ST_OK) {
        fail_from(log, f, err);
        return;
    }
    f->state = ST_FLUSH_UPLOADED;
    try_commit(log);
    st_log__kick(log); /* what gathered during the upload goes up now */
}

/* ---------------------------------------------------------------- commit */

typedef struct commit {
    st_log_t *log;
    size_t n;
    unsigned tries;        /* attempts to resolve an unknown outcome */
    char key0[128];        /* the first manifest key of the transaction */
    char new_fence[32];    /* the fence value a resolution puts */
    st_flush_t *flushes[]; /* in flush order */
} commit_t;

/* Manifests of one commit transaction stay well inside etcd's 1.5 MiB
 * request limit once base64-encoded. */
#define COMMIT_MAX_MANIFEST_BYTES (768u << 10)

static void manifest_key(char *key, size_t cap, const st_log_t *log, int64_t seq)
{
    snprintf(key, cap, "%s/manifests/%" PRId32 "/%010" PRId64 "/%012" PRId64, ST_KEY_ROOT,
             log->cfg.node_id, log->incarnation, seq);
}

static void commit_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg);

/* Does this node still lead @fp's partition at the epoch the flush was
 * built with? */
static bool still_leads(const st_log_t *log, const st_fpart_t *fp)
{
    const st_part_t *part = fp->part;
    return part->topic->deleting || /* answered by apply_flush */
           (log->cfg.owns(log->cfg.owns_arg, part->topic, part->index) && part->epoch == fp->epoch);
}

/* Leave out of uploaded flush @f the partitions this node no longer leads
 * (cfg.sync): their appends fail with ST_ERR_CONFLICT (the client asks the
 * new leader), their chunks stay in the object unreferenced.  1: @f is to
 * be committed; 0: none is left, @f is gone (its object an orphan for GC);
 * -1: out of memory, @f and every later flush failed. */
static int strip_lost(st_log_t *log, st_flush_t *f)
{
    size_t k = 0;
    uint32_t *to = NULL; /* each chunk's new index, UINT32_MAX: left out */
    st_pend_t *failed = NULL, **tailp = &failed;
    for (size_t i = 0; i < f->nparts; i++) {
        st_fpart_t *fp = &f->parts[i];
        if (still_leads(log, fp)) {
            if (to)
                to[i] = (uint32_t)k;
            f->parts[k++] = *fp;
            continue;
        }
        if (!to) {
            to = malloc(f->nparts * sizeof *to);
            if (!to) {
                fail_from(log, f, ST_ERR_NOMEM);
                return -1;
            }
            for (size_t j = 0; j < i; j++)
                to[j] = (uint32_t)j;
        }
        to[i] = UINT32_MAX;
        st_pend_t *b = fp->batches;
        /* Not led any more: its log end goes back (a takeover at a later
         * epoch sets it from the store instead). */
        if (b && b->base < fp->part->leo &&
            !log->cfg.owns(log->cfg.owns_arg, fp->part->topic, fp->part->index))
            fp->part->leo = b->base;
        *tailp = b;
        while (*tailp)
            tailp = &(*tailp)->next;
        fp->batches = NULL;
    }
    if (!to)
        return 1;
    log->stats.parts_left_out += f->nparts - k;
    size_t np = 0;
    for (size_t q = 0; q < f->nprods; q++) {
        uint32_t c = to[f->prods[q].chunk];
        if (c != UINT32_MAX) {
            f->prods[np] = f->prods[q];
            f->prods[np++].chunk = c;
        }
    }
    free(to);
    f->nprods = np;
    f->nparts = k;
    fail_batches(failed, ST_ERR_CONFLICT);
    st_log__space_check(log);
    if (k > 0)
        return 1;
    log->inflight--;
    flush_free(f);
    return 0;
}

/* May @f, still uploading, be committed ahead of its object?  Only in a
 * log so configured, and only when every partition in it is still led
 * here (strip_lost cannot leave partitions out of a flush whose upload is
 * in flight). */
static bool ahead_ok(const st_log_t *log, const st_flush_t *f)
{
    if (!log->cfg.commit_ahead)
        return false;
    for (size_t i = 0; log->cfg.sync && i < f->nparts; i++)
        if (!still_leads(log, &f->parts[i]))
            return false;
    return true;
}

/* Commit every uploaded flush at the head of the line (in flush order) in
 * one transaction: one compare on this node's fence, one put per flush;
 * the first flush still uploading ends the line, or joins it last when it
 * may go ahead (ahead_ok). */
static void try_commit(st_log_t *log)
{
    if (log->committing || log->hold_commits || log->ahead || log->unwinding)
        return;
    size_t n = 0;
    st_flush_t *batch[ST_META_MAX_TXN_OPS - 1];
    size_t bytes = 0;
    for (st_link_t *l = log->flushes.next, *next; l != &log->flushes; l = next) {
        next = l->next;
        st_flush_t *f = st_container_of(l, st_flush_t, link);
        if (f->state == ST_FLUSH_FAILED)
            continue;
        /* A flush still uploading goes ahead only as the last of a commit
         * (everything before it is then applied or in this commit). */
        bool ahead = f->state == ST_FLUSH_UPLOADING && ahead_ok(log, f);
        if (f->state == ST_FLUSH_UPLOADED && log->cfg.sync) {
            int kept = strip_lost(log, f);
            if (kept < 0)
                break;
            if (kept == 0)
                continue;
        }
        size_t mbytes =
            68 + ST_MANIFEST_ENTRY_SIZE * f->nparts + ST_MANIFEST_PRODUCER_SIZE * f->nprods;
        if ((f->state != ST_FLUSH_UPLOADED && !ahead) || n == ST_META_MAX_TXN_OPS - 1 ||
            (n > 0 && bytes + mbytes > COMMIT_MAX_MANIFEST_BYTES))
            break;
        bytes += mbytes;
        batch[n++] = f;
        f->ahead = ahead;
        if (ahead)
            break;
    }
    if (n == 0)
        return;
    commit_t *c = malloc(sizeof(*c) + n * sizeof(st_flush_t *));
    st_op_t *ops = calloc(n, sizeof(*ops));
    char(*keys)[128] = calloc(n, sizeof(*keys));
    kp_writer_t *vals = calloc(n, sizeof(*vals));
    int rc = (c && ops && keys && vals) ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        st_flush_t *f = batch[i];
        st_chunk_desc_t *descs = calloc(f->nparts ? f->nparts : 1, sizeof(*descs));
        for (size_t k = 0; descs && k < f->nparts; k++)
            descs[k] = f->parts[k].desc;
        st_manifest_t m = {.version = ST_MANIFEST_VERSION,
                           .node_id = log->cfg.node_id,
                           .incarnation = log->incarnation,
                           .seq = f->seq,
                           .object_key = kp_str(f->key),
                           .object_size = f->obj->len,
                           .chunks = descs,
                           .nchunks = f->nparts,
                           .prods = f->prods,
                           .nprods = f->nprods};
        kp_writer_init(&vals[i], 68 + ST_MANIFEST_ENTRY_SIZE * f->nparts +
                                     ST_MANIFEST_PRODUCER_SIZE * f->nprods);
        if (descs)
            st_manifest_encode(&vals[i], &m);
        free(descs);
        if (!descs || vals[i].err)
            rc = -1;
        manifest_key(keys[i], sizeof keys[i], log, f->seq);
        snprintf(f->mkey, sizeof f->mkey, "%s", keys[i]);
        ops[i] = (st_op_t){
            .type = ST_OP_PUT, .key = keys[i], .val = vals[i].buf, .val_len = vals[i].len};
        c->flushes[i] = f;
    }
    st_cmp_t fence = {.key = log->fence_key,
                      .target = ST_CMP_VALUE,
                      .op = ST_CMP_EQ,
                      .val = (const uint8_t *)log->fence_val,
                      .val_len = strlen(log->fence_val)};
    st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = ops, .nsuccess = n};
    if (rc == 0) {
        c->log = log;
        c->n = n;
        c->tries = 0;
        snprintf(c->key0, sizeof c->key0, "%s", keys[0]);
        rc = st_meta_txn(log->meta, &txn, commit_done, c);
    }
    for (size_t i = 0; vals && i < n; i++)
        kp_writer_deinit(&vals[i]);
    free(vals);
    free(keys);
    free(ops);
    if (rc != 0) {
        free(c);
        fail_from(log, batch[0], ST_ERR_NOMEM);
        return;
    }
    log->committing = true;
    for (size_t i = 0; i < n; i++)
        batch[i]->state = ST_FLUSH_COMMITTING;
}

/* The end of a commit: apply its flushes, or fail them and everything
 * after them; then commit what is next in line. */
static void commit_end(commit_t *c, st_err_t err)
{
    st_log_t *log = c->log;
    log->committing = false;
    if (err != ST_OK) {
        fail_from(log, c->flushes[0], err);
    } else {
        for (size_t i = 0; i < c->n; i++) {
            st_flush_t *f = c->flushes[i];
            if (f->ahead && (!f->upload_done || f->upload_err != ST_OK)) {
                /* The last of the commit: wait for its object, or delete
                 * its manifest again. */
                f->state = ST_FLUSH_AHEAD;
                log->ahead = f;
                if (f->upload_done)
                    fail_from(log, f, f->upload_err);
                break;
            }
            apply_flush(log, f);
        }
    }
    free(c);
    try_commit(log);
    st_log__kick(log);
}

static void resolve(commit_t *c);

static void resolve_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    resolve(arg);
}

/* Still in doubt: resolve again, backing off up to 2 s. */
static void resolve_later(commit_t *c)
{
    unsigned ms = c->tries < 4 ? 100u << c->tries : 2000u;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (event_base_once(c->log->base, -1, EV_TIMEOUT, resolve_retry, c, &tv) != 0)
        commit_end(c, ST_ERR_NOMEM);
}

/* Is @val (@len bytes) a fence value this incarnation's resolutions wrote
 * ("<incarnation>.<n>", n at most fence_gen)? */
static bool own_fence(const st_log_t *log, const uint8_t *val, size_t len)
{
    char want[32];
    int wl = snprintf(want, sizeof want, "%" PRId64 ".", log->incarnation);
    if (wl < 0 || len <= (size_t)wl || len - (size_t)wl > 10 || len >= sizeof log->fence_val ||
        memcmp(val, want, (size_t)wl) != 0)
        return false;
    uint64_t n = 0;
    for (size_t i = (size_t)wl; i < len; i++) {
        if (val[i] < '0' || val[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(val[i] - '0');
    }
    return n >= 1 && n <= log->fence_gen;
}

/* A resolution's compare failed: the fence is not the value this node
 * knew.  When it is one of this incarnation's own resolution values, an
 * earlier resolution applied and its answer was lost: nobody else wrote
 * since, so resolve again from that value.  Anything else is another
 * writer: fenced. */
static void resolve_fence_read(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                               void *arg)
{
    (void)more, (void)rev;
    commit_t *c = arg;
    st_log_t *log = c->log;
    if (err != ST_OK)
        return resolve_later(c);
    if (n == 1 && own_fence(log, kvs[0].val, kvs[0].val_len)) {
        memcpy(log->fence_val, kvs[0].val, kvs[0].val_len);
        log->fence_val[kvs[0].val_len] = '\0';
        return resolve(c);
    }
    commit_end(c, ST_ERR_CONFLICT);
}

/* The resolution transaction answered: when the fence moved on, the
 * commit in doubt can no longer apply, and whether its manifest is there
 * decides. */
static void resolve_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                         void *arg)
{
    (void)rev;
    commit_t *c = arg;
    st_log_t *log = c->log;
    if (err != ST_OK) /* still in doubt, and so is this resolution */
        return resolve_later(c);
    if (!ok) {
        if (st_meta_range(log->meta, log->fence_key, false, 0, resolve_fence_read, c) != 0)
            commit_end(c, ST_ERR_NOMEM);
        return;
    }
    snprintf(log->fence_val, sizeof log->fence_val, "%s", c->new_fence);
    bool committed = n == 2 && res[1].n == 1;
    commit_end(c, committed ? ST_OK : ST_ERR_TIMEOUT);
}

/* A commit's outcome is unknown (a remote store timed out after the
 * request left): in one transaction, move this node's fence to a new
 * value -- so that the commit, if it is still on its way, fails its
 * compare -- and read its first manifest key.  Linearizability makes the
 * answer final: the manifests are there (all of them: one transaction)
 * or they never will be. */
static void resolve(commit_t *c)
{
    st_log_t *log = c->log;
    c->tries++;
    snprintf(c->new_fence, sizeof c->new_fence, "%" PRId64 ".%u", log->incarnation,
             ++log->fence_gen);
    st_cmp_t fence = {.key = log->fence_key,
                      .target = ST_CMP_VALUE,
                      .op = ST_CMP_EQ,
                      .val = (const uint8_t *)log->fence_val,
                      .val_len = strlen(log->fence_val)};
    st_op_t ops[2] = {
        {.type = ST_OP_PUT,
         .key = log->fence_key,
         .val = (const uint8_t *)c->new_fence,
         .val_len = strlen(c->new_fence)},
        {.type = ST_OP_GET, .key = c->key0},
    };
    st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = ops, .nsuccess = 2};
    if (st_meta_txn(log->meta, &txn, resolve_done, c) != 0)
        commit_end(c, ST_ERR_NOMEM);
}

bool st_log__fence_moved(const st_log_t *log, const uint8_t *val, size_t len)
{
    char want[32];
    int wl = snprintf(want, sizeof want, "%" PRId64 ".m", log->incarnation);
    if (wl < 0 || len <= (size_t)wl || len >= sizeof log->fence_val ||
        memcmp(val, want, (size_t)wl) != 0)
        return false;
    for (size_t i = (size_t)wl; i < len; i++)
        if (val[i] < '0' || val[i] > '9')
            return false;
    return true;
}

/* Adopting a bumped fence outside a commit (st_log__refence). */
typedef struct refence {
    st_log_t *log;
    char val[32];
} refence_t;

static void idle_synced(void *arg)
{
    refence_t *x = arg;
    st_log_t *log = x->log;
    snprintf(log->fence_val, sizeof log->fence_val, "%s", x->val);
    log->stats.refences++;
    log->refencing = false;
    free(x);
    st_log__op_done(log);
}

static void idle_read(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    refence_t *x = arg;
    st_log_t *log = x->log;
    if (err == ST_OK && n == 1 && st_log__fence_moved(log, kvs[0].val, kvs[0].val_len)) {
        memcpy(x->val, kvs[0].val, kvs[0].val_len);
        x->val[kvs[0].val_len] = '\0';
        log->cfg.sync(log->cfg.owns_arg, kvs[0].mod_rev, idle_synced, x);
        return;
    }
    log->refencing = false;
    free(x);
    st_log__op_done(log);
}

void st_log__refence(st_log_t *log)
{
    if (!log->cfg.sync || log->refencing)
        return;
    refence_t *x = calloc(1, sizeof *x);
    if (!x)
        return;
    x->log = log;
    if (st_meta_range(log->meta, log->fence_key, false, 0, idle_read, x) != 0) {
        free(x);
        return;
    }
    log->refencing = true;
    log->async_ops++;
}

/* The leaders reflect the move that bumped the fence: adopt its value and
 * commit again what this node still leads. */
static void refence_synced(void *arg)
{
    commit_t *c = arg;
    st_log_t *log = c->log;
    snprintf(log->fence_val, sizeof log->fence_val, "%s", c->new_fence);
    log->stats.refences++;
    log->committing = false;
    for (size_t i = 0; i < c->n; i++)
        if (c->flushes[i]->state == ST_FLUSH_COMMITTING)
            c->flushes[i]->state = ST_FLUSH_UPLOADED;
    free(c);
    try_commit(log);
    st_log__kick(log);
}

static void refence_read(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                         void *arg)
{
    (void)more, (void)rev;
    commit_t *c = arg;
    st_log_t *log = c->log;
    if (err != ST_OK || n != 1 || !st_log__fence_moved(log, kvs[0].val, kvs[0].val_len)) {
        commit_end(c, err != ST_OK ? err : ST_ERR_CONFLICT);
        return;
    }
    memcpy(c->new_fence, kvs[0].val, kvs[0].val_len);
    c->new_fence[kvs[0].val_len] = '\0';
    log->cfg.sync(log->cfg.owns_arg, kvs[0].mod_rev, refence_synced, c);
}

static void commit_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg)
{
    (void)rev, (void)res, (void)n;
    commit_t *c = arg;
    if (err == ST_ERR_TIMEOUT) {
        c->log->stats.commits_in_doubt++;
        resolve(c);
        return;
    }
    /* The fence compare failed: a move (cfg.sync) or another incarnation. */
    if (err == ST_OK && !ok && c->log->cfg.sync &&
        st_meta_range(c->log->meta, c->log->fence_key, false, 0, refence_read, c) == 0)
        return;
    if (err == ST_OK && !ok)
        err = ST_ERR_CONFLICT; /* fenced: another incarnation took over */
    commit_end(c, err);
}

/* ---------------------------------------------------------------- unwind */

static void unwind_send(st_log_t *log);

static void unwind_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    unwind_send(arg);
}

static void unwind_end(st_log_t *log)
{
    log->unwinding = false;
    st_log__op_done(log);
    try_commit(log);
    st_log__kick(log);
}

static void unwind_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg)
{
    (void)rev, (void)res, (void)n;
    st_log_t *log = arg;
    if (err == ST_OK) {
        /* !ok: the fence moved, another incarnation took over; its
         * st_log_open deletes the manifest if the object is missing. */
        if (ok)
            log->stats.manifests_unwound++;
        return unwind_end(log);
    }
    if (log->closing)
        return unwind_end(log); /* left to the next st_log_open */
    /* Unreachable or in doubt: deleting again is harmless. */
    unsigned ms = log->unwind_tries < 4 ? 100u << log->unwind_tries : 2000u;
    log->unwind_tries++;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (event_base_once(log->base, -1, EV_TIMEOUT, unwind_retry, log, &tv) != 0)
        unwind_end(log);
}

static void unwind_send(st_log_t *log)
{
    st_cmp_t fence = {.key = log->fence_key,
                      .target = ST_CMP_VALUE,
                      .op = ST_CMP_EQ,
                      .val = (const uint8_t *)log->fence_val,
                      .val_len = strlen(log->fence_val)};
    st_op_t del = {.type = ST_OP_DEL, .key = log->unwind_key};
    st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = &del, .nsuccess = 1};
    if (st_meta_txn(log->meta, &txn, unwind_done, log) != 0)
        unwind_done(ST_ERR_NOMEM, false, 0, NULL, 0, log);
}

/* Delete the committed manifest @mkey of a flush whose object failed
 * (cfg.commit_ahead); commits wait until it is gone. */
static void unwind_start(st_log_t *log, const char *mkey)
{
    if (log->unwinding)
        return; /* one at most: nothing commits after a flush ahead */
    log->unwinding = true;
    log->unwind_tries = 0;
    snprintf(log->unwind_key, sizeof log->unwind_key, "%s", mkey);
    log->async_ops++;
    unwind_send(log);
}

/* A committed flush: index its chunks, keep them in the memory tail,
 * advance high watermarks, acknowledge, wake fetches. */
static void apply_flush(st_log_t *log, st_flush_t *f)
{
    st_obj_t *obj = st_log__obj_new(log, f->key, strlen(f->key), f->obj->len);
    st_chunk_desc_t *descs = calloc(f->nparts ? f->nparts : 1, sizeof(*descs));
    for (size_t k = 0; descs && k < f->nparts; k++)
        descs[k] = f->parts[k].desc;
    if (descs) { /* without memory the manifest stays unfolded until a restart */
        st_manifest_t m = {.version = ST_MANIFEST_VERSION,
                           .node_id = log->cfg.node_id,
                           .incarnation = log->incarnation,
                           .seq = f->seq,
                           .object_key = kp_str(f->key),
                           .object_size = f->obj->len,
                           .chunks = descs,
                           .nchunks = f->nparts,
                           .prods = f->prods,
                           .nprods = f->nprods};
        st_log__fold_add(log, f->mkey, &m);
        free(descs);
    }
    log->inflight--;
    log->stats.flushes++;
    log->stats.flush_bytes += f->obj->len;
    if (log->cfg.on_flush)
        log->cfg.on_flush(log->cfg.on_flush_arg, f->obj->len, mono_s() - f->upload_start);
    for (size_t i = 0; i < f->nparts; i++) {
        st_fpart_t *fp = &f->parts[i];
        st_part_t *part = fp->part;
        st_err_t err = ST_OK;
        if (part->topic->deleting) {
            err = ST_ERR_NOT_FOUND;
        } else if (obj && st_log__chunk_add(part, obj, &fp->desc)) {
            st_log__chunk_prods(part, f->prods, f->nprods, (uint32_t)i);
            st_log__tail_add(log, part->chunks[part->nchunks - 1], f->obj, fp->desc.pos);
        }
        if (err == ST_OK)
            part->hw = fp->desc.last_offset + 1;
        /* The producer state first: callbacks may append again. */
        for (st_pend_t *b = fp->batches; b; b = b->next) {
            if (err == ST_OK)
                st_log__prod_commit(b);
            else
                st_log__prod_unlink(b);
        }
        for (st_pend_t *b = fp->batches, *next; b; b = next) {
            next = b->next;
            if (err == ST_OK)
                log->stats.appends++;
            st_log__pend_answer(b, err, b->base);
            free(b);
        }
        fp->batches = NULL;
        if (err == ST_OK)
            st_log__wake(part);
    }
    st_log__obj_unref(obj);
    f->nparts = 0;
    flush_free(f);
}
