/*
 * st_s3_xml.h: the S3 XML the object store reads -- ListObjectsV2 results and
 * error bodies -- parsed with expat.  Pure: no I/O, bounded memory, any input
 * (fuzzed by storage/fuzz/fuzz_s3_xml.c).  Documents with a DOCTYPE are
 * refused (no entity expansion of any kind).
 *
 * Ownership: input bytes are borrowed; results are owned by the caller and
 * released with st_s3_list_free.
 * Threading: any thread; no shared state.
 */
#ifndef ST_S3_XML_H
#define ST_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_S3_XML_TEXT_MAX 4096    /* bytes of text in one element; longer is malformed */
#define ST_S3_XML_MAX_KEYS 100000u /* <Contents> entries in one page; more is malformed */

typedef struct st_s3_list_entry {
    char *key;        /* full object key, owned */
    uint64_t size;    /* bytes */
    int64_t mtime_ms; /* LastModified, ms since the epoch; 0 when absent or unreadable */
} st_s3_list_entry_t;

/* One ListObjectsV2 page. */
typedef struct st_s3_list {
    st_s3_list_entry_t *entries; /* owned, in document order */
    size_t n;                    /* entries */
    bool truncated;              /* IsTruncated: another page follows */
    char *next_token;            /* NextContinuationToken, owned; NULL when absent */
} st_s3_list_t;

/*
 * Parse a ListObjectsV2 response body (root element ListBucketResult).
 * Every <Contents> must have a non-empty <Key> and a <Size>.
 * @param out  returns owned: filled on 0 (st_s3_list_free it); zeroed on -1.
 * @returns 0, or -1 when the document is malformed, is no ListBucketResult,
 *          or memory ran out.
 */
int st_s3_xml_parse_list(const char *xml, size_t len, st_s3_list_t *out);

/* Free what st_s3_xml_parse_list filled in and zero @list (NULL is fine). */
void st_s3_list_free(st_s3_list_t *list);

/*
 * Parse an S3 error body (<Error><Code>..</Code><Message>..</Message></Error>).
 * Copies the code and the message, truncated and NUL-ended, into @code and
 * @msg (either may be NULL with size 0); empty strings when absent.
 * @returns 0 when the document is an Error with a non-empty Code, else -1.
 */
int st_s3_xml_parse_error(const char *xml, size_t len, char *code, size_t code_size, char *msg,
                          size_t msg_size);

/* "2009-10-12T17:50:30.000Z" (ISO 8601, UTC; fraction optional) as ms since
 * the epoch into @out.  @returns 0, or -1 when malformed. */
int st_s3_parse_time(const char *s, int64_t *out);

#endif
