/*
 * st_admin.c: changes to existing topics and partitions -- more
 * partitions, configuration overrides, the log start offset that
 * DeleteRecords advances -- and loading the stored log start offsets when
 * the log opens.
 *
 * A topic change is one transaction: a compare that the topic key still
 * holds the value this node knows (st_log__topic_encode of the topic), and
 * a put of the new value.  Two concurrent changes, from this node or
 * another, cannot both win: the loser gets ST_ERR_CONFLICT and memory is
 * left as it was.
 *
 * The log start offset of a partition is the key
 * <root>/partitions/<topic-id hex>/<partition>/log-start, a decimal
 * (docs/object-format.md); the topic's deletion removes it with the rest of
 * the partitions/<topic-id>/ prefix.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_log_int.h"

/* ---------------------------------------------------------------- topics */

const char *st_topic_config(const st_topic_t *topic, const char *name)
{
    for (size_t i = 0; i < topic->nconfigs; i++)
        if (strcmp(topic->configs[i].name, name) == 0)
            return topic->configs[i].value;
    return NULL;
}

typedef struct topic_op {
    st_log_t *log;
    st_topic_t *topic;
    st_part_t **parts; /* create partitions: the new array, owned until applied */
    int32_t old_nparts, nparts;
    st_topic_config_t *configs; /* set configs: the new overrides, owned until applied */
    size_t nconfigs;
    bool set_configs;
    char *old_val, *new_val;
    void (*cb)(st_err_t err, void *arg);
    void *arg;
} topic_op_t;

static void configs_free(st_topic_config_t *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].name);
        free(c[i].value);
    }
    free(c);
}

static void topic_op_free(topic_op_t *op)
{
    if (op->parts) {
        for (int32_t i = op->old_nparts; i < op->nparts; i++)
            free(op->parts[i]); /* new, empty partitions */
        free(op->parts);
    }
    configs_free(op->configs, op->nconfigs);
    free(op->old_val);
    free(op->new_val);
    free(op);
}

static void topic_txn_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                           void *arg)
{
    (void)rev, (void)res, (void)n;
    topic_op_t *op = arg;
    st_log_t *log = op->log;
    st_topic_t *t = op->topic;
    if (err == ST_OK && !ok)
        err = ST_ERR_CONFLICT; /* changed (or deleted) since this node read it */
    if (err == ST_OK && op->parts && t->nparts < op->nparts) {
        /* (the catalog watch may have added them already, from this very
         * change: then op's new partitions go with op) */
        st_part_t **old = t->parts;
        t->parts = op->parts;
        t->nparts = op->nparts;
        op->parts = NULL;
        free(old);
    }
    if (err == ST_OK && op->set_configs) {
        st_topic_config_t *old = t->configs;
        size_t nold = t->nconfigs;
        t->configs = op->configs;
        t->nconfigs = op->nconfigs;
        op->configs = old;
        op->nconfigs = nold;
    }
    op->cb(err, op->arg);
    topic_op_free(op);
    st_log__op_done(log);
}

/* Encode the topic as it is and as @shadow says, then start the compare
 * and put.  Takes @op (freed on failure). */
static int topic_change(topic_op_t *op, const st_topic_t *shadow)
{
    st_log_t *log = op->log;
    st_topic_t *t = op->topic;
    size_t old_len, new_len;
    op->old_val = st_log__topic_encode(t, &old_len);
    op->new_val = st_log__topic_encode(shadow, &new_len);
    if (!op->old_val || !op->new_val) {
        topic_op_free(op);
        return ST_ERR_NOMEM;
    }
    char key[ST_LOG_KEY_MAX];
    st_log__topic_key(key, sizeof key, t->name, strlen(t->name));
    st_cmp_t cmp = {.key = key,
                    .target = ST_CMP_VALUE,
                    .op = ST_CMP_EQ,
                    .val = (const uint8_t *)op->old_val,
                    .val_len = old_len};
    st_op_t put = {
        .type = ST_OP_PUT, .key = key, .val = (const uint8_t *)op->new_val, .val_len = new_len};
    st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &put, .nsuccess = 1};
    if (st_meta_txn(log->meta, &txn, topic_txn_done, op) != 0) {
        topic_op_free(op);
        return ST_ERR_IO;
    }
    log->async_ops++;
    return 0;
}

int st_log_create_partitions(st_log_t *log, st_topic_t *topic, int32_t nparts,
                             void (*cb)(st_err_t err, void *arg), void *arg)
{
    if (!log->open || log->closing)
        return ST_ERR_CLOSED;
    if (topic->deleting)
        return ST_ERR_NOT_FOUND;
    if (nparts <= topic->nparts)
        return ST_ERR_INVALID;
    topic_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return ST_ERR_NOMEM;
    op->log = log;
    op->topic = topic;
    op->cb = cb;
    op->arg = arg;
    op->old_nparts = topic->nparts;
    op->nparts = nparts;
    op->parts = calloc((size_t)nparts, sizeof(*op->parts));
    if (!op->parts) {
        topic_op_free(op);
        return ST_ERR_NOMEM;
    }
    memcpy(op->parts, topic->parts, (size_t)topic->nparts * sizeof(*op->parts));
    for (int32_t i = topic->nparts; i < nparts; i++) {
        if (!(op->parts[i] = st_log__part_new(log, topic, i))) {
            topic_op_free(op);
            return ST_ERR_NOMEM;
        }
    }
    st_topic_t shadow = *topic;
    shadow.nparts = nparts;
    return topic_change(op, &shadow);
}

static int cfg_cmp(const void *a, const void *b)
{
    return strcmp(((const st_topic_config_t *)a)->name, ((const st_topic_config_t *)b)->name);
}

int st_log_set_topic_configs(st_log_t *log, st_topic_t *topic, const st_topic_config_t *configs,
                             size_t nconfigs, void (*cb)(st_err_t err, void *arg), void *arg)
{
    if (!log->open || log->closing)
        return ST_ERR_CLOSED;
    if (topic->deleting)
        return ST_ERR_NOT_FOUND;
    for (size_t i = 0; i < nconfigs; i++) {
        const char *nm = configs[i].name, *v = configs[i].value;
        if (!nm || !v || !nm[0] || strpbrk(nm, "\n=") || strchr(v, '\n'))
            return ST_ERR_INVALID;
        for (size_t k = 0; k < i; k++)
            if (strcmp(configs[k].name, nm) == 0)
                return ST_ERR_INVALID;
    }
    topic_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return ST_ERR_NOMEM;
    op->log = log;
    op->topic = topic;
    op->cb = cb;
    op->arg = arg;
    op->set_configs = true;
    op->configs = calloc(nconfigs ? nconfigs : 1, sizeof(*op->configs));
    if (!op->configs) {
        topic_op_free(op);
        return ST_ERR_NOMEM;
    }
    for (size_t i = 0; i < nconfigs; i++) {
        op->configs[i].name = strdup(configs[i].name);
        op->configs[i].value = strdup(configs[i].value);
        op->nconfigs++;
        if (!op->configs[i].name || !op->configs[i].value) {
            topic_op_free(op);
            return ST_ERR_NOMEM;
        }
    }
    if (op->nconfigs > 1)
        qsort(op->configs, op->nconfigs, sizeof(*op->configs), cfg_cmp);
    st_topic_t shadow = *topic;
    shadow.configs = op->configs;
    shadow.nconfigs = op->nconfigs;
    return topic_change(op, &shadow);
}

/* ---------------------------------------------------------------- log start */

static void log_start_key(char *key, size_t cap, const st_part_t *part)
{
    char hex[33];
    st_uuid_hex(part->topic->id, hex);
    snprintf(key, cap, "%s/partitions/%s/%" PRId32 "/log-start", ST_KEY_ROOT, hex, part->index);
}

typedef struct start_op {
    st_log_t *log;
    st_part_t *part;
    int64_t offset; /* the log start being stored */
    st_err_t err;   /* for an answer without a store operation */
    st_log_start_cb cb;
    void *arg;
} start_op_t;

static void start_done(st_err_t err, bool ok, int64_t rev, const st_op_result_t *res, size_t n,
                       void *arg)
{
    (void)ok, (void)rev, (void)res, (void)n;
    start_op_t *op = arg;
    st_log_t *log = op->log;
    st_part_t *part = op->part;
    if (err == ST_OK && part->topic->deleting)
        err = ST_ERR_NOT_FOUND;
    if (err == ST_OK && op->offset > part->log_start)
        part->log_start = op->offset;
    op->cb(err, part->log_start, op->arg);
    free(op);
    st_log__op_done(log);
}

static void start_answer(void *arg)
{
    start_op_t *op = arg;
    st_log_t *log = op->log;
    op->cb(op->err, op->part->log_start, op->arg);
    free(op);
    st_log__op_done(log);
}

int st_part_delete_records(st_part_t *part, int64_t offset, st_log_start_cb cb, void *arg)
{
    st_log_t *log = part->log;
    if (!log->open || log->closing)
        return ST_ERR_CLOSED;
    start_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return ST_ERR_NOMEM;
    op->log = log;
    op->part = part;
    op->cb = cb;
    op->arg = arg;
    if (offset == -1)
        offset = part->hw;
    if (part->topic->deleting)
        op->err = ST_ERR_NOT_FOUND;
    else if (offset < 0 || offset > part->hw)
        op->err = ST_ERR_RANGE;
    /* Never store a smaller start than one already sent to the store: the
     * puts may complete in either order of the requests' offsets. */
    if (op->err == ST_OK && part->log_start_issued > offset)
        offset = part->log_start_issued;
    if (op->err != ST_OK || offset <= part->log_start) {
        if (st_log__defer(log, start_answer, op) != 0) {
            free(op);
            return ST_ERR_NOMEM;
        }
        log->async_ops++;
        return 0;
    }
    op->offset = offset;
    char key[ST_LOG_KEY_MAX], val[24];
    log_start_key(key, sizeof key, part);
    snprintf(val, sizeof val, "%" PRId64, offset);
    st_op_t put = {
        .type = ST_OP_PUT, .key = key, .val = (const uint8_t *)val, .val_len = strlen(val)};
    st_txn_t txn = {.success = &put, .nsuccess = 1};
    if (st_meta_txn(log->meta, &txn, start_done, op) != 0) {
        free(op);
        return ST_ERR_IO;
    }
    part->log_start_issued = offset;
    log->async_ops++;
    return 0;
}
