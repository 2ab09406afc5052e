/*
 * kp_compress.c: gzip (zlib), snappy (raw and xerial framing), lz4 (frame
 * format) and zstd, decompressing into a bounded kp_zout_t sink.
 *
 * Streaming decoders (gzip, lz4, zstd) never learn the output size up front,
 * so each is driven in a loop: grow the sink, decode into the free space,
 * repeat.  Once the sink is at its maximum they are given a one-byte scratch
 * area instead; any byte landing there proves the output is too large, while
 * a stream that is exactly max bytes long can still finish (its trailer
 * produces no output).
 */
#include "kp_compress.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

const char *kp_compression_str(kp_compression_t c)
{
    static const char *const names[KP_COMPRESSION__NUM] = {
        [KP_COMPRESSION_NONE] = "none",     [KP_COMPRESSION_GZIP] = "gzip",
        [KP_COMPRESSION_SNAPPY] = "snappy", [KP_COMPRESSION_LZ4] = "lz4",
        [KP_COMPRESSION_ZSTD] = "zstd",
    };
    if ((unsigned)c >= KP_COMPRESSION__NUM)
        return "unknown";
    return names[c];
}

const char *kp_zerr_str(kp_zerr_t e)
{
    static const char *const names[KP_Z__NUM] = {
        [KP_Z_OK] = "ok",
        [KP_Z_CORRUPT] = "corrupt compressed data",
        [KP_Z_TOO_LARGE] = "decompressed size over the limit",
        [KP_Z_NOMEM] = "out of memory",
        [KP_Z_BAD_CODEC] = "unknown compression codec",
    };
    if ((unsigned)e >= KP_Z__NUM)
        return "unknown compression error";
    return names[e];
}

/* ------------------------------------------------------------------ */
/* Sink                                                                */
/* ------------------------------------------------------------------ */

static void *libc_realloc(void *opaque, void *ptr, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, size);
}

void kp_zout_init_fixed(kp_zout_t *out, uint8_t *buf, size_t size)
{
    out->buf = buf;
    out->len = 0;
    out->cap = size;
    out->max = size;
    out->grow = NULL;
    out->opaque = NULL;
}

void kp_zout_init_alloc(kp_zout_t *out, size_t max, kp_realloc_fn fn, void *opaque)
{
    out->buf = NULL;
    out->len = 0;
    out->cap = 0;
    out->max = max;
    out->grow = fn ? fn : libc_realloc;
    out->opaque = opaque;
}

void kp_zout_deinit(kp_zout_t *out)
{
    if (out->grow && out->buf)
        out->grow(out->opaque, out->buf, 0);
    out->buf = NULL;
    out->len = out->cap = 0;
}

/* Make cap >= len + @extra.  TOO_LARGE when that would pass max. */
static kp_zerr_t zout_ensure(kp_zout_t *out, size_t extra)
{
    if (extra > out->max - out->len)
        return KP_Z_TOO_LARGE;
    size_t need = out->len + extra;
    if (need <= out->cap)
        return KP_Z_OK;
    if (!out->grow)
        return KP_Z_TOO_LARGE;
    size_t cap = out->cap < 4096 ? 4096 : out->cap;
    while (cap < need) /* double; need <= max, so this ends */
        cap = cap > out->max / 2 ? out->max : cap * 2;
    if (cap > out->max)
        cap = out->max;
    uint8_t *nb = out->grow(out->opaque, out->buf, cap);
    if (!nb)
        return KP_Z_NOMEM;
    out->buf = nb;
    out->cap = cap;
    return KP_Z_OK;
}

/* Where a streaming decoder writes next: the sink's free space (grown by
 * doubling) or, at max, a one-byte scratch that must stay empty. */
typedef struct zspace {
    uint8_t *dst;
    size_t size;
    bool scratch;
    uint8_t byte;
} zspace_t;

static kp_zerr_t zout_space(kp_zout_t *out, zspace_t *sp)
{
    if (out->len == out->cap) {
        size_t want = out->cap ? out->cap : 4096; /* double the buffer */
        if (want > out->max - out->len)
            want = out->max - out->len;
        kp_zerr_t e = want ? zout_ensure(out, want) : KP_Z_OK;
        if (e != KP_Z_OK)
            return e;
    }
    sp->scratch = out->len == out->cap;
    sp->dst = sp->scratch ? &sp->byte : out->buf + out->len;
    sp->size = sp->scratch ? 1 : out->cap - out->len;
    return KP_Z_OK;
}

/* Account for @n bytes a decoder wrote into @sp. */
static kp_zerr_t zout_commit(kp_zout_t *out, const zspace_t *sp, size_t n)
{
    if (sp->scratch)
        return n ? KP_Z_TOO_LARGE : KP_Z_OK;
    out->len += n;
    return KP_Z_OK;
}

/* ------------------------------------------------------------------ */
/* Decompression                                                       */
/* ------------------------------------------------------------------ */

static kp_zerr_t gunzip(const uint8_t *in, size_t len, kp_zout_t *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (len > UINT_MAX)
        return KP_Z_TOO_LARGE;
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) /* 16: gzip wrapper only */
        return KP_Z_NOMEM;
    zs.next_in = (Bytef *)(uintptr_t)in; /* zlib does not write through next_in */
    zs.avail_in = (uInt)len;
    kp_zerr_t e = KP_Z_OK;
    for (;;) {
        zspace_t sp;
        if ((e = zout_space(out, &sp)) != KP_Z_OK)
            break;
        zs.next_out = sp.dst;
        zs.avail_out = sp.size > UINT_MAX ? UINT_MAX : (uInt)sp.size;
        uInt before = zs.avail_out;
        int rc = inflate(&zs, Z_NO_FLUSH);
        if ((e = zout_commit(out, &sp, before - zs.avail_out)) != KP_Z_OK)
            break;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            /* Another gzip member follows (as gzip(1) and Java accept). */
            if (inflateReset(&zs) != Z_OK) {
                e = KP_Z_CORRUPT;
                break;
            }
            continue;
        }
        if (rc != Z_OK) { /* Z_BUF_ERROR here means the input ended early */
            e = rc == Z_MEM_ERROR ? KP_Z_NOMEM : KP_Z_CORRUPT;
            break;
        }
    }
    inflateEnd(&zs);
    return e;
}

/* One raw snappy block appended to the sink. */
static kp_zerr_t unsnappy_block(const uint8_t *in, size_t len, kp_zout_t *out)
{
    size_t n;
    if (snappy_uncompressed_length((const char *)in, len, &n) != SNAPPY_OK)
        return KP_Z_CORRUPT;
    kp_zerr_t e = zout_ensure(out, n);
    if (e != KP_Z_OK)
        return e;
    char none; /* an empty block still gets validated; buf may be NULL then */
    char *dst = n ? (char *)out->buf + out->len : &none;
    size_t got = n;
    if (snappy_uncompress((const char *)in, len, dst, &got) != SNAPPY_OK || got != n)
        return KP_Z_CORRUPT;
    out->len += got;
    return KP_Z_OK;
}

/* xerial snappy-java framing: magic, int32 version, int32 compatible
 * version, then chunks of (int32 big-endian length, raw snappy block). */
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HEADER_SIZE 16
#define XERIAL_CHUNK_SIZE (32 * 1024) /* snappy-java's default block size */

static kp_zerr_t unsnappy(const uint8_t *in, size_t len, kp_zout_t *out)
{
    if (len < XERIAL_HEADER_SIZE || memcmp(in, xerial_magic, sizeof xerial_magic) != 0)
        return unsnappy_block(in, len, out);
    size_t pos = XERIAL_HEADER_SIZE;
    while (pos < len) {
        if (len - pos < 4)
            return KP_Z_CORRUPT;
        size_t clen = kp_be32(in + pos);
        pos += 4;
        if (clen > len - pos)
            return KP_Z_CORRUPT;
        kp_zerr_t e = unsnappy_block(in + pos, clen, out);
        if (e != KP_Z_OK)
            return e;
        pos += clen;
    }
    return KP_Z_OK;
}

static kp_zerr_t unlz4(const uint8_t *in, size_t len, kp_zout_t *out)
{
    LZ4F_dctx *dctx;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
        return KP_Z_NOMEM;
    size_t pos = 0, hint = 1;
    kp_zerr_t e = KP_Z_OK;
    while (hint != 0 || pos < len) { /* hint 0: a frame just ended */
        zspace_t sp;
        if ((e = zout_space(out, &sp)) != KP_Z_OK)
            break;
        size_t dst_size = sp.size, src_size = len - pos;
        hint = LZ4F_decompress(dctx, sp.dst, &dst_size, in + pos, &src_size, NULL);
        if (LZ4F_isError(hint)) {
            e = KP_Z_CORRUPT;
            break;
        }
        if ((e = zout_commit(out, &sp, dst_size)) != KP_Z_OK)
            break;
        pos += src_size;
        if (src_size == 0 && dst_size == 0) { /* no progress: input ended mid-frame */
            e = KP_Z_CORRUPT;
            break;
        }
    }
    LZ4F_freeDecompressionContext(dctx);
    return e;
}

/* The zstd window to allow for a sink of @max bytes (see kp_compress.h). */
static int zstd_window_log(size_t max)
{
    int wlog = KP_ZSTD_WINDOW_LOG_MIN;
    while (wlog < KP_ZSTD_WINDOW_LOG_MAX && ((size_t)1 << wlog) < max)
        wlog++;
    return wlog;
}

static kp_zerr_t unzstd(const uint8_t *in, size_t len, kp_zout_t *out)
{
    unsigned long long fcs = ZSTD_getFrameContentSize(in, len);
    if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != ZSTD_CONTENTSIZE_ERROR &&
        fcs > out->max - out->len)
        return KP_Z_TOO_LARGE; /* fail before the decoder sizes its buffers */
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx)
        return KP_Z_NOMEM;
    ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, zstd_window_log(out->max));
    ZSTD_inBuffer ib = {in, len, 0};
    size_t ret = 1;
    kp_zerr_t e = KP_Z_OK;
    while (ret != 0 || ib.pos < ib.size) { /* ret 0: a frame just ended */
        zspace_t sp;
        if ((e = zout_space(out, &sp)) != KP_Z_OK)
            break;
        ZSTD_outBuffer ob = {sp.dst, sp.size, 0};
        size_t in_before = ib.pos;
        ret = ZSTD_decompressStream(dctx, &ob, &ib);
        if (ZSTD_isError(ret)) {
            ZSTD_ErrorCode code = ZSTD_getErrorCode(ret);
            e = code == ZSTD_error_memory_allocation               ? KP_Z_NOMEM
                : code == ZSTD_error_frameParameter_windowTooLarge ? KP_Z_TOO_LARGE
                                                                   : KP_Z_CORRUPT;
            break;
        }
        if ((e = zout_commit(out, &sp, ob.pos)) != KP_Z_OK)
            break;
        if (ob.pos == 0 && ib.pos == in_before) { /* no progress: input ended mid-frame */
            e = KP_Z_CORRUPT;
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return e;
}

kp_zerr_t kp_decompress(kp_compression_t codec, const uint8_t *in, size_t len, kp_zout_t *out)
{
    out->len = 0;
    switch (codec) {
    case KP_COMPRESSION_GZIP:
        return gunzip(in, len, out);
    case KP_COMPRESSION_SNAPPY:
        return unsnappy(in, len, out);
    case KP_COMPRESSION_LZ4:
        return unlz4(in, len, out);
    case KP_COMPRESSION_ZSTD:
        return unzstd(in, len, out);
    default:
        return KP_Z_BAD_CODEC;
    }
}

/* ------------------------------------------------------------------ */
/* Compression                                                         */
/* ------------------------------------------------------------------ */

/* Reserve @bound bytes in @w; *start receives where they begin. */
static uint8_t *writer_reserve(kp_writer_t *w, size_t bound, size_t *start)
{
    *start = w->len;
    return kp_writer_space(w, bound);
}

static kp_zerr_t gzip_into(const uint8_t *in, size_t len, kp_writer_t *w)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (len > UINT_MAX)
        return KP_Z_TOO_LARGE;
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return KP_Z_NOMEM;
    size_t start, bound = deflateBound(&zs, (uLong)len);
    uint8_t *dst = bound <= UINT_MAX ? writer_reserve(w, bound, &start) : NULL;
    kp_zerr_t e = KP_Z_NOMEM;
    if (dst) {
        zs.next_in = (Bytef *)(uintptr_t)in;
        zs.avail_in = (uInt)len;
        zs.next_out = dst;
        zs.avail_out = (uInt)bound;
        if (deflate(&zs, Z_FINISH) == Z_STREAM_END) {
            w->len = start + (size_t)zs.total_out;
            e = KP_Z_OK;
        } else {
            kp_writer_fail(w, KP_ENCODE_NOMEM);
        }
    }
    deflateEnd(&zs);
    return e;
}

static kp_zerr_t snappy_block_into(const uint8_t *in, size_t len, kp_writer_t *w)
{
    size_t start, n = snappy_max_compressed_length(len);
    uint8_t *dst = writer_reserve(w, n, &start);
    if (!dst)
        return KP_Z_NOMEM;
    if (snappy_compress((const char *)in, len, (char *)dst, &n) != SNAPPY_OK) {
        kp_writer_fail(w, KP_ENCODE_NOMEM);
        return KP_Z_NOMEM;
    }
    w->len = start + n;
    return KP_Z_OK;
}

static kp_zerr_t snappy_into(unsigned flags, const uint8_t *in, size_t len, kp_writer_t *w)
{
    if (flags & KP_COMPRESS_SNAPPY_RAW)
        return snappy_block_into(in, len, w);
    kp_write_raw(w, xerial_magic, sizeof xerial_magic);
    kp_write_i32(w, 1); /* version */
    kp_write_i32(w, 1); /* minimum compatible version */
    for (size_t pos = 0; pos < len; pos += XERIAL_CHUNK_SIZE) {
        size_t n = len - pos < XERIAL_CHUNK_SIZE ? len - pos : XERIAL_CHUNK_SIZE;
        size_t at = kp_writer_reserve_i32(w);
        kp_zerr_t e = snappy_block_into(in + pos, n, w);
        if (e != KP_Z_OK)
            return e;
        kp_writer_patch_i32(w, at, (int32_t)(w->len - at - 4));
    }
    return w->err ? KP_Z_NOMEM : KP_Z_OK;
}

static kp_zerr_t lz4_into(const uint8_t *in, size_t len, kp_writer_t *w)
{
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.blockSizeID = LZ4F_max64KB; /* what Kafka's Java client uses */
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    size_t start, bound = LZ4F_compressFrameBound(len, &prefs);
    uint8_t *dst = writer_reserve(w, bound, &start);
    if (!dst)
        return KP_Z_NOMEM;
    size_t n = LZ4F_compressFrame(dst, bound, in, len, &prefs);
    if (LZ4F_isError(n)) {
        kp_writer_fail(w, KP_ENCODE_NOMEM);
        return KP_Z_NOMEM;
    }
    w->len = start + n;
    return KP_Z_OK;
}

static kp_zerr_t zstd_into(const uint8_t *in, size_t len, kp_writer_t *w)
{
    size_t start, bound = ZSTD_compressBound(len);
    uint8_t *dst = writer_reserve(w, bound, &start);
    if (!dst)
        return KP_Z_NOMEM;
    size_t n = ZSTD_compress(dst, bound, in, len, ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(n)) {
        kp_writer_fail(w, KP_ENCODE_NOMEM);
        return KP_Z_NOMEM;
    }
    w->len = start + n;
    return KP_Z_OK;
}

kp_zerr_t kp_compress(kp_compression_t codec, unsigned flags, const uint8_t *in, size_t len,
                      kp_writer_t *w)
{
    switch (codec) {
    case KP_COMPRESSION_GZIP:
        return gzip_into(in, len, w);
    case KP_COMPRESSION_SNAPPY:
        return snappy_into(flags, in, len, w);
    case KP_COMPRESSION_LZ4:
        return lz4_into(in, len, w);
    case KP_COMPRESSION_ZSTD:
        return zstd_into(in, len, w);
    default:
        return KP_Z_BAD_CODEC;
    }
}
