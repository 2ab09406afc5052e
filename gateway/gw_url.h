/*
 * gw_url.h: the address-like configuration values -- the Kafka listener
 * (PLAINTEXT://HOST:PORT) and the object-store and metadata-store URLs --
 * parsed into fixed-size structs.
 *
 * Every parser takes the configuration key only to name it in its message:
 * on error it returns -1 with one line "KEY: reason" in @errstr, and leaves
 * @out untouched.
 *
 * Ownership: all arguments are borrowed; the structs hold no pointers.
 * Threading: no shared state; callable from any thread.
 */
#ifndef GW_URL_H
#define GW_URL_H

#include <stdbool.h>
#include <stddef.h>

#define GW_HOST_MAX 256  /* buffer for a host name or IP literal, NUL included */
#define GW_PATH_MAX 4096 /* buffer for a local path, NUL included (Linux PATH_MAX) */
#define GW_URL_MAX 4096  /* buffer for a URL as written, NUL included */

/* One PLAINTEXT listener. */
typedef struct gw_listener {
    char host[GW_HOST_MAX]; /* name or IP literal (IPv6 without brackets); "", "0.0.0.0"
                               and "::" are wildcards (bind: every interface) */
    int port;               /* TCP port, 0..65535; 0 = any free port when binding; an
                               advertised port 0 means "the port actually bound" */
} gw_listener_t;

/* Where objects live. */
typedef enum gw_storage_kind {
    GW_STORAGE_DIR = 0, /* file: URL, a local directory */
    GW_STORAGE_S3,      /* s3:// URL, a bucket of an S3-compatible object store */
} gw_storage_kind_t;

/* How S3 requests name the bucket. */
typedef enum gw_s3_addressing {
    GW_S3_PATH = 0, /* ENDPOINT/BUCKET/KEY (MinIO, most self-hosted stores; the default) */
    GW_S3_VIRTUAL,  /* BUCKET.ENDPOINT-HOST/KEY (AWS's default; needs a DNS name) */
} gw_s3_addressing_t;

#define GW_S3_BUCKET_MAX 64  /* buffer for a bucket name (3..63 characters), NUL included */
#define GW_S3_PREFIX_MAX 512 /* buffer for a key prefix, NUL included */
#define GW_S3_REGION_MAX 64  /* buffer for a signing region, NUL included */
#define GW_ENDPOINT_MAX 300  /* buffer for "https://[HOST]:PORT", NUL included */
#define GW_S3_DEFAULT_REGION "us-east-1"

typedef struct gw_storage_url {
    char url[GW_URL_MAX];   /* as written */
    gw_storage_kind_t kind; /* which of the fields below apply */
    char path[GW_PATH_MAX]; /* GW_STORAGE_DIR: the directory, percent-decoded; a relative
                               path is relative to the working directory */
    /* GW_STORAGE_S3 (all "" for a directory): */
    char bucket[GW_S3_BUCKET_MAX];  /* the bucket */
    char prefix[GW_S3_PREFIX_MAX];  /* key prefix, percent-decoded, without '/' at either
                                       end; "" = the bucket's root; objects are PREFIX/KEY */
    char endpoint[GW_ENDPOINT_MAX]; /* "http://HOST[:PORT]" or "https://HOST[:PORT]" (IPv6
                                       in brackets), scheme in lower case, no path */
    char region[GW_S3_REGION_MAX];  /* signing region; GW_S3_DEFAULT_REGION when not given */
    gw_s3_addressing_t addressing;  /* GW_S3_PATH when not given */
} gw_storage_url_t;

/* Where metadata lives. */
typedef enum gw_metadata_kind {
    GW_METADATA_SQLITE = 0, /* sqlite: URL, an embedded database file */
    GW_METADATA_ETCD,       /* etcd:// URL, an etcd v3 cluster */
} gw_metadata_kind_t;

#define GW_ETCD_ENDPOINTS_MAX 16 /* etcd endpoints in one URL */
#define GW_ETCD_PREFIX_MAX 256   /* buffer for the etcd key namespace, NUL included */

typedef struct gw_metadata_url {
    char url[GW_URL_MAX];    /* as written */
    gw_metadata_kind_t kind; /* which of the fields below apply */
    char path[GW_PATH_MAX];  /* GW_METADATA_SQLITE: the database file, percent-decoded; a
                                relative path is relative to the working directory */
    /* GW_METADATA_ETCD (empty for SQLite): */
    int nendpoints;                                         /* 1..GW_ETCD_ENDPOINTS_MAX */
    char endpoints[GW_ETCD_ENDPOINTS_MAX][GW_ENDPOINT_MAX]; /* "http://HOST:PORT" each, in
                                                                the order written */
    char prefix[GW_ETCD_PREFIX_MAX]; /* namespace put before every key: "" (none, the
                                        default) or "/a[/b...]", percent-decoded, no '/'
                                        at the end.  Nuthatch's own keys start with
                                        "/nuthatch/", so "/nh-a" gives "/nh-a/nuthatch/..." */
} gw_metadata_url_t;

/*
 * "PLAINTEXT://HOST:PORT" (the name in any case), "PLAINTEXT://[IPV6]:PORT"
 * or "PLAINTEXT://:PORT".  Only one listener: a comma-separated list is
 * refused.  With @advertised, a wildcard host and port 0 are refused too.
 */
int gw_listener_parse(const char *key, const char *value, bool advertised, gw_listener_t *out,
                      char *errstr, size_t errstr_size);

/* "PLAINTEXT://host:port", with brackets around an IPv6 host; cut to fit. */
void gw_listener_format(const gw_listener_t *l, char *buf, size_t size);

/* True for "", "0.0.0.0" and any spelling of the IPv6 "::". */
bool gw_host_is_wildcard(const char *host);

/*
 * storage.url: "file:///abs/dir", "file://localhost/abs/dir" (RFC 8089),
 * or "file:rel/dir" / "file:/abs/dir" (accepted as SQLite accepts "file:").
 * Percent-escapes in the path are decoded; '?' and '#' must be escaped.
 *
 * Or "s3://BUCKET[/PREFIX]?endpoint=URL[&region=R][&addressing=path|virtual]"
 * (parameters in any order, each at most once, values percent-decoded):
 *   BUCKET    3 to 63 of a-z, 0-9, '.', '-' (and '_' with path addressing,
 *             as GCS allows), starting and ending with a letter or digit, no
 *             "..", not an IPv4 address (S3's naming rules);
 *   PREFIX    optional; '/'-separated components, none empty, "." or "..",
 *             no control characters; '/' at the end is dropped;
 *   endpoint  required: http:// or https://, HOST[:PORT], no path;
 *   region    the signing region, default us-east-1 (letters, digits, '-', '_');
 *   addressing  path (default) or virtual; virtual needs a host name, not an
 *             IP address, and a bucket without '_'.
 */
int gw_storage_url_parse(const char *key, const char *value, gw_storage_url_t *out, char *errstr,
                         size_t errstr_size);

/*
 * metadata.url: "sqlite:///abs/file", "sqlite://localhost/abs/file",
 * "sqlite:rel/file" or "sqlite:/abs/file".
 *
 * Or "etcd://HOST:PORT[,HOST:PORT]...[/PREFIX]": one to
 * GW_ETCD_ENDPOINTS_MAX endpoints of one cluster, spoken to over plain HTTP
 * (IPv6 hosts in brackets), and an optional key namespace (see
 * gw_metadata_url_t.prefix; components as in an s3:// prefix, '/' at the end
 * dropped, no query or fragment).
 */
int gw_metadata_url_parse(const char *key, const char *value, gw_metadata_url_t *out, char *errstr,
                          size_t errstr_size);

/*
 * Make "<scheme>:" + @dir + "/" + @leaf into a URL the parsers above take
 * back to the same path: "//" before an absolute @dir, characters a URL
 * path cannot hold percent-encoded, trailing slashes of @dir dropped.
 * @returns 0, or -1 when it does not fit in @size.
 */
int gw_url_from_path(const char *scheme, const char *dir, const char *leaf, char *buf, size_t size);

#endif
