/*
 * gw_props.c: a reader for Java properties text; see gw_props.h for the
 * rules (they are java.util.Properties.load()'s LineReader and
 * loadConvert()).
 */
#include "gw_props.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f';
}

static bool is_eol(char c)
{
    return c == '\n' || c == '\r';
}

/* Step over one line terminator ("\n", "\r" or "\r\n") at @p. */
static const char *skip_eol(const char *p, const char *end)
{
    if (*p == '\r' && p + 1 < end && p[1] == '\n')
        return p + 2;
    return p + 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The four hex digits after "\u" at @s (which has @n bytes), or -1. */
static long read_u4(const char *s, size_t n)
{
    if (n < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * Undo escapes in @s[0..n) into @out (at least @n + 1 bytes: no escape
 * grows).  With @trim, trailing unescaped blanks are dropped.  Returns the
 * output length, or -1 for a malformed \uXXXX escape or an escaped NUL.
 */
static long unescape(const char *s, size_t n, char *out, bool trim)
{
    size_t o = 0, keep = 0; /* keep: length up to the last non-blank or escaped byte */
    size_t i = 0;
    while (i < n) {
        char c = s[i++];
        if (c != '\\' || i == n) {
            out[o++] = c;
            if (!is_blank(c))
                keep = o;
            continue;
        }
        c = s[i++];
        switch (c) {
        case 't':
            out[o++] = '\t';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'u': {
            long cp = read_u4(s + i, n - i);
            if (cp < 0)
                return -1;
            i += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* high surrogate: a low one must follow */
                long lo = (n - i >= 2 && s[i] == '\\' && s[i + 1] == 'u')
                              ? read_u4(s + i + 2, n - i - 2)
                              : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1; /* a lone low surrogate */
            }
            if (cp == 0)
                return -1;
            o += put_utf8(out + o, (uint32_t)cp);
            break;
        }
        default:
            out[o++] = c;
            break;
        }
        keep = o;
    }
    if (!trim)
        keep = o;
    out[keep] = '\0';
    return (long)keep;
}

/* Split one logical line (escapes intact, continuations joined) into key and
 * value and hand them to the callback. */
static int emit(const char *raw, size_t n, int line, char *key, char *val, gw_props_cb cb,
                void *arg, char *errstr, size_t errstr_size)
{
    size_t i = 0;
    while (i < n) {
        if (raw[i] == '\\') {
            i += 2; /* the escaped character never ends the key */
            continue;
        }
        if (raw[i] == '=' || raw[i] == ':' || is_blank(raw[i]))
            break;
        i++;
    }
    size_t key_end = i < n ? i : n;
    while (i < n && is_blank(raw[i]))
        i++;
    if (i < n && (raw[i] == '=' || raw[i] == ':'))
        i++;
    while (i < n && is_blank(raw[i]))
        i++;
    if (unescape(raw, key_end, key, false) < 0 || unescape(raw + i, n - i, val, true) < 0) {
        snprintf(errstr, errstr_size, "line %d: malformed \\uXXXX escape (or an escaped NUL)",
                 line);
        return -1;
    }
    return cb(arg, line, key, val, errstr, errstr_size);
}

int gw_props_parse(const char *text, size_t len, gw_props_cb cb, void *arg, char *errstr,
                   size_t errstr_size)
{
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *q = text; q < nul; q++)
            line += *q == '\n' || (*q == '\r' && !(q + 1 < nul && q[1] == '\n'));
        snprintf(errstr, errstr_size, "line %d: NUL byte in the text", line);
        return -1;
    }
    /* A logical line, its key and its value are never longer than the text. */
    char *raw = malloc(len + 1), *key = malloc(len + 1), *val = malloc(len + 1);
    int rc = 0;
    if (!raw || !key || !val) {
        snprintf(errstr, errstr_size, "line 1: out of memory");
        rc = -1;
    }
    const char *p = text, *end = text + len;
    int line = 1;
    while (rc == 0 && p < end) {
        while (p < end && is_blank(*p))
            p++;
        if (p == end)
            break;
        if (is_eol(*p)) { /* blank line */
            p = skip_eol(p, end);
            line++;
            continue;
        }
        if (*p == '#' || *p == '!') { /* comment: never continued */
            while (p < end && !is_eol(*p))
                p++;
            continue;
        }
        int start = line;
        size_t n = 0;
        while (p < end && !is_eol(*p)) {
            if (*p != '\\') {
                raw[n++] = *p++;
            } else if (p + 1 == end) {
                p++; /* a backslash at the very end is dropped, as in Java */
            } else if (is_eol(p[1])) {
                p = skip_eol(p + 1, end); /* continuation */
                line++;
                while (p < end && is_blank(*p))
                    p++;
            } else {
                raw[n++] = *p++; /* keep the escape pair for emit() */
                raw[n++] = *p++;
            }
        }
        rc = emit(raw, n, start, key, val, cb, arg, errstr, errstr_size);
    }
    free(raw);
    free(key);
    free(val);
    return rc;
}
