/*
 * test_msgs.c: the generated message codecs (protocol/gen/kp_msgs.c).
 *
 * Black-box round trips of every generated API, both directions, every
 * version (fill -> encode -> decode -> eq -> re-encode, byte-identical),
 * truncation, and hand-built frames for the cases a round trip cannot show:
 * unknown tagged fields, nullability, the header versions, and the bounds on
 * what decoding may allocate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kp_codec.h"
#include "kp_msgs.h"

#define ROUND_TRIP_SEEDS 12 /* fills per api, direction and version */
#define PREFIX_SEEDS 3      /* of which every strict prefix is decoded */
#define FILL_ARENA (1u << 24)

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error(__VA_ARGS__);                                                              \
            fail_msg("check failed: %s", #cond);                                                   \
        }                                                                                          \
    } while (0)

/* Encode @m at @version; returns owned bytes (free()) and their length. */
static uint8_t *encode_msg(const kp_msg_desc_t *md, int16_t version, const void *m, size_t *len)
{
    kp_writer_t w;
    kp_writer_init(&w, 64);
    kp_werr_t err = md->encode(&w, version, m);
    assert_int_equal(err, KP_ENCODE_OK);
    return kp_writer_take(&w, len);
}

/* One API, one direction, one version, one seed. */
static void round_trip_one(const kp_api_desc_t *d, const char *dir, const kp_msg_desc_t *md,
                           int16_t v, uint64_t seed_no, bool prefixes)
{
    kp_arena_t fa, da;
    kp_arena_init(&fa, FILL_ARENA);
    void *m1 = calloc(1, md->size), *m2 = calloc(1, md->size), *m3 = calloc(1, md->size);
    assert_non_null(m1);
    assert_non_null(m2);
    assert_non_null(m3);

    uint64_t seed = seed_no * 7919 + (uint64_t)d->api_key * 131 + (uint64_t)v;
    md->fill(m1, &fa, v, &seed);
    assert_true(md->eq(m1, m1, v));

    size_t len1, len2;
    uint8_t *buf1 = encode_msg(md, v, m1, &len1);

    /* Decode with exactly the arena a gateway would give this frame's body,
     * minus the fixed slack: decoding alone must stay within the bound. */
    kp_arena_init(&da, len1 * KP_DECODE_MAX_EXPANSION);
    kp_reader_t r;
    kp_reader_init(&r, buf1, len1);
    kp_derr_t err = md->decode(&r, &da, v, m2);
    CHECK(err == KP_DECODE_OK, "%s %s v%d seed %llu: decode: %s\n", d->name, dir, v,
          (unsigned long long)seed_no, kp_derr_str(err));
    CHECK(kp_reader_remaining(&r) == 0, "%s %s v%d seed %llu: %zu bytes left\n", d->name, dir, v,
          (unsigned long long)seed_no, kp_reader_remaining(&r));
    CHECK(md->eq(m1, m2, v), "%s %s v%d seed %llu: decoded != filled\n", d->name, dir, v,
          (unsigned long long)seed_no);
    CHECK(md->eq(m2, m1, v), "%s %s v%d: eq not symmetric\n", d->name, dir, v);

    uint8_t *buf2 = encode_msg(md, v, m2, &len2);
    CHECK(len1 == len2 && memcmp(buf1, buf2, len1) == 0,
          "%s %s v%d seed %llu: re-encoding differs (%zu vs %zu bytes)\n", d->name, dir, v,
          (unsigned long long)seed_no, len1, len2);

    /* eq agrees with the encoding: another fill is equal exactly when it
     * encodes to the same bytes. */
    kp_arena_reset(&da);
    uint64_t other = seed_no * 7919 + 104729;
    md->fill(m3, &fa, v, &other);
    size_t len3;
    uint8_t *buf3 = encode_msg(md, v, m3, &len3);
    bool same = len3 == len1 && memcmp(buf3, buf1, len1) == 0;
    CHECK(md->eq(m1, m3, v) == same, "%s %s v%d seed %llu: eq says %d, encodings %s\n", d->name,
          dir, v, (unsigned long long)seed_no, !same, same ? "equal" : "differ");
    free(buf3);

    if (prefixes) {
        for (size_t n = 0; n < len1; n++) {
            kp_arena_reset(&da);
            kp_reader_init(&r, buf1, n);
            err = md->decode(&r, &da, v, m3);
            CHECK(err != KP_DECODE_OK, "%s %s v%d: a %zu-byte prefix of %zu decoded\n", d->name,
                  dir, v, n, len1);
        }
    }

    free(buf1);
    free(buf2);
    free(m1);
    free(m2);
    free(m3);
    kp_arena_deinit(&da);
    kp_arena_deinit(&fa);
}

static void test_round_trip_all(void **state)
{
    (void)state;
    int apis = 0, cases = 0;
    for (int key = 0; key <= KP_API_MAX_KEY; key++) {
        const kp_api_desc_t *d = kp_api_desc((int16_t)key);
        if (!d)
            continue;
        apis++;
        assert_int_equal(d->api_key, key);
        assert_true(d->min_version <= d->max_version);
        for (int16_t v = d->min_version; v <= d->max_version; v++) {
            for (uint64_t s = 0; s < ROUND_TRIP_SEEDS; s++) {
                round_trip_one(d, "request", &d->request, v, s, s < PREFIX_SEEDS);
                round_trip_one(d, "response", &d->response, v, s, s < PREFIX_SEEDS);
                cases += 2;
            }
        }
    }
    assert_int_equal(apis, KP_API_COUNT);
    assert_null(kp_api_desc(-1));
    assert_null(kp_api_desc(KP_API_MAX_KEY + 1));
    print_message("%d apis, %d round trips\n", apis, cases);
}

/* Versions outside validVersions are refused both ways. */
static void test_version_range(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_arena_init(&a, 1 << 16);
    kp_produce_request_t req;
    kp_produce_request_init(&req);
    kp_writer_t w;
    kp_writer_init(&w, 64);
    assert_int_equal(kp_produce_request_encode(&w, KP_PRODUCE_MAX_VERSION + 1, &req),
                     KP_ENCODE_VERSION);
    kp_writer_deinit(&w);
    kp_writer_init(&w, 64);
    assert_int_equal(kp_produce_request_encode(&w, -1, &req), KP_ENCODE_VERSION);
    kp_writer_deinit(&w);

    const uint8_t buf[64] = {0};
    kp_reader_t r;
    kp_reader_init(&r, buf, sizeof buf);
    assert_int_equal(kp_produce_request_decode(&r, &a, KP_PRODUCE_MAX_VERSION + 1, &req),
                     KP_DECODE_VERSION);
    kp_reader_init(&r, buf, sizeof buf);
    assert_int_equal(kp_sasl_handshake_request_decode(&r, &a, 2, &(kp_sasl_handshake_request_t){0}),
                     KP_DECODE_VERSION);
    kp_arena_deinit(&a);
}

/* Schema defaults, including "null", "-1", "0x7fffffff" and "true". */
static void test_defaults(void **state)
{
    (void)state;
    kp_fetch_request_t f;
    kp_fetch_request_init(&f);
    assert_int_equal(f.cluster_id.len, -1); /* "null" */
    assert_int_equal(f.replica_id, -1);
    assert_int_equal(f.max_bytes, 0x7fffffff);
    assert_int_equal(f.session_epoch, -1);
    assert_int_equal(f.replica_state.replica_id, -1); /* nested struct initialised */
    assert_true(f.replica_state.replica_epoch == -1);
    assert_int_equal(f.rack_id.len, 0); /* "" */
    assert_non_null(f.rack_id.ptr);
    assert_int_equal(f.topics_count, 0);

    kp_produce_request_t p;
    kp_produce_request_init(&p);
    assert_int_equal(p.transactional_id.len, -1);

    kp_metadata_response_t md;
    kp_metadata_response_init(&md);
    assert_int_equal(md.cluster_authorized_operations, INT32_MIN);

    kp_describe_cluster_response_t dc;
    kp_describe_cluster_response_init(&dc);
    assert_int_equal(dc.endpoint_type, 1);

    kp_api_versions_response_t av;
    kp_api_versions_response_init(&av);
    assert_true(av.finalized_features_epoch == -1);
    assert_false(av.zk_migration_ready);
    assert_int_equal(av._unknown.count, 0);
    assert_int_equal(av._tags_present, 0);

    kp_fetch_response_partition_data_t pd;
    kp_fetch_response_partition_data_init(&pd);
    assert_int_equal(pd.records.len, -1); /* records default to null */
    assert_true(pd.diverging_epoch.end_offset == -1);
    assert_int_equal(pd.current_leader.leader_id, -1);
}

/* An ApiVersions v3 request with an unknown tag 7 at the top level. */
static void test_unknown_tag_top_level(void **state)
{
    (void)state;
    static const uint8_t in[] = {
        0x04, 'a',  'b',  'c',       /* ClientSoftwareName "abc" */
        0x04, '1',  '.',  '0',       /* ClientSoftwareVersion "1.0" */
        0x01,                        /* one tagged field */
        0x07, 0x03, 0xde, 0xad, 0xbe /* tag 7, 3 bytes */
    };
    kp_arena_t a;
    kp_arena_init(&a, kp_arena_limit_for(sizeof in));
    kp_reader_t r;
    kp_reader_init(&r, in, sizeof in);
    kp_api_versions_request_t req;
    assert_int_equal(kp_api_versions_request_decode(&r, &a, 3, &req), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);
    assert_true(kp_str_eq(req.client_software_name, "abc"));
    assert_true(kp_str_eq(req.client_software_version, "1.0"));
    assert_int_equal(req._unknown.count, 1);
    assert_int_equal(req._unknown.items[0].tag, 7);
    assert_int_equal(req._unknown.items[0].data.len, 3);
    assert_memory_equal(req._unknown.items[0].data.ptr, in + 11, 3);
    assert_ptr_equal(req._unknown.items[0].data.ptr, in + 11); /* a view */

    kp_writer_t w;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_api_versions_request_encode(&w, 3, &req), KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof in);
    assert_memory_equal(w.buf, in, sizeof in);
    kp_writer_deinit(&w);

    /* ApiVersions v2 has no request fields: nothing is read. */
    kp_reader_init(&r, in, sizeof in);
    assert_int_equal(kp_api_versions_request_decode(&r, &a, 2, &req), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), sizeof in); /* v2 has no fields */
    kp_arena_deinit(&a);
}

/* Known and unknown tags merged in tag order, at two nesting levels; a
 * known tag present with its default value is re-encoded because it was
 * present. */
static const uint8_t av_resp_v3[] = {
    0x00, 0x00,                         /* ErrorCode */
    0x02,                               /* ApiKeys: 1 element */
    0x00, 0x12, 0x00, 0x00, 0x00, 0x04, /* ApiKey 18, MinVersion 0, MaxVersion 4 */
    0x01, 0x05, 0x01, 0x42,             /* element tags: unknown tag 5, 1 byte */
    0x00, 0x00, 0x00, 0x07,             /* ThrottleTimeMs */
    0x03,                               /* three tagged fields */
    0x01, 0x08, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, /* tag 1 FinalizedFeaturesEpoch -1 */
    0x03, 0x01, 0x01,       /* tag 3 ZkMigrationReady true */
    0x09, 0x02, 0x11, 0x22, /* tag 9 unknown */
};
#define AV_TAG1 19 /* offset of tag 1's size byte in av_resp_v3 */

static void test_unknown_tags_merged(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_arena_init(&a, kp_arena_limit_for(sizeof av_resp_v3));
    kp_reader_t r;
    kp_reader_init(&r, av_resp_v3, sizeof av_resp_v3);
    kp_api_versions_response_t resp;
    assert_int_equal(kp_api_versions_response_decode(&r, &a, 3, &resp), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);
    assert_int_equal(resp.api_keys_count, 1);
    assert_int_equal(resp.api_keys[0].api_key, 18);
    assert_int_equal(resp.api_keys[0].max_version, 4);
    assert_int_equal(resp.api_keys[0]._unknown.count, 1);
    assert_int_equal(resp.api_keys[0]._unknown.items[0].tag, 5);
    assert_int_equal(resp.throttle_time_ms, 7);
    assert_true(resp.finalized_features_epoch == -1);
    assert_true(resp.zk_migration_ready);
    /* bits: 0 SupportedFeatures, 1 FinalizedFeaturesEpoch, 2 FinalizedFeatures, 3 Zk... */
    assert_int_equal(resp._tags_present, (1u << 1) | (1u << 3));
    assert_int_equal(resp._unknown.count, 1);
    assert_int_equal(resp._unknown.items[0].tag, 9);

    kp_writer_t w;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_api_versions_response_encode(&w, 3, &resp), KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof av_resp_v3);
    assert_memory_equal(w.buf, av_resp_v3, sizeof av_resp_v3);
    kp_writer_deinit(&w);

    /* Without the presence bit, the default-valued tag 1 is left out. */
    resp._tags_present &= ~(1u << 1);
    kp_writer_init(&w, 16);
    assert_int_equal(kp_api_versions_response_encode(&w, 3, &resp), KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof av_resp_v3 - 10);
    assert_int_equal(w.buf[AV_TAG1 - 2], 0x02); /* two tagged fields */
    kp_writer_deinit(&w);

    /* A non-default value is written even without the bit. */
    resp.finalized_features_epoch = 5;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_api_versions_response_encode(&w, 3, &resp), KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof av_resp_v3);
    assert_int_equal(w.buf[AV_TAG1 + 8], 5);
    kp_writer_deinit(&w);
    kp_arena_deinit(&a);
}

/* A known tagged field must fill its size exactly. */
static void test_tag_size_mismatch(void **state)
{
    (void)state;
    uint8_t buf[sizeof av_resp_v3 + 1];
    kp_arena_t a;
    kp_arena_init(&a, 1 << 16);
    kp_api_versions_response_t resp;
    kp_reader_t r;

    /* Size 9 for an int64: one byte is left over in the tag. */
    memcpy(buf, av_resp_v3, AV_TAG1 + 9);
    buf[AV_TAG1] = 0x09;
    buf[AV_TAG1 + 9] = 0x00;
    memcpy(buf + AV_TAG1 + 10, av_resp_v3 + AV_TAG1 + 9, sizeof av_resp_v3 - AV_TAG1 - 9);
    kp_reader_init(&r, buf, sizeof buf);
    assert_int_equal(kp_api_versions_response_decode(&r, &a, 3, &resp), KP_DECODE_RANGE);

    /* Size 7 for an int64: the field underflows its tag. */
    memcpy(buf, av_resp_v3, sizeof av_resp_v3);
    buf[AV_TAG1] = 0x07;
    kp_reader_init(&r, buf, sizeof av_resp_v3);
    kp_derr_t err = kp_api_versions_response_decode(&r, &a, 3, &resp);
    assert_int_not_equal(err, KP_DECODE_OK);

    /* Tags out of order. */
    static const uint8_t disorder[] = {0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                                       0x02, 0x09, 0x00, 0x03, 0x01, 0x01};
    kp_reader_init(&r, disorder, sizeof disorder);
    assert_int_equal(kp_api_versions_response_decode(&r, &a, 3, &resp), KP_DECODE_BAD_TAGS);
    kp_arena_deinit(&a);
}

static void test_nullable(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_arena_init(&a, 1 << 16);
    kp_writer_t w;
    kp_reader_t r;

    /* Produce v3: TransactionalId is a nullable string (int16 -1). */
    kp_produce_request_t p, p2;
    kp_produce_request_init(&p);
    p.acks = -1;
    p.timeout_ms = 1000;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_produce_request_encode(&w, 3, &p), KP_ENCODE_OK);
    static const uint8_t v3[] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x03, 0xe8, 0, 0, 0, 0};
    assert_int_equal(w.len, sizeof v3);
    assert_memory_equal(w.buf, v3, sizeof v3);
    kp_writer_deinit(&w);
    kp_reader_init(&r, v3, sizeof v3);
    assert_int_equal(kp_produce_request_decode(&r, &a, 3, &p2), KP_DECODE_OK);
    assert_int_equal(p2.transactional_id.len, -1);
    assert_true(kp_produce_request_eq(&p, &p2, 3));
    p2.acks = 1;
    assert_false(kp_produce_request_eq(&p, &p2, 3));

    /* Flexible v9: compact null is 0; an empty string differs from null. */
    kp_writer_init(&w, 16);
    assert_int_equal(kp_produce_request_encode(&w, 9, &p), KP_ENCODE_OK);
    assert_int_equal(w.buf[0], 0x00);
    kp_writer_deinit(&w);
    p2 = p;
    p2.transactional_id = kp_str("");
    assert_false(kp_produce_request_eq(&p, &p2, 9));
    assert_true(kp_produce_request_eq(&p, &p2, 2)); /* not in v2 */

    /* A null topic name is not allowed: encode refuses, decode too. */
    kp_produce_request_topic_produce_data_t t;
    kp_produce_request_topic_produce_data_init(&t);
    t.name = KP_STR_NULL;
    p.topic_data = &t;
    p.topic_data_count = 1;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_produce_request_encode(&w, 3, &p), KP_ENCODE_NULL);
    kp_writer_deinit(&w);
    static const uint8_t null_name[] = {0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x03, 0xe8, 0x00,
                                        0x00, 0x00, 0x01, 0xff, 0xff, 0,    0,    0,    0};
    kp_reader_init(&r, null_name, sizeof null_name);
    assert_int_equal(kp_produce_request_decode(&r, &a, 3, &p2), KP_DECODE_NULL);

    /* Metadata: a null topic array is allowed from v1 on, not in v0. */
    kp_metadata_request_t m, m2;
    kp_metadata_request_init(&m);
    m.topics_count = -1;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_metadata_request_encode(&w, 0, &m), KP_ENCODE_NULL);
    kp_writer_deinit(&w);
    kp_writer_init(&w, 16);
    assert_int_equal(kp_metadata_request_encode(&w, 1, &m), KP_ENCODE_OK);
    assert_int_equal(w.len, 4);
    assert_memory_equal(w.buf, "\xff\xff\xff\xff", 4);
    kp_reader_init(&r, w.buf, w.len);
    assert_int_equal(kp_metadata_request_decode(&r, &a, 1, &m2), KP_DECODE_OK);
    assert_int_equal(m2.topics_count, -1);
    assert_null(m2.topics);
    kp_reader_init(&r, w.buf, w.len);
    assert_int_equal(kp_metadata_request_decode(&r, &a, 0, &m2), KP_DECODE_NULL);
    kp_writer_deinit(&w);

    /* An array count without elements is refused, not dereferenced. */
    m.topics_count = 2;
    m.topics = NULL;
    kp_writer_init(&w, 16);
    assert_int_equal(kp_metadata_request_encode(&w, 1, &m), KP_ENCODE_RANGE);
    kp_writer_deinit(&w);

    /* Fetch v12: ClusterId is a tagged nullable string, default null: not
     * written while null, written once set. */
    kp_fetch_request_t f, f2;
    kp_fetch_request_init(&f);
    kp_writer_init(&w, 16);
    assert_int_equal(kp_fetch_request_encode(&w, 12, &f), KP_ENCODE_OK);
    size_t plain = w.len;
    assert_int_equal(w.buf[plain - 1], 0x00); /* empty top-level tag buffer */
    kp_writer_deinit(&w);
    f.cluster_id = kp_str("c1");
    kp_writer_init(&w, 16);
    assert_int_equal(kp_fetch_request_encode(&w, 12, &f), KP_ENCODE_OK);
    assert_int_equal(w.len, plain + 5);
    assert_memory_equal(w.buf + plain - 1,
                        "\x01\x00\x03\x03"
                        "c1",
                        6);
    kp_reader_init(&r, w.buf, w.len);
    assert_int_equal(kp_fetch_request_decode(&r, &a, 12, &f2), KP_DECODE_OK);
    assert_true(kp_str_eq(f2.cluster_id, "c1"));
    assert_int_equal(f2._tags_present, 1u << 0);
    kp_writer_deinit(&w);
    kp_arena_deinit(&a);
}

static void test_request_header(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_arena_init(&a, 1 << 16);
    kp_request_header_t h;
    kp_reader_t r;
    kp_writer_t w;

    /* v1: ClientId is a classic nullable string. */
    static const uint8_t v1[] = {0x00, 0x03, 0x00, 0x05, 0x00, 0x00, 0x00,
                                 0x2a, 0x00, 0x03, 'c',  'l',  'i'};
    kp_reader_init(&r, v1, sizeof v1);
    assert_int_equal(kp_request_header_decode(&r, &a, 1, &h), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);
    assert_int_equal(h.request_api_key, KP_API_METADATA);
    assert_int_equal(h.request_api_version, 5);
    assert_int_equal(h.correlation_id, 42);
    assert_true(kp_str_eq(h.client_id, "cli"));
    kp_writer_init(&w, 16);
    assert_int_equal(kp_request_header_encode(&w, 1, &h), KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof v1);
    assert_memory_equal(w.buf, v1, sizeof v1);
    kp_writer_deinit(&w);

    /* v2: the same ClientId (never compact), then a tag buffer. */
    static const uint8_t v2[] = {0x00, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00,
                                 0x2a, 0x00, 0x03, 'c',  'l',  'i',  0x00};
    kp_reader_init(&r, v2, sizeof v2);
    assert_int_equal(kp_request_header_decode(&r, &a, 2, &h), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);
    assert_true(kp_str_eq(h.client_id, "cli"));
    kp_writer_init(&w, 16);
    assert_int_equal(kp_request_header_encode(&w, 2, &h), KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof v2);
    assert_memory_equal(w.buf, v2, sizeof v2);
    kp_writer_deinit(&w);

    /* A null ClientId. */
    static const uint8_t null_id[] = {0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff};
    kp_reader_init(&r, null_id, sizeof null_id);
    assert_int_equal(kp_request_header_decode(&r, &a, 1, &h), KP_DECODE_OK);
    assert_int_equal(h.client_id.len, -1);

    assert_int_equal(kp_request_header_version(KP_API_PRODUCE, 8), 1);
    assert_int_equal(kp_request_header_version(KP_API_PRODUCE, 9), 2);
    assert_int_equal(kp_request_header_version(KP_API_API_VERSIONS, 2), 1);
    assert_int_equal(kp_request_header_version(KP_API_API_VERSIONS, 3), 2);
    assert_int_equal(kp_request_header_version(KP_API_DESCRIBE_CLUSTER, 0), 2);
    assert_int_equal(kp_request_header_version(KP_API_SASL_HANDSHAKE, 1), 1);
    assert_int_equal(kp_request_header_version(1000, 0), 1);
    kp_arena_deinit(&a);
}

/* Fill, encode, decode, compare and re-encode a header in every version. */
#define HEADER_ROUND_TRIP(type, maxv)                                                              \
    for (int16_t v = 0; v <= (maxv); v++) {                                                        \
        for (uint64_t s = 0; s < 20; s++) {                                                        \
            kp_arena_t fa;                                                                         \
            kp_arena_init(&fa, FILL_ARENA);                                                        \
            kp_##type##_t h1, h2;                                                                  \
            uint64_t seed = s;                                                                     \
            kp_##type##_fill(&h1, &fa, v, &seed);                                                  \
            kp_writer_t w1, w2;                                                                    \
            kp_writer_init(&w1, 16);                                                               \
            kp_writer_init(&w2, 16);                                                               \
            assert_int_equal(kp_##type##_encode(&w1, v, &h1), KP_ENCODE_OK);                       \
            kp_reader_t r;                                                                         \
            kp_reader_init(&r, w1.buf, w1.len);                                                    \
            assert_int_equal(kp_##type##_decode(&r, &fa, v, &h2), KP_DECODE_OK);                   \
            assert_int_equal(kp_reader_remaining(&r), 0);                                          \
            assert_true(kp_##type##_eq(&h1, &h2, v));                                              \
            assert_int_equal(kp_##type##_encode(&w2, v, &h2), KP_ENCODE_OK);                       \
            assert_int_equal(w1.len, w2.len);                                                      \
            assert_memory_equal(w1.buf, w2.buf, w1.len);                                           \
            kp_writer_deinit(&w1);                                                                 \
            kp_writer_deinit(&w2);                                                                 \
            kp_arena_deinit(&fa);                                                                  \
        }                                                                                          \
    }

static void test_header_round_trip(void **state)
{
    (void)state;
    HEADER_ROUND_TRIP(request_header, KP_REQUEST_HEADER_MAX_VERSION)
    HEADER_ROUND_TRIP(response_header, KP_RESPONSE_HEADER_MAX_VERSION)
}

static void test_response_header(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_arena_init(&a, 1 << 16);
    kp_response_header_t h;
    kp_reader_t r;
    kp_writer_t w;
    static const uint8_t v1[] = {0x00, 0x00, 0x00, 0x2a, 0x00};

    kp_reader_init(&r, v1, sizeof v1);
    assert_int_equal(kp_response_header_decode(&r, &a, 0, &h), KP_DECODE_OK);
    assert_int_equal(h.correlation_id, 42);
    assert_int_equal(kp_reader_remaining(&r), 1);
    kp_reader_init(&r, v1, sizeof v1);
    assert_int_equal(kp_response_header_decode(&r, &a, 1, &h), KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);

    kp_writer_init(&w, 16);
    assert_int_equal(kp_response_header_encode(&w, 0, &h), KP_ENCODE_OK);
    assert_int_equal(w.len, 4);
    kp_writer_deinit(&w);
    kp_writer_init(&w, 16);
    assert_int_equal(kp_response_header_encode(&w, 1, &h), KP_ENCODE_OK);
    assert_int_equal(w.len, 5);
    assert_memory_equal(w.buf, v1, 5);
    kp_writer_deinit(&w);

    assert_int_equal(kp_response_header_version(KP_API_FETCH, 11), 0);
    assert_int_equal(kp_response_header_version(KP_API_FETCH, 12), 1);
    assert_int_equal(kp_response_header_version(KP_API_DESCRIBE_CLUSTER, 0), 1);
    assert_int_equal(kp_response_header_version(KP_API_OFFSET_DELETE, 0), 0);
    /* The ApiVersions quirk: its response header is v0 even when flexible. */
    for (int16_t v = 0; v <= KP_API_VERSIONS_MAX_VERSION + 1; v++)
        assert_int_equal(kp_response_header_version(KP_API_API_VERSIONS, v), 0);
    assert_int_equal(kp_response_header_version(1000, 5), 0);
    kp_arena_deinit(&a);
}

static void test_decode_request(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_request_header_t h;
    void *body;

    /* ApiVersions v3: header v2, then the flexible body. */
    static const uint8_t frame[] = {0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x07,
                                    0x00, 0x02, 'i',  'd',  0x00, /* ClientId "id", no tags */
                                    0x03, 'l',  'i',  0x04, '2',  '.',  '0',  0x00};
    kp_arena_init(&a, kp_arena_limit_for(sizeof frame));
    assert_int_equal(kp_decode_request(frame, sizeof frame, &a, &h, &body), KP_DECODE_OK);
    assert_int_equal(h.request_api_key, KP_API_API_VERSIONS);
    assert_int_equal(h.correlation_id, 7);
    assert_true(kp_str_eq(h.client_id, "id"));
    assert_non_null(body);
    const kp_api_versions_request_t *req = body;
    assert_true(kp_str_eq(req->client_software_name, "li"));
    assert_true(kp_str_eq(req->client_software_version, "2.0"));

    /* A version this build does not know: ClientId is still parsed. */
    uint8_t unknown[sizeof frame];
    memcpy(unknown, frame, sizeof frame);
    unknown[3] = 99;
    kp_arena_reset(&a);
    assert_int_equal(kp_decode_request(unknown, sizeof unknown, &a, &h, &body), KP_DECODE_VERSION);
    assert_null(body);
    assert_int_equal(h.request_api_version, 99);
    assert_int_equal(h.correlation_id, 7);
    assert_true(kp_str_eq(h.client_id, "id"));

    /* An api this build does not know. */
    unknown[0] = 0x03;
    unknown[1] = 0xe7;
    kp_arena_reset(&a);
    assert_int_equal(kp_decode_request(unknown, sizeof unknown, &a, &h, &body), KP_DECODE_VERSION);
    assert_int_equal(h.request_api_key, 999);

    /* Truncated frames. */
    for (size_t n = 0; n < sizeof frame; n++) {
        kp_arena_reset(&a);
        assert_int_not_equal(kp_decode_request(frame, n, &a, &h, &body), KP_DECODE_OK);
        assert_null(body);
    }

    /* Every api's request through the generic path. */
    for (int key = 0; key <= KP_API_MAX_KEY; key++) {
        const kp_api_desc_t *d = kp_api_desc((int16_t)key);
        if (!d)
            continue;
        for (int16_t v = d->min_version; v <= d->max_version; v++) {
            kp_arena_t fa;
            kp_arena_init(&fa, FILL_ARENA);
            uint64_t seed = (uint64_t)key * 100 + (uint64_t)v;
            kp_request_header_t hdr;
            kp_request_header_init(&hdr);
            hdr.request_api_key = d->api_key;
            hdr.request_api_version = v;
            hdr.correlation_id = v;
            hdr.client_id = kp_str("c");
            void *m = kp_arena_alloc(&fa, d->request.size);
            d->request.fill(m, &fa, v, &seed);
            kp_writer_t w;
            kp_writer_init(&w, 64);
            kp_request_header_encode(&w, kp_request_header_version(d->api_key, v), &hdr);
            assert_int_equal(d->request.encode(&w, v, m), KP_ENCODE_OK);
            kp_arena_t da;
            kp_arena_init(&da, kp_arena_limit_for(w.len));
            assert_int_equal(kp_decode_request(w.buf, w.len, &da, &h, &body), KP_DECODE_OK);
            assert_int_equal(h.request_api_version, v);
            assert_true(kp_str_eq(h.client_id, "c"));
            assert_true(d->request.eq(m, body, v));
            kp_arena_deinit(&da);
            kp_writer_deinit(&w);
            kp_arena_deinit(&fa);
        }
    }
    kp_arena_deinit(&a);
}

/* The arena bound: every element type decoding allocates takes at most
 * KP_DECODE_MAX_EXPANSION bytes per wire byte; the body struct fits in the
 * fixed slack of kp_arena_limit_for(). */
static void test_expansion_bound(void **state)
{
    (void)state;
    bool have_tag = false;
    assert_true(kp_alloc_types_count > 10);
    for (size_t i = 0; i < kp_alloc_types_count; i++) {
        const kp_alloc_type_t *t = &kp_alloc_types[i];
        CHECK(t->min_wire >= 1, "%s: min wire 0\n", t->name);
        CHECK(t->size <= KP_DECODE_MAX_EXPANSION * t->min_wire,
              "%s: %zu bytes for %zu on the wire\n", t->name, t->size, t->min_wire);
        if (strcmp(t->name, "kp_tag_t") == 0) {
            have_tag = true;
            assert_int_equal(t->size, sizeof(kp_tag_t));
        }
    }
    assert_true(have_tag);
    for (int key = 0; key <= KP_API_MAX_KEY; key++) {
        const kp_api_desc_t *d = kp_api_desc((int16_t)key);
        if (d) {
            assert_true(d->request.size + 8 <= kp_arena_limit_for(0));
            assert_true(d->response.size <= kp_arena_limit_for(0));
        }
    }
}

/* A huge array count with few bytes behind it fails before allocating. */
static void test_huge_array_count(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_reader_t r;
    kp_metadata_request_t m;

    /* Metadata v1: int32 count 0x7fffffff, then 4 bytes. */
    static const uint8_t classic[] = {0x7f, 0xff, 0xff, 0xff, 0x00, 0x01, 'x', 0x00};
    kp_arena_init(&a, 1u << 30);
    kp_reader_init(&r, classic, sizeof classic);
    kp_derr_t err = kp_metadata_request_decode(&r, &a, 1, &m);
    assert_true(err == KP_DECODE_RANGE || err == KP_DECODE_UNDERFLOW);
    assert_int_equal(a.used, 0);
    assert_int_equal(m.topics_count, 0);
    assert_null(m.topics);

    /* A count the remaining bytes could hold one byte per element, but not
     * at the element's minimum (a v1 topic is at least a 2-byte string). */
    static const uint8_t three[] = {0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00};
    kp_reader_init(&r, three, sizeof three);
    err = kp_metadata_request_decode(&r, &a, 1, &m);
    assert_true(err == KP_DECODE_RANGE || err == KP_DECODE_UNDERFLOW);
    assert_int_equal(a.used, 0);

    /* Metadata v9 (compact): uvarint count 2^32 - 2. */
    static const uint8_t compact[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x00, 0x00, 0x00};
    kp_reader_init(&r, compact, sizeof compact);
    err = kp_metadata_request_decode(&r, &a, 9, &m);
    assert_true(err == KP_DECODE_RANGE || err == KP_DECODE_UNDERFLOW);
    assert_int_equal(a.used, 0);

    /* Many tagged fields announced, few bytes. */
    static const uint8_t tags[] = {0x01, 0x01, 0xe8, 0x07, 0x00, 0x00, 0x00, 0x00};
    kp_reader_init(&r, tags, sizeof tags);
    kp_api_versions_request_t av;
    err = kp_api_versions_request_decode(&r, &a, 3, &av);
    assert_true(err == KP_DECODE_RANGE || err == KP_DECODE_UNDERFLOW);
    assert_int_equal(a.used, 0);

    /* A tight arena: decoding fails with NOMEM rather than overrunning it. */
    kp_arena_deinit(&a);
    static const uint8_t two[] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 'a', 0x00, 0x01, 'b'};
    kp_arena_init(&a, 8);
    kp_reader_init(&r, two, sizeof two);
    assert_int_equal(kp_metadata_request_decode(&r, &a, 1, &m), KP_DECODE_NOMEM);
    assert_true(a.used <= 8);
    kp_arena_deinit(&a);
}

/* The writer's output with the spans' bytes put in (returns owned, free()). */
static uint8_t *flatten(const kp_writer_t *w, size_t *len)
{
    uint8_t *out = malloc(kp_writer_size(w) + 1), *o = out;
    size_t at = 0;
    for (size_t i = 0; i < w->nspans; i++) {
        memcpy(o, w->buf + at, w->spans[i].pos - at);
        o += w->spans[i].pos - at;
        memcpy(o, w->spans[i].ptr, w->spans[i].len);
        o += w->spans[i].len;
        at = w->spans[i].pos;
    }
    memcpy(o, w->buf + at, w->len - at);
    *len = kp_writer_size(w);
    return out;
}

#define SPAN_PARTS 4 /* pieces of the one partition given as parts */

/* A Fetch response of @np partitions (in two topics) of shapes that cycle
 * through empty, small, large, and large + small parts; @flat holds each
 * partition's records as one copy, @parts the same bytes as pieces. */
static void fetch_resp(kp_fetch_response_t *m, kp_fetch_response_partition_data_t *pds, int np,
                       const uint8_t *data, kp_bytes_t (*parts)[SPAN_PARTS], bool use_parts)
{
    static kp_fetch_response_fetchable_topic_response_t topics[2];
    kp_fetch_response_init(m);
    m->responses = np > 0 ? topics : NULL;
    m->responses_count = np > 1 ? 2 : np;
    for (int t = 0; t < m->responses_count; t++) {
        kp_fetch_response_fetchable_topic_response_init(&topics[t]);
        topics[t].topic = kp_str(t ? "second" : "first");
        topics[t].topic_id.b[0] = (uint8_t)(t + 1);
        topics[t].partitions = pds + (t ? np / 2 : 0);
        topics[t].partitions_count = np > 1 ? (t ? np - np / 2 : np / 2) : np;
    }
    for (int i = 0; i < np; i++) {
        kp_fetch_response_partition_data_t *pd = &pds[i];
        kp_fetch_response_partition_data_init(pd);
        pd->partition_index = i;
        pd->high_watermark = pd->last_stable_offset = 1000 + i;
        pd->log_start_offset = i;
        pd->aborted_transactions_count = 0;
        pd->preferred_read_replica = -1;
        const uint8_t *d = data + 1000 * i;
        switch (np == 1 ? 2 : i % 4) {
        case 0:
            pd->records = (kp_bytes_t){data, 0};
            break;
        case 1:
            pd->records = (kp_bytes_t){d, 300};
            break;
        case 2:
            pd->records = (kp_bytes_t){d, 70000};
            break;
        default:
            /* A large piece, a small one, an empty one, a large one. */
            parts[i][0] = (kp_bytes_t){d, 5000};
            parts[i][1] = (kp_bytes_t){d + 5000, 17};
            parts[i][2] = (kp_bytes_t){d + 5017, 0};
            parts[i][3] = (kp_bytes_t){d + 5017, 20000};
            pd->records = (kp_bytes_t){d, 25017}; /* contiguous here: the copy */
            if (use_parts) {
                pd->records = KP_BYTES_NULL; /* ignored when parts are given */
                pd->records_parts = parts[i];
                pd->records_parts_count = SPAN_PARTS;
            }
            break;
        }
    }
}

/* Fetch responses written with spans and parts are byte for byte those
 * written by copying, at every version the gateway answers (4-13). */
static void test_fetch_response_spans(void **state)
{
    (void)state;
    enum { MAXP = 9 };
    uint8_t *data = malloc(1000 * MAXP + 70000);
    for (size_t i = 0; i < 1000 * MAXP + 70000; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    kp_fetch_response_partition_data_t pds[MAXP];
    kp_bytes_t parts[MAXP][SPAN_PARTS];
    const int counts[] = {0, 1, 2, 4, MAXP};
    for (int16_t v = 4; v <= 13; v++) {
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            int np = counts[c];
            kp_fetch_response_t m;
            kp_writer_t copy, refer;
            kp_writer_init(&copy, 64);
            fetch_resp(&m, pds, np, data, parts, false);
            assert_int_equal(kp_fetch_response_encode(&copy, v, &m), KP_ENCODE_OK);
            kp_writer_init(&refer, 64);
            kp_writer_refer(&refer, 4096);
            fetch_resp(&m, pds, np, data, parts, true);
            assert_int_equal(kp_fetch_response_encode(&refer, v, &m), KP_ENCODE_OK);
            assert_int_equal(copy.nspans, 0);
            /* Spans: one per large value, two per partition given as parts. */
            size_t want = np == 1 ? 1 : 0;
            for (int i = 0; np > 1 && i < np; i++)
                want += i % 4 == 2 ? 1 : i % 4 == 3 ? 2 : 0;
            assert_int_equal(refer.nspans, want);
            size_t n;
            uint8_t *flat = flatten(&refer, &n);
            assert_int_equal(n, copy.len);
            assert_memory_equal(flat, copy.buf, n);
            /* And the flattened bytes decode to the records given. */
            kp_reader_t r;
            kp_arena_t a;
            kp_arena_init(&a, kp_arena_limit_for(n));
            kp_reader_init(&r, flat, n);
            kp_fetch_response_t back;
            assert_int_equal(kp_fetch_response_decode(&r, &a, v, &back), KP_DECODE_OK);
            int k = 0;
            for (int t = 0; t < back.responses_count; t++)
                for (int i = 0; i < back.responses[t].partitions_count; i++, k++) {
                    kp_bytes_t got = back.responses[t].partitions[i].records;
                    fetch_resp(&m, pds, np, data, parts, false);
                    assert_int_equal(got.len, pds[k].records.len);
                    if (got.len > 0)
                        assert_memory_equal(got.ptr, pds[k].records.ptr, (size_t)got.len);
                }
            assert_int_equal(k, np);
            kp_arena_deinit(&a);
            free(flat);
            kp_writer_deinit(&copy);
            kp_writer_deinit(&refer);
        }
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all),
        cmocka_unit_test(test_version_range),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_unknown_tag_top_level),
        cmocka_unit_test(test_unknown_tags_merged),
        cmocka_unit_test(test_tag_size_mismatch),
        cmocka_unit_test(test_nullable),
        cmocka_unit_test(test_request_header),
        cmocka_unit_test(test_response_header),
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_decode_request),
        cmocka_unit_test(test_expansion_bound),
        cmocka_unit_test(test_huge_array_count),
        cmocka_unit_test(test_fetch_response_spans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
