/*
 * st_objstore_faulty.c: a wrapper around any object store that fails or
 * delays chosen operations, so tests can drive the log's flush-failure and
 * retry paths (the role librdkafka's mock broker gives to
 * rd_kafka_mock_push_request_errors).
 *
 * Each operation started on the wrapper is counted per kind and checked
 * against that kind's plan.  A failing operation either never reaches the
 * inner store (its error is delivered by a zero-delay timer, so still never
 * from inside the starting call) or, with fail_after, runs there and has its
 * result replaced.  A delayed completion holds a copy of what the inner
 * store returned (borrowed data lives only during the inner callback) until
 * its timer fires.  A put's bytes stay the caller's throughout: they go to
 * the inner store as borrowed as they came, are never kept past the inner
 * put's callback (which runs before the caller's), and are never freed --
 * not when the put fails without reaching the inner store either.
 */
#include "st_objstore.h"

#include <assert.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef struct fault_op fault_op_t;

typedef struct st_objstore_faulty {
    st_objstore_t os;        /* must be first: the vtable header */
    st_objstore_t *inner;    /* owned */
    struct event_base *base; /* borrowed; runs the timers */
    st_objstore_fault_t plan[ST_OBJ_OP__NUM];
    uint64_t count[ST_OBJ_OP__NUM];    /* operations started, per kind */
    uint64_t fail_at[ST_OBJ_OP__NUM];  /* count that fails; 0 = none */
    uint64_t delay_at[ST_OBJ_OP__NUM]; /* count that is delayed; 0 = none */
    fault_op_t *timed;                 /* ops whose timer is armed (doubly linked) */
    bool closing;                      /* in free: refuse new ops, deliver at once */
} st_objstore_faulty_t;

struct fault_op {
    fault_op_t *prev, *next; /* in fs->timed while the timer is armed */
    st_objstore_faulty_t *fs;
    st_obj_op_t kind;
    st_err_t fail;       /* ST_OK, or the error to report instead of the result */
    unsigned delay_ms;   /* 0 = deliver as soon as the result is known */
    struct event *timer; /* owned, while armed */
    union {
        st_done_cb done;
        st_data_cb data;
        st_list_cb list;
    } cb;
    void *arg;
    st_err_t err;  /* result to deliver */
    uint8_t *data; /* get: owned copy of the bytes */
    size_t len;
    st_obj_info_t *objs; /* list: owned copies (keys too) */
    size_t nobjs;
    bool more;
};

static void fop_free(fault_op_t *op)
{
    if (op->timer)
        event_free(op->timer);
    free(op->data);
    for (size_t i = 0; i < op->nobjs; i++)
        free((char *)op->objs[i].key);
    free(op->objs);
    free(op);
}

/* Hand the result to the caller's callback and free @op. */
static void fop_deliver(fault_op_t *op)
{
    switch (op->kind) {
    case ST_OBJ_OP_PUT:
    case ST_OBJ_OP_DEL:
        op->cb.done(op->err, op->arg);
        break;
    case ST_OBJ_OP_GET:
        if (op->err == ST_OK)
            op->cb.data(ST_OK, op->data ? op->data : (const uint8_t *)"", op->len, op->arg);
        else
            op->cb.data(op->err, NULL, 0, op->arg);
        break;
    case ST_OBJ_OP_LIST:
        if (op->err == ST_OK)
            op->cb.list(ST_OK, op->objs, op->nobjs, op->more, op->arg);
        else
            op->cb.list(op->err, NULL, 0, false, op->arg);
        break;
    case ST_OBJ_OP__NUM:
        assert(0);
    }
    fop_free(op);
}

static void timed_unlink(fault_op_t *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        op->fs->timed = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fault_op_t *op = arg;
    timed_unlink(op);
    fop_deliver(op);
}

/* Deliver @op after its delay from a timer.  @returns 0, or -1 (op untouched). */
static int fop_arm(fault_op_t *op)
{
    op->timer = evtimer_new(op->fs->base, timer_cb, op);
    if (!op->timer)
        return -1;
    struct timeval tv = {.tv_sec = op->delay_ms / 1000,
                         .tv_usec = (suseconds_t)(op->delay_ms % 1000) * 1000};
    if (evtimer_add(op->timer, &tv) != 0) {
        event_free(op->timer);
        op->timer = NULL;
        return -1;
    }
    op->next = op->fs->timed;
    if (op->next)
        op->next->prev = op;
    op->fs->timed = op;
    return 0;
}

/* A new op of @kind; counts it and decides its fate from the plan. */
static fault_op_t *fop_new(st_objstore_t *os, st_obj_op_t kind, void *arg)
{
    st_objstore_faulty_t *fs = (st_objstore_faulty_t *)os;
    if (fs->closing)
        return NULL;
    fault_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->fs = fs;
    op->kind = kind;
    op->arg = arg;
    const st_objstore_fault_t *plan = &fs->plan[kind];
    uint64_t n = ++fs->count[kind];
    if (plan->fail_all || n == fs->fail_at[kind])
        op->fail = plan->err != ST_OK ? plan->err : ST_ERR_IO;
    if (plan->delay_all || n == fs->delay_at[kind])
        op->delay_ms = plan->delay_ms;
    return op;
}

/* The op fails without reaching the inner store: report through a timer. */
static int fop_fail_now(fault_op_t *op)
{
    op->err = op->fail;
    if (fop_arm(op) != 0) {
        fop_free(op);
        return -1;
    }
    return 0;
}

/* The inner store's result is in @op: deliver it now or after the delay. */
static void fop_finish(fault_op_t *op)
{
    if (op->fail != ST_OK)
        op->err = op->fail;
    if (op->delay_ms == 0 || op->fs->closing || fop_arm(op) != 0)
        fop_deliver(op); /* already on the loop, outside the starting call */
}

static bool fails_before(const fault_op_t *op)
{
    return op->fail != ST_OK && !op->fs->plan[op->kind].fail_after;
}

/* ---------------------------------------------------------------- put */

static void put_done(st_err_t err, void *arg)
{
    fault_op_t *op = arg;
    op->err = err;
    fop_finish(op);
}

static int faulty_put(st_objstore_t *os, const char *key, const uint8_t *data, size_t len,
                      st_done_cb cb, void *arg)
{
    fault_op_t *op = fop_new(os, ST_OBJ_OP_PUT, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    if (fails_before(op))
        return fop_fail_now(op); /* @data untouched: it stays the caller's */
    if (st_objstore_put(op->fs->inner, key, data, len, put_done, op) != 0) {
        fop_free(op);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- get */

static void get_done(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    fault_op_t *op = arg;
    op->err = err;
    if (err != ST_OK || op->fail != ST_OK) {
        fop_finish(op);
        return;
    }
    if (op->delay_ms == 0 || op->fs->closing) {
        /* Pass the borrowed bytes straight through. */
        op->cb.data(ST_OK, data, len, op->arg);
        fop_free(op);
        return;
    }
    op->data = malloc(len ? len : 1);
    if (!op->data)
        op->err = ST_ERR_NOMEM;
    else if (len)
        memcpy(op->data, data, len);
    op->len = op->data ? len : 0;
    fop_finish(op);
}

static int faulty_get_range(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                            st_data_cb cb, void *arg)
{
    fault_op_t *op = fop_new(os, ST_OBJ_OP_GET, arg);
    if (!op)
        return -1;
    op->cb.data = cb;
    if (fails_before(op))
        return fop_fail_now(op);
    if (st_objstore_get_range(op->fs->inner, key, off, len, get_done, op) != 0) {
        fop_free(op);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- list */

/* Keep a copy of a listing page in @op.  @returns 0 or -1 (out of memory). */
static int copy_objs(fault_op_t *op, const st_obj_info_t *objs, size_t n)
{
    op->objs = calloc(n ? n : 1, sizeof(*objs));
    if (!op->objs)
        return -1;
    for (size_t i = 0; i < n; i++) {
        op->objs[i] = objs[i];
        op->objs[i].key = strdup(objs[i].key);
        if (!op->objs[i].key)
            return -1;
        op->nobjs = i + 1;
    }
    return 0;
}

static void list_done(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    fault_op_t *op = arg;
    op->err = err;
    if (err != ST_OK || op->fail != ST_OK) {
        fop_finish(op);
        return;
    }
    if (op->delay_ms == 0 || op->fs->closing) {
        op->cb.list(ST_OK, objs, n, more, op->arg);
        fop_free(op);
        return;
    }
    op->more = more;
    if (copy_objs(op, objs, n) != 0)
        op->err = ST_ERR_NOMEM;
    fop_finish(op);
}

static int faulty_list(st_objstore_t *os, const char *prefix, const char *start_after,
                       size_t max_keys, st_list_cb cb, void *arg)
{
    fault_op_t *op = fop_new(os, ST_OBJ_OP_LIST, arg);
    if (!op)
        return -1;
    op->cb.list = cb;
    if (fails_before(op))
        return fop_fail_now(op);
    if (st_objstore_list(op->fs->inner, prefix, start_after, max_keys, list_done, op) != 0) {
        fop_free(op);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- del */

static int faulty_del(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    fault_op_t *op = fop_new(os, ST_OBJ_OP_DEL, arg);
    if (!op)
        return -1;
    op->cb.done = cb;
    if (fails_before(op))
        return fop_fail_now(op);
    if (st_objstore_del(op->fs->inner, key, put_done, op) != 0) {
        fop_free(op);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- passed through */

/* No faults: a preparation is a hint, a sync a start-up flush. */
static void faulty_prepare(st_objstore_t *os, const char *key)
{
    st_objstore_prepare(((st_objstore_faulty_t *)os)->inner, key);
}

static int faulty_sync(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    return st_objstore_sync(((st_objstore_faulty_t *)os)->inner, key, cb, arg);
}

/* ---------------------------------------------------------------- lifetime */

static void faulty_free(st_objstore_t *os)
{
    st_objstore_faulty_t *fs = (st_objstore_faulty_t *)os;
    fs->closing = true;
    /* Delayed completions go out now; the inner store's free then runs its
     * in-flight completions, which come back through us undelayed. */
    while (fs->timed) {
        fault_op_t *op = fs->timed;
        timed_unlink(op);
        event_del(op->timer);
        fop_deliver(op);
    }
    st_objstore_free(fs->inner);
    free(fs);
}

static const st_objstore_ops_t faulty_ops = {
    .name = "faulty",
    .put = faulty_put,
    .get_range = faulty_get_range,
    .list = faulty_list,
    .del = faulty_del,
    .prepare = faulty_prepare,
    .sync = faulty_sync,
    .free = faulty_free,
};

st_objstore_t *st_objstore_faulty_new(st_objstore_t *inner, struct event_base *base)
{
    st_objstore_faulty_t *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        st_objstore_free(inner);
        return NULL;
    }
    fs->os.ops = &faulty_ops;
    fs->inner = inner;
    fs->base = base;
    return &fs->os;
}

void st_objstore_faulty_set(st_objstore_t *os, st_obj_op_t op, const st_objstore_fault_t *fault)
{
    assert(os->ops == &faulty_ops && op >= 0 && op < ST_OBJ_OP__NUM);
    st_objstore_faulty_t *fs = (st_objstore_faulty_t *)os;
    static const st_objstore_fault_t none;
    fs->plan[op] = fault ? *fault : none;
    fs->fail_at[op] = fs->plan[op].fail_nth ? fs->count[op] + fs->plan[op].fail_nth : 0;
    fs->delay_at[op] = fs->plan[op].delay_nth ? fs->count[op] + fs->plan[op].delay_nth : 0;
}

uint64_t st_objstore_faulty_count(const st_objstore_t *os, st_obj_op_t op)
{
    assert(os->ops == &faulty_ops && op >= 0 && op < ST_OBJ_OP__NUM);
    return ((const st_objstore_faulty_t *)os)->count[op];
}
