/*
 * st_format.h: bytes Nuthatch keeps -- the flush object (header, chunks,
 * index footer, trailer), the flush manifest committed to the metadata
 * store, and the metadata keys.  docs/object-format.md documents the object
 * byte for byte.  All integers are big-endian.
 *
 * Ownership: encoders write into a caller's kp_writer_t; decoders return
 * views into the caller's buffer (or arrays the caller frees with free()).
 * Threading: pure functions.
 */
#ifndef ST_FORMAT_H
#define ST_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_codec.h"
#include "st_err.h"

/* ---------------------------------------------------------------- object */

#define ST_OBJ_MAGIC "NUTHOBJ1"     /* 8 bytes at offset 0 */
#define ST_OBJ_END_MAGIC "NUTHEND1" /* last 8 bytes */
#define ST_OBJ_VERSION 1
#define ST_OBJ_HEADER_SIZE 32
#define ST_OBJ_ENTRY_SIZE 64
#define ST_OBJ_TRAILER_SIZE 24
/* Objects are built in buffers aligned to this many bytes, so that a store
 * can hand them to the device without copying (the directory store's
 * O_DIRECT). */
#define ST_OBJ_ALIGN 4096

/* One chunk: the batches of one partition, as stored in an object. */
typedef struct st_chunk_desc {
    kp_uuid_t topic_id;
    int32_t partition;
    int32_t batches;       /* RecordBatches in the chunk, >= 1 */
    int64_t base_offset;   /* first offset of the first batch */
    int64_t last_offset;   /* last offset of the last batch */
    int64_t max_timestamp; /* largest batch max timestamp in the chunk */
    uint64_t pos;          /* byte position of the chunk in the object */
    uint32_t len;          /* chunk bytes */
    uint32_t crc;          /* CRC32C of the chunk bytes */
} st_chunk_desc_t;

typedef struct st_obj_header {
    int32_t node_id;
    int64_t incarnation;
    int64_t seq;
} st_obj_header_t;

/* Write the 32-byte header. */
void st_obj_write_header(kp_writer_t *w, const st_obj_header_t *h);
/* Write the index footer for @n chunks and the trailer (call after the
 * chunks; the footer's position is w->len at entry). */
void st_obj_write_footer(kp_writer_t *w, const st_chunk_desc_t *chunks, size_t n);
/* Parse a whole object: header, trailer, footer (checksums verified).
 * @chunks returns owned (free()) on ST_OK. */
st_err_t st_obj_parse(const uint8_t *obj, size_t len, st_obj_header_t *h, st_chunk_desc_t **chunks,
                      size_t *n);

/* -------------------------------------------------------------- manifest */

#define ST_MANIFEST_VERSION 2 /* written; version 1 (no producer entries) is still read */
#define ST_MANIFEST_ENTRY_SIZE 64
#define ST_MANIFEST_PRODUCER_SIZE 38

/* One idempotent producer's batch in a manifest chunk: what the partition's
 * producer state needs to recognise a retry after a restart. */
typedef struct st_prod_desc {
    uint32_t chunk;      /* index of the chunk (in the manifest) holding the batch */
    int64_t producer_id; /* >= 0 */
    int16_t epoch;       /* >= 0 */
    int32_t first_seq;   /* base sequence, >= 0 */
    int32_t last_seq;    /* last sequence (wraps at INT32_MAX), >= 0 */
    int64_t base_offset; /* the batch's offsets, inside the chunk's range */
    int64_t last_offset;
} st_prod_desc_t;

typedef struct st_manifest {
    int8_t version; /* encode: ST_MANIFEST_VERSION, or 1 with nprods == 0 */
    int32_t node_id;
    int64_t incarnation;
    int64_t seq;
    kp_str_t object_key; /* view */
    uint64_t object_size;
    const st_chunk_desc_t *chunks; /* decode: owned array (free()) */
    size_t nchunks;
    const st_prod_desc_t *prods; /* version 2, in chunk order; decode: owned (free()) or NULL */
    size_t nprods;
} st_manifest_t;

void st_manifest_encode(kp_writer_t *w, const st_manifest_t *m);
/* Decode version 1 or 2; on ST_OK m->chunks and m->prods are owned by the
 * caller (free()). */
st_err_t st_manifest_decode(const uint8_t *buf, size_t len, st_manifest_t *m);

/* ------------------------------------------------------------------ keys */

/* The root of every metadata key. */
#define ST_KEY_ROOT "/nuthatch"

/* Append @s percent-encoded (bytes outside [A-Za-z0-9._-] as %XX) to the
 * NUL-terminated string in @out of capacity @cap; false when it does not
 * fit. */
bool st_key_escape(char *out, size_t cap, const char *s, size_t len);
/* Decode a percent-encoded key component in place; false when malformed. */
bool st_key_unescape(char *s);

/* 32 lowercase hex digits. */
void st_uuid_hex(kp_uuid_t id, char out[33]);
bool st_uuid_parse(const char *hex, kp_uuid_t *id);
/* A random (v4) UUID; never all zeros. */
kp_uuid_t st_uuid_random(void);

#endif
