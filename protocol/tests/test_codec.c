/*
 * test_codec.c: the wire primitives -- reader, writer, varints, arena.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kp_codec.h"
#include "kp_errors.h"

#define READER(name, ...)                                                                          \
    const uint8_t name##_buf[] = {__VA_ARGS__};                                                    \
    kp_reader_t name;                                                                              \
    kp_reader_init(&name, name##_buf, sizeof name##_buf)

static void test_read_fixed(void **state)
{
    (void)state;
    READER(r, 0x7f, 0x80, 0x01, 0xff, 0xff, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
           0x08, 0xff, 0xfe);
    assert_int_equal(kp_read_i8(&r), 127);
    assert_int_equal(kp_read_i16(&r), (int16_t)0x8001);
    assert_int_equal(kp_read_i32(&r), -2);
    assert_true(kp_read_i64(&r) == 0x0102030405060708LL);
    assert_int_equal(kp_read_u16(&r), 0xfffe);
    assert_int_equal(r.err, KP_DECODE_OK);
    assert_int_equal(kp_reader_remaining(&r), 0);
}

/* Every fixed-size read on a buffer one byte short underflows, and the
 * error is sticky: later reads return zero even if bytes would suffice. */
static void test_read_underflow(void **state)
{
    (void)state;
    const uint8_t buf[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const size_t sizes[] = {1, 2, 4, 8, 16};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        kp_reader_t r;
        kp_reader_init(&r, buf, sizes[i] - 1);
        switch (sizes[i]) {
        case 1:
            assert_int_equal(kp_read_i8(&r), 0);
            break;
        case 2:
            assert_int_equal(kp_read_i16(&r), 0);
            break;
        case 4:
            assert_int_equal(kp_read_i32(&r), 0);
            break;
        case 8:
            assert_true(kp_read_i64(&r) == 0);
            break;
        case 16: {
            kp_uuid_t u = kp_read_uuid(&r);
            assert_int_equal(u.b[0], 0);
            break;
        }
        }
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
        r.end = buf + sizeof buf;
        assert_int_equal(kp_read_i8(&r), 0);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
    kp_reader_t r;
    kp_reader_init(&r, buf, 7);
    assert_true(kp_read_f64(&r) == 0.0);
    assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
}

static void test_varint_edges(void **state)
{
    (void)state;
    static const int32_t vals[] = {0, 1, -1, 63, -64, 64, -65, 8191, -8192, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        kp_writer_t w;
        kp_writer_init(&w, 0);
        kp_write_varint(&w, vals[i]);
        kp_reader_t r;
        kp_reader_init(&r, w.buf, w.len);
        assert_int_equal(kp_read_varint(&r), vals[i]);
        assert_int_equal(r.err, KP_DECODE_OK);
        assert_int_equal(kp_reader_remaining(&r), 0);
        kp_writer_deinit(&w);
    }
    static const int64_t lvals[] = {0, -1, INT64_MAX, INT64_MIN, 1LL << 40, -(1LL << 40)};
    for (size_t i = 0; i < sizeof lvals / sizeof lvals[0]; i++) {
        kp_writer_t w;
        kp_writer_init(&w, 0);
        kp_write_varlong(&w, lvals[i]);
        kp_reader_t r;
        kp_reader_init(&r, w.buf, w.len);
        assert_true(kp_read_varlong(&r) == lvals[i]);
        assert_int_equal(r.err, KP_DECODE_OK);
        kp_writer_deinit(&w);
    }
    /* Known encodings: zig-zag 0 -> 00, -1 -> 01, 1 -> 02, 300 unsigned -> ac 02. */
    kp_writer_t w;
    kp_writer_init(&w, 0);
    kp_write_varint(&w, -1);
    kp_write_uvarint(&w, 300);
    kp_write_uvarint(&w, UINT32_MAX);
    const uint8_t want[] = {0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(w.len, sizeof want);
    assert_memory_equal(w.buf, want, sizeof want);
    assert_int_equal(kp_uvarint_size(UINT32_MAX), 5);
    assert_int_equal(kp_uvarint_size(127), 1);
    assert_int_equal(kp_uvarint_size(128), 2);
    kp_writer_deinit(&w);
}

static void test_varint_malformed(void **state)
{
    (void)state;
    { /* 5th byte with more than 4 bits: exceeds uint32 */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0x1f);
        assert_int_equal(kp_read_uvarint(&r), 0);
        assert_int_equal(r.err, KP_DECODE_BAD_VARINT);
    }
    { /* six bytes of continuation */
        READER(r, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
        kp_read_uvarint(&r);
        assert_int_equal(r.err, KP_DECODE_BAD_VARINT);
    }
    { /* truncated: continuation bit on the last byte */
        READER(r, 0x80, 0x80);
        kp_read_uvarint(&r);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
    { /* 11-byte varlong */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
        kp_read_uvarlong(&r);
        assert_int_equal(r.err, KP_DECODE_BAD_VARINT);
    }
    { /* 10th byte above 1 overflows 64 bits */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02);
        kp_read_uvarlong(&r);
        assert_int_equal(r.err, KP_DECODE_BAD_VARINT);
    }
    { /* largest 10-byte varlong is fine */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
        assert_true(kp_read_uvarlong(&r) == UINT64_MAX);
        assert_int_equal(r.err, KP_DECODE_OK);
    }
    { /* empty input */
        kp_reader_t r;
        kp_reader_init(&r, NULL, 0);
        kp_read_varlong(&r);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
}

static void test_strings(void **state)
{
    (void)state;
    {
        READER(r, 0x00, 0x03, 'a', 'b', 'c', 0xff, 0xff, 0x04, 'x', 'y', 'z', 0x00);
        kp_str_t s = kp_read_string(&r, false, false);
        assert_int_equal(s.len, 3);
        assert_memory_equal(s.ptr, "abc", 3);
        assert_ptr_equal(s.ptr, (const char *)r_buf + 2); /* a view, not a copy */
        s = kp_read_string(&r, false, true);
        assert_int_equal(s.len, -1);
        s = kp_read_string(&r, true, false);
        assert_true(kp_str_eq(s, "xyz"));
        s = kp_read_string(&r, true, true);
        assert_int_equal(s.len, -1);
        assert_int_equal(r.err, KP_DECODE_OK);
    }
    { /* null where not nullable */
        READER(r, 0xff, 0xff);
        kp_read_string(&r, false, false);
        assert_int_equal(r.err, KP_DECODE_NULL);
    }
    { /* negative length other than -1 */
        READER(r, 0xff, 0xfe);
        kp_read_string(&r, false, true);
        assert_int_equal(r.err, KP_DECODE_RANGE);
    }
    { /* length beyond the buffer */
        READER(r, 0x00, 0x05, 'a');
        kp_read_string(&r, false, false);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
    { /* compact length above the maximum */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0x0f);
        kp_read_string(&r, true, true);
        assert_int_equal(r.err, KP_DECODE_RANGE);
    }
    { /* bytes: int32 length and compact */
        READER(r, 0x00, 0x00, 0x00, 0x02, 0xde, 0xad, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x00);
        kp_bytes_t b = kp_read_bytes(&r, false, false);
        assert_int_equal(b.len, 2);
        assert_int_equal(b.ptr[1], 0xad);
        b = kp_read_bytes(&r, false, true);
        assert_int_equal(b.len, -1);
        b = kp_read_bytes(&r, true, false);
        assert_int_equal(b.len, 1);
        assert_int_equal(r.err, KP_DECODE_OK);
        kp_read_bytes(&r, true, false); /* compact null where not nullable */
        assert_int_equal(r.err, KP_DECODE_NULL);
    }
    { /* huge int32 bytes length */
        READER(r, 0x7f, 0xff, 0xff, 0xff, 0x00);
        kp_read_bytes(&r, false, true);
        assert_int_equal(r.err, KP_DECODE_RANGE);
    }
}

static void test_string_roundtrip(void **state)
{
    (void)state;
    kp_writer_t w;
    kp_writer_init(&w, 4);
    kp_write_string(&w, kp_str("hello"), false, false);
    kp_write_string(&w, KP_STR_NULL, false, true);
    kp_write_string(&w, kp_str("hi"), true, false);
    kp_write_string(&w, KP_STR_NULL, true, true);
    kp_write_bytes(&w, (kp_bytes_t){(const uint8_t *)"\x01\x02", 2}, true, true);
    kp_write_bytes(&w, KP_BYTES_NULL, false, true);
    const uint8_t want[] = {0,   5,   'h', 'e', 'l', 'l', 'o',  0xff, 0xff, 3,
                            'h', 'i', 0,   3,   1,   2,   0xff, 0xff, 0xff, 0xff};
    assert_int_equal(w.err, KP_ENCODE_OK);
    assert_int_equal(w.len, sizeof want);
    assert_memory_equal(w.buf, want, sizeof want);
    kp_write_string(&w, KP_STR_NULL, false, false);
    assert_int_equal(w.err, KP_ENCODE_NULL);
    size_t before = w.len;
    kp_write_i32(&w, 7); /* sticky: dropped */
    assert_int_equal(w.len, before);
    kp_writer_deinit(&w);
}

static void test_array_len(void **state)
{
    (void)state;
    { /* count larger than the bytes left can hold */
        READER(r, 0x00, 0x01, 0x00, 0x00, 0xaa, 0xbb);
        assert_int_equal(kp_read_array_len(&r, false, false, 1), 0);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
    { /* exactly fits with 2-byte elements */
        READER(r, 0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb, 0xcc, 0xdd);
        assert_int_equal(kp_read_array_len(&r, false, false, 2), 2);
        assert_int_equal(r.err, KP_DECODE_OK);
    }
    { /* min element size makes it too big */
        READER(r, 0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb, 0xcc);
        kp_read_array_len(&r, false, false, 2);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
    { /* null arrays */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0x00);
        assert_int_equal(kp_read_array_len(&r, false, true, 1), -1);
        assert_int_equal(kp_read_array_len(&r, true, true, 1), -1);
        assert_int_equal(r.err, KP_DECODE_OK);
    }
    { /* null where not nullable; other negatives */
        READER(r, 0x00);
        kp_read_array_len(&r, true, false, 1);
        assert_int_equal(r.err, KP_DECODE_NULL);
        READER(q, 0x80, 0x00, 0x00, 0x00);
        kp_read_array_len(&q, false, true, 1);
        assert_int_equal(q.err, KP_DECODE_RANGE);
    }
    { /* compact count of 2^32-2 in a short buffer */
        READER(r, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00);
        kp_read_array_len(&r, true, false, 1);
        assert_int_equal(r.err, KP_DECODE_RANGE);
    }
    kp_writer_t w;
    kp_writer_init(&w, 0);
    kp_write_array_len(&w, 3, true, false);
    kp_write_array_len(&w, -1, true, true);
    kp_write_array_len(&w, -1, false, true);
    const uint8_t want[] = {4, 0, 0xff, 0xff, 0xff, 0xff};
    assert_memory_equal(w.buf, want, sizeof want);
    kp_write_array_len(&w, -1, false, false);
    assert_int_equal(w.err, KP_ENCODE_NULL);
    kp_writer_deinit(&w);
}

static void test_tags(void **state)
{
    (void)state;
    {
        READER(r, 0x02, 0x01, 0x01, 0xaa, 0x05, 0x02, 0xbb, 0xcc);
        assert_int_equal(kp_read_tag_count(&r), 2);
        uint32_t tag;
        kp_bytes_t b = kp_read_tag(&r, -1, &tag);
        assert_int_equal(tag, 1);
        assert_int_equal(b.len, 1);
        b = kp_read_tag(&r, 1, &tag);
        assert_int_equal(tag, 5);
        assert_int_equal(b.len, 2);
        assert_int_equal(r.err, KP_DECODE_OK);
    }
    { /* out of order */
        READER(r, 0x02, 0x05, 0x00, 0x01, 0x00);
        kp_read_tag_count(&r);
        uint32_t tag;
        kp_read_tag(&r, -1, &tag);
        kp_read_tag(&r, tag, &tag);
        assert_int_equal(r.err, KP_DECODE_BAD_TAGS);
    }
    { /* more tags than bytes */
        READER(r, 0x7f, 0x00, 0x00);
        kp_read_tag_count(&r);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
    { /* tag size beyond buffer */
        READER(r, 0x01, 0x00, 0x09, 0x00);
        kp_read_tag_count(&r);
        uint32_t tag;
        kp_read_tag(&r, -1, &tag);
        assert_int_equal(r.err, KP_DECODE_UNDERFLOW);
    }
}

static void test_arena_limit(void **state)
{
    (void)state;
    kp_arena_t a;
    kp_arena_init(&a, 10000);
    void *p = kp_arena_alloc(&a, 5000);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 8, 0);
    assert_non_null(kp_arena_alloc(&a, 4000));
    assert_null(kp_arena_alloc(&a, 2000)); /* would pass 10000 */
    assert_non_null(kp_arena_alloc(&a, 1000));
    assert_true(a.used <= a.limit);
    assert_null(kp_arena_alloc(&a, SIZE_MAX));
    kp_arena_reset(&a);
    assert_int_equal(a.used, 0);
    for (int i = 0; i < 90; i++) /* 90 x 104 aligned bytes fit in 10000 */
        assert_non_null(kp_arena_alloc(&a, 100));
    assert_true(a.allocated <= 2 * a.limit + 4096);
    kp_arena_deinit(&a);

    /* kp_read_alloc turns arena exhaustion into a sticky decode error. */
    kp_arena_init(&a, 64);
    const uint8_t buf[1] = {0};
    kp_reader_t r;
    kp_reader_init(&r, buf, 1);
    assert_null(kp_read_alloc(&r, &a, 100, 8));
    assert_int_equal(r.err, KP_DECODE_NOMEM);
    kp_reader_init(&r, buf, 1);
    assert_null(kp_read_alloc(&r, &a, INT32_MAX, SIZE_MAX / 2));
    assert_int_equal(r.err, KP_DECODE_NOMEM);
    kp_arena_deinit(&a);
    assert_int_equal(kp_arena_limit_for(100), 100 * KP_DECODE_MAX_EXPANSION + 4096);
}

static void test_writer_aligned(void **state)
{
    (void)state;
    kp_writer_t w;
    kp_writer_init_aligned(&w, 10000, 4096);
    assert_int_equal(w.err, KP_ENCODE_OK);
    assert_int_equal((uintptr_t)w.buf % 4096, 0);
    uint8_t *first = w.buf;
    for (int i = 0; i < 2500; i++)
        kp_write_i32(&w, i);
    assert_ptr_equal(w.buf, first); /* within the capacity: never moved */
    kp_write_i32(&w, 2500);         /* past it: grows like any writer */
    size_t len;
    uint8_t *b = kp_writer_take(&w, &len);
    assert_int_equal(len, 10004);
    assert_int_equal(kp_be32(b + 4 * 2500), 2500);
    free(b);
}

/* A writer over the caller's bytes fills them and stops at their end:
 * the write that does not fit fails, nothing moves, nothing is freed (a
 * free of this stack buffer would abort under the sanitizers). */
static void test_writer_over(void **state)
{
    (void)state;
    uint8_t mem[16];
    memset(mem, 0xee, sizeof mem);
    kp_writer_t w;
    kp_writer_init_over(&w, mem, 12);
    kp_write_i32(&w, 1);
    kp_write_i64(&w, 2);
    assert_int_equal(w.err, KP_ENCODE_OK);
    assert_int_equal(w.len, 12);
    kp_write_i8(&w, 3);
    assert_int_equal(w.err, KP_ENCODE_NOMEM);
    assert_ptr_equal(w.buf, mem);
    assert_int_equal(kp_be32(mem), 1);
    assert_int_equal(mem[12], 0xee); /* nothing past the end */
    kp_writer_deinit(&w);
    assert_null(w.buf);
    /* Taken, the writer is an ordinary one again. */
    kp_writer_init_over(&w, mem, sizeof mem);
    kp_write_i32(&w, 7);
    size_t len;
    assert_ptr_equal(kp_writer_take(&w, &len), mem);
    assert_int_equal(len, 4);
    kp_write_i32(&w, 8);
    assert_int_equal(w.err, KP_ENCODE_OK);
    assert_ptr_not_equal(w.buf, mem);
    kp_writer_deinit(&w);
}

static void test_writer_patch(void **state)
{
    (void)state;
    kp_writer_t w;
    kp_writer_init(&w, 0);
    size_t pos = kp_writer_reserve_i32(&w);
    for (int i = 0; i < 1000; i++)
        kp_write_i64(&w, i);
    kp_writer_patch_i32(&w, pos, (int32_t)(w.len - 4));
    assert_int_equal(kp_be32(w.buf), 8000);
    size_t len;
    uint8_t *buf = kp_writer_take(&w, &len);
    assert_int_equal(len, 8004);
    assert_null(w.buf);
    free(buf);
    kp_write_f64(&w, 1.5);
    kp_write_uuid(&w, (kp_uuid_t){{1, 2, 3}});
    kp_write_bool(&w, true);
    kp_write_u16(&w, 65535);
    kp_write_u32(&w, 0xdeadbeef);
    kp_reader_t r;
    kp_reader_init(&r, w.buf, w.len);
    assert_true(kp_read_f64(&r) == 1.5);
    assert_int_equal(kp_read_uuid(&r).b[2], 3);
    assert_true(kp_read_bool(&r));
    assert_int_equal(kp_read_u16(&r), 65535);
    assert_int_equal(kp_read_u32(&r), 0xdeadbeef);
    assert_int_equal(r.err, KP_DECODE_OK);
    kp_writer_deinit(&w);
}

/* The writer's output as one buffer: its buffer with the spans' bytes put
 * in at their positions (returns owned, free()). */
static uint8_t *flatten(const kp_writer_t *w, size_t *len)
{
    uint8_t *out = malloc(kp_writer_size(w) + 1), *o = out;
    size_t at = 0;
    for (size_t i = 0; i < w->nspans; i++) {
        assert_true(w->spans[i].pos >= at && w->spans[i].pos <= w->len);
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

/* Write the same RECORDS values with spans off and on; the outputs match. */
static void test_writer_spans(void **state)
{
    (void)state;
    static uint8_t big[9000], small[100];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 1);
    memset(small, 0x5a, sizeof small);
    const kp_bytes_t parts[] = {
        {small, 100}, {big, 9000}, {big + 10, 4096}, {small, 0}, {big + 1, 4095}};
    kp_writer_t copy, refer;
    kp_writer_init(&copy, 0);
    kp_writer_init(&refer, 16);
    kp_writer_refer(&refer, 4096);
    for (int compact = 0; compact < 2; compact++) {
        for (int k = 0; k < 2; k++) {
            kp_writer_t *w = k ? &refer : &copy;
            kp_write_i32(w, 7);
            kp_write_records(w, (kp_bytes_t){big, 9000}, NULL, 0, compact, true);
            kp_write_records(w, (kp_bytes_t){small, 100}, NULL, 0, compact, true);
            kp_write_records(w, KP_BYTES_NULL, NULL, 0, compact, true);
            kp_write_records(w, (kp_bytes_t){big, 3}, parts, 5, compact, true);
            kp_write_bytes(w, (kp_bytes_t){big, 5000}, compact, true); /* BYTES: copied */
            kp_write_records(w, (kp_bytes_t){small, 0}, NULL, 0, compact, false);
            kp_write_i16(w, -2);
        }
    }
    assert_int_equal(copy.err, KP_ENCODE_OK);
    assert_int_equal(refer.err, KP_ENCODE_OK);
    assert_int_equal(copy.nspans, 0);
    /* Per round: the 9000-byte value and the parts 9000 and 4096 (4095 is
     * below the threshold). */
    assert_int_equal(refer.nspans, 6);
    assert_ptr_equal(refer.spans[0].ptr, big);
    assert_ptr_equal(refer.spans[2].ptr, big + 10);
    assert_int_equal(refer.spans_len, 2 * (9000 + 9000 + 4096));
    assert_true(refer.len < 2 * 20000);
    size_t n;
    uint8_t *flat = flatten(&refer, &n);
    assert_int_equal(n, copy.len);
    assert_memory_equal(flat, copy.buf, n);
    free(flat);
    /* The parts' value decodes as their concatenation. */
    kp_reader_t r;
    kp_reader_init(&r, copy.buf, copy.len);
    kp_read_i32(&r);
    kp_read_bytes(&r, false, true);
    kp_read_bytes(&r, false, true);
    kp_read_bytes(&r, false, true);
    kp_bytes_t b = kp_read_bytes(&r, false, true);
    assert_int_equal(b.len, 100 + 9000 + 4096 + 4095);
    assert_memory_equal(b.ptr + 100 + 9000, big + 10, 4096);
    assert_memory_equal(b.ptr + 100 + 9000 + 4096, big + 1, 4095);

    kp_span_t *spans = kp_writer_take_spans(&refer, &n);
    assert_int_equal(n, 6);
    assert_int_equal(refer.nspans, 0);
    assert_int_equal(kp_writer_size(&refer), refer.len);
    free(spans);
    assert_null(kp_writer_take_spans(&refer, &n));
    assert_int_equal(n, 0);
    kp_writer_deinit(&copy);
    kp_writer_deinit(&refer);
}

static void test_writer_records_errors(void **state)
{
    (void)state;
    kp_writer_t w;
    kp_writer_init(&w, 0);
    kp_writer_refer(&w, 1);
    const kp_bytes_t bad[] = {{(const uint8_t *)"ab", 2}, KP_BYTES_NULL};
    kp_write_records(&w, KP_BYTES_NULL, bad, 2, false, true);
    assert_int_equal(w.err, KP_ENCODE_RANGE);
    kp_writer_deinit(&w);
    kp_writer_init(&w, 0);
    kp_write_records(&w, KP_BYTES_NULL, NULL, 0, true, false);
    assert_int_equal(w.err, KP_ENCODE_NULL);
    /* Spans a writer was left with are freed with it or with its buffer. */
    kp_writer_init(&w, 0);
    kp_writer_refer(&w, 1);
    kp_write_records(&w, (kp_bytes_t){(const uint8_t *)"abc", 3}, NULL, 0, false, true);
    assert_int_equal(w.nspans, 1);
    size_t len;
    free(kp_writer_take(&w, &len));
    assert_int_equal(len, 4);
    assert_int_equal(w.nspans, 0);
    kp_write_records(&w, (kp_bytes_t){(const uint8_t *)"abc", 3}, NULL, 0, false, true);
    assert_int_equal(w.nspans, 1);
    kp_writer_deinit(&w);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(kp_err_str(KP_ERR_UNSUPPORTED_VERSION), "UNSUPPORTED_VERSION");
    assert_string_equal(kp_err_str(-1), "UNKNOWN_SERVER_ERROR");
    assert_string_equal(kp_err_str(56), "KAFKA_STORAGE_ERROR");
    assert_string_equal(kp_err_str(9999), "UNKNOWN_ERROR_CODE");
    assert_int_equal(KP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 53);
    assert_int_equal(KP_ERR_INVALID_RECORD, 87);
    assert_string_equal(kp_derr_str(KP_DECODE_UNDERFLOW), "message truncated");
    assert_string_equal(kp_derr_str((kp_derr_t)99), "unknown decode error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_fixed),
        cmocka_unit_test(test_read_underflow),
        cmocka_unit_test(test_varint_edges),
        cmocka_unit_test(test_varint_malformed),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_string_roundtrip),
        cmocka_unit_test(test_array_len),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_arena_limit),
        cmocka_unit_test(test_writer_patch),
        cmocka_unit_test(test_writer_aligned),
        cmocka_unit_test(test_writer_over),
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_writer_spans),
        cmocka_unit_test(test_writer_records_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
