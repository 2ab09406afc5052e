/*
 * nh_bench.c: the Kafka-client side of the benchmark (bench/run.sh), with
 * librdkafka.
 *
 *     nh-bench --bootstrap HOST:PORT [options]     a running endpoint
 *     nh-bench --mock [options]                    librdkafka's in-process mock cluster
 *
 * Phases (--phases, comma-separated), each on a topic of --partitions
 * partitions created first (CreateTopics; on the mock cluster its own API):
 *
 *  (warm-up) with --warmup-records N: N records produced to and read back
 *            from a topic of their own before the produce phase, untimed,
 *            so that a fresh process's first touch of its memory (heap,
 *            caches) is not counted, as it is not in a server that has been
 *            running a while.
 *  produce   --records values of --size bytes spread round-robin over the
 *            partitions, acks=all, linger.ms=--linger-ms, no compression;
 *            one record per partition is produced and flushed first so that
 *            connecting and metadata are not counted; timed from the first
 *            produce() to the last delivery report.
 *  consume   the same records read back from the start of every partition
 *            (assign(), no group join), right after producing them: the tail;
 *            timed from the first record received to the last.
 *  catchup   the same as consume, on --topic, written by an earlier run
 *            (bench/run.sh restarts the gateway in between: cold caches).
 *  latency   --rate values per second for --seconds on partition 0, acks=all,
 *            linger.ms=--latency-linger-ms; each record timed from
 *            produce() to its delivery report; the first --warmup records
 *            are not counted.
 *  half      the same at half the produce phase's records/s (or --half-rate).
 *  rss       the first --watch process's RSS (VmRSS) before and after a
 *            topic of --rss-partitions partitions is created (idle), then
 *            after --rss-records records went to every one of them (active).
 *
 * --watch NAME=PID (repeatable) names other processes (gateway, s3rver,
 * etcd): each phase reports their CPU seconds (utime + stime from
 * /proc/PID/stat) and this process's own ("client"), from the phase's start
 * to its end.  On the mock cluster the broker is a thread of this process,
 * so "client" holds both.  The throughput phases also report the share of
 * their timed seconds that this process's busiest thread ran
 * (client_thread_busy): near 1, one client thread is what the phase
 * waited for.
 *
 * Output: with --kv one KEY=VALUE per line (keys prefixed by the phase),
 * else the same as a list.  MB is 10^6 bytes; the bytes counted are the
 * values only.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *bootstrap;
static bool use_mock;
static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mcluster;
static long n_records = 200000;
static long value_size = 1024;
static int partitions = 1;
static const char *linger_ms = "5";
static long rate = 200;
static long half_rate;
static long seconds = 10;
static long warmup = 20;
static long warmup_records; /* untimed produce + consume before the produce phase */
static const char *latency_linger_ms = "0";
static const char *prefix = "nh-bench";
static const char *topic_opt;
static long rss_partitions = 10000;
static long rss_records = 5;
static bool kv;
static const char *debug; /* librdkafka debug contexts, or NULL */

#define MAX_WATCH 8
static const char *watch_name[MAX_WATCH];
static long watch_pid[MAX_WATCH];
static int n_watch;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nh-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void out(const char *phase, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf(kv ? "%s_%s=" : "%-8s %-22s ", phase, key);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

/* ---------------------------------------------------------------- processes */

/* utime + stime of @pid in seconds, or -1. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* After ')': state (field 3) ... utime is field 14, stime 15. */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* VmRSS of @pid in KiB, or -1. */
static long proc_rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

typedef struct cpu_snap {
    double client, w[MAX_WATCH];
} cpu_snap_t;

static cpu_snap_t cpu_now(void)
{
    cpu_snap_t s;
    s.client = self_cpu_s();
    for (int i = 0; i < n_watch; i++)
        s.w[i] = proc_cpu_s(watch_pid[i]);
    return s;
}

/* The CPU seconds each process spent since @a. */
static void out_cpu(const char *phase, cpu_snap_t a)
{
    cpu_snap_t b = cpu_now();
    out(phase, "cpu_client_s", "%.3f", b.client - a.client);
    for (int i = 0; i < n_watch; i++) {
        char k[64];
        snprintf(k, sizeof k, "cpu_%s_s", watch_name[i]);
        out(phase, k, "%.3f", b.w[i] - a.w[i]);
    }
}

/* The CPU time of each thread of this process (ns run, from
 * /proc/self/task/TID/schedstat): whether one client thread, not the
 * machine, is what a throughput phase waits for. */
#define MAX_THREADS 256

typedef struct thr_snap {
    int n;
    long tid[MAX_THREADS];
    long long ns[MAX_THREADS];
} thr_snap_t;

static void thr_now(thr_snap_t *s)
{
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && s->n < MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        long long ns;
        if (!f)
            continue;
        if (fscanf(f, "%lld", &ns) == 1) {
            s->tid[s->n] = atol(e->d_name);
            s->ns[s->n++] = ns;
        }
        fclose(f);
    }
    closedir(d);
}

/* The most CPU time (ns) one thread ran since @a (a thread started since
 * then counts from zero). */
static long long thr_busiest_ns(const thr_snap_t *a)
{
    thr_snap_t *b = malloc(sizeof *b);
    if (!b)
        return 0;
    thr_now(b);
    long long best = 0;
    for (int i = 0; i < b->n; i++) {
        long long d = b->ns[i];
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i])
                d -= a->ns[j];
        if (d > best)
            best = d;
    }
    free(b);
    return best;
}

/* The share of the phase's wall time the client's busiest thread ran,
 * @phase_s (for the mock cluster, its broker threads are the client's
 * too). */
static void out_thread(const char *phase, long long busiest_ns, double phase_s)
{
    if (phase_s > 0)
        out(phase, "client_thread_busy", "%.2f", (double)busiest_ns / 1e9 / phase_s);
}

/* ---------------------------------------------------------------- clients */

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

static void create_topic(const char *topic, int parts)
{
    if (use_mock) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mcluster, topic, parts, 1);
        if (e)
            die("mock topic %s: %s", topic, rd_kafka_err2str(e));
        return;
    }
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(), err, sizeof err);
    if (!rk)
        die("admin client: %s", err);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, parts, 1, err, sizeof err);
    if (!nt)
        die("topic %s: %s", topic, err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 120000, err, sizeof err);
    rd_kafka_AdminOptions_set_request_timeout(ao, 120000, err, sizeof err);
    rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 130000);
    if (!ev)
        die("CreateTopics %s: no answer", topic);
    if (rd_kafka_event_error(ev))
        die("CreateTopics %s: %s", topic, rd_kafka_event_error_string(ev));
    size_t n;
    const rd_kafka_topic_result_t **r =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(r[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            die("CreateTopics %s: %s", topic, rd_kafka_err2str(e));
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* ---------------------------------------------------------------- produce */

typedef struct prod_state {
    long delivered;
    long failed;
    rd_kafka_resp_err_t first_err;
    int64_t *lat_ns; /* latency phases: per message, indexed by the opaque */
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
    if (st->lat_ns && m->_private) {
        long i = (long)(intptr_t)m->_private - 1;
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
    set(conf, "queue.buffering.max.messages", "10000000");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("producer: %s", err);
    return rk;
}

/* produce() one value, waiting for queue room when the queue is full. */
static void produce_one(rd_kafka_t *rk, const char *topic, int32_t part, const char *val,
                        void *opaque)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
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
    if (rd_kafka_flush(rk, 300000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("flush: messages left after 300 s");
    if (st->failed)
        die("delivery failed: %s", rd_kafka_err2str(st->first_err));
}

static char *make_value(void)
{
    char *v = malloc((size_t)value_size);
    if (!v)
        die("out of memory");
    uint32_t x = 2463534242u;
    for (long i = 0; i < value_size; i++) { /* xorshift: no compressible pattern */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        v[i] = (char)('!' + x % 94);
    }
    return v;
}

static long long produce_busiest_ns; /* thr_busiest_ns of the last produce_n */

/* @n records over @parts partitions of @topic, after one per partition;
 * returns the seconds from the first produce() to the last report. */
static double produce_n(const char *topic, int parts, long n, const char *val)
{
    prod_state_t st = {0};
    rd_kafka_t *rk = new_producer(&st, linger_ms);
    for (int p = 0; p < parts; p++)
        produce_one(rk, topic, p, val, NULL);
    flush_all(rk, &st);
    st.delivered = 0;
    thr_snap_t *th = malloc(sizeof *th);
    if (!th)
        die("out of memory");
    thr_now(th);
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        produce_one(rk, topic, (int32_t)(i % parts), val, NULL);
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    flush_all(rk, &st);
    double s = (double)(now_ns() - t0) / 1e9;
    produce_busiest_ns = thr_busiest_ns(th);
    free(th);
    if (st.delivered != n)
        die("delivered %ld records of %ld", st.delivered, n);
    rd_kafka_destroy(rk);
    return s;
}

/* ---------------------------------------------------------------- consume */

typedef struct cons_result {
    double first_ms;      /* from assign() to the first record */
    double seconds;       /* from the first record to the last */
    long records;         /* records after the first */
    long bytes;           /* their value bytes */
    long long busiest_ns; /* the client's busiest thread, over those seconds */
} cons_result_t;

/* Read @want records from the start of every partition.  The clock starts
 * at the first record: librdkafka sometimes waits for a retry timer
 * (500 ms) when assign() races with its own metadata handling, which is
 * start-up, not throughput; the time to the first record is reported
 * apart. */
static cons_result_t consume_n(const char *topic, int parts, long want)
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
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    int64_t t_assign = now_ns(), t_first = 0, deadline = t_assign + 600 * 1000000000LL;
    rd_kafka_resp_err_t e;
    if ((e = rd_kafka_assign(rk, tp)))
        die("assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(tp);
    cons_result_t r = {0};
    long got = 0;
    thr_snap_t *th = calloc(1, sizeof *th);
    if (!th)
        die("out of memory");
    while (got < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (now_ns() > deadline)
                die("consume: %ld records of %ld after 600 s", got, want);
            continue;
        }
        if (m->err)
            die("consume: %s", rd_kafka_message_errstr(m));
        if (got++ == 0) {
            t_first = now_ns();
            thr_now(th);
        } else {
            r.records++;
            r.bytes += (long)m->len;
        }
        rd_kafka_message_destroy(m);
    }
    int64_t t_last = now_ns();
    r.busiest_ns = thr_busiest_ns(th);
    free(th);
    r.first_ms = (double)(t_first - t_assign) / 1e6;
    r.seconds = (double)(t_last - t_first) / 1e9;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return r;
}

/* The records the mock cluster still holds in @topic. */
static long mock_kept(const char *topic, int parts)
{
    char err[256];
    rd_kafka_conf_t *conf = base_conf();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("client: %s", err);
    long n = 0;
    for (int p = 0; p < parts; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (e)
            die("watermarks: %s", rd_kafka_err2str(e));
        n += (long)(hi - lo);
    }
    rd_kafka_destroy(rk);
    return n;
}

/* Read back what @topic holds; on the mock cluster only what it kept. */
static void consume_all(const char *topic, int parts, long produced)
{
    if (use_mock)
        (void)consume_n(topic, parts, mock_kept(topic, parts));
    else
        (void)consume_n(topic, parts, produced);
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
    double p50, p99, p999, max, mean, achieved;
    double p99_late; /* the p99 of the records due after the first second (-1: none) */
} lat_result_t;

/* @r records per second for --seconds on partition 0 of @topic. */
static lat_result_t produce_latency(const char *topic, long r_s, const char *val)
{
    long total = warmup + r_s * seconds;
    prod_state_t st = {0};
    st.lat_ns = calloc((size_t)total, sizeof *st.lat_ns);
    if (!st.lat_ns)
        die("out of memory");
    rd_kafka_t *rk = new_producer(&st, latency_linger_ms);
    produce_one(rk, topic, 0, val, NULL); /* connect and learn the leader first */
    flush_all(rk, &st);
    int64_t t0 = now_ns();
    long i = 0;
    while (i < total) {
        /* Every record due by now, each stamped when it is handed over. */
        long due = (long)((double)(now_ns() - t0) * (double)r_s / 1e9) + 1;
        if (due > total)
            due = total;
        for (; i < due; i++) {
            st.lat_ns[i] = now_ns();
            produce_one(rk, topic, 0, val, (void *)(intptr_t)(i + 1));
        }
        int64_t next = t0 + (int64_t)((double)i * 1e9 / (double)r_s);
        int64_t left = next - now_ns();
        rd_kafka_poll(rk, left > 0 ? (int)((left + 999999) / 1000000) : 0);
    }
    double sent_s = (double)(now_ns() - t0) / 1e9;
    flush_all(rk, &st);
    rd_kafka_destroy(rk);

    lat_result_t r = {0};
    r.n = total - warmup;
    r.achieved = (double)total / sent_s;
    int64_t *v = st.lat_ns + warmup;
    /* A new producer's first second at a high rate is the client warming up
     * (its memory first touched: the mock cluster's p99 shows it as much),
     * so the p99 from the second second on is reported beside the whole. */
    r.p99_late = -1;
    long from = r_s > warmup ? r_s : warmup;
    if (seconds >= 2 && from < total) { /* sorted in place: v is sorted whole below */
        qsort(st.lat_ns + from, (size_t)(total - from), sizeof *st.lat_ns, cmp_i64);
        r.p99_late = pct_ms(st.lat_ns + from, total - from, 99);
    }
    double sum = 0;
    for (long k = 0; k < r.n; k++)
        sum += (double)v[k];
    qsort(v, (size_t)r.n, sizeof *v, cmp_i64);
    r.p50 = pct_ms(v, r.n, 50);
    r.p99 = pct_ms(v, r.n, 99);
    r.p999 = pct_ms(v, r.n, 99.9);
    r.max = (double)v[r.n - 1] / 1e6;
    r.mean = sum / (double)r.n / 1e6;
    free(st.lat_ns);
    return r;
}

static void out_latency(const char *phase, long r_s, lat_result_t r)
{
    out(phase, "rate", "%ld", r_s);
    out(phase, "achieved_rate", "%.0f", r.achieved);
    out(phase, "count", "%ld", r.n);
    out(phase, "p50_ms", "%.3f", r.p50);
    out(phase, "p99_ms", "%.3f", r.p99);
    out(phase, "p999_ms", "%.3f", r.p999);
    out(phase, "max_ms", "%.3f", r.max);
    out(phase, "mean_ms", "%.3f", r.mean);
    if (r.p99_late >= 0)
        out(phase, "p99_after1s_ms", "%.3f", r.p99_late);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fputs("Usage: nh-bench (--bootstrap HOST:PORT | --mock) [options]\n"
          "  --phases LIST          of produce,consume,catchup,latency,half,rss\n"
          "                         (produce,consume,latency)\n"
          "  --records N            records for the throughput phases (200000)\n"
          "  --size BYTES           value size (1024)\n"
          "  --partitions N         partitions of the throughput topic (1)\n"
          "  --topic NAME           the throughput topic (default: a fresh name)\n"
          "  --linger-ms MS         producer linger.ms for throughput (5)\n"
          "  --rate N               records per second in the latency phase (200)\n"
          "  --half-rate N          records per second in the half phase\n"
          "                         (default: half of the produce phase's)\n"
          "  --seconds S            length of each latency phase (10)\n"
          "  --warmup N             latency records not counted (20)\n"
          "  --warmup-records N     records produced and read back untimed before\n"
          "                         the produce phase, on a topic of their own (0)\n"
          "  --latency-linger-ms MS producer linger.ms for latency (0)\n"
          "  --rss-partitions N     partitions of the rss phase's topic (10000)\n"
          "  --rss-records N        records per partition in the rss phase (5)\n"
          "  --watch NAME=PID       report the CPU time of PID per phase (repeatable)\n"
          "  --topic-prefix NAME    topic name prefix (nh-bench)\n"
          "  --kv                   KEY=VALUE lines\n"
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
        if (!strcmp(a, "--mock")) {
            use_mock = true;
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
        else if (!strcmp(a, "--partitions"))
            partitions = (int)num(a, v, 1);
        else if (!strcmp(a, "--topic"))
            topic_opt = v;
        else if (!strcmp(a, "--linger-ms"))
            linger_ms = v;
        else if (!strcmp(a, "--rate"))
            rate = num(a, v, 1);
        else if (!strcmp(a, "--half-rate"))
            half_rate = num(a, v, 1);
        else if (!strcmp(a, "--seconds"))
            seconds = num(a, v, 1);
        else if (!strcmp(a, "--warmup-records"))
            warmup_records = num(a, v, 0);
        else if (!strcmp(a, "--warmup"))
            warmup = num(a, v, 0);
        else if (!strcmp(a, "--latency-linger-ms"))
            latency_linger_ms = v;
        else if (!strcmp(a, "--rss-partitions"))
            rss_partitions = num(a, v, 1);
        else if (!strcmp(a, "--rss-records"))
            rss_records = num(a, v, 1);
        else if (!strcmp(a, "--watch")) {
            const char *eq = strchr(v, '=');
            if (!eq || n_watch == MAX_WATCH)
                die("bad --watch %s", v);
            watch_name[n_watch] = strndup(v, (size_t)(eq - v));
            watch_pid[n_watch++] = num(a, eq + 1, 1);
        } else if (!strcmp(a, "--topic-prefix"))
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
    if (!bootstrap == !use_mock) {
        usage(stderr);
        return 2;
    }
    if (use_mock) {
        char err[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!mock_rk)
            die("mock cluster handle: %s", err);
        mcluster = rd_kafka_mock_cluster_new(mock_rk, 1);
        if (!mcluster)
            die("no mock cluster");
        bootstrap = rd_kafka_mock_cluster_bootstraps(mcluster);
    }
    char tput[200], lat[200], rss[200];
    long run = (long)(now_ns() / 1000000 % 100000000);
    snprintf(tput, sizeof tput, "%s-tput-%d-%ld", prefix, partitions, run);
    snprintf(lat, sizeof lat, "%s-lat-%ld", prefix, run);
    snprintf(rss, sizeof rss, "%s-rss-%ld", prefix, run);
    const char *topic = topic_opt ? topic_opt : tput;
    char *val = make_value();
    bool do_p = strstr(phases, "produce"), do_c = strstr(phases, "consume"),
         do_cu = strstr(phases, "catchup"), do_l = strstr(phases, "latency"),
         do_h = strstr(phases, "half"), do_r = strstr(phases, "rss");
    if (do_c && !do_p)
        die("--phases consume needs produce (catchup reads an earlier run's --topic)");
    if (do_cu && !topic_opt)
        die("--phases catchup needs --topic");
    if (do_h && !do_p && !half_rate)
        die("--phases half needs produce or --half-rate");
    if (do_r && (use_mock || n_watch == 0))
        die("--phases rss needs --watch NAME=PID of the server");
    double mb = (double)n_records * (double)value_size / 1e6;

    out("run", "topic", "%s", topic);
    out("run", "partitions", "%d", partitions);
    out("run", "records", "%ld", n_records);
    out("run", "value_bytes", "%ld", value_size);
    fflush(stdout);
    double produce_rps = 0;
    if (do_p && warmup_records > 0) {
        char warm[220];
        snprintf(warm, sizeof warm, "%s-warmup", tput);
        create_topic(warm, partitions);
        (void)produce_n(warm, partitions, warmup_records, val);
        consume_all(warm, partitions, warmup_records + partitions);
    }
    if (do_p) {
        create_topic(topic, partitions);
        cpu_snap_t c = cpu_now();
        double s = produce_n(topic, partitions, n_records, val);
        produce_rps = (double)n_records / s;
        out("produce", "seconds", "%.3f", s);
        out("produce", "mb_s", "%.1f", mb / s);
        out("produce", "records_s", "%.0f", produce_rps);
        out("produce", "mb", "%.1f", mb);
        out_thread("produce", produce_busiest_ns, s);
        out_cpu("produce", c);
        fflush(stdout);
    }
    for (int k = 0; k < 2; k++) {
        const char *ph = k ? "catchup" : "consume";
        if (!(k ? do_cu : do_c))
            continue;
        cpu_snap_t c = cpu_now();
        cons_result_t cr = {0};
        if (!use_mock) {
            cr = consume_n(topic, partitions, n_records + partitions);
        } else {
            /* The mock cluster keeps only the newest few MB of a partition:
             * read what it kept, again and again, until as many bytes were
             * read as were produced. */
            long kept = mock_kept(topic, partitions);
            while (cr.bytes < n_records * value_size) {
                cons_result_t one = consume_n(topic, partitions, kept);
                cr.seconds += one.seconds, cr.records += one.records, cr.bytes += one.bytes;
                cr.busiest_ns += one.busiest_ns;
                cr.first_ms = one.first_ms;
            }
        }
        out(ph, "seconds", "%.3f", cr.seconds);
        out(ph, "mb_s", "%.1f", (double)cr.bytes / 1e6 / cr.seconds);
        out(ph, "records_s", "%.0f", (double)cr.records / cr.seconds);
        out(ph, "first_ms", "%.1f", cr.first_ms);
        out(ph, "mb", "%.1f", (double)(cr.bytes + value_size) / 1e6);
        out_thread(ph, cr.busiest_ns, cr.seconds);
        out_cpu(ph, c);
        fflush(stdout);
    }
    if (do_l || do_h)
        create_topic(lat, 1);
    if (do_l) {
        cpu_snap_t c = cpu_now();
        lat_result_t lr = produce_latency(lat, rate, val);
        out_latency("latency", rate, lr);
        out_cpu("latency", c);
        fflush(stdout);
    }
    if (do_h) {
        long r = half_rate ? half_rate : (long)(produce_rps / 2);
        if (r < 1)
            r = 1;
        cpu_snap_t c = cpu_now();
        lat_result_t lr = produce_latency(lat, r, val);
        out_latency("half", r, lr);
        out_cpu("half", c);
        fflush(stdout);
    }
    if (do_r) {
        long before = proc_rss_kib(watch_pid[0]);
        create_topic(rss, (int)rss_partitions);
        /* The partitions as a client sees them: one metadata request. */
        prod_state_t st = {0};
        rd_kafka_t *rk = new_producer(&st, linger_ms);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, rss, NULL);
        const rd_kafka_metadata_t *md;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 60000);
        if (e)
            die("metadata: %s", rd_kafka_err2str(e));
        if (md->topic_cnt != 1 || md->topics[0].partition_cnt != rss_partitions)
            die("metadata: the rss topic has not %ld partitions", rss_partitions);
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        sleep(2);
        long idle = proc_rss_kib(watch_pid[0]);
        cpu_snap_t c = cpu_now();
        for (long i = 0; i < rss_records * rss_partitions; i++) {
            produce_one(rk, rss, (int32_t)(i % rss_partitions), val, NULL);
            if ((i & 1023) == 0)
                rd_kafka_poll(rk, 0);
        }
        flush_all(rk, &st);
        rd_kafka_destroy(rk);
        long active = proc_rss_kib(watch_pid[0]);
        out("rss", "partitions", "%ld", rss_partitions);
        out("rss", "before_kib", "%ld", before);
        out("rss", "idle_kib", "%ld", idle);
        out("rss", "active_kib", "%ld", active);
        out("rss", "idle_per_partition_b", "%.0f",
            (double)(idle - before) * 1024 / (double)rss_partitions);
        out("rss", "active_per_partition_b", "%.0f",
            (double)(active - before) * 1024 / (double)rss_partitions);
        out("rss", "mb", "%.1f", (double)(rss_records * rss_partitions * value_size) / 1e6);
        out_cpu("rss", c);
    }
    free(val);
    if (mcluster) {
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(mock_rk);
    }
    return 0;
}
