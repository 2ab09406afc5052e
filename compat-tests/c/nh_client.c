/*
 * nh_client.c: a librdkafka client for the compatibility tests.
 *
 *   nh_compat_client create BOOTSTRAP NPARTS TOPIC...
 *       Create the topics (CreateTopics).
 *   nh_compat_client produce BOOTSTRAP ACKFILE ID NPARTS TOPIC[,TOPIC...]
 *       Produce with acks=all (not idempotent) until SIGTERM or SIGINT, then
 *       wait for the outstanding messages (at most 120 s) and exit.  Each
 *       message has a distinct key, a value of varying length with binary
 *       bytes, and headers (some binary, some empty, some null).  Every
 *       successful delivery report is appended to ACKFILE as one line and
 *       written out before the next report is handled.  The environment
 *       may set the pace: NH_PRODUCE_RATE messages a second (default 1000)
 *       and values with fewer than NH_PRODUCE_VALUE_MAX random bytes after
 *       their "vID-SEQ:" prefix (default 300, at most 1048000);
 *       NH_PRODUCE_LINGER_MS sets linger.ms (default 2).
 *   nh_compat_client dump BOOTSTRAP OUTFILE NPARTS TOPIC...
 *       Write every record of every partition, from offset 0 to the high
 *       watermark, to OUTFILE.
 *
 * Line format (ACKFILE and OUTFILE alike), tab-separated:
 *   topic partition offset key value headers
 * key and value in hex ("~" for null), headers as name=value pairs in hex
 * joined by "," (value "~" for null; "-" for no headers).
 *
 * Exit status: 0 on success, 1 on failure, 2 for a bad command line.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nh_compat_client: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("%s=%s: %s", k, v, err);
}

/* ------------------------------------------------------------ line output */

/* A growing string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sb_reserve(sbuf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        die("out of memory");
    b->cap = cap;
}

static void sb_puts(sbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void sb_hex(sbuf_t *b, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    if (!data) {
        sb_puts(b, "~");
        return;
    }
    sb_reserve(b, 2 * len);
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++) {
        b->p[b->len++] = digits[d[i] >> 4];
        b->p[b->len++] = digits[d[i] & 15];
    }
    b->p[b->len] = '\0';
}

/* One record as a line (see the top of the file). */
static void format_record(sbuf_t *b, const rd_kafka_message_t *m)
{
    char num[64];
    b->len = 0;
    sb_puts(b, rd_kafka_topic_name(m->rkt));
    snprintf(num, sizeof num, "\t%" PRId32 "\t%" PRId64 "\t", m->partition, m->offset);
    sb_puts(b, num);
    sb_hex(b, m->key, m->key_len);
    sb_puts(b, "\t");
    sb_hex(b, m->payload, m->len);
    sb_puts(b, "\t");
    rd_kafka_headers_t *hdrs = NULL;
    size_t nh = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs)
        nh = rd_kafka_header_cnt(hdrs);
    if (nh == 0)
        sb_puts(b, "-");
    for (size_t i = 0; i < nh; i++) {
        const char *name;
        const void *val;
        size_t vlen;
        if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) != RD_KAFKA_RESP_ERR_NO_ERROR)
            die("header %zu unreadable", i);
        if (i > 0)
            sb_puts(b, ",");
        sb_hex(b, name, strlen(name));
        sb_puts(b, "=");
        sb_hex(b, val, vlen);
    }
    sb_puts(b, "\n");
}

/* Write all of @b to @fd (a short write is retried). */
static void write_all(int fd, const sbuf_t *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(fd, b->p + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write: %s", strerror(errno));
        off += (size_t)n;
    }
}

/* ------------------------------------------------------------ create */

static int cmd_create(const char *bootstrap, int nparts, char **topics, int ntopics)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("rd_kafka_new: %s", err);
    rd_kafka_NewTopic_t **nt = calloc((size_t)ntopics, sizeof *nt);
    for (int i = 0; i < ntopics; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], nparts, 1, err, sizeof err);
        if (!nt[i])
            die("NewTopic %s: %s", topics[i], err);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, (size_t)ntopics, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev)
        die("CreateTopics: no answer in 30 s");
    if (rd_kafka_event_error(ev))
        die("CreateTopics: %s", rd_kafka_event_error_string(ev));
    size_t nres;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
    for (size_t i = 0; i < nres; i++)
        if (rd_kafka_topic_result_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR)
            die("create %s: %s", rd_kafka_topic_result_name(res[i]),
                rd_kafka_topic_result_error_string(res[i]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nt, (size_t)ntopics);
    free(nt);
    rd_kafka_destroy(rk);
    return 0;
}

/* ------------------------------------------------------------ produce */

typedef struct producer {
    int fd; /* the acknowledgement file */
    sbuf_t line;
    long acked, failed;
} producer_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    producer_t *p = opaque;
    if (m->err) {
        p->failed++;
        fprintf(stderr, "nh_compat_client: delivery failed (%s [%" PRId32 "]): %s\n",
                rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err));
        return;
    }
    if (m->offset < 0) {
        p->failed++;
        fprintf(stderr, "nh_compat_client: delivered without an offset\n");
        return;
    }
    format_record(&p->line, m);
    write_all(p->fd, &p->line); /* in the file before the next report */
    p->acked++;
}

/* A small deterministic generator: the content varies but a run can be
 * reproduced from the producer id. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A non-negative integer from the environment variable @name, else @dflt. */
static long env_long(const char *name, long dflt, long max)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > max)
        die("%s=%s: expected an integer from 0 to %ld", name, s, max);
    return v;
}

static int cmd_produce(const char *bootstrap, const char *ackfile, int id, int nparts,
                       char *topic_list)
{
    char err[512];
    char *topics[64];
    int ntopics = 0;
    for (char *s = strtok(topic_list, ","); s && ntopics < 64; s = strtok(NULL, ","))
        topics[ntopics++] = s;
    if (ntopics == 0 || nparts < 1)
        die("no topics or partitions");

    producer_t p = {.fd = -1};
    FILE *f = fopen(ackfile, "a");
    if (!f)
        die("%s: %s", ackfile, strerror(errno));
    p.fd = fileno(f);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "acks", "all");
    set(conf, "enable.idempotence", "false");
    const char *linger = getenv("NH_PRODUCE_LINGER_MS");
    set(conf, "linger.ms", linger && *linger ? linger : "2");
    set(conf, "message.timeout.ms", "120000");
    set(conf, "request.timeout.ms", "10000");
    set(conf, "retry.backoff.ms", "100");
    set(conf, "reconnect.backoff.ms", "50");
    set(conf, "reconnect.backoff.max.ms", "500");
    set(conf, "queue.buffering.max.messages", "20000");
    set(conf, "log.connection.close", "false");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &p);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("rd_kafka_new: %s", err);

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    long rate = env_long("NH_PRODUCE_RATE", 1000, 1000000);
    size_t value_max = (size_t)env_long("NH_PRODUCE_VALUE_MAX", 300, 1048000);
    unsigned char *value = malloc(value_max + 64);
    if (!value)
        die("out of memory");

    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
    long seq = 0;
    char key[64], seqs[32];
    int64_t start = now_ms();
    while (!stop_requested) {
        /* About @rate messages a second, in bursts of rate / 100. */
        int64_t due = (now_ms() - start) * rate / 1000 + 1;
        while (!stop_requested && seq < due) {
            const char *topic = topics[seq % ntopics];
            int32_t part = (int32_t)((seq / ntopics + id) % nparts);
            int klen = snprintf(key, sizeof key, "k%d-%ld", id, seq);
            int vlen = snprintf((char *)value, 64, "v%d-%ld:", id, seq);
            size_t extra = value_max ? (size_t)(rng_next(&rng) % value_max) : 0;
            for (size_t i = 0; i < extra; i++)
                value[vlen + (int)i] = (unsigned char)rng_next(&rng);
            snprintf(seqs, sizeof seqs, "%ld", seq);
            unsigned char bin[4] = {0, 0xff, (unsigned char)id, (unsigned char)seq};
            rd_kafka_headers_t *h = rd_kafka_headers_new(4);
            rd_kafka_header_add(h, "producer", -1, key + 1, (ssize_t)strcspn(key + 1, "-"));
            rd_kafka_header_add(h, "seq", -1, seqs, -1);
            if (seq % 3 == 0)
                rd_kafka_header_add(h, "bin", -1, bin, sizeof bin);
            if (seq % 5 == 0)
                rd_kafka_header_add(h, "null", -1, NULL, 0);
            if (seq % 7 == 0)
                rd_kafka_header_add(h, "empty", -1, "", 0);
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, (size_t)klen),
                RD_KAFKA_V_VALUE(value, (size_t)vlen + extra), RD_KAFKA_V_HEADERS(h),
                RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_headers_destroy(h);
                rd_kafka_poll(rk, 10);
                break; /* the same sequence number again later */
            }
            if (e)
                die("produce: %s", rd_kafka_err2str(e));
            seq++;
        }
        rd_kafka_poll(rk, 10);
    }
    int64_t t0 = now_ms();
    rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 120000);
    fprintf(stderr,
            "nh_compat_client: producer %d: %ld produced, %ld acknowledged, %ld failed, "
            "%d outstanding after %" PRId64 " ms of flushing\n",
            id, seq, p.acked, p.failed, rd_kafka_outq_len(rk), now_ms() - t0);
    rd_kafka_destroy(rk);
    fclose(f);
    free(p.line.p);
    free(value);
    return fe == RD_KAFKA_RESP_ERR_NO_ERROR && p.failed == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ dump */

static int dump_partition(rd_kafka_t *rk, const char *topic, int32_t part, int outfd, long *count)
{
    int64_t lo, hi;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < 20; i++) {
        e = rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi, 5000);
        if (!e)
            break;
        usleep(250000);
    }
    if (e)
        die("%s [%" PRId32 "]: watermarks: %s", topic, part, rd_kafka_err2str(e));
    *count = 0;
    if (hi <= 0)
        return 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_consume_start(rkt, part, RD_KAFKA_OFFSET_BEGINNING) == -1)
        die("%s [%" PRId32 "]: consume_start: %s", topic, part,
            rd_kafka_err2str(rd_kafka_last_error()));
    sbuf_t line = {0};
    int64_t next = -1, deadline = now_ms() + 60000;
    int rc = 0;
    while (next < hi - 1) {
        if (now_ms() > deadline) {
            fprintf(stderr,
                    "nh_compat_client: %s [%" PRId32 "]: at offset %" PRId64 " of %" PRId64
                    " after 60 s\n",
                    topic, part, next, hi);
            rc = 1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consume(rkt, part, 1000);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            fprintf(stderr, "nh_compat_client: %s [%" PRId32 "]: %s\n", topic, part,
                    rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        format_record(&line, m);
        write_all(outfd, &line);
        next = m->offset;
        (*count)++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consume_stop(rkt, part);
    rd_kafka_topic_destroy(rkt);
    free(line.p);
    return rc;
}

static int cmd_dump(const char *bootstrap, const char *outfile, int nparts, char **topics,
                    int ntopics)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "enable.partition.eof", "true");
    set(conf, "check.crcs", "true");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        die("rd_kafka_new: %s", err);
    FILE *f = fopen(outfile, "w");
    if (!f)
        die("%s: %s", outfile, strerror(errno));
    int rc = 0;
    for (int t = 0; t < ntopics; t++)
        for (int32_t p = 0; p < nparts; p++) {
            long n = 0;
            rc |= dump_partition(rk, topics[t], p, fileno(f), &n);
            fprintf(stderr, "nh_compat_client: %s [%" PRId32 "]: %ld records\n", topics[t], p, n);
        }
    fclose(f);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "create") == 0)
        return cmd_create(argv[2], atoi(argv[3]), argv + 4, argc - 4);
    if (argc == 7 && strcmp(argv[1], "produce") == 0)
        return cmd_produce(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), argv[6]);
    if (argc >= 6 && strcmp(argv[1], "dump") == 0)
        return cmd_dump(argv[2], argv[3], atoi(argv[4]), argv + 5, argc - 5);
    fprintf(stderr,
            "usage: %s create BOOTSTRAP NPARTS TOPIC...\n"
            "       %s produce BOOTSTRAP ACKFILE ID NPARTS TOPIC[,TOPIC...]\n"
            "       %s dump BOOTSTRAP OUTFILE NPARTS TOPIC...\n",
            argv[0], argv[0], argv[0]);
    return 2;
}
