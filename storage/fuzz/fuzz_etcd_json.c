/*
 * fuzz_etcd_json.c: libFuzzer target for the etcd backend's decoding of
 * etcd's JSON gateway answers and watch-stream lines (st_etcd_json.c).
 *
 * Input: byte 0 selects the decoder (low 3 bits) and the key prefix (bit
 * 7: "/nh/", else none); byte 1 gives a txn's shape (bits 0-1: success
 * ops, bits 2-3: failure ops, bits 4-7: which of them are GETs); the rest
 * is the body.  Every decoded byte is read back so that the sanitizers see
 * any pointer outside what the decoder allocated.
 */
#include <stdint.h>
#include <string.h>

#include "st_etcd_json.h"

static volatile size_t sink;

static void touch(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    sink += s;
}

static void touch_kv(const st_kv_t *kv)
{
    touch(kv->key, strlen(kv->key) + 1);
    touch(kv->val, kv->val_len + 1); /* values are NUL-terminated as well */
    sink += (size_t)(kv->create_rev + kv->mod_rev + kv->version + kv->lease);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t sel = data[0], shape_bits = data[1];
    const char *buf = (const char *)data + 2;
    size_t len = size - 2;
    const char *prefix = sel & 0x80 ? "/nh/" : "";
    st_arena_t a = {0};
    st_etcd_res_t res;
    st_etcd_watch_msg_t msg;
    uint8_t types[6];
    st_etcd_txn_shape_t shape = {
        .types = types, .nsuccess = shape_bits & 3, .nfailure = (shape_bits >> 2) & 3};
    for (size_t i = 0; i < 6; i++)
        types[i] = (uint8_t)(shape_bits >> (4 + i % 4) & 1 ? ST_OP_GET_PREFIX : ST_OP_PUT);
    int code;
    char text[64];
    switch (sel & 7) {
    case 0:
        if (st_etcd__parse_range(buf, len, prefix, &a, &res) == ST_OK)
            for (size_t i = 0; i < res.nkvs; i++)
                touch_kv(&res.kvs[i]);
        break;
    case 1:
        if (st_etcd__parse_txn(buf, len, prefix, &shape, &a, &res) == ST_OK)
            for (size_t i = 0; i < res.nresults; i++)
                for (size_t j = 0; j < res.results[i].n; j++)
                    touch_kv(&res.results[i].kvs[j]);
        break;
    case 2:
    case 3:
        st_etcd__parse_lease(buf, len, (sel & 7) == 3, &res);
        break;
    case 4:
        st_etcd__parse_header(buf, len, &res);
        break;
    case 5:
        if (st_etcd__parse_auth(buf, len, &a, &res) == ST_OK && res.token)
            touch(res.token, strlen(res.token) + 1);
        break;
    case 6:
        if (st_etcd__parse_error(buf, len, &code, text, sizeof text))
            touch(text, strlen(text) + 1);
        break;
    case 7:
        if (st_etcd__parse_watch(buf, len, prefix, &a, &msg) == ST_OK) {
            for (size_t i = 0; i < msg.nevs; i++)
                touch_kv(&msg.evs[i].kv);
            if (msg.cancel_reason)
                touch(msg.cancel_reason, strlen(msg.cancel_reason) + 1);
            if (msg.err_msg)
                touch(msg.err_msg, strlen(msg.err_msg) + 1);
        }
        break;
    }
    st_arena__free(&a);
    /* And the bytes themselves as base64. */
    uint8_t out[3 * 64];
    if (len <= 256)
        st_etcd__b64_decode(buf, len & ~(size_t)3, out);
    return 0;
}
