/*
 * log_fx.h: the fixture of the log's unit tests (test_log, test_log_admin) --
 * a log over a faulty wrapper of the directory object store and a faulty
 * wrapper of the SQLite metadata store in a fresh directory, and the
 * callbacks and helpers the tests share.
 */
#ifndef LOG_FX_H
#define LOG_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kp_batch.h"
#include "st_log.h"
#include "st_meta.h"
#include "st_objstore.h"

typedef struct fx {
    char dir[256];
    struct event_base *base;
    st_objstore_t *os; /* faulty wrapper around dir */
    st_meta_t *meta;
    st_log_t *log;
    st_log_cfg_t cfg;
} fx_t;

typedef struct res {
    int done;
    st_err_t err;
    int64_t off;
    int64_t ts;
    st_topic_t *topic;
} res_t;

void run_until(fx_t *f, const int *flag, int want);
void open_cb(st_err_t err, void *arg);
void fx_open(fx_t *f);
void close_cb(void *arg);
void fx_close(fx_t *f);
int setup(void **state);
int teardown(void **state);
void topic_cb(st_err_t err, st_topic_t *t, void *arg);
st_topic_t *create(fx_t *f, const char *name, int32_t nparts);
uint8_t *make_batch(int n, int64_t ts0, kp_compression_t codec, size_t *len);
void append_cb(st_err_t err, int64_t off, void *arg);

#endif
