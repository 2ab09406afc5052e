/*
 * gw_leaders.c: partition leader records, their watch, and the controller
 * that writes them (see the header).
 */
#include "gw_leaders.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_log.h"
#include "st_format.h"

#define RETRY_MS 1000 /* pause before a failed read is retried */
#define PREFIX ST_KEY_ROOT "/leaders/"
#define KEY_MAX 96 /* "/nuthatch/leaders/" + 32 hex + "/" + 10 digits + "/state" */
#define VAL_MAX 48

/* One partition's record as last seen. */
typedef struct rec {
    kp_uuid_t id;
    int32_t p;
    int32_t leader;
    int32_t epoch;
    int64_t mod_rev;   /* the store revision that wrote it */
    uint32_t gen;      /* the read (ld->gen) that last saw it */
    bool take_pending; /* names this node, whose takeover waits for the partition */
} rec_t;

/* A controller transaction in flight. */
typedef struct wtxn {
    gw_leaders_t *ld;
    size_t n;
    size_t moves;
    rec_t recs[GW_LEADERS_TXN_PARTS]; /* what it writes (mod_rev unset) */
    char keys[GW_LEADERS_TXN_PARTS][KEY_MAX];
    char vals[GW_LEADERS_TXN_PARTS][VAL_MAX];
    char fkeys[GW_LEADERS_TXN_PARTS][64]; /* fences of the nodes moved away from */
    char fvals[GW_LEADERS_TXN_PARTS][VAL_MAX];
} wtxn_t;

/* A gw_leaders_sync caller waiting for a revision. */
typedef struct waiter {
    struct waiter *next;
    int64_t rev;
    void (*done)(void *arg);
    void *arg;
} waiter_t;

struct gw_leaders {
    struct event_base *base; /* borrowed */
    st_meta_t *meta;         /* borrowed */
    st_log_t *log;           /* borrowed */
    gw_cluster_t *cl;        /* borrowed */
    int32_t node_id;
    rec_t *recs; /* sorted by (id, p) */
    size_t nrecs, cap;
    st_meta_watch_t *watch; /* owned while watched */
    struct event *timer;    /* controller ticks, and retries of a failed read */
    struct event *wake_ev;  /* wakes waiters whose revision was applied already */
    int inflight;           /* operations not yet completed */
    bool loaded;            /* read once */
    bool reloading;
    bool writing; /* a controller transaction is in flight */
    bool freed;
    uint32_t gen; /* reads of every record so far */
    uint64_t moves;
    uint64_t takeovers;
    int64_t applied_rev; /* every record written up to this revision is in recs */
    waiter_t *waiters;
    int64_t give_up_ms;
    void (*start_cb)(st_err_t err, void *arg);
    void *start_arg;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

size_t gw_leaders_format(char *buf, size_t cap, int32_t leader, int32_t epoch)
{
    int n = snprintf(buf, cap, "leader=%" PRId32 "\nepoch=%" PRId32 "\n", leader, epoch);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* A decimal in [0, INT32_MAX] at *pp up to @end, ending at '\n'. */
static bool parse_num(const char **pp, const char *end, int32_t *out)
{
    const char *p = *pp;
    int64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (++digits > 10 || v > INT32_MAX)
            return false;
    }
    if (digits == 0 || p == end || *p != '\n')
        return false;
    *pp = p + 1;
    *out = (int32_t)v;
    return true;
}

bool gw_leaders_parse(const uint8_t *val, size_t len, int32_t *leader, int32_t *epoch)
{
    const char *p = (const char *)val, *end = p + len;
    if (len < 7 || memcmp(p, "leader=", 7) != 0)
        return false;
    p += 7;
    int32_t l, e;
    if (!parse_num(&p, end, &l))
        return false;
    if (end - p < 6 || memcmp(p, "epoch=", 6) != 0)
        return false;
    p += 6;
    if (!parse_num(&p, end, &e) || p != end)
        return false;
    *leader = l;
    *epoch = e;
    return true;
}

bool gw_leaders_parse_key(const char *key, kp_uuid_t *id, int32_t *p)
{
    size_t plen = strlen(PREFIX);
    if (strncmp(key, PREFIX, plen) != 0)
        return false;
    const char *s = key + plen;
    if (strlen(s) < 32 + 1 + 1 + 6 || s[32] != '/')
        return false;
    char hex[33];
    memcpy(hex, s, 32);
    hex[32] = '\0';
    if (!st_uuid_parse(hex, id))
        return false;
    s += 33;
    int64_t v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        if (++digits > 10 || v > INT32_MAX)
            return false;
    }
    if (digits == 0 || strcmp(s, "/state") != 0)
        return false;
    *p = (int32_t)v;
    return true;
}

static int rec_cmp(const kp_uuid_t *id, int32_t p, const rec_t *r)
{
    int c = memcmp(id->b, r->id.b, sizeof r->id.b);
    return c ? c : (p > r->p) - (p < r->p);
}

/* The index of (@id, @p), or where it would go. */
static size_t rec_find(const gw_leaders_t *ld, const kp_uuid_t *id, int32_t p, bool *found)
{
    size_t lo = 0, hi = ld->nrecs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = rec_cmp(id, p, &ld->recs[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

static void took_over(st_err_t err, void *arg);
static void start_take(gw_leaders_t *ld, st_topic_t *topic, const rec_t *r, bool take);

/* Keep @r unless a newer record of its partition is known.  A record that
 * makes this node the partition's leader at an epoch it did not lead
 * starts the partition's takeover (st_part_take_over), except at the first
 * read: the log has just loaded every partition. */
static void rec_put(gw_leaders_t *ld, const rec_t *r)
{
    bool found;
    size_t i = rec_find(ld, &r->id, r->p, &found);
    bool mine_before;
    if (found)
        mine_before = ld->recs[i].leader == ld->node_id && ld->recs[i].epoch == r->epoch;
    else /* without a record no node appends; the hashed choice at epoch 0
          * (its creator's, mostly) needs no catch-up */
        mine_before = r->epoch == 0 && gw_leaders_hashed(ld->cl, r->id, r->p) == ld->node_id;
    bool take = ld->loaded && r->leader == ld->node_id && !mine_before;
    /* The same record seen again before its partition appeared. */
    if (found && ld->recs[i].take_pending && ld->recs[i].leader == r->leader &&
        ld->recs[i].epoch == r->epoch)
        take = true;
    if (found) {
        if (ld->recs[i].mod_rev > r->mod_rev) {
            ld->recs[i].gen = ld->gen;
            return;
        }
        ld->recs[i] = *r;
        ld->recs[i].gen = ld->gen;
    } else {
        if (ld->nrecs == ld->cap) {
            size_t cap = ld->cap ? ld->cap * 2 : 64;
            rec_t *recs = realloc(ld->recs, cap * sizeof *recs);
            if (!recs) {
                gw_log_warn("leaders", "out of memory: a partition's leader record is ignored");
                return;
            }
            ld->recs = recs;
            ld->cap = cap;
        }
        memmove(&ld->recs[i + 1], &ld->recs[i], (ld->nrecs - i) * sizeof *ld->recs);
        ld->recs[i] = *r;
        ld->recs[i].gen = ld->gen;
        ld->nrecs++;
    }
    ld->recs[i].take_pending = false;
    /* Appends carry the partition's leader epoch. */
    st_topic_t *topic = st_log_topic_by_id(ld->log, r->id);
    if (!topic || topic->deleting || r->p >= topic->nparts) {
        /* The record came before the topic or the partition (the catalog
         * watch is another stream): the takeover starts once it is there
         * (take_pending_start); until then this node does not lead it. */
        ld->recs[i].take_pending = take;
        return;
    }
    start_take(ld, topic, r, take);
}

/* Set the epoch of @r's partition of @topic, and start its takeover when
 * @take. */
static void start_take(gw_leaders_t *ld, st_topic_t *topic, const rec_t *r, bool take)
{
    st_part_t *part = topic->parts[r->p];
    st_part_set_leader_epoch(part, r->epoch);
    if (!take)
        return;
    gw_log_info("leaders", "%s/%" PRId32 ": taking over at epoch %" PRId32, topic->name, r->p,
                r->epoch);
    ld->takeovers++;
    if (st_part_take_over(part, took_over, part) != 0)
        gw_log_warn("leaders", "%s/%" PRId32 ": cannot take over: out of memory", topic->name,
                    r->p);
}

/* A takeover ended: log it. */
static void took_over(st_err_t err, void *arg)
{
    st_part_t *part = arg;
    st_topic_t *topic = st_part_topic(part);
    if (err != ST_OK)
        gw_log_warn("leaders", "%s/%" PRId32 ": takeover failed: %s", topic->name,
                    st_part_index(part), st_err_str(err));
    else
        gw_log_info("leaders",
                    "%s/%" PRId32 ": took over at epoch %" PRId32 ", high watermark %" PRId64,
                    topic->name, st_part_index(part), st_part_leader_epoch(part), st_part_hw(part));
}

static void rec_del(gw_leaders_t *ld, const kp_uuid_t *id, int32_t p)
{
    bool found;
    size_t i = rec_find(ld, id, p, &found);
    if (!found)
        return;
    memmove(&ld->recs[i], &ld->recs[i + 1], (ld->nrecs - i - 1) * sizeof *ld->recs);
    ld->nrecs--;
}

bool gw_leaders_get(const gw_leaders_t *ld, kp_uuid_t id, int32_t p, int32_t *leader,
                    int32_t *epoch)
{
    bool found;
    size_t i = rec_find(ld, &id, p, &found);
    if (!found)
        return false;
    /* A takeover not started yet: no leader known here until it is. */
    *leader = ld->recs[i].take_pending ? -1 : ld->recs[i].leader;
    *epoch = ld->recs[i].epoch;
    return true;
}

/* Start the takeovers whose partition has appeared since their record. */
static void take_pending_start(gw_leaders_t *ld)
{
    for (size_t i = 0; i < ld->nrecs; i++) {
        rec_t *r = &ld->recs[i];
        if (!r->take_pending)
            continue;
        st_topic_t *topic = st_log_topic_by_id(ld->log, r->id);
        if (!topic || topic->deleting || r->p >= topic->nparts)
            continue;
        r->take_pending = false;
        start_take(ld, topic, r, true);
    }
}

uint64_t gw_leaders_moves(const gw_leaders_t *ld)
{
    return ld->moves;
}

uint64_t gw_leaders_takeovers(const gw_leaders_t *ld)
{
    return ld->takeovers;
}

/* ------------------------------------------------------------------ */
/* Reading and watching                                                */
/* ------------------------------------------------------------------ */

static void destroy(gw_leaders_t *ld)
{
    while (ld->waiters) {
        waiter_t *w = ld->waiters;
        ld->waiters = w->next;
        free(w);
    }
    free(ld->recs);
    free(ld);
}

/* Call the waiters whose revision has been applied. */
static void wake(gw_leaders_t *ld)
{
    waiter_t **pp = &ld->waiters;
    while (*pp) {
        waiter_t *w = *pp;
        if (w->rev > ld->applied_rev) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->done(w->arg);
        free(w);
        pp = &ld->waiters; /* done may have added or removed waiters */
    }
}

void gw_leaders_sync(gw_leaders_t *ld, int64_t rev, void (*done)(void *arg), void *arg)
{
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) {
        done(arg); /* the commit compares the fence again: fenced again, or through */
        return;
    }
    w->rev = rev;
    w->done = done;
    w->arg = arg;
    w->next = ld->waiters;
    ld->waiters = w;
    if (rev <= ld->applied_rev && ld->loaded)
        event_active(ld->wake_ev, EV_TIMEOUT, 0); /* not from inside the call */
}

static bool settle(gw_leaders_t *ld)
{
    ld->inflight--;
    if (ld->freed) {
        if (ld->inflight == 0)
            destroy(ld);
        return false;
    }
    return true;
}

static void arm(gw_leaders_t *ld, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ld->timer, &tv);
}

/* A state key's value as a record; false (logged) when it is none. */
static bool kv_rec(const st_kv_t *kv, rec_t *r)
{
    if (!gw_leaders_parse_key(kv->key, &r->id, &r->p))
        return false;
    if (!gw_leaders_parse(kv->val, kv->val_len, &r->leader, &r->epoch)) {
        gw_log_warn("leaders", "%s: a record that is not one, ignored", kv->key);
        return false;
    }
    r->mod_rev = kv->mod_rev;
    return true;
}

static void reload(gw_leaders_t *ld);

static void watch_cb(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg)
{
    gw_leaders_t *ld = arg;
    if (err != ST_OK) {
        gw_log_warn("leaders", "watch of the leader records broke (%s): reading them again",
                    st_err_str(err));
        st_meta_watch_cancel(ld->meta, ld->watch);
        ld->watch = NULL;
        reload(ld);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const st_kv_t *kv = &evs[i].kv;
        rec_t r;
        if (evs[i].type == ST_WATCH_DELETE) {
            if (gw_leaders_parse_key(kv->key, &r.id, &r.p))
                rec_del(ld, &r.id, r.p);
        } else if (kv_rec(kv, &r)) {
            rec_put(ld, &r);
        }
        if (kv->mod_rev > ld->applied_rev)
            ld->applied_rev = kv->mod_rev;
    }
    wake(ld);
}

static void loaded(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev, void *arg)
{
    (void)more;
    gw_leaders_t *ld = arg;
    if (!settle(ld))
        return;
    ld->reloading = false;
    if (err != ST_OK) {
        gw_log_warn("leaders", "cannot read the leader records: %s", st_err_str(err));
        if (!ld->loaded && now_ms() >= ld->give_up_ms) {
            ld->start_cb(err, ld->start_arg);
            return;
        }
        arm(ld, RETRY_MS); /* the timer sees no watch and reads again */
        return;
    }
    /* Records kept from before are compared with the new ones (a broken
     * watch missed changes); those gone meanwhile go. */
    ld->gen++;
    for (size_t i = 0; i < n; i++) {
        rec_t r;
        if (kv_rec(&kvs[i], &r))
            rec_put(ld, &r);
    }
    size_t k = 0;
    for (size_t i = 0; i < ld->nrecs; i++)
        if (ld->recs[i].gen == ld->gen)
            ld->recs[k++] = ld->recs[i];
    ld->nrecs = k;
    if (rev > ld->applied_rev)
        ld->applied_rev = rev;
    ld->watch = st_meta_watch(ld->meta, PREFIX, rev + 1, watch_cb, ld);
    if (!ld->watch)
        gw_log_warn("leaders", "cannot watch the leader records: out of memory");
    if (!ld->loaded) {
        ld->loaded = true;
        gw_log_info("leaders", "%zu partition leader record%s read", ld->nrecs,
                    ld->nrecs == 1 ? "" : "s");
        arm(ld, GW_LEADERS_TICK_MS);
        ld->start_cb(ST_OK, ld->start_arg);
    }
    wake(ld);
}

static void reload(gw_leaders_t *ld)
{
    if (ld->reloading)
        return;
    if (st_meta_range(ld->meta, PREFIX, true, 0, loaded, ld) != 0) {
        arm(ld, RETRY_MS);
        return;
    }
    ld->reloading = true;
    ld->inflight++;
}

/* ------------------------------------------------------------------ */
/* The controller                                                      */
/* ------------------------------------------------------------------ */

int32_t gw_leaders_hashed(const gw_cluster_t *cl, kp_uuid_t id, int32_t p)
{
    uint8_t key[20];
    memcpy(key, id.b, 16);
    key[16] = (uint8_t)((uint32_t)p >> 24);
    key[17] = (uint8_t)((uint32_t)p >> 16);
    key[18] = (uint8_t)((uint32_t)p >> 8);
    key[19] = (uint8_t)p;
    return gw_cluster_coordinator(cl, (const char *)key, sizeof key)->id;
}

static void tick(gw_leaders_t *ld);

static void written(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t nres,
                    void *arg)
{
    (void)res, (void)nres;
    wtxn_t *w = arg;
    gw_leaders_t *ld = w->ld;
    if (!settle(ld)) {
        free(w);
        return;
    }
    ld->writing = false;
    if (err != ST_OK) {
        gw_log_warn("leaders", "cannot write %zu leader record%s: %s", w->n, w->n == 1 ? "" : "s",
                    st_err_str(err));
    } else if (!ok) {
        gw_log_info("leaders", "leader records or fences changed meanwhile: comparing again");
    } else {
        for (size_t i = 0; i < w->n; i++) {
            w->recs[i].mod_rev = rev;
            rec_put(ld, &w->recs[i]);
        }
        ld->moves += w->moves;
        gw_log_info("leaders", "controller: %zu leader record%s written (%zu move%s)", w->n,
                    w->n == 1 ? "" : "s", w->moves, w->moves == 1 ? "" : "s");
        free(w);
        tick(ld); /* more may be waiting */
        return;
    }
    free(w);
}

/* The fence key's value of node @id among @kvs (a range of the nodes),
 * or NULL. */
static const st_kv_t *fence_of(const st_kv_t *kvs, size_t n, int32_t id)
{
    char key[64];
    snprintf(key, sizeof key, GW_CLUSTER_NODES_PREFIX "%" PRId32 "/fence", id);
    for (size_t i = 0; i < n; i++)
        if (strcmp(kvs[i].key, key) == 0)
            return &kvs[i];
    return NULL;
}

/* The record partition @p of @topic should have, when it differs from
 * the one known: into *@r, with *@old_found / *@old the known one. */
static bool wanted(gw_leaders_t *ld, const st_topic_t *topic, int32_t p, rec_t *r, rec_t *old,
                   bool *old_found)
{
    int32_t want = gw_leaders_hashed(ld->cl, topic->id, p);
    bool found;
    size_t i = rec_find(ld, &topic->id, p, &found);
    if (found && ld->recs[i].leader == want)
        return false;
    *old_found = found;
    if (found)
        *old = ld->recs[i];
    *r = (rec_t){
        .id = topic->id, .p = p, .leader = want, .epoch = found ? ld->recs[i].epoch + 1 : 0};
    return true;
}

/* Build and send one transaction of the records that differ (@kvs: the
 * nodes' keys, for the fences of the nodes partitions move away from). */
static void write_records(gw_leaders_t *ld, const st_kv_t *kvs, size_t nkvs)
{
    wtxn_t *w = calloc(1, sizeof *w);
    if (!w) {
        ld->writing = false;
        return;
    }
    w->ld = ld;
    st_cmp_t cmps[2 * GW_LEADERS_TXN_PARTS];
    st_op_t ops[2 * GW_LEADERS_TXN_PARTS];
    size_t ncmps = 0, nops = 0;
    int32_t bumped[GW_LEADERS_TXN_PARTS];
    size_t nbumped = 0;
    size_t nt = st_log_topic_count(ld->log);
    for (size_t t = 0; t < nt && w->n < GW_LEADERS_TXN_PARTS; t++) {
        st_topic_t *topic = st_log_topic_at(ld->log, t);
        if (!topic || topic->deleting)
            continue;
        for (int32_t p = 0; p < topic->nparts && w->n < GW_LEADERS_TXN_PARTS; p++) {
            rec_t old;
            bool found;
            size_t k = w->n;
            if (!wanted(ld, topic, p, &w->recs[k], &old, &found))
                continue;
            char hex[33];
            st_uuid_hex(topic->id, hex);
            snprintf(w->keys[k], KEY_MAX, "%s%s/%" PRId32 "/state", PREFIX, hex, p);
            size_t vlen =
                gw_leaders_format(w->vals[k], VAL_MAX, w->recs[k].leader, w->recs[k].epoch);
            cmps[ncmps++] = (st_cmp_t){.key = w->keys[k],
                                       .target = ST_CMP_MOD,
                                       .op = ST_CMP_EQ,
                                       .num = found ? old.mod_rev : 0};
            ops[nops++] = (st_op_t){.type = ST_OP_PUT,
                                    .key = w->keys[k],
                                    .val = (const uint8_t *)w->vals[k],
                                    .val_len = vlen};
            w->n++;
            if (!found)
                continue;
            w->moves++;
            gw_log_info("leaders",
                        "partition %s/%" PRId32 ": leader %" PRId32 " -> %" PRId32
                        ", epoch %" PRId32,
                        hex, p, old.leader, w->recs[k].leader, w->recs[k].epoch);
            /* The old leader's fence moves on, in the same transaction:
             * its commits in flight fail their compare. */
            bool seen = false;
            for (size_t b = 0; b < nbumped; b++)
                seen = seen || bumped[b] == old.leader;
            const st_kv_t *fence = seen ? NULL : fence_of(kvs, nkvs, old.leader);
            if (!fence || fence->val_len >= VAL_MAX - 24)
                continue;
            size_t inc = 0; /* the incarnation: the value up to its first '.' */
            while (inc < fence->val_len && fence->val[inc] != '.')
                inc++;
            size_t f = nbumped;
            bumped[nbumped++] = old.leader;
            snprintf(w->fkeys[f], sizeof w->fkeys[f], "%s", fence->key);
            int fl = snprintf(w->fvals[f], VAL_MAX, "%.*s.m%" PRId64, (int)inc,
                              (const char *)fence->val, fence->mod_rev);
            cmps[ncmps++] = (st_cmp_t){.key = w->fkeys[f],
                                       .target = ST_CMP_VALUE,
                                       .op = ST_CMP_EQ,
                                       .val = fence->val,
                                       .val_len = fence->val_len};
            ops[nops++] = (st_op_t){.type = ST_OP_PUT,
                                    .key = w->fkeys[f],
                                    .val = (const uint8_t *)w->fvals[f],
                                    .val_len = fl > 0 ? (size_t)fl : 0};
        }
    }
    if (w->n == 0) {
        free(w);
        ld->writing = false;
        return;
    }
    st_txn_t txn = {.cmps = cmps, .ncmps = ncmps, .success = ops, .nsuccess = nops};
    if (st_meta_txn(ld->meta, &txn, written, w) != 0) {
        free(w);
        ld->writing = false;
        return;
    }
    ld->inflight++;
}

/* ------------------------------------------------------------------ */
/* Records of new partitions                                           */
/* ------------------------------------------------------------------ */

/* A gw_leaders_ensure in progress: one transaction at a time. */
typedef struct ensure {
    gw_leaders_t *ld;
    kp_uuid_t id;
    int32_t next, end; /* the partitions not yet looked at */
    int32_t first;     /* the first of the transaction in flight */
    void (*done)(void *arg);
    void *arg;
    size_t n;
    rec_t recs[GW_LEADERS_TXN_PARTS];
    char keys[GW_LEADERS_TXN_PARTS][KEY_MAX];
    char vals[GW_LEADERS_TXN_PARTS][VAL_MAX];
} ensure_t;

static void ensure_step(ensure_t *e);

static void ensure_written(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res,
                           size_t nres, void *arg)
{
    ensure_t *e = arg;
    gw_leaders_t *ld = e->ld;
    if (!settle(ld)) {
        free(e);
        return;
    }
    if (err != ST_OK) {
        gw_log_warn("leaders", "cannot write %zu new partition leader record%s: %s", e->n,
                    e->n == 1 ? "" : "s", st_err_str(err));
    } else if (ok) {
        for (size_t i = 0; i < e->n; i++) {
            e->recs[i].mod_rev = rev;
            rec_put(ld, &e->recs[i]);
        }
    } else { /* another node wrote some first: the failure branch read them */
        bool any = false;
        for (size_t i = 0; i < nres; i++)
            for (size_t k = 0; k < res[i].n; k++) {
                rec_t r;
                if (kv_rec(&res[i].kvs[k], &r)) {
                    rec_put(ld, &r);
                    any = true;
                }
            }
        if (any) /* the others of this transaction again, without those */
            e->next = e->first;
    }
    ensure_step(e);
}

static void ensure_step(ensure_t *e)
{
    gw_leaders_t *ld = e->ld;
    st_cmp_t cmps[GW_LEADERS_TXN_PARTS];
    st_op_t ops[GW_LEADERS_TXN_PARTS], gets[GW_LEADERS_TXN_PARTS];
    char hex[33];
    st_uuid_hex(e->id, hex);
    e->n = 0;
    e->first = e->next;
    while (e->next < e->end && e->n < GW_LEADERS_TXN_PARTS) {
        int32_t p = e->next++, l, ep;
        if (gw_leaders_get(ld, e->id, p, &l, &ep))
            continue;
        size_t k = e->n++;
        e->recs[k] = (rec_t){.id = e->id, .p = p, .leader = gw_leaders_hashed(ld->cl, e->id, p)};
        snprintf(e->keys[k], KEY_MAX, "%s%s/%" PRId32 "/state", PREFIX, hex, p);
        size_t vlen = gw_leaders_format(e->vals[k], VAL_MAX, e->recs[k].leader, 0);
        cmps[k] = (st_cmp_t){.key = e->keys[k], .target = ST_CMP_MOD, .op = ST_CMP_EQ, .num = 0};
        ops[k] = (st_op_t){.type = ST_OP_PUT,
                           .key = e->keys[k],
                           .val = (const uint8_t *)e->vals[k],
                           .val_len = vlen};
        gets[k] = (st_op_t){.type = ST_OP_GET, .key = e->keys[k]};
    }
    if (e->n > 0) {
        st_txn_t txn = {.cmps = cmps,
                        .ncmps = e->n,
                        .success = ops,
                        .nsuccess = e->n,
                        .failure = gets,
                        .nfailure = e->n};
        if (st_meta_txn(ld->meta, &txn, ensure_written, e) == 0) {
            ld->inflight++;
            return;
        }
        gw_log_warn("leaders", "cannot write new partition leader records: out of memory");
    }
    /* Every partition has a record here, or writing them failed: the
     * controller writes the missing ones, and until then no node leads
     * them. */
    void (*done)(void *arg) = e->done;
    void *arg = e->arg;
    free(e);
    done(arg);
}

void gw_leaders_ensure(gw_leaders_t *ld, kp_uuid_t id, int32_t from, int32_t nparts,
                       void (*done)(void *arg), void *arg)
{
    ensure_t *e = malloc(sizeof *e);
    if (!e) {
        done(arg);
        return;
    }
    *e = (ensure_t){.ld = ld, .id = id, .next = from, .end = nparts, .done = done, .arg = arg};
    ensure_step(e);
}

static void nodes_read(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                       void *arg)
{
    (void)more, (void)rev;
    gw_leaders_t *ld = arg;
    if (!settle(ld))
        return;
    if (err != ST_OK) {
        gw_log_warn("leaders", "cannot read the nodes' fences: %s", st_err_str(err));
        ld->writing = false;
        return;
    }
    write_records(ld, kvs, n);
}

/* As controller, write the records that differ from the spread over the
 * live nodes (one transaction at a time; moves read the fences first). */
static void tick(gw_leaders_t *ld)
{
    if (!ld->loaded || ld->writing || !ld->watch)
        return;
    if (gw_cluster_controller(ld->cl) != ld->node_id ||
        gw_cluster_lease_state(ld->cl) != GW_LEASE_FRESH)
        return;
    bool any = false, moves = false;
    size_t nt = st_log_topic_count(ld->log);
    for (size_t t = 0; t < nt && !moves; t++) {
        st_topic_t *topic = st_log_topic_at(ld->log, t);
        if (!topic || topic->deleting)
            continue;
        for (int32_t p = 0; p < topic->nparts && !moves; p++) {
            rec_t r, old;
            bool found;
            if (wanted(ld, topic, p, &r, &old, &found)) {
                any = true;
                moves = found;
            }
        }
    }
    if (!any)
        return;
    ld->writing = true;
    if (!moves) {
        write_records(ld, NULL, 0);
        return;
    }
    if (st_meta_range(ld->meta, GW_CLUSTER_NODES_PREFIX, true, 0, nodes_read, ld) != 0) {
        ld->writing = false;
        return;
    }
    ld->inflight++;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_leaders_t *ld = arg;
    if (!ld->watch) {
        reload(ld); /* the first read, or a broken watch's, failed */
        if (ld->loaded)
            arm(ld, GW_LEADERS_TICK_MS);
        return;
    }
    take_pending_start(ld);
    tick(ld);
    arm(ld, GW_LEADERS_TICK_MS);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    wake(arg);
}

/* ------------------------------------------------------------------ */
/* Life                                                                */
/* ------------------------------------------------------------------ */

gw_leaders_t *gw_leaders_new(struct event_base *base, st_meta_t *meta, st_log_t *log,
                             gw_cluster_t *cl, int32_t node_id)
{
    gw_leaders_t *ld = calloc(1, sizeof *ld);
    if (!ld)
        return NULL;
    ld->base = base;
    ld->meta = meta;
    ld->log = log;
    ld->cl = cl;
    ld->node_id = node_id;
    ld->timer = evtimer_new(base, timer_cb, ld);
    ld->wake_ev = event_new(base, -1, 0, wake_cb, ld);
    if (!ld->timer || !ld->wake_ev) {
        if (ld->timer)
            event_free(ld->timer);
        if (ld->wake_ev)
            event_free(ld->wake_ev);
        free(ld);
        return NULL;
    }
    return ld;
}

void gw_leaders_start(gw_leaders_t *ld, int64_t give_up_ms, void (*cb)(st_err_t err, void *arg),
                      void *arg)
{
    ld->give_up_ms = give_up_ms;
    ld->start_cb = cb;
    ld->start_arg = arg;
    reload(ld);
}

void gw_leaders_free(gw_leaders_t *ld)
{
    if (!ld)
        return;
    if (ld->watch)
        st_meta_watch_cancel(ld->meta, ld->watch);
    ld->watch = NULL;
    event_free(ld->timer);
    ld->timer = NULL;
    event_free(ld->wake_ev);
    ld->wake_ev = NULL;
    if (ld->inflight > 0) {
        ld->freed = true;
        return;
    }
    destroy(ld);
}
