/*
 * test_config.c: configuration loading (defaults, properties files, command
 * line, precedence, every error path), the listener and URL parsers, --help,
 * and the log line format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_config.h"
#include "gw_log.h"
#include "gw_props.h"
#include "gw_url.h"

/* ---------------------------------------------------------------- helpers */

typedef struct fixture {
    gw_config_t *cfg; /* heap: the struct is about 21 KiB */
    char err[1024];   /* errstr of the last load */
    char path[64];    /* temporary properties file, "" when none */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->cfg = calloc(1, sizeof *f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->path[0])
        unlink(f->path);
    free(f->cfg);
    free(f);
    return 0;
}

/* gw_config_load() on "nuthatch" followed by the NULL-terminated arguments. */
static int load(fixture_t *f, ...)
{
    char *argv[64] = {"nuthatch"};
    int argc = 1;
    va_list ap;
    va_start(ap, f);
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    f->err[0] = '\0';
    return gw_config_load(f->cfg, argc, argv, f->err, sizeof f->err);
}

/* Write @text to a fresh temporary file; its path is f->path. */
static const char *write_file(fixture_t *f, const char *text)
{
    if (f->path[0])
        unlink(f->path);
    snprintf(f->path, sizeof f->path, "/tmp/nh-test-config-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return f->path;
}

/* The load failed with one line naming @key (and containing @needle). */
static void assert_error(fixture_t *f, int rc, const char *key, const char *needle)
{
    if (rc != -1 || strstr(f->err, key) == NULL || (needle && strstr(f->err, needle) == NULL))
        fail_msg("rc %d, errstr \"%s\"; wanted -1 naming '%s'%s%s", rc, f->err, key,
                 needle ? " with " : "", needle ? needle : "");
    assert_null(strchr(f->err, '\n'));
    assert_null(strchr(f->err, '\r'));
}

static char hostname[256];

static const char *this_host(void)
{
    if (gethostname(hostname, sizeof hostname - 1) != 0)
        fail_msg("gethostname failed");
    return hostname;
}

/* ---------------------------------------------------------------- defaults */

static void test_defaults(void **state)
{
    fixture_t *f = *state;
    const gw_config_t *cfg = f->cfg;
    assert_int_equal(load(f, NULL), 0);
    assert_string_equal(cfg->listeners.host, "0.0.0.0");
    assert_int_equal(cfg->listeners.port, 9092);
    assert_string_equal(cfg->advertised_listeners.host, this_host());
    assert_int_equal(cfg->advertised_listeners.port, 9092);
    assert_int_equal(cfg->node_id, 1);
    assert_string_equal(cfg->data_dir, "./nuthatch-data");
    assert_int_equal(cfg->storage_url.kind, GW_STORAGE_DIR);
    assert_string_equal(cfg->storage_url.url, "file:./nuthatch-data/objects");
    assert_string_equal(cfg->storage_url.path, "./nuthatch-data/objects");
    assert_int_equal(cfg->metadata_url.kind, GW_METADATA_SQLITE);
    assert_string_equal(cfg->metadata_url.url, "sqlite:./nuthatch-data/meta.db");
    assert_string_equal(cfg->metadata_url.path, "./nuthatch-data/meta.db");
    assert_true(cfg->auto_create_topics_enable);
    assert_int_equal(cfg->num_partitions, 1);
    assert_int_equal(cfg->default_replication_factor, 1);
    assert_int_equal(cfg->message_max_bytes, 10 * 1024 * 1024 + 1024);
    assert_int_equal(cfg->socket_request_max_bytes, 104857600);
    assert_int_equal(cfg->connections_max_idle_ms, 600000);
    assert_int_equal(cfg->max_connections, 10000);
    assert_int_equal(cfg->request_receive_budget_bytes, 512LL << 20);
    assert_int_equal(cfg->request_partial_timeout_ms, 30000);
    assert_int_equal(cfg->flush_max_bytes, 8 << 20);
    assert_int_equal(cfg->flush_max_inflight, 4);
    assert_int_equal(cfg->log_level, GW_LOG_INFO);
    assert_int_equal(cfg->log_retention_ms, 604800000);
    assert_int_equal(cfg->log_retention_bytes, -1);
    assert_string_equal(cfg->metrics_listen, "");
    assert_int_equal(cfg->shutdown_timeout_ms, 5000);
    assert_int_equal(cfg->read_cache_bytes, 256 << 20);
    assert_int_equal(cfg->read_ahead_bytes, 32 << 20);
    assert_int_equal(cfg->tail_cache_bytes, 64 << 20);
    assert_string_equal(cfg->cluster_id, "");
    assert_string_equal(cfg->metadata_etcd_user, "");
    assert_int_equal(cfg->metadata_etcd_request_timeout_ms, 5000);
    assert_int_equal(cfg->metadata_etcd_connect_timeout_ms, 1000);
    assert_int_equal(cfg->storage_s3_request_timeout_ms, 30000);
    assert_int_equal(cfg->storage_s3_attempt_timeout_ms, 10000);
    assert_int_equal(cfg->storage_s3_max_requests, 16);
    assert_true(cfg->storage_s3_verify_etag);
    assert_false(cfg->storage_s3_sign_payload);
    assert_int_equal(cfg->startup_timeout_ms, 30000);

    /* gw_config_defaults() is the same thing. */
    gw_config_t *d = calloc(1, sizeof *d);
    char err[256];
    assert_int_equal(gw_config_defaults(d, err, sizeof err), 0);
    for (size_t i = 0; i < gw_config_key_count(); i++) {
        char a[GW_URL_MAX], b[GW_URL_MAX];
        const char *key = gw_config_key_name(i);
        assert_int_equal(gw_config_value_str(cfg, key, a, sizeof a), 0);
        assert_int_equal(gw_config_value_str(d, key, b, sizeof b), 0);
        assert_string_equal(a, b);
    }
    free(d);
}

/* Every key's effective value, written back with --KEY=VALUE, loads to the
 * same value: the formatter and the parsers agree. */
static void test_value_round_trip(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, "--listeners", "PLAINTEXT://[::1]:9", "--data.dir", "/tmp/a b%c",
                          "--cluster.id", "abc-DEF_123", "--log.level", "DEBUG", NULL),
                     0);
    gw_config_t *first = malloc(sizeof *first);
    memcpy(first, f->cfg, sizeof *first);
    static char args[64][GW_URL_MAX + 64];
    char *argv[72] = {"nuthatch"};
    assert_true(gw_config_key_count() <= 64);
    int argc = 1;
    for (size_t i = 0; i < gw_config_key_count(); i++) {
        char v[GW_URL_MAX];
        const char *key = gw_config_key_name(i);
        assert_int_equal(gw_config_value_str(first, key, v, sizeof v), 0);
        snprintf(args[i], sizeof args[i], "--%s=%s", key, v);
        argv[argc++] = args[i];
    }
    if (gw_config_load(f->cfg, argc, argv, f->err, sizeof f->err) != 0)
        fail_msg("%s", f->err);
    for (size_t i = 0; i < gw_config_key_count(); i++) {
        char a[GW_URL_MAX], b[GW_URL_MAX];
        const char *key = gw_config_key_name(i);
        gw_config_value_str(first, key, a, sizeof a);
        gw_config_value_str(f->cfg, key, b, sizeof b);
        assert_string_equal(a, b);
    }
    assert_string_equal(f->cfg->storage_url.path, "/tmp/a b%c/objects");
    assert_string_equal(f->cfg->storage_url.url, "file:///tmp/a%20b%25c/objects");
    assert_string_equal(f->cfg->metadata_url.path, "/tmp/a b%c/meta.db");
    assert_int_equal(f->cfg->log_level, GW_LOG_DEBUG);
    assert_int_equal(gw_config_value_str(first, "no.such.key", args[0], 8), -1);
    free(first);
}

/* ----------------------------------------------------------- properties */

typedef struct kv_list {
    int n;
    char key[16][64];
    char value[16][128];
    int line[16];
} kv_list_t;

static int collect(void *arg, int line, const char *key, const char *value, char *err,
                   size_t err_size)
{
    (void)err;
    (void)err_size;
    kv_list_t *kv = arg;
    assert_true(kv->n < 16);
    snprintf(kv->key[kv->n], sizeof kv->key[0], "%s", key);
    snprintf(kv->value[kv->n], sizeof kv->value[0], "%s", value);
    kv->line[kv->n] = line;
    kv->n++;
    return 0;
}

static void test_props_syntax(void **state)
{
    (void)state;
    static const char text[] = "# comment\n"
                               "! also a comment \\\n" /* a comment never continues */
                               "   \t\n"               /* blank */
                               "a=1\n"                 /* line 4 */
                               "  b : two words  \n"   /* ':' separator, blanks trimmed */
                               "c   three\r\n"         /* blank separator, CRLF */
                               "d=first \\\n"          /* continuation ... */
                               "     second\\\r\n" /* ... leading blanks of the next line dropped */
                               "  third\n"
                               "e\\=x\\:y\\ z=\\ lead\\ttab\\u00e9\\uD83D\\uDE00\\ \n" /* escapes */
                               "f=back\\\\\n" /* even backslashes: no continuation */
                               "g=\n"         /* empty value */
                               "h\n"          /* key only */
                               "i==x\n"       /* only the first '=' separates */
                               "j=#not a comment\rk=cr-only\n" /* '\r' alone ends a line */
                               "l=end\\"; /* a backslash at the end is dropped */
    kv_list_t kv = {0};
    char err[256];
    assert_int_equal(gw_props_parse(text, sizeof text - 1, collect, &kv, err, sizeof err), 0);
    static const struct {
        const char *key, *value;
        int line;
    } want[] = {
        {"a", "1", 4},
        {"b", "two words", 5},
        {"c", "three", 6},
        {"d", "first secondthird", 7}, /* as Java: no blank is added */
        {"e=x:y z", " lead\ttab\xc3\xa9\xf0\x9f\x98\x80 ", 10},
        {"f", "back\\", 11},
        {"g", "", 12},
        {"h", "", 13},
        {"i", "=x", 14},
        {"j", "#not a comment", 15},
        {"k", "cr-only", 16},
        {"l", "end", 17},
    };
    assert_int_equal(kv.n, sizeof want / sizeof want[0]);
    for (int i = 0; i < kv.n; i++) {
        assert_string_equal(kv.key[i], want[i].key);
        assert_string_equal(kv.value[i], want[i].value);
        assert_int_equal(kv.line[i], want[i].line);
    }
}

static void test_props_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a=1\nb=\\u12G4\n", /* not hex */
        "a=1\nb=\\u12\n",   /* too short */
        "a=1\nb=\\uD83D\n", /* lone high surrogate */
        "a=1\nb=\\uDE00\n", /* lone low surrogate */
        "a=1\nb=\\u0000\n", /* NUL */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kv_list_t kv = {0};
        char err[256] = "";
        assert_int_equal(gw_props_parse(bad[i], strlen(bad[i]), collect, &kv, err, sizeof err), -1);
        assert_non_null(strstr(err, "line 2:"));
        assert_null(strchr(err, '\n'));
    }
    static const char nul[] = "a=1\r\nb=\0\n";
    kv_list_t kv = {0};
    char err[256] = "";
    assert_int_equal(gw_props_parse(nul, sizeof nul - 1, collect, &kv, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2: NUL"));
}

/* -------------------------------------------------------------- file + CLI */

static void test_file(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "# Nuthatch\n"
                                     "node.id = 7\n"
                                     "num.partitions: 3\n"
                                     "auto.create.topics.enable   FALSE\n"
                                     "log.level=warn\n"
                                     "data.dir=/var/lib/\\\n"
                                     "    nuthatch\n"
                                     "cluster.id=\\u0041bc\n"
                                     "listeners=plaintext://127.0.0.1:19092\n"
                                     "node.id=8\n"); /* the last one wins */
    assert_int_equal(load(f, "--config", path, NULL), 0);
    const gw_config_t *cfg = f->cfg;
    assert_int_equal(cfg->node_id, 8);
    assert_int_equal(cfg->num_partitions, 3);
    assert_false(cfg->auto_create_topics_enable);
    assert_int_equal(cfg->log_level, GW_LOG_WARN);
    assert_string_equal(cfg->data_dir, "/var/lib/nuthatch");
    assert_string_equal(cfg->cluster_id, "Abc");
    assert_string_equal(cfg->listeners.host, "127.0.0.1");
    assert_int_equal(cfg->listeners.port, 19092);
    /* Derived from the file's values. */
    assert_string_equal(cfg->advertised_listeners.host, "127.0.0.1");
    assert_int_equal(cfg->advertised_listeners.port, 19092);
    assert_string_equal(cfg->storage_url.url, "file:///var/lib/nuthatch/objects");
    assert_string_equal(cfg->storage_url.path, "/var/lib/nuthatch/objects");
    assert_string_equal(cfg->metadata_url.path, "/var/lib/nuthatch/meta.db");
}

static void test_cli_overrides_file(void **state)
{
    fixture_t *f = *state;
    const char *path = write_file(f, "num.partitions=3\nnode.id=4\nstorage.url=file:///s\n");
    /* The command line wins whether it comes before or after --config. */
    assert_int_equal(load(f, "--num.partitions", "5", "--config", path, "--node.id=6", NULL), 0);
    assert_int_equal(f->cfg->num_partitions, 5);
    assert_int_equal(f->cfg->node_id, 6);
    assert_string_equal(f->cfg->storage_url.path, "/s"); /* set in the file: not derived */
    assert_int_equal(load(f,
                          "--config="
                          "/dev/null",
                          "--node.id", "2", "--node.id=3", NULL),
                     0);
    assert_int_equal(f->cfg->node_id, 3); /* the last one wins */
    /* Values may start with '-', and surrounding blanks are ignored. */
    assert_int_equal(load(f, "--connections.max.idle.ms", "-1", "--node.id", " 9 ", NULL), 0);
    assert_int_equal(f->cfg->connections_max_idle_ms, -1);
    assert_int_equal(f->cfg->node_id, 9);
    /* An explicit advertised.listeners is kept. */
    assert_int_equal(load(f, "--advertised.listeners", "PLAINTEXT://kafka.example:9093", NULL), 0);
    assert_string_equal(f->cfg->advertised_listeners.host, "kafka.example");
    assert_int_equal(f->cfg->advertised_listeners.port, 9093);
}

static void test_help_and_version(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, "--help", NULL), GW_CONFIG_HELP);
    assert_int_equal(load(f, "-h", NULL), GW_CONFIG_HELP);
    assert_int_equal(load(f, "--version", NULL), GW_CONFIG_VERSION);
    /* Help wins over mistakes anywhere on the line. */
    assert_int_equal(load(f, "--bogus", "1", "--num.partitions", "--help", NULL), GW_CONFIG_HELP);
    assert_int_equal(load(f, "--config", "/nonexistent", "-h", NULL), GW_CONFIG_HELP);
}

static void test_help_lists_every_key(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    gw_config_help(out);
    fclose(out);
    assert_true(gw_config_key_count() >= 25);
    for (size_t i = 0; i < gw_config_key_count(); i++) {
        char needle[128];
        snprintf(needle, sizeof needle, "\n  --%s (", gw_config_key_name(i));
        if (!strstr(text, needle))
            fail_msg("--help does not list %s", gw_config_key_name(i));
    }
    assert_non_null(strstr(text, "--metrics.listen (string; default empty)\n"));
    assert_null(strstr(text, "[not supported yet]"));
    assert_non_null(strstr(text, "--config FILE"));
    assert_non_null(strstr(text, "default 10486784"));
    /* No line wider than 79 columns. */
    for (char *line = text; *line;) {
        size_t n = strcspn(line, "\n");
        if (n > 79)
            fail_msg("help line too wide: %.*s", (int)n, line);
        line += n + (line[n] == '\n');
    }
    free(text);
}

/* ------------------------------------------------------------------ errors */

static void test_errors(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *args[4]; /* NULL-terminated */
        const char *key;     /* named in the message */
        const char *needle;  /* also in the message, or NULL */
    } cases[] = {
        {{"--foo", "1"}, "unknown configuration key 'foo'", NULL},
        {{"--num_partitions", "1"}, "'num_partitions'", "did you mean 'num.partitions'?"},
        {{"--foo"}, "unknown configuration key 'foo'", NULL},
        {{"--num.partitions"}, "num.partitions: missing value", NULL},
        {{"--num.partitions", "--node.id", "1"}, "num.partitions: missing value", NULL},
        {{"--config"}, "config: missing value", NULL},
        {{"--config="}, "config: missing value", NULL},
        {{"--config", "/dev/null", "--config=/dev/null"}, "config: given more than once", NULL},
        {{"extra"}, "unexpected argument 'extra'", NULL},
        {{"-x"}, "unknown option '-x'", NULL},
        {{"--"}, "unexpected argument '--'", NULL},
        {{"--num.partitions", "0"}, "num.partitions: '0' is below the minimum 1", NULL},
        {{"--num.partitions", "x1"}, "num.partitions: 'x1' is not an integer", NULL},
        {{"--num.partitions="}, "num.partitions: '' is not an integer", NULL},
        {{"--num.partitions", "1.5"}, "num.partitions", "is not an integer"},
        {{"--num.partitions", "0x10"}, "num.partitions", "is not an integer"},
        {{"--num.partitions", "1 2"}, "num.partitions", "is not an integer"},
        {{"--node.id", "2147483648"},
         "node.id: '2147483648' is above the maximum 2147483647",
         NULL},
        {{"--node.id", "-1"}, "node.id: '-1' is below the minimum 0", NULL},
        {{"--read.cache.bytes", "99999999999999999999"}, "read.cache.bytes", "above the maximum"},
        {{"--log.retention.bytes", "-99999999999999999999"},
         "log.retention.bytes",
         "below the minimum"},
        {{"--default.replication.factor", "32768"},
         "default.replication.factor",
         "above the maximum 32767"},
        {{"--flush.max.inflight", "0"}, "flush.max.inflight", "below the minimum 1"},
        {{"--auto.create.topics.enable", "yes"},
         "auto.create.topics.enable",
         "'yes' is not true or false"},
        {{"--log.level", "loud"}, "log.level", "'loud' is not one of error, warn, info, debug"},
        {{"--data.dir", ""}, "data.dir: must not be empty", NULL},
        {{"--data.dir", "a\nb"}, "data.dir", "control character"},
        {{"--cluster.id", "has space"}, "cluster.id", "only letters"},
        {{"--cluster.id", "0123456789012345678901234567890123456789012345678901234567890123456789"},
         "cluster.id",
         "longer than"},
        {{"--message.max.bytes", "2000", "--socket.request.max.bytes=1000"},
         "message.max.bytes",
         "socket.request.max.bytes"},
        {{"--storage.s3.max.requests", "0"}, "storage.s3.max.requests", "below the minimum 1"},
        {{"--storage.s3.verify.etag", "no"}, "storage.s3.verify.etag", "not true or false"},
        {{"--startup.timeout.ms", "-1"}, "startup.timeout.ms", "below the minimum 0"},
        {{"--metadata.etcd.request.timeout.ms", "0"},
         "metadata.etcd.request.timeout.ms",
         "below the minimum 1"},
        {{"--socket.request.max.bytes", "1000000000"},
         "request.receive.budget.bytes",
         "socket.request.max.bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc =
            load(f, cases[i].args[0], cases[i].args[1], cases[i].args[2], cases[i].args[3], NULL);
        assert_error(f, rc, cases[i].key, cases[i].needle);
    }
}

/* Every key refuses a value with a control character, naming the key. */
static void test_every_key_names_itself(void **state)
{
    fixture_t *f = *state;
    for (size_t i = 0; i < gw_config_key_count(); i++) {
        char arg[128];
        const char *key = gw_config_key_name(i);
        snprintf(arg, sizeof arg, "--%s=bad\x01value\n", key);
        assert_error(f, load(f, arg, NULL), key, NULL);
    }
    /* A very long value is cut in the message, and the message stays one line. */
    char *arg = malloc(20000);
    memset(arg, 'x', 19999);
    arg[19999] = '\0';
    memcpy(arg, "--data.dir=", 11);
    assert_error(f, load(f, arg, NULL), "data.dir", "longer than");
    assert_true(strlen(f->err) < 300);
    free(arg);
}

static void test_file_errors(void **state)
{
    fixture_t *f = *state;
    assert_error(f, load(f, "--config", "/nonexistent/nuthatch.properties", NULL),
                 "config file '/nonexistent/nuthatch.properties'", "No such file");
    assert_error(f, load(f, "--config", "/tmp", NULL), "config file '/tmp'", NULL);
    const char *path = write_file(f, "# ok\nnode.id=1\n\nnum_partitions=2\n");
    assert_error(f, load(f, "--config", path, NULL),
                 "line 4: unknown configuration key "
                 "'num_partitions'",
                 "did you mean");
    assert_non_null(strstr(f->err, path));
    path = write_file(f, "num.partitions=\\\n  0\n");
    assert_error(f, load(f, "--config", path, NULL), "line 1: num.partitions: '0' is below", NULL);
    path = write_file(f, "cluster.id=\\uZZZZ\n");
    assert_error(f, load(f, "--config", path, NULL), "line 1: malformed \\uXXXX", NULL);
    /* A value that is an error in the file is fine when the command line
     * overrides it?  No: the file is read first and each setting checked. */
    path = write_file(f, "num.partitions=0\n");
    assert_error(f, load(f, "--config", path, "--num.partitions", "2", NULL), "num.partitions",
                 NULL);
    /* A file larger than GW_CONFIG_FILE_MAX. */
    char *big = malloc(GW_CONFIG_FILE_MAX + 2);
    memset(big, '#', GW_CONFIG_FILE_MAX + 1);
    big[GW_CONFIG_FILE_MAX + 1] = '\0';
    path = write_file(f, big);
    free(big);
    assert_error(f, load(f, "--config", path, NULL), "config file", "larger than");
}

static void test_not_built_at_default(void **state)
{
    fixture_t *f = *state;
    /* The default, however written, is accepted. */
    assert_int_equal(load(f, "--metrics.listen", "  ", NULL), 0);
}

/* -------------------------------------------------------------- listeners */

static void test_listeners(void **state)
{
    fixture_t *f = *state;
    const gw_config_t *cfg = f->cfg;
    char v[GW_URL_MAX];

    assert_int_equal(load(f, "--listeners", "PLAINTEXT://10.1.2.3:9093", NULL), 0);
    assert_string_equal(cfg->listeners.host, "10.1.2.3");
    assert_int_equal(cfg->listeners.port, 9093);
    assert_string_equal(cfg->advertised_listeners.host, "10.1.2.3");

    assert_int_equal(load(f, "--listeners", "PLAINTEXT://[::1]:9092", NULL), 0);
    assert_string_equal(cfg->listeners.host, "::1");
    gw_config_value_str(cfg, "listeners", v, sizeof v);
    assert_string_equal(v, "PLAINTEXT://[::1]:9092");

    assert_int_equal(load(f, "--listeners", "PLAINTEXT://[fe80::1%eth0]:9092", NULL), 0);
    assert_string_equal(cfg->listeners.host, "fe80::1%eth0");

    /* Wildcards bind everywhere and advertise this machine's name. */
    static const char *const wild[] = {"PLAINTEXT://:9094", "PLAINTEXT://0.0.0.0:9094",
                                       "PLAINTEXT://[::]:9094", "PLAINTEXT://[0:0::0]:9094"};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        assert_int_equal(load(f, "--listeners", wild[i], NULL), 0);
        assert_string_equal(cfg->advertised_listeners.host, this_host());
        assert_int_equal(cfg->advertised_listeners.port, 9094);
    }
    assert_string_equal(cfg->listeners.host, "0:0::0");

    assert_int_equal(load(f, "--listeners", "plaintext://localhost:0", NULL), 0);
    assert_int_equal(cfg->listeners.port, 0);
    assert_int_equal(cfg->advertised_listeners.port, 0); /* the bound port, later */
    assert_int_equal(load(f, "--listeners", "PLAINTEXT://h:65535", NULL), 0);

    static const struct {
        const char *key, *value, *needle;
    } bad[] = {
        {"listeners", "PLAINTEXT://h:65536", "bad port '65536'"},
        {"listeners", "PLAINTEXT://h:-1", "bad port"},
        {"listeners", "PLAINTEXT://h:x", "bad port 'x'"},
        {"listeners", "PLAINTEXT://h:", "bad port ''"},
        {"listeners", "PLAINTEXT://h:9092/", "bad port"},
        {"listeners", "PLAINTEXT://h", "no ':PORT'"},
        {"listeners", "PLAINTEXT://::1:9092", "brackets"},
        {"listeners", "PLAINTEXT://[::1:9092", "no ']'"},
        {"listeners", "PLAINTEXT://[::1]9092", "no ':PORT'"},
        {"listeners", "PLAINTEXT://[nothex]:9092", "not an IPv6 address"},
        {"listeners", "PLAINTEXT://ho st:9092", "not a host name"},
        {"listeners", "SSL://h:9093", "listener 'SSL' is not supported"},
        {"listeners", "SASL_PLAINTEXT://h:9093", "only PLAINTEXT"},
        {"listeners", "h:9092", "not a listener"},
        {"listeners", "", "not a listener"},
        {"listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2", "only one listener is supported, got 2"},
        {"listeners", "PLAINTEXT://a:1,", "single listener"},
        {"advertised.listeners", "PLAINTEXT://0.0.0.0:9092", "wildcard"},
        {"advertised.listeners", "PLAINTEXT://:9092", "wildcard"},
        {"advertised.listeners", "PLAINTEXT://[::]:9092", "wildcard"},
        {"advertised.listeners", "PLAINTEXT://h:0", "port 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[256];
        snprintf(arg, sizeof arg, "--%s=%s", bad[i].key, bad[i].value);
        assert_error(f, load(f, arg, NULL), bad[i].key, bad[i].needle);
    }
}

/* ------------------------------------------------------------------- URLs */

static void test_storage_urls(void **state)
{
    fixture_t *f = *state;
    const gw_config_t *cfg = f->cfg;
    static const struct {
        const char *url, *path;
    } good[] = {
        {"file:///var/lib/nuthatch/objects", "/var/lib/nuthatch/objects"},
        {"FILE:///x", "/x"},
        {"file://localhost/srv/o", "/srv/o"},
        {"file:/abs", "/abs"},
        {"file:rel/dir", "rel/dir"},
        {"file:./rel", "./rel"},
        {"file:///with%20space/%3Fq", "/with space/?q"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(load(f, "--storage.url", good[i].url, NULL), 0);
        assert_int_equal(cfg->storage_url.kind, GW_STORAGE_DIR);
        assert_string_equal(cfg->storage_url.path, good[i].path);
        assert_string_equal(cfg->storage_url.url, good[i].url);
        assert_string_equal(cfg->metadata_url.path, "./nuthatch-data/meta.db");
    }
    static const struct {
        const char *url, *needle;
    } bad[] = {
        {"file://host/x", "names the host 'host'"},
        {"file://./x", "names the host '.'"},
        {"file://", "has no path"},
        {"file:", "has no path"},
        {"file:///x?y", "no query"},
        {"file:///x#y", "no query or fragment"},
        {"file:///x%2", "bad percent-escape"},
        {"file:///x%zz", "bad percent-escape"},
        {"file:///x%00", "bad percent-escape"},
        {"s3://bucket/prefix", "no endpoint"},
        {"s3://bucket", "no endpoint"},
        {"s3://B/p?endpoint=http://h", "bad bucket name"},
        {"s3://ab?endpoint=http://h", "3 to 63 characters"},
        {"s3://a234567890123456789012345678901234567890123456789012345678901234?endpoint=http://h",
         "3 to 63 characters"},
        {"s3://-bucket?endpoint=http://h", "starts and ends with a letter or digit"},
        {"s3://bucket.?endpoint=http://h", "starts and ends"},
        {"s3://my..bucket?endpoint=http://h", "no '..'"},
        {"s3://192.168.1.1?endpoint=http://h", "not an IP address"},
        {"s3://buck%65t?endpoint=http://h", "only a-z"},
        {"s3://?endpoint=http://h", "bad bucket name"},
        {"s3://bucket/p?addressing=sideways&endpoint=http://h", "bad value for 'addressing'"},
        {"s3://bucket/p?endpoint=minio:9000", "must start with http:// or https://"},
        {"s3://bucket/p?endpoint=ftp://minio:9000", "must start with http://"},
        {"s3://bucket/p?endpoint=http://minio:9000/path", "no path"},
        {"s3://bucket/p?endpoint=http://minio:99999", "bad port"},
        {"s3://bucket/p?endpoint=http://minio:0", "port 0"},
        {"s3://bucket/p?endpoint=http://", "not a host name"},
        {"s3://bucket/p?endpoint=http://[::1", "no ']'"},
        {"s3://bucket/p?endpoint=http://h&endpoint=http://g", "'endpoint' given twice"},
        {"s3://bucket/p?endpoint=http://h&region=", "bad value for 'region'"},
        {"s3://bucket/p?endpoint=http://h&region=us east", "bad value for 'region'"},
        {"s3://bucket/p?endpoint=http://h&color=blue", "unknown parameter 'color'"},
        {"s3://bucket/p?endpoint=http://h%zz", "bad percent-escape in 'endpoint'"},
        {"s3://bucket/a//b?endpoint=http://h", "empty, '.' or '..' component"},
        {"s3://bucket//a?endpoint=http://h", "empty, '.' or '..' component"},
        {"s3://bucket/a/../b?endpoint=http://h", "'..' component"},
        {"s3://bucket/a/%01?endpoint=http://h", "control character"},
        {"s3://bucket/p?endpoint=http://h#frag", "no fragment"},
        {"s3://bucket/p?endpoint=http://127.0.0.1:9000&addressing=virtual", "host name"},
        {"s3://bucket/p?endpoint=http://[::1]:9000&addressing=virtual", "host name"},
        {"s3://my_bucket?endpoint=http://s3.example&addressing=virtual", "addressing=path"},
        {"http://x/y", "unsupported URL scheme"},
        {"/var/lib/x", "is not a URL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[256];
        snprintf(arg, sizeof arg, "--storage.url=%s", bad[i].url);
        assert_error(f, load(f, arg, NULL), "storage.url", bad[i].needle);
    }
}

/* S3 and etcd loads below need the credentials in the environment. */
static void set_s3_env(void)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
}

static void test_s3_urls(void **state)
{
    fixture_t *f = *state;
    const gw_storage_url_t *u = &f->cfg->storage_url;
    set_s3_env();
    static const struct {
        const char *url, *bucket, *prefix, *endpoint, *region;
        gw_s3_addressing_t addressing;
    } good[] = {
        {"s3://bucket?endpoint=http://127.0.0.1:9000", "bucket", "", "http://127.0.0.1:9000",
         "us-east-1", GW_S3_PATH},
        {"s3://bucket/?endpoint=http://127.0.0.1:9000/", "bucket", "", "http://127.0.0.1:9000",
         "us-east-1", GW_S3_PATH},
        {"s3://my-bucket.v2/nh/cluster-a?endpoint=HTTPS://s3.eu-west-1.amazonaws.com"
         "&region=eu-west-1&addressing=virtual",
         "my-bucket.v2", "nh/cluster-a", "https://s3.eu-west-1.amazonaws.com", "eu-west-1",
         GW_S3_VIRTUAL},
        {"s3://b01/a%20b/c/?addressing=path&region=auto&endpoint=https%3A%2F%2Fstorage."
         "googleapis.com",
         "b01", "a b/c", "https://storage.googleapis.com", "auto", GW_S3_PATH},
        {"s3://gcs_bucket/p?endpoint=http://[::1]:9000", "gcs_bucket", "p", "http://[::1]:9000",
         "us-east-1", GW_S3_PATH},
        {"s3://bkt/x?endpoint=http://localhost", "bkt", "x", "http://localhost", "us-east-1",
         GW_S3_PATH},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (load(f, "--storage.url", good[i].url, NULL) != 0)
            fail_msg("%s: %s", good[i].url, f->err);
        assert_int_equal(u->kind, GW_STORAGE_S3);
        assert_string_equal(u->url, good[i].url);
        assert_string_equal(u->bucket, good[i].bucket);
        assert_string_equal(u->prefix, good[i].prefix);
        assert_string_equal(u->endpoint, good[i].endpoint);
        assert_string_equal(u->region, good[i].region);
        assert_int_equal(u->addressing, good[i].addressing);
        assert_string_equal(u->path, "");
    }
    /* A file: URL after an s3:// one leaves no S3 field behind. */
    assert_int_equal(load(f, "--storage.url", good[2].url, "--storage.url", "file:///x", NULL), 0);
    assert_int_equal(u->kind, GW_STORAGE_DIR);
    assert_string_equal(u->bucket, "");
    assert_string_equal(u->endpoint, "");
    /* A failed parse leaves the value that was there. */
    gw_storage_url_t before;
    assert_int_equal(gw_storage_url_parse("k", good[2].url, &before, f->err, sizeof f->err), 0);
    gw_storage_url_t after = before;
    assert_int_equal(gw_storage_url_parse("k", "s3://bucket/a//b?endpoint=http://h", &after, f->err,
                                          sizeof f->err),
                     -1);
    assert_memory_equal(&before, &after, sizeof before);
}

/* s3:// needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: a configuration
 * error naming them; file: does not. */
static void test_s3_credentials(void **state)
{
    fixture_t *f = *state;
    const char *url = "s3://bucket/p?endpoint=http://127.0.0.1:9000";
    set_s3_env();
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_error(f, load(f, "--storage.url", url, NULL), "storage.url", "AWS_ACCESS_KEY_ID is");
    assert_null(strstr(f->err, "AWS_SECRET_ACCESS_KEY is"));
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_error(f, load(f, "--storage.url", url, NULL), "storage.url",
                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
    setenv("AWS_ACCESS_KEY_ID", "id", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "", 1);
    assert_error(f, load(f, "--storage.url", url, NULL), "storage.url",
                 "AWS_SECRET_ACCESS_KEY is not set");
    assert_int_equal(load(f, NULL), 0);
    set_s3_env();
    assert_int_equal(load(f, "--storage.url", url, NULL), 0);
    /* The secrets are nowhere in the configuration's text. */
    char buf[GW_LOG_LINE_MAX];
    gw_config_format(f->cfg, false, buf, sizeof buf);
    assert_null(strstr(buf, "AKIDEXAMPLE"));
    assert_null(strstr(buf, "secret"));
}

static void test_metadata_urls(void **state)
{
    fixture_t *f = *state;
    const gw_config_t *cfg = f->cfg;
    assert_int_equal(load(f, "--metadata.url", "sqlite:///var/lib/n/meta.db", NULL), 0);
    assert_int_equal(cfg->metadata_url.kind, GW_METADATA_SQLITE);
    assert_string_equal(cfg->metadata_url.path, "/var/lib/n/meta.db");
    assert_int_equal(load(f, "--metadata.url", "sqlite:meta.db", NULL), 0);
    assert_string_equal(cfg->metadata_url.path, "meta.db");
    assert_int_equal(load(f, "--metadata.url", "sqlite://localhost/m.db", NULL), 0);
    assert_string_equal(cfg->metadata_url.path, "/m.db");
    static const struct {
        const char *url, *needle;
    } bad[] = {
        {"etcd://a/nuthatch", "no ':PORT'"},
        {"etcd://a:2379,,b:2379", "no ':PORT'"},
        {"etcd://a:2379,a:2379", "given twice"},
        {"etcd://a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16,a:17",
         "more than 16 endpoints"},
        {"etcd://a:2379/nh?x=1", "no query or fragment"},
        {"etcd://a:2379/nh#x", "no query or fragment"},
        {"etcd://a:2379//nh", "empty, '.' or '..' component"},
        {"etcd://a:2379/a/./b", "component"},
        {"etcd://a:2379/%zz", "bad percent-escape"},
        {"etcd://a:0/nuthatch", "needs a host and a port"},
        {"etcd:///nuthatch", "names no etcd endpoint"},
        {"sqlite://db.example/m.db", "names the host"},
        {"sqlite:", "has no path"},
        {"mysql://x/y", "unsupported URL scheme"},
        {"meta.db", "is not a URL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[256];
        snprintf(arg, sizeof arg, "--metadata.url=%s", bad[i].url);
        assert_error(f, load(f, arg, NULL), "metadata.url", bad[i].needle);
    }
}

static void test_etcd_urls(void **state)
{
    fixture_t *f = *state;
    const gw_metadata_url_t *u = &f->cfg->metadata_url;
    assert_int_equal(load(f, "--metadata.url", "etcd://127.0.0.1:2379", NULL), 0);
    assert_int_equal(u->kind, GW_METADATA_ETCD);
    assert_int_equal(u->nendpoints, 1);
    assert_string_equal(u->endpoints[0], "http://127.0.0.1:2379");
    assert_string_equal(u->prefix, "");
    assert_string_equal(u->path, "");
    assert_int_equal(load(f, "--metadata.url", "ETCD://127.0.0.1:2379/", NULL), 0);
    assert_string_equal(u->prefix, "");
    assert_int_equal(
        load(f, "--metadata.url", "etcd://a:2379,b.example:12379,[::1]:3/nh-cluster-a/x/", NULL),
        0);
    assert_int_equal(u->nendpoints, 3);
    assert_string_equal(u->endpoints[0], "http://a:2379");
    assert_string_equal(u->endpoints[1], "http://b.example:12379");
    assert_string_equal(u->endpoints[2], "http://[::1]:3");
    assert_string_equal(u->prefix, "/nh-cluster-a/x");
    assert_int_equal(load(f, "--metadata.url", "etcd://h:1/a%20b", NULL), 0);
    assert_string_equal(u->prefix, "/a b");
    assert_string_equal(u->url, "etcd://h:1/a%20b");
    /* sqlite: after etcd:// leaves nothing of it behind. */
    assert_int_equal(
        load(f, "--metadata.url", "etcd://h:1/p", "--metadata.url", "sqlite:///m.db", NULL), 0);
    assert_int_equal(u->kind, GW_METADATA_SQLITE);
    assert_int_equal(u->nendpoints, 0);
    assert_string_equal(u->prefix, "");
}

/* metadata.etcd.user takes its password from NUTHATCH_ETCD_PASSWORD and
 * goes only with etcd://. */
static void test_etcd_user(void **state)
{
    fixture_t *f = *state;
    unsetenv("NUTHATCH_ETCD_PASSWORD");
    assert_error(f, load(f, "--metadata.url", "etcd://h:1", "--metadata.etcd.user", "nh", NULL),
                 "metadata.etcd.user", "NUTHATCH_ETCD_PASSWORD");
    setenv("NUTHATCH_ETCD_PASSWORD", "pw", 1);
    assert_int_equal(load(f, "--metadata.url", "etcd://h:1", "--metadata.etcd.user", "nh", NULL),
                     0);
    assert_string_equal(f->cfg->metadata_etcd_user, "nh");
    assert_error(f, load(f, "--metadata.etcd.user", "nh", NULL), "metadata.etcd.user",
                 "not an etcd:// URL");
    unsetenv("NUTHATCH_ETCD_PASSWORD");
    assert_int_equal(load(f, "--metadata.url", "etcd://h:1", NULL), 0);
}

static void test_derived_urls(void **state)
{
    fixture_t *f = *state;
    const gw_config_t *cfg = f->cfg;
    assert_int_equal(load(f, "--data.dir", "/srv/nh/", NULL), 0);
    assert_string_equal(cfg->storage_url.url, "file:///srv/nh/objects");
    assert_string_equal(cfg->metadata_url.url, "sqlite:///srv/nh/meta.db");
    assert_int_equal(load(f, "--data.dir", "/", NULL), 0);
    assert_string_equal(cfg->storage_url.path, "/objects");
    assert_int_equal(load(f, "--data.dir", "data #1?", NULL), 0);
    assert_string_equal(cfg->storage_url.url, "file:data%20%231%3F/objects");
    assert_string_equal(cfg->storage_url.path, "data #1?/objects");
    assert_string_equal(cfg->metadata_url.path, "data #1?/meta.db");
    /* An explicit URL is not replaced. */
    assert_int_equal(load(f, "--data.dir", "/a", "--metadata.url", "sqlite:///b/m.db", NULL), 0);
    assert_string_equal(cfg->storage_url.path, "/a/objects");
    assert_string_equal(cfg->metadata_url.path, "/b/m.db");
    /* A data.dir too long for the derived URL is reported. */
    char *dir = malloc(GW_PATH_MAX);
    memset(dir, 'd', GW_PATH_MAX - 5);
    dir[GW_PATH_MAX - 5] = '\0';
    assert_error(f, load(f, "--data.dir", dir, NULL), "storage.url", "data.dir");
    free(dir);
}

/* -------------------------------------------------------------- reporting */

static void test_format(void **state)
{
    fixture_t *f = *state;
    char buf[GW_LOG_LINE_MAX];
    assert_int_equal(load(f, NULL), 0);
    gw_config_format(f->cfg, true, buf, sizeof buf);
    assert_string_equal(buf, "(none)");
    gw_config_format(f->cfg, false, buf, sizeof buf);
    assert_non_null(strstr(buf, "listeners=PLAINTEXT://0.0.0.0:9092 "));
    assert_non_null(strstr(buf, " cluster.id=\"\""));

    assert_int_equal(load(f, "--num.partitions", "3", "--data.dir", "/a b", NULL), 0);
    gw_config_format(f->cfg, true, buf, sizeof buf);
    assert_string_equal(buf, "data.dir=\"/a b\" storage.url=file:///a%20b/objects "
                             "metadata.url=sqlite:///a%20b/meta.db num.partitions=3");
    /* Cut to fit, returning the length it needed. */
    size_t need = gw_config_format(f->cfg, true, buf, 10);
    assert_int_equal(strlen(buf), 9);
    assert_true(need > 9);
}

/* ------------------------------------------------------------------- logs */

/* Run gw_log calls with stderr sent to a temporary file; return its text. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/nh-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)len + 1);
    assert_int_equal(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    return text;
}

static void log_some(void)
{
    gw_log_set_level(GW_LOG_INFO);
    gw_log_info("config", "hello %d", 5);
    gw_log_debug("config", "hidden %d", 6);
    gw_log_warn("conn", "two\nlines\x01");
    gw_log_set_level(GW_LOG_ERROR);
    gw_log_warn("conn", "hidden too");
    gw_log_error("main", "the end");
    char big[GW_LOG_LINE_MAX * 2];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    gw_log_error("main", "%s", big);
    gw_log_set_level(GW_LOG_INFO);
}

static void test_log_lines(void **state)
{
    (void)state;
    char *text = capture_stderr(log_some);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "(ERROR|WARN|INFO|DEBUG) [a-z]+: ",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    char *lines[8];
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        assert_true(n < 8);
        assert_int_equal(regexec(&re, l, 0, NULL, 0), 0);
        lines[n++] = l;
    }
    regfree(&re);
    assert_int_equal(n, 4);
    assert_non_null(strstr(lines[0], "Z INFO config: hello 5"));
    assert_non_null(strstr(lines[1], "Z WARN conn: two\\nlines\\x01"));
    assert_non_null(strstr(lines[2], "Z ERROR main: the end"));
    assert_int_equal(strlen(lines[3]) + 1, GW_LOG_LINE_MAX); /* cut, newline included */
    assert_non_null(strstr(lines[3], "bbb..."));
    assert_string_equal(gw_log_level_name(GW_LOG_DEBUG), "DEBUG");
    assert_true(gw_log_enabled(GW_LOG_INFO));
    assert_false(gw_log_enabled(GW_LOG_DEBUG));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_round_trip, setup, teardown),
        cmocka_unit_test(test_props_syntax),
        cmocka_unit_test(test_props_errors),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_overrides_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test(test_help_lists_every_key),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_key_names_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_built_at_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etcd_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etcd_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_derived_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test(test_log_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
