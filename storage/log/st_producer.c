/*
 * st_producer.c: idempotent producers -- the per-partition producer state
 * (Kafka >= 2.5 rules, KIP-360), its entries in the flush manifest and
 * their replay at start-up, and producer id allocation from the counter in
 * the metadata store.
 *
 * Per partition and producer id, the state is the epoch and the last
 * ST_PROD_BATCHES batches (first and last sequence, offsets) -- committed
 * ones, followed by the batches appended and not yet committed.  Checks run
 * at append time against both, so a retry of a batch still in flight is
 * recognised and answered when the original commits; the committed part
 * advances only on commit, and a failed flush unlinks its batches, which
 * leaves the state where the last commit put it.
 */
#include "st_log_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ state */

static st_prod_t *prod_find(st_part_t *part, int64_t pid)
{
    if (part->prods.next == NULL) /* a partition made before this state existed */
        st_list_init(&part->prods);
    for (st_link_t *l = part->prods.next; l != &part->prods; l = l->next) {
        st_prod_t *p = st_container_of(l, st_prod_t, lru);
        if (p->pid == pid) {
            if (l != part->prods.next) { /* most recently used first */
                st_list_del(l);
                l->next = part->prods.next;
                l->prev = &part->prods;
                part->prods.next->prev = l;
                part->prods.next = l;
            }
            return p;
        }
    }
    return NULL;
}

static st_prod_t *prod_new(st_part_t *part, int64_t pid)
{
    if (part->nprods >= ST_PROD_MAX_PER_PART) {
        /* Forget the least recently used producer with nothing in flight. */
        for (st_link_t *l = part->prods.prev; l != &part->prods; l = l->prev) {
            st_prod_t *old = st_container_of(l, st_prod_t, lru);
            if (!old->unc_head) {
                st_list_del(l);
                free(old);
                part->nprods--;
                break;
            }
        }
    }
    st_prod_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->pid = pid;
    p->epoch = -1;
    p->lru.next = part->prods.next;
    p->lru.prev = &part->prods;
    part->prods.next->prev = &p->lru;
    part->prods.next = &p->lru;
    part->nprods++;
    return p;
}

/* Kafka's sequence order: @next follows @last, wrapping at INT32_MAX. */
static bool in_sequence(int32_t last, int32_t next)
{
    return last == INT32_MAX ? next == 0 : next == last + 1;
}

st_err_t st_log__prod_check(st_part_t *part, int64_t pid, st_pend_t *b, st_pend_t **orig,
                            int64_t *orig_base)
{
    *orig = NULL;
    st_prod_t *p = prod_find(part, pid);
    if (!p || (p->n == 0 && !p->unc_head))
        return ST_OK; /* no state on this partition: any sequence */
    int16_t cur = p->unc_tail ? p->unc_tail->epoch : p->epoch;
    if (b->epoch < cur)
        return ST_ERR_EPOCH;
    if (b->epoch > cur)
        return b->first_seq == 0 ? ST_OK : ST_ERR_SEQUENCE;
    /* Same epoch: a retry of one of the last batches, or the next one. */
    int seen = 0;
    int32_t last_seq = -1;
    bool have_last = false;
    for (st_pend_t *u = p->unc_tail; u && u->epoch == cur && seen < ST_PROD_BATCHES;
         u = u->pprev, seen++) {
        if (!have_last) {
            last_seq = u->last_seq;
            have_last = true;
        }
        if (u->first_seq == b->first_seq && u->last_seq == b->last_seq) {
            *orig = u;
            return ST_ERR_EXISTS;
        }
    }
    if (p->epoch == cur) {
        for (int i = p->n - 1; i >= 0 && seen < ST_PROD_BATCHES; i--, seen++) {
            if (!have_last) {
                last_seq = p->b[i].last_seq;
                have_last = true;
            }
            if (p->b[i].first_seq == b->first_seq && p->b[i].last_seq == b->last_seq) {
                *orig_base = p->b[i].base;
                return ST_ERR_EXISTS;
            }
        }
    }
    if (!have_last)
        return ST_OK;
    return in_sequence(last_seq, b->first_seq) ? ST_OK : ST_ERR_SEQUENCE;
}

void st_log__prod_link(st_part_t *part, int64_t pid, st_pend_t *b)
{
    st_prod_t *p = prod_find(part, pid);
    if (!p)
        p = prod_new(part, pid);
    if (!p)
        return; /* out of memory: the batch goes without state (accepted as new) */
    b->prod = p;
    b->pnext = NULL;
    b->pprev = p->unc_tail;
    if (p->unc_tail)
        p->unc_tail->pnext = b;
    else
        p->unc_head = b;
    p->unc_tail = b;
}

void st_log__prod_unlink(st_pend_t *b)
{
    st_prod_t *p = b->prod;
    if (!p)
        return;
    if (b->pprev)
        b->pprev->pnext = b->pnext;
    else
        p->unc_head = b->pnext;
    if (b->pnext)
        b->pnext->pprev = b->pprev;
    else
        p->unc_tail = b->pprev;
    b->prod = NULL;
    b->pnext = b->pprev = NULL;
}

static void prod_push(st_prod_t *p, int16_t epoch, const st_pbatch_t *e)
{
    if (epoch < p->epoch)
        return;
    if (epoch > p->epoch) {
        p->epoch = epoch;
        p->n = 0;
    }
    if (p->n == ST_PROD_BATCHES) {
        memmove(&p->b[0], &p->b[1], (ST_PROD_BATCHES - 1) * sizeof(p->b[0]));
        p->n--;
    }
    p->b[p->n++] = *e;
}

void st_log__prod_commit(st_pend_t *b)
{
    st_prod_t *p = b->prod;
    if (!p)
        return;
    st_pbatch_t e = {b->first_seq, b->last_seq, b->base, b->last};
    st_log__prod_unlink(b);
    prod_push(p, b->epoch, &e);
}

void st_log__prod_replay(st_part_t *part, const st_prod_desc_t *d)
{
    st_prod_t *p = prod_find(part, d->producer_id);
    if (!p)
        p = prod_new(part, d->producer_id);
    if (!p)
        return;
    st_pbatch_t e = {d->first_seq, d->last_seq, d->base_offset, d->last_offset};
    prod_push(p, d->epoch, &e);
}

bool st_log__prod_descs(const st_pend_t *head, uint32_t chunk, st_prod_desc_t **arr, size_t *n,
                        size_t *cap)
{
    for (const st_pend_t *b = head; b; b = b->next)
        if (b->prod)
            b->prod->scratch++;
    bool ok = true;
    for (const st_pend_t *b = head; b; b = b->next) {
        if (!b->prod)
            continue;
        /* Only the last ST_PROD_BATCHES of each producer in the chunk. */
        if (b->prod->scratch-- > ST_PROD_BATCHES || !ok)
            continue;
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            st_prod_desc_t *a = realloc(*arr, ncap * sizeof(*a));
            if (!a) {
                ok = false;
                continue;
            }
            *arr = a;
            *cap = ncap;
        }
        (*arr)[(*n)++] = (st_prod_desc_t){.chunk = chunk,
                                          .producer_id = b->prod->pid,
                                          .epoch = b->epoch,
                                          .first_seq = b->first_seq,
                                          .last_seq = b->last_seq,
                                          .base_offset = b->base,
                                          .last_offset = b->last};
    }
    return ok;
}

void st_log__prod_free(st_part_t *part)
{
    if (part->prods.next == NULL)
        return;
    while (!st_list_empty(&part->prods)) {
        st_link_t *l = part->prods.next;
        st_list_del(l);
        free(st_container_of(l, st_prod_t, lru));
    }
    part->nprods = 0;
}

void st_log__pend_answer(st_pend_t *b, st_err_t err, int64_t base)
{
    if (b->cb)
        b->cb(err, err == ST_OK ? base : -1, b->arg);
    for (st_dup_t *d = b->dups, *next; d; d = next) {
        next = d->next;
        d->cb(err, err == ST_OK ? base : -1, d->arg);
        free(d);
    }
    b->dups = NULL;
}

void st_log__pend_drop(st_pend_t *b)
{
    for (st_dup_t *d = b->dups, *next; d; d = next) {
        next = d->next;
        free(d);
    }
    st_pend_release_data(b);
    free(b);
}

/* ------------------------------------------------------------ ids */

#define PID_BLOCK 1000 /* ids taken from the counter per transaction */
#define PID_KNOWN 4096 /* ids handed out whose epoch can be bumped */
#define PID_TRIES 20   /* lost compare-and-swaps before giving up */
#define PID_KEY_MAX 128

typedef struct pid_req {
    struct pid_req *next;
    st_log_t *log;
    st_producer_cb cb;
    void *arg;
    st_err_t err;
    int64_t pid;
    int16_t epoch;
} pid_req_t;

typedef struct st_pids {
    int64_t next, end; /* the block in hand: [next, end) */
    bool fetching;
    int tries;
    pid_req_t *head, *tail; /* waiting for a block */
    char key[PID_KEY_MAX];
    char val[32];
    struct {
        int64_t pid;
        int16_t epoch;
    } known[PID_KNOWN];
    size_t nknown, kpos;
} st_pids_t;

static void pid_answer_cb(void *arg)
{
    pid_req_t *r = arg;
    st_log_t *log = r->log;
    r->cb(r->err, r->pid, r->epoch, r->arg);
    free(r);
    st_log__op_done(log);
}

/* Answer @r later from the loop. */
static void pid_answer(pid_req_t *r)
{
    if (st_log__defer(r->log, pid_answer_cb, r) != 0) {
        /* cannot defer: answered now (the caller is a metadata callback) */
        pid_answer_cb(r);
    }
}

static void pid_remember(st_pids_t *ps, int64_t pid, int16_t epoch)
{
    for (size_t i = 0; i < ps->nknown; i++) {
        if (ps->known[i].pid == pid) {
            ps->known[i].epoch = epoch;
            return;
        }
    }
    size_t i = ps->nknown < PID_KNOWN ? ps->nknown++ : ps->kpos++ % PID_KNOWN;
    ps->known[i].pid = pid;
    ps->known[i].epoch = epoch;
}

static void pids_fetch(st_log_t *log);

/* Hand out ids from the block to the waiting requests; fetch another
 * block when they run out. */
static void pids_pump(st_log_t *log)
{
    st_pids_t *ps = log->pids;
    while (ps->head && ps->next < ps->end) {
        pid_req_t *r = ps->head;
        ps->head = r->next;
        if (!ps->head)
            ps->tail = NULL;
        r->pid = ps->next++;
        r->epoch = 0;
        r->err = ST_OK;
        pid_remember(ps, r->pid, 0);
        pid_answer(r);
    }
    if (ps->head && !ps->fetching)
        pids_fetch(log);
}

static void pids_fail(st_log_t *log, st_err_t err)
{
    st_pids_t *ps = log->pids;
    ps->fetching = false;
    ps->tries = 0;
    while (ps->head) {
        pid_req_t *r = ps->head;
        ps->head = r->next;
        r->err = err;
        pid_answer(r);
    }
    ps->tail = NULL;
}

typedef struct pid_fetch {
    st_log_t *log;
    int64_t start;
} pid_fetch_t;

static void pids_put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                          void *arg)
{
    (void)rev, (void)res, (void)n;
    pid_fetch_t *pf = arg;
    st_log_t *log = pf->log;
    int64_t start = pf->start;
    free(pf);
    st_pids_t *ps = log->pids;
    if (err != ST_OK)
        return pids_fail(log, err);
    if (!ok) { /* another gateway (or start) took the block: read again */
        if (++ps->tries > PID_TRIES)
            return pids_fail(log, ST_ERR_CONFLICT);
        ps->fetching = false;
        return pids_pump(log);
    }
    ps->fetching = false;
    ps->tries = 0;
    ps->next = start;
    ps->end = start + PID_BLOCK;
    pids_pump(log);
}

static void pids_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more, (void)rev;
    pid_fetch_t *pf = arg;
    st_log_t *log = pf->log;
    st_pids_t *ps = log->pids;
    if (err != ST_OK) {
        free(pf);
        return pids_fail(log, err);
    }
    int64_t cur = 0, mod = 0;
    if (n == 1) {
        char tmp[32] = {0};
        memcpy(tmp, kvs[0].val, kvs[0].val_len < 31 ? kvs[0].val_len : 31);
        cur = strtoll(tmp, NULL, 10);
        mod = kvs[0].mod_rev;
    }
    if (cur < 0 || cur > INT64_MAX - 2 * PID_BLOCK) {
        free(pf);
        return pids_fail(log, ST_ERR_CORRUPT);
    }
    pf->start = cur;
    snprintf(ps->val, sizeof ps->val, "%" PRId64, cur + PID_BLOCK);
    st_cmp_t cmp = {.key = ps->key, .target = ST_CMP_MOD, .op = ST_CMP_EQ, .num = mod};
    st_op_t put = {
        .type = ST_OP_PUT, .key = ps->key, .val = (uint8_t *)ps->val, .val_len = strlen(ps->val)};
    st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &put, .nsuccess = 1};
    if (st_meta_txn(log->meta, &txn, pids_put_done, pf) != 0) {
        free(pf);
        pids_fail(log, ST_ERR_NOMEM);
    }
}

static void pids_fetch(st_log_t *log)
{
    st_pids_t *ps = log->pids;
    pid_fetch_t *pf = calloc(1, sizeof(*pf));
    if (!pf)
        return pids_fail(log, ST_ERR_NOMEM);
    pf->log = log;
    ps->fetching = true;
    if (st_meta_range(log->meta, ps->key, false, 0, pids_got, pf) != 0) {
        free(pf);
        pids_fail(log, ST_ERR_NOMEM);
    }
}

int st_log_init_producer(st_log_t *log, int64_t pid, int16_t epoch, st_producer_cb cb, void *arg)
{
    if (!log->open || log->closing)
        return ST_ERR_CLOSED;
    if (!log->pids) {
        log->pids = calloc(1, sizeof(*log->pids));
        if (!log->pids)
            return ST_ERR_NOMEM;
        snprintf(log->pids->key, sizeof log->pids->key, "%s/counters/producer-id", ST_KEY_ROOT);
    }
    st_pids_t *ps = log->pids;
    pid_req_t *r = calloc(1, sizeof(*r));
    if (!r)
        return ST_ERR_NOMEM;
    r->log = log;
    r->cb = cb;
    r->arg = arg;
    log->async_ops++;
    if (pid >= 0) {
        for (size_t i = 0; i < ps->nknown; i++) {
            if (ps->known[i].pid != pid)
                continue;
            if (ps->known[i].epoch != epoch) {
                r->err = ST_ERR_EPOCH; /* not the current instance of the producer */
                r->pid = -1;
                r->epoch = -1;
                pid_answer(r);
                return 0;
            }
            if (epoch < INT16_MAX - 1) { /* KIP-360: bump the epoch */
                ps->known[i].epoch = (int16_t)(epoch + 1);
                r->pid = pid;
                r->epoch = (int16_t)(epoch + 1);
                pid_answer(r);
                return 0;
            }
            break; /* epochs exhausted: a new id */
        }
    }
    /* Not an id this process handed out: a new one (as Kafka does for a
     * producer without a transactional id). */
    if (ps->tail)
        ps->tail->next = r;
    else
        ps->head = r;
    ps->tail = r;
    if (ps->head == r && !ps->fetching && ps->next < ps->end) {
        pids_pump(log);
    } else if (!ps->fetching) {
        pids_fetch(log);
    }
    return 0;
}

void st_log__pids_free(st_log_t *log)
{
    st_pids_t *ps = log->pids;
    if (!ps)
        return;
    for (pid_req_t *r = ps->head, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    free(ps);
    log->pids = NULL;
}
