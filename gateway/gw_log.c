/*
 * gw_log.c: one-line log records on standard error.
 *
 * Why the level is the one piece of process-wide state in the gateway:
 * the sink it filters, file descriptor 2, is process-wide already, and a
 * logger object would have to be threaded through every call that might
 * log -- storage callbacks, worker threads, the codec glue -- to carry one
 * small integer that does not change.  main() sets it once from the
 * configuration before any thread starts; afterwards it is only read.  It
 * is an atomic with relaxed ordering all the same, so that setting it at
 * any other time is not a data race either (tests, a future reload), and
 * the read on the logging path costs a plain load.
 */
#include "gw_log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = GW_LOG_INFO; /* gw_log_level_t; see the comment above */

static const char *const level_names[GW_LOG__NUM] = {"ERROR", "WARN", "INFO", "DEBUG"};

void gw_log_set_level(gw_log_level_t level)
{
    if ((int)level < 0 || level >= GW_LOG__NUM)
        level = GW_LOG_DEBUG;
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

gw_log_level_t gw_log_get_level(void)
{
    return (gw_log_level_t)atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool gw_log_enabled(gw_log_level_t level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

const char *gw_log_level_name(gw_log_level_t level)
{
    if ((int)level < 0 || level >= GW_LOG__NUM)
        return "?";
    return level_names[level];
}

/* "2026-11-26T16:21:07.123Z" into @buf (at least 25 bytes); returns its length. */
static size_t format_time(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, size - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
    return m > 0 ? n + (size_t)m : n;
}

/* Append @src to @dst[*len..cap), escaping control characters so the record
 * stays one line.  Returns false (leaving room for "...") when it did not fit. */
static bool append_escaped(char *dst, size_t *len, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *s = (const unsigned char *)src; *s; s++) {
        char esc[4];
        size_t n = 0;
        if (*s == '\n') {
            esc[n++] = '\\';
            esc[n++] = 'n';
        } else if (*s == '\r') {
            esc[n++] = '\\';
            esc[n++] = 'r';
        } else if (*s == '\t') {
            esc[n++] = ' ';
        } else if (*s < 0x20 || *s == 0x7f) {
            esc[n++] = '\\';
            esc[n++] = 'x';
            esc[n++] = hex[*s >> 4];
            esc[n++] = hex[*s & 15];
        } else {
            esc[n++] = (char)*s;
        }
        if (*len + n > cap)
            return false;
        memcpy(dst + *len, esc, n);
        *len += n;
    }
    return true;
}

void gw_logv(gw_log_level_t level, const char *component, const char *fmt, va_list ap)
{
    if (!gw_log_enabled(level))
        return;
    int saved_errno = errno;

    char msg[GW_LOG_LINE_MAX];
    int mlen = vsnprintf(msg, sizeof msg, fmt, ap);
    bool msg_cut = mlen < 0 || (size_t)mlen >= sizeof msg;

    char line[GW_LOG_LINE_MAX];
    const size_t cap = sizeof line - 4; /* room for "...\n" */
    size_t len = format_time(line, sizeof line);
    int n = snprintf(line + len, sizeof line - len, " %s ", gw_log_level_name(level));
    len += n > 0 ? (size_t)n : 0;
    bool whole = append_escaped(line, &len, cap, component ? component : "-");
    if (whole && len + 2 <= cap) {
        memcpy(line + len, ": ", 2);
        len += 2;
        whole = append_escaped(line, &len, cap, msg) && !msg_cut;
    }
    if (!whole) {
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len++] = '\n';

    /* One write per record: concurrent records never interleave. */
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere left to report it */
        off += (size_t)w;
    }
    errno = saved_errno;
}

void gw_log(gw_log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_logv(level, component, fmt, ap);
    va_end(ap);
}
