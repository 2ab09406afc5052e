/*
 * st_format.c: the flush object, the manifest and metadata key helpers.
 */
#include "st_format.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "kp_crc32c.h"

/* ---------------------------------------------------------------- object */

void st_obj_write_header(kp_writer_t *w, const st_obj_header_t *h)
{
    kp_write_raw(w, ST_OBJ_MAGIC, 8);
    kp_write_u32(w, ST_OBJ_VERSION);
    kp_write_i32(w, h->node_id);
    kp_write_i64(w, h->incarnation);
    kp_write_i64(w, h->seq);
}

static void write_chunk_desc(kp_writer_t *w, const st_chunk_desc_t *c)
{
    kp_write_uuid(w, c->topic_id);
    kp_write_i32(w, c->partition);
    kp_write_i32(w, c->batches);
    kp_write_i64(w, c->base_offset);
    kp_write_i64(w, c->last_offset);
    kp_write_i64(w, c->max_timestamp);
    kp_write_i64(w, (int64_t)c->pos);
    kp_write_u32(w, c->len);
    kp_write_u32(w, c->crc);
}

static void read_chunk_desc(kp_reader_t *r, st_chunk_desc_t *c)
{
    c->topic_id = kp_read_uuid(r);
    c->partition = kp_read_i32(r);
    c->batches = kp_read_i32(r);
    c->base_offset = kp_read_i64(r);
    c->last_offset = kp_read_i64(r);
    c->max_timestamp = kp_read_i64(r);
    c->pos = (uint64_t)kp_read_i64(r);
    c->len = kp_read_u32(r);
    c->crc = kp_read_u32(r);
}

void st_obj_write_footer(kp_writer_t *w, const st_chunk_desc_t *chunks, size_t n)
{
    size_t footer_pos = w->len;
    kp_write_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        write_chunk_desc(w, &chunks[i]);
    if (w->err)
        return;
    size_t footer_len = w->len - footer_pos;
    uint32_t crc = kp_crc32c(0, w->buf + footer_pos, footer_len);
    kp_write_i64(w, (int64_t)footer_pos);
    kp_write_u32(w, (uint32_t)footer_len);
    kp_write_u32(w, crc);
    kp_write_raw(w, ST_OBJ_END_MAGIC, 8);
}

static bool chunk_sane(const st_chunk_desc_t *c, uint64_t data_end)
{
    return c->batches >= 1 && c->base_offset >= 0 && c->last_offset >= c->base_offset &&
           c->pos >= ST_OBJ_HEADER_SIZE && c->len > 0 && c->pos <= data_end &&
           c->len <= data_end - c->pos;
}

st_err_t st_obj_parse(const uint8_t *obj, size_t len, st_obj_header_t *h, st_chunk_desc_t **chunks,
                      size_t *n)
{
    if (len < ST_OBJ_HEADER_SIZE + 4 + ST_OBJ_TRAILER_SIZE || memcmp(obj, ST_OBJ_MAGIC, 8) != 0 ||
        memcmp(obj + len - 8, ST_OBJ_END_MAGIC, 8) != 0)
        return ST_ERR_CORRUPT;
    kp_reader_t r;
    kp_reader_init(&r, obj + 8, ST_OBJ_HEADER_SIZE - 8);
    if (kp_read_u32(&r) != ST_OBJ_VERSION)
        return ST_ERR_CORRUPT;
    h->node_id = kp_read_i32(&r);
    h->incarnation = kp_read_i64(&r);
    h->seq = kp_read_i64(&r);
    kp_reader_init(&r, obj + len - ST_OBJ_TRAILER_SIZE, ST_OBJ_TRAILER_SIZE);
    uint64_t fpos = (uint64_t)kp_read_i64(&r);
    uint32_t flen = kp_read_u32(&r);
    uint32_t fcrc = kp_read_u32(&r);
    uint64_t data_end = len - ST_OBJ_TRAILER_SIZE;
    if (fpos < ST_OBJ_HEADER_SIZE || fpos > data_end || flen != data_end - fpos || flen < 4 ||
        kp_crc32c(0, obj + fpos, flen) != fcrc)
        return ST_ERR_CORRUPT;
    kp_reader_init(&r, obj + fpos, flen);
    uint32_t count = kp_read_u32(&r);
    if ((uint64_t)count * ST_OBJ_ENTRY_SIZE != flen - 4u)
        return ST_ERR_CORRUPT;
    st_chunk_desc_t *c = calloc(count ? count : 1, sizeof(*c));
    if (!c)
        return ST_ERR_NOMEM;
    for (uint32_t i = 0; i < count; i++) {
        read_chunk_desc(&r, &c[i]);
        if (!chunk_sane(&c[i], fpos) || kp_crc32c(0, obj + c[i].pos, c[i].len) != c[i].crc) {
            free(c);
            return ST_ERR_CORRUPT;
        }
    }
    *chunks = c;
    *n = count;
    return ST_OK;
}

/* -------------------------------------------------------------- manifest */

void st_manifest_encode(kp_writer_t *w, const st_manifest_t *m)
{
    size_t start = w->len;
    kp_write_i8(w, m->version);
    kp_write_i32(w, m->node_id);
    kp_write_i64(w, m->incarnation);
    kp_write_i64(w, m->seq);
    kp_write_string(w, m->object_key, false, false);
    kp_write_i64(w, (int64_t)m->object_size);
    kp_write_u32(w, (uint32_t)m->nchunks);
    for (size_t i = 0; i < m->nchunks; i++)
        write_chunk_desc(w, &m->chunks[i]);
    if (m->version >= 2) {
        kp_write_u32(w, (uint32_t)m->nprods);
        for (size_t i = 0; i < m->nprods; i++) {
            const st_prod_desc_t *p = &m->prods[i];
            kp_write_u32(w, p->chunk);
            kp_write_i64(w, p->producer_id);
            kp_write_i16(w, p->epoch);
            kp_write_i32(w, p->first_seq);
            kp_write_i32(w, p->last_seq);
            kp_write_i64(w, p->base_offset);
            kp_write_i64(w, p->last_offset);
        }
    }
    if (w->err)
        return;
    kp_write_u32(w, kp_crc32c(0, w->buf + start, w->len - start));
}

static bool prod_sane(const st_prod_desc_t *p, const st_chunk_desc_t *chunks, size_t n)
{
    if (p->chunk >= n || p->producer_id < 0 || p->epoch < 0 || p->first_seq < 0 ||
        p->last_seq < 0 || p->last_offset < p->base_offset)
        return false;
    const st_chunk_desc_t *c = &chunks[p->chunk];
    return p->base_offset >= c->base_offset && p->last_offset <= c->last_offset;
}

st_err_t st_manifest_decode(const uint8_t *buf, size_t len, st_manifest_t *m)
{
    if (len < 5 || kp_crc32c(0, buf, len - 4) != kp_be32(buf + len - 4))
        return ST_ERR_CORRUPT;
    kp_reader_t r;
    kp_reader_init(&r, buf, len - 4);
    m->version = kp_read_i8(&r);
    if (m->version != 1 && m->version != 2)
        return ST_ERR_CORRUPT;
    m->node_id = kp_read_i32(&r);
    m->incarnation = kp_read_i64(&r);
    m->seq = kp_read_i64(&r);
    m->object_key = kp_read_string(&r, false, false);
    m->object_size = (uint64_t)kp_read_i64(&r);
    uint32_t n = kp_read_u32(&r);
    if (r.err || (uint64_t)n * ST_MANIFEST_ENTRY_SIZE > kp_reader_remaining(&r) ||
        (m->version == 1 && (uint64_t)n * ST_MANIFEST_ENTRY_SIZE != kp_reader_remaining(&r)))
        return ST_ERR_CORRUPT;
    st_chunk_desc_t *c = calloc(n ? n : 1, sizeof(*c));
    if (!c)
        return ST_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        read_chunk_desc(&r, &c[i]);
        if (!chunk_sane(&c[i], m->object_size)) {
            free(c);
            return ST_ERR_CORRUPT;
        }
    }
    st_prod_desc_t *p = NULL;
    uint32_t np = 0;
    if (m->version >= 2) {
        np = kp_read_u32(&r);
        if (r.err || (uint64_t)np * ST_MANIFEST_PRODUCER_SIZE != kp_reader_remaining(&r)) {
            free(c);
            return ST_ERR_CORRUPT;
        }
        p = calloc(np ? np : 1, sizeof(*p));
        if (!p) {
            free(c);
            return ST_ERR_NOMEM;
        }
        for (uint32_t i = 0; i < np; i++) {
            p[i].chunk = kp_read_u32(&r);
            p[i].producer_id = kp_read_i64(&r);
            p[i].epoch = kp_read_i16(&r);
            p[i].first_seq = kp_read_i32(&r);
            p[i].last_seq = kp_read_i32(&r);
            p[i].base_offset = kp_read_i64(&r);
            p[i].last_offset = kp_read_i64(&r);
            if (!prod_sane(&p[i], c, n) || (i > 0 && p[i].chunk < p[i - 1].chunk)) {
                free(p);
                free(c);
                return ST_ERR_CORRUPT;
            }
        }
    }
    m->chunks = c;
    m->nchunks = n;
    m->prods = p;
    m->nprods = np;
    return ST_OK;
}

/* ------------------------------------------------------------------ keys */

static bool plain_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

bool st_key_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = strlen(out);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (plain_char(ch)) {
            if (o + 1 >= cap)
                return false;
            out[o++] = (char)ch;
        } else {
            if (o + 3 >= cap)
                return false;
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool st_key_unescape(char *s)
{
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
        if (hi < 0 || lo < 0)
            return false;
        *o++ = (char)(hi << 4 | lo);
        p += 2;
    }
    *o = '\0';
    return true;
}

void st_uuid_hex(kp_uuid_t id, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[id.b[i] >> 4];
        out[2 * i + 1] = hex[id.b[i] & 15];
    }
    out[32] = '\0';
}

bool st_uuid_parse(const char *s, kp_uuid_t *id)
{
    for (int i = 0; i < 16; i++) {
        int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        id->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[32] == '\0';
}

kp_uuid_t st_uuid_random(void)
{
    kp_uuid_t id;
    if (getrandom(id.b, sizeof id.b, 0) != (ssize_t)sizeof id.b) {
        /* getrandom(2) does not fail for 16 bytes once the pool is ready;
         * fall back to time and pid mixing rather than returning zeros. */
        uint64_t x = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)getpid();
        for (int i = 0; i < 16; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            id.b[i] = (uint8_t)(x >> 56);
        }
    }
    id.b[6] = (uint8_t)((id.b[6] & 0x0f) | 0x40); /* version 4 */
    id.b[8] = (uint8_t)((id.b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return id;
}
