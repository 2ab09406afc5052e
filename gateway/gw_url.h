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
    GW_STORAGE_S3,      /* s3:// -- checked, then refused until the backend is built */
} gw_storage_kind_t;

typedef struct gw_storage_url {
    char url[GW_URL_MAX];   /* as written */
    gw_storage_kind_t kind; /* only GW_STORAGE_DIR is produced, for now */
    char path[GW_PATH_MAX]; /* GW_STORAGE_DIR: the directory, percent-decoded; a relative
                               path is relative to the working directory */
} gw_storage_url_t;

/* Where metadata lives. */
typedef enum gw_metadata_kind {
    GW_METADATA_SQLITE = 0, /* sqlite: URL, an embedded database file */
    GW_METADATA_ETCD,       /* etcd:// -- checked, then refused until the backend is built */
} gw_metadata_kind_t;

typedef struct gw_metadata_url {
    char url[GW_URL_MAX];    /* as written */
    gw_metadata_kind_t kind; /* only GW_METADATA_SQLITE is produced, for now */
    char path[GW_PATH_MAX];  /* GW_METADATA_SQLITE: the database file, percent-decoded; a
                                relative path is relative to the working directory */
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
 * "s3://bucket/prefix?endpoint=...&region=...&addressing=path|virtual" is
 * checked and then refused as not built yet.
 */
int gw_storage_url_parse(const char *key, const char *value, gw_storage_url_t *out, char *errstr,
                         size_t errstr_size);

/*
 * metadata.url: "sqlite:///abs/file", "sqlite://localhost/abs/file",
 * "sqlite:rel/file" or "sqlite:/abs/file".  "etcd://host:port[,host:port]
 * [/prefix]" is checked and then refused as not built yet.
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
