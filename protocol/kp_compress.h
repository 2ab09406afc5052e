/*
 * kp_compress.h: the four Kafka compression codecs (gzip, snappy, lz4, zstd)
 * with bounded, caller-controlled output memory.
 *
 * Decompressed bytes go to a kp_zout_t sink: either a fixed buffer the caller
 * owns, or memory from a caller-given realloc-style allocator.  Either way the
 * sink has a hard maximum (max): input that would decompress to more fails
 * with KP_Z_TOO_LARGE before more than max bytes are held, so a
 * decompression bomb costs at most max bytes of output memory.
 *
 * Ownership: inputs are borrowed.  A sink made by kp_zout_init_alloc() owns
 * its buffer and frees it in kp_zout_deinit(); a fixed sink never frees.
 * Working memory of the codec libraries themselves (zlib ~44 KiB, lz4 up to
 * 4 MiB per frame block size, zstd up to KP_ZSTD_WINDOW_LOG_MAX) comes from
 * malloc, is bounded, and is released before each call returns.
 * Threading: no global state; a sink is used by one thread at a time.
 */
#ifndef KP_COMPRESS_H
#define KP_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "kp_codec.h"

/* RecordBatch attribute bits 0-2 (wire values: never renumber). */
typedef enum kp_compression {
    KP_COMPRESSION_NONE = 0,
    KP_COMPRESSION_GZIP = 1,
    KP_COMPRESSION_SNAPPY = 2,
    KP_COMPRESSION_LZ4 = 3,
    KP_COMPRESSION_ZSTD = 4,
    KP_COMPRESSION__NUM
} kp_compression_t;

const char *kp_compression_str(kp_compression_t c);

typedef enum kp_zerr {
    KP_Z_OK = 0,
    KP_Z_CORRUPT,   /* input is not a complete, valid stream of the codec */
    KP_Z_TOO_LARGE, /* output would exceed the sink's max (or zstd window limit) */
    KP_Z_NOMEM,     /* the allocator or a codec library failed to allocate */
    KP_Z_BAD_CODEC, /* codec is NONE or unknown */
    KP_Z__NUM
} kp_zerr_t;

const char *kp_zerr_str(kp_zerr_t e);

/* Realloc-style allocator: (ptr NULL) allocates, (size 0) frees and returns
 * NULL, otherwise resizes.  NULL return means failure (ptr stays valid). */
typedef void *(*kp_realloc_fn)(void *opaque, void *ptr, size_t size);

/* Largest zstd window accepted when decompressing (2^27 = 128 MiB is zstd's
 * own default limit).  The window actually allowed is the smallest power of
 * two >= the sink's max, but never below 2^23: every non-"ultra" compression
 * level (1..19) uses a window of at most 2^23, even for tiny inputs written
 * without a content size. */
#define KP_ZSTD_WINDOW_LOG_MAX 27
#define KP_ZSTD_WINDOW_LOG_MIN 23

/* Output sink for decompression. */
typedef struct kp_zout {
    uint8_t *buf;       /* output memory: caller's (fixed) or allocated (grow != NULL) */
    size_t len;         /* bytes of output held; len <= cap */
    size_t cap;         /* bytes usable at buf; cap <= max */
    size_t max;         /* hard limit on len: more output is KP_Z_TOO_LARGE */
    kp_realloc_fn grow; /* NULL for a fixed buffer, else grows buf up to max */
    void *opaque;       /* passed to grow */
} kp_zout_t;

/* A sink writing into the caller's @buf of @size bytes (borrows buf; the
 * limit is @size). */
void kp_zout_init_fixed(kp_zout_t *out, uint8_t *buf, size_t size);

/* A sink that allocates with @fn (NULL: libc realloc/free), at most @max
 * bytes.  No memory is allocated until output is produced. */
void kp_zout_init_alloc(kp_zout_t *out, size_t max, kp_realloc_fn fn, void *opaque);

/* Free an allocated sink's buffer (nothing for a fixed sink). */
void kp_zout_deinit(kp_zout_t *out);

/**
 * Decompress @in[0..@len) with @codec into @out, replacing its contents
 * (out->len is reset to 0 first).  Snappy input is accepted both raw and in
 * xerial framing ("\x82SNAPPY\0" header, then big-endian 4-byte chunk
 * lengths) as Kafka's Java client writes it.  Concatenated gzip members,
 * lz4 frames and zstd frames are decoded one after the other.
 * @returns KP_Z_OK, KP_Z_CORRUPT, KP_Z_TOO_LARGE, KP_Z_NOMEM or
 *          KP_Z_BAD_CODEC.  On error out->len is unspecified (<= out->max).
 * @thread any (one sink per thread)
 */
kp_zerr_t kp_decompress(kp_compression_t codec, const uint8_t *in, size_t len, kp_zout_t *out);

/* Flags for kp_compress(). */
#define KP_COMPRESS_SNAPPY_RAW 0x1 /* raw snappy instead of xerial framing */

/**
 * Append @in[0..@len) compressed with @codec to @w (gzip with a gzip header,
 * lz4 as an LZ4 frame with independent 64 KiB blocks, zstd as one frame with
 * its content size, snappy in xerial framing with 32 KiB chunks unless
 * @flags has KP_COMPRESS_SNAPPY_RAW).  Codec failures are reported as
 * KP_Z_NOMEM; writer failures leave w->err set and return KP_Z_NOMEM.
 * @thread any
 */
kp_zerr_t kp_compress(kp_compression_t codec, unsigned flags, const uint8_t *in, size_t len,
                      kp_writer_t *w);

#endif
