/*
 * nh_pipeline.c: the raw limit of an object store plus etcd, as Nuthatch
 * uses them -- per object one signed PUT (Content-MD5 signed, the body sent
 * as UNSIGNED-PAYLOAD, as the gateway sends it by default), then one
 * etcd transaction (a compare on a fence key and a put of a manifest-sized
 * value), with P objects in flight.  bench/run.sh runs it beside the
 * gateway in the S3 + etcd configuration, at the gateway's object size and
 * parallelism, so the two can be compared in one run.
 *
 *   nh-pipeline --s3 http://127.0.0.1:PORT --bucket B --etcd http://127.0.0.1:PORT
 *               [--region R] [--size BYTES] [--parallel P] [--objects N]
 *               [--manifest BYTES] [--watch NAME=PID]...
 *
 * Prints one line: objects, MB/s, objects/s and per-object latency p50,
 * p99, p99.9 (ms), from the PUT's start to the transaction's answer.
 *
 * --get-range BYTES then reads every object back with ranged GETs of that
 * many bytes, P in flight, and prints a second line ("get", MB/s): the raw
 * limit of catching up from the store.
 *
 *   nh-pipeline --dir PATH [--sqlite DB] [--size BYTES] [--parallel P] [--objects N]
 *               [--get-range BYTES]
 *
 * measures the local-directory limit the same way: per object write() of
 * the bytes into a temporary file, fdatasync(), rename() into place and
 * fsync() of the directory -- objects of 256 KiB and more written with
 * O_DIRECT from an aligned buffer and read back with O_DIRECT, as the
 * gateway's directory store does -- then, with --sqlite, one transaction
 * putting a manifest-sized row into the SQLite database DB (WAL,
 * synchronous=FULL, one connection, as the embedded gateway's metadata):
 * the embedded counterpart of PUT + etcd transaction.  The read-back is
 * pread() of the ranges.  The objects it writes are deleted at the end.
 *
 * Each line ends with the CPU seconds of the phase: cpu_s= for this
 * process (utime + stime, getrusage), and cpu_NAME_s= for every process
 * named with --watch NAME=PID (from /proc/PID/stat; the S3 server and etcd),
 * so that the raw limit's own CPU use is reported beside the gateway's.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "st_s3_sign.h"

typedef struct opts {
    const char *s3, *bucket, *region, *etcd, *dir, *sqlite;
    size_t get_range;
    size_t size, manifest;
    int parallel;
    long objects;
} opts_t;

static opts_t o = {
    .region = "us-east-1", .size = 4 << 20, .manifest = 128, .parallel = 4, .objects = 200};
static atomic_long next_obj, next_get;
static atomic_llong got_bytes;
static double *lat_ms; /* per object */
static sqlite3 *db;    /* --sqlite: one connection, as the gateway's */
static pthread_mutex_t db_mu = PTHREAD_MUTEX_INITIALIZER;

#define DIRECT_ALIGN 4096
#define DIRECT_MIN (256u << 10)

#define MAX_WATCH 4
static const char *watch_name[MAX_WATCH];
static long watch_pid[MAX_WATCH];
static int n_watch;

/* utime + stime of process @pid in seconds, or 0 when it cannot be read. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

typedef struct cpu_snap {
    double self, w[MAX_WATCH];
} cpu_snap_t;

static cpu_snap_t cpu_now(void)
{
    cpu_snap_t s = {self_cpu_s(), {0}};
    for (int i = 0; i < n_watch; i++)
        s.w[i] = proc_cpu_s(watch_pid[i]);
    return s;
}

/* " cpu_s=... cpu_NAME_s=..." since @a, then the end of the line. */
static void print_cpu(cpu_snap_t a)
{
    cpu_snap_t b = cpu_now();
    printf(" cpu_s=%.3f", b.self - a.self);
    for (int i = 0; i < n_watch; i++)
        printf(" cpu_%s_s=%.3f", watch_name[i], b.w[i] - a.w[i]);
    printf("\n");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t sink(char *p, size_t sz, size_t n, void *arg)
{
    (void)p, (void)arg;
    return sz * n;
}

typedef struct body {
    char *buf;
    size_t len;
} body_t;

static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
    body_t *b = arg;
    size_t k = sz * n;
    char *nb = realloc(b->buf, b->len + k + 1);
    if (!nb)
        return 0;
    memcpy(nb + b->len, p, k);
    b->buf = nb;
    b->len += k;
    b->buf[b->len] = '\0';
    return k;
}

/* One signed PUT of @data to /bucket/@key; 0 on HTTP 200. */
static int s3_put(CURL *c, const char *key, const uint8_t *data, size_t len)
{
    char md5b64[32], date[17], host[256], url[1024], path[512];
    const char *sha = ST_S3_UNSIGNED_PAYLOAD; /* the gateway's default too */
    uint8_t md5[16];
    st_s3_md5(data, len, md5);
    st_s3_base64(md5, 16, md5b64);
    st_s3_amz_date(time(NULL), date);
    const char *h = strstr(o.s3, "://");
    snprintf(host, sizeof host, "%s", h ? h + 3 : o.s3);
    snprintf(path, sizeof path, "/%s/%s", o.bucket, key);
    snprintf(url, sizeof url, "%s%s", o.s3, path);
    st_s3_kv_t hdrs[] = {{"host", host},
                         {"x-amz-date", date},
                         {"x-amz-content-sha256", sha},
                         {"content-md5", md5b64}};
    st_s3_sign_req_t req = {.method = "PUT",
                            .path = path,
                            .headers = hdrs,
                            .nheaders = 4,
                            .payload_sha256 = sha,
                            .amz_date = date,
                            .region = o.region,
                            .service = "s3",
                            .access_key = getenv("AWS_ACCESS_KEY_ID"),
                            .secret_key = getenv("AWS_SECRET_ACCESS_KEY")};
    char *auth = st_s3_sign(&req, NULL);
    if (!auth)
        return -1;
    char l1[128], l2[128], l3[128], l4[1024];
    snprintf(l1, sizeof l1, "x-amz-date: %s", date);
    snprintf(l2, sizeof l2, "x-amz-content-sha256: %s", sha);
    snprintf(l3, sizeof l3, "Content-MD5: %s", md5b64);
    snprintf(l4, sizeof l4, "Authorization: %s", auth);
    struct curl_slist *sl = NULL;
    sl = curl_slist_append(sl, l1);
    sl = curl_slist_append(sl, l2);
    sl = curl_slist_append(sl, l3);
    sl = curl_slist_append(sl, l4);
    sl = curl_slist_append(sl, "Expect:");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(sl);
    free(auth);
    return rc == CURLE_OK && code == 200 ? 0 : -1;
}

/* One signed ranged GET of [off, off + len) of /bucket/@key; 0 on 206/200. */
static int s3_get(CURL *c, const char *key, size_t off, size_t len, body_t *b)
{
    char date[17], host[256], url[1024], path[512], range[96];
    const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    st_s3_amz_date(time(NULL), date);
    const char *h = strstr(o.s3, "://");
    snprintf(host, sizeof host, "%s", h ? h + 3 : o.s3);
    snprintf(path, sizeof path, "/%s/%s", o.bucket, key);
    snprintf(url, sizeof url, "%s%s", o.s3, path);
    snprintf(range, sizeof range, "bytes=%zu-%zu", off, off + len - 1);
    st_s3_kv_t hdrs[] = {
        {"host", host}, {"range", range}, {"x-amz-content-sha256", sha}, {"x-amz-date", date}};
    st_s3_sign_req_t req = {.method = "GET",
                            .path = path,
                            .headers = hdrs,
                            .nheaders = 4,
                            .payload_sha256 = sha,
                            .amz_date = date,
                            .region = o.region,
                            .service = "s3",
                            .access_key = getenv("AWS_ACCESS_KEY_ID"),
                            .secret_key = getenv("AWS_SECRET_ACCESS_KEY")};
    char *auth = st_s3_sign(&req, NULL);
    if (!auth)
        return -1;
    char l1[128], l2[128], l3[128], l4[1024];
    snprintf(l1, sizeof l1, "x-amz-date: %s", date);
    snprintf(l2, sizeof l2, "x-amz-content-sha256: %s", sha);
    snprintf(l3, sizeof l3, "Range: %s", range);
    snprintf(l4, sizeof l4, "Authorization: %s", auth);
    struct curl_slist *sl = NULL;
    sl = curl_slist_append(sl, l1);
    sl = curl_slist_append(sl, l2);
    sl = curl_slist_append(sl, l3);
    sl = curl_slist_append(sl, l4);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    b->len = 0;
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(sl);
    free(auth);
    return rc == CURLE_OK && (code == 206 || code == 200) && b->len == len ? 0 : -1;
}

/* The local-directory counterpart of one object's PUT + commit. */
static int dir_put(const char *key, const uint8_t *data, size_t len)
{
    char tmp[1024], path[1024];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", o.dir, key);
    snprintf(path, sizeof path, "%s/%s", o.dir, key);
    bool direct = len >= DIRECT_MIN;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0)
        return -1;
    size_t done = 0, aligned = direct ? len & ~(size_t)(DIRECT_ALIGN - 1) : len;
    while (done < len) {
        if (done == aligned && direct && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) != 0)
            return -1; /* the unaligned tail through the page cache */
        size_t end = done < aligned ? aligned : len;
        ssize_t w = write(fd, data + done, end - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    if (fdatasync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0)
        return -1;
    int dfd = open(o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

/* The embedded gateway's commit: one transaction putting a manifest. */
static int sqlite_commit(const char *key, const uint8_t *man, size_t len)
{
    pthread_mutex_lock(&db_mu);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv(k, v) VALUES(?, ?)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, man, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    else
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&db_mu);
    return rc == SQLITE_OK ? 0 : -1;
}

static int dir_get(const char *key, size_t off, size_t len, body_t *b)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", o.dir, key);
    /* As the directory store: objects written with O_DIRECT are read so. */
    bool direct = o.size >= DIRECT_MIN && len >= DIRECT_MIN && off % DIRECT_ALIGN == 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd < 0)
        return -1;
    size_t cap = (o.get_range + DIRECT_ALIGN) & ~(size_t)(DIRECT_ALIGN - 1);
    if (!b->buf && posix_memalign((void **)&b->buf, DIRECT_ALIGN, cap) != 0)
        return -1;
    size_t want = direct ? (len + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1) : len;
    ssize_t r = pread(fd, b->buf, want, (off_t)off);
    close(fd);
    return r >= (ssize_t)len ? 0 : -1;
}

static void obj_key(char *key, size_t cap, long i)
{
    snprintf(key, cap, "bench-%ld-%d.obj", i, (int)getpid());
}

/* Read every object back in ranges of o.get_range bytes. */
static void *get_worker(void *arg)
{
    (void)arg;
    CURL *s3 = o.dir ? NULL : curl_easy_init();
    body_t b = {0};
    long per = (long)((o.size + o.get_range - 1) / o.get_range);
    long j;
    while ((j = atomic_fetch_add(&next_get, 1)) < o.objects * per) {
        char key[128];
        obj_key(key, sizeof key, j / per);
        size_t off = (size_t)(j % per) * o.get_range;
        size_t len = o.size - off < o.get_range ? o.size - off : o.get_range;
        if ((o.dir ? dir_get(key, off, len, &b) : s3_get(s3, key, off, len, &b)) != 0) {
            fprintf(stderr, "nh-pipeline: GET %s at %zu failed\n", key, off);
            exit(1);
        }
        atomic_fetch_add(&got_bytes, (long long)len);
    }
    free(b.buf);
    if (s3)
        curl_easy_cleanup(s3);
    return NULL;
}

static char *b64(const void *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (s)
        st_s3_base64(p, n, s);
    return s;
}

/* One etcd transaction shaped like a commit: compare the fence's value,
 * put a manifest of o.manifest bytes.  0 when it succeeded. */
static int etcd_txn(CURL *c, const char *key, const char *fence_b64, const char *val_b64)
{
    char *kb = b64(key, strlen(key));
    size_t cap = strlen(val_b64) + 512;
    char *json = malloc(cap), url[512];
    snprintf(
        json, cap,
        "{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\",\"result\":\"EQUAL\","
        "\"value\":\"%s\"}],\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
        fence_b64, fence_b64, kb, val_b64);
    snprintf(url, sizeof url, "%s/v3/kv/txn", o.etcd);
    body_t resp = {0};
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    CURLcode rc = curl_easy_perform(c);
    int ok = rc == CURLE_OK && resp.buf && strstr(resp.buf, "\"succeeded\":true");
    free(resp.buf);
    free(json);
    free(kb);
    return ok ? 0 : -1;
}

/* An object's bytes, incompressible, made before the clock starts (one
 * buffer per worker: each object's first bytes are its number). */
static uint8_t *object_bytes(unsigned seed)
{
    uint8_t *data = NULL;
    if (posix_memalign((void **)&data, DIRECT_ALIGN, o.size) != 0)
        return NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; data && i < o.size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        data[i] = (uint8_t)(x >> 24);
    }
    return data;
}

static void *worker(void *arg)
{
    uint8_t *data = arg;
    CURL *s3 = o.dir ? NULL : curl_easy_init(), *etcd = o.dir ? NULL : curl_easy_init();
    uint8_t *man = malloc(o.manifest);
    memset(man, 'm', o.manifest);
    char *man_b64 = b64(man, o.manifest);
    long i;
    while ((i = atomic_fetch_add(&next_obj, 1)) < o.objects) {
        char key[128];
        obj_key(key, sizeof key, i);
        double t0 = now_ms();
        memcpy(data, &i, sizeof i); /* every object differs */
        if (o.dir) {
            if (dir_put(key, data, o.size) != 0) {
                perror("nh-pipeline: write, fdatasync, rename, fsync");
                exit(1);
            }
            if (db && sqlite_commit(key, man, o.manifest) != 0) {
                fprintf(stderr, "nh-pipeline: SQLite commit: %s\n", sqlite3_errmsg(db));
                exit(1);
            }
            lat_ms[i] = now_ms() - t0;
            continue;
        }
        if (s3_put(s3, key, data, o.size) != 0) {
            fprintf(stderr, "nh-pipeline: PUT %s failed\n", key);
            exit(1);
        }
        char mkey[128];
        snprintf(mkey, sizeof mkey, "/bench/manifests/%012ld", i);
        if (etcd_txn(etcd, mkey, "L2JlbmNoL2ZlbmNl", man_b64) != 0) {
            fprintf(stderr, "nh-pipeline: etcd transaction failed\n");
            exit(1);
        }
        lat_ms[i] = now_ms() - t0;
    }
    free(man_b64);
    free(man);
    if (s3)
        curl_easy_cleanup(s3);
    if (etcd)
        curl_easy_cleanup(etcd);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: nh-pipeline (--s3 URL --bucket B --etcd URL | --dir PATH [--sqlite DB])"
                    " [--region R]"
                    " [--size BYTES] [--parallel P] [--objects N] [--manifest BYTES]"
                    " [--get-range BYTES] [--watch NAME=PID]...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i];
        char *v = argv[i + 1];
        if (!strcmp(k, "--s3"))
            o.s3 = v;
        else if (!strcmp(k, "--bucket"))
            o.bucket = v;
        else if (!strcmp(k, "--etcd"))
            o.etcd = v;
        else if (!strcmp(k, "--region"))
            o.region = v;
        else if (!strcmp(k, "--size"))
            o.size = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(k, "--parallel"))
            o.parallel = atoi(v);
        else if (!strcmp(k, "--objects"))
            o.objects = atol(v);
        else if (!strcmp(k, "--dir"))
            o.dir = v;
        else if (!strcmp(k, "--sqlite"))
            o.sqlite = v;
        else if (!strcmp(k, "--get-range"))
            o.get_range = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(k, "--manifest"))
            o.manifest = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(k, "--watch") && n_watch < MAX_WATCH && strchr(v, '=')) {
            watch_name[n_watch] = v;
            *strchr(v, '=') = '\0';
            watch_pid[n_watch++] = strtol(v + strlen(v) + 1, NULL, 10);
        } else
            usage();
    }
    if (o.size == 0 || o.parallel < 1 || o.objects < 1)
        usage();
    if (!o.dir && (!o.s3 || !o.bucket || !o.etcd || !getenv("AWS_ACCESS_KEY_ID") ||
                   !getenv("AWS_SECRET_ACCESS_KEY")))
        usage();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (o.sqlite) {
        if (!o.dir || sqlite3_open(o.sqlite, &db) != SQLITE_OK ||
            sqlite3_exec(db,
                         "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                         "CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v BLOB)",
                         NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "nh-pipeline: cannot open SQLite database %s\n", o.sqlite);
            return 1;
        }
    }
    if (o.dir)
        goto fenced;
    /* The fence the transactions compare with: key /bench/fence, whose
     * value is set to its own name (base64 "L2JlbmNoL2ZlbmNl"). */
    CURL *c = curl_easy_init();
    char url[512], json[256];
    snprintf(url, sizeof url, "%s/v3/kv/put", o.etcd);
    snprintf(json, sizeof json, "{\"key\":\"L2JlbmNoL2ZlbmNl\",\"value\":\"L2JlbmNoL2ZlbmNl\"}");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    if (curl_easy_perform(c) != CURLE_OK) {
        fprintf(stderr, "nh-pipeline: cannot reach etcd at %s\n", o.etcd);
        return 1;
    }
    curl_easy_cleanup(c);
fenced:
    lat_ms = calloc((size_t)o.objects, sizeof(double));
    pthread_t *t = calloc((size_t)o.parallel, sizeof(pthread_t));
    uint8_t **bufs = calloc((size_t)o.parallel, sizeof(*bufs));
    for (int i = 0; i < o.parallel; i++)
        if (!(bufs[i] = object_bytes((unsigned)i))) {
            fprintf(stderr, "nh-pipeline: out of memory\n");
            return 1;
        }
    cpu_snap_t c0 = cpu_now();
    double t0 = now_ms();
    for (int i = 0; i < o.parallel; i++)
        pthread_create(&t[i], NULL, worker, bufs[i]);
    for (int i = 0; i < o.parallel; i++)
        pthread_join(t[i], NULL);
    double secs = (now_ms() - t0) / 1e3;
    qsort(lat_ms, (size_t)o.objects, sizeof(double), cmp_double);
    size_t n = (size_t)o.objects;
    printf("pipeline objects=%ld size=%zu parallel=%d MB/s=%.1f objects/s=%.1f p50_ms=%.2f "
           "p99_ms=%.2f p999_ms=%.2f",
           o.objects, o.size, o.parallel, (double)o.size * (double)n / 1e6 / secs, (double)n / secs,
           lat_ms[n / 2], lat_ms[n * 99 / 100], lat_ms[n * 999 / 1000]);
    print_cpu(c0);
    if (o.get_range) {
        c0 = cpu_now();
        t0 = now_ms();
        for (int i = 0; i < o.parallel; i++)
            pthread_create(&t[i], NULL, get_worker, NULL);
        for (int i = 0; i < o.parallel; i++)
            pthread_join(t[i], NULL);
        secs = (now_ms() - t0) / 1e3;
        printf("get objects=%ld range=%zu parallel=%d MB/s=%.1f bytes=%lld", o.objects, o.get_range,
               o.parallel, (double)atomic_load(&got_bytes) / 1e6 / secs,
               (long long)atomic_load(&got_bytes));
        print_cpu(c0);
    }
    if (o.dir)
        for (long i = 0; i < o.objects; i++) {
            char key[128], path[1024];
            obj_key(key, sizeof key, i);
            snprintf(path, sizeof path, "%s/%s", o.dir, key);
            unlink(path);
        }
    for (int i = 0; i < o.parallel; i++)
        free(bufs[i]);
    free(bufs);
    free(lat_ms);
    free(t);
    if (db)
        sqlite3_close(db);
    curl_global_cleanup();
    return 0;
}
