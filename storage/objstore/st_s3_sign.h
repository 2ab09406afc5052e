/*
 * st_s3_sign.h: AWS Signature Version 4 for S3 requests, and the digests and
 * encodings around it -- pure functions, no I/O, no clock.
 *
 * The signer builds the canonical request from exactly the pieces the
 * request will carry: the path as sent (already encoded with
 * st_s3_uri_encode), the query as st_s3_query_string renders it (the URL
 * carries that same string, so what is signed is what is sent), and the
 * headers the caller sets on the request.  Reference: AWS, "Authenticating
 * Requests: Using the Authorization Header (AWS Signature Version 4)", S3 API
 * reference -- "Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk".
 *
 * Ownership: inputs are borrowed; functions that return char * return owned
 * (free()) strings, or NULL when out of memory.
 * Threading: any thread; no shared state.
 */
#ifndef ST_S3_SIGN_H
#define ST_S3_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The SHA-256 of no bytes, hex: the payload hash of a request without body. */
#define ST_S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* x-amz-content-sha256 of a body sent unsigned (a single-chunk upload). */
#define ST_S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* One name/value pair of a query or header list (both borrowed). */
typedef struct st_s3_kv {
    const char *name;
    const char *value; /* "" for a query parameter without value ("?lifecycle") */
} st_s3_kv_t;

/* Everything one signature covers. */
typedef struct st_s3_sign_req {
    const char *method;         /* "GET", "PUT", "HEAD", "DELETE" */
    const char *path;           /* URI path as sent, encoded ("/bucket/a%20b") */
    const st_s3_kv_t *query;    /* unencoded parameters, any order; NULL if none */
    size_t nquery;              /* entries in query */
    const st_s3_kv_t *headers;  /* every header to sign, names in any case, any order;
                                 * must include host, x-amz-date, x-amz-content-sha256 */
    size_t nheaders;            /* entries in headers */
    const char *payload_sha256; /* hex SHA-256 of the body (ST_S3_EMPTY_SHA256 for none) */
    const char *amz_date;       /* request time, "YYYYMMDDTHHMMSSZ" (x-amz-date) */
    const char *region;         /* "us-east-1" */
    const char *service;        /* "s3" */
    const char *access_key;     /* access key id */
    const char *secret_key;     /* secret access key */
} st_s3_sign_req_t;

/*
 * Sign @req.
 * @param canonical  when not NULL, returns owned: the canonical request (for
 *                   tests and debugging); untouched on error.
 * @returns owned: the Authorization header's value ("AWS4-HMAC-SHA256
 *          Credential=..., SignedHeaders=..., Signature=..."), or NULL when
 *          out of memory or @req is incomplete.
 */
char *st_s3_sign(const st_s3_sign_req_t *req, char **canonical);

/*
 * The canonical query string of @query (@n pairs): each name and value
 * RFC 3986-encoded (st_s3_uri_encode with '/' encoded too), sorted by name
 * then value, joined "a=1&b=".  Send exactly this after '?' in the URL.
 * @returns owned ("" for none), or NULL when out of memory.
 */
char *st_s3_query_string(const st_s3_kv_t *query, size_t n);

/*
 * RFC 3986 percent-encoding as S3 wants it: A-Z a-z 0-9 - _ . ~ stay, every
 * other byte becomes %XX (upper-case hex); '/' stays when @keep_slash (for
 * object key paths).  @returns owned, or NULL when out of memory.
 */
char *st_s3_uri_encode(const char *s, bool keep_slash);

/* Lower-case hex of @n bytes at @in into @out (2 * @n + 1 bytes, NUL-ended). */
void st_s3_hex(const uint8_t *in, size_t n, char *out);

/* SHA-256 of @len bytes at @data, as 64 hex digits + NUL in @out. */
void st_s3_sha256_hex(const void *data, size_t len, char out[65]);

/* MD5 of @len bytes at @data, raw, into @out. */
void st_s3_md5(const void *data, size_t len, uint8_t out[16]);

/* Base64 (RFC 4648, padded) of @n bytes at @in into @out (4 * ceil(n / 3) + 1
 * bytes, NUL-ended); Content-MD5 is the base64 of the raw MD5 (24 chars). */
void st_s3_base64(const uint8_t *in, size_t n, char *out);

/* @t as SigV4's request time, "YYYYMMDDTHHMMSSZ" (UTC), into @out. */
void st_s3_amz_date(time_t t, char out[17]);

#endif
