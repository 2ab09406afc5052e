/*
 * kp_batch.h: Kafka RecordBatch v2 (magic 2) -- framing, validation without
 * copying, in-place patching of the fields outside the CRC, record
 * iteration (decompressing gzip, snappy, lz4 and zstd into a bounded
 * caller-given sink) and a builder.
 *
 * Layout (all integers big-endian; records use zig-zag varints):
 *   baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
 *   crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
 *   maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
 *   recordCount i32 | records...
 * batchLength counts the bytes after itself; the CRC32C covers attributes to
 * the end, so baseOffset and partitionLeaderEpoch can be rewritten in place.
 * Record: length varint | attributes i8 | timestampDelta varlong |
 *   offsetDelta varint | keyLength varint (-1 null) | key | valueLength
 *   varint (-1 null) | value | headerCount varint | headers, each
 *   keyLength varint (>= 0) | key | valueLength varint (-1 null) | value.
 *
 * Ownership: batch bytes are borrowed; records and headers are views into
 * them or, for compressed batches, into the caller's kp_zout_t sink, valid
 * until the sink is reused or deinit'ed.  The builder appends to the
 * caller's kp_writer_t.  Validation and iteration allocate only through the
 * caller's sink (and the codec libraries, see kp_compress.h); the builder
 * also stages a compressed batch's records in a temporary kp_writer_t.
 * Threading: no global state; each iterator is used by one thread at a time.
 */
#ifndef KP_BATCH_H
#define KP_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_codec.h"
#include "kp_compress.h"

/* Byte offsets of the fixed header fields within a batch. */
enum {
    KP_BATCH_OFF_BASE_OFFSET = 0,
    KP_BATCH_OFF_LENGTH = 8,
    KP_BATCH_OFF_LEADER_EPOCH = 12,
    KP_BATCH_OFF_MAGIC = 16,
    KP_BATCH_OFF_CRC = 17,
    KP_BATCH_OFF_ATTRIBUTES = 21, /* the CRC covers from here to the end */
    KP_BATCH_OFF_LAST_OFFSET_DELTA = 23,
    KP_BATCH_OFF_BASE_TIMESTAMP = 27,
    KP_BATCH_OFF_MAX_TIMESTAMP = 35,
    KP_BATCH_OFF_PRODUCER_ID = 43,
    KP_BATCH_OFF_PRODUCER_EPOCH = 51,
    KP_BATCH_OFF_BASE_SEQUENCE = 53,
    KP_BATCH_OFF_RECORD_COUNT = 57,
    KP_BATCH_HEADER_SIZE = 61
};

/* Bytes before the part batchLength counts (baseOffset + batchLength). */
#define KP_BATCH_LENGTH_PREFIX 12
/* Smallest valid batchLength: the fixed header without the prefix. */
#define KP_BATCH_MIN_LENGTH (KP_BATCH_HEADER_SIZE - KP_BATCH_LENGTH_PREFIX)
#define KP_BATCH_MAGIC 2
/* Smallest record: a 1-byte length and six 1-byte fields. */
#define KP_RECORD_MIN_SIZE 7

/* Attribute bits. */
#define KP_BATCH_ATTR_COMPRESSION_MASK 0x07 /* kp_compression_t */
#define KP_BATCH_ATTR_LOG_APPEND_TIME 0x08  /* timestamp type: 0 CreateTime, 1 LogAppendTime */
#define KP_BATCH_ATTR_TRANSACTIONAL 0x10
#define KP_BATCH_ATTR_CONTROL 0x20

/* A sensible decompression limit for one batch when the caller has no
 * better figure (Kafka's default message.max.bytes is ~1 MiB compressed). */
#define KP_BATCH_DEFAULT_MAX_DECOMPRESSED (64u << 20)

typedef enum kp_batch_err {
    KP_BATCH_OK = 0,
    KP_BATCH_TRUNCATED,        /* the buffer ends inside a batch */
    KP_BATCH_BAD_LENGTH,       /* batchLength below KP_BATCH_MIN_LENGTH */
    KP_BATCH_TOO_LARGE,        /* batch larger than the caller's maximum */
    KP_BATCH_BAD_MAGIC,        /* magic is not 2 */
    KP_BATCH_BAD_CRC,          /* CRC32C of attributes..end differs from the crc field */
    KP_BATCH_BAD_CODEC,        /* compression bits name no codec (5..7) */
    KP_BATCH_BAD_COUNT,        /* record count negative or at odds with lastOffsetDelta */
    KP_BATCH_BAD_RECORDS,      /* records disagree with their lengths, the count or the size */
    KP_BATCH_DECOMPRESS,       /* compressed records are corrupt */
    KP_BATCH_DECOMPRESS_LIMIT, /* decompressed records exceed the sink's maximum */
    KP_BATCH_NO_BUFFER,        /* compressed batch but no decompression sink given */
    KP_BATCH_NOMEM,            /* allocation failed (sink, codec library or writer) */
    KP_BATCH__NUM
} kp_batch_err_t;

const char *kp_batch_err_str(kp_batch_err_t e);

/* The fixed header, parsed.  Fields are as on the wire; invariants listed
 * hold once kp_batch_validate_one() returned KP_BATCH_OK. */
typedef struct kp_batch_hdr {
    int64_t base_offset;       /* offset of offset delta 0; assigned by the broker */
    int32_t length;            /* batchLength: batch size minus 12; >= KP_BATCH_MIN_LENGTH */
    int32_t leader_epoch;      /* partitionLeaderEpoch; -1 from producers */
    int8_t magic;              /* == KP_BATCH_MAGIC */
    uint32_t crc;              /* CRC32C of bytes 21..end, as sent */
    int16_t attributes;        /* KP_BATCH_ATTR_* bits */
    int32_t last_offset_delta; /* last record's offset - base_offset; >= record_count - 1 */
    int64_t base_timestamp;    /* ms since the epoch; first record's timestamp */
    int64_t max_timestamp;     /* ms since the epoch; largest record timestamp */
    int64_t producer_id;       /* -1 when not idempotent */
    int16_t producer_epoch;    /* -1 when not idempotent */
    int32_t base_sequence;     /* first record's sequence number; -1 when none */
    int32_t record_count;      /* records in the batch; >= 0 */
} kp_batch_hdr_t;

static inline kp_compression_t kp_batch_hdr_codec(const kp_batch_hdr_t *hdr)
{
    return (kp_compression_t)(hdr->attributes & KP_BATCH_ATTR_COMPRESSION_MASK);
}

/**
 * Parse the fixed header at @buf (borrows; no checks beyond presence).
 * @returns KP_BATCH_OK, or KP_BATCH_TRUNCATED when @len < KP_BATCH_HEADER_SIZE.
 * @thread any
 */
kp_batch_err_t kp_batch_hdr_parse(const uint8_t *buf, size_t len, kp_batch_hdr_t *hdr);

/**
 * Frame the batch starting at @buf: its batchLength must be at least
 * KP_BATCH_MIN_LENGTH and the whole batch must lie within @len bytes and be
 * at most @max_size bytes.  Sets *size to the batch's total size
 * (batchLength + 12).  Nothing else is checked.
 * @returns KP_BATCH_OK, KP_BATCH_TRUNCATED, KP_BATCH_BAD_LENGTH or
 *          KP_BATCH_TOO_LARGE.
 * @thread any
 */
kp_batch_err_t kp_batch_frame(const uint8_t *buf, size_t len, size_t max_size, size_t *size);

/* Validation flags. */
/* Producer rules, as Kafka's LogValidator applies them to a Produce:
 * record count >= 1, lastOffsetDelta == count - 1, and (where records are
 * walked) offset deltas exactly 0..count-1.  Without it, gaps left by
 * compaction are allowed: deltas increase and stay <= lastOffsetDelta. */
#define KP_BATCH_CHECK_PRODUCE 0x1

/* What validation enforces. */
typedef struct kp_batch_limits {
    size_t max_size; /* largest batch accepted, bytes including the 12-byte prefix */
    unsigned flags;  /* KP_BATCH_CHECK_* */
    kp_zout_t *zout; /* borrowed; non-NULL: compressed batches are decompressed into it
                        and their records checked; NULL: their payload is not inspected */
} kp_batch_limits_t;

/* One validated batch. */
typedef struct kp_batch_info {
    kp_batch_hdr_t hdr;     /* parsed header */
    size_t size;            /* total bytes: hdr.length + KP_BATCH_LENGTH_PREFIX */
    kp_compression_t codec; /* from hdr.attributes */
    bool transactional;     /* attribute bit 4 */
    bool control;           /* attribute bit 5: a control (commit/abort marker) batch */
} kp_batch_info_t;

/**
 * Validate the batch at the start of @buf (the buffer may hold more after
 * it): framing and size (see kp_batch_frame()), magic, CRC32C, codec bits,
 * record count against lastOffsetDelta, and -- for uncompressed batches, or
 * compressed ones when lim->zout is set -- every record's varint lengths
 * against the batch size and the number of records against the count.
 * @lim is borrowed; NULL means no size limit, no flags, no decompression.
 * @info (may be NULL) is filled whenever the header could be parsed.
 * @returns KP_BATCH_OK or the first problem found.
 * @thread any
 */
kp_batch_err_t kp_batch_validate_one(const uint8_t *buf, size_t len, const kp_batch_limits_t *lim,
                                     kp_batch_info_t *info);

/* Summary of a validated records field. */
typedef struct kp_batch_summary {
    int32_t count;         /* batches in the field; 0 for an empty field */
    int64_t records;       /* sum of their record counts */
    bool transactional;    /* some batch has the transactional bit */
    bool control;          /* some batch is a control batch */
    kp_batch_info_t first; /* the first batch; meaningful when count >= 1 */
    size_t err_pos;        /* on error: byte position of the offending batch */
} kp_batch_summary_t;

/**
 * Validate a records field holding zero or more concatenated batches, each
 * with kp_batch_validate_one().  @sum may be NULL.  A Produce must carry
 * exactly one batch per partition: check sum->count == 1.
 * @returns KP_BATCH_OK or the first batch's error (sum->err_pos tells where).
 * @thread any
 */
kp_batch_err_t kp_batch_validate(const uint8_t *buf, size_t len, const kp_batch_limits_t *lim,
                                 kp_batch_summary_t *sum);

/* Walks the batches of a records field, framing only (kp_batch_frame()). */
typedef struct kp_batch_cursor {
    const uint8_t *p;   /* next batch; p <= end */
    const uint8_t *end; /* end of the records field */
    size_t max_size;    /* passed to kp_batch_frame() */
    kp_batch_err_t err; /* sticky: first framing error */
} kp_batch_cursor_t;

/* Start walking @buf[0..@len) (borrowed for the cursor's life). */
void kp_batch_cursor_init(kp_batch_cursor_t *cur, const uint8_t *buf, size_t len, size_t max_size);

/**
 * The bounds of the next batch: *batch and *size.  Returns false at the end
 * of the field or on a framing error (cur->err says which).
 * @thread any
 */
bool kp_batch_cursor_next(kp_batch_cursor_t *cur, const uint8_t **batch, size_t *size);

/**
 * Count the batches in a records field by framing them.
 * @returns KP_BATCH_OK with *count set, or the framing error.
 */
kp_batch_err_t kp_batch_count(const uint8_t *buf, size_t len, size_t max_size, int32_t *count);

/* Assign the absolute base offset in place; the CRC does not cover it.
 * @batch must hold at least KP_BATCH_HEADER_SIZE bytes. */
void kp_batch_set_base_offset(uint8_t *batch, int64_t base_offset);

/* Set partitionLeaderEpoch in place; the CRC does not cover it. */
void kp_batch_set_leader_epoch(uint8_t *batch, int32_t leader_epoch);

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

/* One record, as views. */
typedef struct kp_record {
    int8_t attributes;       /* record attributes: unused by Kafka, 0 */
    int64_t timestamp_delta; /* ms relative to the batch's base_timestamp */
    int64_t timestamp;       /* ms since the epoch: base_timestamp + delta, or the
                                batch's max_timestamp for LogAppendTime batches */
    int32_t offset_delta;    /* relative to base_offset; increases within a batch */
    int64_t offset;          /* base_offset + offset_delta */
    kp_bytes_t key;          /* len -1 = null */
    kp_bytes_t value;        /* len -1 = null */
    int32_t header_count;    /* >= 0 */
    const uint8_t *headers;  /* the encoded headers, already checked; walk them */
    size_t headers_size;     /* with kp_header_iter_init() */
} kp_record_t;

typedef struct kp_record_header {
    kp_str_t key;     /* never null (length >= 0) */
    kp_bytes_t value; /* len -1 = null */
} kp_record_header_t;

typedef struct kp_header_iter {
    kp_reader_t r;     /* over the record's encoded headers */
    int32_t remaining; /* headers not yet returned */
} kp_header_iter_t;

/* Start walking @rec's headers (borrows rec's views). */
void kp_header_iter_init(kp_header_iter_t *hi, const kp_record_t *rec);
/* The next header, or false after the last one. */
bool kp_header_iter_next(kp_header_iter_t *hi, kp_record_header_t *hdr);

typedef struct kp_record_iter {
    kp_batch_hdr_t hdr; /* header of the batch being walked */
    kp_reader_t r;      /* over the records: the batch, or the sink when compressed */
    int32_t remaining;  /* records not yet returned */
    int32_t index;      /* records returned so far */
    int32_t prev_delta; /* offset delta of the previous record; -1 before the first */
    unsigned flags;     /* KP_BATCH_CHECK_* */
    kp_batch_err_t err; /* sticky: first error wins */
} kp_record_iter_t;

/**
 * Start walking the records of the batch at the start of @batch[0..@len).
 * Checks framing, magic, codec bits and the record count; the CRC is not
 * checked (validate first).  A compressed batch is decompressed into @zout
 * (borrowed; may be NULL for uncompressed batches) and the records returned
 * point into zout->buf.
 * @returns KP_BATCH_OK or an error (also left in it->err).
 * @thread any
 */
kp_batch_err_t kp_record_iter_init(kp_record_iter_t *it, const uint8_t *batch, size_t len,
                                   unsigned flags, kp_zout_t *zout);

/**
 * The next record.  Returns false after the last record or on a malformed
 * one; then it->err is KP_BATCH_OK only if exactly record_count well-formed
 * records filled the records bytes.
 * @thread any
 */
bool kp_record_iter_next(kp_record_iter_t *it, kp_record_t *rec);

/* ------------------------------------------------------------------ */
/* Builder                                                             */
/* ------------------------------------------------------------------ */

/* One record to build. */
typedef struct kp_record_in {
    int64_t timestamp;                 /* ms since the epoch */
    kp_bytes_t key;                    /* len -1 = null */
    kp_bytes_t value;                  /* len -1 = null */
    const kp_record_header_t *headers; /* header_count entries (borrowed); keys not null */
    int32_t header_count;              /* >= 0 */
} kp_record_in_t;

/* Batch-level fields for the builder. */
typedef struct kp_batch_spec {
    int64_t base_offset;     /* 0 from producers */
    int32_t leader_epoch;    /* -1 from producers */
    kp_compression_t codec;  /* how the records are compressed */
    unsigned compress_flags; /* KP_COMPRESS_* (snappy framing) */
    int16_t attributes;      /* extra KP_BATCH_ATTR_* bits (not the codec bits) */
    int64_t producer_id;     /* -1 when not idempotent */
    int16_t producer_epoch;  /* -1 when not idempotent */
    int32_t base_sequence;   /* -1 when not idempotent */
} kp_batch_spec_t;

/**
 * Append one batch holding @recs[0..@n) (n >= 1, offset deltas 0..n-1,
 * baseTimestamp = first record's, maxTimestamp = largest) to @w, compressed
 * as @spec says, with batchLength and CRC filled in.
 * @returns KP_BATCH_OK; KP_BATCH_BAD_COUNT for n < 1; KP_BATCH_BAD_CODEC;
 *          KP_BATCH_BAD_RECORDS for a negative length or count below -1;
 *          KP_BATCH_TOO_LARGE past 2 GiB; KP_BATCH_NOMEM when the writer or a
 *          codec fails.  On error @w keeps its old length.
 * @thread any
 */
kp_batch_err_t kp_batch_build(kp_writer_t *w, const kp_batch_spec_t *spec,
                              const kp_record_in_t *recs, int32_t n);

/**
 * Append to @w a copy of the batch at the start of @batch[0..@len) whose
 * records are compressed with @codec (KP_COMPRESSION_NONE: stored plain),
 * as a broker does when a topic's compression.type differs from the
 * producer's codec.  Every header field other than the codec bits of the
 * attributes, batchLength and the CRC is kept (base offset, leader epoch,
 * timestamps, producer id, epoch and base sequence, counts), and so is every
 * record byte for byte; batchLength and the CRC are computed anew.  The
 * records are decompressed into @zout (borrowed; its max bounds the memory,
 * NULL allowed for an uncompressed batch) and walked with @flags
 * (KP_BATCH_CHECK_*) before being compressed, so a batch whose records are
 * malformed is refused.  The CRC of the input is not checked: validate
 * first.  A batch already compressed with @codec is copied unchanged.
 * @returns KP_BATCH_OK; a framing, codec or record error of the input;
 *          KP_BATCH_DECOMPRESS(_LIMIT) or KP_BATCH_NO_BUFFER;
 *          KP_BATCH_TOO_LARGE past 2 GiB; KP_BATCH_NOMEM.  On error @w keeps
 *          its old length.
 * @thread any
 */
kp_batch_err_t kp_batch_recompress(const uint8_t *batch, size_t len, kp_compression_t codec,
                                   unsigned compress_flags, unsigned flags, kp_zout_t *zout,
                                   kp_writer_t *w);

#endif
