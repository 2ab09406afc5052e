/*
 * kp_codec.c: Kafka wire primitives (see kp_codec.h).
 */
#include "kp_codec.h"

#include <stdlib.h>

const char *kp_derr_str(kp_derr_t e)
{
    static const char *const names[KP_DECODE__NUM] = {
        [KP_DECODE_OK] = "ok",
        [KP_DECODE_UNDERFLOW] = "message truncated",
        [KP_DECODE_RANGE] = "length or count out of range",
        [KP_DECODE_BAD_VARINT] = "malformed varint",
        [KP_DECODE_NULL] = "null in a non-nullable field",
        [KP_DECODE_NOMEM] = "decode memory limit reached",
        [KP_DECODE_VERSION] = "unsupported api or version",
        [KP_DECODE_BAD_TAGS] = "tagged fields out of order",
    };
    if ((unsigned)e >= KP_DECODE__NUM)
        return "unknown decode error";
    return names[e];
}

/* ------------------------------------------------------------------ */
/* Arena                                                               */
/* ------------------------------------------------------------------ */

struct kp_arena_chunk {
    kp_arena_chunk_t *next;
    size_t size; /* usable bytes in data[] */
    size_t used; /* bytes handed out from data[] */
    _Alignas(8) uint8_t data[];
};

#define KP_ARENA_MIN_CHUNK 4096

void kp_arena_init(kp_arena_t *a, size_t limit)
{
    a->head = NULL;
    a->used = 0;
    a->allocated = 0;
    a->limit = limit;
}

void kp_arena_deinit(kp_arena_t *a)
{
    kp_arena_chunk_t *c = a->head;
    while (c) {
        kp_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
    a->allocated = 0;
}

void kp_arena_reset(kp_arena_t *a)
{
    if (!a->head)
        return;
    kp_arena_chunk_t *keep = a->head, *c = keep->next;
    while (c) {
        kp_arena_chunk_t *next = c->next;
        a->allocated -= sizeof(*c) + c->size;
        free(c);
        c = next;
    }
    keep->next = NULL;
    keep->used = 0;
    a->used = 0;
}

void *kp_arena_alloc(kp_arena_t *a, size_t n)
{
    if (n > SIZE_MAX - 7)
        return NULL;
    n = (n + 7) & ~(size_t)7;
    if (n == 0)
        n = 8;
    if (n > a->limit || a->used > a->limit - n)
        return NULL;
    kp_arena_chunk_t *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > KP_ARENA_MIN_CHUNK ? n : KP_ARENA_MIN_CHUNK;
        /* Grow geometrically but never past what the limit still allows. */
        if (c && c->size * 2 > size)
            size = c->size * 2;
        if (size > a->limit - a->used && n <= a->limit - a->used)
            size = a->limit - a->used > n ? a->limit - a->used : n;
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->next = a->head;
        c->size = size;
        c->used = 0;
        a->head = c;
        a->allocated += sizeof(*c) + size;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */
/* ------------------------------------------------------------------ */

double kp_read_f64(kp_reader_t *r)
{
    uint64_t u = (uint64_t)kp_read_i64(r);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

kp_uuid_t kp_read_uuid(kp_reader_t *r)
{
    kp_uuid_t u = {{0}};
    if (kp_reader_need(r, 16)) {
        memcpy(u.b, r->p, 16);
        r->p += 16;
    }
    return u;
}

uint64_t kp_read_uvarlong(kp_reader_t *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (!kp_reader_need(r, 1))
            return 0;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1) /* the 10th byte may hold only bit 63 */
            break;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    kp_reader_fail(r, KP_DECODE_BAD_VARINT);
    return 0;
}

uint32_t kp_read_uvarint(kp_reader_t *r)
{
    uint32_t v = 0;
    for (unsigned shift = 0; shift < 35; shift += 7) {
        if (!kp_reader_need(r, 1))
            return 0;
        uint8_t b = *r->p++;
        if (shift == 28 && b > 0x0f) /* the 5th byte may hold only 4 bits */
            break;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    kp_reader_fail(r, KP_DECODE_BAD_VARINT);
    return 0;
}

int32_t kp_read_varint(kp_reader_t *r)
{
    uint32_t u = kp_read_uvarint(r);
    return (int32_t)(u >> 1) ^ -(int32_t)(u & 1);
}

int64_t kp_read_varlong(kp_reader_t *r)
{
    uint64_t u = kp_read_uvarlong(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

kp_bytes_t kp_read_raw(kp_reader_t *r, size_t n)
{
    kp_bytes_t b = {NULL, 0};
    if (n > INT32_MAX) {
        kp_reader_fail(r, KP_DECODE_RANGE);
        return b;
    }
    if (!kp_reader_need(r, n))
        return b;
    b.ptr = r->p;
    b.len = (int32_t)n;
    r->p += n;
    return b;
}

/* Read a length that is int16/int32 or compact (uvarint N+1, 0 = null).
 * Returns -1 for null, -2 after an error. */
static int64_t read_len(kp_reader_t *r, bool compact, bool wide, bool nullable, int64_t max)
{
    int64_t n;
    if (compact)
        n = (int64_t)kp_read_uvarint(r) - 1;
    else
        n = wide ? kp_read_i32(r) : kp_read_i16(r);
    if (r->err)
        return -2;
    if (n < 0) {
        /* Only -1 means null; other negative lengths are malformed. */
        if (n != -1) {
            kp_reader_fail(r, KP_DECODE_RANGE);
            return -2;
        }
        if (!nullable) {
            kp_reader_fail(r, KP_DECODE_NULL);
            return -2;
        }
        return -1;
    }
    if (n > max) {
        kp_reader_fail(r, KP_DECODE_RANGE);
        return -2;
    }
    if ((uint64_t)n > kp_reader_remaining(r)) {
        kp_reader_fail(r, KP_DECODE_UNDERFLOW);
        return -2;
    }
    return n;
}

kp_str_t kp_read_string(kp_reader_t *r, bool compact, bool nullable)
{
    int64_t n = read_len(r, compact, false, nullable, compact ? KP_MAX_COMPACT_STR : KP_MAX_STRING);
    if (n == -1)
        return KP_STR_NULL;
    kp_str_t s = {"", 0};
    if (n < 0)
        return s;
    s.ptr = (const char *)r->p;
    s.len = (int32_t)n;
    r->p += n;
    return s;
}

kp_bytes_t kp_read_bytes(kp_reader_t *r, bool compact, bool nullable)
{
    int64_t n = read_len(r, compact, true, nullable, KP_MAX_BYTES);
    if (n == -1)
        return KP_BYTES_NULL;
    kp_bytes_t b = {(const uint8_t *)"", 0};
    if (n < 0)
        return b;
    b.ptr = r->p;
    b.len = (int32_t)n;
    r->p += n;
    return b;
}

int32_t kp_read_array_len(kp_reader_t *r, bool compact, bool nullable, size_t min_elem_size)
{
    int64_t n;
    if (compact)
        n = (int64_t)kp_read_uvarint(r) - 1;
    else
        n = kp_read_i32(r);
    if (r->err)
        return 0;
    if (n < 0) {
        if (n != -1)
            return kp_reader_fail(r, KP_DECODE_RANGE), 0;
        if (!nullable)
            return kp_reader_fail(r, KP_DECODE_NULL), 0;
        return -1;
    }
    if (min_elem_size == 0)
        min_elem_size = 1;
    /* KIP-482 or not, every element takes at least min_elem_size bytes:
     * a count the remaining bytes cannot hold is rejected before allocating. */
    if (n > KP_MAX_ARRAY || (uint64_t)n > kp_reader_remaining(r) / min_elem_size) {
        kp_reader_fail(r, n > KP_MAX_ARRAY ? KP_DECODE_RANGE : KP_DECODE_UNDERFLOW);
        return 0;
    }
    return (int32_t)n;
}

void *kp_read_alloc(kp_reader_t *r, kp_arena_t *a, int32_t count, size_t size)
{
    if (r->err || count <= 0)
        return NULL;
    if (size != 0 && (size_t)count > SIZE_MAX / size) {
        kp_reader_fail(r, KP_DECODE_NOMEM);
        return NULL;
    }
    void *p = kp_arena_alloc(a, (size_t)count * size);
    if (!p)
        kp_reader_fail(r, KP_DECODE_NOMEM);
    return p;
}

int32_t kp_read_tag_count(kp_reader_t *r)
{
    uint32_t n = kp_read_uvarint(r);
    if (r->err)
        return 0;
    /* Each tagged field takes at least two bytes: its tag and its size. */
    if (n > KP_MAX_TAGS || n > kp_reader_remaining(r) / 2) {
        kp_reader_fail(r, n > KP_MAX_TAGS ? KP_DECODE_RANGE : KP_DECODE_UNDERFLOW);
        return 0;
    }
    return (int32_t)n;
}

kp_bytes_t kp_read_tag(kp_reader_t *r, int64_t prev_tag, uint32_t *tag)
{
    kp_bytes_t b = {NULL, 0};
    *tag = kp_read_uvarint(r);
    uint32_t size = kp_read_uvarint(r);
    if (r->err)
        return b;
    if ((int64_t)*tag <= prev_tag) {
        kp_reader_fail(r, KP_DECODE_BAD_TAGS);
        return b;
    }
    return kp_read_raw(r, size);
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

void kp_writer_init(kp_writer_t *w, size_t initial_cap)
{
    w->buf = NULL;
    w->len = 0;
    w->cap = 0;
    w->err = KP_ENCODE_OK;
    w->refer_min = 0;
    w->spans = NULL;
    w->nspans = w->spans_cap = w->spans_len = 0;
    w->fixed = 0;
    if (initial_cap) {
        w->buf = malloc(initial_cap);
        if (w->buf)
            w->cap = initial_cap;
        else
            w->err = KP_ENCODE_NOMEM;
    }
}

void kp_writer_init_aligned(kp_writer_t *w, size_t initial_cap, size_t align)
{
    kp_writer_init(w, 0);
    void *p = NULL;
    if (initial_cap && posix_memalign(&p, align, initial_cap) != 0) {
        w->err = KP_ENCODE_NOMEM;
        return;
    }
    w->buf = p;
    w->cap = initial_cap;
}

void kp_writer_init_over(kp_writer_t *w, uint8_t *buf, size_t cap)
{
    kp_writer_init(w, 0);
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->fixed = 1;
}

void kp_writer_deinit(kp_writer_t *w)
{
    if (!w->fixed)
        free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
    free(w->spans);
    w->spans = NULL;
    w->nspans = w->spans_cap = w->spans_len = 0;
}

uint8_t *kp_writer_take(kp_writer_t *w, size_t *len)
{
    uint8_t *b = w->buf;
    if (len)
        *len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    w->err = KP_ENCODE_OK;
    w->fixed = 0;
    free(w->spans);
    w->spans = NULL;
    w->nspans = w->spans_cap = w->spans_len = 0;
    return b;
}

void kp_writer_refer(kp_writer_t *w, size_t min)
{
    w->refer_min = min;
}

kp_span_t *kp_writer_take_spans(kp_writer_t *w, size_t *n)
{
    kp_span_t *s = w->spans;
    *n = w->nspans;
    w->spans = NULL;
    w->nspans = w->spans_cap = w->spans_len = 0;
    return s;
}

/* Record @n bytes at @p as a span at the current end of the buffer. */
static void add_span(kp_writer_t *w, const uint8_t *p, size_t n)
{
    if (w->err)
        return;
    if (w->nspans == w->spans_cap) {
        size_t cap = w->spans_cap ? 2 * w->spans_cap : 8;
        kp_span_t *ns = cap <= SIZE_MAX / sizeof *ns ? realloc(w->spans, cap * sizeof *ns) : NULL;
        if (!ns) {
            kp_writer_fail(w, KP_ENCODE_NOMEM);
            return;
        }
        w->spans = ns;
        w->spans_cap = cap;
    }
    w->spans[w->nspans++] = (kp_span_t){w->len, p, n};
    w->spans_len += n;
}

uint8_t *kp_writer_space(kp_writer_t *w, size_t n)
{
    if (w->err)
        return NULL;
    if (w->cap - w->len < n) {
        if (w->fixed || n > SIZE_MAX / 2 - w->len) {
            kp_writer_fail(w, KP_ENCODE_NOMEM);
            return NULL;
        }
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len < n)
            cap *= 2;
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) {
            kp_writer_fail(w, KP_ENCODE_NOMEM);
            return NULL;
        }
        w->buf = nb;
        w->cap = cap;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

void kp_write_raw(kp_writer_t *w, const void *p, size_t n)
{
    uint8_t *d = kp_writer_space(w, n);
    if (d && n)
        memcpy(d, p, n);
}

void kp_write_i8(kp_writer_t *w, int8_t v)
{
    uint8_t *d = kp_writer_space(w, 1);
    if (d)
        d[0] = (uint8_t)v;
}

void kp_write_bool(kp_writer_t *w, bool v)
{
    kp_write_i8(w, v ? 1 : 0);
}

void kp_write_i16(kp_writer_t *w, int16_t v)
{
    uint8_t *d = kp_writer_space(w, 2);
    if (d)
        kp_put_be16(d, (uint16_t)v);
}

void kp_write_u16(kp_writer_t *w, uint16_t v)
{
    kp_write_i16(w, (int16_t)v);
}

void kp_write_i32(kp_writer_t *w, int32_t v)
{
    uint8_t *d = kp_writer_space(w, 4);
    if (d)
        kp_put_be32(d, (uint32_t)v);
}

void kp_write_u32(kp_writer_t *w, uint32_t v)
{
    kp_write_i32(w, (int32_t)v);
}

void kp_write_i64(kp_writer_t *w, int64_t v)
{
    uint8_t *d = kp_writer_space(w, 8);
    if (d)
        kp_put_be64(d, (uint64_t)v);
}

void kp_write_f64(kp_writer_t *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    kp_write_i64(w, (int64_t)u);
}

void kp_write_uuid(kp_writer_t *w, kp_uuid_t v)
{
    kp_write_raw(w, v.b, 16);
}

void kp_write_uvarlong(kp_writer_t *w, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    kp_write_raw(w, tmp, n);
}

void kp_write_uvarint(kp_writer_t *w, uint32_t v)
{
    kp_write_uvarlong(w, v);
}

void kp_write_varint(kp_writer_t *w, int32_t v)
{
    kp_write_uvarint(w, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

void kp_write_varlong(kp_writer_t *w, int64_t v)
{
    kp_write_uvarlong(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

size_t kp_uvarint_size(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Length prefix shared by strings and bytes; returns false when nothing
 * more is to be written (null or error). */
static bool write_len(kp_writer_t *w, int32_t len, bool compact, bool wide, bool nullable)
{
    if (len < 0) {
        if (!nullable) {
            kp_writer_fail(w, KP_ENCODE_NULL);
            return false;
        }
        if (compact)
            kp_write_uvarint(w, 0);
        else if (wide)
            kp_write_i32(w, -1);
        else
            kp_write_i16(w, -1);
        return false;
    }
    if (compact)
        kp_write_uvarint(w, (uint32_t)len + 1);
    else if (wide)
        kp_write_i32(w, len);
    else if (len > KP_MAX_STRING) {
        kp_writer_fail(w, KP_ENCODE_RANGE);
        return false;
    } else
        kp_write_i16(w, (int16_t)len);
    return true;
}

void kp_write_string(kp_writer_t *w, kp_str_t s, bool compact, bool nullable)
{
    if (write_len(w, s.len, compact, false, nullable))
        kp_write_raw(w, s.ptr, (size_t)s.len);
}

void kp_write_bytes(kp_writer_t *w, kp_bytes_t b, bool compact, bool nullable)
{
    if (write_len(w, b.len, compact, true, nullable))
        kp_write_raw(w, b.ptr, (size_t)b.len);
}

/* One piece of a RECORDS value: referred to when large enough, else copied. */
static void write_piece(kp_writer_t *w, const uint8_t *p, size_t n)
{
    if (w->refer_min > 0 && n >= w->refer_min)
        add_span(w, p, n);
    else
        kp_write_raw(w, p, n);
}

void kp_write_records(kp_writer_t *w, kp_bytes_t b, const kp_bytes_t *parts, int32_t nparts,
                      bool compact, bool nullable)
{
    if (nparts <= 0) {
        if (write_len(w, b.len, compact, true, nullable))
            write_piece(w, b.ptr, (size_t)b.len);
        return;
    }
    int64_t total = 0;
    for (int32_t i = 0; i < nparts; i++) {
        if (parts[i].len < 0 || total + parts[i].len > KP_MAX_BYTES) {
            kp_writer_fail(w, KP_ENCODE_RANGE);
            return;
        }
        total += parts[i].len;
    }
    if (!write_len(w, (int32_t)total, compact, true, nullable))
        return;
    for (int32_t i = 0; i < nparts; i++)
        write_piece(w, parts[i].ptr, (size_t)parts[i].len);
}

void kp_write_array_len(kp_writer_t *w, int32_t count, bool compact, bool nullable)
{
    if (count < 0) {
        if (!nullable) {
            kp_writer_fail(w, KP_ENCODE_NULL);
            return;
        }
        if (compact)
            kp_write_uvarint(w, 0);
        else
            kp_write_i32(w, -1);
        return;
    }
    if (compact)
        kp_write_uvarint(w, (uint32_t)count + 1);
    else
        kp_write_i32(w, count);
}

size_t kp_writer_reserve_i32(kp_writer_t *w)
{
    size_t pos = w->len;
    kp_write_i32(w, 0);
    return pos;
}

void kp_writer_patch_i32(kp_writer_t *w, size_t pos, int32_t v)
{
    if (w->err || pos + 4 > w->len)
        return;
    kp_put_be32(w->buf + pos, (uint32_t)v);
}
