/*
 * gw_config.h: the gateway's configuration, loaded once at start-up.
 *
 *     nuthatch [--config FILE] [--KEY VALUE]... [--KEY=VALUE]...
 *
 * FILE is a Java properties file (Kafka's server.properties format, see
 * gw_props.h).  Every key can be set in the file or on the command line; the
 * command line wins, wherever --config stands among the arguments.  Keys
 * follow Kafka's names and defaults where Kafka has the key.  The keys, their
 * types, ranges, defaults and descriptions are one table in gw_config.c;
 * gw_config_help() prints it.
 *
 * Ownership: gw_config_t is a plain value with no pointers: copy it, keep it
 * on the stack or inside another struct; there is nothing to free.  After
 * gw_config_load() returns 0 the configuration is frozen: everything else
 * receives a `const gw_config_t *`.
 * Threading: no shared state; every function may be called from any thread.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gw_log.h"
#include "gw_url.h"

#define GW_VERSION "0.1.0"

#define GW_CONFIG_CLUSTER_ID_MAX 65  /* buffer for cluster.id: up to 64 characters */
#define GW_CONFIG_FILE_MAX (1 << 20) /* largest --config file accepted, in bytes */

/* gw_config_load() results other than 0 (loaded) and -1 (error). */
enum {
    GW_CONFIG_HELP = 1,   /* -h or --help: print gw_config_help() and exit 0 */
    GW_CONFIG_VERSION = 2 /* --version: print "nuthatch GW_VERSION" and exit 0 */
};

/* One field per key, named after the key with '.' turned into '_'. */
typedef struct gw_config {
    gw_listener_t listeners;                  /* where to accept Kafka clients */
    gw_listener_t advertised_listeners;       /* what Metadata responses tell clients to dial;
                                                 never a wildcard host (see gw_config.c);
                                                 port 0 (from listeners) = the bound port */
    int32_t node_id;                          /* this gateway's broker id, 0..2^31-1 */
    int64_t cluster_lease_ms;                 /* TTL of the node registration's lease, ms */
    char data_dir[GW_PATH_MAX];               /* directory for local state; non-empty */
    gw_storage_url_t storage_url;             /* object store */
    gw_metadata_url_t metadata_url;           /* metadata store */
    char metadata_etcd_user[GW_HOST_MAX];     /* etcd user; "" = no authentication (the
                                                 password is in NUTHATCH_ETCD_PASSWORD) */
    int32_t metadata_etcd_request_timeout_ms; /* one etcd request, ms */
    int32_t metadata_etcd_connect_timeout_ms; /* connecting to an etcd endpoint, ms */
    int64_t metadata_compaction_interval_ms;  /* compact etcd's history this often, one
                                                 interval behind, ms; 0 = never */
    int32_t storage_s3_request_timeout_ms;    /* one S3 operation, retries included, ms */
    int32_t storage_s3_attempt_timeout_ms;    /* one HTTP attempt, ms */
    int32_t storage_s3_max_requests;          /* S3 requests in flight at once */
    bool storage_s3_verify_etag;              /* compare a PUT's ETag with its MD5 */
    bool storage_s3_sign_payload;             /* x-amz-content-sha256: the body's SHA-256 */
    int64_t startup_timeout_ms;               /* keep retrying the stores this long at
                                                 start-up, ms */
    bool auto_create_topics_enable;           /* create unknown topics on Metadata/Produce */
    int32_t num_partitions;                   /* partitions of an auto-created topic, >= 1 */
    int32_t default_replication_factor;       /* reported for auto-created topics, 1..32767;
                                                 durability comes from the object store */
    int32_t message_max_bytes;                /* largest record batch accepted, bytes;
                                                 <= socket_request_max_bytes */
    int32_t socket_request_max_bytes;         /* largest request frame, bytes (length prefix
                                                 excluded); checked before allocating */
    int64_t connections_max_idle_ms;          /* close a connection idle this long, ms;
                                                 -1 = never */
    int32_t max_connections;                  /* client connections open at once, >= 1 */
    int64_t request_receive_budget_bytes;     /* bytes of all partially received frames at
                                                 once; >= socket_request_max_bytes */
    int32_t request_partial_timeout_ms;       /* deadline for receiving the rest of a frame
                                                 once its length is read, ms */
    int64_t flush_max_bytes;                  /* close a flush object at this many bytes
                                                 while uploads are in flight */
    int32_t flush_max_inflight;               /* flush uploads in parallel, >= 1 */
    int64_t write_buffer_bytes;               /* produced bytes not yet committed above
                                                 which produce requests wait (not read) */
    gw_log_level_t log_level;                 /* most verbose level logged */
    int64_t log_retention_ms;                 /* default retention.ms of topics, ms; -1 = forever */
    int64_t log_retention_bytes;             /* default retention.bytes, per partition; -1 = none */
    int64_t log_retention_check_interval_ms; /* retention period, ms */
    int64_t log_lifecycle_interval_ms;       /* folding period, ms */
    int64_t log_index_max_keys;              /* index keys per partition above which chunks merge */
    int64_t log_segment_bytes;               /* largest segment object */
    int64_t log_gc_interval_ms;              /* GC pass period, ms; 0 = never */
    int64_t log_gc_grace_ms;                 /* GC grace period, ms */
    char metrics_listen[GW_HOST_MAX];        /* HOST:PORT of /metrics, or "" (off) */
    int64_t shutdown_timeout_ms;             /* on SIGTERM, wait this long for in-flight
                                                flushes and responses, ms */
    int64_t read_cache_bytes;                /* budget of the object-range read cache, bytes;
                                                0 = no cache */
    int64_t read_ahead_bytes;                /* ranged GETs started ahead of sequential
                                                fetches in flight, bytes; 0 = none */
    int64_t tail_cache_bytes;                /* budget of the per-partition tails of recently
                                                committed batches, bytes; 0 = none */
    char cluster_id[GW_CONFIG_CLUSTER_ID_MAX]; /* "" = generate one and keep it in the
                                                  metadata store; else [A-Za-z0-9_-]{1,64} */
    int32_t group_initial_rebalance_delay_ms;  /* wait this long for more members before the
                                                  first rebalance of an empty group, ms */
    int32_t group_min_session_timeout_ms;      /* shortest session timeout a member may ask */
    int32_t group_max_session_timeout_ms;      /* longest session timeout a member may ask */
} gw_config_t;

/*
 * Fill @cfg from the defaults, then the --config file, then the other
 * command-line settings.  @argv[0] is the program name and is skipped.
 * Checks that the environment holds the secrets the configured stores need
 * (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://,
 * NUTHATCH_ETCD_PASSWORD with metadata.etcd.user); their values are read
 * only where the stores are made.
 * @param cfg  written in full on 0; unspecified otherwise.
 * @returns 0; GW_CONFIG_HELP or GW_CONFIG_VERSION (nothing loaded); or -1
 *          with a one-line reason naming the key in @errstr ("unknown
 *          configuration key 'foo'", "num.partitions: '0' is below the
 *          minimum 1", "FILE:LINE: ..." for a setting in the file).
 * @thread any
 */
int gw_config_load(gw_config_t *cfg, int argc, char **argv, char *errstr, size_t errstr_size);

/*
 * Fill @cfg with every key at its default, derived ones included (as
 * gw_config_load() with no arguments), e.g. to tell which settings differ.
 * @returns 0, or -1 with a reason in @errstr (only when this machine's host
 *          name is unavailable).
 */
int gw_config_defaults(gw_config_t *cfg, char *errstr, size_t errstr_size);

/* Print the usage line and every key with its type, default and
 * description to @out. */
void gw_config_help(FILE *out);

/* Number of keys, and the name of key @i (0 <= i < count), in table order. */
size_t gw_config_key_count(void);
const char *gw_config_key_name(size_t i);

/*
 * The effective value of @key in the form it is written in a file
 * ("PLAINTEXT://host:9092", "true", "info", "1048576").
 * @returns 0, or -1 for an unknown key.  The value is cut to fit @size.
 */
int gw_config_value_str(const gw_config_t *cfg, const char *key, char *buf, size_t size);

/*
 * "key=value key=value ..." on one line: all keys, or with @changed_only
 * only those whose effective value differs from the default's.  Values
 * with blanks, quotes or control characters are double-quoted with C
 * escapes; an empty value is "".  "(none)" when nothing is listed.
 * @returns the length it needed (like snprintf); the text is cut to fit.
 */
size_t gw_config_format(const gw_config_t *cfg, bool changed_only, char *buf, size_t size);

/* Log every key's effective value, one debug record per key. */
void gw_config_log(const gw_config_t *cfg);

#endif
