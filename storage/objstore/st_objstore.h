/*
 * st_objstore.h: immutable objects -- put, ranged get, list, delete -- behind
 * one interface with a backend per file (st_objstore_dir.c, later s3).
 *
 * Ownership: keys are borrowed (copied if kept).  put borrows @data: the
 * caller keeps it alive and unchanged until the put's callback has run (or,
 * when put returns -1, until put returns); the store never frees or modifies
 * it.  Data handed to callbacks is borrowed and valid only during the
 * callback.
 * Threading: every function is called on the event-loop thread; every
 * callback runs later on the loop thread, never from inside the call that
 * started the operation.
 * Objects are never overwritten: put of an existing key fails ST_ERR_EXISTS.
 */
#ifndef ST_OBJSTORE_H
#define ST_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "st_err.h"

typedef struct st_objstore st_objstore_t;

typedef void (*st_done_cb)(st_err_t err, void *arg);
/* @data: borrowed, valid during the callback; NULL/0 on error. */
typedef void (*st_data_cb)(st_err_t err, const uint8_t *data, size_t len, void *arg);

typedef struct st_obj_info {
    const char *key;  /* full key, borrowed */
    uint64_t size;    /* bytes */
    int64_t mtime_ms; /* last modification, ms since the epoch */
} st_obj_info_t;

/* One page of a listing in key order.  @more: another page follows (call
 * list again with start_after = the last key). */
typedef void (*st_list_cb)(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg);

#define ST_OBJ_TO_END UINT64_MAX

typedef struct st_objstore_ops {
    const char *name; /* "dir", "s3" */
    /* Store @len bytes at @key; borrows @data (see Ownership above). */
    int (*put)(st_objstore_t *os, const char *key, const uint8_t *data, size_t len, st_done_cb cb,
               void *arg);
    /* Read [@off, @off + @len) of @key (@len ST_OBJ_TO_END: to the end).
     * Reading past the end returns the bytes that exist; a missing key is
     * ST_ERR_NOT_FOUND. */
    int (*get_range)(st_objstore_t *os, const char *key, uint64_t off, uint64_t len, st_data_cb cb,
                     void *arg);
    /* Keys that start with @prefix and sort after @start_after (NULL: from
     * the first), at most @max_keys of them. */
    int (*list)(st_objstore_t *os, const char *prefix, const char *start_after, size_t max_keys,
                st_list_cb cb, void *arg);
    /* Delete @key; deleting a missing key succeeds. */
    int (*del)(st_objstore_t *os, const char *key, st_done_cb cb, void *arg);
    /* Finish in-flight operations (their callbacks run), then free.  Not
     * from inside one of this store's own callbacks. */
    void (*free)(st_objstore_t *os);
} st_objstore_ops_t;

struct st_objstore {
    const st_objstore_ops_t *ops; /* backend state follows in the backend's struct */
};

/* Calls through the vtable.  Each returns 0 when the operation was started
 * (its callback will run exactly once; put's @data stays borrowed until
 * then), or -1 when it could not be started (no callback will run; put's
 * @data is the caller's again at once, neither freed nor changed). */
static inline int st_objstore_put(st_objstore_t *os, const char *key, const uint8_t *data,
                                  size_t len, st_done_cb cb, void *arg)
{
    return os->ops->put(os, key, data, len, cb, arg);
}
static inline int st_objstore_get_range(st_objstore_t *os, const char *key, uint64_t off,
                                        uint64_t len, st_data_cb cb, void *arg)
{
    return os->ops->get_range(os, key, off, len, cb, arg);
}
static inline int st_objstore_list(st_objstore_t *os, const char *prefix, const char *start_after,
                                   size_t max_keys, st_list_cb cb, void *arg)
{
    return os->ops->list(os, prefix, start_after, max_keys, cb, arg);
}
static inline int st_objstore_del(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    return os->ops->del(os, key, cb, arg);
}
static inline void st_objstore_free(st_objstore_t *os)
{
    if (os)
        os->ops->free(os);
}

struct event_base;

/* The directory backend: objects are files under @root (keys may contain
 * '/', which become subdirectories).  A put writes a temporary file, fsyncs
 * it, links it into place without replacing anything, and fsyncs the
 * directory.  Blocking I/O runs on @nthreads (at least 1) worker threads.
 * Keys are 1..1024 bytes of '/'-separated components of 1..255 bytes, none
 * ".", ".." or starting with ".tmp-"; other keys fail with ST_ERR_INVALID
 * (through the callback).  A key that is also a directory of other keys
 * ("a" beside "a/b") is no object: get finds nothing, put fails
 * ST_ERR_EXISTS.  @root is created when missing.
 * @returns owned, or NULL with a reason in @errstr.
 * @thread loop (creating and opening @root blocks briefly) */
st_objstore_t *st_objstore_dir_new(struct event_base *base, const char *root, int nthreads,
                                   char *errstr, size_t errstr_size);

/* Kinds of operation, for st_objstore_faulty_set. */
typedef enum st_obj_op {
    ST_OBJ_OP_PUT,
    ST_OBJ_OP_GET, /* get_range */
    ST_OBJ_OP_LIST,
    ST_OBJ_OP_DEL,
    ST_OBJ_OP__NUM
} st_obj_op_t;

/* What the fault-injecting wrapper does to one kind of operation.  Counts
 * start when the plan is set: nth = 1 is the next operation of the kind. */
typedef struct st_objstore_fault {
    uint64_t fail_nth;  /* fail this operation (1-based); 0 = none */
    bool fail_all;      /* fail every operation while set */
    st_err_t err;       /* what a failure reports; ST_OK is taken as ST_ERR_IO */
    bool fail_after;    /* a failing operation still runs on the inner store and
                         * only its result is replaced (a lost reply: the put
                         * may have landed); otherwise it never reaches it */
    uint64_t delay_nth; /* delay this operation's completion (1-based); 0 = none */
    bool delay_all;     /* delay every completion while set */
    unsigned delay_ms;  /* the delay, ms (a libevent timer) */
} st_objstore_fault_t;

/* A wrapper around @inner that fails or delays chosen operations, for tests
 * of failure paths.  Until st_objstore_faulty_set is called it passes
 * everything through.  Failures are delivered like real results: later,
 * from the loop, never from inside the starting call.  A put borrows its
 * data as with any store, also when it fails without reaching @inner (the
 * bytes are then never read).  Freeing the wrapper delivers delayed
 * completions at once, then frees @inner.
 * @param inner  taken (freed on error, too).
 * @returns owned, or NULL when out of memory.
 * @thread loop */
st_objstore_t *st_objstore_faulty_new(st_objstore_t *inner, struct event_base *base);

/* Replace the plan for @op (@fault borrowed; NULL = no faults) of a store
 * made by st_objstore_faulty_new.  @thread loop */
void st_objstore_faulty_set(st_objstore_t *os, st_obj_op_t op, const st_objstore_fault_t *fault);

/* Operations of kind @op started on the wrapper so far.  @thread loop */
uint64_t st_objstore_faulty_count(const st_objstore_t *os, st_obj_op_t op);

#endif
