/*
 * test_log_admin.c: changes to existing topics and partitions over the
 * directory object store and SQLite -- more partitions, configuration
 * overrides, DeleteRecords' log start offset, offsets by time at record
 * granularity -- each also after a restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kp_batch.h"
#include "st_log.h"
#include "st_meta.h"
#include "st_objstore.h"
#include "log_fx.h"

static void read_cb_any(st_err_t err, const st_slice_t *sl, size_t n, void *arg)
{
    (void)sl, (void)n;
    res_t *r = arg;
    r->err = err;
    r->done++;
}

static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->done++;
}

static void start_cb(st_err_t err, int64_t log_start, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->off = log_start;
    r->done++;
}

static void time_cb(st_err_t err, int64_t off, int64_t ts, void *arg)
{
    res_t *r = arg;
    r->err = err;
    r->off = off;
    r->ts = ts;
    r->done++;
}

static void append(fx_t *f, st_part_t *p, int n, int64_t ts0, kp_compression_t codec, int64_t off)
{
    size_t len;
    uint8_t *b = make_batch(n, ts0, codec, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(p, b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.off, off);
    free(b);
}

static st_err_t delete_records(fx_t *f, st_part_t *p, int64_t off, int64_t *low)
{
    res_t r = {0};
    assert_int_equal(st_part_delete_records(p, off, start_cb, &r), 0);
    assert_int_equal(r.done, 0); /* never from inside the call */
    run_until(f, &r.done, 1);
    *low = r.off;
    return r.err;
}

static int64_t offset_for_time(fx_t *f, st_part_t *p, int64_t ts, int64_t *found_ts)
{
    res_t r = {0};
    assert_int_equal(st_part_offset_for_time(p, ts, time_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    if (found_ts)
        *found_ts = r.ts;
    return r.off;
}

static int read_err(fx_t *f, st_part_t *p, int64_t off)
{
    res_t r = {0};
    assert_int_equal(st_part_read(p, off, 1 << 20, read_cb_any, &r), 0);
    run_until(f, &r.done, 1);
    return r.err;
}

/* More partitions: stored in the topic key, appendable at once, kept
 * across a restart; the same or a smaller count is refused. */
static void test_create_partitions(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "grow", 2);
    append(f, t->parts[1], 3, 1000, KP_COMPRESSION_NONE, 0);
    res_t r = {0};
    assert_int_equal(st_log_create_partitions(f->log, t, 2, done_cb, &r), ST_ERR_INVALID);
    assert_int_equal(st_log_create_partitions(f->log, t, 1, done_cb, &r), ST_ERR_INVALID);
    assert_int_equal(st_log_create_partitions(f->log, t, 5, done_cb, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(t->nparts, 5);
    append(f, t->parts[4], 2, 2000, KP_COMPRESSION_NONE, 0);
    append(f, t->parts[1], 1, 3000, KP_COMPRESSION_NONE, 3);
    /* two concurrent changes of one topic: the second loses the compare */
    res_t a = {0}, b = {0};
    assert_int_equal(st_log_create_partitions(f->log, t, 6, done_cb, &a), 0);
    assert_int_equal(st_log_create_partitions(f->log, t, 7, done_cb, &b), 0);
    run_until(f, &a.done, 1);
    run_until(f, &b.done, 1);
    assert_int_equal(a.err, ST_OK);
    assert_int_equal(b.err, ST_ERR_CONFLICT);
    assert_int_equal(t->nparts, 6);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "grow", 4);
    assert_non_null(t);
    assert_int_equal(t->nparts, 6);
    assert_int_equal(st_part_hw(t->parts[4]), 2);
    assert_int_equal(st_part_hw(t->parts[1]), 4);
    assert_int_equal(st_part_hw(t->parts[5]), 0);
    append(f, t->parts[5], 1, 4000, KP_COMPRESSION_NONE, 0);
}

/* Overrides replace each other in the topic key and survive a restart;
 * partitions are untouched. */
static void test_set_topic_configs(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "conf", 3);
    st_topic_config_t c1[2] = {{"retention.ms", "1000"}, {"max.message.bytes", "100"}};
    res_t r = {0};
    assert_int_equal(st_log_set_topic_configs(f->log, t, c1, 2, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_string_equal(st_topic_config(t, "retention.ms"), "1000");
    assert_string_equal(st_topic_config(t, "max.message.bytes"), "100");
    st_topic_config_t bad[1] = {{"a", "x\ny"}};
    assert_int_equal(st_log_set_topic_configs(f->log, t, bad, 1, done_cb, &r), ST_ERR_INVALID);
    st_topic_config_t c2[1] = {{"retention.bytes", "5"}};
    r.done = 0;
    assert_int_equal(st_log_set_topic_configs(f->log, t, c2, 1, done_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    assert_null(st_topic_config(t, "retention.ms"));
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "conf", 4);
    assert_non_null(t);
    assert_int_equal(t->nparts, 3);
    assert_int_equal(t->nconfigs, 1);
    assert_string_equal(st_topic_config(t, "retention.bytes"), "5");
}

/* DeleteRecords: the log start advances durably; reads below it are out of
 * range; -1 is the high watermark; above it is refused; a smaller offset
 * changes nothing; offsets by time start at it. */
static void test_delete_records(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "del", 2);
    append(f, t->parts[0], 4, 10000, KP_COMPRESSION_NONE, 0);
    append(f, t->parts[0], 4, 10100, KP_COMPRESSION_GZIP, 4);
    int64_t low = 0;
    assert_int_equal(delete_records(f, t->parts[0], 9, &low), ST_ERR_RANGE);
    assert_int_equal(delete_records(f, t->parts[0], -2, &low), ST_ERR_RANGE);
    assert_int_equal(st_part_log_start(t->parts[0]), 0);
    assert_int_equal(delete_records(f, t->parts[0], 2, &low), ST_OK);
    assert_int_equal(low, 2);
    assert_int_equal(st_part_log_start(t->parts[0]), 2);
    assert_int_equal(read_err(f, t->parts[0], 1), ST_ERR_RANGE);
    assert_int_equal(read_err(f, t->parts[0], 2), ST_OK);
    /* the first record at or after the start whose time reaches 0 */
    assert_int_equal(offset_for_time(f, t->parts[0], 0, NULL), 2);
    assert_int_equal(offset_for_time(f, t->parts[0], 10001, NULL), 2);
    assert_int_equal(offset_for_time(f, t->parts[0], 10003, NULL), 3);
    assert_int_equal(delete_records(f, t->parts[0], 1, &low), ST_OK); /* no step back */
    assert_int_equal(low, 2);
    /* two in flight, larger first: the store keeps the larger */
    res_t a = {0}, b = {0};
    assert_int_equal(st_part_delete_records(t->parts[0], 6, start_cb, &a), 0);
    assert_int_equal(st_part_delete_records(t->parts[0], 5, start_cb, &b), 0);
    run_until(f, &a.done, 1);
    run_until(f, &b.done, 1);
    assert_int_equal(a.off, 6);
    assert_int_equal(b.off, 6);
    /* records 4 and 5 are in the gzip batch, below the start */
    assert_int_equal(offset_for_time(f, t->parts[0], 10100, NULL), 6);
    assert_int_equal(delete_records(f, t->parts[1], -1, &low), ST_OK); /* empty: hw 0 */
    assert_int_equal(low, 0);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "del", 3);
    assert_int_equal(st_part_log_start(t->parts[0]), 6);
    assert_int_equal(st_part_hw(t->parts[0]), 8);
    assert_int_equal(read_err(f, t->parts[0], 5), ST_ERR_RANGE);
    assert_int_equal(read_err(f, t->parts[0], 6), ST_OK);
    assert_int_equal(offset_for_time(f, t->parts[0], 0, NULL), 6);
    assert_int_equal(delete_records(f, t->parts[0], -1, &low), ST_OK);
    assert_int_equal(low, 8);
    assert_int_equal(offset_for_time(f, t->parts[0], 0, NULL), -1);
    append(f, t->parts[0], 1, 20000, KP_COMPRESSION_NONE, 8);
    assert_int_equal(offset_for_time(f, t->parts[0], 0, NULL), 8);
    /* a deleted and re-created topic starts at 0 again */
    res_t d = {0};
    assert_int_equal(st_log_delete_topic(f->log, t, done_cb, &d), 0);
    run_until(f, &d.done, 1);
    t = create(f, "del", 1);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "del", 3);
    assert_int_equal(st_part_log_start(t->parts[0]), 0);
}

/* By time at record granularity under every codec: each record's own
 * timestamp finds it, also from the object store after a restart, and
 * across chunks whose timestamps go back and forth. */
static void test_offset_for_time_records(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "bytime", 1);
    static const kp_compression_t codecs[] = {KP_COMPRESSION_NONE, KP_COMPRESSION_GZIP,
                                              KP_COMPRESSION_SNAPPY, KP_COMPRESSION_LZ4,
                                              KP_COMPRESSION_ZSTD};
    for (int i = 0; i < 5; i++) /* 50 records per batch, 10 ms apart */
        append(f, t->parts[0], 50, 100000 + 1000 * i, codecs[i], 50 * i);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 5; i++) {
            for (int k = 0; k < 50; k++) {
                int64_t ts = 100000 + 1000 * i + k, got_ts = 0;
                assert_int_equal(offset_for_time(f, t->parts[0], ts, &got_ts), 50 * i + k);
                assert_int_equal(got_ts, ts);
            }
            /* between batches: the next batch's first record */
            if (i < 4)
                assert_int_equal(offset_for_time(f, t->parts[0], 100000 + 1000 * i + 500, NULL),
                                 50 * (i + 1));
        }
        assert_int_equal(offset_for_time(f, t->parts[0], 104050, NULL), -1);
        fx_close(f);
        fx_open(f);
        t = st_log_topic(f->log, "bytime", 6);
    }
}

/* A batch of @n records with the timestamps @ts. */
static void append_ts(fx_t *f, st_part_t *p, int n, const int64_t *ts, kp_compression_t codec)
{
    kp_record_in_t recs[8];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++)
        recs[i] = (kp_record_in_t){
            .timestamp = ts[i], .key = KP_BYTES_NULL, .value = {(const uint8_t *)"v", 1}};
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = codec,
                            .producer_id = -1,
                            .producer_epoch = -1,
                            .base_sequence = -1};
    kp_writer_t w;
    kp_writer_init(&w, 256);
    assert_int_equal(kp_batch_build(&w, &spec, recs, n), KP_BATCH_OK);
    size_t len;
    uint8_t *b = kp_writer_take(&w, &len);
    res_t r = {0};
    assert_int_equal(st_part_append(p, b, len, append_cb, &r), 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    free(b);
}

static int64_t max_timestamp(fx_t *f, st_part_t *p, int64_t *ts)
{
    res_t r = {0};
    assert_int_equal(st_part_max_timestamp(p, time_cb, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(f, &r.done, 1);
    assert_int_equal(r.err, ST_OK);
    *ts = r.ts;
    return r.off;
}

/* KIP-734: the first record with the largest timestamp, inside a batch
 * (compressed too), from the log start up, also from the object store. */
static void test_max_timestamp(void **state)
{
    fx_t *f = *state;
    st_topic_t *t = create(f, "maxts", 1);
    int64_t ts = 0;
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), -1); /* empty */
    static const int64_t a[] = {100, 900, 300, 900}, b[] = {200, 800, 850}, c[] = {700, 600};
    append_ts(f, t->parts[0], 4, a, KP_COMPRESSION_NONE); /* 0-3 */
    append_ts(f, t->parts[0], 3, b, KP_COMPRESSION_ZSTD); /* 4-6 */
    append_ts(f, t->parts[0], 2, c, KP_COMPRESSION_GZIP); /* 7-8 */
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), 1);
    assert_int_equal(ts, 900);
    int64_t low;
    assert_int_equal(delete_records(f, t->parts[0], 2, &low), ST_OK);
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), 3); /* the later 900 */
    assert_int_equal(ts, 900);
    assert_int_equal(delete_records(f, t->parts[0], 4, &low), ST_OK);
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), 6);
    assert_int_equal(ts, 850);
    assert_int_equal(delete_records(f, t->parts[0], 6, &low), ST_OK); /* cuts the zstd batch */
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), 6);
    fx_close(f);
    fx_open(f);
    t = st_log_topic(f->log, "maxts", 5);
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), 6);
    assert_int_equal(ts, 850);
    assert_int_equal(delete_records(f, t->parts[0], 7, &low), ST_OK);
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), 7);
    assert_int_equal(ts, 700);
    assert_int_equal(delete_records(f, t->parts[0], -1, &low), ST_OK);
    assert_int_equal(max_timestamp(f, t->parts[0], &ts), -1);
}

int main(void)
{
    /* Before any event_base exists: the storage pools post completions
     * to the loop from their threads (st_pool.c). */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_topic_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_for_time_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_timestamp, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
