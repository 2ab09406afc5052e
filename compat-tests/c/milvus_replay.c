/*
 * milvus_replay.c: Milvus 2.5's use of Kafka, replayed with librdkafka.
 *
 *   nh_compat_milvus_replay run BOOTSTRAP PREFIX SECONDS MIN_MIB MIN_BIG STATEFILE
 *       Produce to the 16 channels PREFIX-rootcoord-dml_0 .. _15 for at least
 *       SECONDS, until at least MIN_MIB MiB and MIN_BIG messages of 10 MiB
 *       have been delivered, while consumers read them back; then write what
 *       was delivered to STATEFILE.
 *   nh_compat_milvus_replay verify BOOTSTRAP PREFIX STATEFILE
 *       Read every channel from the earliest offset and check it holds
 *       exactly what STATEFILE says was delivered (after a restart).
 *
 * The client settings are Milvus 2.5's (pkg/mq/msgstream/mqwrapper/kafka):
 * common api.version.request=true, reconnect.backoff.ms=20,
 * reconnect.backoff.max.ms=5000; producer message.max.bytes=10485760,
 * compression.codec=zstd, linger.ms=2, acks and idempotence left at their
 * defaults (all, off); consumer group.id, enable.auto.commit=false,
 * allow.auto.create.topics=true, auto.offset.reset.  Nothing else is set.
 *
 * What the run does, as Milvus does it:
 *  - one producer for all channels, partition 0 only; each channel sends its
 *    next message only once the previous one is delivered; no channel is
 *    created explicitly: channels 8..15 are first named by a consumer's
 *    assignment (Metadata with allow_auto_topic_creation from a consumer;
 *    the run checks they exist before anything is produced to them),
 *    channels 0..7 by the producer;
 *  - a time tick of ~100 bytes every 200 ms on every channel; inserts from
 *    1 KiB to ~2.5 MiB at a byte rate that reaches MIN_MIB in SECONDS, and
 *    MIN_BIG messages of 10 MiB (10485760 - 1024 bytes of value: the producer's
 *    message.max.bytes=10485760 counts the record and batch overhead too)
 *    spread over the run; every message carries
 *    headers (as Milvus's message properties) and no key;
 *  - two consumers tail all 16 channels from the earliest offset; every 2 s
 *    a new consumer (its own group.id, never joining) assigns one channel at
 *    the earliest offset, at latest-minus-one (from a watermark query) or at
 *    a saved offset (assign, then seek), polls a few messages and closes;
 *    watermarks of a channel are queried every 250 ms.
 * Every message read is checked: its offset (a channel's messages are at
 * offsets 0, 1, 2, ... in the order sent: the offset is Milvus's message
 * id), its payload byte for byte, its headers, its missing key.  The
 * delivery reports must give those offsets too.
 *
 * Exit status: 0 on success, 1 on failure, 2 for a bad command line.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define NCH 16
#define TICK_MS 200
#define BIG_SIZE (10485760 - 1024)
#define QCAP 4096

enum { K_TICK, K_INSERT, K_BIG };
static const char *const kind_name[] = {"TimeTick", "Insert", "Insert"};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "milvus_replay: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stdout);
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

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ messages */

/* What a channel's message at one offset is: its size and kind. */
typedef struct msg_desc {
    uint32_t size;
    uint8_t kind;
} msg_desc_t;

typedef struct channel {
    char topic[256];
    char vchannel[300];
    msg_desc_t *msgs; /* by offset; written before it is sent */
    size_t cap;
    _Atomic int64_t delivered; /* messages delivered (= next offset) */
    _Atomic int64_t sent;      /* messages handed to the producer */
    int inflight;
    /* waiting to be sent, in order */
    msg_desc_t q[QCAP];
    size_t qhead, qlen;
    int64_t next_tick;
    int64_t sent_at;
} channel_t;

static channel_t ch[NCH];
static char prefix_g[128];

/* The payload of channel @c's message at offset @off: a text line naming it,
 * then pseudo-random bytes (inserts: 4 KiB random, 4 KiB of a repeated
 * pattern, so zstd has something to do; ticks and 10 MiB messages: all
 * random). */
static void gen_payload(int c, int64_t off, const msg_desc_t *d, unsigned char *buf)
{
    char line[128];
    int n = snprintf(line, sizeof line, "milvus-replay ch=%d off=%" PRId64 " kind=%d size=%u\n", c,
                     off, d->kind, d->size);
    size_t head = (size_t)n < d->size ? (size_t)n : d->size;
    memcpy(buf, line, head);
    uint64_t s = ((uint64_t)c << 48) ^ (uint64_t)off ^ 0x5eedULL;
    for (size_t i = head; i < d->size;) {
        size_t block = d->size - i < 4096 ? d->size - i : 4096;
        if (d->kind == K_INSERT && ((i / 4096) & 1)) {
            for (size_t j = 0; j < block; j++)
                buf[i + j] = (unsigned char)("0.125,-3.5,"[(i + j) % 11]);
        } else {
            for (size_t j = 0; j < block; j += 8) {
                uint64_t r = splitmix(&s);
                size_t k = block - j < 8 ? block - j : 8;
                memcpy(buf + i + j, &r, k);
            }
        }
        i += block;
    }
}

/* The headers of channel @c's message at @off, as Milvus's properties. */
#define MAXH 4
typedef struct hdrset {
    int n;
    const char *name[MAXH];
    char val[MAXH][320];
} hdrset_t;

static void gen_headers(int c, int64_t off, const msg_desc_t *d, hdrset_t *h)
{
    h->n = 0;
    h->name[h->n] = "_t";
    snprintf(h->val[h->n++], sizeof h->val[0], "%s", kind_name[d->kind]);
    h->name[h->n] = "_tt";
    snprintf(h->val[h->n++], sizeof h->val[0], "%" PRIu64,
             ((uint64_t)456789 << 18) + (uint64_t)off * 7919 + (uint64_t)c);
    h->name[h->n] = "_vc";
    snprintf(h->val[h->n++], sizeof h->val[0], "%s_%dv0", ch[c].topic, 450000 + c);
    if (d->kind != K_TICK) {
        h->name[h->n] = "_cid";
        snprintf(h->val[h->n++], sizeof h->val[0], "%d", 450000 + c);
    }
}

static unsigned char *check_buf;

/* Check that @m is channel @c's message at offset @want. */
static void check_message(const rd_kafka_message_t *m, int c, int64_t want, const char *who)
{
    if (m->err)
        die("%s: %s [0] at %" PRId64 ": %s", who, ch[c].topic, want, rd_kafka_message_errstr(m));
    if (strcmp(rd_kafka_topic_name(m->rkt), ch[c].topic) != 0 || m->partition != 0)
        die("%s: got %s [%d], expected %s [0]", who, rd_kafka_topic_name(m->rkt), m->partition,
            ch[c].topic);
    if (m->offset != want)
        die("%s: %s: offset %" PRId64 ", expected %" PRId64, who, ch[c].topic, m->offset, want);
    /* A message may be read before its delivery report is served, never
     * before it was sent. */
    if (want >= atomic_load(&ch[c].sent))
        die("%s: %s: offset %" PRId64 " read, %" PRId64 " messages sent", who, ch[c].topic, want,
            atomic_load(&ch[c].sent));
    const msg_desc_t *d = &ch[c].msgs[want];
    if (m->key)
        die("%s: %s@%" PRId64 ": a key, expected none", who, ch[c].topic, want);
    if (m->len != d->size)
        die("%s: %s@%" PRId64 ": %zu bytes, expected %u", who, ch[c].topic, want, m->len, d->size);
    gen_payload(c, want, d, check_buf);
    if (memcmp(m->payload, check_buf, d->size) != 0)
        die("%s: %s@%" PRId64 ": payload differs", who, ch[c].topic, want);
    hdrset_t h;
    gen_headers(c, want, d, &h);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs)
        die("%s: %s@%" PRId64 ": no headers", who, ch[c].topic, want);
    if (rd_kafka_header_cnt(hdrs) != (size_t)h.n)
        die("%s: %s@%" PRId64 ": %zu headers, expected %d", who, ch[c].topic, want,
            rd_kafka_header_cnt(hdrs), h.n);
    for (int i = 0; i < h.n; i++) {
        const char *name;
        const void *val;
        size_t vlen;
        if (rd_kafka_header_get_all(hdrs, (size_t)i, &name, &val, &vlen) != 0 ||
            strcmp(name, h.name[i]) != 0 || vlen != strlen(h.val[i]) ||
            memcmp(val, h.val[i], vlen) != 0)
            die("%s: %s@%" PRId64 ": header %d differs", who, ch[c].topic, want, i);
    }
}

static int channel_of(const char *topic)
{
    for (int c = 0; c < NCH; c++)
        if (strcmp(topic, ch[c].topic) == 0)
            return c;
    return -1;
}

/* ------------------------------------------------------------ clients */

static const char *bootstrap_g;

static void common_conf(rd_kafka_conf_t *conf)
{
    set(conf, "bootstrap.servers", bootstrap_g);
    set(conf, "api.version.request", "true");
    set(conf, "reconnect.backoff.ms", "20");
    set(conf, "reconnect.backoff.max.ms", "5000");
}

static rd_kafka_t *new_consumer(const char *reset)
{
    static int seq;
    char err[512], group[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    common_conf(conf);
    snprintf(group, sizeof group, "%s-sub-%d-%d", prefix_g, (int)getpid(), seq++);
    set(conf, "group.id", group);
    set(conf, "enable.auto.commit", "false");
    set(conf, "allow.auto.create.topics", "true");
    set(conf, "auto.offset.reset", reset);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        die("consumer: %s", err);
    return rk;
}

static void assign(rd_kafka_t *rk, int from, int to, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(to - from);
    for (int c = from; c < to; c++)
        rd_kafka_topic_partition_list_add(l, ch[c].topic, 0)->offset = offset;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    if (e)
        die("assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

static void close_consumer(rd_kafka_t *rk)
{
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Does the gateway list every channel in [from, to) (a Metadata request for
 * all topics, which creates nothing)? */
static int channels_exist(rd_kafka_t *rk, int from, int to)
{
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    int found = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        int c = channel_of(md->topics[i].topic);
        if (c >= from && c < to && md->topics[i].err == 0 && md->topics[i].partition_cnt == 1)
            found++;
    }
    rd_kafka_metadata_destroy(md);
    return found == to - from;
}

/* ------------------------------------------------------------ statistics */

static struct {
    _Atomic int64_t bytes, msgs, big, ticks, inserts;
    _Atomic int64_t max_delivery_ms;
    _Atomic int64_t tailed, seek_earliest, seek_latest, seek_saved, seek_msgs, watermarks;
} st;

/* ------------------------------------------------------------ producer */

static _Atomic int64_t producing_done; /* when, or 0 */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    int c = (int)(intptr_t)m->_private;
    channel_t *k = &ch[c];
    int64_t want = atomic_load(&k->delivered);
    if (m->err)
        die("delivery to %s at %" PRId64 " failed: %s", k->topic, want, rd_kafka_err2str(m->err));
    if (m->partition != 0 || m->offset != want)
        die("delivery to %s: partition %d offset %" PRId64 ", expected partition 0 offset %" PRId64,
            k->topic, m->partition, m->offset, want);
    int64_t took = now_ms() - k->sent_at;
    if (took > atomic_load(&st.max_delivery_ms))
        atomic_store(&st.max_delivery_ms, took);
    const msg_desc_t *d = &k->msgs[want];
    atomic_fetch_add(&st.bytes, d->size);
    atomic_fetch_add(&st.msgs, 1);
    atomic_fetch_add(d->kind == K_TICK ? &st.ticks : d->kind == K_BIG ? &st.big : &st.inserts, 1);
    k->inflight = 0;
    atomic_store(&k->delivered, want + 1);
}

static void enqueue(int c, int kind, uint32_t size)
{
    channel_t *k = &ch[c];
    if (k->qlen == QCAP)
        die("%s: %d messages waiting; the producer fell behind", k->topic, QCAP);
    k->q[(k->qhead + k->qlen++) % QCAP] = (msg_desc_t){.size = size, .kind = (uint8_t)kind};
}

static unsigned char *send_buf;

static void send_next(rd_kafka_t *rk, int c)
{
    channel_t *k = &ch[c];
    /* The consumer thread reads msgs[0 .. delivered): the array is made
     * large enough at the start, never moved. */
    if ((size_t)k->sent >= k->cap)
        die("%s: more than %zu messages", k->topic, k->cap);
    msg_desc_t d = k->q[k->qhead];
    k->qhead = (k->qhead + 1) % QCAP;
    k->qlen--;
    k->msgs[k->sent] = d;
    gen_payload(c, k->sent, &d, send_buf);
    hdrset_t h;
    gen_headers(c, k->sent, &d, &h);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new((size_t)h.n);
    for (int i = 0; i < h.n; i++)
        rd_kafka_header_add(hdrs, h.name[i], -1, h.val[i], -1);
    k->sent_at = now_ms();
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_PARTITION(0),
                                  RD_KAFKA_V_VALUE(send_buf, d.size),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE((void *)(intptr_t)c),
                                  RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
    if (e)
        die("produce to %s (%u bytes): %s", k->topic, d.size, rd_kafka_err2str(e));
    atomic_store(&k->sent, k->sent + 1);
    k->inflight = 1;
}

static uint32_t insert_size(uint64_t *rng)
{
    uint64_t r = splitmix(rng) % 100;
    if (r < 40)
        return 1024 + (uint32_t)(splitmix(rng) % (15 * 1024));
    if (r < 70)
        return 64 * 1024 + (uint32_t)(splitmix(rng) % (448 * 1024));
    return 1536 * 1024 + (uint32_t)(splitmix(rng) % (1024 * 1024));
}

/* ------------------------------------------------------------ consumers */

static rd_kafka_t *tailer[2];
static int64_t tail_next[NCH];

static void poll_tailer(int t, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(tailer[t], timeout_ms);
    if (!m)
        return;
    if (m->err)
        die("tailer %d: %s", t, rd_kafka_message_errstr(m));
    int c = channel_of(rd_kafka_topic_name(m->rkt));
    if (c < 0 || c / 8 != 1 - t)
        die("tailer %d: message of %s", t, rd_kafka_topic_name(m->rkt));
    check_message(m, c, tail_next[c]++, "tailer");
    atomic_fetch_add(&st.tailed, 1);
    rd_kafka_message_destroy(m);
}

/* Poll @rk for the message of channel @c at @off (30 s at most). */
static void read_one(rd_kafka_t *rk, int c, int64_t off, const char *who)
{
    int64_t deadline = now_ms() + 30000;
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) {
            check_message(m, c, off, who);
            rd_kafka_message_destroy(m);
            atomic_fetch_add(&st.seek_msgs, 1);
            return;
        }
        if (now_ms() > deadline)
            die("%s: %s@%" PRId64 " not read within 30 s", who, ch[c].topic, off);
    }
}

/* Watermarks of channel @c: low 0, high between what was delivered before
 * the query and what was sent after it. */
static int64_t query_watermarks(rd_kafka_t *rk, int c)
{
    int64_t before = atomic_load(&ch[c].delivered), lo, hi;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, ch[c].topic, 0, &lo, &hi, 10000);
    if (e)
        die("watermarks of %s: %s", ch[c].topic, rd_kafka_err2str(e));
    int64_t after = atomic_load(&ch[c].delivered);
    if (lo != 0 || hi < before || hi > after + 1)
        die("watermarks of %s: %" PRId64 "..%" PRId64 ", delivered %" PRId64 "..%" PRId64,
            ch[c].topic, lo, hi, before, after);
    atomic_fetch_add(&st.watermarks, 1);
    return hi;
}

/* One subscription as Milvus makes it: a new consumer, one channel,
 * partition 0 at @pos (0 earliest, 1 latest-minus-one, 2 a saved offset). */
static void seeker(int c, int pos, uint64_t *rng)
{
    int64_t avail = atomic_load(&ch[c].delivered);
    if (avail < 1)
        return;
    rd_kafka_t *rk = new_consumer(pos == 1 ? "latest" : "earliest");
    int64_t from, n;
    if (pos == 0) {
        assign(rk, c, c + 1, RD_KAFKA_OFFSET_BEGINNING);
        from = 0;
        n = avail < 3 ? avail : 3;
        atomic_fetch_add(&st.seek_earliest, 1);
    } else if (pos == 1) {
        from = query_watermarks(rk, c) - 1;
        assign(rk, c, c + 1, from);
        n = 1;
        atomic_fetch_add(&st.seek_latest, 1);
    } else {
        from = (int64_t)(splitmix(rng) % (uint64_t)avail);
        assign(rk, c, c + 1, from);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, ch[c].topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_seek(rkt, 0, from, 10000);
        if (e)
            die("seek %s to %" PRId64 ": %s", ch[c].topic, from, rd_kafka_err2str(e));
        rd_kafka_topic_destroy(rkt);
        n = avail - from < 5 ? avail - from : 5;
        atomic_fetch_add(&st.seek_saved, 1);
    }
    for (int64_t i = 0; i < n; i++)
        read_one(rk, c, from + i, pos == 0 ? "earliest" : pos == 1 ? "latest-1" : "saved");
    close_consumer(rk);
}

static void *consumer_main(void *arg)
{
    (void)arg;
    uint64_t rng = 77;
    int64_t next_seek = now_ms() + 2000, next_wm = now_ms() + 250;
    rd_kafka_t *wm = new_consumer("earliest");
    int pos = 0;
    for (;;) {
        for (int t = 0; t < 2; t++)
            poll_tailer(t, 20);
        int64_t now = now_ms();
        if (now >= next_wm) {
            query_watermarks(wm, (int)(splitmix(&rng) % NCH));
            next_wm = now + 250;
        }
        if (now >= next_seek) {
            seeker((int)(splitmix(&rng) % NCH), pos, &rng);
            pos = (pos + 1) % 3;
            next_seek = now_ms() + 2000;
        }
        if (atomic_load(&producing_done)) {
            int behind = 0;
            for (int c = 0; c < NCH; c++)
                behind += tail_next[c] < atomic_load(&ch[c].delivered);
            if (!behind)
                break;
            if (now > atomic_load(&producing_done) + 120000)
                die("tailers: %d channels not read to their end 120 s after the last delivery",
                    behind);
        }
    }
    close_consumer(wm);
    return NULL;
}

/* ------------------------------------------------------------ run */

static void init_channels(const char *prefix, size_t cap)
{
    snprintf(prefix_g, sizeof prefix_g, "%s", prefix);
    for (int c = 0; c < NCH; c++) {
        snprintf(ch[c].topic, sizeof ch[c].topic, "%s-rootcoord-dml_%d", prefix, c);
        ch[c].cap = cap;
        ch[c].msgs = calloc(cap, sizeof *ch[c].msgs);
        if (!ch[c].msgs)
            die("out of memory");
    }
    check_buf = malloc(BIG_SIZE);
    send_buf = malloc(BIG_SIZE);
    if (!check_buf || !send_buf)
        die("out of memory");
}

static int cmd_run(const char *prefix, int seconds, int64_t min_mib, int min_big,
                   const char *statefile)
{
    int64_t min_bytes = min_mib << 20;
    /* Ticks, plus every insert being as small as 1 KiB. */
    init_channels(prefix, (size_t)seconds * 8 + (size_t)(min_bytes / 1024 / NCH) + 100000);
    char err[512];

    /* Channels 8..15: created by a consumer's assignment. */
    tailer[0] = new_consumer("earliest");
    assign(tailer[0], 8, 16, RD_KAFKA_OFFSET_BEGINNING);
    int64_t deadline = now_ms() + 30000;
    while (!channels_exist(tailer[0], 8, 16)) {
        if (now_ms() > deadline)
            die("channels 8..15 not created by the consumer's assignment within 30 s");
        rd_kafka_message_t *m = rd_kafka_consumer_poll(tailer[0], 200);
        if (m) {
            if (!m->err)
                die("a message on a new channel");
            rd_kafka_message_destroy(m);
        }
    }
    if (channels_exist(tailer[0], 0, 1))
        die("channel 0 exists before anything was produced");
    printf("channels 8..15 auto-created by a consumer's assignment\n");

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    common_conf(conf);
    set(conf, "message.max.bytes", "10485760");
    set(conf, "compression.codec", "zstd");
    set(conf, "linger.ms", "2");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!p)
        die("producer: %s", err);

    int64_t start = now_ms();
    for (int c = 0; c < NCH; c++)
        ch[c].next_tick = start;
    uint64_t rng = 42;
    int64_t enq_bytes = 0;
    int big_enq = 0, tailer1_started = 0;
    double rate = (double)min_bytes * 1.1 / (seconds * 1000.0); /* bytes per ms */
    pthread_t consumer;
    int consumer_started = 0;
    int64_t last_report = start;
    for (;;) {
        int64_t now = now_ms(), t = now - start;
        int finishing = t >= (int64_t)seconds * 1000 && atomic_load(&st.bytes) >= min_bytes &&
                        atomic_load(&st.big) >= min_big;
        for (int c = 0; c < NCH; c++)
            if (now >= ch[c].next_tick) {
                if (!finishing)
                    enqueue(c, K_TICK, 90 + (uint32_t)(splitmix(&rng) % 40));
                ch[c].next_tick += TICK_MS;
            }
        if (!finishing && big_enq < min_big &&
            t >= (int64_t)(big_enq + 1) * seconds * 1000 / (min_big + 1)) {
            enqueue((int)(splitmix(&rng) % NCH), K_BIG, BIG_SIZE);
            enq_bytes += BIG_SIZE;
            big_enq++;
        } else if (!finishing && (double)enq_bytes < rate * (double)t) {
            uint32_t s = insert_size(&rng);
            enqueue((int)(splitmix(&rng) % NCH), K_INSERT, s);
            enq_bytes += s;
        }
        int busy = 0;
        for (int c = 0; c < NCH; c++) {
            if (!ch[c].inflight && ch[c].qlen > 0)
                send_next(p, c);
            busy += ch[c].inflight || ch[c].qlen > 0;
        }
        rd_kafka_poll(p, 5);
        if (!tailer1_started) {
            int ready = 1;
            for (int c = 0; c < 8; c++)
                ready &= atomic_load(&ch[c].delivered) > 0;
            if (ready) {
                tailer[1] = new_consumer("earliest");
                assign(tailer[1], 0, 8, RD_KAFKA_OFFSET_BEGINNING);
                tailer1_started = 1;
                if (pthread_create(&consumer, NULL, consumer_main, NULL) != 0)
                    die("pthread_create");
                consumer_started = 1;
            }
        }
        if (now - last_report >= 30000) {
            last_report = now;
            printf("%3" PRId64 " s: %" PRId64 " messages, %" PRId64 " MiB, %" PRId64
                   " of 10 MiB, %" PRId64 " read by the tailers\n",
                   t / 1000, atomic_load(&st.msgs), atomic_load(&st.bytes) >> 20,
                   atomic_load(&st.big), atomic_load(&st.tailed));
            fflush(stdout);
        }
        if (finishing && !busy)
            break;
    }
    int64_t elapsed = now_ms() - start;
    atomic_store(&producing_done, now_ms());
    if (!consumer_started)
        die("channels 0..7 never delivered to");
    pthread_join(consumer, NULL);
    close_consumer(tailer[0]);
    close_consumer(tailer[1]);
    rd_kafka_destroy(p);

    FILE *f = fopen(statefile, "w");
    if (!f)
        die("%s: %s", statefile, strerror(errno));
    for (int c = 0; c < NCH; c++)
        for (int64_t i = 0; i < atomic_load(&ch[c].delivered); i++)
            fprintf(f, "%d %" PRId64 " %u %d\n", c, i, ch[c].msgs[i].size, ch[c].msgs[i].kind);
    if (fclose(f) != 0)
        die("%s: %s", statefile, strerror(errno));
    printf("produced for %.1f s: %" PRId64 " messages (%" PRId64 " ticks, %" PRId64
           " inserts, %" PRId64 " of 10 MiB), %.1f MiB; longest delivery %" PRId64 " ms\n",
           elapsed / 1000.0, atomic_load(&st.msgs), atomic_load(&st.ticks),
           atomic_load(&st.inserts), atomic_load(&st.big), atomic_load(&st.bytes) / 1048576.0,
           atomic_load(&st.max_delivery_ms));
    printf("read back: %" PRId64 " by the tailers; subscriptions at earliest %" PRId64
           ", latest-1 %" PRId64 ", a saved offset %" PRId64 " (%" PRId64 " messages); %" PRId64
           " watermark queries\n",
           atomic_load(&st.tailed), atomic_load(&st.seek_earliest), atomic_load(&st.seek_latest),
           atomic_load(&st.seek_saved), atomic_load(&st.seek_msgs), atomic_load(&st.watermarks));
    if (atomic_load(&st.tailed) != atomic_load(&st.msgs))
        die("the tailers read %" PRId64 " messages of %" PRId64, atomic_load(&st.tailed),
            atomic_load(&st.msgs));
    return 0;
}

/* ------------------------------------------------------------ verify */

static int cmd_verify(const char *prefix, const char *statefile)
{
    FILE *f = fopen(statefile, "r");
    if (!f)
        die("%s: %s", statefile, strerror(errno));
    init_channels(prefix, 1);
    int c;
    int64_t off, total = 0, bytes = 0;
    unsigned size, kind;
    while (fscanf(f, "%d %" SCNd64 " %u %u", &c, &off, &size, &kind) == 4) {
        if (c < 0 || c >= NCH || off != atomic_load(&ch[c].delivered) || kind > K_BIG)
            die("%s: bad line", statefile);
        if ((size_t)off >= ch[c].cap) {
            ch[c].cap *= 2;
            ch[c].msgs = realloc(ch[c].msgs, ch[c].cap * sizeof *ch[c].msgs);
            if (!ch[c].msgs)
                die("out of memory");
        }
        ch[c].msgs[off] = (msg_desc_t){.size = size, .kind = (uint8_t)kind};
        atomic_store(&ch[c].delivered, off + 1);
        atomic_store(&ch[c].sent, off + 1);
    }
    fclose(f);
    int64_t start = now_ms();
    rd_kafka_t *rk = new_consumer("earliest");
    int64_t next[NCH] = {0}, left = 0;
    for (c = 0; c < NCH; c++) {
        int64_t n = atomic_load(&ch[c].delivered), lo, hi;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, ch[c].topic, 0, &lo, &hi, 10000);
        if (e)
            die("watermarks of %s: %s", ch[c].topic, rd_kafka_err2str(e));
        if (lo != 0 || hi != n)
            die("watermarks of %s: %" PRId64 "..%" PRId64 ", expected 0..%" PRId64, ch[c].topic, lo,
                hi, n);
        total += n;
    }
    /* Every channel at once, from the earliest offset, to its end. */
    assign(rk, 0, NCH, RD_KAFKA_OFFSET_BEGINNING);
    left = total;
    int64_t progress = now_ms();
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (now_ms() - progress > 60000)
                die("verify: %" PRId64 " messages not read, none for 60 s", left);
            continue;
        }
        if (m->err)
            die("verify: %s", rd_kafka_message_errstr(m));
        c = channel_of(rd_kafka_topic_name(m->rkt));
        if (c < 0)
            die("verify: message of %s", rd_kafka_topic_name(m->rkt));
        if (next[c] >= atomic_load(&ch[c].delivered))
            die("verify: %s: offset %" PRId64 " past the %" PRId64 " delivered", ch[c].topic,
                m->offset, atomic_load(&ch[c].delivered));
        check_message(m, c, next[c], "verify");
        bytes += ch[c].msgs[next[c]++].size;
        rd_kafka_message_destroy(m);
        left--;
        progress = now_ms();
    }
    close_consumer(rk);
    printf("verified %" PRId64 " messages, %.1f MiB on %d channels in %.1f s\n", total,
           bytes / 1048576.0, NCH, (now_ms() - start) / 1000.0);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 8 && strcmp(argv[1], "run") == 0) {
        bootstrap_g = argv[2];
        return cmd_run(argv[3], atoi(argv[4]), atoll(argv[5]), atoi(argv[6]), argv[7]);
    }
    if (argc == 5 && strcmp(argv[1], "verify") == 0) {
        bootstrap_g = argv[2];
        return cmd_verify(argv[3], argv[4]);
    }
    fprintf(stderr,
            "usage: %s run BOOTSTRAP PREFIX SECONDS MIN_MIB MIN_BIG STATEFILE\n"
            "       %s verify BOOTSTRAP PREFIX STATEFILE\n",
            argv[0], argv[0]);
    return 2;
}
