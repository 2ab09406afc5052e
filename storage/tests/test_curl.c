/*
 * test_curl.c: libcurl's multi interface on the loop -- transfers finish
 * through the loop (never inside st_curl_start), run in parallel, reuse
 * connections, can be cancelled, and are dropped by st_curl_free.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "st_curl.h"

/* A minimal HTTP/1.1 server on a thread: answers every request on a
 * connection with "hello" after @delay_ms, keeping the connection open. */
typedef struct srv {
    int lfd;
    int port;
    int delay_ms;
    atomic_int accepted; /* connections */
    atomic_int requests;
    pthread_t thr;
} srv_t;

static void *conn_main(void *arg)
{
    srv_t *s = ((void **)arg)[0];
    int fd = (int)(intptr_t)((void **)arg)[1];
    free(arg);
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have - 1);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *end;
        while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            atomic_fetch_add(&s->requests, 1);
            usleep((useconds_t)s->delay_ms * 1000);
            static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
            if (write(fd, resp, sizeof resp - 1) < 0)
                break;
            size_t used = (size_t)(end + 4 - buf);
            memmove(buf, buf + used, have - used + 1);
            have -= used;
        }
    }
    close(fd);
    return NULL;
}

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        atomic_fetch_add(&s->accepted, 1);
        void **a = malloc(2 * sizeof(void *));
        a[0] = s;
        a[1] = (void *)(intptr_t)fd;
        pthread_t t;
        pthread_create(&t, NULL, conn_main, a);
        pthread_detach(t);
    }
}

static void srv_start(srv_t *s, int delay_ms)
{
    memset(s, 0, sizeof(*s));
    s->delay_ms = delay_ms;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 64), 0);
    socklen_t len = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->thr, NULL, srv_main, s);
}

static void srv_stop(srv_t *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    close(s->lfd);
    pthread_join(s->thr, NULL);
}

typedef struct xfer {
    CURL *easy;
    char body[64];
    size_t len;
    int done;
    CURLcode rc;
    int *in_start; /* set while st_curl_start runs */
} xfer_t;

static size_t write_fn(char *p, size_t sz, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t k = sz * n;
    if (x->len + k < sizeof x->body) {
        memcpy(x->body + x->len, p, k);
        x->len += k;
    }
    return k;
}

static void done_cb(CURLcode rc, CURL *easy, void *arg)
{
    xfer_t *x = arg;
    assert_ptr_equal(easy, x->easy);
    assert_int_equal(*x->in_start, 0);
    x->rc = rc;
    x->done++;
}

static void xfer_init(xfer_t *x, int port, int *in_start)
{
    memset(x, 0, sizeof(*x));
    x->easy = curl_easy_init();
    x->in_start = in_start;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, write_fn);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 10000L);
}

static void run_until(struct event_base *base, xfer_t *xs, int n)
{
    for (int i = 0; i < 2000; i++) {
        int done = 0;
        for (int k = 0; k < n; k++)
            done += xs[k].done;
        if (done == n)
            return;
        event_base_loop(base, EVLOOP_ONCE);
    }
    fail_msg("transfers did not finish");
}

static void test_parallel_and_reuse(void **state)
{
    (void)state;
    srv_t s;
    srv_start(&s, 300);
    struct event_base *base = event_base_new();
    st_curl_t *c = st_curl_new(base);
    int in_start = 0;
    enum { N = 8 };
    xfer_t xs[N];
    for (int i = 0; i < N; i++) {
        xfer_init(&xs[i], s.port, &in_start);
        in_start = 1;
        assert_int_equal(st_curl_start(c, xs[i].easy, done_cb, &xs[i]), 0);
        in_start = 0;
        assert_int_equal(xs[i].done, 0);
    }
    assert_int_equal(st_curl_running(c), N);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_until(base, xs, N);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    /* 8 requests of 300 ms each run in parallel: one after the other they
     * would take 2.4 s (a wide margin for a busy machine) */
    assert_true(ms < 1500);
    for (int i = 0; i < N; i++) {
        assert_int_equal(xs[i].rc, CURLE_OK);
        assert_int_equal(xs[i].len, 5);
        assert_memory_equal(xs[i].body, "hello", 5);
    }
    /* a second round reuses the cached connections */
    int before = atomic_load(&s.accepted);
    for (int i = 0; i < N; i++) {
        xs[i].done = 0;
        xs[i].len = 0;
        assert_int_equal(st_curl_start(c, xs[i].easy, done_cb, &xs[i]), 0);
    }
    run_until(base, xs, N);
    assert_int_equal(atomic_load(&s.accepted), before);
    assert_int_equal(st_curl_running(c), 0);
    for (int i = 0; i < N; i++)
        curl_easy_cleanup(xs[i].easy);
    st_curl_free(c);
    event_base_free(base);
    srv_stop(&s);
}

static void test_cancel_and_free(void **state)
{
    (void)state;
    srv_t s, slow;
    srv_start(&s, 300);
    srv_start(&slow, 3000);
    struct event_base *base = event_base_new();
    st_curl_t *c = st_curl_new(base);
    int in_start = 0;
    xfer_t a, b, d;
    xfer_init(&a, s.port, &in_start);
    xfer_init(&b, s.port, &in_start);
    xfer_init(&d, slow.port, &in_start);
    assert_int_equal(st_curl_start(c, a.easy, done_cb, &a), 0);
    assert_int_equal(st_curl_start(c, b.easy, done_cb, &b), 0);
    assert_int_equal(st_curl_start(c, d.easy, done_cb, &d), 0);
    event_base_loop(base, EVLOOP_NONBLOCK);
    st_curl_cancel(c, b.easy); /* never reported */
    run_until(base, &a, 1);
    assert_int_equal(b.done, 0);
    st_curl_free(c); /* d still running: dropped without a callback */
    assert_int_equal(d.done, 0);
    curl_easy_cleanup(a.easy);
    curl_easy_cleanup(b.easy);
    curl_easy_cleanup(d.easy);
    event_base_free(base);
    srv_stop(&s);
    srv_stop(&slow);
}

static void test_connection_refused(void **state)
{
    (void)state;
    srv_t s;
    srv_start(&s, 0);
    int port = s.port;
    srv_stop(&s); /* nothing listens there now */
    struct event_base *base = event_base_new();
    st_curl_t *c = st_curl_new(base);
    int in_start = 0;
    xfer_t x;
    xfer_init(&x, port, &in_start);
    in_start = 1;
    assert_int_equal(st_curl_start(c, x.easy, done_cb, &x), 0);
    in_start = 0;
    run_until(base, &x, 1);
    assert_int_equal(x.rc, CURLE_COULDNT_CONNECT);
    curl_easy_cleanup(x.easy);
    st_curl_free(c);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_and_reuse),
        cmocka_unit_test(test_cancel_and_free),
        cmocka_unit_test(test_connection_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
