/*
 * kp_batch.c: RecordBatch v2 framing, validation, patching, record
 * iteration and building (see kp_batch.h).
 */
#include "kp_batch.h"

#include "kp_crc32c.h"

const char *kp_batch_err_str(kp_batch_err_t e)
{
    static const char *const names[KP_BATCH__NUM] = {
        [KP_BATCH_OK] = "ok",
        [KP_BATCH_TRUNCATED] = "record batch truncated",
        [KP_BATCH_BAD_LENGTH] = "record batch length below the header size",
        [KP_BATCH_TOO_LARGE] = "record batch larger than the maximum",
        [KP_BATCH_BAD_MAGIC] = "record batch magic is not 2",
        [KP_BATCH_BAD_CRC] = "record batch CRC32C mismatch",
        [KP_BATCH_BAD_CODEC] = "unknown compression codec",
        [KP_BATCH_BAD_COUNT] = "record count inconsistent with lastOffsetDelta",
        [KP_BATCH_BAD_RECORDS] = "records inconsistent with their lengths or count",
        [KP_BATCH_DECOMPRESS] = "compressed records are corrupt",
        [KP_BATCH_DECOMPRESS_LIMIT] = "decompressed records exceed the limit",
        [KP_BATCH_NO_BUFFER] = "compressed batch but no decompression buffer",
        [KP_BATCH_NOMEM] = "out of memory",
    };
    if ((unsigned)e >= KP_BATCH__NUM)
        return "unknown record batch error";
    return names[e];
}

/* Two's-complement addition without signed-overflow UB: offsets and
 * timestamps from the wire may be anything. */
static int64_t add_wrap(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

/* ------------------------------------------------------------------ */
/* Header, framing, patching                                           */
/* ------------------------------------------------------------------ */

kp_batch_err_t kp_batch_hdr_parse(const uint8_t *buf, size_t len, kp_batch_hdr_t *hdr)
{
    if (len < KP_BATCH_HEADER_SIZE)
        return KP_BATCH_TRUNCATED;
    hdr->base_offset = (int64_t)kp_be64(buf + KP_BATCH_OFF_BASE_OFFSET);
    hdr->length = (int32_t)kp_be32(buf + KP_BATCH_OFF_LENGTH);
    hdr->leader_epoch = (int32_t)kp_be32(buf + KP_BATCH_OFF_LEADER_EPOCH);
    hdr->magic = (int8_t)buf[KP_BATCH_OFF_MAGIC];
    hdr->crc = kp_be32(buf + KP_BATCH_OFF_CRC);
    hdr->attributes = (int16_t)kp_be16(buf + KP_BATCH_OFF_ATTRIBUTES);
    hdr->last_offset_delta = (int32_t)kp_be32(buf + KP_BATCH_OFF_LAST_OFFSET_DELTA);
    hdr->base_timestamp = (int64_t)kp_be64(buf + KP_BATCH_OFF_BASE_TIMESTAMP);
    hdr->max_timestamp = (int64_t)kp_be64(buf + KP_BATCH_OFF_MAX_TIMESTAMP);
    hdr->producer_id = (int64_t)kp_be64(buf + KP_BATCH_OFF_PRODUCER_ID);
    hdr->producer_epoch = (int16_t)kp_be16(buf + KP_BATCH_OFF_PRODUCER_EPOCH);
    hdr->base_sequence = (int32_t)kp_be32(buf + KP_BATCH_OFF_BASE_SEQUENCE);
    hdr->record_count = (int32_t)kp_be32(buf + KP_BATCH_OFF_RECORD_COUNT);
    return KP_BATCH_OK;
}

kp_batch_err_t kp_batch_frame(const uint8_t *buf, size_t len, size_t max_size, size_t *size)
{
    if (len < KP_BATCH_OFF_LENGTH + 4)
        return KP_BATCH_TRUNCATED;
    int32_t length = (int32_t)kp_be32(buf + KP_BATCH_OFF_LENGTH);
    if (length < KP_BATCH_MIN_LENGTH)
        return KP_BATCH_BAD_LENGTH;
    size_t total = (size_t)length + KP_BATCH_LENGTH_PREFIX;
    if (total > len)
        return KP_BATCH_TRUNCATED;
    if (total > max_size)
        return KP_BATCH_TOO_LARGE;
    *size = total;
    return KP_BATCH_OK;
}

void kp_batch_set_base_offset(uint8_t *batch, int64_t base_offset)
{
    kp_put_be64(batch + KP_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void kp_batch_set_leader_epoch(uint8_t *batch, int32_t leader_epoch)
{
    kp_put_be32(batch + KP_BATCH_OFF_LEADER_EPOCH, (uint32_t)leader_epoch);
}

void kp_batch_cursor_init(kp_batch_cursor_t *cur, const uint8_t *buf, size_t len, size_t max_size)
{
    cur->p = buf;
    cur->end = buf ? buf + len : buf;
    cur->max_size = max_size;
    cur->err = KP_BATCH_OK;
}

bool kp_batch_cursor_next(kp_batch_cursor_t *cur, const uint8_t **batch, size_t *size)
{
    if (cur->err != KP_BATCH_OK || cur->p == cur->end)
        return false;
    size_t n;
    cur->err = kp_batch_frame(cur->p, (size_t)(cur->end - cur->p), cur->max_size, &n);
    if (cur->err != KP_BATCH_OK)
        return false;
    *batch = cur->p;
    *size = n;
    cur->p += n;
    return true;
}

kp_batch_err_t kp_batch_count(const uint8_t *buf, size_t len, size_t max_size, int32_t *count)
{
    kp_batch_cursor_t cur;
    const uint8_t *batch;
    size_t size;
    int32_t n = 0;

    kp_batch_cursor_init(&cur, buf, len, max_size);
    while (kp_batch_cursor_next(&cur, &batch, &size))
        n++; /* each batch is >= 61 bytes, so n cannot overflow for len < 2^37 */
    if (cur.err == KP_BATCH_OK)
        *count = n;
    return cur.err;
}

/* Checks shared by validation and iteration: magic, codec bits, count. */
static kp_batch_err_t hdr_check(const kp_batch_hdr_t *hdr, unsigned flags)
{
    if (hdr->magic != KP_BATCH_MAGIC)
        return KP_BATCH_BAD_MAGIC;
    if (kp_batch_hdr_codec(hdr) >= KP_COMPRESSION__NUM)
        return KP_BATCH_BAD_CODEC;
    if (hdr->record_count < 0)
        return KP_BATCH_BAD_COUNT;
    if (flags & KP_BATCH_CHECK_PRODUCE) {
        /* Kafka's LogValidator: "Invalid record count" / "Inconsistent
         * batch offset range". */
        if (hdr->record_count < 1 || hdr->last_offset_delta != hdr->record_count - 1)
            return KP_BATCH_BAD_COUNT;
    } else if (hdr->last_offset_delta < hdr->record_count - 1) {
        /* Compaction may leave gaps (delta > count - 1), never the reverse. */
        return KP_BATCH_BAD_COUNT;
    }
    return KP_BATCH_OK;
}

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

/* A varint-length byte string: -1 is null, below that is an error. */
static kp_bytes_t read_varbytes(kp_reader_t *r, bool nullable)
{
    int32_t len = kp_read_varint(r);
    if (r->err != KP_DECODE_OK)
        return KP_BYTES_NULL;
    if (len < 0) {
        if (len != -1 || !nullable)
            kp_reader_fail(r, KP_DECODE_RANGE);
        return KP_BYTES_NULL;
    }
    return kp_read_raw(r, (size_t)len);
}

/* Parse the record body @b (exactly the record's length bytes) into @rec,
 * checking every header on the way.  False when malformed. */
static bool record_body_parse(kp_reader_t *b, kp_record_t *rec)
{
    rec->attributes = kp_read_i8(b);
    rec->timestamp_delta = kp_read_varlong(b);
    rec->offset_delta = kp_read_varint(b);
    rec->key = read_varbytes(b, true);
    rec->value = read_varbytes(b, true);
    rec->header_count = kp_read_varint(b);
    if (b->err != KP_DECODE_OK || rec->header_count < 0 ||
        (size_t)rec->header_count > kp_reader_remaining(b) / 2) /* >= 2 bytes each */
        return false;
    rec->headers = b->p;
    for (int32_t i = 0; i < rec->header_count; i++) {
        read_varbytes(b, false); /* key: a non-null string */
        read_varbytes(b, true);  /* value */
    }
    rec->headers_size = (size_t)(b->p - rec->headers);
    return b->err == KP_DECODE_OK && b->p == b->end;
}

/* Offset delta rules: increasing and within lastOffsetDelta; exactly
 * consecutive from 0 under KP_BATCH_CHECK_PRODUCE. */
static bool offset_delta_ok(const kp_record_iter_t *it, int32_t delta)
{
    if (it->flags & KP_BATCH_CHECK_PRODUCE)
        return delta == it->index;
    return delta > it->prev_delta && delta <= it->hdr.last_offset_delta;
}

static bool iter_fail(kp_record_iter_t *it, kp_batch_err_t e)
{
    if (it->err == KP_BATCH_OK)
        it->err = e;
    return false;
}

bool kp_record_iter_next(kp_record_iter_t *it, kp_record_t *rec)
{
    if (it->err != KP_BATCH_OK)
        return false;
    if (it->remaining == 0) {
        if (kp_reader_remaining(&it->r) != 0) /* bytes after the last record */
            return iter_fail(it, KP_BATCH_BAD_RECORDS);
        return false;
    }
    int32_t len = kp_read_varint(&it->r);
    if (it->r.err != KP_DECODE_OK || len < 0 || (size_t)len > kp_reader_remaining(&it->r))
        return iter_fail(it, KP_BATCH_BAD_RECORDS);
    kp_reader_t b;
    kp_reader_init(&b, it->r.p, (size_t)len);
    it->r.p += len;
    if (!record_body_parse(&b, rec) || !offset_delta_ok(it, rec->offset_delta))
        return iter_fail(it, KP_BATCH_BAD_RECORDS);
    rec->offset = add_wrap(it->hdr.base_offset, rec->offset_delta);
    if (it->hdr.attributes & KP_BATCH_ATTR_LOG_APPEND_TIME)
        rec->timestamp = it->hdr.max_timestamp; /* the broker's time, for all records */
    else
        rec->timestamp = add_wrap(it->hdr.base_timestamp, rec->timestamp_delta);
    it->prev_delta = rec->offset_delta;
    it->remaining--;
    it->index++;
    return true;
}

static kp_batch_err_t from_zerr(kp_zerr_t z)
{
    switch (z) {
    case KP_Z_OK:
        return KP_BATCH_OK;
    case KP_Z_TOO_LARGE:
        return KP_BATCH_DECOMPRESS_LIMIT;
    case KP_Z_NOMEM:
        return KP_BATCH_NOMEM;
    case KP_Z_BAD_CODEC:
        return KP_BATCH_BAD_CODEC;
    default:
        return KP_BATCH_DECOMPRESS;
    }
}

kp_batch_err_t kp_record_iter_init(kp_record_iter_t *it, const uint8_t *batch, size_t len,
                                   unsigned flags, kp_zout_t *zout)
{
    static const uint8_t empty[1];
    size_t size = 0;

    kp_reader_init(&it->r, empty, 0);
    it->remaining = it->index = 0;
    it->prev_delta = -1;
    it->flags = flags;
    it->err = kp_batch_frame(batch, len, SIZE_MAX, &size);
    if (it->err == KP_BATCH_OK)
        it->err = kp_batch_hdr_parse(batch, size, &it->hdr);
    if (it->err == KP_BATCH_OK)
        it->err = hdr_check(&it->hdr, flags);
    if (it->err != KP_BATCH_OK)
        return it->err;

    const uint8_t *recs = batch + KP_BATCH_HEADER_SIZE;
    size_t recs_len = size - KP_BATCH_HEADER_SIZE;
    kp_compression_t codec = kp_batch_hdr_codec(&it->hdr);
    if (codec != KP_COMPRESSION_NONE) {
        if (!zout)
            return it->err = KP_BATCH_NO_BUFFER;
        it->err = from_zerr(kp_decompress(codec, recs, recs_len, zout));
        if (it->err != KP_BATCH_OK)
            return it->err;
        recs = zout->len ? zout->buf : empty;
        recs_len = zout->len;
    }
    /* Each record takes at least KP_RECORD_MIN_SIZE bytes. */
    if ((size_t)it->hdr.record_count > recs_len / KP_RECORD_MIN_SIZE)
        return it->err = KP_BATCH_BAD_RECORDS;
    kp_reader_init(&it->r, recs, recs_len);
    it->remaining = it->hdr.record_count;
    return KP_BATCH_OK;
}

void kp_header_iter_init(kp_header_iter_t *hi, const kp_record_t *rec)
{
    static const uint8_t empty[1];
    kp_reader_init(&hi->r, rec->headers ? rec->headers : empty, rec->headers_size);
    hi->remaining = rec->header_count;
}

bool kp_header_iter_next(kp_header_iter_t *hi, kp_record_header_t *hdr)
{
    if (hi->remaining <= 0)
        return false;
    kp_bytes_t key = read_varbytes(&hi->r, false);
    hdr->key = (kp_str_t){(const char *)key.ptr, key.len};
    hdr->value = read_varbytes(&hi->r, true);
    if (hi->r.err != KP_DECODE_OK) { /* cannot happen for a record the iterator returned */
        hi->remaining = 0;
        return false;
    }
    hi->remaining--;
    return true;
}

/* ------------------------------------------------------------------ */
/* Validation                                                          */
/* ------------------------------------------------------------------ */

/* Walk every record of a batch whose header is already checked. */
static kp_batch_err_t records_check(const uint8_t *batch, size_t size, unsigned flags,
                                    kp_zout_t *zout)
{
    kp_record_iter_t it;
    kp_record_t rec;

    if (kp_record_iter_init(&it, batch, size, flags, zout) != KP_BATCH_OK)
        return it.err;
    while (kp_record_iter_next(&it, &rec))
        ;
    return it.err;
}

kp_batch_err_t kp_batch_validate_one(const uint8_t *buf, size_t len, const kp_batch_limits_t *lim,
                                     kp_batch_info_t *info)
{
    static const kp_batch_limits_t no_limits = {SIZE_MAX, 0, NULL};
    kp_batch_info_t local;
    size_t size;

    if (!lim)
        lim = &no_limits;
    if (!info)
        info = &local;
    memset(&info->hdr, 0, sizeof info->hdr);
    kp_batch_err_t e = kp_batch_hdr_parse(buf, len, &info->hdr);
    info->size = 0;
    info->codec = kp_batch_hdr_codec(&info->hdr);
    info->transactional = (info->hdr.attributes & KP_BATCH_ATTR_TRANSACTIONAL) != 0;
    info->control = (info->hdr.attributes & KP_BATCH_ATTR_CONTROL) != 0;
    kp_batch_err_t fe = kp_batch_frame(buf, len, lim->max_size, &size);
    if (fe != KP_BATCH_OK)
        return fe; /* framing errors first: BAD_LENGTH / TOO_LARGE beat TRUNCATED */
    if (e != KP_BATCH_OK)
        return e;
    info->size = size;
    if (info->hdr.magic != KP_BATCH_MAGIC)
        return KP_BATCH_BAD_MAGIC; /* older formats put other things where the CRC is */
    uint32_t crc = kp_crc32c(0, buf + KP_BATCH_OFF_ATTRIBUTES, size - KP_BATCH_OFF_ATTRIBUTES);
    if (crc != info->hdr.crc)
        return KP_BATCH_BAD_CRC;
    if ((e = hdr_check(&info->hdr, lim->flags)) != KP_BATCH_OK)
        return e;
    if (info->codec != KP_COMPRESSION_NONE && !lim->zout)
        return KP_BATCH_OK; /* payload not inspected, as asked */
    return records_check(buf, size, lim->flags, lim->zout);
}

kp_batch_err_t kp_batch_validate(const uint8_t *buf, size_t len, const kp_batch_limits_t *lim,
                                 kp_batch_summary_t *sum)
{
    kp_batch_summary_t local;
    kp_batch_info_t info;
    size_t pos = 0;

    if (!sum)
        sum = &local;
    memset(sum, 0, sizeof *sum);
    while (pos < len) {
        kp_batch_err_t e = kp_batch_validate_one(buf + pos, len - pos, lim, &info);
        if (e != KP_BATCH_OK) {
            sum->err_pos = pos;
            return e;
        }
        if (sum->count == 0)
            sum->first = info;
        sum->count++;
        sum->records += info.hdr.record_count;
        sum->transactional |= info.transactional;
        sum->control |= info.control;
        pos += info.size;
    }
    return KP_BATCH_OK;
}

/* ------------------------------------------------------------------ */
/* Builder                                                             */
/* ------------------------------------------------------------------ */

static size_t uvarlong_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t varlong_size(int64_t v)
{
    return uvarlong_size(((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); /* zig-zag */
}

/* Encoded size of a varint-length byte string (null: length only). */
static size_t varbytes_size(kp_bytes_t b)
{
    return varlong_size(b.len) + (b.len > 0 ? (size_t)b.len : 0);
}

static void write_varbytes(kp_writer_t *w, kp_bytes_t b)
{
    kp_write_varint(w, b.len < 0 ? -1 : b.len);
    if (b.len > 0)
        kp_write_raw(w, b.ptr, (size_t)b.len);
}

static bool record_in_ok(const kp_record_in_t *rec)
{
    if (rec->key.len < -1 || rec->value.len < -1 || rec->header_count < 0)
        return false;
    for (int32_t i = 0; i < rec->header_count; i++)
        if (rec->headers[i].key.len < 0 || rec->headers[i].value.len < -1)
            return false;
    return true;
}

/* Append record @delta (offset delta) of a batch whose base timestamp is
 * @base_ts.  The length prefix is computed first, so nothing is moved. */
static void record_write(kp_writer_t *w, const kp_record_in_t *rec, int32_t delta, int64_t base_ts)
{
    int64_t ts_delta = (int64_t)((uint64_t)rec->timestamp - (uint64_t)base_ts);
    size_t body = 1 + varlong_size(ts_delta) + varlong_size(delta) + varbytes_size(rec->key) +
                  varbytes_size(rec->value) + varlong_size(rec->header_count);
    for (int32_t i = 0; i < rec->header_count; i++) {
        const kp_record_header_t *h = &rec->headers[i];
        body += varbytes_size((kp_bytes_t){(const uint8_t *)h->key.ptr, h->key.len});
        body += varbytes_size(h->value);
    }
    if (body > INT32_MAX) {
        kp_writer_fail(w, KP_ENCODE_RANGE);
        return;
    }
    kp_write_varint(w, (int32_t)body);
    kp_write_i8(w, 0); /* attributes: unused */
    kp_write_varlong(w, ts_delta);
    kp_write_varint(w, delta);
    write_varbytes(w, rec->key);
    write_varbytes(w, rec->value);
    kp_write_varint(w, rec->header_count);
    for (int32_t i = 0; i < rec->header_count; i++) {
        const kp_record_header_t *h = &rec->headers[i];
        write_varbytes(w, (kp_bytes_t){(const uint8_t *)h->key.ptr, h->key.len});
        write_varbytes(w, h->value);
    }
}

/* Append the records of a batch, compressed as @spec says. */
static kp_batch_err_t records_write(kp_writer_t *w, const kp_batch_spec_t *spec,
                                    const kp_record_in_t *recs, int32_t n)
{
    int64_t base_ts = recs[0].timestamp;
    if (spec->codec == KP_COMPRESSION_NONE) {
        for (int32_t i = 0; i < n; i++)
            record_write(w, &recs[i], i, base_ts);
        return w->err == KP_ENCODE_OK ? KP_BATCH_OK : KP_BATCH_NOMEM;
    }
    kp_writer_t plain;
    kp_writer_init(&plain, 0);
    for (int32_t i = 0; i < n; i++)
        record_write(&plain, &recs[i], i, base_ts);
    kp_batch_err_t e = KP_BATCH_NOMEM;
    if (plain.err == KP_ENCODE_OK)
        e = from_zerr(kp_compress(spec->codec, spec->compress_flags, plain.buf, plain.len, w));
    if (e == KP_BATCH_DECOMPRESS || e == KP_BATCH_DECOMPRESS_LIMIT)
        e = KP_BATCH_NOMEM; /* compression failed: no better name for it */
    kp_writer_deinit(&plain);
    return e;
}

/* Write the fixed header with batchLength and CRC left as zero. */
static void header_write(kp_writer_t *w, const kp_batch_spec_t *spec, const kp_record_in_t *recs,
                         int32_t n)
{
    int64_t max_ts = recs[0].timestamp;
    for (int32_t i = 1; i < n; i++)
        if (recs[i].timestamp > max_ts)
            max_ts = recs[i].timestamp;
    int16_t attrs =
        (int16_t)((spec->attributes & ~KP_BATCH_ATTR_COMPRESSION_MASK) | (int16_t)spec->codec);
    kp_write_i64(w, spec->base_offset);
    kp_write_i32(w, 0); /* batchLength, patched */
    kp_write_i32(w, spec->leader_epoch);
    kp_write_i8(w, KP_BATCH_MAGIC);
    kp_write_u32(w, 0); /* crc, patched */
    kp_write_i16(w, attrs);
    kp_write_i32(w, n - 1); /* lastOffsetDelta */
    kp_write_i64(w, recs[0].timestamp);
    kp_write_i64(w, max_ts);
    kp_write_i64(w, spec->producer_id);
    kp_write_i16(w, spec->producer_epoch);
    kp_write_i32(w, spec->base_sequence);
    kp_write_i32(w, n);
}

kp_batch_err_t kp_batch_build(kp_writer_t *w, const kp_batch_spec_t *spec,
                              const kp_record_in_t *recs, int32_t n)
{
    if (n < 1)
        return KP_BATCH_BAD_COUNT;
    if (spec->codec >= KP_COMPRESSION__NUM)
        return KP_BATCH_BAD_CODEC;
    for (int32_t i = 0; i < n; i++)
        if (!record_in_ok(&recs[i]))
            return KP_BATCH_BAD_RECORDS;
    if (w->err != KP_ENCODE_OK)
        return KP_BATCH_NOMEM;

    size_t start = w->len;
    header_write(w, spec, recs, n);
    kp_batch_err_t e = records_write(w, spec, recs, n);
    if (e == KP_BATCH_OK && w->err != KP_ENCODE_OK)
        e = KP_BATCH_NOMEM;
    if (e == KP_BATCH_OK && w->len - start - KP_BATCH_LENGTH_PREFIX > INT32_MAX)
        e = KP_BATCH_TOO_LARGE;
    if (e != KP_BATCH_OK) {
        w->len = start;
        return e;
    }
    uint8_t *batch = w->buf + start;
    size_t size = w->len - start;
    kp_put_be32(batch + KP_BATCH_OFF_LENGTH, (uint32_t)(size - KP_BATCH_LENGTH_PREFIX));
    kp_put_be32(batch + KP_BATCH_OFF_CRC,
                kp_crc32c(0, batch + KP_BATCH_OFF_ATTRIBUTES, size - KP_BATCH_OFF_ATTRIBUTES));
    return KP_BATCH_OK;
}

kp_batch_err_t kp_batch_recompress(const uint8_t *batch, size_t len, kp_compression_t codec,
                                   unsigned compress_flags, unsigned flags, kp_zout_t *zout,
                                   kp_writer_t *w)
{
    if (codec >= KP_COMPRESSION__NUM)
        return KP_BATCH_BAD_CODEC;
    if (w->err != KP_ENCODE_OK)
        return KP_BATCH_NOMEM;
    /* Walk every record: framing, magic, codec bits, count; the records
     * end up plain in @zout (compressed input) or stay in @batch. */
    kp_record_iter_t it;
    kp_record_t rec;
    if (kp_record_iter_init(&it, batch, len, flags, zout) != KP_BATCH_OK)
        return it.err;
    while (kp_record_iter_next(&it, &rec))
        ;
    if (it.err != KP_BATCH_OK)
        return it.err;
    size_t size = (size_t)it.hdr.length + KP_BATCH_LENGTH_PREFIX;
    kp_compression_t from = kp_batch_hdr_codec(&it.hdr);
    size_t start = w->len;
    if (from == codec) {
        kp_write_raw(w, batch, size);
        if (w->err == KP_ENCODE_OK)
            return KP_BATCH_OK;
        w->len = start;
        return KP_BATCH_NOMEM;
    }
    const uint8_t *plain = batch + KP_BATCH_HEADER_SIZE;
    size_t plain_len = size - KP_BATCH_HEADER_SIZE;
    if (from != KP_COMPRESSION_NONE) {
        plain = zout->buf;
        plain_len = zout->len;
    }
    kp_write_raw(w, batch, KP_BATCH_HEADER_SIZE);
    kp_batch_err_t e = KP_BATCH_OK;
    if (codec == KP_COMPRESSION_NONE) {
        if (plain_len)
            kp_write_raw(w, plain, plain_len);
    } else {
        e = from_zerr(kp_compress(codec, compress_flags, plain, plain_len, w));
        if (e == KP_BATCH_DECOMPRESS || e == KP_BATCH_DECOMPRESS_LIMIT)
            e = KP_BATCH_NOMEM; /* compression failed: no better name for it */
    }
    if (e == KP_BATCH_OK && w->err != KP_ENCODE_OK)
        e = KP_BATCH_NOMEM;
    if (e == KP_BATCH_OK && w->len - start - KP_BATCH_LENGTH_PREFIX > INT32_MAX)
        e = KP_BATCH_TOO_LARGE;
    if (e != KP_BATCH_OK) {
        w->len = start;
        return e;
    }
    uint8_t *out = w->buf + start;
    size_t out_size = w->len - start;
    uint16_t attrs = (uint16_t)(((uint16_t)it.hdr.attributes & ~KP_BATCH_ATTR_COMPRESSION_MASK) |
                                (uint16_t)codec);
    kp_put_be16(out + KP_BATCH_OFF_ATTRIBUTES, attrs);
    kp_put_be32(out + KP_BATCH_OFF_LENGTH, (uint32_t)(out_size - KP_BATCH_LENGTH_PREFIX));
    kp_put_be32(out + KP_BATCH_OFF_CRC,
                kp_crc32c(0, out + KP_BATCH_OFF_ATTRIBUTES, out_size - KP_BATCH_OFF_ATTRIBUTES));
    return KP_BATCH_OK;
}
