/*
 * kp_codec.h: Kafka wire primitives -- a bounds-checked reader with a sticky
 * error, a growable writer with reserve/patch, and a bounded arena for the
 * arrays that decoding produces.
 *
 * Ownership: decoded strings and bytes (kp_str_t, kp_bytes_t) are views into
 * the buffer the reader was given; they stay valid only while that buffer
 * lives.  Arrays produced by decoding live in the caller's kp_arena_t and are
 * released together with kp_arena_reset()/kp_arena_deinit().  The writer owns
 * its buffer until kp_writer_take() hands it to the caller.
 * Threading: no global state; each object is used by one thread at a time.
 */
#ifndef KP_CODEC_H
#define KP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Named maxima: every length and count read from the wire is checked against
 * one of these, and against the bytes remaining, before anything is used. */
#define KP_MAX_STRING 32767          /* classic STRING: int16 length */
#define KP_MAX_COMPACT_STR (1 << 20) /* compact strings: 1 MiB is far above any name */
#define KP_MAX_BYTES 0x7ffffffe      /* BYTES/RECORDS: bounded by the frame anyway */
#define KP_MAX_ARRAY (1 << 24)       /* array element count */
#define KP_MAX_TAGS 1024             /* tagged fields in one tag buffer */

/* Decoding allocates (from the arena) at most this many bytes per byte of
 * input.  Each array element and tag takes at least one wire byte, and the
 * generator checks sizeof(element) / min wire size of every element type
 * against this constant (test_msgs asserts it). */
#define KP_DECODE_MAX_EXPANSION 64

typedef enum kp_derr {
    KP_DECODE_OK = 0,
    KP_DECODE_UNDERFLOW,  /* fewer bytes remain than a field needs */
    KP_DECODE_RANGE,      /* negative or over-maximum length / count */
    KP_DECODE_BAD_VARINT, /* varint longer than its type allows */
    KP_DECODE_NULL,       /* null where the version does not allow null */
    KP_DECODE_NOMEM,      /* arena limit reached */
    KP_DECODE_VERSION,    /* version outside validVersions */
    KP_DECODE_BAD_TAGS,   /* tagged fields out of order or duplicated */
    KP_DECODE__NUM
} kp_derr_t;

const char *kp_derr_str(kp_derr_t e);

/* A string view; len == -1 means null.  Not NUL-terminated. */
typedef struct kp_str {
    const char *ptr;
    int32_t len;
} kp_str_t;

/* A bytes view; len == -1 means null. */
typedef struct kp_bytes {
    const uint8_t *ptr;
    int32_t len;
} kp_bytes_t;

typedef struct kp_uuid {
    uint8_t b[16];
} kp_uuid_t;

/* One tagged field the schema does not know, kept as a view so that a
 * decoded message re-encodes byte-exactly. */
typedef struct kp_tag {
    uint32_t tag;
    kp_bytes_t data;
} kp_tag_t;

typedef struct kp_tags {
    kp_tag_t *items; /* arena memory, sorted by tag */
    int32_t count;
} kp_tags_t;

#define KP_STR_NULL ((kp_str_t){NULL, -1})
#define KP_BYTES_NULL ((kp_bytes_t){NULL, -1})
/* A view of a C string literal or NUL-terminated string (borrows s). */
static inline kp_str_t kp_str(const char *s)
{
    return (kp_str_t){s, s ? (int32_t)strlen(s) : -1};
}
static inline bool kp_str_eq(kp_str_t a, const char *s)
{
    size_t n = strlen(s);
    return a.len >= 0 && (size_t)a.len == n && memcmp(a.ptr, s, n) == 0;
}

/* ------------------------------------------------------------------ */
/* Arena                                                               */
/* ------------------------------------------------------------------ */

typedef struct kp_arena_chunk kp_arena_chunk_t;

typedef struct kp_arena {
    kp_arena_chunk_t *head; /* owned chunk list, newest first */
    size_t used;            /* bytes handed out since init/reset */
    size_t allocated;       /* bytes obtained from malloc, incl. headers */
    size_t limit;           /* kp_arena_alloc fails once used would exceed this */
} kp_arena_t;

/* Set up an empty arena that will hand out at most @limit bytes. */
void kp_arena_init(kp_arena_t *a, size_t limit);
/* Release every chunk. */
void kp_arena_deinit(kp_arena_t *a);
/* Forget all allocations (keeps the newest chunk for reuse). */
void kp_arena_reset(kp_arena_t *a);
/* Zeroed, 8-byte aligned memory owned by the arena; NULL when the limit
 * would be exceeded or malloc fails. */
void *kp_arena_alloc(kp_arena_t *a, size_t n);
/* The limit to give an arena that decodes a frame of @frame_len bytes. */
static inline size_t kp_arena_limit_for(size_t frame_len)
{
    return frame_len * KP_DECODE_MAX_EXPANSION + 4096;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */
/* ------------------------------------------------------------------ */

typedef struct kp_reader {
    const uint8_t *p, *end;
    kp_derr_t err; /* sticky: first error wins; reads after it return zero */
} kp_reader_t;

static inline void kp_reader_init(kp_reader_t *r, const uint8_t *buf, size_t len)
{
    r->p = buf;
    r->end = buf ? buf + len : buf; /* NULL + 0 is undefined in C */
    r->err = KP_DECODE_OK;
}
static inline size_t kp_reader_remaining(const kp_reader_t *r)
{
    return (size_t)(r->end - r->p);
}
/* Record the first error; always returns false for use in expressions. */
static inline bool kp_reader_fail(kp_reader_t *r, kp_derr_t e)
{
    if (r->err == KP_DECODE_OK)
        r->err = e;
    return false;
}
/* True when @n more bytes are available (sets UNDERFLOW otherwise). */
static inline bool kp_reader_need(kp_reader_t *r, size_t n)
{
    if (r->err != KP_DECODE_OK)
        return false;
    if (kp_reader_remaining(r) < n)
        return kp_reader_fail(r, KP_DECODE_UNDERFLOW);
    return true;
}

static inline uint16_t kp_be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}
static inline uint32_t kp_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t kp_be64(const uint8_t *p)
{
    return (uint64_t)kp_be32(p) << 32 | kp_be32(p + 4);
}
static inline void kp_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void kp_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void kp_put_be64(uint8_t *p, uint64_t v)
{
    kp_put_be32(p, (uint32_t)(v >> 32));
    kp_put_be32(p + 4, (uint32_t)v);
}

static inline int8_t kp_read_i8(kp_reader_t *r)
{
    if (!kp_reader_need(r, 1))
        return 0;
    return (int8_t)*r->p++;
}
static inline bool kp_read_bool(kp_reader_t *r)
{
    return kp_read_i8(r) != 0;
}
static inline int16_t kp_read_i16(kp_reader_t *r)
{
    if (!kp_reader_need(r, 2))
        return 0;
    uint16_t v = kp_be16(r->p);
    r->p += 2;
    return (int16_t)v;
}
static inline uint16_t kp_read_u16(kp_reader_t *r)
{
    return (uint16_t)kp_read_i16(r);
}
static inline int32_t kp_read_i32(kp_reader_t *r)
{
    if (!kp_reader_need(r, 4))
        return 0;
    uint32_t v = kp_be32(r->p);
    r->p += 4;
    return (int32_t)v;
}
static inline uint32_t kp_read_u32(kp_reader_t *r)
{
    return (uint32_t)kp_read_i32(r);
}
static inline int64_t kp_read_i64(kp_reader_t *r)
{
    if (!kp_reader_need(r, 8))
        return 0;
    uint64_t v = kp_be64(r->p);
    r->p += 8;
    return (int64_t)v;
}
double kp_read_f64(kp_reader_t *r);
kp_uuid_t kp_read_uuid(kp_reader_t *r);

/* Unsigned varint of at most 5 bytes (uint32); BAD_VARINT beyond. */
uint32_t kp_read_uvarint(kp_reader_t *r);
/* Zig-zag signed varint of at most 5 bytes (int32). */
int32_t kp_read_varint(kp_reader_t *r);
/* Unsigned varlong of at most 10 bytes. */
uint64_t kp_read_uvarlong(kp_reader_t *r);
/* Zig-zag signed varlong of at most 10 bytes (int64). */
int64_t kp_read_varlong(kp_reader_t *r);

/* STRING / NULLABLE_STRING (int16 length) or, when @compact, COMPACT_STRING
 * (uvarint length + 1, 0 = null).  A null where !@nullable is KP_DECODE_NULL.
 * The result is a view into the reader's buffer. */
kp_str_t kp_read_string(kp_reader_t *r, bool compact, bool nullable);
/* BYTES (int32 length) or COMPACT_BYTES (uvarint length + 1). */
kp_bytes_t kp_read_bytes(kp_reader_t *r, bool compact, bool nullable);
/* Take @n raw bytes as a view. */
kp_bytes_t kp_read_raw(kp_reader_t *r, size_t n);

/* Array element count: int32 or, when @compact, uvarint N+1 (0 = null).
 * Returns -1 for null (KP_DECODE_NULL if !@nullable).  The count is checked
 * against KP_MAX_ARRAY and against the remaining bytes divided by
 * @min_elem_size (the smallest wire size of one element, >= 1). */
int32_t kp_read_array_len(kp_reader_t *r, bool compact, bool nullable, size_t min_elem_size);

/* Arena-allocate @count elements of @size bytes (zeroed); sets NOMEM on
 * failure.  count <= 0 returns NULL without error. */
void *kp_read_alloc(kp_reader_t *r, kp_arena_t *a, int32_t count, size_t size);

/* Read a tag buffer's header: the number of tagged fields that follow
 * (checked against KP_MAX_TAGS and the remaining bytes). */
int32_t kp_read_tag_count(kp_reader_t *r);
/* Read one tagged field's tag and size; returns the field's bytes as a view
 * and advances past them.  Tags must strictly increase (@prev_tag is the
 * previous tag or -1). */
kp_bytes_t kp_read_tag(kp_reader_t *r, int64_t prev_tag, uint32_t *tag);

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

typedef enum kp_werr {
    KP_ENCODE_OK = 0,
    KP_ENCODE_NOMEM,   /* buffer could not grow */
    KP_ENCODE_NULL,    /* null given for a field that is not nullable in this version */
    KP_ENCODE_RANGE,   /* a length or count does not fit its wire type */
    KP_ENCODE_VERSION, /* version outside validVersions */
} kp_werr_t;

/* Bytes a writer refers to instead of copying them (see kp_writer_refer).
 * The output is buf[0, spans[0].pos), spans[0], buf[spans[0].pos,
 * spans[1].pos), spans[1], ..., buf[spans[n-1].pos, len). */
typedef struct kp_span {
    size_t pos;         /* offset in the writer's buffer the bytes follow; non-decreasing */
    const uint8_t *ptr; /* borrowed: the writer's user keeps them valid until sent */
    size_t len;         /* bytes, > 0 */
} kp_span_t;

typedef struct kp_writer {
    uint8_t *buf;     /* owned; malloc'ed */
    size_t len;       /* bytes written into buf (spans excluded) */
    size_t cap;       /* bytes allocated */
    kp_werr_t err;    /* sticky: first error wins; writes after it are dropped */
    size_t refer_min; /* RECORDS pieces of at least this many bytes become spans; 0 = none */
    kp_span_t *spans; /* owned; in output order; NULL while there are none */
    size_t nspans;    /* spans recorded */
    size_t spans_cap; /* spans allocated */
    size_t spans_len; /* sum of the spans' lengths: the output is len + spans_len bytes */
    int fixed;        /* buf is the caller's: never grown (KP_ENCODE_NOMEM) nor freed */
} kp_writer_t;

void kp_writer_init(kp_writer_t *w, size_t initial_cap);
/* The same with the buffer's address a multiple of @align (a power of two,
 * a multiple of sizeof(void *)), as long as nothing is written past
 * @initial_cap: growing moves the buffer wherever realloc puts it. */
void kp_writer_init_aligned(kp_writer_t *w, size_t initial_cap, size_t align);
/* A writer into the caller's @cap bytes at @buf: writing past them fails
 * with KP_ENCODE_NOMEM, and neither deinit nor take frees them. */
void kp_writer_init_over(kp_writer_t *w, uint8_t *buf, size_t cap);
void kp_writer_deinit(kp_writer_t *w);
/* Hand the buffer to the caller (returns owned, free()) and reset the writer;
 * spans not taken with kp_writer_take_spans() first are freed. */
uint8_t *kp_writer_take(kp_writer_t *w, size_t *len);
/* From now on, write every RECORDS piece of at least @min bytes (min > 0) as
 * a span -- its length prefix in the buffer, its bytes only referred to --
 * instead of copying it.  The caller keeps those bytes valid until the output
 * is sent.  Other writes, BYTES values included, are unchanged, so the
 * output's bytes are the same either way; a writer starts with spans off. */
void kp_writer_refer(kp_writer_t *w, size_t min);
/* Hand the spans to the caller (returns owned, free(); NULL when there are
 * none) and forget them; call it before kp_writer_take(). */
kp_span_t *kp_writer_take_spans(kp_writer_t *w, size_t *n);
/* Bytes of output: the buffer and the spans. */
static inline size_t kp_writer_size(const kp_writer_t *w)
{
    return w->len + w->spans_len;
}
/* Make room for @n more bytes; returns a pointer to them or NULL (sets NOMEM). */
uint8_t *kp_writer_space(kp_writer_t *w, size_t n);
static inline void kp_writer_fail(kp_writer_t *w, kp_werr_t e)
{
    if (w->err == KP_ENCODE_OK)
        w->err = e;
}

void kp_write_raw(kp_writer_t *w, const void *p, size_t n);
void kp_write_i8(kp_writer_t *w, int8_t v);
void kp_write_bool(kp_writer_t *w, bool v);
void kp_write_i16(kp_writer_t *w, int16_t v);
void kp_write_u16(kp_writer_t *w, uint16_t v);
void kp_write_i32(kp_writer_t *w, int32_t v);
void kp_write_u32(kp_writer_t *w, uint32_t v);
void kp_write_i64(kp_writer_t *w, int64_t v);
void kp_write_f64(kp_writer_t *w, double v);
void kp_write_uuid(kp_writer_t *w, kp_uuid_t v);
void kp_write_uvarint(kp_writer_t *w, uint32_t v);
void kp_write_varint(kp_writer_t *w, int32_t v);
void kp_write_uvarlong(kp_writer_t *w, uint64_t v);
void kp_write_varlong(kp_writer_t *w, int64_t v);
/* Bytes the uvarint encoding of @v takes (1..5). */
size_t kp_uvarint_size(uint32_t v);
void kp_write_string(kp_writer_t *w, kp_str_t s, bool compact, bool nullable);
void kp_write_bytes(kp_writer_t *w, kp_bytes_t b, bool compact, bool nullable);
/* RECORDS / COMPACT_RECORDS: like kp_write_bytes(), except that when @nparts
 * > 0 the value is the concatenation of @parts (borrowed; none null) and @b
 * is ignored, and that pieces of at least w->refer_min bytes become spans. */
void kp_write_records(kp_writer_t *w, kp_bytes_t b, const kp_bytes_t *parts, int32_t nparts,
                      bool compact, bool nullable);
/* Array length: int32 or compact uvarint N+1; @count -1 is null. */
void kp_write_array_len(kp_writer_t *w, int32_t count, bool compact, bool nullable);

/* Reserve 4 bytes for a big-endian int32 patched later; returns its position. */
size_t kp_writer_reserve_i32(kp_writer_t *w);
void kp_writer_patch_i32(kp_writer_t *w, size_t pos, int32_t v);

#endif
