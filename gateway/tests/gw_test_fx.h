/*
 * gw_test_fx.h: a fixture for gateway tests -- an event loop, a log over a
 * temporary directory, a server bound to loopback -- and a blocking-style
 * client over a socketpair that pumps the loop while it waits.
 */
#ifndef GW_TEST_FX_H
#define GW_TEST_FX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"
#include "gw_server.h"
#include "kp_codec.h"
#include "st_log.h"

typedef struct fx {
    char dir[256];
    struct event_base *base;
    st_objstore_t *os;
    st_meta_t *meta;
    st_log_t *log;
    gw_config_t cfg;
    gw_server_t *srv;
} fx_t;

/* write.buffer.bytes of the log fx_setup() opens next (0 = no limit). */
extern size_t fx_write_buffer_bytes;

int64_t fx_now_ms(void);
void fx_pump(fx_t *f);
void fx_closed_cb(void *arg);
void fx_run_until(fx_t *f, const int *flag, int want);
int fx_setup(void **state);
int fx_teardown(void **state);
int fx_client(fx_t *f);
void fx_send_all(fx_t *f, int fd, const void *p, size_t n);
int fx_recv_exact(fx_t *f, int fd, uint8_t *buf, size_t n, int timeout_ms);
int fx_recv_frame(fx_t *f, int fd, uint8_t *buf, size_t cap, int timeout_ms);
bool fx_is_closed(fx_t *f, int fd, int timeout_ms);
uint8_t *fx_build(int16_t key, int16_t ver, int32_t corr, const void *body, size_t *len);
void fx_send_api_versions(fx_t *f, int fd, int16_t ver, int32_t corr);
void *fx_call(fx_t *f, int fd, int16_t key, int16_t ver, const void *body, kp_arena_t *a);

#endif
