/*
 * gw_test_fx.c: the gateway tests' fixture and client helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw_conn.h"
#include "gw_test_fx.h"
#include "kp_msgs.h"

int64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the loop once without blocking; sleep a little when idle. */
void fx_pump(fx_t *f)
{
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    usleep(500);
}

static void fx_flag_cb(st_err_t err, void *arg)
{
    assert_int_equal(err, ST_OK);
    (*(int *)arg)++;
}

void fx_closed_cb(void *arg)
{
    (*(int *)arg)++;
}

void fx_run_until(fx_t *f, const int *flag, int want)
{
    int64_t end = fx_now_ms() + 10000;
    while (*flag < want && fx_now_ms() < end)
        fx_pump(f);
    assert_true(*flag >= want);
}

size_t fx_write_buffer_bytes;

int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    char errstr[256], path[512];
    snprintf(f->dir, sizeof f->dir, "/tmp/nh-test-conn-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    assert_int_equal(gw_config_defaults(&f->cfg, errstr, sizeof errstr), 0);
    snprintf(f->cfg.listeners.host, sizeof f->cfg.listeners.host, "127.0.0.1");
    f->cfg.listeners.port = 0;
    f->cfg.advertised_listeners = f->cfg.listeners; /* port 0: the bound port */
    snprintf(path, sizeof path, "%s/objects", f->dir);
    f->os = st_objstore_dir_new(f->base, path, 1, errstr, sizeof errstr);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    f->meta = st_meta_sqlite_new(f->base, path, errstr, sizeof errstr);
    assert_non_null(f->os);
    assert_non_null(f->meta);
    st_log_cfg_t lcfg = {.node_id = 1,
                         .flush_max_bytes = 1 << 20,
                         .flush_max_inflight = 2,
                         .tail_cache_bytes = 1 << 20,
                         .read_cache_bytes = 1 << 20,
                         .default_partitions = 1,
                         .write_buffer_bytes = fx_write_buffer_bytes};
    f->log = st_log_new(f->base, f->os, f->meta, &lcfg);
    int opened = 0;
    assert_int_equal(st_log_open(f->log, fx_flag_cb, &opened), 0);
    fx_run_until(f, &opened, 1);
    f->srv = gw_server_new(f->base, &f->cfg, f->log, errstr, sizeof errstr);
    assert_non_null(f->srv);
    *state = f;
    return 0;
}

int fx_teardown(void **state)
{
    fx_t *f = *state;
    int stopped = 0;
    if (!f->srv->stopping)
        gw_server_stop(f->srv, fx_closed_cb, &stopped);
    else
        stopped = 1;
    fx_run_until(f, &stopped, 1);
    gw_server_free(f->srv);
    int closed = 0;
    st_log_close(f->log, fx_closed_cb, &closed);
    fx_run_until(f, &closed, 1);
    st_log_free(f->log);
    st_meta_free(f->meta);
    st_objstore_free(f->os);
    event_base_free(f->base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A connection over a socketpair; returns the client's end (nonblocking). */
int fx_client(fx_t *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_non_null(gw_conn_new(f->srv, sv[0], "test"));
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    return sv[1];
}

void fx_send_all(fx_t *f, int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            assert_true(errno == EAGAIN);
            fx_pump(f);
            continue;
        }
        b += w;
        n -= (size_t)w;
    }
}

/* Read exactly @n bytes, pumping the loop; 0, -1 on EOF, -2 on timeout. */
int fx_recv_exact(fx_t *f, int fd, uint8_t *buf, size_t n, int timeout_ms)
{
    int64_t end = fx_now_ms() + timeout_ms;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r == 0)
            return -1;
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (fx_now_ms() > end)
            return -2;
        fx_pump(f);
    }
    return 0;
}

/* One response frame into @buf (without its length); its length, -1 on
 * EOF, -2 on timeout. */
int fx_recv_frame(fx_t *f, int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    uint8_t lenbuf[4];
    int rc = fx_recv_exact(f, fd, lenbuf, 4, timeout_ms);
    if (rc != 0)
        return rc;
    uint32_t len = kp_be32(lenbuf);
    assert_true(len <= cap);
    rc = fx_recv_exact(f, fd, buf, len, timeout_ms);
    return rc != 0 ? rc : (int)len;
}

bool fx_is_closed(fx_t *f, int fd, int timeout_ms)
{
    uint8_t b;
    return fx_recv_exact(f, fd, &b, 1, timeout_ms) == -1;
}

/* Encode a request: length, header, body. */
uint8_t *fx_build(int16_t key, int16_t ver, int32_t corr, const void *body, size_t *len)
{
    kp_writer_t w;
    kp_writer_init(&w, 128);
    size_t pos = kp_writer_reserve_i32(&w);
    kp_request_header_t h;
    kp_request_header_init(&h);
    h.request_api_key = key;
    h.request_api_version = ver;
    h.correlation_id = corr;
    h.client_id = kp_str("test");
    kp_request_header_encode(&w, kp_request_header_version(key, ver), &h);
    kp_api_desc(key)->request.encode(&w, ver, body);
    assert_int_equal(w.err, KP_ENCODE_OK);
    kp_writer_patch_i32(&w, pos, (int32_t)(w.len - 4));
    return kp_writer_take(&w, len);
}

void fx_send_api_versions(fx_t *f, int fd, int16_t ver, int32_t corr)
{
    kp_api_versions_request_t rq;
    kp_api_versions_request_init(&rq);
    rq.client_software_name = kp_str("test");
    rq.client_software_version = kp_str("1");
    size_t len;
    uint8_t *b = fx_build(KP_API_API_VERSIONS, ver, corr, &rq, &len);
    fx_send_all(f, fd, b, len);
    free(b);
}

/* Send one request and decode its answer (body in @a); asserts the
 * correlation id. */
void *fx_call(fx_t *f, int fd, int16_t key, int16_t ver, const void *body, kp_arena_t *a)
{
    static int32_t corr = 1000;
    size_t len;
    uint8_t *b = fx_build(key, ver, ++corr, body, &len);
    fx_send_all(f, fd, b, len);
    free(b);
    static uint8_t buf[1 << 16];
    int n = fx_recv_frame(f, fd, buf, sizeof buf, 5000);
    assert_true(n > 0);
    kp_reader_t r;
    kp_reader_init(&r, buf, (size_t)n);
    kp_response_header_t h;
    assert_int_equal(kp_response_header_decode(&r, a, kp_response_header_version(key, ver), &h),
                     KP_DECODE_OK);
    assert_int_equal(h.correlation_id, corr);
    const kp_api_desc_t *d = kp_api_desc(key);
    void *resp = kp_arena_alloc(a, d->response.size);
    assert_int_equal(d->response.decode(&r, a, ver, resp), KP_DECODE_OK);
    return resp;
}
