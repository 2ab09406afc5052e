/*
 * test_nh_dump.c: nuthatch-dump (argv[1]) on objects built here -- the
 * fields it prints, escaping, directories, and damaged input: every
 * truncation, every flipped byte, and batches damaged under valid chunk
 * checksums.  Damage must give exit status 1 and one line on stderr,
 * never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kp_batch.h"
#include "kp_crc32c.h"
#include "st_format.h"

extern char **environ;

static const char *dump_bin;
static char dir[256];

/* ------------------------------------------------------------ objects */

typedef struct chunk_in {
    uint8_t topic_byte; /* topic id: 16 times this byte */
    int32_t partition;
    int64_t base_offset;
    kp_compression_t codecs[3]; /* one batch per entry until NONE after the first */
    int nbatches;
} chunk_in_t;

static const uint8_t binary_value[] = {0x00, 0xff, '"', '\\', '\n', 0xc3, 0xa9};

/* Append one batch of three records (base offset @base) to @w. */
static void add_batch(kp_writer_t *w, kp_compression_t codec, int64_t base)
{
    kp_record_header_t hdrs[2] = {
        {kp_str("h1"), {(const uint8_t *)"v1", 2}},
        {kp_str("h-null"), KP_BYTES_NULL},
    };
    kp_record_in_t recs[3] = {
        {1000, {(const uint8_t *)"k0", 2}, {(const uint8_t *)"value 0", 7}, hdrs, 2},
        {1001, KP_BYTES_NULL, {binary_value, (int32_t)sizeof binary_value}, NULL, 0},
        {1002, {(const uint8_t *)"k2", 2}, KP_BYTES_NULL, hdrs, 1},
    };
    kp_batch_spec_t spec = {0, -1, codec, 0, 0, 42, 3, 7};
    size_t at = w->len;
    assert_int_equal(kp_batch_build(w, &spec, recs, 3), KP_BATCH_OK);
    kp_batch_set_base_offset(w->buf + at, base);
    kp_batch_set_leader_epoch(w->buf + at, 5);
}

/* An object of @n chunks; owned (free()). */
static uint8_t *build_object(const chunk_in_t *in, size_t n, size_t *len)
{
    kp_writer_t w;
    st_chunk_desc_t descs[8];
    kp_writer_init(&w, 1024);
    st_obj_header_t h = {7, 3, 42};
    st_obj_write_header(&w, &h);
    for (size_t i = 0; i < n; i++) {
        st_chunk_desc_t *d = &descs[i];
        memset(d, 0, sizeof *d);
        memset(d->topic_id.b, in[i].topic_byte, 16);
        d->partition = in[i].partition;
        d->batches = in[i].nbatches;
        d->base_offset = in[i].base_offset;
        d->last_offset = in[i].base_offset + 3 * in[i].nbatches - 1;
        d->max_timestamp = 1002;
        d->pos = w.len;
        for (int b = 0; b < in[i].nbatches; b++)
            add_batch(&w, in[i].codecs[b], in[i].base_offset + 3 * b);
        d->len = (uint32_t)(w.len - d->pos);
        d->crc = kp_crc32c(0, w.buf + d->pos, d->len);
    }
    st_obj_write_footer(&w, descs, n);
    assert_int_equal(w.err, KP_ENCODE_OK);
    return kp_writer_take(&w, len);
}

/* Recompute every chunk CRC and the footer CRC of @obj in place (after
 * damage inside chunks, so that only the batch checks can notice). */
static void resign(uint8_t *obj, size_t len)
{
    uint64_t fpos = kp_be64(obj + len - ST_OBJ_TRAILER_SIZE);
    uint32_t flen = kp_be32(obj + len - ST_OBJ_TRAILER_SIZE + 8);
    uint32_t count = kp_be32(obj + fpos);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t *e = obj + fpos + 4 + (size_t)i * ST_OBJ_ENTRY_SIZE;
        kp_put_be32(e + 60, kp_crc32c(0, obj + kp_be64(e + 48), kp_be32(e + 56)));
    }
    kp_put_be32(obj + len - ST_OBJ_TRAILER_SIZE + 12, kp_crc32c(0, obj + fpos, flen));
}

static const chunk_in_t two_chunks[2] = {
    {0x11, 0, 100, {KP_COMPRESSION_NONE, KP_COMPRESSION_GZIP}, 2},
    {0x22, 3, 7, {KP_COMPRESSION_ZSTD}, 1},
};

/* ------------------------------------------------------------ running */

typedef struct run {
    int status; /* exit status, or -signal */
    char *out, *err;
    int err_lines;
} run_t;

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Run nuthatch-dump with @args (NULL-terminated). */
static run_t run_dump(const char *const *args)
{
    char out[300], err[300];
    snprintf(out, sizeof out, "%s/stdout", dir);
    snprintf(err, sizeof err, "%s/stderr", dir);
    const char *argv[16] = {dump_bin};
    int n = 1;
    while (args[n - 1] && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, dump_bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    run_t r = {0};
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    r.out = read_all(out);
    r.err = read_all(err);
    for (const char *p = r.err; *p; p++)
        r.err_lines += *p == '\n';
    return r;
}

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* Damaged input: status 1, exactly one stderr line naming the file. */
static void assert_one_error(const run_t *r, const char *path)
{
    if (r->status != 1 || r->err_lines != 1)
        fail_msg("status %d, %d stderr lines: %s", r->status, r->err_lines, r->err);
    char prefix[400];
    snprintf(prefix, sizeof prefix, "nuthatch-dump: %s: ", path);
    assert_int_equal(strncmp(r->err, prefix, strlen(prefix)), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/nh-dump-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ tests */

static void test_fields_json(void **state)
{
    (void)state;
    size_t len;
    uint8_t *obj = build_object(two_chunks, 2, &len);
    char path[300];
    snprintf(path, sizeof path, "%s/0000000003-000000000042.nho", dir);
    write_file(path, obj, len);

    run_t r = run_dump((const char *[]){"--json", "--records", path, NULL});
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    char expect[400];
    snprintf(expect, sizeof expect,
             "{\"type\":\"object\",\"path\":\"%s\",\"size\":%zu,\"node_id\":7,"
             "\"incarnation\":3,\"sequence\":42,\"chunks\":2}\n",
             path, len);
    assert_int_equal(strncmp(r.out, expect, strlen(expect)), 0);
    assert_contains(r.out, "\"chunk\":0,\"topic_id\":\"11111111111111111111111111111111\","
                           "\"partition\":0,\"batches\":2,\"base_offset\":100,"
                           "\"last_offset\":105,\"max_timestamp\":1002,\"position\":32,");
    assert_contains(r.out, "\"topic_id\":\"22222222222222222222222222222222\",\"partition\":3,"
                           "\"batches\":1,\"base_offset\":7,\"last_offset\":9,");
    assert_contains(r.out, "\"base_offset\":100,\"last_offset_delta\":2,\"last_offset\":102,"
                           "\"record_count\":3,\"attributes\":0,\"codec\":\"none\","
                           "\"codec_bits\":0,\"timestamp_type\":\"create\","
                           "\"transactional\":false,\"control\":false,\"producer_id\":42,"
                           "\"producer_epoch\":3,\"base_sequence\":7,\"leader_epoch\":5,"
                           "\"base_timestamp\":1000,\"max_timestamp\":1002,\"crc_ok\":true,"
                           "\"error\":null}");
    assert_contains(r.out, "\"base_offset\":103,\"last_offset_delta\":2,\"last_offset\":105,"
                           "\"record_count\":3,\"attributes\":1,\"codec\":\"gzip\","
                           "\"codec_bits\":1,");
    assert_contains(r.out, "\"codec\":\"zstd\",\"codec_bits\":4,");
    /* Records of a compressed batch, and the byte-string encodings. */
    assert_contains(r.out, "\"partition\":0,\"offset\":103,\"timestamp\":1000,\"key\":\"k0\","
                           "\"value\":\"value 0\",\"headers\":[{\"key\":\"h1\",\"value\":\"v1\"},"
                           "{\"key\":\"h-null\",\"value\":null}]}");
    assert_contains(r.out, "\"offset\":104,\"timestamp\":1001,\"key\":null,"
                           "\"value\":\"\\u0000\\ufffd\\\"\\\\\\n\xc3\xa9\","
                           "\"value_hex\":\"00ff225c0ac3a9\",\"headers\":[]}");
    assert_contains(r.out, "\"partition\":3,\"offset\":9,\"timestamp\":1002,\"key\":\"k2\","
                           "\"value\":null,\"headers\":[{\"key\":\"h1\",\"value\":\"v1\"}]}");
    int records = 0;
    for (const char *p = r.out; (p = strstr(p, "{\"type\":\"record\"")); p++)
        records++;
    assert_int_equal(records, 9);
    run_free(&r);
    free(obj);
}

static void test_fields_text(void **state)
{
    (void)state;
    size_t len;
    uint8_t *obj = build_object(two_chunks, 2, &len);
    char path[300];
    snprintf(path, sizeof path, "%s/a.nho", dir);
    write_file(path, obj, len);

    run_t r = run_dump((const char *[]){path, NULL});
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_contains(r.out, "node_id 7 incarnation 3 sequence 42 chunks 2\n");
    assert_contains(r.out, "  chunk 0 topic_id 11111111111111111111111111111111 partition 0 "
                           "batches 2 offsets 100..105 max_timestamp 1002 position 32 ");
    assert_contains(r.out, "    batch base_offset 103 last_offset_delta 2 records 3 codec gzip "
                           "producer_id 42 producer_epoch 3 base_sequence 7 ");
    assert_null(strstr(r.out, "record offset"));
    assert_null(strstr(r.out, "BAD"));
    run_free(&r);

    r = run_dump((const char *[]){"-r", path, NULL});
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "      record offset 100 timestamp 1000 key \"k0\" value \"value 0\" "
                           "headers 2 \"h1\"=\"v1\" \"h-null\"=null\n");
    assert_contains(r.out, "      record offset 104 timestamp 1001 key null value "
                           "\"\\x00\\xff\\\"\\\\\\n\\xc3\\xa9\" headers 0\n");
    run_free(&r);
    free(obj);
}

static void test_directory(void **state)
{
    (void)state;
    size_t len;
    uint8_t *obj = build_object(two_chunks, 1, &len);
    char sub[300], p1[400], p2[400], other[400];
    snprintf(sub, sizeof sub, "%s/objects/objects/7", dir);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", sub);
    assert_int_equal(system(cmd), 0);
    snprintf(p1, sizeof p1, "%s/0000000003-000000000002.nho", sub);
    snprintf(p2, sizeof p2, "%s/0000000003-000000000001.nho", sub);
    snprintf(other, sizeof other, "%s/meta.db", dir);
    write_file(p1, obj, len);
    write_file(p2, obj, len);
    write_file(other, (const uint8_t *)"x", 1);
    /* The file a gateway makes ahead of its next put: empty, no object yet. */
    char prepared[400];
    snprintf(prepared, sizeof prepared, "%s/0000000003-000000000003.nho", sub);
    write_file(prepared, (const uint8_t *)"", 0);

    run_t r = run_dump((const char *[]){dir, "--json", NULL});
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.out, prepared));
    assert_int_equal(r.err[0], '\0');
    const char *a = strstr(r.out, p2), *b = strstr(r.out, p1);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b); /* flush order */
    assert_null(strstr(r.out, "meta.db"));
    run_free(&r);

    /* A damaged object among good ones: the good ones are still printed. */
    write_file(p1, obj, len - 1);
    r = run_dump((const char *[]){dir, NULL});
    assert_one_error(&r, p1);
    assert_contains(r.err, "no \"NUTHEND1\" magic");
    assert_contains(r.out, p2);
    run_free(&r);
    free(obj);
}

static void test_usage_and_missing(void **state)
{
    (void)state;
    run_t r = run_dump((const char *[]){NULL});
    assert_int_equal(r.status, 2);
    run_free(&r);
    r = run_dump((const char *[]){"--bogus", "x", NULL});
    assert_int_equal(r.status, 2);
    run_free(&r);
    r = run_dump((const char *[]){"--help", NULL});
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "Usage: nuthatch-dump");
    run_free(&r);

    char path[300];
    snprintf(path, sizeof path, "%s/absent.nho", dir);
    r = run_dump((const char *[]){path, NULL});
    assert_one_error(&r, path);
    assert_contains(r.err, "No such file");
    run_free(&r);

    snprintf(path, sizeof path, "%s/empty.nho", dir);
    write_file(path, (const uint8_t *)"", 0);
    r = run_dump((const char *[]){"--json", path, NULL});
    assert_one_error(&r, path);
    assert_contains(r.out, "{\"type\":\"error\"");
    run_free(&r);
}

/* --manifest: a manifest or index key value, fields as encoded; anything
 * else (an object, a flipped byte) is one error line. */
static void test_manifest(void **state)
{
    (void)state;
    st_chunk_desc_t c = {.topic_id = {{1, 2, 3}},
                         .partition = 7,
                         .batches = 2,
                         .base_offset = 40,
                         .last_offset = 49,
                         .max_timestamp = 1234,
                         .pos = 32,
                         .len = 300,
                         .crc = 99};
    st_prod_desc_t pd = {.chunk = 0,
                         .producer_id = 11,
                         .epoch = 3,
                         .first_seq = 5,
                         .last_seq = 9,
                         .base_offset = 45,
                         .last_offset = 49};
    st_manifest_t m = {.version = 2,
                       .node_id = 4,
                       .incarnation = 6,
                       .seq = 8,
                       .object_key = kp_str("objects/4/0000000006-000000000008.nho"),
                       .object_size = 424,
                       .chunks = &c,
                       .nchunks = 1,
                       .prods = &pd,
                       .nprods = 1};
    kp_writer_t w;
    kp_writer_init(&w, 256);
    st_manifest_encode(&w, &m);
    char path[300];
    snprintf(path, sizeof path, "%s/index-value", dir);
    write_file(path, w.buf, w.len);
    run_t r = run_dump((const char *[]){"--manifest", "--json", path, NULL});
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "\"type\":\"manifest\"");
    assert_contains(r.out, "\"node_id\":4,\"incarnation\":6,\"sequence\":8");
    assert_contains(r.out, "\"object_key\":\"objects/4/0000000006-000000000008.nho\"");
    assert_contains(r.out, "\"partition\":7,\"batches\":2,\"base_offset\":40,\"last_offset\":49");
    assert_contains(r.out, "\"producer_id\":11,\"epoch\":3,\"first_sequence\":5,"
                           "\"last_sequence\":9,\"base_offset\":45");
    run_free(&r);
    r = run_dump((const char *[]){"-m", path, NULL});
    assert_int_equal(r.status, 0);
    assert_contains(r.out, "chunks 1 producers 1");
    run_free(&r);
    w.buf[w.len / 2] ^= 1;
    write_file(path, w.buf, w.len);
    r = run_dump((const char *[]){"-m", path, NULL});
    assert_one_error(&r, path);
    run_free(&r);
    kp_writer_deinit(&w);
}

/* Every proper prefix of an object is refused. */
static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *obj = build_object(two_chunks, 2, &len);
    char path[300];
    snprintf(path, sizeof path, "%s/t.nho", dir);
    for (size_t n = 0; n < len; n++) {
        write_file(path, obj, n);
        run_t r = run_dump((const char *[]){"-r", "-j", path, NULL});
        assert_one_error(&r, path);
        run_free(&r);
    }
    free(obj);
}

/* Every flipped byte is refused, except in the header fields no checksum
 * covers (node id, incarnation, sequence: bytes 12..31). */
static void test_flipped(void **state)
{
    (void)state;
    size_t len;
    uint8_t *obj = build_object(two_chunks, 2, &len);
    char path[300];
    snprintf(path, sizeof path, "%s/f.nho", dir);
    for (size_t i = 0; i < len; i++) {
        obj[i] ^= 0x5a;
        write_file(path, obj, len);
        obj[i] ^= 0x5a;
        run_t r = run_dump((const char *[]){"-r", path, NULL});
        if (i >= 12 && i < ST_OBJ_HEADER_SIZE)
            assert_int_equal(r.status, 0);
        else
            assert_one_error(&r, path);
        run_free(&r);
    }
    free(obj);
}

/* Damage inside chunks under valid checksums: only the batch-level checks
 * see it.  Never a crash; a failure is one line. */
static void test_damaged_batches(void **state)
{
    (void)state;
    size_t len;
    uint8_t *obj = build_object(two_chunks, 2, &len);
    uint64_t data_end = kp_be64(obj + len - ST_OBJ_TRAILER_SIZE);
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    char path[300];
    snprintf(path, sizeof path, "%s/d.nho", dir);
    int failures = 0;
    for (size_t i = ST_OBJ_HEADER_SIZE; i < data_end; i++) {
        memcpy(bad, obj, len);
        bad[i] = i % 2 ? (uint8_t)(bad[i] ^ 0x80) : 0xff; /* 0xff: huge lengths */
        resign(bad, len);
        write_file(path, bad, len);
        run_t r = run_dump((const char *[]){"--records", "--json", path, NULL});
        if (r.status != 0) {
            assert_one_error(&r, path);
            assert_contains(r.out, "{\"type\":\"error\"");
            failures++;
        }
        run_free(&r);
    }
    assert_true(failures > 0);

    /* A batch CRC mismatch is named and flagged. */
    memcpy(bad, obj, len);
    bad[ST_OBJ_HEADER_SIZE + KP_BATCH_HEADER_SIZE + 2] ^= 1; /* first record of batch 0 */
    resign(bad, len);
    write_file(path, bad, len);
    run_t r = run_dump((const char *[]){"--json", path, NULL});
    assert_one_error(&r, path);
    assert_contains(r.err, "chunk 0 batch 0 (offset 100): record batch CRC32C mismatch");
    assert_contains(r.out, "\"crc_ok\":false,\"error\":\"record batch CRC32C mismatch\"}");
    run_free(&r);

    /* A footer entry that disagrees with the batches. */
    memcpy(bad, obj, len);
    kp_put_be64(bad + data_end + 4 + 32, 106); /* chunk 0 last offset */
    resign(bad, len);
    write_file(path, bad, len);
    r = run_dump((const char *[]){path, NULL});
    assert_one_error(&r, path);
    assert_contains(r.err, "chunk 0: batches hold offsets 100..105, its entry says 100..106");
    run_free(&r);
    free(bad);
    free(obj);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-nuthatch-dump\n", argv[0]);
        return 2;
    }
    dump_bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fields_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
