/*
 * st_objstore.c: what every backend shares -- get_into for a backend that
 * reads only into buffers of its own.
 */
#include "st_objstore.h"

#include <stdlib.h>
#include <string.h>

typedef struct into {
    uint8_t *dst;
    uint64_t len;
    st_data_cb cb;
    void *arg;
} into_t;

static void into_got(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    into_t in = *(into_t *)arg;
    free(arg);
    if (err != ST_OK) {
        in.cb(err, NULL, 0, in.arg);
        return;
    }
    if (len > in.len)
        len = (size_t)in.len; /* never past the caller's buffer */
    if (len)
        memcpy(in.dst, data, len);
    in.cb(ST_OK, in.dst, len, in.arg);
}

int st_objstore_get_into(st_objstore_t *os, const char *key, uint64_t off, uint64_t len,
                         uint8_t *dst, st_data_cb cb, void *arg)
{
    if (!dst || len == ST_OBJ_TO_END || len > SIZE_MAX)
        return -1;
    if (os->ops->get_into)
        return os->ops->get_into(os, key, off, len, dst, cb, arg);
    into_t *in = malloc(sizeof *in);
    if (!in)
        return -1;
    *in = (into_t){dst, len, cb, arg};
    int rc = os->ops->get_range(os, key, off, len, into_got, in);
    if (rc != 0)
        free(in);
    return rc;
}
