/*
 * st_meta_compactor.c: periodic compaction of the metadata store's
 * revision history, one interval behind (see the header).
 */
#include "st_meta_compactor.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct st_compactor {
    st_meta_t *meta;
    struct event *timer;
    char *probe_key;
    int64_t interval_ms;
    st_compactor_cb cb;
    void *arg;
    int64_t seen;      /* revision learnt at the previous tick (0: none yet) */
    int64_t compacted; /* history compacted up to this revision */
    int64_t target;    /* the compaction in flight */
    bool busy;         /* an operation is in flight */
    bool orphaned;     /* freed while busy: its completion frees it */
};

static void arm(st_compactor_t *c)
{
    struct timeval tv = {(time_t)(c->interval_ms / 1000),
                         (suseconds_t)(c->interval_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void destroy(st_compactor_t *c)
{
    event_free(c->timer);
    free(c->probe_key);
    free(c);
}

/* Completion of an operation: false when the compactor is gone. */
static bool settle(st_compactor_t *c)
{
    c->busy = false;
    if (c->orphaned) {
        destroy(c);
        return false;
    }
    arm(c);
    return true;
}

static void compact_done(st_err_t err, void *arg)
{
    st_compactor_t *c = arg;
    if (!settle(c))
        return;
    if (err == ST_OK)
        c->compacted = c->target;
    if (c->cb)
        c->cb(err, c->target, c->arg);
}

static void probe_done(st_err_t err, const st_kv_t *kvs, size_t n, bool more, int64_t rev,
                       void *arg)
{
    (void)kvs, (void)n, (void)more;
    st_compactor_t *c = arg;
    if (c->orphaned || err != ST_OK || rev <= 0) {
        /* Unreachable store: learn again at the next tick. */
        settle(c);
        return;
    }
    int64_t target = c->seen;
    c->seen = rev;
    if (target <= c->compacted) {
        settle(c);
        return;
    }
    c->target = target;
    if (st_meta_compact(c->meta, target, compact_done, c) != 0)
        settle(c);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    st_compactor_t *c = arg;
    c->busy = true;
    if (st_meta_range(c->meta, c->probe_key, false, 1, probe_done, c) != 0)
        settle(c);
}

st_compactor_t *st_compactor_new(struct event_base *base, st_meta_t *meta, const char *probe_key,
                                 int64_t interval_ms, st_compactor_cb cb, void *arg)
{
    st_compactor_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->meta = meta;
    c->interval_ms = interval_ms > 0 ? interval_ms : 1;
    c->cb = cb;
    c->arg = arg;
    c->probe_key = strdup(probe_key);
    c->timer = evtimer_new(base, tick, c);
    if (!c->probe_key || !c->timer) {
        if (c->timer)
            event_free(c->timer);
        free(c->probe_key);
        free(c);
        return NULL;
    }
    arm(c);
    return c;
}

int64_t st_compactor_compacted(const st_compactor_t *c)
{
    return c->compacted;
}

void st_compactor_free(st_compactor_t *c)
{
    if (!c)
        return;
    evtimer_del(c->timer);
    if (c->busy)
        c->orphaned = true;
    else
        destroy(c);
}
