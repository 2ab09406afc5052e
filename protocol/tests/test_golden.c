/*
 * test_golden.c: frames captured from real clients (kcat/librdkafka 2.0.2,
 * confluent-kafka-python, kafka-python 2.0.2, kafkajs 2.2.4) talking to
 * librdkafka's mock cluster -- see protocol/tests/golden/README.md.  Each
 * decodes with the generated codec and re-encodes byte-exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_codec.h"
#include "kp_msgs.h"

typedef struct vec {
    char file[256];
    char client[64];
    char dir[8]; /* "req" | "resp" */
    int api_key;
    int api_version;
    char note[256];
} vec_t;

static char vec_dir[1024];

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static size_t load_index(vec_t **out)
{
    const char *src = getenv("NH_SOURCE_DIR");
    snprintf(vec_dir, sizeof vec_dir, "%s/protocol/tests/golden/vectors", src ? src : ".");
    char path[1200];
    snprintf(path, sizeof path, "%s/index.tsv", vec_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (set NH_SOURCE_DIR)", path);
    size_t n = 0, cap = 64;
    vec_t *v = calloc(cap, sizeof(*v));
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || strncmp(line, "file\t", 5) == 0)
            continue;
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof(*v));
        vec_t *e = &v[n];
        memset(e, 0, sizeof(*e));
        if (sscanf(line, "%255[^\t]\t%63[^\t]\t%7[^\t]\t%d\t%d\t%255[^\n]", e->file, e->client,
                   e->dir, &e->api_key, &e->api_version, e->note) < 5)
            continue;
        n++;
    }
    fclose(f);
    *out = v;
    return n;
}

/* Decode and re-encode a request frame; returns 0 when byte-exact. */
static int roundtrip_request(const uint8_t *buf, size_t len, const vec_t *e)
{
    kp_arena_t a;
    kp_arena_init(&a, kp_arena_limit_for(len));
    kp_request_header_t hdr;
    void *body = NULL;
    kp_derr_t err = kp_decode_request(buf, len, &a, &hdr, &body);
    int rc = -1;
    if (err != KP_DECODE_OK) {
        print_error("%s: decode: %s\n", e->file, kp_derr_str(err));
        goto out;
    }
    if (hdr.request_api_key != e->api_key || hdr.request_api_version != e->api_version) {
        print_error("%s: header says api %d v%d\n", e->file, hdr.request_api_key,
                    hdr.request_api_version);
        goto out;
    }
    kp_writer_t w;
    kp_writer_init(&w, len);
    kp_request_header_encode(
        &w, kp_request_header_version(hdr.request_api_key, hdr.request_api_version), &hdr);
    kp_api_desc(hdr.request_api_key)->request.encode(&w, hdr.request_api_version, body);
    if (w.err == KP_ENCODE_OK && w.len == len && memcmp(w.buf, buf, len) == 0)
        rc = 0;
    else
        print_error("%s: re-encoding differs (%zu vs %zu bytes)\n", e->file, w.len, len);
    kp_writer_deinit(&w);
out:
    kp_arena_deinit(&a);
    return rc;
}

/* The version a response body is encoded in: its request's, except that an
 * ApiVersions request of a version the broker does not know is answered in
 * v0 with UNSUPPORTED_VERSION (error code right after the header). */
static int16_t response_body_version(const uint8_t *buf, size_t len, const vec_t *e)
{
    if (e->api_key == KP_API_API_VERSIONS && len >= 6 && kp_be16(buf + 4) == 35)
        return 0;
    return (int16_t)e->api_version;
}

static int roundtrip_response(const uint8_t *buf, size_t len, const vec_t *e)
{
    const kp_api_desc_t *d = kp_api_desc((int16_t)e->api_key);
    if (!d) {
        print_error("%s: api %d is not generated\n", e->file, e->api_key);
        return -1;
    }
    int16_t ver = response_body_version(buf, len, e);
    int16_t hv = kp_response_header_version((int16_t)e->api_key, (int16_t)e->api_version);
    kp_arena_t a;
    kp_arena_init(&a, kp_arena_limit_for(len));
    kp_reader_t r;
    kp_reader_init(&r, buf, len);
    kp_response_header_t hdr;
    void *body = kp_arena_alloc(&a, d->response.size);
    kp_response_header_decode(&r, &a, hv, &hdr);
    d->response.decode(&r, &a, ver, body);
    int rc = -1;
    if (r.err != KP_DECODE_OK || kp_reader_remaining(&r) != 0) {
        print_error("%s: decode: %s, %zu bytes left\n", e->file, kp_derr_str(r.err),
                    kp_reader_remaining(&r));
        kp_arena_deinit(&a);
        return -1;
    }
    kp_writer_t w;
    kp_writer_init(&w, len);
    kp_response_header_encode(&w, hv, &hdr);
    d->response.encode(&w, ver, body);
    if (w.err == KP_ENCODE_OK && w.len == len && memcmp(w.buf, buf, len) == 0)
        rc = 0;
    else
        print_error("%s: re-encoding differs (%zu vs %zu bytes)\n", e->file, w.len, len);
    kp_writer_deinit(&w);
    kp_arena_deinit(&a);
    return rc;
}

static void test_vectors_roundtrip(void **state)
{
    (void)state;
    vec_t *v;
    size_t n = load_index(&v);
    assert_true(n >= 50);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", vec_dir, v[i].file);
        size_t len;
        uint8_t *buf = slurp(path, &len);
        if (!buf) {
            print_error("%s: cannot read\n", path);
            failed++;
            continue;
        }
        int rc = strcmp(v[i].dir, "req") == 0 ? roundtrip_request(buf, len, &v[i])
                                              : roundtrip_response(buf, len, &v[i]);
        if (rc != 0)
            failed++;
        free(buf);
    }
    print_message("golden: %zu vectors, %d failed\n", n, failed);
    free(v);
    assert_int_equal(failed, 0);
}

/* The vectors cover, for every client, the APIs the codec must read from
 * real clients, in both directions. */
static void test_vectors_coverage(void **state)
{
    (void)state;
    static const int16_t required[] = {
        KP_API_API_VERSIONS, KP_API_METADATA,      KP_API_PRODUCE,       KP_API_FETCH,
        KP_API_LIST_OFFSETS, KP_API_OFFSET_COMMIT, KP_API_OFFSET_FETCH,  KP_API_FIND_COORDINATOR,
        KP_API_JOIN_GROUP,   KP_API_SYNC_GROUP,    KP_API_CREATE_TOPICS, KP_API_INIT_PRODUCER_ID,
    };
    vec_t *v;
    size_t n = load_index(&v);
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++) {
        int req = 0, resp = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i].api_key != required[k])
                continue;
            if (strcmp(v[i].dir, "req") == 0)
                req++;
            else
                resp++;
        }
        if (!req || !resp)
            fail_msg("no golden %s for api %d", req ? "response" : "request", required[k]);
    }
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_roundtrip),
        cmocka_unit_test(test_vectors_coverage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
