/*
 * st_err.h: internal storage and metadata errors.  The gateway turns them
 * into Kafka error codes in exactly one place (gw_err_from_st).
 */
#ifndef ST_ERR_H
#define ST_ERR_H

typedef enum st_err {
    ST_OK = 0,
    ST_ERR_NOT_FOUND, /* key or object does not exist */
    ST_ERR_IO,        /* the backend failed (disk, network, server error) */
    ST_ERR_TIMEOUT,   /* the backend did not answer in time */
    ST_ERR_CONFLICT,  /* a transaction's compare failed (lost CAS, fenced) */
    ST_ERR_EXISTS,    /* refusing to overwrite an object */
    ST_ERR_FULL,      /* a budget or quota is exhausted */
    ST_ERR_NOMEM,     /* allocation failed */
    ST_ERR_INVALID,   /* malformed input or configuration */
    ST_ERR_CLOSED,    /* the store is shutting down */
    ST_ERR_CORRUPT,   /* stored bytes fail their checksum or format */
    ST_ERR_RANGE,     /* offset outside the log (below start or above end) */
    ST_ERR_SEQUENCE,  /* an idempotent producer's batch is out of sequence */
    ST_ERR_EPOCH,     /* an idempotent producer's epoch is older than the known one */
    ST_ERR__NUM
} st_err_t;

const char *st_err_str(st_err_t e);

#endif
