/*
 * st_log.c: the log's lifecycle (open with recovery, close, free), the
 * topic catalog, consumer offsets and shared helpers.  The write path is in
 * st_flush.c, the read path in st_read.c.
 */
#include "st_log_int.h"

#include "kp_crc32c.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX 1024
#define OFFSETS_TXN_OPS 64 /* DESIGN §5: multi-key writes in txns of <= 64 ops */

static size_t obj_hash(const char *key, size_t len)
{
    size_t h = 14695981039346656037u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211u;
    return h;
}

static void objtab_grow(st_log_t *log)
{
    size_t cap = log->objtab_cap ? 2 * log->objtab_cap : 1024;
    st_obj_t **t = calloc(cap, sizeof(*t));
    if (!t)
        return; /* longer chains */
    for (size_t i = 0; i < log->objtab_cap; i++) {
        for (st_obj_t *o = log->objtab[i], *n; o; o = n) {
            n = o->hnext;
            size_t b = obj_hash(o->key, strlen(o->key)) % cap;
            o->hnext = t[b];
            t[b] = o;
        }
    }
    free(log->objtab);
    log->objtab = t;
    log->objtab_cap = cap;
}

st_obj_t *st_log__obj_new(st_log_t *log, const char *key, size_t key_len, uint64_t size)
{
    if (log->objtab_n >= 2 * log->objtab_cap)
        objtab_grow(log);
    size_t b = log->objtab_cap ? obj_hash(key, key_len) % log->objtab_cap : 0;
    for (st_obj_t *o = log->objtab_cap ? log->objtab[b] : NULL; o; o = o->hnext) {
        if (strlen(o->key) == key_len && memcmp(o->key, key, key_len) == 0) {
            o->refs++;
            return o;
        }
    }
    st_obj_t *o = calloc(1, sizeof(*o));
    if (!o || !(o->key = strndup(key, key_len))) {
        free(o);
        return NULL;
    }
    o->size = size;
    o->refs = 1;
    o->log = log;
    st_list_init(&o->chunks);
    if (log->objtab_cap) {
        o->hnext = log->objtab[b];
        log->objtab[b] = o;
        log->objtab_n++;
    }
    return o;
}

void st_log__obj_unref(st_obj_t *o)
{
    if (!o || --o->refs > 0)
        return;
    st_log_t *log = o->log;
    if (log->objtab_cap) {
        st_obj_t **pp = &log->objtab[obj_hash(o->key, strlen(o->key)) % log->objtab_cap];
        while (*pp && *pp != o)
            pp = &(*pp)->hnext;
        if (*pp) {
            *pp = o->hnext;
            log->objtab_n--;
        }
    }
    free(o->key);
    free(o);
}

/* ---------------------------------------------------------------- topics */

static void part_free(st_log_t *log, st_part_t *part)
{
    st_log__prod_free(part);
    st_list_del(&part->ra_link);
    for (size_t i = 0; i < part->nchunks; i++)
        st_log__chunk_free(log, part->chunks[i]);
    free(part->chunks);
    free(part->epochs);
    free(part);
}

static void topic_free(st_log_t *log, st_topic_t *t)
{
    for (int32_t i = 0; i < t->nparts; i++)
        if (t->parts[i])
            part_free(log, t->parts[i]);
    for (size_t i = 0; i < t->nconfigs; i++) {
        free(t->configs[i].name);
        free(t->configs[i].value);
    }
    free(t->configs);
    free(t->parts);
    free(t->name);
    free(t);
}

static int cfg_cmp(const void *a, const void *b)
{
    return strcmp(((const st_topic_config_t *)a)->name, ((const st_topic_config_t *)b)->name);
}

st_part_t *st_log__part_new(st_log_t *log, st_topic_t *t, int32_t index)
{
    st_part_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->log = log;
    p->topic = t;
    p->index = index;
    p->ra_pos = -1;
    st_list_init(&p->ra_link);
    st_list_init(&p->dirty_link);
    st_list_init(&p->waiters);
    return p;
}

static st_topic_t *topic_new(st_log_t *log, const char *name, size_t name_len, kp_uuid_t id,
                             int32_t nparts)
{
    st_topic_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->name = strndup(name, name_len);
    t->id = id;
    t->nparts = nparts;
    t->parts = calloc((size_t)nparts, sizeof(*t->parts));
    if (!t->name || !t->parts)
        goto fail;
    for (int32_t i = 0; i < nparts; i++) {
        if (!(t->parts[i] = st_log__part_new(log, t, i)))
            goto fail;
    }
    return t;
fail:
    for (int32_t i = 0; t->parts && i < nparts; i++)
        free(t->parts[i]);
    free(t->parts);
    free(t->name);
    free(t);
    return NULL;
}

static bool topic_add_config(st_topic_t *t, const char *name, const char *value)
{
    st_topic_config_t *c = realloc(t->configs, (t->nconfigs + 1) * sizeof(*c));
    if (!c)
        return false;
    t->configs = c;
    c[t->nconfigs].name = strdup(name);
    c[t->nconfigs].value = strdup(value);
    if (!c[t->nconfigs].name || !c[t->nconfigs].value) {
        free(c[t->nconfigs].name);
        free(c[t->nconfigs].value);
        return false;
    }
    t->nconfigs++;
    qsort(t->configs, t->nconfigs, sizeof(*c), cfg_cmp);
    return true;
}

/* Index of the first topic whose name is >= @name. */
static size_t topic_lower_bound(const st_log_t *log, const char *name, size_t len)
{
    size_t lo = 0, hi = log->ntopics;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *m = log->topics[mid]->name;
        size_t mlen = strlen(m);
        int c = memcmp(m, name, mlen < len ? mlen : len);
        if (c < 0 || (c == 0 && mlen < len))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool topic_insert(st_log_t *log, st_topic_t *t)
{
    if (log->ntopics == log->topics_cap) {
        size_t cap = log->topics_cap ? log->topics_cap * 2 : 16;
        st_topic_t **n = realloc(log->topics, cap * sizeof(*n));
        if (!n)
            return false;
        log->topics = n;
        log->topics_cap = cap;
    }
    size_t i = topic_lower_bound(log, t->name, strlen(t->name));
    memmove(&log->topics[i + 1], &log->topics[i], (log->ntopics - i) * sizeof(*log->topics));
    log->topics[i] = t;
    log->ntopics++;
    return true;
}

static void topic_remove(st_log_t *log, st_topic_t *t)
{
    for (size_t i = 0; i < log->ntopics; i++) {
        if (log->topics[i] == t) {
            memmove(&log->topics[i], &log->topics[i + 1],
                    (log->ntopics - i - 1) * sizeof(*log->topics));
            log->ntopics--;
            return;
        }
    }
}

st_topic_t *st_log_topic(st_log_t *log, const char *name, size_t name_len)
{
    size_t i = topic_lower_bound(log, name, name_len);
    if (i < log->ntopics && strlen(log->topics[i]->name) == name_len &&
        memcmp(log->topics[i]->name, name, name_len) == 0)
        return log->topics[i];
    return NULL;
}

st_topic_t *st_log_topic_by_id(st_log_t *log, kp_uuid_t id)
{
    for (size_t i = 0; i < log->ntopics; i++)
        if (memcmp(log->topics[i]->id.b, id.b, 16) == 0)
            return log->topics[i];
    return NULL;
}

st_topic_t *st_log_topic_at(st_log_t *log, size_t i)
{
    return i < log->ntopics ? log->topics[i] : NULL;
}

size_t st_log_topic_count(const st_log_t *log)
{
    return log->ntopics;
}

/* Topic value: text lines "id=<hex>", "partitions=<n>", "config.<k>=<v>". */
static char *topic_encode(const st_topic_t *t, size_t *len)
{
    char hex[33];
    st_uuid_hex(t->id, hex);
    size_t cap = 128;
    for (size_t i = 0; i < t->nconfigs; i++)
        cap += strlen(t->configs[i].name) + strlen(t->configs[i].value) + 16;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t n = (size_t)snprintf(s, cap, "id=%s\npartitions=%" PRId32 "\n", hex, t->nparts);
    for (size_t i = 0; i < t->nconfigs; i++)
        n += (size_t)snprintf(s + n, cap - n, "config.%s=%s\n", t->configs[i].name,
                              t->configs[i].value);
    *len = n;
    return s;
}

char *st_log__topic_encode(const st_topic_t *t, size_t *len)
{
    return topic_encode(t, len);
}

static st_topic_t *topic_decode(st_log_t *log, const char *name, const uint8_t *val, size_t len)
{
    char *text = strndup((const char *)val, len);
    if (!text)
        return NULL;
    kp_uuid_t id;
    long nparts = -1;
    bool have_id = false;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "id=", 3) == 0)
            have_id = st_uuid_parse(l + 3, &id);
        else if (strncmp(l, "partitions=", 11) == 0)
            nparts = strtol(l + 11, NULL, 10);
    }
    st_topic_t *t = NULL;
    if (have_id && nparts >= 1 && nparts <= 1000000)
        t = topic_new(log, name, strlen(name), id, (int32_t)nparts);
    /* second pass for configs, now that the topic exists */
    free(text);
    text = strndup((const char *)val, len);
    for (char *l = strtok_r(text, "\n", &save); t && l; l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (strncmp(l, "config.", 7) == 0 && eq) {
            *eq = '\0';
            topic_add_config(t, l + 7, eq + 1);
        }
    }
    free(text);
    return t;
}

static void topic_key(char *key, size_t cap, const char *name, size_t len)
{
    snprintf(key, cap, "%s/topics/", ST_KEY_ROOT);
    st_key_escape(key, cap, name, len);
}

void st_log__topic_key(char *key, size_t cap, const char *name, size_t len)
{
    topic_key(key, cap, name, len);
}

static void topics_unwatch(st_log_t *log);
static void topics_read(st_log_t *log);

typedef struct create_op {
    st_log_t *log;
    st_topic_t *topic; /* the new topic; for a waiter, the one in flight */
    st_topic_cb cb;
    void *arg;
    char *value;
    struct create_op *next; /* in log->create_waiters */
} create_op_t;

/* The topic of that name whose creation transaction is in flight (not yet
 * visible), or NULL. */
static st_topic_t *creating_find(const st_log_t *log, const char *name, size_t len)
{
    for (size_t i = 0; i < log->ncreating; i++)
        if (strlen(log->creating[i]->name) == len && memcmp(log->creating[i]->name, name, len) == 0)
            return log->creating[i];
    return NULL;
}

/* Answer the creates that waited for @t's: ST_ERR_EXISTS once it is in the
 * catalog, else the error it ended with. */
static void create_wake_waiters(st_log_t *log, const st_topic_t *t, st_err_t err)
{
    create_op_t **pp = &log->create_waiters;
    while (*pp) {
        create_op_t *w = *pp;
        if (w->topic != t) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->cb(err == ST_OK ? ST_ERR_EXISTS : err, NULL, w->arg);
        free(w);
        st_log__op_done(log);
    }
}

static void creating_remove(st_log_t *log, st_topic_t *t)
{
    for (size_t i = 0; i < log->ncreating; i++) {
        if (log->creating[i] == t) {
            log->creating[i] = log->creating[--log->ncreating];
            return;
        }
    }
}

static void create_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg)
{
    (void)rev, (void)res, (void)n;
    create_op_t *op = arg;
    st_log_t *log = op->log;
    st_topic_t *t = op->topic;
    creating_remove(log, t);
    if (err == ST_OK && !ok) {
        err = ST_ERR_EXISTS;
        /* Created by another node: its watch event was skipped while this
         * creation was in flight, so read the catalog again. */
        topics_unwatch(log);
        topics_read(log);
    }
    if (err == ST_OK) {
        if (!topic_insert(log, t))
            err = ST_ERR_NOMEM;
    }
    op->cb(err, err == ST_OK ? t : NULL, op->arg);
    create_wake_waiters(log, t, err);
    if (err != ST_OK)
        topic_free(log, t);
    free(op->value);
    free(op);
    st_log__op_done(log);
}

static void create_exists(void *arg)
{
    create_op_t *op = arg;
    st_log_t *log = op->log;
    op->cb(ST_ERR_EXISTS, NULL, op->arg);
    free(op);
    st_log__op_done(log);
}

int st_log_create_topic(st_log_t *log, const char *name, size_t name_len, int32_t nparts,
                        const st_topic_config_t *configs, size_t nconfigs, st_topic_cb cb,
                        void *arg)
{
    if (nparts == -1)
        nparts = log->cfg.default_partitions;
    if (!log->open || log->closing || nparts < 1 || name_len == 0 || name_len > 249)
        return -1;
    st_topic_t *t = NULL;
    create_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    st_topic_t *inflight = creating_find(log, name, name_len);
    if (inflight) {
        /* Answered when that creation ends, so that the caller then finds
         * the topic (a request pipelined behind the one creating it). */
        op->log = log;
        op->topic = inflight;
        op->cb = cb;
        op->arg = arg;
        op->next = log->create_waiters;
        log->create_waiters = op;
        log->async_ops++;
        return 0;
    }
    if (st_log_topic(log, name, name_len)) {
        op->log = log;
        op->cb = cb;
        op->arg = arg;
        if (st_log__defer(log, create_exists, op) != 0)
            goto fail;
        log->async_ops++;
        return 0;
    }
    t = topic_new(log, name, name_len, st_uuid_random(), nparts);
    if (!t)
        goto fail;
    for (size_t i = 0; i < nconfigs; i++)
        if (!topic_add_config(t, configs[i].name, configs[i].value))
            goto fail;
    size_t vlen;
    op->value = topic_encode(t, &vlen);
    if (!op->value)
        goto fail;
    char key[KEY_MAX];
    topic_key(key, sizeof key, name, name_len);
    st_cmp_t cmp = {.key = key, .target = ST_CMP_VERSION, .op = ST_CMP_EQ, .num = 0};
    st_op_t put = {.type = ST_OP_PUT, .key = key, .val = (uint8_t *)op->value, .val_len = vlen};
    st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &put, .nsuccess = 1};
    op->log = log;
    op->topic = t;
    op->cb = cb;
    op->arg = arg;
    st_topic_t **cr = realloc(log->creating, (log->ncreating + 1) * sizeof(*cr));
    if (!cr)
        goto fail;
    log->creating = cr;
    if (st_meta_txn(log->meta, &txn, create_done, op) != 0)
        goto fail;
    /* Invisible until committed, but a second create of the name fails. */
    log->creating[log->ncreating++] = t;
    log->async_ops++;
    return 0;
fail:
    if (t)
        topic_free(log, t);
    if (op)
        free(op->value);
    free(op);
    return -1;
}

typedef struct delete_op {
    st_log_t *log;
    st_topic_t *topic;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
} delete_op_t;

static void delete_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg)
{
    (void)ok, (void)rev, (void)res, (void)n;
    delete_op_t *op = arg;
    st_log_t *log = op->log;
    op->cb(err, op->arg);
    free(op);
    st_log__op_done(log);
}

/* The topic vanishes at once: later lookups miss it, pending appends fail,
 * parked fetches wake.  Its memory waits in the graveyard (room for it
 * reserved by the caller) until no flush or read can still refer to it. */
static void topic_forget(st_log_t *log, st_topic_t *t)
{
    t->deleting = true;
    topic_remove(log, t);
    log->graveyard[log->ngraveyard++] = t;
    for (int32_t i = 0; i < t->nparts; i++) {
        st_log__fail_pending(t->parts[i], ST_ERR_NOT_FOUND);
        st_log__wake(t->parts[i]);
    }
}

int st_log_delete_topic(st_log_t *log, st_topic_t *t, void (*cb)(st_err_t err, void *arg),
                        void *arg)
{
    if (!log->open || t->deleting)
        return -1;
    st_topic_t **g = realloc(log->graveyard, (log->ngraveyard + 1) * sizeof(*g));
    delete_op_t *op = calloc(1, sizeof(*op));
    if (!g || !op) {
        if (g)
            log->graveyard = g;
        free(op);
        return -1;
    }
    log->graveyard = g;
    char key[KEY_MAX], parts[KEY_MAX], producers[KEY_MAX], leaders[KEY_MAX], hex[33];
    topic_key(key, sizeof key, t->name, strlen(t->name));
    st_uuid_hex(t->id, hex);
    snprintf(parts, sizeof parts, "%s/partitions/%s/", ST_KEY_ROOT, hex);
    snprintf(producers, sizeof producers, "%s/producers/%s/", ST_KEY_ROOT, hex);
    /* The partitions' leader records (the gateway's, docs/object-format.md). */
    snprintf(leaders, sizeof leaders, "%s/leaders/%s/", ST_KEY_ROOT, hex);
    st_op_t ops[4] = {
        {.type = ST_OP_DEL, .key = key},
        {.type = ST_OP_DEL_PREFIX, .key = parts},
        {.type = ST_OP_DEL_PREFIX, .key = producers},
        {.type = ST_OP_DEL_PREFIX, .key = leaders},
    };
    st_txn_t txn = {.success = ops, .nsuccess = 4};
    op->log = log;
    op->topic = t;
    op->cb = cb;
    op->arg = arg;
    if (st_meta_txn(log->meta, &txn, delete_done, op) != 0) {
        free(op);
        return -1;
    }
    log->async_ops++;
    topic_forget(log, t);
    return 0;
}

void st_log__op_done(st_log_t *log)
{
    log->async_ops--;
    if (log->async_ops == 0 && st_list_empty(&log->flushes)) {
        for (size_t i = 0; i < log->ngraveyard; i++)
            topic_free(log, log->graveyard[i]);
        log->ngraveyard = 0;
    }
    if (log->closing && log->close_cb && log->async_ops == 0 && st_list_empty(&log->flushes) &&
        st_list_empty(&log->dirty)) {
        void (*cb)(void *) = log->close_cb;
        log->close_cb = NULL;
        cb(log->close_arg);
    }
}

/* ---------------------------------------------------------------- helpers */

typedef struct defer {
    void (*fn)(void *arg);
    void *arg;
} defer_t;

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    defer_t d = *(defer_t *)arg;
    free(arg);
    d.fn(d.arg);
}

void st_log__logf(const st_log_t *log, const char *fmt, ...)
{
    if (!log->cfg.log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log->cfg.log(log->cfg.log_arg, line);
}

int st_log__defer(st_log_t *log, void (*fn)(void *arg), void *arg)
{
    defer_t *d = malloc(sizeof(*d));
    if (!d)
        return -1;
    d->fn = fn;
    d->arg = arg;
    struct timeval zero = {0, 0};
    if (event_base_once(log->base, -1, EV_TIMEOUT, defer_cb, d, &zero) != 0) {
        free(d);
        return -1;
    }
    return 0;
}

void st_log_stats(const st_log_t *log, st_log_stats_t *out)
{
    *out = log->stats;
    out->index_keys = out->index_keys_max_part = 0;
    for (size_t i = 0; i < log->ntopics; i++) {
        const st_topic_t *t = log->topics[i];
        for (int32_t p = 0; p < t->nparts; p++) {
            size_t k = 0;
            for (size_t c = 0; c < t->parts[p]->nchunks; c++)
                k += t->parts[p]->chunks[c]->folded;
            out->index_keys += k;
            if (k > out->index_keys_max_part)
                out->index_keys_max_part = k;
        }
    }
}

const char *st_log_cluster_id(const st_log_t *log)
{
    return log->cluster_id;
}

const char *st_log_open_error(const st_log_t *log)
{
    return log->open_error;
}

/* ---------------------------------------------------------------- catalog watch */

/*
 * Topics created by other nodes sharing the metadata store: after open, the
 * log reads /nuthatch/topics/ and watches the prefix from the revision
 * after that read; a topic key whose name the log does not know (and is not
 * creating) is added with empty partitions, and a known topic whose key is
 * deleted (by another node) goes as after st_log_delete_topic.  A failed
 * read or a broken watch is retried every TOPICS_RETRY_MS with a fresh read
 * and watch (a deletion missed meanwhile is not noticed).  Partitions added
 * to a known topic and its configuration overrides, changed elsewhere, are
 * followed too.
 */
#define TOPICS_RETRY_MS 1000

static void topics_read(st_log_t *log);

/* Whether @a and @b hold the same overrides (both sorted by name). */
static bool configs_equal(const st_topic_t *a, const st_topic_t *b)
{
    if (a->nconfigs != b->nconfigs)
        return false;
    for (size_t i = 0; i < a->nconfigs; i++)
        if (strcmp(a->configs[i].name, b->configs[i].name) != 0 ||
            strcmp(a->configs[i].value, b->configs[i].value) != 0)
            return false;
    return true;
}

/* A known topic's key changed: partitions added elsewhere (CreatePartitions
 * through another node) are added here, empty (their records have not been
 * appended to: only their recorded leader appends, once it knows them), and
 * configuration overrides changed elsewhere (AlterConfigs through another
 * node) replace this node's, so that it applies them and its own next
 * change compares with the stored value. */
static void topics_grow(st_log_t *log, st_topic_t *known, const char *name, const uint8_t *val,
                        size_t len)
{
    st_topic_t *t = topic_decode(log, name, val, len);
    if (t && memcmp(t->id.b, known->id.b, sizeof t->id.b) == 0 && t->nparts > known->nparts) {
        st_part_t **parts = calloc((size_t)t->nparts, sizeof(*parts));
        int32_t i = known->nparts;
        if (parts) {
            memcpy(parts, known->parts, (size_t)known->nparts * sizeof(*parts));
            for (; i < t->nparts; i++)
                if (!(parts[i] = st_log__part_new(log, known, i)))
                    break;
        }
        if (parts && i == t->nparts) {
            free(known->parts);
            known->parts = parts;
            known->nparts = t->nparts;
        } else if (parts) {
            while (i-- > known->nparts)
                free(parts[i]);
            free(parts);
        }
    }
    if (t && memcmp(t->id.b, known->id.b, sizeof t->id.b) == 0 && !configs_equal(t, known)) {
        st_topic_config_t *c = known->configs;
        size_t nc = known->nconfigs;
        known->configs = t->configs;
        known->nconfigs = t->nconfigs;
        t->configs = c; /* freed with t */
        t->nconfigs = nc;
    }
    if (t)
        topic_free(log, t);
}

/* Add the topic of key @key (under @prefix) unless its name is known. */
static void topics_learn(st_log_t *log, const char *key, size_t plen, const uint8_t *val,
                         size_t len)
{
    if (strlen(key) <= plen)
        return;
    char *name = strdup(key + plen);
    if (!name || !st_key_unescape(name)) {
        free(name);
        return;
    }
    size_t nlen = strlen(name);
    st_topic_t *known = st_log_topic(log, name, nlen);
    if (known && !known->deleting) {
        topics_grow(log, known, name, val, len);
    } else if (!known && !creating_find(log, name, nlen)) {
        st_topic_t *t = topic_decode(log, name, val, len);
        if (t && st_log_topic_by_id(log, t->id)) {
            topic_free(log, t); /* a topic being deleted here, created again elsewhere */
            t = NULL;
        }
        if (t && !topic_insert(log, t))
            topic_free(log, t);
    }
    free(name);
}

static void topic_forget(st_log_t *log, st_topic_t *t);

/* The topic of key @key was deleted (by another node: this node's own
 * deletions have removed it already). */
static void topics_drop(st_log_t *log, const char *key, size_t plen)
{
    if (strlen(key) <= plen)
        return;
    char *name = strdup(key + plen);
    if (!name || !st_key_unescape(name)) {
        free(name);
        return;
    }
    st_topic_t *t = st_log_topic(log, name, strlen(name));
    free(name);
    if (!t || t->deleting)
        return;
    st_topic_t **g = realloc(log->graveyard, (log->ngraveyard + 1) * sizeof(*g));
    if (!g)
        return; /* kept until a restart */
    log->graveyard = g;
    topic_forget(log, t);
}

static void topics_unwatch(st_log_t *log)
{
    if (log->topics_watch)
        st_meta_watch_cancel(log->meta, log->topics_watch);
    log->topics_watch = NULL;
    if (log->topics_retry)
        event_del(log->topics_retry);
}

static void topics_retry_later(st_log_t *log)
{
    if (log->closing || !log->topics_retry)
        return;
    struct timeval tv = {TOPICS_RETRY_MS / 1000, (TOPICS_RETRY_MS % 1000) * 1000};
    event_add(log->topics_retry, &tv);
}

static void topics_watch_cb(st_err_t err, const st_watch_event_t *evs, size_t n, void *arg)
{
    st_log_t *log = arg;
    if (err != ST_OK) {
        st_meta_watch_cancel(log->meta, log->topics_watch);
        log->topics_watch = NULL;
        topics_retry_later(log);
        return;
    }
    char prefix[KEY_MAX];
    snprintf(prefix, sizeof prefix, "%s/topics/", ST_KEY_ROOT);
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < n && !log->closing; i++) {
        if (strncmp(evs[i].kv.key, prefix, plen) != 0)
            continue;
        if (evs[i].type == ST_WATCH_PUT)
            topics_learn(log, evs[i].kv.key, plen, evs[i].kv.val, evs[i].kv.val_len);
        else
            topics_drop(log, evs[i].kv.key, plen);
    }
}

static void topics_got_again(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                             void *arg)
{
    (void)more;
    st_log_t *log = arg;
    log->topics_reading = false;
    if (!log->closing) {
        if (err != ST_OK) {
            topics_retry_later(log);
        } else {
            char prefix[KEY_MAX];
            snprintf(prefix, sizeof prefix, "%s/topics/", ST_KEY_ROOT);
            size_t plen = strlen(prefix);
            for (size_t i = 0; i < n; i++)
                topics_learn(log, kvs[i].key, plen, kvs[i].val, kvs[i].val_len);
            log->topics_watch = st_meta_watch(log->meta, prefix, rev + 1, topics_watch_cb, log);
            if (!log->topics_watch)
                topics_retry_later(log);
        }
    }
    st_log__op_done(log);
}

static void topics_read(st_log_t *log)
{
    if (log->closing || log->topics_reading || log->topics_watch)
        return;
    char prefix[KEY_MAX];
    snprintf(prefix, sizeof prefix, "%s/topics/", ST_KEY_ROOT);
    if (st_meta_range(log->meta, prefix, true, 0, topics_got_again, log) != 0) {
        topics_retry_later(log);
        return;
    }
    log->topics_reading = true;
    log->async_ops++;
}

static void topics_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    topics_read(arg);
}

static void topics_watch_start(st_log_t *log)
{
    if (!log->topics_retry)
        log->topics_retry = event_new(log->base, -1, 0, topics_retry_cb, log);
    topics_read(log);
}

/* ---------------------------------------------------------------- lifecycle */

st_log_t *st_log_new(struct event_base *base, st_objstore_t *os, st_meta_t *meta,
                     const st_log_cfg_t *cfg)
{
    st_log_t *log = calloc(1, sizeof(*log));
    if (!log)
        return NULL;
    log->base = base;
    log->os = os;
    log->meta = meta;
    log->cfg = *cfg;
    if (cfg->cluster_id)
        snprintf(log->want_cluster_id, sizeof log->want_cluster_id, "%s", cfg->cluster_id);
    log->cfg.cluster_id = NULL; /* borrowed only during st_log_new */
    if (log->cfg.flush_max_inflight < 1)
        log->cfg.flush_max_inflight = 1;
    if (log->cfg.default_partitions < 1)
        log->cfg.default_partitions = 1;
    st_list_init(&log->dirty);
    st_list_init(&log->flushes);
    st_list_init(&log->tail_lru);
    st_list_init(&log->cache_lru);
    st_list_init(&log->cache_passed);
    st_list_init(&log->ra_blocked);
    st_list_init(&log->space_waiters);
    log->kick = event_new(base, -1, 0, st_log__flush_cb, log);
    if (!log->kick || st_log__life_new(log) != 0) {
        if (log->kick)
            event_free(log->kick);
        free(log);
        return NULL;
    }
    return log;
}

void st_log_free(st_log_t *log)
{
    if (!log)
        return;
    while (!st_list_empty(&log->flushes)) {
        st_flush_t *f = st_container_of(log->flushes.next, st_flush_t, link);
        st_list_del(&f->link);
        for (size_t i = 0; i < f->nparts; i++) {
            for (st_pend_t *b = f->parts[i].batches, *nx; b; b = nx) {
                nx = b->next;
                st_log__pend_drop(b);
            }
        }
        free(f->parts);
        free(f->prods);
        st_buf_unref(f->obj);
        free(f);
    }
    for (size_t i = 0; i < log->ntopics; i++) {
        st_topic_t *t = log->topics[i];
        for (int32_t p = 0; p < t->nparts; p++)
            for (st_pend_t *b = t->parts[p]->pend_head, *nx; b; b = nx) {
                nx = b->next;
                st_log__pend_drop(b);
            }
        topic_free(log, t);
    }
    for (size_t i = 0; i < log->ngraveyard; i++)
        topic_free(log, log->graveyard[i]);
    for (size_t i = 0; i < log->ncreating; i++)
        topic_free(log, log->creating[i]);
    free(log->topics);
    free(log->graveyard);
    free(log->creating);
    event_free(log->kick);
    if (log->topics_watch)
        st_meta_watch_cancel(log->meta, log->topics_watch);
    if (log->topics_retry)
        event_free(log->topics_retry);
    st_log__life_free(log);
    st_log__pids_free(log);
    free(log->objtab);
    free(log);
}

void st_log_close(st_log_t *log, void (*cb)(void *arg), void *arg)
{
    log->closing = true;
    st_log__life_stop(log);
    topics_unwatch(log);
    log->close_cb = cb;
    log->close_arg = arg;
    st_log__kick(log); /* flush what is pending now */
    log->async_ops++;  /* balanced below: reports completion when idle */
    st_log__op_done(log);
}

/* ---------------------------------------------------------------- open */

typedef struct open_op {
    st_log_t *log;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
    int tries;
    bool ahead_checked; /* cfg.commit_ahead: manifests' objects checked */
    char key[KEY_MAX];
    char val[72];
    st_kv_t *mkvs; /* the manifests read, until the index is loaded (owned) */
    size_t nmkvs;
} open_op_t;

static void mkvs_free(open_op_t *op)
{
    for (size_t i = 0; i < op->nmkvs; i++) {
        free((char *)op->mkvs[i].key);
        free((uint8_t *)op->mkvs[i].val);
    }
    free(op->mkvs);
    op->mkvs = NULL;
    op->nmkvs = 0;
}

static void open_finish(open_op_t *op, st_err_t err)
{
    mkvs_free(op);
    if (err == ST_OK) {
        op->log->open = true;
        topics_watch_start(op->log);
    } else if (!op->log->open_error[0])
        snprintf(op->log->open_error, sizeof op->log->open_error, "metadata store: %s",
                 st_err_str(err));
    op->cb(err, op->arg);
    free(op);
}

static void open_cluster_id(open_op_t *op);
static void read_manifests(open_op_t *op);
static void put_cluster_id(open_op_t *op);
static void open_incarnation(open_op_t *op);
static void open_topics(open_op_t *op);

int st_log_open(st_log_t *log, void (*cb)(st_err_t err, void *arg), void *arg)
{
    open_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    log->open_error[0] = '\0';
    open_cluster_id(op);
    return 0;
}

static void cluster_id_put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res,
                                size_t n, void *arg)
{
    (void)rev, (void)res, (void)n, (void)ok;
    open_op_t *op = arg;
    if (err != ST_OK)
        return open_finish(op, err);
    if (++op->tries > 5)
        return open_finish(op, ST_ERR_CONFLICT);
    open_cluster_id(op); /* read back what won */
}

static void cluster_id_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                           void *arg)
{
    (void)more, (void)rev;
    open_op_t *op = arg;
    if (err != ST_OK)
        return open_finish(op, err);
    st_log_t *log = op->log;
    if (n == 1 && kvs[0].val_len > 0 && kvs[0].val_len < sizeof log->cluster_id) {
        memcpy(log->cluster_id, kvs[0].val, kvs[0].val_len);
        log->cluster_id[kvs[0].val_len] = '\0';
        if (log->want_cluster_id[0] && strcmp(log->want_cluster_id, log->cluster_id) != 0) {
            /* Like Kafka: data of another cluster is not served by mistake. */
            snprintf(log->open_error, sizeof log->open_error,
                     "the metadata store belongs to cluster '%s', not the configured '%s'",
                     log->cluster_id, log->want_cluster_id);
            return open_finish(op, ST_ERR_INVALID);
        }
        op->tries = 0;
        return open_incarnation(op);
    }
    if (log->want_cluster_id[0]) {
        snprintf(op->val, sizeof op->val, "%s", log->want_cluster_id);
        return put_cluster_id(op);
    }
    /* First start: a random id, base64url without padding (22 chars). */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    kp_uuid_t u = st_uuid_random();
    uint8_t in[18] = {0};
    memcpy(in, u.b, 16);
    size_t o = 0;
    for (size_t i = 0; i < 18 && o < 22; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        for (int k = 3; k >= 0 && o < 22; k--)
            op->val[o++] = b64[(v >> (6 * k)) & 63];
    }
    op->val[22] = '\0';
    put_cluster_id(op);
}

/* Keep op->val as the cluster id unless another start put one first. */
static void put_cluster_id(open_op_t *op)
{
    st_cmp_t cmp = {.key = op->key, .target = ST_CMP_VERSION, .op = ST_CMP_EQ, .num = 0};
    st_op_t put = {
        .type = ST_OP_PUT, .key = op->key, .val = (uint8_t *)op->val, .val_len = strlen(op->val)};
    st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &put, .nsuccess = 1};
    if (st_meta_txn(op->log->meta, &txn, cluster_id_put_done, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

static void open_cluster_id(open_op_t *op)
{
    snprintf(op->key, sizeof op->key, "%s/cluster/id", ST_KEY_ROOT);
    if (st_meta_range(op->log->meta, op->key, false, 0, cluster_id_got, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

static void incarnation_put_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res,
                                 size_t n, void *arg)
{
    (void)rev, (void)res, (void)n;
    open_op_t *op = arg;
    if (err != ST_OK)
        return open_finish(op, err);
    if (!ok) {
        if (++op->tries > 5)
            return open_finish(op, ST_ERR_CONFLICT);
        return open_incarnation(op); /* another start of this node raced us */
    }
    open_topics(op);
}

static void incarnation_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                            void *arg)
{
    (void)more, (void)rev;
    open_op_t *op = arg;
    st_log_t *log = op->log;
    if (err != ST_OK)
        return open_finish(op, err);
    int64_t cur = 0, mod = 0;
    if (n == 1) {
        char tmp[32] = {0};
        memcpy(tmp, kvs[0].val, kvs[0].val_len < 31 ? kvs[0].val_len : 31);
        cur = strtoll(tmp, NULL, 10);
        mod = kvs[0].mod_rev;
    }
    log->incarnation = cur + 1;
    log->next_seq = 1;
    snprintf(op->val, sizeof op->val, "%" PRId64, log->incarnation);
    snprintf(log->fence_key, sizeof log->fence_key, "%s/nodes/%" PRId32 "/fence", ST_KEY_ROOT,
             log->cfg.node_id);
    snprintf(log->fence_val, sizeof log->fence_val, "%" PRId64, log->incarnation);
    /* Bumping the fence fences out any older incarnation of this node
     * still running: its next commit fails the fence compare. */
    st_cmp_t cmp = {.key = op->key, .target = ST_CMP_MOD, .op = ST_CMP_EQ, .num = mod};
    st_op_t puts[2] = {
        {.type = ST_OP_PUT, .key = op->key, .val = (uint8_t *)op->val, .val_len = strlen(op->val)},
        {.type = ST_OP_PUT,
         .key = log->fence_key,
         .val = (uint8_t *)log->fence_val,
         .val_len = strlen(log->fence_val)},
    };
    st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = puts, .nsuccess = 2};
    if (st_meta_txn(log->meta, &txn, incarnation_put_done, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

static void open_incarnation(open_op_t *op)
{
    snprintf(op->key, sizeof op->key, "%s/counters/incarnation/%" PRId32, ST_KEY_ROOT,
             op->log->cfg.node_id);
    if (st_meta_range(op->log->meta, op->key, false, 0, incarnation_got, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

static void topics_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                       void *arg)
{
    (void)more, (void)rev;
    open_op_t *op = arg;
    st_log_t *log = op->log;
    if (err != ST_OK)
        return open_finish(op, err);
    size_t plen = strlen(op->key);
    for (size_t i = 0; i < n; i++) {
        char *name = strdup(kvs[i].key + plen);
        if (!name || !st_key_unescape(name)) {
            free(name);
            continue;
        }
        st_topic_t *t = topic_decode(log, name, kvs[i].val, kvs[i].val_len);
        free(name);
        if (t && !topic_insert(log, t))
            topic_free(log, t);
    }
    read_manifests(op);
}

static void open_topics(open_op_t *op)
{
    snprintf(op->key, sizeof op->key, "%s/topics/", ST_KEY_ROOT);
    if (st_meta_range(op->log->meta, op->key, true, 0, topics_got, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

/* One chunk of a committed manifest, for applying chunks in offset order. */
typedef struct mchunk {
    const st_manifest_t *m;
    st_obj_t *obj; /* the manifest's object (borrowed from the manifest's reference) */
    size_t i;      /* chunk index in m */
} mchunk_t;

static int mchunk_cmp(const void *a, const void *b)
{
    const st_chunk_desc_t *x = &((const mchunk_t *)a)->m->chunks[((const mchunk_t *)a)->i];
    const st_chunk_desc_t *y = &((const mchunk_t *)b)->m->chunks[((const mchunk_t *)b)->i];
    int c = memcmp(x->topic_id.b, y->topic_id.b, sizeof x->topic_id.b);
    if (c != 0)
        return c;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->base_offset < y->base_offset ? -1 : x->base_offset > y->base_offset;
}

/* Apply one manifest chunk to the partition it names. */
static void apply_chunk(st_log_t *log, const mchunk_t *mc)
{
    const st_manifest_t *m = mc->m;
    const st_chunk_desc_t *d = &m->chunks[mc->i];
    st_topic_t *t = st_log_topic_by_id(log, d->topic_id);
    if (!mc->obj || !t || d->partition < 0 || d->partition >= t->nparts)
        return; /* a deleted topic's data, reclaimed by GC */
    st_part_t *part = t->parts[d->partition];
    if (d->base_offset < part->hw)
        return; /* already in the folded index */
    if (d->last_offset < part->log_start)
        return; /* folded and dropped (retention) after the manifests were read */
    if (st_log__chunk_add(part, mc->obj, d)) {
        st_log__chunk_prods(part, m->prods, m->nprods, (uint32_t)mc->i);
        part->hw = part->leo = d->last_offset + 1;
        for (size_t k = 0; k < m->nprods; k++) /* producer entries are in chunk order */
            if (m->prods[k].chunk == mc->i)
                st_log__prod_replay(part, &m->prods[k]);
    }
}

/* cfg.commit_ahead: an earlier incarnation of this node may have committed
 * its newest manifest and died before the object landed (only the newest:
 * nothing commits after a flush ahead until its object is written).  Each
 * such manifest's object is read whole, and kept only when it is all there:
 * as long as the manifest says, every chunk matching its CRC -- a prepared
 * object (st_objstore_prepare) has its final name before its bytes, so the
 * name alone proves nothing.  A kept object is then synced (its bytes may
 * be only in the page cache of a process killed before its flush), a
 * missing or short or damaged one's manifest deleted -- its records were
 * never acknowledged -- and the manifests are read again. */
typedef struct ahead_check {
    open_op_t *op;
    size_t n, cap, i, nmissing;
    st_err_t err;
    struct ahead_cand {
        char mkey[128];
        char okey[ST_LOG_KEY_MAX + 1];
        uint64_t size;           /* the object's, per the manifest */
        st_chunk_desc_t *chunks; /* owned */
        size_t nchunks;
        bool missing;
        char why[96]; /* what is wrong with the object, when missing */
    } * c;
    st_op_t *dels;
} ahead_check_t;

static void ahead_check_free(ahead_check_t *ac)
{
    for (size_t i = 0; i < ac->n; i++)
        free(ac->c[i].chunks);
    free(ac->c);
    free(ac->dels);
    free(ac);
}

static void ahead_deleted(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                          void *arg)
{
    (void)rev, (void)res, (void)n;
    ahead_check_t *ac = arg;
    open_op_t *op = ac->op;
    if (err == ST_OK && ok) {
        op->log->stats.manifests_unwound += ac->nmissing;
        for (size_t i = 0; i < ac->n; i++)
            if (ac->c[i].missing)
                st_log__logf(op->log,
                             "start-up: deleted manifest %s of an earlier start, committed ahead "
                             "of its object %s, which %s: its records were never acknowledged",
                             ac->c[i].mkey, ac->c[i].okey, ac->c[i].why);
    }
    ahead_check_free(ac);
    if (err != ST_OK)
        return open_finish(op, err);
    if (!ok)
        return open_finish(op, ST_ERR_CONFLICT); /* another start of this node */
    read_manifests(op);
}

static void ahead_checked(ahead_check_t *ac)
{
    open_op_t *op = ac->op;
    st_log_t *log = op->log;
    if (ac->err != ST_OK) {
        st_err_t err = ac->err;
        ahead_check_free(ac);
        return open_finish(op, err);
    }
    op->ahead_checked = true;
    if (ac->nmissing == 0) {
        ahead_check_free(ac);
        return read_manifests(op);
    }
    ac->dels = calloc(ac->nmissing, sizeof *ac->dels);
    if (!ac->dels) {
        ahead_check_free(ac);
        return open_finish(op, ST_ERR_NOMEM);
    }
    size_t k = 0;
    for (size_t i = 0; i < ac->n; i++)
        if (ac->c[i].missing)
            ac->dels[k++] = (st_op_t){.type = ST_OP_DEL, .key = ac->c[i].mkey};
    st_cmp_t fence = {.key = log->fence_key,
                      .target = ST_CMP_VALUE,
                      .op = ST_CMP_EQ,
                      .val = (const uint8_t *)log->fence_val,
                      .val_len = strlen(log->fence_val)};
    st_txn_t txn = {.cmps = &fence, .ncmps = 1, .success = ac->dels, .nsuccess = k};
    if (st_meta_txn(log->meta, &txn, ahead_deleted, ac) != 0) {
        ahead_check_free(ac);
        open_finish(op, ST_ERR_NOMEM);
    }
}

static void ahead_got(st_err_t err, const uint8_t *data, size_t len, void *arg);

/* Read candidate ac->i, or finish when none is left. */
static void ahead_next(ahead_check_t *ac)
{
    if (ac->i == ac->n || ac->err != ST_OK)
        return ahead_checked(ac);
    if (st_objstore_get_range(ac->op->log->os, ac->c[ac->i].okey, 0, ST_OBJ_TO_END, ahead_got,
                              ac) != 0) {
        ac->err = ST_ERR_NOMEM;
        ahead_checked(ac);
    }
}

static void ahead_synced(st_err_t err, void *arg)
{
    ahead_check_t *ac = arg;
    if (err != ST_OK && ac->err == ST_OK)
        ac->err = err; /* read a moment ago: gone now is no crash's doing */
    ac->i++;
    ahead_next(ac);
}

/* Does @data (@len bytes) hold all that candidate @c's manifest names?
 * When not, c->why says what is wrong. */
static bool ahead_intact(struct ahead_cand *c, const uint8_t *data, size_t len)
{
    if (len != c->size) {
        snprintf(c->why, sizeof c->why, "holds %zu bytes where the manifest says %" PRIu64, len,
                 c->size);
        return false;
    }
    for (size_t j = 0; j < c->nchunks; j++) {
        const st_chunk_desc_t *d = &c->chunks[j];
        if (d->pos > len || d->len > len - d->pos ||
            kp_crc32c(0, data + d->pos, d->len) != d->crc) {
            snprintf(c->why, sizeof c->why, "fails the CRC of chunk %zu", j);
            return false;
        }
    }
    return true;
}

static void ahead_got(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    ahead_check_t *ac = arg;
    struct ahead_cand *c = &ac->c[ac->i];
    if (err == ST_ERR_NOT_FOUND)
        snprintf(c->why, sizeof c->why, "is missing");
    if (err == ST_ERR_NOT_FOUND || (err == ST_OK && !ahead_intact(c, data, len))) {
        c->missing = true;
        ac->nmissing++;
    } else if (err != ST_OK) {
        ac->err = err;
    } else {
        int rc = st_objstore_sync(ac->op->log->os, c->okey, ahead_synced, ac);
        if (rc == 0)
            return;
        if (rc < 0)
            ac->err = ST_ERR_NOMEM;
    }
    ac->i++;
    ahead_next(ac);
}

/* Start the check of @kvs (the manifests, in key order); false when there
 * is nothing to check (@op goes on at once). */
static bool ahead_check(open_op_t *op, const st_kv_t *kvs, size_t n, st_err_t *errp)
{
    st_log_t *log = op->log;
    ahead_check_t *ac = calloc(1, sizeof *ac);
    if (!ac) {
        *errp = ST_ERR_NOMEM;
        return false;
    }
    ac->op = op;
    int64_t last_inc = -1;
    for (size_t i = 0; i < n; i++) {
        st_manifest_t m;
        if (st_manifest_decode(kvs[i].val, kvs[i].val_len, &m) != ST_OK)
            continue; /* reported by the caller */
        bool own = m.node_id == log->cfg.node_id && m.incarnation < log->incarnation &&
                   (size_t)m.object_key.len <= ST_LOG_KEY_MAX &&
                   strlen(kvs[i].key) < sizeof ac->c[0].mkey;
        if (own && !(ac->n > 0 && last_inc == m.incarnation) && ac->n == ac->cap) {
            size_t cap = ac->cap ? ac->cap * 2 : 4;
            struct ahead_cand *c = realloc(ac->c, cap * sizeof *c);
            if (!c) {
                own = false;
                ac->err = ST_ERR_NOMEM;
            } else {
                ac->c = c;
                ac->cap = cap;
            }
        }
        if (own) {
            /* Keys sort by node, incarnation, sequence: the newest of an
             * incarnation replaces the one before it. */
            bool replace = ac->n > 0 && last_inc == m.incarnation;
            struct ahead_cand *c = &ac->c[replace ? ac->n - 1 : ac->n++];
            if (replace)
                free(c->chunks);
            last_inc = m.incarnation;
            c->missing = false;
            snprintf(c->mkey, sizeof c->mkey, "%s", kvs[i].key);
            memcpy(c->okey, m.object_key.ptr, (size_t)m.object_key.len);
            c->okey[m.object_key.len] = '\0';
            c->size = m.object_size;
            c->chunks = (st_chunk_desc_t *)m.chunks; /* taken */
            c->nchunks = m.nchunks;
            m.chunks = NULL;
        }
        free((void *)m.chunks);
        free((void *)m.prods);
    }
    if (ac->err != ST_OK || ac->n == 0) {
        *errp = ac->err;
        ahead_check_free(ac);
        return false;
    }
    ahead_next(ac); /* one object at a time: one per earlier incarnation */
    return true;
}

/* Apply the manifests read (op->mkvs) over the index loaded. */
static void index_loaded(st_err_t err, void *arg)
{
    open_op_t *op = arg;
    st_log_t *log = op->log;
    if (err != ST_OK)
        return open_finish(op, err);
    const st_kv_t *kvs = op->mkvs;
    size_t n = op->nmkvs;
    /* Keys sort by node, incarnation and sequence: each node's commits in
     * order, but not the commits of a partition written by several nodes
     * one after the other (a node replaced by one with another id, a
     * leader that moved).  Every chunk is applied in (partition, offset)
     * order instead. */
    st_manifest_t *ms = calloc(n ? n : 1, sizeof *ms);
    st_obj_t **objs = calloc(n ? n : 1, sizeof *objs);
    size_t nchunks = 0, decoded = 0;
    if (!ms || !objs)
        err = ST_ERR_NOMEM;
    for (; err == ST_OK && decoded < n; decoded++) {
        if (st_manifest_decode(kvs[decoded].val, kvs[decoded].val_len, &ms[decoded]) != ST_OK) {
            err = ST_ERR_CORRUPT;
            break;
        }
        nchunks += ms[decoded].nchunks;
    }
    mchunk_t *mcs = err == ST_OK ? calloc(nchunks ? nchunks : 1, sizeof *mcs) : NULL;
    if (err == ST_OK && !mcs)
        err = ST_ERR_NOMEM;
    if (err == ST_OK) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const st_manifest_t *m = &ms[i];
            st_log__fold_add(log, kvs[i].key, m);
            objs[i] =
                st_log__obj_new(log, m->object_key.ptr, (size_t)m->object_key.len, m->object_size);
            for (size_t c = 0; c < m->nchunks; c++)
                mcs[k++] = (mchunk_t){.m = m, .obj = objs[i], .i = c};
        }
        qsort(mcs, nchunks, sizeof *mcs, mchunk_cmp);
        for (size_t i = 0; i < nchunks; i++)
            apply_chunk(log, &mcs[i]);
    }
    for (size_t i = 0; i < decoded; i++) {
        if (objs && objs[i])
            st_log__obj_unref(objs[i]);
        free((void *)ms[i].chunks);
        free((void *)ms[i].prods);
    }
    free(mcs);
    free(objs);
    free(ms);
    if (err != ST_OK)
        return open_finish(op, err);
    if (st_log__life_start(log) != 0)
        return open_finish(op, ST_ERR_NOMEM);
    open_finish(op, ST_OK);
}

static void manifests_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                          void *arg)
{
    (void)more, (void)rev;
    open_op_t *op = arg;
    st_log_t *log = op->log;
    if (err != ST_OK)
        return open_finish(op, err);
    if (log->cfg.commit_ahead && !op->ahead_checked) {
        if (ahead_check(op, kvs, n, &err))
            return;
        if (err != ST_OK)
            return open_finish(op, err);
        op->ahead_checked = true;
    }
    /* Kept (the range's are borrowed) until the index is loaded. */
    op->mkvs = calloc(n ? n : 1, sizeof *op->mkvs);
    if (!op->mkvs)
        return open_finish(op, ST_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        char *key = strdup(kvs[i].key);
        uint8_t *val = malloc(kvs[i].val_len ? kvs[i].val_len : 1);
        op->mkvs[op->nmkvs++] = (st_kv_t){.key = key, .val = val, .val_len = kvs[i].val_len};
        if (!key || !val)
            return open_finish(op, ST_ERR_NOMEM);
        memcpy(val, kvs[i].val, kvs[i].val_len);
    }
    if (st_log__load_index(log, index_loaded, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

/* The manifests not yet folded first, then the folded index (it sets each
 * partition's high watermark and log start), then the manifests' chunks
 * above what the index holds.  In this order a manifest folded between the
 * two reads (by its writer, another node) is still in one of them: read
 * the other way round it would be in neither, a hole under the high
 * watermark that a later manifest sets.  A manifest read and then folded
 * is in both (its chunks below the high watermark are skipped), and one
 * whose chunks went since (retention) only names offsets below the log
 * start. */
static void read_manifests(open_op_t *op)
{
    snprintf(op->key, sizeof op->key, "%s/manifests/", ST_KEY_ROOT);
    if (st_meta_range(op->log->meta, op->key, true, 0, manifests_got, op) != 0)
        open_finish(op, ST_ERR_NOMEM);
}

/* ---------------------------------------------------------------- offsets */

static void offsets_prefix(char *key, size_t cap, const char *group)
{
    snprintf(key, cap, "%s/groups/", ST_KEY_ROOT);
    st_key_escape(key, cap, group, strlen(group));
    size_t n = strlen(key);
    snprintf(key + n, cap - n, "/offsets/");
}

typedef struct commit_op {
    st_log_t *log;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
    size_t outstanding; /* transactions not yet answered */
    st_err_t err;       /* first failure */
} commit_op_t;

static void offsets_txn_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res,
                             size_t n, void *arg)
{
    (void)ok, (void)rev, (void)res, (void)n;
    commit_op_t *op = arg;
    if (err != ST_OK && op->err == ST_OK)
        op->err = err;
    if (--op->outstanding > 0)
        return;
    st_log_t *log = op->log;
    op->cb(op->err, op->arg);
    free(op);
    st_log__op_done(log);
}

/* Value: offset i64, leader epoch i32, metadata (nullable string). */
static int offsets_txn(st_log_t *log, commit_op_t *op, const char *group,
                       const st_offset_commit_t *offs, size_t n)
{
    st_op_t ops[OFFSETS_TXN_OPS];
    char keys[OFFSETS_TXN_OPS][KEY_MAX];
    kp_writer_t vals[OFFSETS_TXN_OPS];
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        offsets_prefix(keys[i], KEY_MAX, group);
        st_key_escape(keys[i], KEY_MAX, offs[i].topic, strlen(offs[i].topic));
        size_t kl = strlen(keys[i]);
        snprintf(keys[i] + kl, KEY_MAX - kl, "/%" PRId32, offs[i].partition);
        kp_writer_init(&vals[i], 64);
        kp_write_i64(&vals[i], offs[i].offset);
        kp_write_i32(&vals[i], offs[i].leader_epoch);
        kp_write_string(&vals[i], offs[i].metadata ? kp_str(offs[i].metadata) : KP_STR_NULL, true,
                        true);
        if (vals[i].err)
            rc = -1;
        ops[i] = (st_op_t){
            .type = ST_OP_PUT, .key = keys[i], .val = vals[i].buf, .val_len = vals[i].len};
    }
    st_txn_t txn = {.success = ops, .nsuccess = n};
    if (rc == 0)
        rc = st_meta_txn(log->meta, &txn, offsets_txn_done, op);
    for (size_t i = 0; i < n; i++)
        kp_writer_deinit(&vals[i]);
    return rc;
}

static void offsets_release(void *arg)
{
    offsets_txn_done(ST_OK, true, 0, NULL, 0, arg);
}

int st_log_commit_offsets(st_log_t *log, const char *group, const st_offset_commit_t *offs,
                          size_t n, void (*cb)(st_err_t err, void *arg), void *arg)
{
    commit_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    op->outstanding = 1; /* held until every transaction is issued */
    log->async_ops++;
    for (size_t i = 0; i < n; i += OFFSETS_TXN_OPS) {
        size_t k = n - i < OFFSETS_TXN_OPS ? n - i : OFFSETS_TXN_OPS;
        op->outstanding++;
        if (offsets_txn(log, op, group, offs + i, k) != 0) {
            op->outstanding--;
            op->err = ST_ERR_NOMEM;
            break;
        }
    }
    if (op->outstanding > 1) {
        op->outstanding--; /* a transaction is in flight: its callback ends the op */
        return 0;
    }
    /* Nothing issued: complete later, never from inside this call. */
    if (st_log__defer(log, offsets_release, op) != 0) {
        free(op);
        log->async_ops--;
        return -1;
    }
    return 0;
}

typedef struct fetch_op {
    st_log_t *log;
    st_offsets_cb cb;
    void *arg;
    size_t prefix_len;
} fetch_op_t;

static void offsets_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                        void *arg)
{
    (void)more, (void)rev;
    fetch_op_t *op = arg;
    st_offset_commit_t *offs = calloc(n ? n : 1, sizeof(*offs));
    char **strs = calloc(n ? 2 * n : 1, sizeof(char *));
    size_t m = 0;
    if (!offs || !strs)
        err = ST_ERR_NOMEM;
    for (size_t i = 0; err == ST_OK && i < n; i++) {
        /* key: <prefix><escaped topic>/<partition> */
        char *rest = strdup(kvs[i].key + op->prefix_len);
        char *slash = rest ? strrchr(rest, '/') : NULL;
        kp_reader_t r;
        kp_reader_init(&r, kvs[i].val, kvs[i].val_len);
        int64_t off = kp_read_i64(&r);
        int32_t epoch = kp_read_i32(&r);
        kp_str_t md = kp_read_string(&r, true, true);
        if (!slash || r.err || !(*slash = '\0', st_key_unescape(rest))) {
            free(rest);
            continue;
        }
        strs[2 * m] = rest;
        strs[2 * m + 1] = md.len >= 0 ? strndup(md.ptr, (size_t)md.len) : NULL;
        offs[m] = (st_offset_commit_t){.topic = rest,
                                       .partition = (int32_t)strtol(slash + 1, NULL, 10),
                                       .offset = off,
                                       .leader_epoch = epoch,
                                       .metadata = strs[2 * m + 1]};
        m++;
    }
    st_log_t *log = op->log;
    op->cb(err, offs, err == ST_OK ? m : 0, op->arg);
    for (size_t i = 0; strs && i < 2 * m; i++)
        free(strs[i]);
    free(strs);
    free(offs);
    free(op);
    st_log__op_done(log);
}

int st_log_fetch_offsets(st_log_t *log, const char *group, st_offsets_cb cb, void *arg)
{
    fetch_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    char key[KEY_MAX];
    offsets_prefix(key, sizeof key, group);
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    op->prefix_len = strlen(key);
    if (st_meta_range(log->meta, key, true, 0, offsets_got, op) != 0) {
        free(op);
        return -1;
    }
    log->async_ops++;
    return 0;
}

/* Keys of @group's offsets for @offs, or the group's whole prefix. */
static int offsets_del_txn(st_log_t *log, commit_op_t *op, const char *group,
                           const st_offset_commit_t *offs, size_t n)
{
    st_op_t ops[OFFSETS_TXN_OPS];
    char keys[OFFSETS_TXN_OPS][KEY_MAX];
    if (!offs) {
        snprintf(keys[0], KEY_MAX, "%s/groups/", ST_KEY_ROOT);
        st_key_escape(keys[0], KEY_MAX, group, strlen(group));
        size_t kl = strlen(keys[0]);
        snprintf(keys[0] + kl, KEY_MAX - kl, "/");
        ops[0] = (st_op_t){.type = ST_OP_DEL_PREFIX, .key = keys[0]};
        n = 1;
    }
    for (size_t i = 0; offs && i < n; i++) {
        offsets_prefix(keys[i], KEY_MAX, group);
        st_key_escape(keys[i], KEY_MAX, offs[i].topic, strlen(offs[i].topic));
        size_t kl = strlen(keys[i]);
        snprintf(keys[i] + kl, KEY_MAX - kl, "/%" PRId32, offs[i].partition);
        ops[i] = (st_op_t){.type = ST_OP_DEL, .key = keys[i]};
    }
    st_txn_t txn = {.success = ops, .nsuccess = n};
    return st_meta_txn(log->meta, &txn, offsets_txn_done, op);
}

int st_log_delete_offsets(st_log_t *log, const char *group, const st_offset_commit_t *offs,
                          size_t n, void (*cb)(st_err_t err, void *arg), void *arg)
{
    commit_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    op->outstanding = 1; /* held until every transaction is issued */
    log->async_ops++;
    size_t total = offs ? n : 1;
    for (size_t i = 0; i < total; i += OFFSETS_TXN_OPS) {
        size_t k = total - i < OFFSETS_TXN_OPS ? total - i : OFFSETS_TXN_OPS;
        op->outstanding++;
        if (offsets_del_txn(log, op, group, offs ? offs + i : NULL, k) != 0) {
            op->outstanding--;
            op->err = ST_ERR_NOMEM;
            break;
        }
    }
    if (op->outstanding > 1) {
        op->outstanding--;
        return 0;
    }
    if (st_log__defer(log, offsets_release, op) != 0) {
        free(op);
        log->async_ops--;
        return -1;
    }
    return 0;
}

/* The key under a group's prefix that holds its protocol type. */
#define GROUP_TYPE_KEY "protocol-type"

typedef struct groups_op {
    st_log_t *log;
    st_groups_cb cb;
    void *arg;
    size_t prefix_len;
} groups_op_t;

static void groups_got(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                       void *arg)
{
    (void)more, (void)rev;
    groups_op_t *op = arg;
    char **names = calloc(n ? n : 1, sizeof(char *));
    char **types = calloc(n ? n : 1, sizeof(char *));
    size_t m = 0;
    if (!names || !types)
        err = ST_ERR_NOMEM;
    for (size_t i = 0; err == ST_OK && i < n; i++) {
        /* key: <prefix><escaped group>/offsets/... or /protocol-type
         * (sorted: one run per group) */
        const char *rest = kvs[i].key + op->prefix_len;
        const char *slash = strchr(rest, '/');
        if (!slash)
            continue;
        char *name = strndup(rest, (size_t)(slash - rest));
        if (!name || !st_key_unescape(name)) {
            free(name);
            continue;
        }
        if (m > 0 && strcmp(names[m - 1], name) == 0)
            free(name);
        else
            names[m++] = name;
        if (strcmp(slash + 1, GROUP_TYPE_KEY) == 0 && !types[m - 1])
            types[m - 1] = strndup((const char *)kvs[i].val, kvs[i].val_len);
    }
    const char **tv = calloc(m ? m : 1, sizeof(char *));
    if (!tv)
        err = ST_ERR_NOMEM;
    for (size_t i = 0; tv && i < m; i++)
        tv[i] = types[i] ? types[i] : "";
    st_log_t *log = op->log;
    op->cb(err, (const char *const *)names, tv, err == ST_OK ? m : 0, op->arg);
    free(tv);
    for (size_t i = 0; i < m; i++) {
        free(names[i]);
        free(types[i]);
    }
    free(names);
    free(types);
    free(op);
    st_log__op_done(log);
}

typedef struct type_op {
    st_log_t *log;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
} type_op_t;

static void type_stored(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                        void *arg)
{
    (void)ok, (void)rev, (void)res, (void)n;
    type_op_t *op = arg;
    st_log_t *log = op->log;
    if (op->cb)
        op->cb(err, op->arg);
    free(op);
    st_log__op_done(log);
}

int st_log_set_group_type(st_log_t *log, const char *group, const char *type,
                          void (*cb)(st_err_t err, void *arg), void *arg)
{
    if (!log->open || log->closing)
        return ST_ERR_CLOSED;
    if (strchr(type, '\n'))
        return ST_ERR_INVALID;
    type_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return ST_ERR_NOMEM;
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s/groups/", ST_KEY_ROOT);
    st_key_escape(key, sizeof key, group, strlen(group));
    size_t kl = strlen(key);
    snprintf(key + kl, sizeof key - kl, "/%s", GROUP_TYPE_KEY);
    st_op_t put = {
        .type = ST_OP_PUT, .key = key, .val = (const uint8_t *)type, .val_len = strlen(type)};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    if (st_meta_txn(log->meta, &txn, type_stored, op) != 0) {
        free(op);
        return ST_ERR_IO;
    }
    log->async_ops++;
    return 0;
}

int st_log_list_groups(st_log_t *log, st_groups_cb cb, void *arg)
{
    groups_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s/groups/", ST_KEY_ROOT);
    op->log = log;
    op->cb = cb;
    op->arg = arg;
    op->prefix_len = strlen(key);
    if (st_meta_range(log->meta, key, true, 0, groups_got, op) != 0) {
        free(op);
        return -1;
    }
    log->async_ops++;
    return 0;
}
