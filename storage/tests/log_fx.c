/*
 * log_fx.c: the shared fixture of the log's unit tests (log_fx.h).
 */
#include "log_fx.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Run the loop until *flag reaches @want (at most ~10 s).  Completions
 * from worker threads activate events, so an idle loop is polled. */
void run_until(fx_t *f, const int *flag, int want)
{
    for (int i = 0; i < 10000 && *flag < want; i++)
        if (event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) != 0 || *flag < want)
            usleep(1000);
    assert_true(*flag >= want);
}

void open_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->done++;
}

void fx_open(fx_t *f)
{
    char errstr[256], path[512];
    snprintf(path, sizeof path, "%s/objects", f->dir);
    st_objstore_t *dir = st_objstore_dir_new(f->base, path, 2, errstr, sizeof errstr);
    assert_non_null(dir);
    f->os = st_objstore_faulty_new(dir, f->base);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    st_meta_t *sqlite = st_meta_sqlite_new(f->base, path, errstr, sizeof errstr);
    assert_non_null(sqlite);
    f->meta = st_meta_faulty_new(sqlite, f->base);
    f->log = st_log_new(f->base, f->os, f->meta, &f->cfg);
    res_t r = {0};
    assert_int_equal(st_log_open(f->log, open_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
}

void close_cb(void *arg)
{
    (*(int *)arg)++;
}

void fx_close(fx_t *f)
{
    int closed = 0;
    st_log_close(f->log, close_cb, &closed);
    run_until(f, &closed, 1);
    st_log_free(f->log);
    st_meta_free(f->meta);
    st_objstore_free(f->os);
}

int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof f->dir, "/tmp/nh-test-log-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    f->cfg = (st_log_cfg_t){.node_id = 1,
                            .flush_max_bytes = 1 << 20,
                            .flush_max_inflight = 2,
                            .tail_cache_bytes = 1 << 20,
                            .read_cache_bytes = 1 << 20,
                            .default_partitions = 1,
                            .retention_ms = -1};
    fx_open(f);
    *state = f;
    return 0;
}

int teardown(void **state)
{
    fx_t *f = *state;
    fx_close(f);
    event_base_free(f->base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

void topic_cb(st_err_t err, st_topic_t *t, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->topic = t;
    r->done++;
}

st_topic_t *create(fx_t *f, const char *name, int32_t nparts)
{
    res_t r = {0};
    assert_int_equal(st_log_create_topic(f->log, name, strlen(name), nparts, NULL, 0, topic_cb, &r),
                     0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    return r.topic;
}

/* A batch of @n records "v<i>" with timestamps ts0 + i. */
uint8_t *make_batch(int n, int64_t ts0, kp_compression_t codec, size_t *len)
{
    kp_record_in_t recs[64];
    char vals[64][16];
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        recs[i] = (kp_record_in_t){.timestamp = ts0 + i,
                                   .key = KP_BYTES_NULL,
                                   .value = {(const uint8_t *)vals[i], (int32_t)strlen(vals[i])}};
    }
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = codec,
                            .producer_id = -1,
                            .producer_epoch = -1,
                            .base_sequence = -1};
    kp_writer_t w;
    kp_writer_init(&w, 1024);
    assert_int_equal(kp_batch_build(&w, &spec, recs, n), KP_BATCH_OK);
    return kp_writer_take(&w, len);
}

void append_cb(st_err_t err, int64_t off, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->off = off;
    r->done++;
}
