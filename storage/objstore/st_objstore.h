/*
 * st_objstore.h: immutable objects -- put, ranged get, list, delete -- behind
 * one interface with a backend per file (st_objstore_dir.c, st_objstore_s3.c).
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
    /* Optional (NULL: st_objstore_get_into copies what get_range read):
     * as get_range, the bytes going straight into the caller's @dst. */
    int (*get_into)(st_objstore_t *os, const char *key, uint64_t off, uint64_t len, uint8_t *dst,
                    st_data_cb cb, void *arg);
    /* Keys that start with @prefix and sort after @start_after (NULL: from
     * the first), at most @max_keys of them. */
    int (*list)(st_objstore_t *os, const char *prefix, const char *start_after, size_t max_keys,
                st_list_cb cb, void *arg);
    /* Delete @key; deleting a missing key succeeds. */
    int (*del)(st_objstore_t *os, const char *key, st_done_cb cb, void *arg);
    /* Optional (NULL: nothing to prepare): see st_objstore_prepare. */
    void (*prepare)(st_objstore_t *os, const char *key);
    /* Optional (NULL: an answered put is durable as it stands, with nothing
     * a crash of the writer can leave half done): see st_objstore_sync. */
    int (*sync)(st_objstore_t *os, const char *key, st_done_cb cb, void *arg);
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
/* As st_objstore_get_range, into @dst (@len bytes, @len finite): the store
 * writes there -- possibly from a worker thread -- until the callback runs,
 * and the callback's data is @dst; bytes past the callback's length are
 * unspecified.  A reader that wants the bytes in a buffer of its own saves a
 * copy on the loop thread (and, with the directory store, the page faults of
 * a fresh buffer there too).  A @dst at the same place in a block of
 * ST_OBJ_GET_ALIGN bytes as @off ((uintptr_t)dst % ST_OBJ_GET_ALIGN ==
 * off % ST_OBJ_GET_ALIGN, st_buf_new_at) saves the directory store a copy
 * more: it reads the file's blocks straight into it.  -1 also for @len
 * ST_OBJ_TO_END. */
#define ST_OBJ_GET_ALIGN 4096u
int st_objstore_get_into(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                         uint8_t *dst, st_data_cb cb, void *arg);
static inline int st_objstore_list(st_objstore_t *os, const char *prefix, const char *start_after,
                                   size_t max_keys, st_list_cb cb, void *arg)
{
    return os->ops->list(os, prefix, start_after, max_keys, cb, arg);
}
static inline int st_objstore_del(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    return os->ops->del(os, key, cb, arg);
}
/* A put of @key is likely to come soon: the store may do ahead of time
 * what does not depend on its bytes (the directory store creates the file
 * and makes its name durable, so that the put is one write and one flush).
 * Until that put is answered, @key is no object to get, list or del.  A
 * hint: no callback, and one that cannot be followed changes nothing. */
static inline void st_objstore_prepare(st_objstore_t *os, const char *key)
{
    if (os->ops->prepare)
        os->ops->prepare(os, key);
}
/* Make @key as durable as an answered put of it, whatever a crashed writer
 * left undone (the directory store flushes the file and its directory:
 * bytes a killed process wrote are in the page cache, readable, but not yet
 * on the device).  1 when the store has nothing to do (no callback will
 * run); else as the other calls.  A missing key is ST_ERR_NOT_FOUND. */
static inline int st_objstore_sync(st_objstore_t *os, const char *key, st_done_cb cb, void *arg)
{
    return os->ops->sync ? os->ops->sync(os, key, cb, arg) : 1;
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

struct st_curl;

/* How requests name the bucket. */
typedef enum st_s3_addressing {
    ST_S3_ADDR_PATH,    /* http://endpoint/BUCKET/KEY (MinIO, s3rver, most self-hosted) */
    ST_S3_ADDR_VIRTUAL, /* http://BUCKET.endpoint/KEY (AWS's default) */
} st_s3_addressing_t;

/* Settings of an S3 store.  Strings are borrowed by st_objstore_s3_new and
 * copied; zero values mean the defaults given. */
typedef struct st_s3_cfg {
    const char *bucket;            /* required */
    const char *prefix;            /* objects are stored as PREFIX/KEY; NULL or "" = none;
                                    * '/' at either end is ignored */
    const char *endpoint;          /* "http://HOST[:PORT]" or "https://HOST[:PORT]" (IPv6 in
                                    * brackets); NULL = https://s3.REGION.amazonaws.com */
    const char *region;            /* signing region; NULL = "us-east-1" */
    st_s3_addressing_t addressing; /* path (default) or virtual-hosted */
    const char *access_key;        /* required: AWS_ACCESS_KEY_ID */
    const char *secret_key;        /* required: AWS_SECRET_ACCESS_KEY */
    const char *session_token;     /* AWS_SESSION_TOKEN; NULL or "" = none */
    unsigned max_inflight;         /* HTTP requests in flight at once; later ones wait in
                                    * order; 0 = 16 */
    unsigned retry_budget_ms;      /* total time of one operation (one LIST page), from its
                                    * first attempt, retries included; 0 = 30000 */
    unsigned attempt_timeout_ms;   /* one attempt, connecting included (never beyond the
                                    * budget); 0 = 10000 */
    unsigned backoff_base_ms;      /* retry n waits a random 0..base * 2^(n-1) ms ("full
                                    * jitter"); 0 = 100 */
    unsigned backoff_max_ms;       /* cap of one wait; 0 = 5000 */
    unsigned list_page_keys;       /* max-keys per LIST request (S3 caps it at 1000); longer
                                    * listings follow continuation tokens; 0 = 1000 */
    const char *const *connect_to; /* NULL-terminated CURLOPT_CONNECT_TO entries
                                    * ("HOST:PORT:CONNECT-HOST:CONNECT-PORT"), or NULL */
    bool no_etag_check;            /* do not compare a PUT's ETag with the body's MD5 (with
                                    * SSE-KMS or SSE-C the ETag is no MD5) */
    bool sign_payload;             /* sign a PUT's body by its SHA-256 rather than send it as
                                    * UNSIGNED-PAYLOAD (its signed Content-MD5 covers it
                                    * either way; the SHA-256 costs about 0.6 CPU s/GB) */
    void (*log)(void *log_arg, const char *msg); /* retries and failures; NULL = none */
    void *log_arg;
} st_s3_cfg_t;

/*
 * The S3 backend: objects in @cfg->bucket under @cfg->prefix, over HTTP(S)
 * with requests signed by AWS Signature Version 4, on @curl's connections.
 * A put sends Content-MD5, x-amz-content-sha256 (the body's SHA-256) and
 * If-None-Match: * (so an existing object is never replaced: 412 is
 * ST_ERR_EXISTS -- AWS S3 and MinIO honour it; s3rver ignores it and
 * overwrites, which keys unique per writer make harmless), and compares the
 * returned ETag with the body's MD5: a
 * mismatch -- the server stored other bytes than were sent -- fails the put
 * ST_ERR_CORRUPT without retrying (the key now holds those bytes; write the
 * data under a new key).  A get past the end is ST_OK with 0 bytes; a list
 * follows ListObjectsV2; a delete of a missing key succeeds.
 * Failures: 5xx, 429, S3's RequestTimeout/SlowDown/BadDigest codes, timeouts
 * and connection errors are retried with exponential backoff and full
 * jitter within the retry budget, then reported (ST_ERR_IO, ST_ERR_TIMEOUT,
 * ST_ERR_CORRUPT for digest mismatches); other 4xx fail at once (ST_ERR_IO;
 * the S3 error code is in st_objstore_s3_last_error).  Keys follow the
 * directory backend's component rules (no empty, "." or ".." components),
 * are at most 1024 bytes with the prefix and carry no control characters;
 * others fail ST_ERR_INVALID through the callback.
 * Freeing the store ends operations still running or waiting with
 * ST_ERR_CLOSED (a put so ended may or may not have landed).
 * @param curl  borrowed: must outlive the store.
 * @returns owned, or NULL with a reason in @errstr.
 * @thread loop
 */
st_objstore_t *st_objstore_s3_new(struct event_base *base, struct st_curl *curl,
                                  const st_s3_cfg_t *cfg, char *errstr, size_t errstr_size);

/* The last failure of an S3 store, for logs ("PUT key: HTTP 403 AccessDenied:
 * Access Denied"); "" when none or when @os is no S3 store.  Borrowed: valid
 * until the next operation completes.  @thread loop */
const char *st_objstore_s3_last_error(const st_objstore_t *os);

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
