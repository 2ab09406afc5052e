/*
 * st_etcd_json.h: etcd v3's JSON gateway (grpc-gateway, as served by etcd
 * 3.4 under /v3/...) -- building request bodies and decoding response
 * bodies and watch-stream lines.  Pure functions: no I/O, no globals, so
 * that they can be unit-tested and fuzzed (storage/fuzz/fuzz_etcd_json.c).
 *
 * The gateway's JSON is protobuf's JSON mapping, which bites:
 * - keys and values are base64 (standard alphabet, padded);
 * - 64-bit integers (revisions, versions, lease ids, TTLs, limits) are JSON
 *   strings ("revision":"42"); plain numbers are accepted too;
 * - a field at its default value is OMITTED: a txn whose compares failed
 *   has no "succeeded" (false), an empty range has no "kvs", an empty
 *   value no "value", a PUT event no "type", a keep-alive of an unknown
 *   lease no "TTL" (0), an absent revision is 0.
 *
 * Key mapping: every key of st_meta is stored in etcd as @prefix followed
 * by the key (plain concatenation: prefix "/nh" and key "topics/a" is the
 * etcd key "/nhtopics/a"; give the prefix its trailing "/" if one is
 * wanted).  Decoding strips @prefix again and refuses a key without it.
 *
 * Ownership: request builders return owned NUL-terminated strings (free()).
 * Decoders put everything they return into the caller's arena (the kvs
 * and events point into it) and borrow @buf only during the call.
 * Threading: any thread.
 */
#ifndef ST_ETCD_JSON_H
#define ST_ETCD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "st_arena.h"
#include "st_meta.h"

/* ------------------------------------------------------------- requests */

/* Each returns owned JSON (free()), or NULL when out of memory.  @prefix
 * is prepended to every key. */
char *st_etcd__req_range(const char *prefix, const char *key, bool is_prefix, size_t limit);
char *st_etcd__req_txn(const char *prefix, const st_txn_t *txn);
char *st_etcd__req_grant(int64_t ttl_s);
char *st_etcd__req_lease(int64_t id); /* keep-alive, revoke: {"ID": id} */
char *st_etcd__req_compact(int64_t rev);
char *st_etcd__req_auth(const char *user, const char *password);
/* The cheapest read that returns the store's revision: a count of the one
 * key @prefix. */
char *st_etcd__req_probe(const char *prefix);
/* A watch create_request from @start_rev (0: from now on). */
char *st_etcd__req_watch(const char *prefix, const char *key, int64_t start_rev);

/* ------------------------------------------------------------ responses */

/* What a decoded response carries; fields a kind does not have stay 0. */
typedef struct st_etcd_res {
    int64_t rev;             /* header.revision (absent: 0) */
    int64_t term;            /* header.raft_term (absent: 0); range, txn, header */
    bool succeeded;          /* txn: the compares held (absent: false) */
    bool more;               /* range: the limit cut the result short */
    st_kv_t *kvs;            /* range: in key order */
    size_t nkvs;             /* range */
    st_op_result_t *results; /* txn: one per op of the branch that ran */
    size_t nresults;         /* txn */
    int64_t lease_id;        /* lease grant, keep-alive: "ID" */
    int64_t ttl_s;           /* lease grant, keep-alive: "TTL" in seconds (absent: 0) */
    const char *token;       /* authenticate: the token (NULL: none) */
} st_etcd_res_t;

/* The op types of a txn, to check its responses against: @types holds the
 * success branch's @nsuccess types, then the failure branch's @nfailure. */
typedef struct st_etcd_txn_shape {
    const uint8_t *types; /* st_op_type_t values */
    size_t nsuccess, nfailure;
} st_etcd_txn_shape_t;

/* Decoders: ST_OK, ST_ERR_CORRUPT (not what etcd sends: bad JSON, a wrong
 * type, bad base64, a key outside @prefix or holding a NUL byte, a txn's
 * responses not matching its ops), or ST_ERR_NOMEM.  @out is zeroed first. */
st_err_t st_etcd__parse_range(const char *buf, size_t len, const char *prefix, st_arena_t *a,
                              st_etcd_res_t *out);
st_err_t st_etcd__parse_txn(const char *buf, size_t len, const char *prefix,
                            const st_etcd_txn_shape_t *shape, st_arena_t *a, st_etcd_res_t *out);
/* Lease grant ({"ID","TTL"}), or with @stream a keep-alive's first stream
 * message ({"result":{"ID","TTL"}}). */
st_err_t st_etcd__parse_lease(const char *buf, size_t len, bool stream, st_etcd_res_t *out);
/* Any response of which only the header matters (revoke, compact, status). */
st_err_t st_etcd__parse_header(const char *buf, size_t len, st_etcd_res_t *out);
st_err_t st_etcd__parse_auth(const char *buf, size_t len, st_arena_t *a, st_etcd_res_t *out);

/* An error body: {"error": "...", "message": "...", "code": N} (3.4) or
 * {"code": N, "message": "..."}, or, inside a stream, {"error": {"grpc_code":
 * N, "message": "..."}}.  @returns true when @buf is one; @code gets the gRPC
 * status code and @msg (room for @msg_size bytes) the message. */
bool st_etcd__parse_error(const char *buf, size_t len, int *code, char *msg, size_t msg_size);

/* gRPC status codes that etcd's errors carry. */
enum {
    ST_GRPC_INVALID_ARGUMENT = 3,
    ST_GRPC_DEADLINE_EXCEEDED = 4,
    ST_GRPC_NOT_FOUND = 5,
    ST_GRPC_PERMISSION_DENIED = 7,
    ST_GRPC_RESOURCE_EXHAUSTED = 8,
    ST_GRPC_FAILED_PRECONDITION = 9,
    ST_GRPC_OUT_OF_RANGE = 11,
    ST_GRPC_UNAVAILABLE = 14,
    ST_GRPC_UNAUTHENTICATED = 16,
};

/* One line of the watch stream: {"result": {...}} or {"error": {...}}. */
typedef struct st_etcd_watch_msg {
    int64_t rev;               /* header.revision (absent: 0) */
    bool created;              /* the create_request was accepted */
    bool canceled;             /* the server ended the watch */
    int64_t compact_rev;       /* canceled: history before it is gone (0: not compacted) */
    const char *cancel_reason; /* canceled: etcd's reason, or NULL */
    bool error;                /* an error line: the stream failed */
    int err_code;              /* error: gRPC status code */
    const char *err_msg;       /* error: message, or NULL */
    st_watch_event_t *evs;     /* events in revision order */
    size_t nevs;
} st_etcd_watch_msg_t;

st_err_t st_etcd__parse_watch(const char *buf, size_t len, const char *prefix, st_arena_t *a,
                              st_etcd_watch_msg_t *out);

/* ---------------------------------------------------------------- bytes */

/* Exclusive upper bound of the keys starting with @p, as etcd's
 * GetPrefixRangeEnd: drop trailing 0xff bytes, then increment the last
 * byte.  Writes it to @out (room for @n bytes) and returns its length; 0
 * means there is no bound (every key >= @p matches; etcd's range_end "\0"). */
size_t st_etcd__prefix_end(const uint8_t *p, size_t n, uint8_t *out);

/* Standard padded base64 of @n bytes into @out (room for 4 * ((@n + 2) / 3)
 * + 1 bytes, NUL-terminated). */
void st_etcd__b64_encode(const uint8_t *p, size_t n, char *out);
/* Strict decode of @n characters (padded, no whitespace) into @out (room
 * for 3 * (@n / 4) bytes).  @returns the decoded length, or -1. */
long st_etcd__b64_decode(const char *s, size_t n, uint8_t *out);

#endif
