/*
 * test_api_random.c: every handled API at every advertised version, fed
 * requests with pseudo-random content (the generator's fill functions):
 * each must be answered with a response that decodes in that version and
 * carries the request's correlation id -- never a crash, a hang or a
 * closed connection (except acks=0 produce, which answers nothing and
 * closes on failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/thread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_dispatch.h"
#include "gw_test_fx.h"
#include "kp_batch.h"
#include "kp_msgs.h"

#define SEEDS 12

static const char *const topics[] = {"rnd", "rnd", "rnd-2", "no-such"};

/* A valid one-record batch, in @a. */
static kp_bytes_t valid_batch(kp_arena_t *a, uint64_t seed)
{
    kp_writer_t w;
    kp_writer_init(&w, 128);
    kp_batch_spec_t spec = {.leader_epoch = -1,
                            .codec = (kp_compression_t)(seed % 5),
                            .producer_id = -1,
                            .producer_epoch = -1,
                            .base_sequence = -1};
    kp_record_in_t rec = {.timestamp = 1700000000000 + (int64_t)seed,
                          .key = KP_BYTES_NULL,
                          .value = {(const uint8_t *)"random", 6}};
    assert_int_equal(kp_batch_build(&w, &spec, &rec, 1), KP_BATCH_OK);
    uint8_t *copy = kp_arena_alloc(a, w.len);
    memcpy(copy, w.buf, w.len);
    kp_bytes_t b = {copy, (int32_t)w.len};
    kp_writer_deinit(&w);
    return b;
}

/* Keep random values from asking for long waits or huge topics, and point
 * many of them at topics and partitions that exist (three partitions
 * each), with valid batches, so that the deeper paths run too. */
static void tame(int16_t key, void *body, kp_arena_t *a, uint64_t seed)
{
    if (key == KP_API_FETCH) {
        kp_fetch_request_t *rq = body;
        rq->max_wait_ms = abs(rq->max_wait_ms % 50);
        for (int32_t t = 0; t < rq->topics_count; t++) {
            rq->topics[t].topic = kp_str(topics[(seed + (uint64_t)t) % 4]);
            for (int32_t p = 0; p < rq->topics[t].partitions_count; p++) {
                rq->topics[t].partitions[p].partition %= 4;
                rq->topics[t].partitions[p].fetch_offset %= 4;
            }
        }
    } else if (key == KP_API_CREATE_TOPICS) {
        kp_create_topics_request_t *rq = body;
        for (int32_t i = 0; i < rq->topics_count; i++)
            if (rq->topics[i].num_partitions > 64)
                rq->topics[i].num_partitions %= 64;
    } else if (key == KP_API_PRODUCE) {
        kp_produce_request_t *rq = body;
        if (seed % 3 == 0)
            rq->transactional_id = KP_STR_NULL;
        if (seed % 2 == 0)
            rq->acks = (int16_t)((int)(seed % 3) - 1);
        for (int32_t t = 0; t < rq->topic_data_count; t++) {
            rq->topic_data[t].name = kp_str(topics[(seed + (uint64_t)t) % 4]);
            for (int32_t p = 0; p < rq->topic_data[t].partition_data_count; p++) {
                kp_produce_request_partition_produce_data_t *pd =
                    &rq->topic_data[t].partition_data[p];
                pd->index %= 4;
                if ((seed + (uint64_t)p) % 2 == 0)
                    pd->records = valid_batch(a, seed + (uint64_t)p);
            }
        }
    } else if (key == KP_API_LIST_OFFSETS) {
        kp_list_offsets_request_t *rq = body;
        for (int32_t t = 0; t < rq->topics_count; t++) {
            rq->topics[t].name = kp_str(topics[(seed + (uint64_t)t) % 4]);
            for (int32_t p = 0; p < rq->topics[t].partitions_count; p++) {
                rq->topics[t].partitions[p].partition_index %= 4;
                if (seed % 2 == 0)
                    rq->topics[t].partitions[p].timestamp = -(int64_t)(seed % 4);
            }
        }
    } else if (key == KP_API_OFFSET_COMMIT) {
        kp_offset_commit_request_t *rq = body;
        if (seed % 2 == 0) {
            rq->member_id = kp_str("");
            rq->generation_id_or_member_epoch = -1;
        }
        for (int32_t t = 0; t < rq->topics_count; t++)
            rq->topics[t].name = kp_str(topics[(seed + (uint64_t)t) % 4]);
    }
}

/* Send one random request of @key v@ver; check the answer. */
static void one(fx_t *f, int16_t key, int16_t ver, uint64_t seed)
{
    const kp_api_desc_t *d = kp_api_desc(key);
    kp_arena_t a;
    kp_arena_init(&a, SIZE_MAX);
    void *body = kp_arena_alloc(&a, d->request.size);
    d->request.fill(body, &a, ver, &seed);
    tame(key, body, &a, seed);
    int32_t corr = (int32_t)(seed & 0x7fffffff);
    size_t len;
    uint8_t *frame = fx_build(key, ver, corr, body, &len);
    int fd = fx_client(f);
    fx_send_all(f, fd, frame, len);
    free(frame);
    static uint8_t buf[4 << 20];
    bool silent = key == KP_API_PRODUCE && ((kp_produce_request_t *)body)->acks == 0;
    int n = fx_recv_frame(f, fd, buf, sizeof buf, silent ? 300 : 5000);
    if (silent) {
        assert_true(n == -1 || n == -2); /* closed (failed) or nothing (stored) */
    } else {
        if (n < 0)
            fail_msg("api %d v%d seed %llu: no answer (%d)", key, ver, (unsigned long long)seed, n);
        kp_reader_t r;
        kp_reader_init(&r, buf, (size_t)n);
        kp_response_header_t h;
        kp_response_header_decode(&r, &a, kp_response_header_version(key, ver), &h);
        assert_int_equal(h.correlation_id, corr);
        void *resp = kp_arena_alloc(&a, d->response.size);
        kp_derr_t e = d->response.decode(&r, &a, ver, resp);
        if (e != KP_DECODE_OK || kp_reader_remaining(&r) != 0)
            fail_msg("api %d v%d seed %llu: answer does not decode (%s)", key, ver,
                     (unsigned long long)seed, kp_derr_str(e));
    }
    close(fd);
    kp_arena_deinit(&a);
}

static void test_random_requests(void **state)
{
    fx_t *f = *state;
    f->cfg.num_partitions = 3; /* auto-created topics */
    for (int16_t key = 0; key <= KP_API_MAX_KEY; key++) {
        const gw_api_t *api = gw_api_lookup(key);
        if (!api)
            continue;
        for (int16_t ver = api->min_ver; ver <= api->max_ver; ver++)
            for (uint64_t s = 1; s <= SEEDS; s++)
                one(f, key, ver, s * 7919 + (uint64_t)key * 131 + (uint64_t)ver);
    }
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_requests, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
