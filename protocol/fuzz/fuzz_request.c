/*
 * fuzz_request.c: libFuzzer target for request decoding.
 *
 * Input: one request frame without its length prefix (header with api key
 * and version, then the body) -- the shape the gateway hands to the codec.
 * Checks: decoding never crashes, reads past the input or exceeds its arena
 * bound; a decoded request re-encodes, the re-encoding decodes again, and
 * encoding is a fixed point (encode(decode(encode(x))) == encode(x)).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_codec.h"
#include "kp_msgs.h"

static void encode_frame(kp_writer_t *w, const kp_request_header_t *hdr, const void *body)
{
    const kp_api_desc_t *d = kp_api_desc(hdr->request_api_key);
    int16_t hv = kp_request_header_version(hdr->request_api_key, hdr->request_api_version);
    if (kp_request_header_encode(w, hv, hdr) != KP_ENCODE_OK)
        return;
    d->request.encode(w, hdr->request_api_version, body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kp_arena_t a;
    kp_arena_init(&a, kp_arena_limit_for(size));
    kp_request_header_t hdr;
    void *body = NULL;
    kp_derr_t e = kp_decode_request(data, size, &a, &hdr, &body);
    if (a.used > a.limit)
        abort();
    if (e != KP_DECODE_OK) {
        kp_arena_deinit(&a);
        return 0;
    }

    kp_writer_t w1, w2;
    kp_writer_init(&w1, 0);
    kp_writer_init(&w2, 0);
    encode_frame(&w1, &hdr, body);
    if (w1.err != KP_ENCODE_OK) {
        fprintf(stderr, "re-encode failed: %d\n", (int)w1.err);
        abort();
    }

    kp_arena_t a2;
    kp_arena_init(&a2, kp_arena_limit_for(w1.len));
    kp_request_header_t hdr2;
    void *body2 = NULL;
    e = kp_decode_request(w1.buf, w1.len, &a2, &hdr2, &body2);
    if (e != KP_DECODE_OK) {
        fprintf(stderr, "decode of re-encoding failed: %s\n", kp_derr_str(e));
        abort();
    }
    const kp_api_desc_t *d = kp_api_desc(hdr.request_api_key);
    if (!d->request.eq(body, body2, hdr.request_api_version))
        abort();
    encode_frame(&w2, &hdr2, body2);
    if (w2.err != KP_ENCODE_OK || w2.len != w1.len || memcmp(w1.buf, w2.buf, w1.len) != 0) {
        fprintf(stderr, "encoding is not a fixed point\n");
        abort();
    }
    kp_writer_deinit(&w1);
    kp_writer_deinit(&w2);
    kp_arena_deinit(&a2);
    kp_arena_deinit(&a);
    return 0;
}
