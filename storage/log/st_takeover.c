/*
 * st_takeover.c: a partition's catch-up when this node becomes its leader
 * (st_part_take_over), and its leader epoch history (st_part_epoch_end).
 *
 * Another node may have committed to the partition since this node last
 * loaded it.  One transaction reads, at one revision, the partition's keys
 * (index keys, log-start, epochs/) and every manifest not yet folded, of
 * every node; the chunks at or above the partition's high watermark are
 * applied in offset order (a chunk both in an index key and in a manifest
 * whose folding is under way is applied once), with their producer entries,
 * as start-up does for all partitions.  A chunk that begins below the high
 * watermark and ends at or above it, or one below it that is not the chunk
 * this node knows at its offset (chunks merged into a segment by a leader
 * since: that leader's GC deletes the objects this node would read), cannot
 * be applied on top of what this node knows: then the
 * partition's chunks and producer state are rebuilt from the read alone,
 * between two lifecycle runs (they hold chunk pointers; the read is
 * retried until one is not running).  The chunks found only in manifests
 * (of the previous leader, which may be dead and never fold them; also
 * those this node knew already) get their index keys, as folding would
 * write them: from then on everything below the epoch's start is in the
 * partition's index keys, so a later start-up, which applies index keys
 * before manifests, sees no gap.  Then
 * epochs/<epoch> = the new high watermark is put: the epoch's start offset.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_log_int.h"

#define RETRY_MS 500

typedef struct take_op {
    st_part_t *part;
    int32_t epoch; /* the epoch being taken over */
    void (*cb)(st_err_t err, void *arg);
    void *arg;
    char prefix[128]; /* the partition's keys */
    char mprefix[64]; /* every manifest */
    char ekey[160];   /* epochs/<epoch> */
    char eval[24];    /* its value */
    int64_t start;    /* the epoch's start offset */
    /* Index keys to put for the chunks taken from manifests. */
    char (*ikeys)[160];
    kp_writer_t *ivals;
    size_t nidx, idone, isent; /* keys in all, put, in the transaction in flight */
} take_op_t;

#define TAKE_TXN_PUTS 64

/* One chunk to apply, from an index key (m has one chunk) or a manifest. */
typedef struct tchunk {
    const st_manifest_t *m;
    size_t i; /* chunk index in m */
    bool folded;
} tchunk_t;

static int tchunk_cmp(const void *a, const void *b)
{
    const tchunk_t *x = a, *y = b;
    int64_t bx = x->m->chunks[x->i].base_offset, by = y->m->chunks[y->i].base_offset;
    if (bx != by)
        return bx < by ? -1 : 1;
    return (int)y->folded - (int)x->folded; /* the index key first */
}

/* Record @start as the start offset of @epoch (kept sorted by epoch). */
void st_log__epoch_put(st_part_t *part, int32_t epoch, int64_t start)
{
    size_t i = 0;
    while (i < part->nepochs && part->epochs[i].epoch < epoch)
        i++;
    if (i < part->nepochs && part->epochs[i].epoch == epoch) {
        part->epochs[i].start = start;
        return;
    }
    st_epoch_t *e = realloc(part->epochs, (part->nepochs + 1) * sizeof *e);
    if (!e)
        return; /* OffsetForLeaderEpoch answers from what it has */
    part->epochs = e;
    memmove(&e[i + 1], &e[i], (part->nepochs - i) * sizeof *e);
    e[i] = (st_epoch_t){epoch, start};
    part->nepochs++;
}

bool st_log__epoch_key(st_part_t *part, const char *rest, const uint8_t *val, size_t len)
{
    if (strncmp(rest, "epochs/", 7) != 0)
        return false;
    char num[24] = {0}, *end;
    long long e = strtoll(rest + 7, &end, 10);
    if (end == rest + 7 || *end != '\0' || e < 0 || e > INT32_MAX)
        return true; /* not one of ours: ignored */
    memcpy(num, val, len < sizeof num - 1 ? len : sizeof num - 1);
    long long start = strtoll(num, &end, 10);
    if (end == num || *end != '\0' || start < 0)
        return true;
    st_log__epoch_put(part, (int32_t)e, start);
    return true;
}

static void idx_free(take_op_t *op)
{
    for (size_t i = 0; op->ivals && i < op->nidx; i++)
        kp_writer_deinit(&op->ivals[i]);
    free(op->ivals);
    free(op->ikeys);
    op->ivals = NULL;
    op->ikeys = NULL;
    op->nidx = op->idone = 0;
}

static void take_finish(take_op_t *op, st_err_t err)
{
    st_part_t *part = op->part;
    st_log_t *log = part->log;
    idx_free(op);
    part->taking_over--;
    if (err == ST_OK)
        st_log__epoch_put(part, op->epoch, op->start);
    if (op->cb)
        op->cb(err, op->arg);
    free(op);
    st_log__op_done(log);
}

static void epoch_put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                           void *arg)
{
    (void)ok, (void)rev, (void)res, (void)n;
    take_finish(arg, err);
}

/* The index key and value of @tc's chunk (a manifest of that chunk alone,
 * as folding writes it) into @op's next slot. */
static st_err_t idx_add(take_op_t *op, const tchunk_t *tc)
{
    const st_manifest_t *m = tc->m;
    size_t np = 0;
    for (size_t i = 0; i < m->nprods; i++)
        np += m->prods[i].chunk == tc->i;
    st_prod_desc_t *pd = calloc(np ? np : 1, sizeof *pd);
    if (!pd)
        return ST_ERR_NOMEM;
    np = 0;
    for (size_t i = 0; i < m->nprods; i++)
        if (m->prods[i].chunk == tc->i) {
            pd[np] = m->prods[i];
            pd[np++].chunk = 0;
        }
    st_manifest_t one = {.version = ST_MANIFEST_VERSION,
                         .node_id = m->node_id,
                         .incarnation = m->incarnation,
                         .seq = m->seq,
                         .object_key = m->object_key,
                         .object_size = m->object_size,
                         .chunks = &m->chunks[tc->i],
                         .nchunks = 1,
                         .prods = pd,
                         .nprods = np};
    kp_writer_t *w = &op->ivals[op->nidx];
    kp_writer_init(w, 128 + ST_MANIFEST_PRODUCER_SIZE * np);
    st_manifest_encode(w, &one);
    free(pd);
    snprintf(op->ikeys[op->nidx], sizeof op->ikeys[op->nidx], "%schunks/%020" PRId64, op->prefix,
             m->chunks[tc->i].base_offset);
    op->nidx++;
    return w->err ? ST_ERR_NOMEM : ST_OK;
}

/* Apply @tc's chunk when it is at the partition's high watermark or above
 * (*@applied). */
static st_err_t take_chunk(st_part_t *part, const tchunk_t *tc, bool *applied)
{
    const st_manifest_t *m = tc->m;
    const st_chunk_desc_t *d = &m->chunks[tc->i];
    *applied = false;
    if (d->base_offset < part->hw)
        return ST_OK; /* known already */
    *applied = true;
    st_obj_t *obj =
        st_log__obj_new(part->log, m->object_key.ptr, (size_t)m->object_key.len, m->object_size);
    if (!obj)
        return ST_ERR_NOMEM;
    st_err_t err = ST_OK;
    if (!st_log__chunk_add(part, obj, d)) {
        err = ST_ERR_NOMEM;
    } else {
        part->chunks[part->nchunks - 1]->folded = true; /* or about to be (idx_add) */
        st_log__chunk_prods(part, m->prods, m->nprods, (uint32_t)tc->i);
        part->hw = part->leo = d->last_offset + 1;
        for (size_t k = 0; k < m->nprods; k++)
            if (m->prods[k].chunk == tc->i)
                st_log__prod_replay(part, &m->prods[k]);
    }
    st_log__obj_unref(obj);
    return err;
}

/* Is chunk @d of @m above the high watermark, or below it as this node
 * knows it (same offsets, same object and place)? */
static bool chunk_known(const st_part_t *part, const st_manifest_t *m, const st_chunk_desc_t *d)
{
    if (d->base_offset >= part->hw)
        return true;
    const st_chunk_t *c = st_log__chunk_at(part, d->base_offset);
    return c && c->last == d->last_offset && c->pos == d->pos &&
           strlen(c->obj->key) == (size_t)m->object_key.len &&
           memcmp(c->obj->key, m->object_key.ptr, (size_t)m->object_key.len) == 0;
}

static void take_retry(evutil_socket_t fd, short what, void *arg);
static void take_read(take_op_t *op);
static void idx_next(take_op_t *op);
static void idx_retry(evutil_socket_t fd, short what, void *arg);

static void take_got(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t nres,
                     void *arg)
{
    (void)ok, (void)rev;
    take_op_t *op = arg;
    st_part_t *part = op->part;
    st_log_t *log = part->log;
    if (err == ST_OK && nres != 2)
        err = ST_ERR_CORRUPT;
    if (err != ST_OK || part->topic->deleting) {
        if (part->topic->deleting || part->epoch != op->epoch)
            return take_finish(op, err != ST_OK ? err : ST_ERR_NOT_FOUND);
        struct timeval tv = {0, RETRY_MS * 1000};
        if (event_base_once(log->base, -1, EV_TIMEOUT, take_retry, op, &tv) != 0)
            take_finish(op, ST_ERR_NOMEM);
        return;
    }
    const st_kv_t *keys = res[0].kvs, *mans = res[1].kvs;
    size_t nkeys = res[0].n, nmans = res[1].n;
    st_manifest_t *ms = calloc(nkeys + nmans + 1, sizeof *ms);
    size_t nms = 0, nt = 0, cap = 0;
    tchunk_t *tcs = NULL;
    size_t plen = strlen(op->prefix);
    int64_t start = -1;
    for (size_t i = 0; ms && err == ST_OK && i < nkeys + nmans; i++) {
        const st_kv_t *kv = i < nkeys ? &keys[i] : &mans[i - nkeys];
        bool folded = i < nkeys;
        if (folded) {
            const char *rest = kv->key + plen;
            if (st_log__epoch_key(part, rest, kv->val, kv->val_len))
                continue;
            if (strcmp(rest, "log-start") == 0) {
                char num[24] = {0}, *end;
                memcpy(num, kv->val, kv->val_len < sizeof num - 1 ? kv->val_len : sizeof num - 1);
                start = strtoll(num, &end, 10);
                if (end == num || *end != '\0' || start < 0)
                    err = ST_ERR_CORRUPT;
                continue;
            }
            if (strncmp(rest, "chunks/", 7) != 0)
                continue;
        }
        if (st_manifest_decode(kv->val, kv->val_len, &ms[nms]) != ST_OK) {
            err = ST_ERR_CORRUPT;
            break;
        }
        const st_manifest_t *m = &ms[nms++];
        for (size_t c = 0; c < m->nchunks; c++) {
            const st_chunk_desc_t *d = &m->chunks[c];
            if (memcmp(d->topic_id.b, part->topic->id.b, sizeof d->topic_id.b) != 0 ||
                d->partition != part->index)
                continue;
            if (nt == cap) {
                cap = cap ? cap * 2 : 16;
                tchunk_t *t = realloc(tcs, cap * sizeof *t);
                if (!t) {
                    err = ST_ERR_NOMEM;
                    break;
                }
                tcs = t;
            }
            tcs[nt++] = (tchunk_t){.m = m, .i = c, .folded = folded};
        }
    }
    if (!ms)
        err = ST_ERR_NOMEM;
    /* A chunk below the high watermark that is not the one this node
     * knows there (chunks merged into a segment by a later leader, whose
     * GC then deletes the objects this node would read), or one across
     * it: what this node knows is rebuilt from the read -- between
     * lifecycle runs, which hold chunk pointers. */
    bool across = false;
    for (size_t i = 0; err == ST_OK && !across && i < nt; i++)
        across = !chunk_known(part, tcs[i].m, &tcs[i].m->chunks[tcs[i].i]);
    if (err == ST_OK && across && st_log__life_busy(log)) {
        for (size_t i = 0; i < nms; i++) {
            free((void *)ms[i].chunks);
            free((void *)ms[i].prods);
        }
        free(ms);
        free(tcs);
        struct timeval tv = {0, 100 * 1000};
        if (event_base_once(log->base, -1, EV_TIMEOUT, take_retry, op, &tv) != 0)
            take_finish(op, ST_ERR_NOMEM);
        return;
    }
    if (err == ST_OK && across) {
        for (size_t i = 0; i < part->nchunks; i++)
            st_log__chunk_free(log, part->chunks[i]);
        part->dropped += part->nchunks; /* reads in flight look again */
        part->nchunks = 0;
        st_log__prod_free(part);
        part->hw = part->leo = 0;
        log->stats.takeover_rebuilds++;
    }
    if (err == ST_OK && nt > 0) {
        op->ikeys = calloc(nt, sizeof *op->ikeys);
        op->ivals = calloc(nt, sizeof *op->ivals);
        if (!op->ikeys || !op->ivals)
            err = ST_ERR_NOMEM;
    }
    if (err == ST_OK) {
        if (nt > 1) /* tcs is NULL when there is none */
            qsort(tcs, nt, sizeof *tcs, tchunk_cmp);
        /* Every chunk still only in a manifest gets its index key, also
         * one this node knew already (from another node's manifest at its
         * start-up): whoever wrote it may never fold it.  Not one that an
         * index key covers (folded meanwhile, or merged into a segment). */
        int64_t covered = -1; /* index keys cover the offsets below */
        for (size_t i = 0; err == ST_OK && i < nt; i++) {
            const st_chunk_desc_t *d = &tcs[i].m->chunks[tcs[i].i];
            bool applied;
            err = take_chunk(part, &tcs[i], &applied);
            if (tcs[i].folded && d->last_offset + 1 > covered)
                covered = d->last_offset + 1;
            else if (err == ST_OK && !tcs[i].folded && d->base_offset >= covered)
                err = idx_add(op, &tcs[i]);
        }
        if (start > part->log_start)
            part->log_start = start;
        if (start > part->log_start_issued)
            part->log_start_issued = start;
        if (part->hw < part->log_start)
            part->hw = part->log_start;
        part->leo = part->hw;
    }
    for (size_t i = 0; i < nms; i++) {
        free((void *)ms[i].chunks);
        free((void *)ms[i].prods);
    }
    free(ms);
    free(tcs);
    if (err != ST_OK)
        return take_finish(op, err);
    st_log__wake(part);
    op->start = part->hw; /* the epoch starts here */
    idx_next(op);
}

static void idx_put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                         void *arg)
{
    (void)ok, (void)rev, (void)res, (void)n;
    take_op_t *op = arg;
    if (err != ST_OK) {
        if (op->part->topic->deleting || op->part->epoch != op->epoch)
            return take_finish(op, err);
        struct timeval tv = {0, RETRY_MS * 1000};
        if (event_base_once(op->part->log->base, -1, EV_TIMEOUT, idx_retry, op, &tv) != 0)
            take_finish(op, ST_ERR_NOMEM);
        return;
    }
    op->idone = op->isent;
    idx_next(op);
}

static void idx_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    idx_next(arg);
}

/* Put the next index keys, then epochs/<epoch>. */
static void idx_next(take_op_t *op)
{
    st_log_t *log = op->part->log;
    if (op->idone < op->nidx) {
        st_op_t ops[TAKE_TXN_PUTS];
        size_t k = 0;
        for (size_t i = op->idone; i < op->nidx && k < TAKE_TXN_PUTS; i++, k++)
            ops[k] = (st_op_t){.type = ST_OP_PUT,
                               .key = op->ikeys[i],
                               .val = op->ivals[i].buf,
                               .val_len = op->ivals[i].len};
        op->isent = op->idone + k;
        st_txn_t txn = {.success = ops, .nsuccess = k};
        if (st_meta_txn(log->meta, &txn, idx_put_done, op) != 0)
            take_finish(op, ST_ERR_NOMEM);
        return;
    }
    snprintf(op->eval, sizeof op->eval, "%" PRId64, op->start);
    st_op_t put = {.type = ST_OP_PUT,
                   .key = op->ekey,
                   .val = (const uint8_t *)op->eval,
                   .val_len = strlen(op->eval)};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    if (st_meta_txn(log->meta, &txn, epoch_put_done, op) != 0)
        take_finish(op, ST_ERR_NOMEM);
}

static void take_read(take_op_t *op)
{
    st_op_t ops[2] = {{.type = ST_OP_GET_PREFIX, .key = op->prefix},
                      {.type = ST_OP_GET_PREFIX, .key = op->mprefix}};
    st_txn_t txn = {.success = ops, .nsuccess = 2};
    if (st_meta_txn(op->part->log->meta, &txn, take_got, op) != 0)
        take_finish(op, ST_ERR_NOMEM);
}

static void take_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    take_read(arg);
}

int st_part_take_over(st_part_t *part, void (*cb)(st_err_t err, void *arg), void *arg)
{
    st_log_t *log = part->log;
    take_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return -1;
    op->part = part;
    op->epoch = part->epoch;
    op->cb = cb;
    op->arg = arg;
    char hex[33];
    st_uuid_hex(part->topic->id, hex);
    snprintf(op->prefix, sizeof op->prefix, "%s/partitions/%s/%" PRId32 "/", ST_KEY_ROOT, hex,
             part->index);
    snprintf(op->mprefix, sizeof op->mprefix, "%s/manifests/", ST_KEY_ROOT);
    snprintf(op->ekey, sizeof op->ekey, "%sepochs/%" PRId32, op->prefix, op->epoch);
    /* Appends of an earlier leadership that were not flushed yet carry
     * offsets from a log end that is no longer this partition's. */
    st_log__fail_pending(part, ST_ERR_CONFLICT);
    part->taking_over++;
    log->async_ops++;
    take_read(op);
    return 0;
}

bool st_part_taking_over(const st_part_t *part)
{
    return part->taking_over > 0;
}

void st_part_epoch_end(const st_part_t *part, int32_t epoch, int32_t *out_epoch, int64_t *out_end)
{
    int32_t cur = part->epoch;
    *out_epoch = -1;
    *out_end = -1;
    if (epoch < 0 || epoch > cur)
        return;
    if (epoch == cur) {
        *out_epoch = cur;
        *out_end = part->hw;
        return;
    }
    /* The history: epoch 0 from the start (recorded or not), then the
     * recorded epochs up to the current one.  The largest epoch at or
     * below @epoch ends where the next one starts (or at the high
     * watermark when the current epoch has no record yet). */
    int32_t found = 0;
    int64_t end = part->hw;
    for (size_t i = 0; i < part->nepochs; i++) {
        const st_epoch_t *e = &part->epochs[i];
        if (e->epoch > cur)
            break;
        if (e->epoch <= epoch) {
            found = e->epoch;
        } else {
            end = e->start;
            break;
        }
    }
    *out_epoch = found;
    *out_end = end;
}
