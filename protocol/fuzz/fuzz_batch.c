/*
 * fuzz_batch.c: libFuzzer target for RecordBatch v2 handling.
 *
 * Input: a records field (zero or more concatenated batches), as a Produce
 * partition or a stored segment carries it.
 * Checks: validation (lenient and producer rules, with and without
 * decompression under a small limit) never crashes or reads past the input;
 * every framed batch's records can be walked -- CRC or not -- with every
 * key, value and header byte read; records that walk cleanly rebuild into a
 * batch that validates and yields the same keys, values, headers and
 * timestamps; patching baseOffset and partitionLeaderEpoch on a copy keeps
 * a valid batch valid; recompressing with another codec either fails
 * without writing or gives a batch that validates with the same header.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_batch.h"
#include "kp_crc32c.h"

#define FUZZ_MAX_DECOMPRESSED (256 * 1024) /* modest: keeps each run fast */

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_batch: %s\n", what);
        abort();
    }
}

/* Read every byte of a view so that ASan sees any overread. */
static uint32_t touch(uint32_t crc, const void *p, int32_t len)
{
    return len > 0 ? kp_crc32c(crc, p, (size_t)len) : crc;
}

/* Walk all records and headers; returns the number of records walked and
 * leaves it->err set.  Fills @in / @hdrs when given (sized by the caller). */
static int32_t walk(kp_record_iter_t *it, kp_record_in_t *in, kp_record_header_t *hdrs,
                    size_t *nhdrs)
{
    kp_record_t rec;
    uint32_t crc = 0;
    int32_t n = 0;
    size_t h = 0;
    while (kp_record_iter_next(it, &rec)) {
        crc = touch(crc, rec.key.ptr, rec.key.len);
        crc = touch(crc, rec.value.ptr, rec.value.len);
        if (in)
            in[n] = (kp_record_in_t){rec.timestamp, rec.key, rec.value, hdrs + h, rec.header_count};
        kp_header_iter_t hi;
        kp_record_header_t hdr;
        int32_t seen = 0;
        kp_header_iter_init(&hi, &rec);
        while (kp_header_iter_next(&hi, &hdr)) {
            crc = touch(crc, hdr.key.ptr, hdr.key.len);
            crc = touch(crc, hdr.value.ptr, hdr.value.len);
            check(hdr.key.len >= 0 && hdr.value.len >= -1, "header lengths");
            if (hdrs)
                hdrs[h] = hdr;
            h++;
            seen++;
        }
        check(seen == rec.header_count, "header count");
        n++;
    }
    if (nhdrs)
        *nhdrs = h;
    (void)crc;
    return n;
}

/* Rebuild cleanly walked records uncompressed and compare. */
static void rebuild(const uint8_t *batch, size_t size, kp_zout_t *zout, int32_t n, size_t nhdrs)
{
    kp_record_in_t *in = calloc((size_t)n, sizeof *in);
    kp_record_header_t *hdrs = calloc(nhdrs + 1, sizeof *hdrs);
    kp_record_iter_t it;
    check(in && hdrs, "calloc");
    kp_record_iter_init(&it, batch, size, 0, zout);
    check(walk(&it, in, hdrs, NULL) == n && it.err == KP_BATCH_OK, "second walk differs");

    kp_writer_t w;
    kp_writer_init(&w, 0);
    kp_batch_spec_t spec = {0, -1, KP_COMPRESSION_NONE, 0, 0, -1, -1, -1};
    check(kp_batch_build(&w, &spec, in, n) == KP_BATCH_OK, "rebuild failed");
    check(kp_batch_validate_one(w.buf, w.len, NULL, NULL) == KP_BATCH_OK, "rebuild invalid");
    kp_record_iter_t it2;
    kp_record_t rec;
    check(kp_record_iter_init(&it2, w.buf, w.len, KP_BATCH_CHECK_PRODUCE, NULL) == KP_BATCH_OK,
          "rebuild iter");
    for (int32_t i = 0; kp_record_iter_next(&it2, &rec); i++) {
        check(rec.timestamp == in[i].timestamp, "rebuilt timestamp");
        check(rec.key.len == in[i].key.len && rec.value.len == in[i].value.len, "rebuilt lengths");
        check(rec.key.len <= 0 || !memcmp(rec.key.ptr, in[i].key.ptr, (size_t)rec.key.len),
              "rebuilt key");
        check(rec.value.len <= 0 || !memcmp(rec.value.ptr, in[i].value.ptr, (size_t)rec.value.len),
              "rebuilt value");
        check(rec.header_count == in[i].header_count, "rebuilt header count");
    }
    check(it2.err == KP_BATCH_OK && it2.index == n, "rebuilt record count");
    kp_writer_deinit(&w);
    free(hdrs);
    free(in);
}

/* Patch a copy; a batch valid before must stay valid. */
static void patch_copy(const uint8_t *batch, size_t size)
{
    uint8_t *copy = malloc(size);
    check(copy != NULL, "malloc");
    memcpy(copy, batch, size);
    kp_batch_err_t before = kp_batch_validate_one(copy, size, NULL, NULL);
    kp_batch_set_base_offset(copy, INT64_MAX - 3);
    kp_batch_set_leader_epoch(copy, 12345);
    kp_batch_info_t info;
    kp_batch_err_t after = kp_batch_validate_one(copy, size, NULL, &info);
    check(before != KP_BATCH_OK || after == KP_BATCH_OK, "patching broke a valid batch");
    check(info.hdr.base_offset == INT64_MAX - 3 && info.hdr.leader_epoch == 12345, "patch");
    free(copy);
}

/* Recompress with the codec @to: a failure leaves the writer as it was; a
 * valid input gives a batch whose CRC holds, whose records walk cleanly and
 * whose header is the input's. */
static void recompress(const uint8_t *batch, size_t size, kp_compression_t to, kp_zout_t *zout)
{
    kp_writer_t w;
    kp_writer_init(&w, 0);
    kp_batch_err_t e = kp_batch_recompress(batch, size, to, 0, 0, zout, &w);
    if (e != KP_BATCH_OK) {
        check(w.len == 0, "a failed recompression wrote");
        kp_writer_deinit(&w);
        return;
    }
    kp_batch_hdr_t a, b;
    check(kp_batch_hdr_parse(batch, size, &a) == KP_BATCH_OK, "input header");
    if (kp_batch_validate_one(batch, size, NULL, NULL) != KP_BATCH_OK) {
        kp_writer_deinit(&w); /* the input must be validated first (kp_batch.h) */
        return;
    }
    kp_batch_limits_t deep = {SIZE_MAX, 0, zout};
    kp_batch_info_t info;
    check(kp_batch_validate_one(w.buf, w.len, &deep, &info) == KP_BATCH_OK,
          "recompressed batch invalid");
    b = info.hdr;
    check(info.codec == to && info.size == w.len, "recompressed codec or size");
    check(b.record_count == a.record_count && b.base_sequence == a.base_sequence &&
              b.producer_id == a.producer_id && b.max_timestamp == a.max_timestamp,
          "recompression changed the header");
    kp_writer_deinit(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kp_zout_t zout;
    kp_zout_init_alloc(&zout, FUZZ_MAX_DECOMPRESSED, NULL, NULL);
    kp_batch_limits_t lazy = {1 << 20, 0, NULL};
    kp_batch_limits_t deep = {1 << 20, 0, &zout};
    kp_batch_limits_t prod = {1 << 20, KP_BATCH_CHECK_PRODUCE, &zout};
    kp_batch_summary_t sum;
    kp_batch_err_t e_lazy = kp_batch_validate(data, size, &lazy, &sum);
    kp_batch_err_t e_deep = kp_batch_validate(data, size, &deep, &sum);
    kp_batch_err_t e_prod = kp_batch_validate(data, size, &prod, &sum);
    check(e_deep != KP_BATCH_OK || e_lazy == KP_BATCH_OK, "deep ok but lazy not");
    check(e_prod != KP_BATCH_OK || e_deep == KP_BATCH_OK, "producer ok but deep not");

    kp_batch_cursor_t cur;
    const uint8_t *batch;
    size_t bsize;
    kp_batch_cursor_init(&cur, data, size, 1 << 20);
    while (kp_batch_cursor_next(&cur, &batch, &bsize)) {
        kp_record_iter_t it;
        size_t nhdrs = 0;
        int32_t n = 0;
        if (kp_record_iter_init(&it, batch, bsize, 0, &zout) == KP_BATCH_OK)
            n = walk(&it, NULL, NULL, &nhdrs);
        if (it.err == KP_BATCH_OK && n > 0)
            rebuild(batch, bsize, &zout, n, nhdrs);
        patch_copy(batch, bsize);
        recompress(batch, bsize, (kp_compression_t)(bsize % KP_COMPRESSION__NUM), &zout);
    }
    kp_zout_deinit(&zout);
    return 0;
}
