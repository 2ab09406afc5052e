/*
 * roundtrip.c: librdkafka against a running gateway -- produce records with
 * keys, headers and explicit timestamps under every compression codec,
 * consume them back by assign + seek, check watermarks, offsets for times
 * and offsets committed without joining a group.
 *
 *   nh_compat_roundtrip BOOTSTRAP produce   # produce, read back, commit
 *   nh_compat_roundtrip BOOTSTRAP verify    # after a restart: read back, committed
 *
 * Exit status 0 when every check holds; each failure prints one line.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NMSG 200
#define GROUP "rt-group"
#define TS0 1700000000000LL /* record i has timestamp TS0 + 10 * i */

static const char *codecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};
static int failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap, const char *codec)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "compression.codec", codec, NULL, 0);
        rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
        rd_kafka_conf_set(conf, "acks", "all", NULL, 0);
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    } else {
        rd_kafka_conf_set(conf, "group.id", GROUP, NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", NULL, 0);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rd_kafka_new: %s\n", err);
        exit(1);
    }
    return rk;
}

static void value_of(const char *codec, int i, char *buf, size_t cap, size_t *len)
{
    /* sizes from a few bytes to ~20 KiB, compressible and not */
    int n = snprintf(buf, cap, "%s-value-%d-", codec, i);
    size_t want = (size_t)((i * 97) % 20000);
    for (size_t k = (size_t)n; k < want && k < cap; k++)
        buf[k] = (char)('a' + (k * (size_t)(i + 7)) % 26);
    *len = want > (size_t)n ? want : (size_t)n;
}

static int64_t delivered[NMSG];

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    intptr_t i = (intptr_t)m->_private;
    if (m->err)
        fail("delivery of %d: %s", (int)i, rd_kafka_err2str(m->err));
    else
        delivered[i] = m->offset;
}

static void produce_topic(const char *bootstrap, const char *codec)
{
    char topic[64];
    snprintf(topic, sizeof topic, "rt-%s", codec);
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bootstrap, codec);
    static char val[20100];
    for (int i = 0; i < NMSG; i++) {
        char key[32], h[16];
        size_t vlen;
        snprintf(key, sizeof key, "k%d", i);
        snprintf(h, sizeof h, "%d", i);
        value_of(codec, i, val, sizeof val, &vlen);
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
        rd_kafka_header_add(hdrs, "h1", -1, h, -1);
        rd_kafka_header_add(hdrs, "empty", -1, NULL, 0);
        delivered[i] = -1;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(TS0 + 10 * i), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
        if (e) {
            fail("%s: produce %d: %s", topic, i, rd_kafka_err2str(e));
            rd_kafka_headers_destroy(hdrs);
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 30000))
        fail("%s: flush timed out", topic);
    for (int i = 0; i < NMSG; i++)
        if (delivered[i] != i)
            fail("%s: record %d acknowledged at offset %" PRId64, topic, i, delivered[i]);
    rd_kafka_destroy(rk);
}

static void check_message(const char *codec, const rd_kafka_message_t *m, int i)
{
    char key[32], h[16];
    static char val[20100];
    size_t vlen;
    snprintf(key, sizeof key, "k%d", i);
    snprintf(h, sizeof h, "%d", i);
    value_of(codec, i, val, sizeof val, &vlen);
    if (m->offset != i || m->key_len != strlen(key) || memcmp(m->key, key, m->key_len) ||
        m->len != vlen || memcmp(m->payload, val, vlen))
        fail("%s: record at %" PRId64 " differs (expected %d)", codec, m->offset, i);
    rd_kafka_timestamp_type_t tstype;
    if (rd_kafka_message_timestamp(m, &tstype) != TS0 + 10 * i)
        fail("%s: record %d has the wrong timestamp", codec, i);
    rd_kafka_headers_t *hdrs = NULL;
    const void *hv;
    size_t hl;
    if (rd_kafka_message_headers(m, &hdrs) || rd_kafka_header_cnt(hdrs) != 2 ||
        rd_kafka_header_get_last(hdrs, "h1", &hv, &hl) || hl != strlen(h) || memcmp(hv, h, hl) ||
        rd_kafka_header_get_last(hdrs, "empty", &hv, &hl) || hv != NULL)
        fail("%s: record %d has the wrong headers", codec, i);
}

/* Assign partition 0 at @start and read every record up to NMSG. */
static void consume_topic(rd_kafka_t *rk, const char *codec, int start)
{
    char topic[64];
    snprintf(topic, sizeof topic, "rt-%s", codec);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = start;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int next = start;
    for (int polls = 0; next < NMSG && polls < 600; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        } else if (m->err) {
            fail("%s: consume: %s", topic, rd_kafka_message_errstr(m));
        } else {
            check_message(codec, m, next);
            next++;
        }
        rd_kafka_message_destroy(m);
    }
    if (next != NMSG)
        fail("%s: read %d of %d records", topic, next - start, NMSG - start);
    rd_kafka_assign(rk, NULL);
}

static void check_watermarks_and_times(rd_kafka_t *rk, const char *codec)
{
    char topic[64];
    snprintf(topic, sizeof topic, "rt-%s", codec);
    int64_t lo = -9, hi = -9;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000);
    if (e || lo != 0 || hi != NMSG)
        fail("%s: watermarks %s (%" PRId64 ", %" PRId64 ")", topic, rd_kafka_err2str(e), lo, hi);
    static const struct {
        int64_t ts, want;
    } cases[] = {{0, 0}, {TS0 + 10 * 57, 57}, {TS0 + 10 * 57 + 1, 58}, {TS0 + 10 * NMSG, -1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, 0)->offset = cases[c].ts;
        e = rd_kafka_offsets_for_times(rk, l, 10000);
        /* Kafka answers -1 for "no such record"; librdkafka reports it as END */
        int64_t got = l->elems[0].offset;
        if (e || l->elems[0].err || (got != cases[c].want && !(cases[c].want == -1 && got < 0)))
            fail("%s: offsets_for_times(%" PRId64 ") = %" PRId64 " (%s), want %" PRId64, topic,
                 cases[c].ts, got, rd_kafka_err2str(e ? e : l->elems[0].err), cases[c].want);
        rd_kafka_topic_partition_list_destroy(l);
    }
}

static void commit_offsets(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(5);
    for (int c = 0; c < 5; c++) {
        char topic[64];
        snprintf(topic, sizeof topic, "rt-%s", codecs[c]);
        rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_add(l, topic, 0);
        p->offset = 40 + c;
        p->metadata = strdup("md");
        p->metadata_size = 2;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0 /* sync */);
    if (e)
        fail("commit: %s", rd_kafka_err2str(e));
    for (int c = 0; c < l->cnt; c++)
        if (l->elems[c].err)
            fail("commit %s: %s", l->elems[c].topic, rd_kafka_err2str(l->elems[c].err));
    rd_kafka_topic_partition_list_destroy(l);
}

static void check_committed(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(5);
    for (int c = 0; c < 5; c++) {
        char topic[64];
        snprintf(topic, sizeof topic, "rt-%s", codecs[c]);
        rd_kafka_topic_partition_list_add(l, topic, 0);
    }
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    if (e)
        fail("committed: %s", rd_kafka_err2str(e));
    for (int c = 0; c < l->cnt; c++)
        if (l->elems[c].err || l->elems[c].offset != 40 + c || l->elems[c].metadata_size != 2 ||
            memcmp(l->elems[c].metadata, "md", 2) != 0)
            fail("committed %s: offset %" PRId64 " (%s)", l->elems[c].topic, l->elems[c].offset,
                 rd_kafka_err2str(l->elems[c].err));
    rd_kafka_topic_partition_list_destroy(l);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "produce") && strcmp(argv[2], "verify"))) {
        fprintf(stderr, "usage: %s BOOTSTRAP produce|verify\n", argv[0]);
        return 2;
    }
    const char *bootstrap = argv[1];
    bool produce = strcmp(argv[2], "produce") == 0;
    for (int c = 0; produce && c < 5; c++)
        produce_topic(bootstrap, codecs[c]);
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap, NULL);
    for (int c = 0; c < 5; c++) {
        consume_topic(rk, codecs[c], 0);
        consume_topic(rk, codecs[c], 123); /* seek into the middle of a batch */
        check_watermarks_and_times(rk, codecs[c]);
    }
    if (produce)
        commit_offsets(rk);
    check_committed(rk);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    printf("roundtrip %s: %s (%d failures)\n", argv[2], failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
