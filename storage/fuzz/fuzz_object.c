/*
 * fuzz_object.c: libFuzzer target for the readers of what Nuthatch keeps --
 * a flush object (header, footer, trailer, chunk checksums), a manifest
 * (versions 1 and 2, with producer entries), and the RecordBatches inside a
 * chunk, as nuthatch-dump and recovery read them.  Checks: no crash, no read past the input; a
 * parsed object's chunks lie inside it; a decoded manifest re-encodes to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kp_batch.h"
#include "st_format.h"

static void walk_chunk(const uint8_t *data, size_t len)
{
    kp_batch_cursor_t cur;
    kp_batch_cursor_init(&cur, data, len, len);
    const uint8_t *b;
    size_t size;
    while (kp_batch_cursor_next(&cur, &b, &size)) {
        kp_batch_hdr_t hdr;
        (void)kp_batch_hdr_parse(b, size, &hdr);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_obj_header_t h;
    st_chunk_desc_t *chunks = NULL;
    size_t n = 0;
    if (st_obj_parse(data, size, &h, &chunks, &n) == ST_OK) {
        for (size_t i = 0; i < n; i++) {
            if (chunks[i].pos > size || chunks[i].len > size - chunks[i].pos)
                abort();
            walk_chunk(data + chunks[i].pos, chunks[i].len);
        }
        free(chunks);
    }
    st_manifest_t m;
    if (st_manifest_decode(data, size, &m) == ST_OK) {
        kp_writer_t w;
        kp_writer_init(&w, size);
        st_manifest_encode(&w, &m);
        if (w.err != KP_ENCODE_OK || w.len != size || memcmp(w.buf, data, size) != 0)
            abort();
        kp_writer_deinit(&w);
        free((void *)m.chunks);
        free((void *)m.prods);
    }
    return 0;
}
