/*
 * test_objstore_s3.c: the S3 object store -- SigV4 against AWS's published
 * examples, the XML readers, and the backend against a real S3-protocol
 * server (s3rver, started here by storage/tests/s3rver.js on a free loopback port with a fresh
 * directory) directly and through storage/tests/faultproxy.py, which checks
 * every request as AWS would (signature, digests), refuses overwrites as AWS
 * does, and injects failures: 5xx, dropped connections, lost replies, delays
 * and a byte flipped in transit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "st_curl.h"
#include "st_objstore.h"
#include "st_s3_sign.h"
#include "st_s3_xml.h"

#define WAIT_LIMIT_S 60  /* an operation that takes longer has hung */
#define START_LIMIT_S 30 /* s3rver or the proxy must be up by then */
#define BUCKET "nh-test"
#define ACCESS "S3RVER" /* the key s3rver knows; it does not check v4 signatures */
#define SECRET "S3RVER"

/* ---------------------------------------------------------------- servers */

/* The servers all tests share, started once. */
static struct servers {
    char dir[64];     /* temporary directory, removed at the end */
    pid_t s3rver_pid; /* node storage/tests/s3rver.js */
    pid_t proxy_pid;  /* python3 storage/tests/faultproxy.py */
    int s3_port;      /* s3rver */
    int proxy_port;   /* the fault proxy in front of it */
} srv;

static const char *source_dir(void)
{
    static char dir[1024];
    const char *env = getenv("NH_SOURCE_DIR");
    if (env && *env)
        return env;
    /* storage/tests/test_objstore_s3.c -> the tree's root */
    snprintf(dir, sizeof dir, "%s", __FILE__);
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            return ".";
        *slash = '\0';
    }
    return dir;
}

static pid_t spawn(char *const argv[], const char *logpath)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (null >= 0)
        dup2(null, 0);
    execvp(argv[0], argv);
    _exit(127);
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "  | %s", line);
    fclose(f);
}

/* Wait until @pid wrote its port into @path; 0 when it died or took too long. */
static int wait_port(pid_t pid, const char *path, const char *logpath)
{
    for (int i = 0; i < START_LIMIT_S * 20; i++) {
        FILE *f = fopen(path, "r");
        int port = 0;
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
            if (port > 0)
                return port;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "%s exited (status %d):\n", path, status);
            print_file(logpath);
            return 0;
        }
        usleep(50 * 1000);
    }
    fprintf(stderr, "%s: no port after %d s:\n", path, START_LIMIT_S);
    print_file(logpath);
    return 0;
}

static void stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 60; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static int servers_stop(void **state)
{
    (void)state;
    stop(srv.proxy_pid);
    stop(srv.s3rver_pid);
    if (srv.dir[0] && !getenv("NH_KEEP"))
        nftw(srv.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int servers_start(void **state)
{
    (void)state;
    const char *src = source_dir();
    char script[1200], module[1200], data[128], port_file[128], log[128];
    snprintf(script, sizeof script, "%s/storage/tests/s3rver.js", src);
    snprintf(module, sizeof module, "%s/compat-tests/js/node_modules/s3rver/package.json", src);
    if (access(module, R_OK) != 0) {
        fprintf(stderr, "test_objstore_s3: %s missing: run scripts/install-deps.sh\n", module);
        return -1;
    }
    snprintf(srv.dir, sizeof srv.dir, "/tmp/nh-s3-XXXXXX");
    if (!mkdtemp(srv.dir))
        return -1;
    snprintf(data, sizeof data, "%s/data", srv.dir);
    snprintf(port_file, sizeof port_file, "%s/s3rver.port", srv.dir);
    snprintf(log, sizeof log, "%s/s3rver.log", srv.dir);
    /* The legacy provider has the DES of s3rver's continuation tokens. */
    char *s3argv[] = {"node",    "--openssl-legacy-provider",
                      script,    "--dir",
                      data,      "--bucket",
                      BUCKET,    "--port-file",
                      port_file, NULL};
    srv.s3rver_pid = spawn(s3argv, log);
    srv.s3_port = wait_port(srv.s3rver_pid, port_file, log);
    if (!srv.s3_port) {
        servers_stop(NULL);
        return -1;
    }
    char proxy[1200], upstream[64];
    snprintf(proxy, sizeof proxy, "%s/storage/tests/faultproxy.py", src);
    snprintf(upstream, sizeof upstream, "127.0.0.1:%d", srv.s3_port);
    snprintf(port_file, sizeof port_file, "%s/proxy.port", srv.dir);
    snprintf(log, sizeof log, "%s/proxy.log", srv.dir);
    char *pargv[] = {"python3", proxy,      "--upstream",      upstream,          "--port-file",
                     port_file, "--verify", ACCESS ":" SECRET, "--if-none-match", NULL};
    srv.proxy_pid = spawn(pargv, log);
    srv.proxy_port = wait_port(srv.proxy_pid, port_file, log);
    if (!srv.proxy_port) {
        servers_stop(NULL);
        return -1;
    }
    return 0;
}

/* A blocking request to the proxy's control API; @returns its body (static). */
static size_t ctl_write(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), k = size * n;
    if (have + k >= 65536)
        k = 65535 - have;
    memcpy(buf + have, p, k);
    buf[have + k] = '\0';
    return size * n;
}

static const char *proxy_ctl(const char *method, const char *fmt, ...)
{
    static char body[65536];
    char path[512], url[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.proxy_port, path);
    body[0] = '\0';
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    assert_int_equal(rc, CURLE_OK);
    assert_int_equal(code, 200);
    return body;
}

static void proxy_reset(void)
{
    proxy_ctl("POST", "/__proxy/reset");
}

/* Lines of the proxy's log that contain every one of the space-separated
 * @words. */
static int log_count(const char *words)
{
    const char *log = proxy_ctl("GET", "/__proxy/log");
    int n = 0;
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048], want[256];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        snprintf(want, sizeof want, "%s", words);
        bool all = true;
        char *save = NULL;
        for (char *w = strtok_r(want, " ", &save); w; w = strtok_r(NULL, " ", &save))
            if (!strstr(buf, w))
                all = false;
        n += all;
        line += len + (end ? 1 : 0);
    }
    return n;
}

/* log_count(@words) once it reaches @n (the proxy logs a request when it
 * has answered it), or what it is after 5 s. */
static int log_wait(int n, const char *words)
{
    int have = 0;
    for (int i = 0; i < 100 && (have = log_count(words)) < n; i++)
        usleep(50 * 1000);
    return have;
}

/* Distinct client connections in the proxy's log lines with @word. */
static int log_conns(const char *word)
{
    const char *log = proxy_ctl("GET", "/__proxy/log");
    int ids[256], n = 0;
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, word)) {
            int id = atoi(buf), seen = 0;
            for (int i = 0; i < n; i++)
                seen |= ids[i] == id;
            if (!seen && n < 256)
                ids[n++] = id;
        }
        line += len + (end ? 1 : 0);
    }
    return n;
}

/* ---------------------------------------------------------------- fixture */

typedef enum via { VIA_DIRECT, VIA_PROXY } via_t;

typedef struct fix {
    struct event_base *base;
    struct event *keepalive; /* keeps the loop blocking in epoll, not spinning */
    st_curl_t *curl;
    st_objstore_t *os;
    st_s3_cfg_t cfg;
    char endpoint[64];
    char prefix[64];
    char connect_to[128];
    const char *connect_list[2];
    char logged[4096]; /* what the store logged, lines joined */
} fix_t;

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static void log_cb(void *arg, const char *msg)
{
    fix_t *f = arg;
    size_t have = strlen(f->logged), need = strlen(msg) + 2;
    if (need > sizeof f->logged)
        return;
    if (have + need > sizeof f->logged) { /* full: keep the newest lines */
        size_t drop = have + need - sizeof f->logged;
        const char *nl = strchr(f->logged + drop, '\n');
        drop = nl ? (size_t)(nl + 1 - f->logged) : have;
        memmove(f->logged, f->logged + drop, have - drop + 1);
        have -= drop;
    }
    snprintf(f->logged + have, sizeof f->logged - have, "%s\n", msg);
}

/* A fresh key space for @f (takes effect at the next open_store). */
static void new_prefix(fix_t *f)
{
    static int seq;
    snprintf(f->prefix, sizeof f->prefix, "run%ld/t%d", (long)getpid(), ++seq);
    f->cfg.prefix = f->prefix;
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->keepalive = event_new(f->base, -1, EV_PERSIST, keepalive_cb, NULL);
    struct timeval tv = {3600, 0};
    event_add(f->keepalive, &tv);
    f->curl = st_curl_new(f->base);
    assert_non_null(f->curl);
    f->cfg = (st_s3_cfg_t){
        .bucket = BUCKET,
        .region = "us-east-1",
        .access_key = ACCESS,
        .secret_key = SECRET,
        .retry_budget_ms = 10000,
        .attempt_timeout_ms = 5000,
        .backoff_base_ms = 20,
        .backoff_max_ms = 200,
        .log = log_cb,
        .log_arg = f,
    };
    new_prefix(f);
    proxy_reset();
    *state = f;
    return 0;
}

static void close_store(fix_t *f)
{
    st_objstore_free(f->os);
    f->os = NULL;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    if (getenv("NH_TEST_VERBOSE") && f->logged[0])
        fprintf(stderr, "store log:\n%s", f->logged);
    close_store(f);
    st_curl_free(f->curl);
    event_free(f->keepalive);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* (Re)open the store on @f->cfg, reaching s3rver directly or through the
 * proxy, path-style or virtual-hosted (BUCKET.s3.test mapped to 127.0.0.1). */
static void open_store(fix_t *f, via_t via, st_s3_addressing_t addressing)
{
    close_store(f);
    int port = via == VIA_PROXY ? srv.proxy_port : srv.s3_port;
    f->cfg.addressing = addressing;
    if (addressing == ST_S3_ADDR_VIRTUAL) {
        snprintf(f->endpoint, sizeof f->endpoint, "http://s3.test:%d", port);
        snprintf(f->connect_to, sizeof f->connect_to, BUCKET ".s3.test:%d:127.0.0.1:%d", port,
                 port);
        f->connect_list[0] = f->connect_to;
        f->connect_list[1] = NULL;
        f->cfg.connect_to = f->connect_list;
    } else {
        snprintf(f->endpoint, sizeof f->endpoint, "http://127.0.0.1:%d", port);
        f->cfg.connect_to = NULL;
    }
    f->cfg.endpoint = f->endpoint;
    char errstr[256] = "";
    f->os = st_objstore_s3_new(f->base, f->curl, &f->cfg, errstr, sizeof errstr);
    if (!f->os)
        fail_msg("st_objstore_s3_new: %s", errstr);
}

/* ---------------------------------------------------------------- operations */

/* One operation's result, filled by the callbacks below. */
typedef struct res {
    int done;    /* callbacks run so far (must end at exactly 1) */
    int in_call; /* set while the starting call runs */
    st_err_t err;
    uint8_t *data; /* get: owned copy */
    size_t len;
    char **keys; /* list: owned copies */
    uint64_t *sizes;
    int64_t *mtimes;
    size_t n;
    bool more;
} res_t;

static void res_reset(res_t *r)
{
    free(r->data);
    for (size_t i = 0; i < r->n; i++)
        free(r->keys[i]);
    free(r->keys);
    free(r->sizes);
    free(r->mtimes);
    memset(r, 0, sizeof(*r));
}

static void done_cb(st_err_t err, void *arg)
{
    res_t *r = arg;
    assert_int_equal(r->in_call, 0);
    r->err = err;
    r->done++;
}

static void data_cb(st_err_t err, const uint8_t *data, size_t len, void *arg)
{
    res_t *r = arg;
    assert_int_equal(r->in_call, 0);
    r->err = err;
    r->done++;
    if (err != ST_OK) {
        assert_null(data);
        assert_int_equal(len, 0);
        return;
    }
    assert_non_null(data);
    r->data = malloc(len + 1);
    memcpy(r->data, data, len);
    r->data[len] = 0;
    r->len = len;
}

static void list_cb(st_err_t err, const st_obj_info_t *objs, size_t n, bool more, void *arg)
{
    res_t *r = arg;
    assert_int_equal(r->in_call, 0);
    r->err = err;
    r->done++;
    r->more = more;
    r->n = n;
    r->keys = calloc(n + 1, sizeof(char *));
    r->sizes = calloc(n + 1, sizeof(uint64_t));
    r->mtimes = calloc(n + 1, sizeof(int64_t));
    for (size_t i = 0; i < n; i++) {
        r->keys[i] = strdup(objs[i].key);
        r->sizes[i] = objs[i].size;
        r->mtimes[i] = objs[i].mtime_ms;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until the @n results' callbacks ran. */
static void wait_n(fix_t *f, res_t *r, size_t n)
{
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        while (!r[i].done) {
            assert_true(now_s() - t0 < WAIT_LIMIT_S);
            event_base_loop(f->base, EVLOOP_ONCE);
        }
        assert_int_equal(r[i].done, 1);
    }
}

static void start_put(fix_t *f, const char *key, const uint8_t *data, size_t len, res_t *r)
{
    r->in_call = 1;
    assert_int_equal(st_objstore_put(f->os, key, data, len, done_cb, r), 0);
    r->in_call = 0;
    assert_int_equal(r->done, 0);
}

/* Put @len bytes at @key from a heap copy that must come back unchanged. */
static st_err_t put_bytes(fix_t *f, const char *key, const void *bytes, size_t len)
{
    res_t r = {0};
    uint8_t *data = malloc(len ? len : 1);
    memcpy(data, bytes, len);
    start_put(f, key, data, len, &r);
    wait_n(f, &r, 1);
    assert_memory_equal(data, bytes, len);
    free(data);
    return r.err;
}

static st_err_t put_str(fix_t *f, const char *key, const char *s)
{
    return put_bytes(f, key, s, strlen(s));
}

static void get(fix_t *f, const char *key, uint64_t off, uint64_t len, res_t *r)
{
    res_reset(r);
    r->in_call = 1;
    assert_int_equal(st_objstore_get_range(f->os, key, off, len, data_cb, r), 0);
    r->in_call = 0;
    assert_int_equal(r->done, 0);
    wait_n(f, r, 1);
}

/* The whole object at @key as a string ("<err>" when the get failed). */
static const char *get_str(fix_t *f, const char *key)
{
    static char buf[4096];
    res_t r = {0};
    get(f, key, 0, ST_OBJ_TO_END, &r);
    if (r.err != ST_OK)
        snprintf(buf, sizeof buf, "<%s>", st_err_str(r.err));
    else
        snprintf(buf, sizeof buf, "%s", (const char *)r.data);
    res_reset(&r);
    return buf;
}

static void list(fix_t *f, const char *prefix, const char *start_after, size_t max, res_t *r)
{
    res_reset(r);
    r->in_call = 1;
    assert_int_equal(st_objstore_list(f->os, prefix, start_after, max, list_cb, r), 0);
    r->in_call = 0;
    assert_int_equal(r->done, 0);
    wait_n(f, r, 1);
}

static st_err_t del(fix_t *f, const char *key)
{
    res_t r = {0};
    r.in_call = 1;
    assert_int_equal(st_objstore_del(f->os, key, done_cb, &r), 0);
    r.in_call = 0;
    assert_int_equal(r.done, 0);
    wait_n(f, &r, 1);
    return r.err;
}

/* The listing in @r, joined with spaces. */
static const char *joined(const res_t *r)
{
    static char buf[8192];
    buf[0] = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            strcat(buf, " ");
        strcat(buf, r->keys[i]);
    }
    return buf;
}

/* ---------------------------------------------------------------- signing */

#define EX_KEY "AKIAIOSFODNN7EXAMPLE"
#define EX_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EX_HOST "examplebucket.s3.amazonaws.com"
#define EX_DATE "20130524T000000Z"

/* AWS, S3 API reference, "Signature Calculations for the Authorization
 * Header: Transferring Payload in a Single Chunk", example "GET Object". */
static void test_sign_aws_get_object(void **state)
{
    (void)state;
    const st_s3_kv_t hdrs[] = {
        {"Host", EX_HOST},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", ST_S3_EMPTY_SHA256},
        {"x-amz-date", EX_DATE},
    };
    st_s3_sign_req_t req = {
        .method = "GET",
        .path = "/test.txt",
        .headers = hdrs,
        .nheaders = 4,
        .payload_sha256 = ST_S3_EMPTY_SHA256,
        .amz_date = EX_DATE,
        .region = "us-east-1",
        .service = "s3",
        .access_key = EX_KEY,
        .secret_key = EX_SECRET,
    };
    char *canonical = NULL;
    char *auth = st_s3_sign(&req, &canonical);
    assert_non_null(auth);
    assert_string_equal(canonical,
                        "GET\n"
                        "/test.txt\n"
                        "\n"
                        "host:examplebucket.s3.amazonaws.com\n"
                        "range:bytes=0-9\n"
                        "x-amz-content-sha256:" ST_S3_EMPTY_SHA256 "\n"
                        "x-amz-date:20130524T000000Z\n"
                        "\n"
                        "host;range;x-amz-content-sha256;x-amz-date\n" ST_S3_EMPTY_SHA256);
    char hash[65];
    st_s3_sha256_hex(canonical, strlen(canonical), hash);
    assert_string_equal(hash, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    assert_string_equal(
        auth, "AWS4-HMAC-SHA256 "
              "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(auth);
    free(canonical);

    /* The same request with the headers in another order and odd case. */
    const st_s3_kv_t shuffled[] = {
        {"X-Amz-Date", EX_DATE},
        {"range", "  bytes=0-9 "},
        {"HOST", EX_HOST},
        {"X-AMZ-CONTENT-SHA256", ST_S3_EMPTY_SHA256},
    };
    req.headers = shuffled;
    auth = st_s3_sign(&req, NULL);
    assert_non_null(strstr(auth,
                           "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6"
                           "036bdb41"));
    free(auth);
}

static const char *signature_of(const char *auth)
{
    const char *sig = strstr(auth, "Signature=");
    return sig ? sig + 10 : "";
}

/* The same page's other examples: PUT Object, GET Bucket Lifecycle and GET
 * Bucket (List Objects), the last with its query out of order. */
static void test_sign_aws_more_examples(void **state)
{
    (void)state;
    const char *body = "Welcome to Amazon S3.";
    char body_hash[65];
    st_s3_sha256_hex(body, strlen(body), body_hash);
    assert_string_equal(body_hash,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    char *path = st_s3_uri_encode("/test$file.text", true);
    assert_string_equal(path, "/test%24file.text");
    const st_s3_kv_t put_hdrs[] = {
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},     {"Host", EX_HOST},
        {"x-amz-content-sha256", body_hash},           {"x-amz-date", EX_DATE},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
    };
    st_s3_sign_req_t req = {
        .method = "PUT",
        .path = path,
        .headers = put_hdrs,
        .nheaders = 5,
        .payload_sha256 = body_hash,
        .amz_date = EX_DATE,
        .region = "us-east-1",
        .service = "s3",
        .access_key = EX_KEY,
        .secret_key = EX_SECRET,
    };
    char *auth = st_s3_sign(&req, NULL);
    assert_non_null(strstr(auth, "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                                 "x-amz-storage-class,"));
    assert_string_equal(signature_of(auth),
                        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    free(auth);
    free(path);

    const st_s3_kv_t get_hdrs[] = {
        {"Host", EX_HOST},
        {"x-amz-content-sha256", ST_S3_EMPTY_SHA256},
        {"x-amz-date", EX_DATE},
    };
    const st_s3_kv_t lifecycle[] = {{"lifecycle", ""}};
    req = (st_s3_sign_req_t){
        .method = "GET",
        .path = "/",
        .query = lifecycle,
        .nquery = 1,
        .headers = get_hdrs,
        .nheaders = 3,
        .payload_sha256 = ST_S3_EMPTY_SHA256,
        .amz_date = EX_DATE,
        .region = "us-east-1",
        .service = "s3",
        .access_key = EX_KEY,
        .secret_key = EX_SECRET,
    };
    auth = st_s3_sign(&req, NULL);
    assert_string_equal(signature_of(auth),
                        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    free(auth);

    const st_s3_kv_t listq[] = {{"prefix", "J"}, {"max-keys", "2"}};
    req.query = listq;
    req.nquery = 2;
    char *canonical = NULL;
    auth = st_s3_sign(&req, &canonical);
    assert_non_null(strstr(canonical, "\nmax-keys=2&prefix=J\n"));
    assert_string_equal(signature_of(auth),
                        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(auth);
    free(canonical);

    req.secret_key = "another secret";
    auth = st_s3_sign(&req, NULL);
    assert_string_not_equal(signature_of(auth),
                            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(auth);
    req.amz_date = "2013"; /* incomplete requests are refused */
    assert_null(st_s3_sign(&req, NULL));
}

static void test_sign_helpers(void **state)
{
    (void)state;
    char *s = st_s3_uri_encode("a b/c+d=~é_-.", false);
    assert_string_equal(s, "a%20b%2Fc%2Bd%3D~%C3%A9_-.");
    free(s);
    s = st_s3_uri_encode("dir/sub dir/k", true);
    assert_string_equal(s, "dir/sub%20dir/k");
    free(s);
    const st_s3_kv_t q[] = {
        {"start-after", "a/b c"},
        {"continuation-token", "x+y/z=="},
        {"list-type", "2"},
        {"b", ""},
        {"a", "2"},
        {"a", "1"},
    };
    s = st_s3_query_string(q, 6);
    assert_string_equal(s, "a=1&a=2&b=&continuation-token=x%2By%2Fz%3D%3D&list-type=2&"
                           "start-after=a%2Fb%20c");
    free(s);
    s = st_s3_query_string(NULL, 0);
    assert_string_equal(s, "");
    free(s);

    char hex[65], b64[25];
    uint8_t md5[16];
    st_s3_sha256_hex("", 0, hex);
    assert_string_equal(hex, ST_S3_EMPTY_SHA256);
    st_s3_md5("", 0, md5);
    st_s3_hex(md5, 16, hex);
    assert_string_equal(hex, "d41d8cd98f00b204e9800998ecf8427e");
    st_s3_base64(md5, 16, b64);
    assert_string_equal(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
    char date[17];
    st_s3_amz_date(1369353600, date); /* 2013-05-24 00:00:00 UTC */
    assert_string_equal(date, EX_DATE);
}

/* ---------------------------------------------------------------- XML */

static void test_xml_list(void **state)
{
    (void)state;
    const char *xml =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
        "<IsTruncated>true</IsTruncated>"
        "<Contents><Key>p/a&amp;b</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
        "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
        "<Contents><Key>p/c</Key><Size>0</Size><Owner><ID>x</ID><Key>not this</Key></Owner>"
        "</Contents>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
        "NextContinuationToken>"
        "</ListBucketResult>";
    st_s3_list_t l;
    assert_int_equal(st_s3_xml_parse_list(xml, strlen(xml), &l), 0);
    assert_int_equal(l.n, 2);
    assert_true(l.truncated);
    assert_string_equal(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    assert_string_equal(l.entries[0].key, "p/a&b");
    assert_int_equal(l.entries[0].size, 434234);
    assert_int_equal(l.entries[0].mtime_ms, 1255369830000LL);
    assert_string_equal(l.entries[1].key, "p/c");
    assert_int_equal(l.entries[1].size, 0);
    assert_int_equal(l.entries[1].mtime_ms, 0);
    st_s3_list_free(&l);

    const char *empty = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    assert_int_equal(st_s3_xml_parse_list(empty, strlen(empty), &l), 0);
    assert_int_equal(l.n, 0);
    assert_false(l.truncated);
    assert_null(l.next_token);
    st_s3_list_free(&l);

    static const char *const bad[] = {
        "",
        "<ListBucketResult>",                       /* unclosed */
        "<Error><Code>AccessDenied</Code></Error>", /* another root */
        "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", /* no key */
        "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",   /* no size */
        "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>k</Key><Size>99999999999999999999</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
        "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><ListBucketResult><IsTruncated>false</IsTruncated>"
        "</ListBucketResult>",
        "<ListBucketResult><Contents><Key>&a;</Key><Size>1</Size></Contents></ListBucketResult>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l.n = 99;
        if (st_s3_xml_parse_list(bad[i], strlen(bad[i]), &l) != -1)
            fail_msg("accepted bad document %zu: %s", i, bad[i]);
        assert_int_equal(l.n, 0);
        assert_null(l.entries);
    }

    /* A key longer than ST_S3_XML_TEXT_MAX is refused, not truncated. */
    size_t big = ST_S3_XML_TEXT_MAX + 100;
    char *doc = malloc(big + 200);
    strcpy(doc, "<ListBucketResult><Contents><Key>");
    memset(doc + strlen(doc), 'k', big);
    strcpy(doc + 33 + big, "</Key><Size>1</Size></Contents></ListBucketResult>");
    assert_int_equal(st_s3_xml_parse_list(doc, strlen(doc), &l), -1);
    free(doc);
}

static void test_xml_error(void **state)
{
    (void)state;
    const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<Error><Code>NoSuchKey</Code><Message>The resource you requested does "
                      "not exist</Message><Resource>/mybucket/myfoto.jpg</Resource>"
                      "<RequestId>4442587FB7D0A2F9</RequestId></Error>";
    char code[32], msg[16];
    assert_int_equal(st_s3_xml_parse_error(xml, strlen(xml), code, sizeof code, msg, sizeof msg),
                     0);
    assert_string_equal(code, "NoSuchKey");
    assert_string_equal(msg, "The resource yo"); /* truncated to the buffer */
    assert_int_equal(st_s3_xml_parse_error("<Error><Message>m</Message></Error>", 34, code,
                                           sizeof code, msg, sizeof msg),
                     -1);
    assert_string_equal(code, "");
    assert_int_equal(st_s3_xml_parse_error("not xml", 7, code, sizeof code, NULL, 0), -1);
    assert_int_equal(st_s3_xml_parse_error("<Other><Code>x</Code></Other>", 29, NULL, 0, NULL, 0),
                     -1);

    int64_t t;
    assert_int_equal(st_s3_parse_time("1970-01-01T00:00:01Z", &t), 0);
    assert_int_equal(t, 1000);
    assert_int_equal(st_s3_parse_time("2013-05-24T00:00:00.5Z", &t), 0);
    assert_int_equal(t, 1369353600500LL);
    assert_int_equal(st_s3_parse_time("2013-05-24 00:00:00Z", &t), -1);
    assert_int_equal(st_s3_parse_time("2013-05-24T00:00:00", &t), -1);
    assert_int_equal(st_s3_parse_time("2013-13-24T00:00:00Z", &t), -1);
}

/* ---------------------------------------------------------------- configuration */

static void test_config_errors(void **state)
{
    fix_t *f = *state;
    char errstr[256];
    st_s3_cfg_t cfg = f->cfg;
    cfg.endpoint = "http://127.0.0.1:1";
    st_objstore_t *os = st_objstore_s3_new(f->base, f->curl, &cfg, errstr, sizeof errstr);
    assert_non_null(os);
    assert_string_equal(os->ops->name, "s3");
    assert_string_equal(st_objstore_s3_last_error(os), "");
    st_objstore_free(os);

    static const struct {
        const char *bucket, *endpoint, *access, *reason;
    } bad[] = {
        {"Bad_Bucket", "http://h", ACCESS, "bucket"},
        {"ab", "http://h", ACCESS, "bucket"},
        {BUCKET, "ftp://h", ACCESS, "http://"},
        {BUCKET, "http://h/path", ACCESS, "without a path"},
        {BUCKET, "http://", ACCESS, "no host"},
        {BUCKET, "http://h", "", "credentials"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg = f->cfg;
        cfg.bucket = bad[i].bucket;
        cfg.endpoint = bad[i].endpoint;
        cfg.access_key = bad[i].access;
        errstr[0] = '\0';
        assert_null(st_objstore_s3_new(f->base, f->curl, &cfg, errstr, sizeof errstr));
        if (!strstr(errstr, bad[i].reason))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, errstr, bad[i].reason);
    }
}

/* ---------------------------------------------------------------- round trips */

/* Everything a store does, on @f's open store. */
static void roundtrip(fix_t *f)
{
    res_t r = {0};
    assert_int_equal(put_str(f, "obj/one", "0123456789abcdef"), ST_OK);
    assert_string_equal(get_str(f, "obj/one"), "0123456789abcdef");

    get(f, "obj/one", 4, 6, &r); /* a range inside */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 6);
    assert_memory_equal(r.data, "456789", 6);
    get(f, "obj/one", 10, ST_OBJ_TO_END, &r); /* to the end */
    assert_int_equal(r.len, 6);
    assert_memory_equal(r.data, "abcdef", 6);
    get(f, "obj/one", 12, 100, &r); /* straddling the end */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 4);
    assert_memory_equal(r.data, "cdef", 4);
    get(f, "obj/one", 16, 10, &r); /* just past the end */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);
    get(f, "obj/one", 1000, ST_OBJ_TO_END, &r); /* far past the end */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);
    get(f, "obj/one", 3, 0, &r); /* nothing, of an object that exists */
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);
    get(f, "obj/missing", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    get(f, "obj/missing", 5, 10, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);
    get(f, "obj/missing", 0, 0, &r);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);

    /* Into the caller's buffer (the store reads into its own, then a copy):
     * the range straddling the end, nothing past what exists written. */
    uint8_t into[12];
    memset(into, '#', sizeof into);
    res_reset(&r);
    assert_int_equal(st_objstore_get_into(f->os, "obj/one", 12, 8, into, data_cb, &r), 0);
    wait_n(f, &r, 1);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 4);
    assert_memory_equal(into, "cdef########", sizeof into);
    res_reset(&r);
    assert_int_equal(st_objstore_get_into(f->os, "obj/missing", 0, 8, into, data_cb, &r), 0);
    wait_n(f, &r, 1);
    assert_int_equal(r.err, ST_ERR_NOT_FOUND);

    /* Every byte value, and an empty object. */
    uint8_t bin[512];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7);
    assert_int_equal(put_bytes(f, "obj/bin", bin, sizeof bin), ST_OK);
    get(f, "obj/bin", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.len, sizeof bin);
    assert_memory_equal(r.data, bin, sizeof bin);
    assert_int_equal(put_bytes(f, "obj/empty", "", 0), ST_OK);
    get(f, "obj/empty", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 0);

    /* Keys that need encoding in the path. */
    assert_int_equal(put_str(f, "odd/a b+c=d&e~f$g", "odd"), ST_OK);
    assert_string_equal(get_str(f, "odd/a b+c=d&e~f$g"), "odd");

    /* Deleting: present, then missing. */
    assert_int_equal(del(f, "obj/one"), ST_OK);
    assert_string_equal(get_str(f, "obj/one"), "<not found>");
    assert_int_equal(del(f, "obj/one"), ST_OK);
    assert_int_equal(del(f, "never/was"), ST_OK);
    res_reset(&r);
}

/* A 3 MiB object: larger than curl's threshold for Expect: 100-continue and
 * than one read or write buffer; ranged reads deep inside it. */
static void big_object(fix_t *f)
{
    size_t len = 3u << 20;
    uint8_t *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)((i * 2654435761u) >> 13);
    assert_int_equal(put_bytes(f, "big/one", big, len), ST_OK);
    res_t r = {0};
    get(f, "big/one", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.len, len);
    assert_memory_equal(r.data, big, len);
    get(f, "big/one", 1234567, 1000000, &r);
    assert_int_equal(r.len, 1000000);
    assert_memory_equal(r.data, big + 1234567, 1000000);
    res_reset(&r);
    free(big);
}

static void test_roundtrip_path(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_DIRECT, ST_S3_ADDR_PATH);
    roundtrip(f);
    big_object(f);
}

static void test_roundtrip_virtual(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_DIRECT, ST_S3_ADDR_VIRTUAL);
    roundtrip(f);
}

/* Through the checking proxy: every request's signature, path encoding and
 * digests are verified as AWS would; with a session token too. */
static void test_roundtrip_verified(void **state)
{
    fix_t *f = *state;
    f->cfg.session_token = "FQoGZXIvYXdzEXAMPLE+token/==";
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    roundtrip(f);
    big_object(f);
    assert_int_equal(log_count("status=403"), 0);
    assert_int_equal(log_count("status=400"), 0);
    assert_true(log_count("PUT inm=* status=200") >= 4);
    f->cfg.session_token = NULL;
    new_prefix(f);
    open_store(f, VIA_PROXY, ST_S3_ADDR_VIRTUAL);
    roundtrip(f);
    assert_int_equal(log_count("status=403"), 0);
    assert_int_equal(log_count("status=400"), 0);

    /* A wrong secret is refused by the checker: 403, no retry. */
    f->cfg.secret_key = "not the secret";
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_reset();
    assert_int_equal(put_str(f, "obj/denied", "x"), ST_ERR_IO);
    assert_non_null(strstr(st_objstore_s3_last_error(f->os), "SignatureDoesNotMatch"));
    assert_int_equal(log_count("PUT"), 1);
}

/* Keys the store refuses, reported through the callback. */
static void test_invalid_keys(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    char longkey[1100];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    const char *bad[] = {"", "a//b", "/a", "a/", "../x", "a/./b", "a/..", "new\nline", longkey};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(put_str(f, bad[i], "x"), ST_ERR_INVALID);
        res_t r = {0};
        get(f, bad[i], 0, ST_OBJ_TO_END, &r);
        assert_int_equal(r.err, ST_ERR_INVALID);
        assert_int_equal(del(f, bad[i]), ST_ERR_INVALID);
    }
    res_t r = {0};
    list(f, "bad\x01", NULL, 10, &r);
    assert_int_equal(r.err, ST_ERR_INVALID);
    res_reset(&r);
    assert_int_equal(log_count("PUT") + log_count("GET"), 0); /* nothing sent */
}

/* ---------------------------------------------------------------- listing */

static void listing(fix_t *f)
{
    static const char *const keys[] = {"l/a",   "l/b",   "l/c/1", "l/c/2", "l/d",
                                       "l/e+f", "l/g h", "l/z",   "m/x",   "lz"};
    char val[16];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(val, sizeof val, "v%zu", i * 11);
        assert_int_equal(put_str(f, keys[i], val), ST_OK);
    }
    res_t r = {0};
    list(f, "l/", NULL, 1000, &r);
    assert_int_equal(r.err, ST_OK);
    assert_string_equal(joined(&r), "l/a l/b l/c/1 l/c/2 l/d l/e+f l/g h l/z");
    assert_false(r.more);
    assert_int_equal(r.sizes[0], 2); /* "v0" */
    assert_int_equal(r.sizes[7], 3); /* "v77" */
    time_t now = time(NULL);
    for (size_t i = 0; i < r.n; i++) /* mtimes are real times, near now */
        assert_true(r.mtimes[i] / 1000 > now - 600 && r.mtimes[i] / 1000 < now + 600);

    /* Pages of 3, each continuing after the last key. */
    list(f, "l/", NULL, 3, &r);
    assert_string_equal(joined(&r), "l/a l/b l/c/1");
    assert_true(r.more);
    list(f, "l/", "l/c/1", 3, &r);
    assert_string_equal(joined(&r), "l/c/2 l/d l/e+f");
    assert_true(r.more);
    list(f, "l/", "l/e+f", 3, &r);
    assert_string_equal(joined(&r), "l/g h l/z");
    assert_false(r.more);
    list(f, "l/", "l/z", 3, &r);
    assert_int_equal(r.n, 0);
    assert_false(r.more);

    /* The whole store (keys never show the store's prefix), a prefix that
     * is no directory, and nothing. */
    list(f, "", NULL, 100, &r);
    assert_string_equal(joined(&r), "l/a l/b l/c/1 l/c/2 l/d l/e+f l/g h l/z lz m/x");
    list(f, "l", NULL, 100, &r);
    assert_int_equal(r.n, 9);
    list(f, "l/c", NULL, 100, &r);
    assert_string_equal(joined(&r), "l/c/1 l/c/2");
    list(f, "nothing/", NULL, 100, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.n, 0);
    assert_false(r.more);
    list(f, "l/", NULL, 0, &r); /* zero keys: only whether any exist */
    assert_int_equal(r.n, 0);
    assert_true(r.more);
    list(f, "nothing/", NULL, 0, &r);
    assert_false(r.more);
    list(f, "l/", "l/e+f", 2, &r); /* start_after with characters to encode */
    assert_string_equal(joined(&r), "l/g h l/z");
    res_reset(&r);
}

static void test_list_path(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_DIRECT, ST_S3_ADDR_PATH);
    listing(f);
}

/* Small pages: one call follows continuation tokens (s3rver's carry '+',
 * '/' and '='), checked by the proxy's signature verifier. */
static void test_list_continuation(void **state)
{
    fix_t *f = *state;
    f->cfg.list_page_keys = 2;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    listing(f);
    assert_true(log_count("continuation-token= status=200") >= 4);
    assert_int_equal(log_count("status=403"), 0);
    open_store(f, VIA_PROXY, ST_S3_ADDR_VIRTUAL);
    res_t r = {0};
    list(f, "l/", NULL, 7, &r);
    assert_string_equal(joined(&r), "l/a l/b l/c/1 l/c/2 l/d l/e+f l/g h");
    assert_true(r.more);
    res_reset(&r);
    assert_int_equal(log_count("status=403"), 0);
}

/* ---------------------------------------------------------------- faults */

static void test_retry_5xx(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=status&code=503&s3code=SlowDown&count=2&method=PUT");
    assert_int_equal(put_str(f, "r/one", "retried"), ST_OK);
    assert_int_equal(log_count("PUT status=503"), 2);
    assert_int_equal(log_count("PUT status=200"), 1);
    assert_non_null(strstr(f->logged, "SlowDown"));

    proxy_ctl("POST", "/__proxy/fault?action=status&code=500&s3code=InternalError&count=1&"
                      "method=GET");
    assert_string_equal(get_str(f, "r/one"), "retried");
    proxy_ctl("POST", "/__proxy/fault?action=status&code=429&s3code=TooManyRequests&count=1&"
                      "method=GET");
    res_t r = {0};
    list(f, "r/", NULL, 10, &r);
    assert_string_equal(joined(&r), "r/one");
    res_reset(&r);
    proxy_ctl("POST", "/__proxy/fault?action=status&code=400&s3code=RequestTimeout&count=1&"
                      "method=DELETE");
    assert_int_equal(del(f, "r/one"), ST_OK);
    assert_int_equal(log_count("DELETE"), 2);
    assert_string_equal(get_str(f, "r/one"), "<not found>");
}

/* A server that ignores Range answers a ranged GET with the whole object
 * (200): the store keeps the range asked for, whether it lies inside the
 * object, deep in a large one, or straddles its end. */
static void test_range_ignored(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    size_t len = 3u << 20;
    uint8_t *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)((i * 2654435761u) >> 13);
    assert_int_equal(put_bytes(f, "n/big", big, len), ST_OK);
    assert_int_equal(put_str(f, "n/small", "0123456789abcdef"), ST_OK);
    proxy_ctl("POST", "/__proxy/fault?action=norange&count=4&method=GET");
    res_t r = {0};
    get(f, "n/big", 1234567, 1000000, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 1000000);
    assert_memory_equal(r.data, big + 1234567, 1000000);
    get(f, "n/big", len - 10, 100, &r);
    assert_int_equal(r.err, ST_OK);
    assert_int_equal(r.len, 10);
    assert_memory_equal(r.data, big + len - 10, 10);
    get(f, "n/small", 4, 6, &r);
    assert_int_equal(r.len, 6);
    assert_memory_equal(r.data, "456789", 6);
    get(f, "n/small", 0, 16, &r);
    assert_int_equal(r.len, 16);
    assert_memory_equal(r.data, "0123456789abcdef", 16);
    assert_int_equal(log_count("GET status=200 fault=norange"), 4); /* whole objects, not 206 */
    res_reset(&r);
    free(big);
}

static void test_retry_connection(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=drop&count=2&method=PUT");
    assert_int_equal(put_str(f, "c/one", "dropped twice"), ST_OK);
    assert_int_equal(log_count("PUT dropped"), 2);
    proxy_ctl("POST", "/__proxy/fault?action=drop&count=1&method=GET");
    assert_string_equal(get_str(f, "c/one"), "dropped twice");

    /* A server that does not answer at all. */
    f->cfg.endpoint = NULL;
    f->cfg.retry_budget_ms = 700;
    close_store(f);
    char ep[64], errstr[256];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", 1); /* nothing listens on port 1 */
    f->cfg.endpoint = ep;
    f->os = st_objstore_s3_new(f->base, f->curl, &f->cfg, errstr, sizeof errstr);
    assert_non_null(f->os);
    double t0 = now_s();
    assert_int_equal(put_str(f, "c/two", "nobody"), ST_ERR_IO);
    assert_true(now_s() - t0 < 3.0);
    assert_non_null(strstr(f->logged, "giving up"));
}

static void test_retry_timeout(void **state)
{
    fix_t *f = *state;
    f->cfg.attempt_timeout_ms = 400;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=delay&ms=1500&count=1&method=GET");
    assert_int_equal(put_str(f, "t/one", "slow"), ST_OK);
    assert_string_equal(get_str(f, "t/one"), "slow");
    assert_int_equal(log_wait(1, "GET fault=delay"), 1);
    assert_int_equal(log_count("GET fault=-"), 1);

    /* Every attempt too slow: the budget runs out, reported as a timeout. */
    f->cfg.retry_budget_ms = 1000;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=delay&ms=700&count=20&method=GET");
    double t0 = now_s();
    res_t r = {0};
    get(f, "t/one", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_TIMEOUT);
    assert_true(now_s() - t0 < 2.5);
    proxy_reset();
}

static void test_retry_budget(void **state)
{
    fix_t *f = *state;
    f->cfg.retry_budget_ms = 800;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=status&code=503&count=1000&method=PUT");
    double t0 = now_s();
    /* The last attempt's error: a 503 (ST_ERR_IO), or on a loaded machine
     * an attempt that timed out (ST_ERR_TIMEOUT); never a success. */
    st_err_t e = put_str(f, "b/one", "never");
    assert_true(e == ST_ERR_IO || e == ST_ERR_TIMEOUT);
    double took = now_s() - t0;
    assert_true(took < 5.0);
    int attempts = log_count("PUT status=503");
    assert_true(attempts >= 3); /* backoff 20 ms doubling to 200 ms within 800 ms */
    proxy_reset();
}

static void test_no_retry_4xx(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=status&code=403&s3code=AccessDenied&count=5");
    assert_int_equal(put_str(f, "d/one", "denied"), ST_ERR_IO);
    assert_int_equal(log_count("PUT"), 1);
    assert_non_null(strstr(st_objstore_s3_last_error(f->os), "403 AccessDenied"));
    res_t r = {0};
    get(f, "d/one", 0, ST_OBJ_TO_END, &r);
    assert_int_equal(r.err, ST_ERR_IO);
    list(f, "d/", NULL, 10, &r);
    assert_int_equal(r.err, ST_ERR_IO);
    assert_int_equal(del(f, "d/one"), ST_ERR_IO);
    assert_int_equal(log_count("status=403"), 4); /* one attempt each */
    res_reset(&r);
    proxy_reset();
}

/* A byte flipped between the gateway and a server that checks no digest:
 * the ETag gives it away and the put is not reported successful. */
static void test_flipped_byte(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=flip&count=1&method=PUT");
    assert_int_equal(put_str(f, "f/one", "the bytes as sent"), ST_ERR_CORRUPT);
    assert_int_equal(log_count("PUT"), 1); /* the key holds other bytes: no retry */
    assert_non_null(strstr(st_objstore_s3_last_error(f->os), "ETag"));
    assert_string_not_equal(get_str(f, "f/one"), "the bytes as sent");

    /* A server that checks the digests (as AWS does) refuses the bytes
     * (XAmzContentSHA256Mismatch, or BadDigest for Content-MD5): nothing is
     * stored, and the retry lands. */
    proxy_reset();
    proxy_ctl("POST", "/__proxy/fault?action=corrupt&count=1&method=PUT");
    assert_int_equal(put_str(f, "f/two", "the bytes as sent"), ST_OK);
    assert_int_equal(log_count("PUT status=400"), 1);
    assert_string_equal(get_str(f, "f/two"), "the bytes as sent");
    proxy_ctl("POST", "/__proxy/fault?action=corrupt&count=1000&method=PUT");
    f->cfg.retry_budget_ms = 500;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    /* Never a success: the last answer's digest error, or the budget
     * running out first on a slow (sanitized) build. */
    st_err_t e = put_str(f, "f/three", "always damaged");
    assert_true(e == ST_ERR_CORRUPT || e == ST_ERR_TIMEOUT);
    proxy_reset();
}

/* A put's body goes as UNSIGNED-PAYLOAD, its signed Content-MD5 checked by
 * the store (the proxy checks as AWS does); with sign_payload, signed by its
 * SHA-256.  A body changed on the way is refused either way (BadDigest, or
 * XAmzContentSHA256Mismatch), and the retry lands. */
static void test_payload_signing(void **state)
{
    fix_t *f = *state;
    for (int sign = 0; sign < 2; sign++) {
        f->cfg.sign_payload = sign;
        open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
        proxy_reset();
        const char *key = sign ? "p/signed" : "p/unsigned";
        assert_int_equal(put_str(f, key, "a body of some bytes"), ST_OK);
        assert_int_equal(
            log_count(sign ? "PUT payload=signed status=200" : "PUT payload=unsigned status=200"),
            1);
        assert_string_equal(get_str(f, key), "a body of some bytes");
        assert_int_equal(log_count("GET payload=signed status=20"), 1); /* the empty body's */
        proxy_ctl("POST", "/__proxy/fault?action=corrupt&count=1&method=PUT");
        assert_int_equal(put_str(f, sign ? "p/signed2" : "p/unsigned2", "changed on the way"),
                         ST_OK);
        assert_int_equal(log_count("PUT status=400 fault=corrupt"), 1);
        assert_string_equal(get_str(f, sign ? "p/signed2" : "p/unsigned2"), "changed on the way");
    }
    proxy_reset();
}

/* Objects are never overwritten: If-None-Match: * on every PUT, 412 is
 * ST_ERR_EXISTS (the proxy answers as AWS and MinIO do; s3rver would
 * overwrite). */
static void test_no_overwrite(void **state)
{
    fix_t *f = *state;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    assert_int_equal(put_str(f, "o/one", "first"), ST_OK);
    assert_int_equal(put_str(f, "o/one", "second"), ST_ERR_EXISTS);
    assert_string_equal(get_str(f, "o/one"), "first");
    assert_int_equal(log_count("PUT inm=*"), 2);
    assert_int_equal(log_count("PUT status=412"), 1);
    assert_int_equal(log_count("PUT inm=-"), 0);

    /* A put whose reply was lost after it landed: its retry meets 412, and
     * the stored ETag shows the object is its own. */
    proxy_ctl("POST", "/__proxy/fault?action=lost&count=1&method=PUT");
    assert_int_equal(put_str(f, "o/two", "landed"), ST_OK);
    assert_int_equal(log_count("PUT o/two fault=lost"), 1);
    assert_int_equal(log_count("PUT o/two status=412"), 1);
    assert_int_equal(log_count("HEAD o/two status=200"), 1);
    assert_string_equal(get_str(f, "o/two"), "landed");

    /* The same ambiguity, but the object there has other bytes. */
    proxy_ctl("POST", "/__proxy/fault?action=status&code=503&count=1&method=PUT");
    assert_int_equal(put_str(f, "o/two", "other bytes"), ST_ERR_EXISTS);
    assert_string_equal(get_str(f, "o/two"), "landed");
}

/* At most max_inflight requests at once; the rest wait their turn. */
static void test_inflight_limit(void **state)
{
    fix_t *f = *state;
    f->cfg.max_inflight = 2;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=delay&ms=150&count=8&method=PUT");
    enum { N = 8 };
    res_t r[N] = {{0}};
    char key[N][16];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof key[i], "p/%d", i);
        start_put(f, key[i], (const uint8_t *)key[i], strlen(key[i]), &r[i]);
    }
    wait_n(f, r, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].err, ST_OK);
    assert_true(now_s() - t0 >= 0.55); /* 8 delays of 150 ms, two at a time */
    assert_string_equal(proxy_ctl("GET", "/__proxy/stats"), "max_concurrent=2\n");

    /* Sequential requests reuse the connections already open. */
    proxy_reset();
    for (int i = 0; i < N; i++)
        assert_string_equal(get_str(f, key[i]), key[i]);
    assert_int_equal(log_count("GET"), N);
    assert_true(log_conns("GET") <= 2);
}

/* Freeing the store ends running and waiting operations with ST_ERR_CLOSED,
 * inside st_objstore_free, never inside the starting call. */
static void test_free_running(void **state)
{
    fix_t *f = *state;
    f->cfg.max_inflight = 1;
    open_store(f, VIA_PROXY, ST_S3_ADDR_PATH);
    proxy_ctl("POST", "/__proxy/fault?action=delay&ms=2000&count=1&method=PUT");
    res_t r[4] = {{0}};
    start_put(f, "x/one", (const uint8_t *)"a", 1, &r[0]);
    start_put(f, "x/two", (const uint8_t *)"b", 1, &r[1]); /* waits for a slot */
    proxy_ctl("POST", "/__proxy/fault?action=status&code=503&count=1000&method=DELETE");
    r[2].in_call = 1;
    assert_int_equal(st_objstore_del(f->os, "x/three", done_cb, &r[2]), 0);
    r[2].in_call = 0;
    for (int i = 0; i < 5; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    /* a large put still being hashed on a worker when the store closes */
    size_t blen = 8u << 20;
    uint8_t *big = calloc(1, blen);
    start_put(f, "x/big", big, blen, &r[3]);
    close_store(f);
    free(big);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].err, ST_ERR_CLOSED);
    }
    proxy_reset();
}

int main(void)
{
    evthread_use_pthreads(); /* the store hashes large puts on worker threads */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_aws_get_object),
        cmocka_unit_test(test_sign_aws_more_examples),
        cmocka_unit_test(test_sign_helpers),
        cmocka_unit_test(test_xml_list),
        cmocka_unit_test(test_xml_error),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_virtual, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_continuation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_retry_4xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_signing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_running, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, servers_start, servers_stop);
    curl_global_cleanup();
    return rc;
}
