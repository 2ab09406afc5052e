/*
 * st_s3_xml.c: ListObjectsV2 results and S3 error bodies, with expat.
 *
 * Only a few elements matter, at fixed depths:
 *   ListBucketResult/{IsTruncated,NextContinuationToken}
 *   ListBucketResult/Contents/{Key,Size,LastModified}
 *   Error/{Code,Message}
 * Everything else is skipped.  Names are matched without namespace
 * processing: S3 declares its namespace as the default one, so the names
 * carry no prefix.  A DOCTYPE (and with it any entity declaration) stops the
 * parse: S3 never sends one, and refusing it rules out entity expansion.
 */
#include "st_s3_xml.h"

#include <expat.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum doc_kind { DOC_LIST, DOC_ERROR } doc_kind_t;

typedef enum el {
    EL_OTHER,
    EL_LIST_RESULT,
    EL_ERROR,
    EL_CONTENTS,
    EL_IS_TRUNCATED,
    EL_NEXT_TOKEN,
    EL_KEY,
    EL_SIZE,
    EL_LAST_MODIFIED,
    EL_CODE,
    EL_MESSAGE,
} el_t;

typedef struct pstate {
    XML_Parser xp;
    doc_kind_t kind;
    int bad;      /* sticky: the document is refused */
    int depth;    /* elements open; the root is depth 1 */
    el_t el2;     /* the open depth-2 element */
    el_t collect; /* element whose text is being gathered, EL_OTHER = none */
    int collect_depth;
    char text[ST_S3_XML_TEXT_MAX + 1];
    size_t tlen;
    /* list */
    st_s3_list_t *list;
    size_t cap;             /* allocated entries of list->entries */
    st_s3_list_entry_t cur; /* the open <Contents> */
    bool cur_size;          /* cur has a <Size> */
    /* error */
    char *code;
    size_t code_size;
    char *msg;
    size_t msg_size;
    bool have_code;
} pstate_t;

static el_t el_of(const char *name)
{
    static const struct {
        const char *name;
        el_t el;
    } names[] = {
        {"ListBucketResult", EL_LIST_RESULT},
        {"Error", EL_ERROR},
        {"Contents", EL_CONTENTS},
        {"IsTruncated", EL_IS_TRUNCATED},
        {"NextContinuationToken", EL_NEXT_TOKEN},
        {"Key", EL_KEY},
        {"Size", EL_SIZE},
        {"LastModified", EL_LAST_MODIFIED},
        {"Code", EL_CODE},
        {"Message", EL_MESSAGE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0)
            return names[i].el;
    return EL_OTHER;
}

static void refuse(pstate_t *ps)
{
    if (!ps->bad) {
        ps->bad = 1;
        XML_StopParser(ps->xp, XML_FALSE);
    }
}

/* Copy @s into @dst (@size bytes, may be 0), truncated and NUL-ended. */
static void copy_trunc(char *dst, size_t size, const char *s)
{
    if (!dst || size == 0)
        return;
    size_t n = strlen(s);
    if (n >= size)
        n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Strict unsigned decimal. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Read exactly @n digits at *@s into @out and advance. */
static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

int st_s3_parse_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, ms = 0;
    if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
        digits(&s, 2, &d) || *s++ != 'T' || digits(&s, 2, &h) || *s++ != ':' ||
        digits(&s, 2, &mi) || *s++ != ':' || digits(&s, 2, &sec))
        return -1;
    if (*s == '.') {
        s++;
        int scale = 100, nd = 0;
        for (; *s >= '0' && *s <= '9'; s++, nd++) {
            ms += (*s - '0') * scale;
            scale /= 10;
        }
        if (nd == 0)
            return -1;
    }
    if (s[0] != 'Z' || s[1] != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = {
        .tm_year = y - 1900,
        .tm_mon = mo - 1,
        .tm_mday = d,
        .tm_hour = h,
        .tm_min = mi,
        .tm_sec = sec,
    };
    time_t t = timegm(&tm);
    *out = (int64_t)t * 1000 + ms;
    return 0;
}

static void entry_clear(st_s3_list_entry_t *e)
{
    free(e->key);
    memset(e, 0, sizeof(*e));
}

/* Take the open <Contents> into the list. */
static void contents_end(pstate_t *ps)
{
    st_s3_list_t *l = ps->list;
    if (!ps->cur.key || !ps->cur.key[0] || !ps->cur_size || l->n >= ST_S3_XML_MAX_KEYS) {
        refuse(ps);
        return;
    }
    if (l->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        st_s3_list_entry_t *e = realloc(l->entries, cap * sizeof(*e));
        if (!e) {
            refuse(ps);
            return;
        }
        l->entries = e;
        ps->cap = cap;
    }
    l->entries[l->n++] = ps->cur;
    memset(&ps->cur, 0, sizeof(ps->cur));
    ps->cur_size = false;
}

/* The gathered text of a finished element. */
static void text_end(pstate_t *ps, el_t el)
{
    const char *t = ps->text;
    switch (el) {
    case EL_IS_TRUNCATED:
        if (strcmp(t, "true") == 0)
            ps->list->truncated = true;
        else if (strcmp(t, "false") == 0)
            ps->list->truncated = false;
        else
            refuse(ps);
        break;
    case EL_NEXT_TOKEN:
        free(ps->list->next_token);
        ps->list->next_token = strdup(t);
        if (!ps->list->next_token)
            refuse(ps);
        break;
    case EL_KEY:
        free(ps->cur.key);
        ps->cur.key = strdup(t);
        if (!ps->cur.key)
            refuse(ps);
        break;
    case EL_SIZE:
        if (parse_u64(t, &ps->cur.size) != 0)
            refuse(ps);
        ps->cur_size = true;
        break;
    case EL_LAST_MODIFIED:
        if (st_s3_parse_time(t, &ps->cur.mtime_ms) != 0)
            ps->cur.mtime_ms = 0; /* informational only: not worth refusing a page */
        break;
    case EL_CODE:
        copy_trunc(ps->code, ps->code_size, t);
        ps->have_code = t[0] != '\0';
        break;
    case EL_MESSAGE:
        copy_trunc(ps->msg, ps->msg_size, t);
        break;
    default:
        break;
    }
}

/* Whether the text of @el at @depth (below depth-2 element @el2) matters. */
static bool wanted(const pstate_t *ps, int depth, el_t el)
{
    if (ps->kind == DOC_LIST) {
        if (depth == 2)
            return el == EL_IS_TRUNCATED || el == EL_NEXT_TOKEN;
        return depth == 3 && ps->el2 == EL_CONTENTS &&
               (el == EL_KEY || el == EL_SIZE || el == EL_LAST_MODIFIED);
    }
    return depth == 2 && (el == EL_CODE || el == EL_MESSAGE);
}

static void XMLCALL on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    pstate_t *ps = arg;
    if (ps->bad)
        return;
    int depth = ++ps->depth;
    el_t el = el_of(name);
    if (depth == 1) {
        if (el != (ps->kind == DOC_LIST ? EL_LIST_RESULT : EL_ERROR))
            refuse(ps);
        return;
    }
    if (depth == 2) {
        ps->el2 = el;
        if (ps->kind == DOC_LIST && el == EL_CONTENTS) {
            entry_clear(&ps->cur);
            ps->cur_size = false;
        }
    }
    if (ps->collect == EL_OTHER && wanted(ps, depth, el)) {
        ps->collect = el;
        ps->collect_depth = depth;
        ps->tlen = 0;
        ps->text[0] = '\0';
    }
}

static void XMLCALL on_end(void *arg, const XML_Char *name)
{
    (void)name;
    pstate_t *ps = arg;
    if (ps->bad)
        return;
    int depth = ps->depth--;
    if (ps->collect != EL_OTHER && depth == ps->collect_depth) {
        el_t el = ps->collect;
        ps->collect = EL_OTHER;
        text_end(ps, el);
    }
    if (depth == 2) {
        if (ps->kind == DOC_LIST && ps->el2 == EL_CONTENTS)
            contents_end(ps);
        ps->el2 = EL_OTHER;
    }
}

static void XMLCALL on_text(void *arg, const XML_Char *s, int len)
{
    pstate_t *ps = arg;
    if (ps->bad || ps->collect == EL_OTHER || len <= 0)
        return;
    if (ps->tlen + (size_t)len > ST_S3_XML_TEXT_MAX) {
        refuse(ps);
        return;
    }
    memcpy(ps->text + ps->tlen, s, (size_t)len);
    ps->tlen += (size_t)len;
    ps->text[ps->tlen] = '\0';
}

static void XMLCALL on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    refuse(arg);
}

static void XMLCALL on_entity(void *arg, const XML_Char *name, int is_param, const XML_Char *value,
                              int value_len, const XML_Char *base, const XML_Char *sysid,
                              const XML_Char *pubid, const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
    (void)pubid, (void)notation;
    refuse(arg);
}

/* Run expat over @xml with @ps's handlers.  @returns 0 when well-formed and
 * not refused. */
static int run(pstate_t *ps, const char *xml, size_t len)
{
    if (len > INT_MAX)
        return -1;
    ps->xp = XML_ParserCreate(NULL);
    if (!ps->xp)
        return -1;
    XML_SetUserData(ps->xp, ps);
    XML_SetElementHandler(ps->xp, on_start, on_end);
    XML_SetCharacterDataHandler(ps->xp, on_text);
    XML_SetStartDoctypeDeclHandler(ps->xp, on_doctype);
    XML_SetEntityDeclHandler(ps->xp, on_entity);
    enum XML_Status st = XML_Parse(ps->xp, xml, (int)len, XML_TRUE);
    XML_ParserFree(ps->xp);
    ps->xp = NULL;
    return st == XML_STATUS_OK && !ps->bad ? 0 : -1;
}

void st_s3_list_free(st_s3_list_t *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        free(list->entries[i].key);
    free(list->entries);
    free(list->next_token);
    memset(list, 0, sizeof(*list));
}

int st_s3_xml_parse_list(const char *xml, size_t len, st_s3_list_t *out)
{
    memset(out, 0, sizeof(*out));
    pstate_t *ps = calloc(1, sizeof(*ps)); /* the text buffer is too big for some stacks */
    if (!ps)
        return -1;
    ps->kind = DOC_LIST;
    ps->list = out;
    int rc = run(ps, xml, len);
    entry_clear(&ps->cur);
    free(ps);
    if (rc != 0)
        st_s3_list_free(out);
    return rc;
}

int st_s3_xml_parse_error(const char *xml, size_t len, char *code, size_t code_size, char *msg,
                          size_t msg_size)
{
    copy_trunc(code, code_size, "");
    copy_trunc(msg, msg_size, "");
    pstate_t *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return -1;
    ps->kind = DOC_ERROR;
    ps->code = code;
    ps->code_size = code_size;
    ps->msg = msg;
    ps->msg_size = msg_size;
    int rc = run(ps, xml, len);
    bool have = ps->have_code;
    free(ps);
    return rc == 0 && have ? 0 : -1;
}
