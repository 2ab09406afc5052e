/*
 * fuzz_s3_xml.c: libFuzzer target for the S3 XML the object store reads --
 * ListObjectsV2 pages and error bodies (st_s3_xml.c) -- and the timestamps
 * in them.  Each input goes through both readers.
 * Checks: no crash, no read past the input, bounded memory; a page that
 * parses has at most ST_S3_XML_MAX_KEYS entries, each with a non-empty key
 * of at most ST_S3_XML_TEXT_MAX bytes; error code and message are
 * NUL-terminated within their buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "st_s3_xml.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *xml = (const char *)data;
    st_s3_list_t l;
    if (st_s3_xml_parse_list(xml, size, &l) == 0) {
        check(l.n <= ST_S3_XML_MAX_KEYS);
        for (size_t i = 0; i < l.n; i++) {
            size_t k = strlen(l.entries[i].key);
            check(k > 0 && k <= ST_S3_XML_TEXT_MAX);
        }
        if (l.next_token)
            check(strlen(l.next_token) <= ST_S3_XML_TEXT_MAX);
        st_s3_list_free(&l);
    } else {
        check(l.n == 0 && l.entries == NULL && l.next_token == NULL);
    }

    char code[64], msg[128];
    int rc = st_s3_xml_parse_error(xml, size, code, sizeof code, msg, sizeof msg);
    check(memchr(code, 0, sizeof code) != NULL && memchr(msg, 0, sizeof msg) != NULL);
    check(rc != 0 || code[0] != '\0');

    /* The input as one timestamp, NUL-terminated. */
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
        int64_t t;
        (void)st_s3_parse_time(s, &t);
        free(s);
    }
    return 0;
}
