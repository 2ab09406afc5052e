/*
 * st_err.c: names of storage errors.
 */
#include "st_err.h"

const char *st_err_str(st_err_t e)
{
    static const char *const names[ST_ERR__NUM] = {
        [ST_OK] = "ok",
        [ST_ERR_NOT_FOUND] = "not found",
        [ST_ERR_IO] = "I/O error",
        [ST_ERR_TIMEOUT] = "timed out",
        [ST_ERR_CONFLICT] = "transaction compare failed",
        [ST_ERR_EXISTS] = "already exists",
        [ST_ERR_FULL] = "budget exhausted",
        [ST_ERR_NOMEM] = "out of memory",
        [ST_ERR_INVALID] = "invalid argument",
        [ST_ERR_CLOSED] = "store closed",
        [ST_ERR_CORRUPT] = "corrupt data",
        [ST_ERR_RANGE] = "offset out of range",
        [ST_ERR_SEQUENCE] = "out of order sequence number",
        [ST_ERR_EPOCH] = "stale producer epoch",
    };
    if ((unsigned)e >= ST_ERR__NUM)
        return "unknown storage error";
    return names[e];
}
