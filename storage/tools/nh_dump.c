/*
 * nh_dump.c: nuthatch-dump -- print what flush objects hold, read straight
 * from their files (no gateway, no metadata store).
 *
 *     nuthatch-dump [--records] [--json] PATH...
 *
 * A PATH is an object file or a directory searched recursively for *.nho
 * files (e.g. a gateway's data.dir; empty ones, made ahead of a put, are
 * passed by).  For each object: its header; for each
 * chunk its footer entry and whether its CRC32C holds; for each batch in
 * the chunk its header fields, codec and whether its CRC32C holds; with
 * --records every record.  --json prints one JSON object per line instead
 * (fields in usage()).
 *
 * A file that is not a whole, intact object gets one line on stderr
 * ("nuthatch-dump: PATH: reason"); the exit status is then 1.  Batches are
 * checked too (framing, CRC, codec, records), and a chunk whose batches
 * disagree with its footer entry counts as damaged.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kp_batch.h"
#include "kp_crc32c.h"
#include "st_format.h"

static bool opt_records;
static bool opt_json;
static bool opt_manifest;

static void usage(FILE *f)
{
    fputs("Usage: nuthatch-dump [--records] [--json] PATH...\n"
          "\n"
          "Print the contents of Nuthatch flush objects (*.nho) without a gateway.\n"
          "A PATH is an object file or a directory searched recursively for *.nho\n"
          "files (a gateway's data.dir, or its objects directory).\n"
          "\n"
          "  -r, --records  also print every record: offset, timestamp, key, value,\n"
          "                 headers (bytes escaped: \\\\ \\\" \\n \\r \\t \\xNN; null unquoted)\n"
          "  -j, --json     one JSON object per line, \"type\" first:\n"
          "                 object: path size node_id incarnation sequence chunks\n"
          "                 chunk:  path chunk topic_id partition batches base_offset\n"
          "                         last_offset max_timestamp position length crc_ok\n"
          "                 batch:  path chunk topic_id partition position size base_offset\n"
          "                         last_offset_delta last_offset record_count attributes\n"
          "                         codec codec_bits timestamp_type transactional control\n"
          "                         producer_id producer_epoch base_sequence leader_epoch\n"
          "                         base_timestamp max_timestamp crc_ok error\n"
          "                 record: path topic_id partition offset timestamp key value\n"
          "                         headers [{key, value}]\n"
          "                 error:  path message\n"
          "                 Byte strings are JSON strings when valid UTF-8 (null for\n"
          "                 null); otherwise the string has U+FFFD for each invalid byte\n"
          "                 and a sibling NAME_hex field holds the exact bytes.\n"
          "  -m, --manifest the PATHs are metadata values instead: a flush manifest\n"
          "                 (/nuthatch/manifests/...) or an index key's value\n"
          "                 (/nuthatch/partitions/<topic-id>/<p>/chunks/<base>), e.g.\n"
          "                 saved with etcdctl get --print-value-only; JSON types:\n"
          "                 manifest: path version node_id incarnation sequence\n"
          "                           object_key object_size chunks producers\n"
          "                 chunk (as above, without crc_ok) and\n"
          "                 producer: path chunk producer_id epoch first_sequence\n"
          "                           last_sequence base_offset last_offset\n"
          "  -h, --help     print this help\n"
          "\n"
          "Exit status: 0 when every object is intact, 1 when some file is missing,\n"
          "truncated or corrupt (one line on stderr each), 2 for a bad command line.\n",
          f);
}

/* ---------------------------------------------------------------- output */

/* Length of the valid UTF-8 sequence at @p (at most @n bytes), 0 if none. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, min = 0x80, cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, min = 0x800, cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, min = 0x10000, cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string of @p[0..@n); invalid UTF-8 bytes become U+FFFD.  Returns
 * whether every byte was valid UTF-8. */
static bool json_chars(const uint8_t *p, size_t n)
{
    bool valid = true;
    putchar('"');
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t l = utf8_seq(p + i, n - i);
        if (l == 0) {
            fputs("\\ufffd", stdout);
            valid = false;
            i++;
            continue;
        }
        if (l > 1) {
            fwrite(p + i, 1, l, stdout);
        } else if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c == '\r') {
            fputs("\\r", stdout);
        } else if (c == '\t') {
            fputs("\\t", stdout);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
        i += l;
    }
    putchar('"');
    return valid;
}

/* ,"name":<bytes> (see usage() for the encoding); @n < 0 is null. */
static void json_bytes(const char *name, const uint8_t *p, int64_t n)
{
    printf(",\"%s\":", name);
    if (n < 0) {
        fputs("null", stdout);
        return;
    }
    if (json_chars(p, (size_t)n))
        return;
    printf(",\"%s_hex\":\"", name);
    for (int64_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('"');
}

static void json_cstr(const char *name, const char *s)
{
    json_bytes(name, (const uint8_t *)s, (int64_t)strlen(s));
}

/* Text form of bytes: quoted, escaped; null unquoted. */
static void text_bytes(const uint8_t *p, int64_t n)
{
    if (n < 0) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* ---------------------------------------------------------------- errors */

/* The object being dumped and whether a problem was reported for it (only
 * the first goes to stderr: one line per file). */
static const char *cur_path;
static bool cur_failed;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (opt_json) {
        printf("{\"type\":\"error\"");
        json_cstr("path", cur_path);
        json_cstr("message", msg);
        fputs("}\n", stdout);
    }
    if (!cur_failed) {
        fflush(stdout);
        fprintf(stderr, "nuthatch-dump: %s: %s\n", cur_path, msg);
    }
    cur_failed = true;
}

/* Why st_obj_parse() refused @obj (it already failed; this only words it). */
static void diagnose(const uint8_t *obj, size_t len, st_err_t err)
{
    const size_t min = ST_OBJ_HEADER_SIZE + 4 + ST_OBJ_TRAILER_SIZE;
    if (err == ST_ERR_NOMEM) {
        problem("out of memory");
        return;
    }
    if (len < 8 || memcmp(obj, ST_OBJ_MAGIC, 8) != 0) {
        problem("not a flush object (no \"%s\" magic; %zu bytes)", ST_OBJ_MAGIC, len);
        return;
    }
    if (len < min) {
        problem("truncated: %zu bytes, an object has at least %zu", len, min);
        return;
    }
    if (memcmp(obj + len - 8, ST_OBJ_END_MAGIC, 8) != 0) {
        problem("truncated or damaged: no \"%s\" magic at the end (%zu bytes)", ST_OBJ_END_MAGIC,
                len);
        return;
    }
    uint32_t version = kp_be32(obj + 8);
    if (version != ST_OBJ_VERSION) {
        problem("unsupported format version %" PRIu32, version);
        return;
    }
    const uint8_t *t = obj + len - ST_OBJ_TRAILER_SIZE;
    uint64_t fpos = kp_be64(t), data_end = len - ST_OBJ_TRAILER_SIZE;
    uint32_t flen = kp_be32(t + 8), fcrc = kp_be32(t + 12);
    if (fpos < ST_OBJ_HEADER_SIZE || fpos > data_end || flen != data_end - fpos || flen < 4) {
        problem("bad trailer: footer at %" PRIu64 ", %" PRIu32 " bytes, in a %zu-byte object", fpos,
                flen, len);
        return;
    }
    if (kp_crc32c(0, obj + fpos, flen) != fcrc) {
        problem("footer CRC32C mismatch");
        return;
    }
    uint32_t count = kp_be32(obj + fpos);
    if ((uint64_t)count * ST_OBJ_ENTRY_SIZE != flen - 4u) {
        problem("footer of %" PRIu32 " bytes does not hold %" PRIu32 " chunk entries", flen, count);
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = obj + fpos + 4 + (size_t)i * ST_OBJ_ENTRY_SIZE;
        uint64_t pos = kp_be64(e + 48);
        uint32_t clen = kp_be32(e + 56), ccrc = kp_be32(e + 60);
        if (pos < ST_OBJ_HEADER_SIZE || pos > fpos || clen == 0 || clen > fpos - pos) {
            problem("chunk %" PRIu32 ": %" PRIu32 " bytes at %" PRIu64 " outside the data", i, clen,
                    pos);
            return;
        }
        if (kp_crc32c(0, obj + pos, clen) != ccrc) {
            problem("chunk %" PRIu32 ": CRC32C mismatch", i);
            return;
        }
    }
    problem("inconsistent chunk entry (batch count or offsets)");
}

/* ---------------------------------------------------------------- dump */

static void dump_records(const uint8_t *batch, size_t size, const char *topic, int32_t partition,
                         unsigned chunk, unsigned bi, kp_zout_t *zout)
{
    kp_record_iter_t it;
    kp_record_t rec;
    if (kp_record_iter_init(&it, batch, size, 0, zout) != KP_BATCH_OK) {
        problem("chunk %u batch %u: records: %s", chunk, bi, kp_batch_err_str(it.err));
        return;
    }
    while (kp_record_iter_next(&it, &rec)) {
        kp_header_iter_t hi;
        kp_record_header_t h;
        if (opt_json) {
            printf("{\"type\":\"record\"");
            json_cstr("path", cur_path);
            printf(",\"topic_id\":\"%s\",\"partition\":%" PRId32 ",\"offset\":%" PRId64
                   ",\"timestamp\":%" PRId64,
                   topic, partition, rec.offset, rec.timestamp);
            json_bytes("key", rec.key.ptr, rec.key.len);
            json_bytes("value", rec.value.ptr, rec.value.len);
            fputs(",\"headers\":[", stdout);
            kp_header_iter_init(&hi, &rec);
            for (int n = 0; kp_header_iter_next(&hi, &h); n++) {
                fputs(n ? ",{" : "{", stdout);
                printf("\"key\":");
                if (!json_chars((const uint8_t *)h.key.ptr, (size_t)h.key.len)) {
                    fputs(",\"key_hex\":\"", stdout);
                    for (int32_t i = 0; i < h.key.len; i++)
                        printf("%02x", (uint8_t)h.key.ptr[i]);
                    putchar('"');
                }
                json_bytes("value", h.value.ptr, h.value.len);
                putchar('}');
            }
            fputs("]}\n", stdout);
        } else {
            printf("      record offset %" PRId64 " timestamp %" PRId64 " key ", rec.offset,
                   rec.timestamp);
            text_bytes(rec.key.ptr, rec.key.len);
            fputs(" value ", stdout);
            text_bytes(rec.value.ptr, rec.value.len);
            printf(" headers %" PRId32, rec.header_count);
            kp_header_iter_init(&hi, &rec);
            while (kp_header_iter_next(&hi, &h)) {
                putchar(' ');
                text_bytes((const uint8_t *)h.key.ptr, h.key.len);
                putchar('=');
                text_bytes(h.value.ptr, h.value.len);
            }
            putchar('\n');
        }
    }
    if (it.err != KP_BATCH_OK)
        problem("chunk %u batch %u: records: %s", chunk, bi, kp_batch_err_str(it.err));
}

static void dump_chunk(const uint8_t *obj, const st_chunk_desc_t *c, unsigned ci, kp_zout_t *zout)
{
    char topic[33];
    st_uuid_hex(c->topic_id, topic);
    bool crc_ok = kp_crc32c(0, obj + c->pos, c->len) == c->crc;
    if (opt_json) {
        printf("{\"type\":\"chunk\"");
        json_cstr("path", cur_path);
        printf(",\"chunk\":%u,\"topic_id\":\"%s\",\"partition\":%" PRId32 ",\"batches\":%" PRId32
               ",\"base_offset\":%" PRId64 ",\"last_offset\":%" PRId64 ",\"max_timestamp\":%" PRId64
               ",\"position\":%" PRIu64 ",\"length\":%" PRIu32 ",\"crc_ok\":%s}\n",
               ci, topic, c->partition, c->batches, c->base_offset, c->last_offset,
               c->max_timestamp, c->pos, c->len, crc_ok ? "true" : "false");
    } else {
        printf("  chunk %u topic_id %s partition %" PRId32 " batches %" PRId32 " offsets %" PRId64
               "..%" PRId64 " max_timestamp %" PRId64 " position %" PRIu64 " length %" PRIu32
               " crc %s\n",
               ci, topic, c->partition, c->batches, c->base_offset, c->last_offset,
               c->max_timestamp, c->pos, c->len, crc_ok ? "ok" : "BAD");
    }
    if (!crc_ok)
        problem("chunk %u: CRC32C mismatch", ci);

    kp_batch_cursor_t cur;
    const uint8_t *b;
    size_t size;
    unsigned bi = 0;
    int64_t first_base = -1, last = -1, max_ts = INT64_MIN;
    kp_batch_cursor_init(&cur, obj + c->pos, c->len, SIZE_MAX);
    while (kp_batch_cursor_next(&cur, &b, &size)) {
        kp_batch_hdr_t h;
        kp_batch_hdr_parse(b, size, &h); /* framing guarantees the header */
        kp_batch_limits_t lim = {SIZE_MAX, 0, zout};
        kp_batch_err_t err = kp_batch_validate_one(b, size, &lim, NULL);
        bool bcrc_ok =
            kp_crc32c(0, b + KP_BATCH_OFF_ATTRIBUTES, size - KP_BATCH_OFF_ATTRIBUTES) == h.crc;
        unsigned bits = (unsigned)h.attributes & KP_BATCH_ATTR_COMPRESSION_MASK;
        char codec[16];
        if (bits < KP_COMPRESSION__NUM)
            snprintf(codec, sizeof codec, "%s", kp_compression_str((kp_compression_t)bits));
        else
            snprintf(codec, sizeof codec, "invalid(%u)", bits);
        int64_t last_off = (int64_t)((uint64_t)h.base_offset + (uint64_t)h.last_offset_delta);
        uint64_t pos = c->pos + (uint64_t)(b - (obj + c->pos));
        if (opt_json) {
            printf("{\"type\":\"batch\"");
            json_cstr("path", cur_path);
            printf(",\"chunk\":%u,\"topic_id\":\"%s\",\"partition\":%" PRId32
                   ",\"position\":%" PRIu64 ",\"size\":%zu,\"base_offset\":%" PRId64
                   ",\"last_offset_delta\":%" PRId32 ",\"last_offset\":%" PRId64
                   ",\"record_count\":%" PRId32 ",\"attributes\":%d,\"codec\":\"%s\""
                   ",\"codec_bits\":%u,\"timestamp_type\":\"%s\",\"transactional\":%s"
                   ",\"control\":%s,\"producer_id\":%" PRId64 ",\"producer_epoch\":%d"
                   ",\"base_sequence\":%" PRId32 ",\"leader_epoch\":%" PRId32
                   ",\"base_timestamp\":%" PRId64 ",\"max_timestamp\":%" PRId64
                   ",\"crc_ok\":%s,\"error\":",
                   ci, topic, c->partition, pos, size, h.base_offset, h.last_offset_delta, last_off,
                   h.record_count, h.attributes, codec, bits,
                   (h.attributes & KP_BATCH_ATTR_LOG_APPEND_TIME) ? "log_append" : "create",
                   (h.attributes & KP_BATCH_ATTR_TRANSACTIONAL) ? "true" : "false",
                   (h.attributes & KP_BATCH_ATTR_CONTROL) ? "true" : "false", h.producer_id,
                   h.producer_epoch, h.base_sequence, h.leader_epoch, h.base_timestamp,
                   h.max_timestamp, bcrc_ok ? "true" : "false");
            if (err == KP_BATCH_OK)
                fputs("null", stdout);
            else
                json_chars((const uint8_t *)kp_batch_err_str(err), strlen(kp_batch_err_str(err)));
            fputs("}\n", stdout);
        } else {
            printf("    batch base_offset %" PRId64 " last_offset_delta %" PRId32
                   " records %" PRId32 " codec %s producer_id %" PRId64 " producer_epoch %d"
                   " base_sequence %" PRId32 " max_timestamp %" PRId64 " size %zu crc %s%s%s\n",
                   h.base_offset, h.last_offset_delta, h.record_count, codec, h.producer_id,
                   h.producer_epoch, h.base_sequence, h.max_timestamp, size, bcrc_ok ? "ok" : "BAD",
                   err == KP_BATCH_OK ? "" : " error: ",
                   err == KP_BATCH_OK ? "" : kp_batch_err_str(err));
        }
        if (err != KP_BATCH_OK)
            problem("chunk %u batch %u (offset %" PRId64 "): %s", ci, bi, h.base_offset,
                    kp_batch_err_str(err));
        else if (opt_records)
            dump_records(b, size, topic, c->partition, ci, bi, zout);
        if (bi == 0)
            first_base = h.base_offset;
        last = last_off;
        if (h.max_timestamp > max_ts)
            max_ts = h.max_timestamp;
        bi++;
    }
    if (cur.err != KP_BATCH_OK) {
        problem("chunk %u batch %u: %s", ci, bi, kp_batch_err_str(cur.err));
        return;
    }
    if ((int64_t)bi != c->batches)
        problem("chunk %u: %u batches, its entry says %" PRId32, ci, bi, c->batches);
    else if (first_base != c->base_offset || last != c->last_offset)
        problem("chunk %u: batches hold offsets %" PRId64 "..%" PRId64 ", its entry says %" PRId64
                "..%" PRId64,
                ci, first_base, last, c->base_offset, c->last_offset);
    else if (max_ts != c->max_timestamp)
        problem("chunk %u: batches' max timestamp %" PRId64 ", its entry says %" PRId64, ci, max_ts,
                c->max_timestamp);
}

/* Read the whole file; NULL with errno set on failure. */
static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        if (e == 0 || !S_ISREG(st.st_mode))
            e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        if (n == cap) { /* the file grew */
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb, cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return buf;
}

/* Dump one object file; false when it is unreadable or damaged. */
static bool dump_file(const char *path, kp_zout_t *zout)
{
    cur_path = path;
    cur_failed = false;
    size_t len = 0;
    uint8_t *obj = slurp(path, &len);
    if (!obj) {
        problem("%s", strerror(errno));
        return false;
    }
    st_obj_header_t h;
    st_chunk_desc_t *chunks = NULL;
    size_t n = 0;
    st_err_t err = st_obj_parse(obj, len, &h, &chunks, &n);
    if (err != ST_OK) {
        diagnose(obj, len, err);
        free(obj);
        return false;
    }
    if (opt_json) {
        printf("{\"type\":\"object\"");
        json_cstr("path", path);
        printf(",\"size\":%zu,\"node_id\":%" PRId32 ",\"incarnation\":%" PRId64
               ",\"sequence\":%" PRId64 ",\"chunks\":%zu}\n",
               len, h.node_id, h.incarnation, h.seq, n);
    } else {
        printf("object %s size %zu node_id %" PRId32 " incarnation %" PRId64 " sequence %" PRId64
               " chunks %zu\n",
               path, len, h.node_id, h.incarnation, h.seq, n);
    }
    for (size_t i = 0; i < n; i++)
        dump_chunk(obj, &chunks[i], (unsigned)i, zout);
    free(chunks);
    free(obj);
    return !cur_failed;
}

/* A manifest or index key value, as the metadata store holds it. */
static bool dump_manifest(const char *path)
{
    cur_path = path;
    cur_failed = false;
    size_t len = 0;
    uint8_t *buf = slurp(path, &len);
    if (!buf) {
        problem("%s", strerror(errno));
        return false;
    }
    st_manifest_t m;
    if (st_manifest_decode(buf, len, &m) != ST_OK) {
        problem("not a manifest (version 1 or 2 with a valid CRC32C)");
        free(buf);
        return false;
    }
    char *key = strndup(m.object_key.ptr, (size_t)m.object_key.len);
    if (opt_json) {
        printf("{\"type\":\"manifest\"");
        json_cstr("path", path);
        printf(",\"version\":%d,\"node_id\":%" PRId32 ",\"incarnation\":%" PRId64
               ",\"sequence\":%" PRId64,
               m.version, m.node_id, m.incarnation, m.seq);
        json_cstr("object_key", key ? key : "");
        printf(",\"object_size\":%" PRIu64 ",\"chunks\":%zu,\"producers\":%zu}\n", m.object_size,
               m.nchunks, m.nprods);
    } else {
        printf("manifest %s version %d node_id %" PRId32 " incarnation %" PRId64
               " sequence %" PRId64 " object %s size %" PRIu64 " chunks %zu producers %zu\n",
               path, m.version, m.node_id, m.incarnation, m.seq, key ? key : "", m.object_size,
               m.nchunks, m.nprods);
    }
    for (size_t i = 0; i < m.nchunks; i++) {
        const st_chunk_desc_t *c = &m.chunks[i];
        char topic[33];
        st_uuid_hex(c->topic_id, topic);
        if (opt_json) {
            printf("{\"type\":\"chunk\"");
            json_cstr("path", path);
            printf(",\"chunk\":%zu,\"topic_id\":\"%s\",\"partition\":%" PRId32
                   ",\"batches\":%" PRId32 ",\"base_offset\":%" PRId64 ",\"last_offset\":%" PRId64
                   ",\"max_timestamp\":%" PRId64 ",\"position\":%" PRIu64 ",\"length\":%" PRIu32
                   "}\n",
                   i, topic, c->partition, c->batches, c->base_offset, c->last_offset,
                   c->max_timestamp, c->pos, c->len);
        } else {
            printf("  chunk %zu topic_id %s partition %" PRId32 " batches %" PRId32
                   " offsets %" PRId64 "..%" PRId64 " max_timestamp %" PRId64 " position %" PRIu64
                   " length %" PRIu32 "\n",
                   i, topic, c->partition, c->batches, c->base_offset, c->last_offset,
                   c->max_timestamp, c->pos, c->len);
        }
    }
    for (size_t i = 0; i < m.nprods; i++) {
        const st_prod_desc_t *d = &m.prods[i];
        if (opt_json) {
            printf("{\"type\":\"producer\"");
            json_cstr("path", path);
            printf(",\"chunk\":%" PRIu32 ",\"producer_id\":%" PRId64 ",\"epoch\":%d"
                   ",\"first_sequence\":%" PRId32 ",\"last_sequence\":%" PRId32
                   ",\"base_offset\":%" PRId64 ",\"last_offset\":%" PRId64 "}\n",
                   d->chunk, d->producer_id, d->epoch, d->first_seq, d->last_seq, d->base_offset,
                   d->last_offset);
        } else {
            printf("  producer chunk %" PRIu32 " id %" PRId64 " epoch %d sequences %" PRId32
                   "..%" PRId32 " offsets %" PRId64 "..%" PRId64 "\n",
                   d->chunk, d->producer_id, d->epoch, d->first_seq, d->last_seq, d->base_offset,
                   d->last_offset);
        }
    }
    free(key);
    free((void *)m.chunks);
    free((void *)m.prods);
    free(buf);
    return !cur_failed;
}

/* ------------------------------------------------------------ directories */

static char **found;
static size_t nfound, capfound;
static bool walk_nomem;

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    size_t l = strlen(path);
    /* Hidden files are partial uploads; an empty *.nho is the file a
     * running gateway made ahead of its next put (or one a crash left
     * before it): neither is an object yet.  Named on the command line,
     * either is still checked. */
    if (type != FTW_F || l < 4 || strcmp(path + l - 4, ".nho") != 0 || path[ftw->base] == '.' ||
        st->st_size == 0)
        return 0;
    if (nfound == capfound) {
        size_t nc = capfound ? capfound * 2 : 64;
        char **nf = realloc(found, nc * sizeof *nf);
        if (!nf) {
            walk_nomem = true;
            return 1;
        }
        found = nf, capfound = nc;
    }
    if (!(found[nfound] = strdup(path))) {
        walk_nomem = true;
        return 1;
    }
    nfound++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Dump every *.nho under @dir in path order (for one node: flush order). */
static bool dump_dir(const char *dir, kp_zout_t *zout)
{
    nfound = 0;
    walk_nomem = false;
    bool ok = true;
    if (nftw(dir, collect, 32, FTW_PHYS) != 0) {
        cur_path = dir;
        cur_failed = false;
        problem("%s", walk_nomem ? "out of memory" : strerror(errno));
        ok = false;
    }
    qsort(found, nfound, sizeof *found, cmp_str);
    for (size_t i = 0; i < nfound; i++) {
        ok = dump_file(found[i], zout) && ok;
        free(found[i]);
    }
    return ok;
}

int main(int argc, char **argv)
{
    /* Options anywhere; everything after "--" is a path. */
    char **paths = calloc((size_t)argc, sizeof *paths);
    int npaths = 0;
    bool only_paths = false;
    if (!paths) {
        fputs("nuthatch-dump: out of memory\n", stderr);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_paths || a[0] != '-' || a[1] == '\0') {
            paths[npaths++] = argv[i];
        } else if (!strcmp(a, "--")) {
            only_paths = true;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--records")) {
            opt_records = true;
        } else if (!strcmp(a, "-j") || !strcmp(a, "--json")) {
            opt_json = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--manifest")) {
            opt_manifest = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(paths);
            return 0;
        } else {
            fprintf(stderr, "nuthatch-dump: unknown option %s\n", a);
            usage(stderr);
            free(paths);
            return 2;
        }
    }
    if (npaths == 0) {
        usage(stderr);
        free(paths);
        return 2;
    }
    kp_zout_t zout;
    kp_zout_init_alloc(&zout, KP_BATCH_DEFAULT_MAX_DECOMPRESSED, NULL, NULL);
    bool ok = true;
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (opt_manifest)
            ok = dump_manifest(paths[i]) && ok;
        else if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode))
            ok = dump_dir(paths[i], &zout) && ok;
        else
            ok = dump_file(paths[i], &zout) && ok;
    }
    kp_zout_deinit(&zout);
    free(found);
    free(paths);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "nuthatch-dump: writing the output: %s\n", strerror(errno));
        return 1;
    }
    return ok ? 0 : 1;
}
