/*
 * nh_bench.c: a first benchmark of a Kafka endpoint with librdkafka.
 *
 *     nh-bench --bootstrap HOST:PORT [options]
 *
 * Three phases, each on a topic of its own (auto-created; the names carry
 * a per-run suffix so that a gateway can be reused):
 *
 *  1. produce throughput: --records values of --size bytes, acks=all,
 *     linger.ms=--linger-ms, no compression, batch.size left at its
 *     default; timed from the first produce() to the last delivery report.
 *  2. consume throughput: the same records read back from the first one
 *     (assign(), no group join); timed from the first record received to
 *     the last (the time from assign() to the first record is reported
 *     apart: it is client start-up).
 *  3. produce latency: --rate values per second for --seconds, acks=all,
 *     linger.ms=--latency-linger-ms; each record's time from produce() to
 *     its delivery report.  The first --warmup records are not counted.
 *
 * Output: a table on stdout, or with --kv one KEY=VALUE per line.
 * MB is 10^6 bytes; the bytes counted are the values only.
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *bootstrap;
static long n_records = 200000;
static long value_size = 1024;
static const char *linger_ms = "5";
static long rate = 200;
static long seconds = 10;
static long warmup = 20;
static const char *latency_linger_ms = "0";
static const char *prefix = "nh-bench";
static bool kv;
static const char *debug; /* librdkafka debug contexts, or NULL */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "nh-bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("config: %s", err);
}

/* A client configuration with the settings every phase shares. */
static rd_kafka_conf_t *base_conf(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    if (debug)
        set(conf, "debug", debug);
    return conf;
}

/* ---------------------------------------------------------------- produce */

typedef struct prod_state {
    long delivered;
    long failed;
    rd_kafka_resp_err_t first_err;
    /* latency phase */
    int64_t *lat_ns; /* per message, indexed by the opaque */
} prod_state_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    prod_state_t *st = opaque;
    int64_t t = now_ns();
    if (m->err) {
        if (!st->failed++)
            st->first_err = m->err;
        return;
    }
    st->delivered++;
    if (st->lat_ns) {
        long i = (long)(intptr_t)m->_private;
        st->lat_ns[i] = t - st->lat_ns[i];
    }
}

static rd_kafka_t *new_producer(prod_state_t *st, const char *linger)
{
    char err[256];
    rd_kafka_conf_t *conf = base_conf();
    set(conf, "acks", "all");
    set(conf, "linger.ms", linger);
    set(conf, "compression.type", "none");
    set(conf, "queue.buffering.max.kbytes", "1048576");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("producer: %s", err);
    return rk;
}

/* produce() one value, waiting for queue room when the queue is full. */
static void produce_one(rd_kafka_t *rk, const char *topic, const char *val, void *opaque)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                              RD_KAFKA_V_VALUE((void *)val, (size_t)value_size),
                              RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            die("produce: %s", rd_kafka_err2str(e));
        rd_kafka_poll(rk, 10);
    }
}

static void flush_all(rd_kafka_t *rk, prod_state_t *st)
{
    if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("flush: %s", "messages left after 120 s");
    if (st->failed)
        die("delivery failed: %s", rd_kafka_err2str(st->first_err));
}

static char *make_value(void)
{
    char *v = malloc((size_t)value_size);
    if (!v)
        die("%s", "out of memory");
    uint32_t x = 2463534242u;
    for (long i = 0; i < value_size; i++) { /* xorshift: no compressible pattern */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        v[i] = (char)('!' + x % 94);
    }
    return v;
}

/* Phase 1; returns elapsed seconds. */
static double produce_throughput(const char *topic, const char *val)
{
    prod_state_t st = {0};
    rd_kafka_t *rk = new_producer(&st, linger_ms);
    /* One record first: connection, metadata and topic creation are not
     * part of the measurement. */
    produce_one(rk, topic, val, NULL);
    flush_all(rk, &st);
    st.delivered = 0;
    int64_t t0 = now_ns();
    for (long i = 0; i < n_records; i++) {
        produce_one(rk, topic, val, NULL);
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    flush_all(rk, &st);
    double s = (double)(now_ns() - t0) / 1e9;
    if (st.delivered != n_records)
        die("delivered %s records, not all", "fewer");
    rd_kafka_destroy(rk);
    return s;
}

/* ---------------------------------------------------------------- consume */

typedef struct cons_result {
    double first_ms; /* from assign() to the first record */
    double seconds;  /* from the first record to the last */
    long records;    /* records after the first */
    long bytes;      /* their value bytes */
} cons_result_t;

/* Phase 2: read @want records from offset 0.  The clock starts at the
 * first record: librdkafka sometimes waits for a retry timer (500 ms) when
 * assign() races with its own metadata handling, which is start-up, not
 * throughput; the time to the first record is reported apart. */
static cons_result_t consume_throughput(const char *topic, long want)
{
    char err[256];
    rd_kafka_conf_t *conf = base_conf();
    set(conf, "group.id", "nh-bench");
    set(conf, "enable.auto.commit", "false");
    set(conf, "enable.partition.eof", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        die("consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    int64_t lo, hi;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000);
    if (e)
        die("watermarks: %s", rd_kafka_err2str(e));
    if (hi - lo < want)
        die("topic holds fewer records than %s", "produced");

    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    int64_t t_assign = now_ns(), t_first = 0, deadline = t_assign + 300 * 1000000000LL;
    if ((e = rd_kafka_assign(rk, tp)))
        die("assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(tp);
    cons_result_t r = {0};
    long got = 0;
    while (got < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (now_ns() > deadline)
                die("consume: %s", "timed out");
            continue;
        }
        if (m->err)
            die("consume: %s", rd_kafka_message_errstr(m));
        if (got++ == 0) {
            t_first = now_ns();
        } else {
            r.records++;
            r.bytes += (long)m->len;
        }
        rd_kafka_message_destroy(m);
    }
    int64_t t_last = now_ns();
    r.first_ms = (double)(t_first - t_assign) / 1e6;
    r.seconds = (double)(t_last - t_first) / 1e9;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return r;
}

/* ---------------------------------------------------------------- latency */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *sorted, long n, double p)
{
    long i = (long)(p / 100.0 * (double)n + 0.999999) - 1; /* nearest rank */
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return (double)sorted[i] / 1e6;
}

typedef struct lat_result {
    long n;
    double p50, p90, p99, max, mean;
} lat_result_t;

static lat_result_t produce_latency(const char *topic, const char *val)
{
    long total = warmup + rate * seconds;
    prod_state_t st = {0};
    st.lat_ns = calloc((size_t)total, sizeof *st.lat_ns);
    if (!st.lat_ns)
        die("%s", "out of memory");
    rd_kafka_t *rk = new_producer(&st, latency_linger_ms);
    int64_t interval = 1000000000LL / rate, next = now_ns();
    for (long i = 0; i < total; i++) {
        for (;;) { /* serve delivery reports until it is time to send */
            int64_t left = next - now_ns();
            if (left <= 0)
                break;
            rd_kafka_poll(rk, (int)((left + 999999) / 1000000));
        }
        st.lat_ns[i] = now_ns();
        produce_one(rk, topic, val, (void *)(intptr_t)i);
        rd_kafka_poll(rk, 0);
        next += interval;
    }
    flush_all(rk, &st);
    rd_kafka_destroy(rk);

    lat_result_t r = {0};
    r.n = total - warmup;
    int64_t *v = st.lat_ns + warmup;
    double sum = 0;
    for (long i = 0; i < r.n; i++)
        sum += (double)v[i];
    qsort(v, (size_t)r.n, sizeof *v, cmp_i64);
    r.p50 = pct_ms(v, r.n, 50);
    r.p90 = pct_ms(v, r.n, 90);
    r.p99 = pct_ms(v, r.n, 99);
    r.max = (double)v[r.n - 1] / 1e6;
    r.mean = sum / (double)r.n / 1e6;
    free(st.lat_ns);
    return r;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fputs("Usage: nh-bench --bootstrap HOST:PORT [options]\n"
          "  --records N            records for the throughput phases (200000)\n"
          "  --size BYTES           value size (1024)\n"
          "  --linger-ms MS         producer linger.ms for throughput (5)\n"
          "  --rate N               records per second in the latency phase (200)\n"
          "  --seconds S            length of the latency phase (10)\n"
          "  --warmup N             latency records not counted (20)\n"
          "  --latency-linger-ms MS producer linger.ms for latency (0)\n"
          "  --topic-prefix NAME    topic name prefix (nh-bench)\n"
          "  --phases LIST          any of produce,consume,latency (all)\n"
          "  --kv                   KEY=VALUE lines instead of a table\n"
          "  --debug CONTEXTS       librdkafka debug contexts (to stderr)\n",
          f);
}

static long num(const char *opt, const char *s, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min)
        die("bad value for %s", opt);
    return v;
}

int main(int argc, char **argv)
{
    const char *phases = "produce,consume,latency";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--kv")) {
            kv = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--bootstrap"))
            bootstrap = v;
        else if (!strcmp(a, "--records"))
            n_records = num(a, v, 1);
        else if (!strcmp(a, "--size"))
            value_size = num(a, v, 1);
        else if (!strcmp(a, "--linger-ms"))
            linger_ms = v;
        else if (!strcmp(a, "--rate"))
            rate = num(a, v, 1);
        else if (!strcmp(a, "--seconds"))
            seconds = num(a, v, 1);
        else if (!strcmp(a, "--warmup"))
            warmup = num(a, v, 0);
        else if (!strcmp(a, "--latency-linger-ms"))
            latency_linger_ms = v;
        else if (!strcmp(a, "--topic-prefix"))
            prefix = v;
        else if (!strcmp(a, "--phases"))
            phases = v;
        else if (!strcmp(a, "--debug"))
            debug = v;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!bootstrap) {
        usage(stderr);
        return 2;
    }
    char tput[200], lat[200];
    long run = (long)(now_ns() / 1000000 % 100000000);
    snprintf(tput, sizeof tput, "%s-tput-%ld", prefix, run);
    snprintf(lat, sizeof lat, "%s-lat-%ld", prefix, run);
    char *val = make_value();
    double mb = (double)n_records * (double)value_size / 1e6;

    double ps = 0;
    cons_result_t cr = {0};
    lat_result_t lr = {0};
    bool do_p = strstr(phases, "produce"), do_c = strstr(phases, "consume"),
         do_l = strstr(phases, "latency");
    if (do_c && !do_p)
        die("%s", "--phases consume needs produce");
    if (do_p)
        ps = produce_throughput(tput, val);
    if (do_c)
        cr = consume_throughput(tput, n_records + 1);
    if (do_l)
        lr = produce_latency(lat, val);
    free(val);

    if (kv) {
        printf("records=%ld\nvalue_bytes=%ld\n", n_records, value_size);
        if (do_p)
            printf("produce_seconds=%.3f\nproduce_mb_s=%.1f\nproduce_records_s=%.0f\n", ps, mb / ps,
                   (double)n_records / ps);
        if (do_c)
            printf("consume_seconds=%.3f\nconsume_mb_s=%.1f\nconsume_records_s=%.0f\n"
                   "consume_first_ms=%.1f\n",
                   cr.seconds, (double)cr.bytes / 1e6 / cr.seconds, (double)cr.records / cr.seconds,
                   cr.first_ms);
        if (do_l)
            printf("latency_rate=%ld\nlatency_count=%ld\nlatency_p50_ms=%.2f\n"
                   "latency_p90_ms=%.2f\nlatency_p99_ms=%.2f\nlatency_max_ms=%.2f\n"
                   "latency_mean_ms=%.2f\n",
                   rate, lr.n, lr.p50, lr.p90, lr.p99, lr.max, lr.mean);
        return 0;
    }
    printf("%-34s %s\n", "measurement", "result");
    if (do_p)
        printf("%-34s %.1f MB/s (%.0f records/s, %.2f s)\n", "produce, acks=all, 1 topic-partition",
               mb / ps, (double)n_records / ps, ps);
    if (do_c)
        printf("%-34s %.1f MB/s (%.0f records/s, %.2f s; first record after %.0f ms)\n",
               "consume from the start", (double)cr.bytes / 1e6 / cr.seconds,
               (double)cr.records / cr.seconds, cr.seconds, cr.first_ms);
    if (do_l)
        printf("%-34s p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms (n=%ld)\n",
               "produce latency, acks=all", lr.p50, lr.p90, lr.p99, lr.max, lr.mean, lr.n);
    return 0;
}
