/*
 * test_meta_etcd.c: the etcd metadata store against a real etcd that the
 * test starts itself (storage/tests/etcd.sh: Debian's etcd-server on free
 * loopback ports, default limits, a fresh data directory) -- the shared
 * st_meta conformance suite (meta_conformance.c), then what is etcd's own:
 * the JSON gateway's omitted fields, txn conflicts between two clients, a
 * fenced commit, watches surviving a dropped stream and reading history,
 * endpoint failover on refused connections, response size limits,
 * authentication, and a 3-member cluster losing the member in use under a
 * loop of transactions.
 */
#include "meta_conformance.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "st_curl.h"
#include "st_etcd_json.h"
#include "st_meta_compactor.h"

/* ------------------------------------------------------------ etcd itself */

static char etcd_dir[64];   /* etcd.sh's directory for the single member */
static char etcd_url[128];  /* its client URL */
static char etcd_sh[512];   /* path of etcd.sh */
static int prefix_seq;      /* a fresh key prefix per store */
static char cur_prefix[64]; /* prefix of the store opened last */
static st_curl_t *cur_curl; /* the curl glue of the stores of the running test */

/* Run @cmd; its first output line into @out. */
static int run_line(const char *cmd, char *out, size_t size)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    out[0] = 0;
    if (!fgets(out, (int)size, p))
        out[0] = 0;
    out[strcspn(out, "\n")] = 0;
    return pclose(p) == 0 && out[0] ? 0 : -1;
}

static int etcd_start(void **state)
{
    (void)state;
    const char *src = getenv("NH_SOURCE_DIR");
    snprintf(etcd_sh, sizeof etcd_sh, "%s/storage/tests/etcd.sh", src ? src : ".");
    snprintf(etcd_dir, sizeof etcd_dir, "/tmp/nh-etcd-XXXXXX");
    if (!mkdtemp(etcd_dir))
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ETCD_OWNER_PID=%d bash %s start %s", (int)getpid(), etcd_sh,
             etcd_dir);
    if (run_line(cmd, etcd_url, sizeof etcd_url) != 0) {
        fprintf(stderr, "test_meta_etcd: cannot start etcd (%s)\n", cmd);
        return -1;
    }
    return 0;
}

static int etcd_stop(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash %s stop %s", etcd_sh, etcd_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* etcdctl against the single member; 0 when it succeeded. */
static int etcdctl(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "etcdctl --endpoints %s %s >/dev/null 2>&1", etcd_url, args);
    return system(cmd) == 0 ? 0 : -1;
}

/* A store on @eps with this test's curl glue. */
static st_meta_t *store_new(const char *const *eps, size_t neps, const char *prefix,
                            const char *user, const char *password, long timeout_ms,
                            size_t max_body)
{
    if (!cur_curl)
        cur_curl = st_curl_new(F->base);
    assert_non_null(cur_curl);
    st_etcd_cfg_t cfg = {.endpoints = eps,
                         .nendpoints = neps,
                         .prefix = prefix,
                         .user = user,
                         .password = password,
                         .timeout_ms = timeout_ms,
                         .connect_timeout_ms = 500,
                         .max_response_bytes = max_body};
    char err[256] = "";
    st_meta_t *m = st_meta_etcd_new(F->base, cur_curl, &cfg, err, sizeof err);
    if (!m)
        fail_msg("st_meta_etcd_new: %s", err);
    return m;
}

static st_meta_t *etcd_open(struct event_base *base, bool fresh, char *err, size_t err_size)
{
    if (fresh)
        snprintf(cur_prefix, sizeof cur_prefix, "/nh-test-%d-%d/", (int)getpid(), ++prefix_seq);
    if (!cur_curl && !(cur_curl = st_curl_new(base))) {
        snprintf(err, err_size, "st_curl_new failed");
        return NULL;
    }
    const char *eps[] = {etcd_url};
    st_etcd_cfg_t cfg = {.endpoints = eps, .nendpoints = 1, .prefix = cur_prefix};
    return st_meta_etcd_new(base, cur_curl, &cfg, err, err_size);
}

static void etcd_cleanup(void)
{
    st_curl_free(cur_curl);
    cur_curl = NULL;
}

static const mc_backend_t etcd_backend = {
    .name = "etcd",
    .open = etcd_open,
    .cleanup = etcd_cleanup,
    .short_ttl_ms = 2000, /* etcd's TTLs are whole seconds, at least ~2 s */
};

/* Run @stmt with F->m swapped for @store. */
#define WITH_STORE(store, stmt)                                                                    \
    do {                                                                                           \
        st_meta_t *saved_ = F->m;                                                                  \
        F->m = (store);                                                                            \
        stmt;                                                                                      \
        F->m = saved_;                                                                             \
    } while (0)

/* A blocking POST outside the loop, to see etcd's raw answers. */
static size_t raw_write(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), len = size * n;
    if (have + len >= 8192)
        len = 8191 - have;
    memcpy(buf + have, p, len);
    buf[have + len] = 0;
    return size * n;
}

static long raw_post_to(const char *base, const char *path, const char *body, char *out)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    out[0] = 0;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    long http = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(c);
    return http;
}

static long raw_post(const char *path, const char *body, char *out)
{
    return raw_post_to(etcd_url, path, body, out);
}

/* ------------------------------------------------------------- JSON, pure */

/* The omitted-default quirks, on bodies as etcd 3.4 sends them. */
static void test_json_quirks(void **state)
{
    (void)state;
    st_arena_t a = {0};
    st_etcd_res_t res;
    /* A failed compare: no "succeeded"; the failure branch's one range. */
    const char *fenced = "{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"3\","
                         "\"raft_term\":\"2\"},\"responses\":[{\"response_range\":{\"header\":"
                         "{\"revision\":\"3\"}}}]}";
    uint8_t types[] = {ST_OP_PUT, ST_OP_GET};
    st_etcd_txn_shape_t shape = {.types = types, .nsuccess = 1, .nfailure = 1};
    assert_int_equal(st_etcd__parse_txn(fenced, strlen(fenced), "/p", &shape, &a, &res), ST_OK);
    assert_false(res.succeeded);
    assert_int_equal(res.rev, 3);
    assert_int_equal(res.nresults, 1);
    assert_int_equal(res.results[0].n, 0); /* an empty range: no "kvs" */
    /* Responses that do not match the branch's ops are not etcd's answer. */
    st_etcd_txn_shape_t wrong = {.types = types, .nsuccess = 1, .nfailure = 0};
    assert_int_equal(st_etcd__parse_txn(fenced, strlen(fenced), "/p", &wrong, &a, &res),
                     ST_ERR_CORRUPT);
    /* A kv with an empty value (no "value") and a key outside the prefix. */
    const char *rng = "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"L3BhYg==\","
                      "\"create_revision\":\"4\",\"mod_revision\":\"5\",\"version\":\"2\"}],"
                      "\"more\":true,\"count\":\"7\"}";
    assert_int_equal(st_etcd__parse_range(rng, strlen(rng), "/p", &a, &res), ST_OK);
    assert_int_equal(res.nkvs, 1);
    assert_string_equal(res.kvs[0].key, "ab");
    assert_int_equal(res.kvs[0].val_len, 0);
    assert_int_equal(res.kvs[0].mod_rev, 5);
    assert_int_equal(res.kvs[0].lease, 0);
    assert_true(res.more);
    assert_int_equal(st_etcd__parse_range(rng, strlen(rng), "/q", &a, &res), ST_ERR_CORRUPT);
    /* A keep-alive of an unknown lease: no "TTL". */
    const char *ka = "{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"123\"}}\n";
    assert_int_equal(st_etcd__parse_lease(ka, strlen(ka), true, &res), ST_OK);
    assert_int_equal(res.lease_id, 123);
    assert_int_equal(res.ttl_s, 0);
    /* Watch lines: a PUT has no "type"; DELETE keeps only key and mod_revision. */
    st_etcd_watch_msg_t msg;
    const char *ev = "{\"result\":{\"header\":{\"revision\":\"6\"},\"events\":[{\"kv\":{\"key\":"
                     "\"L3BhYg==\",\"create_revision\":\"6\",\"mod_revision\":\"6\",\"version\":"
                     "\"1\",\"value\":\"eA==\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3BhYg==\","
                     "\"mod_revision\":\"7\"}}]}}";
    assert_int_equal(st_etcd__parse_watch(ev, strlen(ev), "/p", &a, &msg), ST_OK);
    assert_int_equal(msg.nevs, 2);
    assert_int_equal(msg.evs[0].type, ST_WATCH_PUT);
    assert_int_equal(msg.evs[0].kv.val_len, 1);
    assert_int_equal(msg.evs[1].type, ST_WATCH_DELETE);
    assert_int_equal(msg.evs[1].kv.mod_rev, 7);
    const char *cmp = "{\"result\":{\"header\":{\"raft_term\":\"2\"},\"canceled\":true,"
                      "\"compact_revision\":\"2\"}}";
    assert_int_equal(st_etcd__parse_watch(cmp, strlen(cmp), "/p", &a, &msg), ST_OK);
    assert_true(msg.canceled);
    assert_int_equal(msg.compact_rev, 2);
    assert_int_equal(msg.rev, 0); /* no revision in the header: 0 */
    /* Errors, unary and streamed. */
    int code;
    char m[128];
    const char *e1 = "{\"error\":\"etcdserver: requested lease not found\",\"message\":"
                     "\"etcdserver: requested lease not found\",\"code\":5}";
    assert_true(st_etcd__parse_error(e1, strlen(e1), &code, m, sizeof m));
    assert_int_equal(code, ST_GRPC_NOT_FOUND);
    assert_string_equal(m, "etcdserver: requested lease not found");
    const char *e2 = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"no leader\"}}";
    assert_int_equal(st_etcd__parse_watch(e2, strlen(e2), "/p", &a, &msg), ST_OK);
    assert_true(msg.error);
    assert_int_equal(msg.err_code, ST_GRPC_UNAVAILABLE);
    assert_false(st_etcd__parse_error(rng, strlen(rng), &code, m, sizeof m));
    /* Bytes. */
    uint8_t end[8];
    assert_int_equal(st_etcd__prefix_end((const uint8_t *)"a\xff\xff", 3, end), 1);
    assert_int_equal(end[0], 'b');
    assert_int_equal(st_etcd__prefix_end((const uint8_t *)"\xff", 1, end), 0);
    char b64[16];
    uint8_t dec[16];
    for (size_t n = 0; n <= 5; n++) {
        st_etcd__b64_encode((const uint8_t *)"\x00\xff\x10zq", n, b64);
        assert_int_equal(st_etcd__b64_decode(b64, strlen(b64), dec), (long)n);
        assert_memory_equal(dec, "\x00\xff\x10zq", n);
    }
    assert_int_equal(st_etcd__b64_decode("YQ=", 3, dec), -1);
    assert_int_equal(st_etcd__b64_decode("Y=Q=", 4, dec), -1);
    assert_int_equal(st_etcd__b64_decode("YQ==YQ==", 8, dec), -1);
    /* The whole key space with no prefix: key "\0", range_end "\0". */
    char *req = st_etcd__req_range("", "", true, 0);
    assert_non_null(strstr(req, "\"key\":\"AA==\""));
    assert_non_null(strstr(req, "\"range_end\":\"AA==\""));
    free(req);
    st_arena__free(&a);
}

/* ------------------------------------------------------- etcd's own, live */

/* DESIGN §5: a txn whose compare failed has no "succeeded" at all; the
 * store reads that as fenced and applies nothing. */
static void test_fenced_commit(void **state)
{
    (void)state;
    put("fence", "7", 0);
    int64_t rev = put("fence", "8", 0); /* taken over meanwhile */
    char body[1024], out[8192];
    char key[128], k64[200], v64[16];
    snprintf(key, sizeof key, "%sfence", cur_prefix);
    st_etcd__b64_encode((const uint8_t *)key, strlen(key), k64);
    st_etcd__b64_encode((const uint8_t *)"7", 1, v64);
    snprintf(
        body, sizeof body,
        "{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\",\"result\":\"EQUAL\","
        "\"value\":\"%s\"}],\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
        k64, v64, k64, v64);
    assert_int_equal(raw_post("/v3/kv/txn", body, out), 200);
    assert_null(strstr(out, "succeeded")); /* the quirk itself */
    assert_non_null(strstr(out, "\"header\""));

    st_cmp_t cmp = {.key = "fence",
                    .target = ST_CMP_VALUE,
                    .op = ST_CMP_EQ,
                    .val = (const uint8_t *)"7",
                    .val_len = 1};
    st_op_t man = op_put("manifest/1", "m", 0);
    st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &man, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_false(r.succeeded); /* never acknowledged */
    assert_int_equal(r.rev, rev);
    assert_int_equal(r.nres, 0); /* the (empty) failure branch ran */
    assert_int_equal(get("manifest/1", NULL), 0);
    assert_int_equal(current_rev(), rev);
}

/* Two clients race compare-and-swaps on one key: exactly one wins each round. */
static void test_txn_conflict(void **state)
{
    (void)state;
    int _rc;
    const char *eps[] = {etcd_url};
    st_meta_t *other = store_new(eps, 1, cur_prefix, NULL, NULL, 3000, 0);
    put("ctr", "0", 0);
    for (int round = 0; round < 10; round++) {
        kvc_t kv;
        assert_int_equal(get("ctr", &kv), 1);
        char next[16];
        snprintf(next, sizeof next, "%d", round + 1);
        st_cmp_t cmp = {.key = "ctr", .target = ST_CMP_MOD, .op = ST_CMP_EQ, .num = kv.mod_rev};
        st_op_t op = op_put("ctr", next, 0);
        st_op_t rd = op_of(ST_OP_GET, "ctr");
        st_txn_t txn = {
            .cmps = &cmp, .ncmps = 1, .success = &op, .nsuccess = 1, .failure = &rd, .nfailure = 1};
        res_t a = {0}, b = {0};
        assert_int_equal(CALL(st_meta_txn(F->m, &txn, txn_cb, &a)), 0);
        assert_int_equal(CALL(st_meta_txn(other, &txn, txn_cb, &b)), 0);
        loop_until(&a.done);
        loop_until(&b.done);
        assert_int_equal(a.err, ST_OK);
        assert_int_equal(b.err, ST_OK);
        assert_true(a.succeeded != b.succeeded); /* one wins, one conflicts */
        res_t *lost = a.succeeded ? &b : &a;
        assert_int_equal(lost->nres, 1);
        assert_string_equal(lost->kv[0][0].val, next); /* it reads the winner's value */
        assert_int_equal(lost->kv[0][0].mod_rev, (a.succeeded ? &a : &b)->rev);
    }
    st_meta_free(other);
}

/* ------------------------------------------------- a loopback TCP proxy */

/* Forwards connections to the etcd member; cut() drops every one of them
 * (as a member restart or a network blip would). */
typedef struct proxy {
    int lfd;
    int port, target;
    int ctl[2]; /* 'c' = cut, 'q' = quit */
    pthread_t th;
    int fds[128]; /* pairs: client, upstream */
    int nfds;
} proxy_t;

static void proxy_close_all(proxy_t *p)
{
    for (int i = 0; i < p->nfds; i++)
        close(p->fds[i]);
    p->nfds = 0;
}

static void *proxy_main(void *arg)
{
    proxy_t *p = arg;
    char buf[65536];
    for (;;) {
        struct pollfd pf[130];
        pf[0] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        pf[1] = (struct pollfd){.fd = p->ctl[0], .events = POLLIN};
        for (int i = 0; i < p->nfds; i++)
            pf[2 + i] = (struct pollfd){.fd = p->fds[i], .events = POLLIN};
        if (poll(pf, (nfds_t)(2 + p->nfds), -1) < 0)
            continue;
        if (pf[1].revents) {
            char c = 0;
            if (read(p->ctl[0], &c, 1) != 1 || c == 'q')
                break;
            proxy_close_all(p);
            continue;
        }
        if (pf[0].revents) {
            int cfd = accept(p->lfd, NULL, NULL);
            int ufd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->target)};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (cfd >= 0 && ufd >= 0 && p->nfds + 2 <= 128 &&
                connect(ufd, (struct sockaddr *)&sa, sizeof sa) == 0) {
                p->fds[p->nfds++] = cfd;
                p->fds[p->nfds++] = ufd;
            } else {
                if (cfd >= 0)
                    close(cfd);
                if (ufd >= 0)
                    close(ufd);
            }
            continue;
        }
        for (int i = 0; i < p->nfds; i++) {
            if (!pf[2 + i].revents)
                continue;
            int peer = p->fds[i ^ 1];
            ssize_t n = read(p->fds[i], buf, sizeof buf);
            if (n <= 0 || write(peer, buf, (size_t)n) != n) {
                int pair = i & ~1; /* close the pair, keep the others */
                close(p->fds[pair]);
                close(p->fds[pair + 1]);
                memmove(&p->fds[pair], &p->fds[pair + 2],
                        (size_t)(p->nfds - pair - 2) * sizeof(int));
                p->nfds -= 2;
            }
            break; /* the fd array changed or may change: poll again */
        }
    }
    proxy_close_all(p);
    return NULL;
}

static void proxy_start(proxy_t *p, int target)
{
    memset(p, 0, sizeof(*p));
    p->target = target;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p->lfd, 16), 0);
    socklen_t len = sizeof sa;
    getsockname(p->lfd, (struct sockaddr *)&sa, &len);
    p->port = ntohs(sa.sin_port);
    assert_int_equal(pipe(p->ctl), 0);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
}

static void proxy_ctl(proxy_t *p, char c)
{
    assert_int_equal(write(p->ctl[1], &c, 1), 1);
}

static void proxy_stop(proxy_t *p)
{
    proxy_ctl(p, 'q');
    pthread_join(p->th, NULL);
    close(p->lfd);
    close(p->ctl[0]);
    close(p->ctl[1]);
}

static int url_port(const char *url)
{
    const char *c = strrchr(url, ':');
    return c ? atoi(c + 1) : 0;
}

/* A watch delivers every change once and in order, across streams cut
 * under it, and can start from history that is still kept. */
static void test_watch_reconnect(void **state)
{
    (void)state;
    proxy_t px;
    proxy_start(&px, url_port(etcd_url));
    char purl[64];
    snprintf(purl, sizeof purl, "http://127.0.0.1:%d", px.port);
    const char *peps[] = {purl};
    st_meta_t *via = store_new(peps, 1, cur_prefix, NULL, NULL, 3000, 0);

    int64_t first = put("wr/0", "0", 0);
    wl_t wl = {.tag = 100}, hist = {.tag = 101};
    WITH_STORE(via, watch("wr/", first + 1, &wl)); /* the writes come through another store */
    enum { N = 60 };
    for (int i = 1; i <= N; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "wr/%d", i % 7);
        snprintf(v, sizeof v, "%d", i);
        put(k, v, 0);
        if (i % 15 == 0) {
            pump_ms(30);
            proxy_ctl(&px, 'c'); /* drop the stream (and any idle connection) */
        }
    }
    wait_events(&wl, N);
    pump_ms(200);
    assert_int_equal(wl.nev, N);
    assert_int_equal(wl.err, ST_OK);
    assert_true(st_meta_etcd_last_error(via)[0] != 0); /* streams did break */
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i + 1);
        assert_string_equal(wl.ev[i].val, v);
        assert_int_equal(wl.ev[i].mod_rev, first + 1 + i);
    }
    /* History: from the first put on, through the proxy as well. */
    WITH_STORE(via, watch("wr/", first, &hist));
    wait_events(&hist, N + 1);
    assert_string_equal(hist.ev[0].val, "0");
    assert_string_equal(hist.ev[N].val, "60");
    st_meta_watch_cancel(via, wl.w);
    st_meta_watch_cancel(via, hist.w);
    st_meta_free(via);
    proxy_stop(&px);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd); /* nothing listens there now */
    return ntohs(sa.sin_port);
}

/* A refused connection was surely not sent: the op moves to the next
 * endpoint and succeeds; with no endpoint alive it fails as ST_ERR_IO. */
static void test_refused_endpoints(void **state)
{
    (void)state;
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", free_port());
    const char *eps[] = {dead, etcd_url};
    st_meta_t *m = store_new(eps, 2, cur_prefix, NULL, NULL, 3000, 0);
    assert_string_equal(st_meta_etcd_endpoint(m), dead);
    WITH_STORE(m, put("x", "1", 0)); /* a txn, retried because it never left */
    assert_string_equal(st_meta_etcd_endpoint(m), etcd_url); /* and it stays there */
    st_meta_free(m);

    const char *none[] = {dead};
    m = store_new(none, 1, cur_prefix, NULL, NULL, 3000, 0);
    res_t r;
    st_op_t op = op_put("y", "1", 0);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    WITH_STORE(m, txn_sync(&txn, &r));
    assert_int_equal(r.err, ST_ERR_IO); /* nothing was sent: nothing applied */
    assert_false(r.succeeded);
    assert_non_null(strstr(st_meta_etcd_last_error(m), dead));
    st_meta_free(m);
    assert_int_equal(get("y", NULL), 0);

    char err[128];
    const char *bad[] = {"127.0.0.1:2379"};
    st_etcd_cfg_t cfg = {.endpoints = bad, .nendpoints = 1};
    assert_null(st_meta_etcd_new(F->base, cur_curl, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "http://"));
}

/* Answers and watch messages are bounded by max_response_bytes. */
static void test_response_limit(void **state)
{
    (void)state;
    static char big[4000];
    memset(big, 'v', sizeof big - 1);
    put("big/1", big, 0);
    const char *eps[] = {etcd_url};
    st_meta_t *m = store_new(eps, 1, cur_prefix, NULL, NULL, 3000, 2048);
    int _rc;
    res_t r = {0};
    assert_int_equal(CALL(st_meta_range(m, "big/", true, 0, range_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_ERR_FULL);
    /* A txn whose answer is too large may have been applied: unknown. */
    st_op_t ops[] = {op_put("big/2", "x", 0), op_of(ST_OP_GET, "big/1")};
    st_txn_t txn = {.success = ops, .nsuccess = 2};
    WITH_STORE(m, txn_sync(&txn, &r));
    assert_int_equal(r.err, ST_ERR_TIMEOUT);
    assert_false(r.succeeded);
    assert_int_equal(get("big/2", NULL), 1); /* it was */
    wl_t wl = {.tag = 100};
    /* From the put's revision: "from now" on m could be later than a put
     * made through another store. */
    int64_t rev = put("big/3", big, 0);
    WITH_STORE(m, watch("big/", rev, &wl));
    wait_calls(&wl, 1);
    assert_int_equal(wl.err, ST_ERR_FULL);
    assert_int_equal(wl.nev, 0);
    st_meta_watch_cancel(m, wl.w);
    st_meta_free(m);
}

static void test_compact(void **state)
{
    (void)state;
    put("c/1", "1", 0);
    int64_t rev = put("c/1", "2", 0);
    assert_int_equal(compact(rev + 1000), ST_ERR_INVALID); /* the future */
    assert_int_equal(compact(rev), ST_OK);
    assert_int_equal(compact(rev), ST_OK); /* again: already done */
    kvc_t kv;
    assert_int_equal(get("c/1", &kv), 1);
    assert_string_equal(kv.val, "2");
}

typedef struct compactions {
    int n;
    st_err_t err;
    int64_t rev;
} compactions_t;

static void compacted_cb(st_err_t err, int64_t rev, void *arg)
{
    compactions_t *c = arg;
    c->n++;
    c->err = err;
    c->rev = rev;
}

/* The compactor keeps one interval of history: after it ran, a watch from
 * a revision older than its last target is refused (compacted), one from
 * the target replays the puts since; writes between its ticks move it on.
 * Freed with a probe in flight, it goes quietly. */
static void test_compactor(void **state)
{
    (void)state;
    int64_t first = put("k/1", "0", 0);
    compactions_t cs = {0};
    st_compactor_t *c = st_compactor_new(F->base, F->m, "k/1", 150, compacted_cb, &cs);
    assert_non_null(c);
    int64_t last = first, deadline = mc_now_ms() + 15000;
    int i = 0;
    while (cs.n < 3 && mc_now_ms() < deadline) {
        char v[16];
        snprintf(v, sizeof v, "%d", ++i);
        last = put("k/1", v, 0);
        pump_ms(20);
    }
    assert_true(cs.n >= 3);
    assert_int_equal(cs.err, ST_OK);
    int64_t upto = st_compactor_compacted(c);
    assert_int_equal(upto, cs.rev);
    assert_true(upto > first); /* it moved on with the writes */
    assert_true(upto <= last); /* never ahead of what it saw */
    st_compactor_free(c);

    wl_t old = {.tag = 1}, kept = {.tag = 2};
    watch("k/", first, &old);
    wait_calls(&old, 1);
    assert_int_equal(old.err, ST_ERR_NOT_FOUND);
    st_meta_watch_cancel(F->m, old.w);
    watch("k/", upto, &kept);
    wait_events(&kept, (size_t)(last - upto + 1)); /* one put per revision since */
    assert_int_equal(kept.err, ST_OK);
    st_meta_watch_cancel(F->m, kept.w);

    /* Freed while its probe is in flight: no callback after the free. */
    cs.n = 0;
    c = st_compactor_new(F->base, F->m, "k/1", 1, compacted_cb, &cs);
    pump_ms(3);
    int before = cs.n;
    st_compactor_free(c);
    pump_ms(200);
    assert_int_equal(cs.n, before);
}

/* user + password: a token, renewed when etcd stops taking it; a wrong
 * password fails clearly. */
static void test_auth(void **state)
{
    (void)state;
    assert_int_equal(etcdctl("user add root:secret --interactive=false"), 0);
    assert_int_equal(etcdctl("auth enable"), 0);
    const char *eps[] = {etcd_url};
    st_meta_t *ok = store_new(eps, 1, cur_prefix, "root", "secret", 3000, 0);
    st_meta_t *bad = store_new(eps, 1, cur_prefix, "root", "wrong", 3000, 0);
    st_meta_t *anon = store_new(eps, 1, cur_prefix, NULL, NULL, 3000, 0);
    wl_t wl = {.tag = 100};
    WITH_STORE(ok, {
        put("a/1", "1", 0);
        assert_int_equal(get("a/1", NULL), 1);
        watch("a/", 0, &wl);
        put("a/2", "2", 0);
        wait_events(&wl, 1);
    });
    res_t r;
    WITH_STORE(bad, txn_sync(&(st_txn_t){0}, &r));
    assert_int_equal(r.err, ST_ERR_INVALID);
    assert_non_null(strstr(st_meta_etcd_last_error(bad), "authentication failed"));
    int _rc;
    memset(&r, 0, sizeof r);
    assert_int_equal(CALL(st_meta_range(anon, "a/", true, 0, range_cb, &r)), 0);
    loop_until(&r.done);
    assert_int_equal(r.err, ST_ERR_INVALID);
    assert_non_null(strstr(st_meta_etcd_last_error(anon), "user name is empty"));

    /* Turning authentication off and on drops every token: the store
     * authenticates again by itself; the open watch goes on. */
    assert_int_equal(etcdctl("--user root:secret auth disable"), 0);
    assert_int_equal(etcdctl("auth enable"), 0);
    WITH_STORE(ok, {
        put("a/3", "3", 0);
        wait_events(&wl, 2);
        assert_string_equal(wl.ev[1].key, "a/3");
        int64_t id = lease_grant(60000);
        assert_int_equal(lease_revoke(id), ST_OK);
    });
    assert_non_null(strstr(st_meta_etcd_last_error(ok), "invalid auth token"));
    st_meta_watch_cancel(ok, wl.w);
    assert_int_equal(etcdctl("--user root:secret auth disable"), 0);
    st_meta_free(ok);
    st_meta_free(bad);
    st_meta_free(anon);
}

/* ------------------------------------------------------------- failover */

typedef struct cluster {
    char dir[64];
    char urls[3][64];
    int pids[3];
} cluster_t;

static void cluster_start(cluster_t *c)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/nh-etcd3-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "ETCD_OWNER_PID=%d bash %s cluster %s 3", (int)getpid(), etcd_sh,
             c->dir);
    assert_int_equal(run_line(cmd, line, sizeof line), 0);
    char *save = NULL, *tok = strtok_r(line, ",", &save);
    for (int i = 0; i < 3; i++, tok = strtok_r(NULL, ",", &save)) {
        assert_non_null(tok);
        snprintf(c->urls[i], sizeof c->urls[i], "%s", tok);
        char path[128], pid[32];
        snprintf(path, sizeof path, "cat %s/m%d/pid", c->dir, i);
        assert_int_equal(run_line(path, pid, sizeof pid), 0);
        c->pids[i] = atoi(pid);
    }
}

static void cluster_stop(cluster_t *c)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash %s stop %s", etcd_sh, c->dir);
    assert_int_equal(system(cmd), 0);
}

/* Kill a member a moment later, from another thread, so that the kill
 * lands while a transaction is in flight. */
typedef struct killer {
    pthread_t th;
    int pid;
    int delay_us;
} killer_t;

static void *killer_main(void *arg)
{
    killer_t *k = arg;
    usleep((useconds_t)k->delay_us);
    kill(k->pid, SIGKILL);
    return NULL;
}

/* Read the number at @key until etcd answers (resolving an unknown
 * outcome). */
static long read_counter_key(const char *key)
{
    for (int tries = 0; tries < 50; tries++) {
        int _rc;
        res_t r = {0};
        assert_int_equal(CALL(st_meta_range(F->m, key, false, 0, range_cb, &r)), 0);
        loop_until(&r.done);
        if (r.err == ST_OK) {
            assert_int_equal(r.n[0], 1);
            return atol(r.kv[0][0].val);
        }
        pump_ms(100);
    }
    fail_msg("the counter cannot be read");
    return -1;
}

static long read_counter(void)
{
    return read_counter_key("ctr");
}

/* The member of @c that leads its raft group (by its own status). */
static int cluster_leader(const cluster_t *c)
{
    char out[8192], want[64];
    for (int tries = 0; tries < 100; tries++) {
        for (int i = 0; i < 3; i++) {
            if (raw_post_to(c->urls[i], "/v3/maintenance/status", "{}", out) != 200)
                continue;
            const char *id = strstr(out, "\"member_id\":\"");
            if (!id)
                continue;
            id += strlen("\"member_id\":\"");
            snprintf(want, sizeof want, "\"leader\":\"%.*s\"", (int)strcspn(id, "\""), id);
            if (strstr(out, want))
                return i;
        }
        usleep(100000);
    }
    fail_msg("no member of the cluster leads it");
    return -1;
}

/* A txn waits on a follower whose leader is frozen (SIGSTOP): the
 * proposal the follower forwarded is never answered (etcd would time it
 * out after 7 s, this store's request timeout is 60 s).  Once the others
 * elect a new leader, the store ends the txn as one of unknown outcome
 * (ST_ERR_TIMEOUT) because the member's raft term moved on -- not because
 * a timeout ran out -- and the next txn commits. */
static void test_leader_frozen(void **state)
{
    (void)state;
    cluster_t c;
    cluster_start(&c);
    int leader = cluster_leader(&c), follower = (leader + 1) % 3;
    const char *eps[] = {c.urls[follower]};
    st_meta_t *cm = store_new(eps, 1, "/nh-frozen/", NULL, NULL, 60000, 0);
    st_meta_t *saved = F->m;
    F->m = cm;
    put("k", "0", 0); /* the store learns the raft term */
    assert_int_equal(kill(c.pids[leader], SIGSTOP), 0);
    int64_t t0 = mc_now_ms();
    st_op_t op = op_put("k", "1", 0);
    st_txn_t txn = {.success = &op, .nsuccess = 1};
    res_t r;
    txn_sync(&txn, &r);
    int64_t waited = mc_now_ms() - t0;
    fprintf(stderr, "leader frozen: the txn ended after %lld ms: %s\n", (long long)waited,
            st_meta_etcd_last_error(cm));
    assert_int_equal(r.err, ST_ERR_TIMEOUT);
    assert_non_null(strstr(st_meta_etcd_last_error(cm), "new raft term"));
    long v = read_counter_key("k");
    assert_true(v == 0 || v == 1); /* the outcome, read back */
    op = op_put("k", "2", 0);
    txn_sync(&txn, &r);
    assert_int_equal(r.err, ST_OK);
    assert_true(r.succeeded);
    assert_int_equal(read_counter_key("k"), 2);
    assert_int_equal(kill(c.pids[leader], SIGCONT), 0);
    F->m = saved;
    st_meta_free(cm);
    cluster_stop(&c);
}

/* A 3-member cluster; the member in use is killed (SIGKILL) while a chain
 * of compare-and-swaps runs.  Ops go on on the other members; none reports
 * success falsely (a false success would break the chain: the next compare
 * would fail), and the watch on the counter sees every value in order. */
static void test_cluster_failover(void **state)
{
    (void)state;
    cluster_t c;
    cluster_start(&c);
    const char *eps[] = {c.urls[0], c.urls[1], c.urls[2]};
    st_meta_t *cm = store_new(eps, 3, "/nh-failover/", NULL, NULL, 1500, 0);
    st_meta_t *saved = F->m;
    F->m = cm;
    put("ctr", "0", 0);
    wl_t wl = {.tag = 100};
    watch("ctr", 0, &wl);
    long v = 0;
    int ok_before = 0, ok_after = 0, timeouts = 0, errors = 0;
    int killed = -1;
    killer_t k = {0};
    int64_t t_kill = 0, deadline = mc_now_ms() + 30000;
    while (ok_after < 40 && mc_now_ms() < deadline) {
        char cur[24], next[24];
        snprintf(cur, sizeof cur, "%ld", v);
        snprintf(next, sizeof next, "%ld", v + 1);
        st_cmp_t cmp = {.key = "ctr",
                        .target = ST_CMP_VALUE,
                        .op = ST_CMP_EQ,
                        .val = (const uint8_t *)cur,
                        .val_len = strlen(cur)};
        st_op_t op = op_put("ctr", next, 0);
        st_txn_t txn = {.cmps = &cmp, .ncmps = 1, .success = &op, .nsuccess = 1};
        res_t r;
        txn_sync(&txn, &r);
        if (r.err == ST_OK) {
            if (!r.succeeded)
                fail_msg("compare failed at %ld: an earlier success was false", v);
            v++;
            if (killed < 0)
                ok_before++;
            else
                ok_after++;
        } else if (r.err == ST_ERR_TIMEOUT) {
            timeouts++;
            long now = read_counter(); /* unknown outcome: read it back */
            assert_true(now == v || now == v + 1);
            v = now;
        } else {
            errors++;
            assert_false(r.succeeded);
            assert_int_equal(read_counter(), v); /* nothing applied */
        }
        if (killed < 0 && ok_before == 20) {
            const char *in_use = st_meta_etcd_endpoint(cm);
            for (int i = 0; i < 3; i++)
                if (strcmp(in_use, c.urls[i]) == 0)
                    killed = i;
            assert_true(killed >= 0);
            k = (killer_t){.pid = c.pids[killed], .delay_us = 2000 + (int)(mc_now_ms() % 5000)};
            assert_int_equal(pthread_create(&k.th, NULL, killer_main, &k), 0);
            t_kill = mc_now_ms();
        }
    }
    if (killed >= 0)
        pthread_join(k.th, NULL);
    fprintf(stderr,
            "failover: %d ok before, %d after the kill of m%d; %d timeouts, %d errors;"
            " %lld ms; last error: %s\n",
            ok_before, ok_after, killed, timeouts, errors, (long long)(mc_now_ms() - t_kill),
            st_meta_etcd_last_error(cm));
    assert_int_equal(ok_after, 40);
    assert_string_not_equal(st_meta_etcd_endpoint(cm), c.urls[killed]);
    assert_int_equal(read_counter(), v);
    wait_events(&wl, (size_t)v);
    for (long i = 0; i < v; i++) {
        char want[24];
        snprintf(want, sizeof want, "%ld", i + 1);
        assert_string_equal(wl.ev[i].val, want); /* each value once, in order */
    }
    st_meta_watch_cancel(cm, wl.w);
    F->m = saved;
    st_meta_free(cm);
    cluster_stop(&c);
}

int main(void)
{
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    if (getenv("NH_TEST_FILTER")) /* e.g. NH_TEST_FILTER='test_watch*' */
        cmocka_set_test_filter(getenv("NH_TEST_FILTER"));
    struct CMUnitTest tests[64];
    size_t n = mc_add_tests(&etcd_backend, tests, 64);
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_json_quirks),
        MC_TEST(test_fenced_commit, &etcd_backend),
        MC_TEST(test_txn_conflict, &etcd_backend),
        MC_TEST(test_watch_reconnect, &etcd_backend),
        MC_TEST(test_refused_endpoints, &etcd_backend),
        MC_TEST(test_response_limit, &etcd_backend),
        MC_TEST(test_compact, &etcd_backend),
        MC_TEST(test_compactor, &etcd_backend),
        MC_TEST(test_auth, &etcd_backend),
        MC_TEST(test_cluster_failover, &etcd_backend),
        MC_TEST(test_leader_frozen, &etcd_backend),
    };
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        tests[n++] = own[i];
    return _cmocka_run_group_tests("test_meta_etcd", tests, n, etcd_start, etcd_stop);
}
