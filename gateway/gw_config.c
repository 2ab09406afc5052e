/*
 * gw_config.c: the configuration table, and loading it from a properties
 * file and the command line.
 *
 * Every key is one row of `opts` below: name, type, field, range, default,
 * whether its feature is built, and a one-line description.  Loading,
 * --help, the effective-configuration log and the tests all walk that table,
 * so a key cannot be documented without being parsed or parsed without being
 * documented.  Defaults are written as text and go through the same parser
 * as user values.
 *
 * Order of precedence: defaults < --config FILE < other command-line
 * settings (whatever the order of the arguments) < values derived after
 * loading (only for keys that were not set: advertised.listeners,
 * storage.url and metadata.url).
 *
 * Deliberate differences from Kafka, each also in --help:
 *   - one PLAINTEXT listener only; listener names and security protocols
 *     other than PLAINTEXT are refused;
 *   - advertised.listeners, when not set, is listeners with a wildcard host
 *     (empty, 0.0.0.0 or ::) replaced by gethostname().  Kafka advertises
 *     the canonical host name for an empty host (a DNS lookup) and refuses to
 *     start for 0.0.0.0; Nuthatch does no lookup at start-up, so the name
 *     must resolve for clients -- set advertised.listeners when it does not;
 *   - message.max.bytes defaults to 10486784 (10 MiB + 1 KiB) instead of
 *     Kafka's 1048588, to take 10 MiB records with the batch overhead;
 *   - max.connections defaults to 10000 instead of Kafka's 2^31-1;
 *   - a key whose feature is not built yet (none at present: the not_built
 *     flag) is known, listed in --help, and refused unless left at default.
 *
 * Secrets never enter gw_config_t (it is logged): S3 credentials come from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN and the etcd
 * password from NUTHATCH_ETCD_PASSWORD.  Loading checks that the ones the
 * configured stores need are set, so that a missing one is a configuration
 * error (exit 2), not a start-up failure.
 */
#include "gw_config.h"
#include "gw_props.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------ table */

typedef enum opt_type {
    T_STRING,   /* char[size] */
    T_INT,      /* int32_t in [min, max] */
    T_LONG,     /* int64_t in [min, max] */
    T_BOOL,     /* bool: "true" | "false", any case (as Kafka) */
    T_ENUM,     /* an int-sized enum; the value is an index into names */
    T_LISTENER, /* gw_listener_t */
    T_STORAGE,  /* gw_storage_url_t */
    T_METADATA, /* gw_metadata_url_t */
} opt_type_t;

/* Extra check of a string value: 0, or -1 with the reason (after "KEY: "). */
typedef int (*check_fn)(const char *value, char *why, size_t why_size);

typedef struct opt {
    const char *name; /* the key, as in Kafka where Kafka has it */
    opt_type_t type;
    size_t off;               /* offsetof(gw_config_t, field) */
    size_t size;              /* sizeof the field */
    int64_t min, max;         /* T_INT, T_LONG: inclusive range */
    const char *const *names; /* T_ENUM: value names, NULL-terminated */
    const char *def;          /* default as text; NULL = derived after loading */
    const char *def_note;     /* for help when def is NULL: how it is derived */
    bool not_built;           /* feature not built yet: only the default is accepted */
    bool nonempty;            /* T_STRING: "" is refused */
    bool advertised;          /* T_LISTENER: no wildcard host, no port 0 */
    check_fn check;           /* T_STRING: optional extra check */
    const char *help;         /* one line for --help */
} opt_t;

#define FIELD(f) .off = offsetof(gw_config_t, f), .size = sizeof(((gw_config_t *)0)->f)

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

_Static_assert(sizeof(gw_log_level_t) == sizeof(int), "T_ENUM fields are int-sized");

static int check_cluster_id(const char *v, char *why, size_t why_size);

/* One row per key reads better than one line per field. */
/* clang-format off */
static const opt_t opts[] = {
    {.name = "listeners", .type = T_LISTENER, FIELD(listeners),
     .def = "PLAINTEXT://0.0.0.0:9092",
     .help = "Where to accept Kafka clients: one PLAINTEXT://HOST:PORT (HOST empty or 0.0.0.0 = "
             "all IPv4 interfaces, [::] = all interfaces, [::1] = an IPv6 address; port 0 = any "
             "free port)"},
    {.name = "advertised.listeners", .type = T_LISTENER, FIELD(advertised_listeners),
     .advertised = true,
     .def_note = "listeners, with this machine's host name (gethostname) for a wildcard host",
     .help = "The PLAINTEXT://HOST:PORT that Metadata responses tell clients to connect to; HOST "
             "must be reachable by clients"},
    {.name = "node.id", .type = T_INT, FIELD(node_id), .min = 0, .max = INT32_MAX, .def = "1",
     .help = "This gateway's broker id, unique among the gateways sharing a metadata store"},
    {.name = "cluster.lease.ms", .type = T_LONG, FIELD(cluster_lease_ms), .min = 2000,
     .max = INT32_MAX, .def = "10000",
     .help = "TTL of the lease this gateway's registration (/nuthatch/nodes/<node.id>) is kept "
             "under, in milliseconds: a gateway that dies leaves the other gateways' Metadata "
             "answers at most this long after its last renewal (renewed every third of it; "
             "etcd counts whole seconds)"},
    {.name = "data.dir", .type = T_STRING, FIELD(data_dir), .nonempty = true,
     .def = "./nuthatch-data",
     .help = "Directory for local state; the default object and metadata stores live in it "
             "(with s3:// storage and etcd:// metadata nothing is written there, and it is "
             "not created)"},
    {.name = "storage.url", .type = T_STORAGE, FIELD(storage_url),
     .def_note = "file:<data.dir>/objects",
     .help = "Object store: file:///absolute/dir, file:relative/dir, or "
             "s3://BUCKET[/PREFIX]?endpoint=URL[&region=R][&addressing=path|virtual] "
             "(endpoint http://HOST[:PORT] or https://HOST[:PORT], required; region default "
             "us-east-1; addressing default path; "
             "credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally "
             "AWS_SESSION_TOKEN)"},
    {.name = "metadata.url", .type = T_METADATA, FIELD(metadata_url),
     .def_note = "sqlite:<data.dir>/meta.db",
     .help = "Metadata store: sqlite:///absolute/file, sqlite:relative/file, or "
             "etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (PREFIX, default none, is put before "
             "every key Nuthatch writes, all of which start with /nuthatch/)"},
    {.name = "metadata.etcd.user", .type = T_STRING, FIELD(metadata_etcd_user), .def = "",
     .help = "etcd user to authenticate as (empty = no authentication); the password is "
             "read from the environment variable NUTHATCH_ETCD_PASSWORD"},
    {.name = "metadata.etcd.request.timeout.ms", .type = T_INT,
     FIELD(metadata_etcd_request_timeout_ms), .min = 1, .max = INT32_MAX, .def = "5000",
     .help = "With etcd:// metadata: how long one request to an etcd endpoint may take before "
             "the next endpoint is tried (or the outcome of a write is checked), in "
             "milliseconds"},
    {.name = "metadata.etcd.connect.timeout.ms", .type = T_INT,
     FIELD(metadata_etcd_connect_timeout_ms), .min = 1, .max = INT32_MAX, .def = "1000",
     .help = "With etcd:// metadata: how long connecting to an etcd endpoint may take, in "
             "milliseconds"},
    {.name = "metadata.compaction.interval.ms", .type = T_LONG,
     FIELD(metadata_compaction_interval_ms), .min = 0, .max = INT64_MAX / 1000, .def = "300000",
     .help = "With etcd:// metadata: compact etcd's revision history this often, up to the "
             "revision seen one interval earlier (one interval of history is kept), in "
             "milliseconds; 0 = never (then etcd needs --auto-compaction-retention)"},
    {.name = "storage.s3.request.timeout.ms", .type = T_INT,
     FIELD(storage_s3_request_timeout_ms), .min = 1, .max = INT32_MAX, .def = "30000",
     .help = "With s3:// storage: how long one object-store operation may take, retries "
             "included, before it fails, in milliseconds"},
    {.name = "storage.s3.attempt.timeout.ms", .type = T_INT,
     FIELD(storage_s3_attempt_timeout_ms), .min = 1, .max = INT32_MAX, .def = "10000",
     .help = "With s3:// storage: how long one HTTP attempt may take, connecting included, "
             "before it is retried, in milliseconds"},
    {.name = "storage.s3.max.requests", .type = T_INT, FIELD(storage_s3_max_requests),
     .min = 1, .max = 1024, .def = "16",
     .help = "With s3:// storage: HTTP requests in flight at once; more wait in order"},
    {.name = "storage.s3.verify.etag", .type = T_BOOL, FIELD(storage_s3_verify_etag),
     .def = "true",
     .help = "With s3:// storage: check that the ETag of each uploaded object is the MD5 of "
             "the bytes sent (turn off only where the ETag is no MD5: SSE-KMS, SSE-C)"},
    {.name = "storage.s3.sign.payload", .type = T_BOOL, FIELD(storage_s3_sign_payload),
     .def = "false",
     .help = "With s3:// storage: sign each upload's body by its SHA-256 instead of sending it "
             "as UNSIGNED-PAYLOAD (its signed Content-MD5 covers it either way; for stores "
             "that refuse unsigned bodies)"},
    {.name = "auto.create.topics.enable", .type = T_BOOL, FIELD(auto_create_topics_enable),
     .def = "true", .help = "Create a topic when a client asks for metadata of or produces to it"},
    {.name = "num.partitions", .type = T_INT, FIELD(num_partitions), .min = 1, .max = INT32_MAX,
     .def = "1", .help = "Number of partitions of a topic created automatically"},
    {.name = "default.replication.factor", .type = T_INT, FIELD(default_replication_factor),
     .min = 1, .max = 32767, .def = "1",
     .help = "Replication factor reported for automatically created topics (durability comes "
             "from the object store; the value is informational)"},
    {.name = "message.max.bytes", .type = T_INT, FIELD(message_max_bytes), .min = 0,
     .max = INT32_MAX, .def = "10486784",
     .help = "Largest record batch accepted, in bytes (Kafka's default is 1048588; this one "
             "takes a 10 MiB record plus 1 KiB of batch overhead)"},
    {.name = "socket.request.max.bytes", .type = T_INT, FIELD(socket_request_max_bytes),
     .min = 1, .max = INT32_MAX, .def = "104857600",
     .help = "Largest request accepted, in bytes; checked before anything is allocated"},
    {.name = "connections.max.idle.ms", .type = T_LONG, FIELD(connections_max_idle_ms),
     .min = -1, .max = INT64_MAX, .def = "600000",
     .help = "Close a connection idle this long, in milliseconds (-1 = never)"},
    {.name = "max.connections", .type = T_INT, FIELD(max_connections), .min = 1,
     .max = INT32_MAX, .def = "10000",
     .help = "Client connections open at once; more are refused (Kafka's default is "
             "2147483647)"},
    {.name = "request.receive.budget.bytes", .type = T_LONG, FIELD(request_receive_budget_bytes),
     .min = 1, .max = INT64_MAX, .def = "536870912",
     .help = "Bytes of partially received requests held at once, over all connections; at "
             "least socket.request.max.bytes"},
    {.name = "request.partial.timeout.ms", .type = T_INT, FIELD(request_partial_timeout_ms),
     .min = 1, .max = INT32_MAX, .def = "30000",
     .help = "Close a connection that takes longer than this to send the rest of a request "
             "whose length it has sent, in milliseconds"},
    {.name = "flush.max.bytes", .type = T_LONG, FIELD(flush_max_bytes), .min = 1,
     .max = INT64_MAX, .def = "8388608",
     .help = "While uploads are in flight, start a new flush object once this many bytes "
             "wait, in bytes"},
    {.name = "flush.max.inflight", .type = T_INT, FIELD(flush_max_inflight), .min = 1,
     .max = 1024, .def = "4", .help = "Flush objects uploaded in parallel"},
    {.name = "write.buffer.bytes", .type = T_LONG, FIELD(write_buffer_bytes), .min = 1,
     .max = INT64_MAX, .def = "268435456",
     .help = "Bytes of produced batches not yet committed (waiting or uploading) above which "
             "connections stop reading produce requests until commits make room; at least "
             "message.max.bytes"},
    {.name = "log.level", .type = T_ENUM, FIELD(log_level), .names = level_names, .def = "info",
     .help = "Most verbose log level written to standard error"},
    {.name = "log.retention.ms", .type = T_LONG, FIELD(log_retention_ms), .min = -1,
     .max = INT64_MAX, .def = "604800000",
     .help = "Delete data older than this, in milliseconds (-1 = keep forever); a topic's "
             "retention.ms overrides it"},
    {.name = "log.retention.bytes", .type = T_LONG, FIELD(log_retention_bytes), .min = -1,
     .max = INT64_MAX, .def = "-1",
     .help = "Delete the oldest data of a partition above this size, in bytes (-1 = no limit); "
             "a topic's retention.bytes overrides it"},
    {.name = "log.retention.check.interval.ms", .type = T_LONG,
     FIELD(log_retention_check_interval_ms), .min = 1, .max = INT64_MAX / 1000, .def = "300000",
     .help = "How often retention is applied, in milliseconds"},
    {.name = "log.lifecycle.interval.ms", .type = T_LONG, FIELD(log_lifecycle_interval_ms),
     .min = 1, .max = INT64_MAX / 1000, .def = "1000",
     .help = "How often committed flushes are folded into per-partition index keys, in "
             "milliseconds"},
    {.name = "log.index.max.keys", .type = T_LONG, FIELD(log_index_max_keys), .min = 2,
     .max = INT64_MAX, .def = "1000",
     .help = "Above this many index keys in the metadata store, a partition's small chunks "
             "are copied into segment objects, 62 keys into one"},
    {.name = "log.segment.bytes", .type = T_LONG, FIELD(log_segment_bytes), .min = 1024,
     .max = 1073741824, .def = "67108864",
     .help = "The largest segment object merging writes, in bytes"},
    {.name = "log.gc.interval.ms", .type = T_LONG, FIELD(log_gc_interval_ms), .min = 0,
     .max = INT64_MAX / 1000, .def = "60000",
     .help = "How often objects nothing references are looked for, in milliseconds; 0 = never"},
    {.name = "log.gc.grace.ms", .type = T_LONG, FIELD(log_gc_grace_ms), .min = 1,
     .max = INT64_MAX / 1000, .def = "600000",
     .help = "An object is deleted once it has been seen unreferenced and is older than this, "
             "in milliseconds; an upload whose commit waits longer fails"},
    {.name = "metrics.listen", .type = T_STRING, FIELD(metrics_listen), .def = "",
     .help = "HOST:PORT serving Prometheus metrics at /metrics, liveness at /healthz and "
             "readiness (both stores reachable) at /readyz over HTTP (empty = off; port 0 = "
             "any free port, logged)"},
    {.name = "startup.timeout.ms", .type = T_LONG, FIELD(startup_timeout_ms), .min = 0,
     .max = INT64_MAX, .def = "30000",
     .help = "At start-up, keep retrying to reach the metadata and object stores this long "
             "before giving up (exit status 1), in milliseconds"},
    {.name = "shutdown.timeout.ms", .type = T_LONG, FIELD(shutdown_timeout_ms), .min = 0,
     .max = INT64_MAX, .def = "5000",
     .help = "On SIGTERM or SIGINT, wait this long for in-flight flushes and responses, in "
             "milliseconds"},
    {.name = "read.cache.bytes", .type = T_LONG, FIELD(read_cache_bytes), .min = 0,
     .max = INT64_MAX, .def = "268435456",
     .help = "Memory for the cache of object ranges read for fetches, in bytes (0 = none)"},
    {.name = "read.ahead.bytes", .type = T_LONG, FIELD(read_ahead_bytes), .min = 0,
     .max = INT64_MAX, .def = "33554432",
     .help = "Object ranges read ahead of sequential fetches (and merged across the "
             "partitions of one object) in flight at once, in bytes (0 = none)"},
    {.name = "tail.cache.bytes", .type = T_LONG, FIELD(tail_cache_bytes), .min = 0,
     .max = INT64_MAX, .def = "67108864",
     .help = "Memory for recently committed batches kept for tail fetches, over all "
             "partitions, in bytes (0 = none)"},
    {.name = "cluster.id", .type = T_STRING, FIELD(cluster_id), .check = check_cluster_id,
     .def = "",
     .help = "Cluster id reported to clients, up to 64 of [A-Za-z0-9_-] (empty = generate one "
             "and keep it in the metadata store)"},
    {.name = "group.initial.rebalance.delay.ms", .type = T_INT,
     FIELD(group_initial_rebalance_delay_ms), .min = 0, .max = INT32_MAX, .def = "3000",
     .help = "How long the first rebalance of an empty consumer group waits for more members "
             "to join (extended by as much while more arrive, up to the rebalance timeout), in "
             "milliseconds"},
    {.name = "group.min.session.timeout.ms", .type = T_INT, FIELD(group_min_session_timeout_ms),
     .min = 1, .max = INT32_MAX, .def = "6000",
     .help = "Shortest session timeout a consumer-group member may ask for, in milliseconds"},
    {.name = "group.max.session.timeout.ms", .type = T_INT, FIELD(group_max_session_timeout_ms),
     .min = 1, .max = INT32_MAX, .def = "1800000",
     .help = "Longest session timeout a consumer-group member may ask for, in milliseconds"},
};
/* clang-format on */

#define NOPTS (sizeof opts / sizeof opts[0])

/* ---------------------------------------------------------------- helpers */

static int fail(char *err, size_t err_size, const char *fmt, ...) GW_PRINTF(3, 4);

static int fail(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return -1;
}

#define SHOW_MAX 80 /* bytes of a user-supplied string shown in a message */

/* Room for SHOW_MAX bytes escaped as \xNN, "..." and the NUL. */
typedef struct shown {
    char s[SHOW_MAX * 4 + 4];
} shown_t;

/* @s[0..len) made printable on one line for a message: control characters
 * escaped, cut after SHOW_MAX bytes.  Returns sh->s. */
static const char *show_n(shown_t *sh, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len && i < SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\r' || c == '\t') {
            sh->s[o++] = '\\';
            sh->s[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            sh->s[o++] = '\\';
            sh->s[o++] = 'x';
            sh->s[o++] = hex[c >> 4];
            sh->s[o++] = hex[c & 15];
        } else {
            sh->s[o++] = (char)c;
        }
    }
    if (len > SHOW_MAX) {
        memcpy(sh->s + o, "...", 3);
        o += 3;
    }
    sh->s[o] = '\0';
    return sh->s;
}

static const char *show(shown_t *sh, const char *s)
{
    return show_n(sh, s, strlen(s));
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\n' || c == '\r' || c == '\v';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const opt_t *find_opt(const char *key, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, key, len) == 0)
            return &opts[i];
    return NULL;
}

/* "unknown configuration key 'num_partitions' (did you mean 'num.partitions'?)" */
static int fail_unknown(const char *key, size_t len, char *err, size_t err_size)
{
    shown_t sh;
    char norm[128];
    const opt_t *guess = NULL;
    if (len < sizeof norm) {
        for (size_t i = 0; i < len; i++) {
            char c = key[i];
            norm[i] = c == '_' || c == '-' ? '.' : (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        guess = find_opt(norm, len);
    }
    if (guess)
        return fail(err, err_size, "unknown configuration key '%s' (did you mean '%s'?)",
                    show_n(&sh, key, len), guess->name);
    return fail(err, err_size, "unknown configuration key '%s'", show_n(&sh, key, len));
}

/* ----------------------------------------------------------------- values */

typedef enum num_res { NUM_OK, NUM_BAD, NUM_HIGH, NUM_LOW } num_res_t;

/* A plain decimal integer with an optional sign, as Kafka reads numbers. */
static num_res_t parse_i64(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (!is_digit(*s))
        return NUM_BAD;
    uint64_t v = 0;
    bool over = false;
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    if (*s != '\0')
        return NUM_BAD;
    if (neg) {
        if (over || v > (uint64_t)INT64_MAX + 1)
            return NUM_LOW;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (over || v > (uint64_t)INT64_MAX)
            return NUM_HIGH;
        *out = (int64_t)v;
    }
    return NUM_OK;
}

static int parse_number(const opt_t *o, const char *v, int64_t *out, char *err, size_t err_size)
{
    shown_t sh;
    int64_t n = 0;
    num_res_t r = parse_i64(v, &n);
    if (r == NUM_BAD)
        return fail(err, err_size, "%s: '%s' is not an integer", o->name, show(&sh, v));
    if (r == NUM_LOW || (r == NUM_OK && n < o->min))
        return fail(err, err_size, "%s: '%s' is below the minimum %" PRId64, o->name, show(&sh, v),
                    o->min);
    if (r == NUM_HIGH || n > o->max)
        return fail(err, err_size, "%s: '%s' is above the maximum %" PRId64, o->name, show(&sh, v),
                    o->max);
    *out = n;
    return 0;
}

static int check_cluster_id(const char *v, char *why, size_t why_size)
{
    size_t len = strlen(v);
    if (len >= GW_CONFIG_CLUSTER_ID_MAX)
        return fail(why, why_size, "longer than %d characters", GW_CONFIG_CLUSTER_ID_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
              c == '-'))
            return fail(why, why_size, "only letters, digits, '_' and '-' are allowed");
    }
    return 0;
}

/* "log.level: 'loud' is not one of error, warn, info, debug" */
static int fail_enum(const opt_t *o, const char *v, char *err, size_t err_size)
{
    shown_t sh;
    char list[256];
    size_t len = 0;
    list[0] = '\0';
    for (int i = 0; o->names[i] && len < sizeof list; i++) {
        int n = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", o->names[i]);
        len += n > 0 ? (size_t)n : 0;
    }
    return fail(err, err_size, "%s: '%s' is not one of %s", o->name, show(&sh, v), list);
}

/* Parse @value (surrounding blanks ignored, as Kafka does) into @o's field
 * of @cfg.  The field is untouched on error. */
static int apply(gw_config_t *cfg, const opt_t *o, const char *value, char *err, size_t err_size)
{
    shown_t sh;
    char v[GW_URL_MAX];
    while (is_space(*value))
        value++;
    size_t len = strlen(value);
    while (len > 0 && is_space(value[len - 1]))
        len--;
    if (len >= sizeof v)
        return fail(err, err_size, "%s: the value is longer than %zu bytes", o->name, sizeof v - 1);
    memcpy(v, value, len);
    v[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return fail(err, err_size, "%s: '%s' contains a control character", o->name,
                        show(&sh, v));

    void *field = (char *)cfg + o->off;
    int64_t n;
    switch (o->type) {
    case T_STRING: {
        char why[128];
        if (len >= o->size)
            return fail(err, err_size, "%s: '%s' is longer than %zu bytes", o->name, show(&sh, v),
                        o->size - 1);
        if (o->nonempty && len == 0)
            return fail(err, err_size, "%s: must not be empty", o->name);
        if (o->check && len > 0 && o->check(v, why, sizeof why) < 0)
            return fail(err, err_size, "%s: '%s': %s", o->name, show(&sh, v), why);
        memcpy(field, v, len + 1);
        return 0;
    }
    case T_INT:
        if (parse_number(o, v, &n, err, err_size) < 0)
            return -1;
        *(int32_t *)field = (int32_t)n;
        return 0;
    case T_LONG:
        if (parse_number(o, v, &n, err, err_size) < 0)
            return -1;
        *(int64_t *)field = n;
        return 0;
    case T_BOOL:
        if (strcasecmp(v, "true") != 0 && strcasecmp(v, "false") != 0)
            return fail(err, err_size, "%s: '%s' is not true or false", o->name, show(&sh, v));
        *(bool *)field = strcasecmp(v, "true") == 0;
        return 0;
    case T_ENUM:
        for (int i = 0; o->names[i]; i++) {
            if (strcasecmp(v, o->names[i]) == 0) {
                memcpy(field, &i, sizeof i);
                return 0;
            }
        }
        return fail_enum(o, v, err, err_size);
    case T_LISTENER:
        return gw_listener_parse(o->name, v, o->advertised, field, err, err_size);
    case T_STORAGE:
        return gw_storage_url_parse(o->name, v, field, err, err_size);
    case T_METADATA:
        return gw_metadata_url_parse(o->name, v, field, err, err_size);
    }
    return fail(err, err_size, "%s: unknown type", o->name);
}

/* The value of @o in @cfg as it would be written in a file. */
static void format_value(const opt_t *o, const gw_config_t *cfg, char *buf, size_t size)
{
    const void *field = (const char *)cfg + o->off;
    int i;
    switch (o->type) {
    case T_STRING:
        snprintf(buf, size, "%s", (const char *)field);
        return;
    case T_INT:
        snprintf(buf, size, "%" PRId32, *(const int32_t *)field);
        return;
    case T_LONG:
        snprintf(buf, size, "%" PRId64, *(const int64_t *)field);
        return;
    case T_BOOL:
        snprintf(buf, size, "%s", *(const bool *)field ? "true" : "false");
        return;
    case T_ENUM:
        memcpy(&i, field, sizeof i);
        snprintf(buf, size, "%s", o->names[i]);
        return;
    case T_LISTENER:
        gw_listener_format(field, buf, size);
        return;
    case T_STORAGE:
        snprintf(buf, size, "%s", ((const gw_storage_url_t *)field)->url);
        return;
    case T_METADATA:
        snprintf(buf, size, "%s", ((const gw_metadata_url_t *)field)->url);
        return;
    }
    snprintf(buf, size, "?");
}

/* ---------------------------------------------------------------- loading */

static size_t opt_index(const opt_t *o)
{
    return (size_t)(o - opts);
}

static const opt_t *opt_named(const char *name)
{
    const opt_t *o = find_opt(name, strlen(name));
    assert(o != NULL); /* a name from this file */
    return o;
}

static int set_defaults(gw_config_t *cfg, char *err, size_t err_size)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].def && apply(cfg, &opts[i], opts[i].def, err, err_size) < 0)
            return -1;
    return 0;
}

/* @o (storage.url or metadata.url) from data.dir: <scheme>:<data.dir>/<leaf>. */
static int derive_url(gw_config_t *cfg, const opt_t *o, const char *scheme, const char *leaf,
                      char *err, size_t err_size)
{
    char url[GW_URL_MAX];
    if (gw_url_from_path(scheme, cfg->data_dir, leaf, url, sizeof url) < 0)
        return fail(err, err_size, "%s: the URL made from data.dir is longer than %zu bytes",
                    o->name, sizeof url - 1);
    return apply(cfg, o, url, err, err_size);
}

/* Fill the keys that were not set and whose default depends on others. */
static int derive(gw_config_t *cfg, const bool *set, char *err, size_t err_size)
{
    const opt_t *adv = opt_named("advertised.listeners");
    if (!set[opt_index(adv)]) {
        cfg->advertised_listeners = cfg->listeners;
        if (gw_host_is_wildcard(cfg->listeners.host)) {
            /* Kafka would advertise the canonical host name (a DNS lookup) or
             * refuse 0.0.0.0; see the comment at the top of the file. */
            char host[GW_HOST_MAX] = "";
            if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
                return fail(err, err_size,
                            "advertised.listeners: not set, and this machine's host name is "
                            "unavailable to replace the wildcard host of listeners");
            memcpy(cfg->advertised_listeners.host, host, sizeof host);
        }
    }
    const opt_t *st = opt_named("storage.url"), *md = opt_named("metadata.url");
    if (!set[opt_index(st)] && derive_url(cfg, st, "file", "objects", err, err_size) < 0)
        return -1;
    if (!set[opt_index(md)] && derive_url(cfg, md, "sqlite", "meta.db", err, err_size) < 0)
        return -1;
    return 0;
}

static bool env_set(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] != '\0';
}

/* What the stores need from the environment: S3 credentials, the etcd
 * password.  Only their presence is checked here; the values are read where
 * the stores are made and never enter gw_config_t (which is logged). */
static int check_env(const gw_config_t *cfg, char *err, size_t err_size)
{
    if (cfg->storage_url.kind == GW_STORAGE_S3) {
        bool id = env_set("AWS_ACCESS_KEY_ID"), secret = env_set("AWS_SECRET_ACCESS_KEY");
        if (!id || !secret)
            return fail(err, err_size,
                        "storage.url: s3:// needs credentials in the environment, and %s %s not "
                        "set (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally "
                        "AWS_SESSION_TOKEN)",
                        !id && !secret ? "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        : !id          ? "AWS_ACCESS_KEY_ID"
                                       : "AWS_SECRET_ACCESS_KEY",
                        !id && !secret ? "are" : "is");
    }
    if (cfg->metadata_etcd_user[0] != '\0') {
        if (cfg->metadata_url.kind != GW_METADATA_ETCD)
            return fail(err, err_size,
                        "metadata.etcd.user: set, but metadata.url is not an etcd:// URL");
        if (!env_set("NUTHATCH_ETCD_PASSWORD"))
            return fail(err, err_size,
                        "metadata.etcd.user: set, but the environment variable "
                        "NUTHATCH_ETCD_PASSWORD (its password) is not");
    }
    return 0;
}

/* Keys whose feature is not built must keep their default; then the rules
 * that involve two keys, and the environment the stores need. */
static int check(const gw_config_t *cfg, char *err, size_t err_size)
{
    gw_config_t *def = malloc(sizeof *def);
    if (!def || set_defaults(def, err, err_size) < 0) {
        free(def);
        return def ? -1 : fail(err, err_size, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < NOPTS && rc == 0; i++) {
        char have[GW_URL_MAX], want[GW_URL_MAX];
        if (!opts[i].not_built)
            continue;
        format_value(&opts[i], cfg, have, sizeof have);
        format_value(&opts[i], def, want, sizeof want);
        if (strcmp(have, want) == 0)
            continue;
        if (want[0] == '\0')
            rc = fail(err, err_size, "%s: not supported yet (leave it unset)", opts[i].name);
        else
            rc = fail(err, err_size, "%s: not supported yet (only the default %s is accepted)",
                      opts[i].name, want);
    }
    free(def);
    if (rc < 0)
        return -1;
    if (cfg->message_max_bytes > cfg->socket_request_max_bytes)
        return fail(err, err_size,
                    "message.max.bytes (%" PRId32 ") exceeds socket.request.max.bytes (%" PRId32
                    "): no request could carry the largest batch",
                    cfg->message_max_bytes, cfg->socket_request_max_bytes);
    if (cfg->write_buffer_bytes < cfg->message_max_bytes)
        return fail(err, err_size,
                    "write.buffer.bytes (%" PRId64 ") is below message.max.bytes (%" PRId32
                    "): the largest batch would never fit",
                    cfg->write_buffer_bytes, cfg->message_max_bytes);
    if (cfg->request_receive_budget_bytes < cfg->socket_request_max_bytes)
        return fail(err, err_size,
                    "request.receive.budget.bytes (%" PRId64
                    ") is below socket.request.max.bytes (%" PRId32
                    "): the largest request could never be received",
                    cfg->request_receive_budget_bytes, cfg->socket_request_max_bytes);
    return check_env(cfg, err, err_size);
}

typedef struct file_ctx {
    gw_config_t *cfg;
    bool *set; /* per opts[] row: set by the file */
} file_ctx_t;

static int file_setting(void *arg, int line, const char *key, const char *value, char *err,
                        size_t err_size)
{
    file_ctx_t *fc = arg;
    char why[1024];
    const opt_t *o = find_opt(key, strlen(key));
    int rc = o ? apply(fc->cfg, o, value, why, sizeof why)
               : fail_unknown(key, strlen(key), why, sizeof why);
    if (rc < 0)
        return fail(err, err_size, "line %d: %s", line, why);
    fc->set[opt_index(o)] = true;
    return 0;
}

static int load_file(gw_config_t *cfg, bool *set, const char *path, char *err, size_t err_size)
{
    shown_t sh;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, err_size, "config file '%s': %s", show(&sh, path), strerror(errno));
    char *buf = malloc(GW_CONFIG_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return fail(err, err_size, "config file '%s': out of memory", show(&sh, path));
    }
    size_t len = fread(buf, 1, GW_CONFIG_FILE_MAX + 1, f);
    int read_errno = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    int rc;
    if (read_errno) {
        rc = fail(err, err_size, "config file '%s': %s", show(&sh, path), strerror(read_errno));
    } else if (len > GW_CONFIG_FILE_MAX) {
        rc = fail(err, err_size, "config file '%s': larger than %d bytes", show(&sh, path),
                  GW_CONFIG_FILE_MAX);
    } else {
        char why[1200];
        file_ctx_t fc = {cfg, set};
        rc = gw_props_parse(buf, len, file_setting, &fc, why, sizeof why);
        if (rc < 0)
            fail(err, err_size, "config file '%s': %s", show(&sh, path), why);
    }
    free(buf);
    return rc;
}

enum arg_kind { ARG_SETTING, ARG_CONFIG, ARG_HELP, ARG_VERSION, ARG_ERROR };

typedef struct arg {
    const char *key; /* after "--", not NUL-terminated */
    size_t key_len;
    const char *value;
} arg_t;

/* Read the argument at argv[*i] (and its value) and advance *i. */
static enum arg_kind next_arg(int argc, char **argv, int *i, arg_t *a, char *err, size_t err_size)
{
    shown_t sh;
    const char *s = argv[(*i)++];
    if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0)
        return ARG_HELP;
    if (strcmp(s, "--version") == 0)
        return ARG_VERSION;
    if (strncmp(s, "--", 2) != 0 || s[2] == '\0' || s[2] == '=') {
        fail(err, err_size, "%s '%s' (settings are written --KEY VALUE or --KEY=VALUE)",
             s[0] == '-' && s[1] != '\0' && s[1] != '-' ? "unknown option" : "unexpected argument",
             show(&sh, s));
        return ARG_ERROR;
    }
    a->key = s + 2;
    const char *eq = strchr(a->key, '=');
    a->key_len = eq ? (size_t)(eq - a->key) : strlen(a->key);
    bool is_config = a->key_len == 6 && memcmp(a->key, "config", 6) == 0;
    if (!is_config && !find_opt(a->key, a->key_len)) {
        fail_unknown(a->key, a->key_len, err, err_size);
        if (!eq && *i < argc && strncmp(argv[*i], "--", 2) != 0)
            (*i)++; /* skip its value too */
        return ARG_ERROR;
    }
    if (eq) {
        a->value = eq + 1;
    } else if (*i < argc && strncmp(argv[*i], "--", 2) != 0) {
        /* A value may start with '-' ("-1") but not "--": "--a --b 1" is a
         * forgotten value, not a = "--b". */
        a->value = argv[(*i)++];
    } else {
        fail(err, err_size, "%s: missing value (--%s VALUE or --%s=VALUE)",
             show_n(&sh, a->key, a->key_len), sh.s, sh.s);
        return ARG_ERROR;
    }
    if (is_config && a->value[0] == '\0') {
        fail(err, err_size, "config: missing value (--config FILE)");
        return ARG_ERROR;
    }
    return is_config ? ARG_CONFIG : ARG_SETTING;
}

/* First pass: --help, --version, --config and the shape of every argument.
 * Help and version win over errors anywhere on the line; otherwise the
 * first error is reported. */
static int scan_args(int argc, char **argv, const char **config_path, char *err, size_t err_size)
{
    bool help = false, version = false, bad = false;
    for (int i = 1; i < argc;) {
        arg_t a;
        char why[512];
        enum arg_kind kind = next_arg(argc, argv, &i, &a, why, sizeof why);
        if (kind == ARG_CONFIG && *config_path) {
            fail(why, sizeof why, "config: given more than once");
            kind = ARG_ERROR;
        }
        if (kind == ARG_CONFIG)
            *config_path = a.value;
        help |= kind == ARG_HELP;
        version |= kind == ARG_VERSION;
        if (kind == ARG_ERROR && !bad) {
            bad = true;
            snprintf(err, err_size, "%s", why);
        }
    }
    if (help)
        return GW_CONFIG_HELP;
    if (version)
        return GW_CONFIG_VERSION;
    return bad ? -1 : 0;
}

/* Second pass, after the file: apply the settings in order. */
static int apply_args(gw_config_t *cfg, bool *set, int argc, char **argv, char *err,
                      size_t err_size)
{
    for (int i = 1; i < argc;) {
        arg_t a;
        if (next_arg(argc, argv, &i, &a, err, err_size) != ARG_SETTING)
            continue; /* --config; scan_args() accepted everything else */
        const opt_t *o = find_opt(a.key, a.key_len);
        if (apply(cfg, o, a.value, err, err_size) < 0)
            return -1;
        set[opt_index(o)] = true;
    }
    return 0;
}

int gw_config_load(gw_config_t *cfg, int argc, char **argv, char *errstr, size_t errstr_size)
{
    char scratch[1];
    if (!errstr || errstr_size == 0) {
        errstr = scratch;
        errstr_size = sizeof scratch;
    }
    errstr[0] = '\0';
    const char *config_path = NULL;
    bool set[NOPTS] = {false}; /* per opts[] row: set by the file or the command line */
    int rc = scan_args(argc, argv, &config_path, errstr, errstr_size);
    if (rc != 0)
        return rc;
    if (set_defaults(cfg, errstr, errstr_size) < 0 ||
        (config_path && load_file(cfg, set, config_path, errstr, errstr_size) < 0) ||
        apply_args(cfg, set, argc, argv, errstr, errstr_size) < 0 ||
        derive(cfg, set, errstr, errstr_size) < 0 || check(cfg, errstr, errstr_size) < 0)
        return -1;
    return 0;
}

int gw_config_defaults(gw_config_t *cfg, char *errstr, size_t errstr_size)
{
    bool none[NOPTS] = {false};
    if (set_defaults(cfg, errstr, errstr_size) < 0 || derive(cfg, none, errstr, errstr_size) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------- reporting */

size_t gw_config_key_count(void)
{
    return NOPTS;
}

const char *gw_config_key_name(size_t i)
{
    return i < NOPTS ? opts[i].name : NULL;
}

int gw_config_value_str(const gw_config_t *cfg, const char *key, char *buf, size_t size)
{
    const opt_t *o = find_opt(key, strlen(key));
    if (!o)
        return -1;
    format_value(o, cfg, buf, size);
    return 0;
}

/* Appends to a caller's buffer, counting what did not fit (like snprintf). */
typedef struct sbuf {
    char *buf;
    size_t size, len;
} sbuf_t;

static void sb_add(sbuf_t *sb, const char *s, size_t n)
{
    if (sb->len + 1 < sb->size) {
        size_t room = sb->size - 1 - sb->len;
        memcpy(sb->buf + sb->len, s, n < room ? n : room);
    }
    sb->len += n;
}

/* @v as is, or double-quoted with C escapes when it has blanks, quotes or
 * control characters, or is empty. */
static void sb_add_value(sbuf_t *sb, const char *v)
{
    static const char hex[] = "0123456789abcdef";
    bool quote = v[0] == '\0';
    for (const char *p = v; *p && !quote; p++)
        quote = (unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f;
    if (!quote) {
        sb_add(sb, v, strlen(v));
        return;
    }
    sb_add(sb, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[4] = {'\\', (char)*p, 0, 0};
        if (*p == '"' || *p == '\\') {
            sb_add(sb, esc, 2);
        } else if (*p < ' ' || *p == 0x7f) {
            esc[1] = 'x';
            esc[2] = hex[*p >> 4];
            esc[3] = hex[*p & 15];
            sb_add(sb, esc, 4);
        } else {
            sb_add(sb, (const char *)p, 1);
        }
    }
    sb_add(sb, "\"", 1);
}

size_t gw_config_format(const gw_config_t *cfg, bool changed_only, char *buf, size_t size)
{
    sbuf_t sb = {buf, size, 0};
    gw_config_t *def = NULL;
    if (changed_only) {
        char err[256];
        def = malloc(sizeof *def);
        if (def && gw_config_defaults(def, err, sizeof err) < 0) {
            free(def);
            def = NULL; /* list everything rather than nothing */
        }
    }
    size_t listed = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        char v[GW_URL_MAX], d[GW_URL_MAX];
        format_value(&opts[i], cfg, v, sizeof v);
        if (def) {
            format_value(&opts[i], def, d, sizeof d);
            if (strcmp(v, d) == 0)
                continue;
        }
        if (listed++)
            sb_add(&sb, " ", 1);
        sb_add(&sb, opts[i].name, strlen(opts[i].name));
        sb_add(&sb, "=", 1);
        sb_add_value(&sb, v);
    }
    if (listed == 0)
        sb_add(&sb, "(none)", 6);
    if (size > 0)
        buf[sb.len < size ? sb.len : size - 1] = '\0';
    free(def);
    return sb.len;
}

void gw_config_log(const gw_config_t *cfg)
{
    if (!gw_log_enabled(GW_LOG_DEBUG))
        return;
    for (size_t i = 0; i < NOPTS; i++) {
        char v[GW_URL_MAX], q[GW_URL_MAX + 8];
        format_value(&opts[i], cfg, v, sizeof v);
        sbuf_t sb = {q, sizeof q, 0};
        sb_add_value(&sb, v);
        q[sb.len < sizeof q ? sb.len : sizeof q - 1] = '\0';
        gw_log_debug("config", "%s = %s", opts[i].name, q);
    }
}

/* "integer >= 1", "integer 0..65535", "true|false", "error|warn|info|debug" */
static void describe_type(const opt_t *o, char *buf, size_t size)
{
    switch (o->type) {
    case T_STRING:
        snprintf(buf, size, "string");
        return;
    case T_INT:
    case T_LONG:
        if (o->max == (o->type == T_INT ? INT32_MAX : INT64_MAX))
            snprintf(buf, size, "integer >= %" PRId64, o->min);
        else
            snprintf(buf, size, "integer %" PRId64 "..%" PRId64, o->min, o->max);
        return;
    case T_BOOL:
        snprintf(buf, size, "true|false");
        return;
    case T_ENUM: {
        size_t len = 0;
        buf[0] = '\0';
        for (int i = 0; o->names[i] && len < size; i++) {
            int n = snprintf(buf + len, size - len, "%s%s", i ? "|" : "", o->names[i]);
            len += n > 0 ? (size_t)n : 0;
        }
        return;
    }
    case T_LISTENER:
        snprintf(buf, size, "PLAINTEXT://HOST:PORT");
        return;
    case T_STORAGE:
    case T_METADATA:
        snprintf(buf, size, "URL");
        return;
    }
}

#define HELP_WIDTH 79 /* columns of --help output */

/* @text on lines of at most HELP_WIDTH columns, broken at spaces; the first
 * line starts with @first, the others with @rest. */
static void print_wrapped(FILE *out, const char *first, const char *rest, const char *text)
{
    const char *indent = first;
    while (*text) {
        size_t room = HELP_WIDTH - strlen(indent), len = strlen(text);
        if (len > room) {
            size_t cut = room;
            while (cut > 0 && text[cut] != ' ')
                cut--;
            if (cut == 0) /* one long word: break after it */
                cut = strcspn(text, " ");
            len = cut;
        }
        fprintf(out, "%s%.*s\n", indent, (int)len, text);
        text += len;
        while (*text == ' ')
            text++;
        indent = rest;
    }
}

void gw_config_help(FILE *out)
{
    fputs("Usage: nuthatch [--config FILE] [--KEY VALUE | --KEY=VALUE]...\n"
          "\n"
          "Nuthatch serves the Kafka protocol and keeps every partition's log in object\n"
          "storage.  With no arguments it serves PLAINTEXT on port 9092 and keeps its\n"
          "state under ./nuthatch-data.\n"
          "\n"
          "Options:\n"
          "  -h, --help       print this help and exit\n"
          "  --version        print the version and exit\n"
          "  --config FILE    read settings from FILE, a Java properties file (KEY=VALUE\n"
          "                   or KEY: VALUE lines, '#' and '!' comments, as Kafka's\n"
          "                   server.properties); the command line overrides it\n"
          "\n"
          "Settings (KEY=VALUE in FILE, --KEY VALUE or --KEY=VALUE on the command line):\n",
          out);
    for (size_t i = 0; i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        char type[128], head[512];
        describe_type(o, type, sizeof type);
        const char *def = o->def ? (o->def[0] ? o->def : "empty") : o->def_note;
        snprintf(head, sizeof head, "--%s (%s; default %s)%s", o->name, type, def,
                 o->not_built ? " [not supported yet]" : "");
        print_wrapped(out, "  ", "      ", head);
        print_wrapped(out, "      ", "      ", o->help);
    }
    fputs("\nExit status: 0 after --help or --version, 2 for a bad command line or\n"
          "configuration, 1 when the gateway fails.\n",
          out);
}
