/*
 * gw_log.h: one-line log records on standard error.
 *
 * Each record is one line:
 *
 *     2026-11-26T16:21:07.123Z INFO config: message text
 *
 * (ISO-8601 UTC with milliseconds, the level, the component, the message).
 * A record is built in a local buffer and written with a single write(2),
 * so records from different threads never interleave; a record longer than
 * GW_LOG_LINE_MAX is cut and ends in "...".  Control characters in the
 * message (a newline inside a client-supplied name, say) are escaped, so a
 * record is always exactly one line.
 *
 * Ownership: every argument is borrowed for the duration of the call.
 * Threading: gw_log() and the gw_log_*() macros may be called from any
 * thread.  gw_log_set_level() is meant to be called once by main() before
 * any thread starts; see gw_log.c for why the level is process-wide.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* Severity, most severe first; a level enables itself and all before it. */
typedef enum gw_log_level {
    GW_LOG_ERROR = 0, /* the process or a request cannot go on */
    GW_LOG_WARN,      /* something is wrong but handled */
    GW_LOG_INFO,      /* start-up, shutdown, rare state changes */
    GW_LOG_DEBUG,     /* per-connection and per-request detail */
    GW_LOG__NUM
} gw_log_level_t;

/* Longest record in bytes, newline included.  Equal to the smallest
 * PIPE_BUF POSIX allows on Linux, so a record written to a pipe is atomic. */
#define GW_LOG_LINE_MAX 4096

#if defined(__GNUC__) || defined(__clang__)
#define GW_PRINTF(fmt_idx, first_arg) __attribute__((format(printf, fmt_idx, first_arg)))
#else
#define GW_PRINTF(fmt_idx, first_arg)
#endif

/* Set the most verbose level that is written (default GW_LOG_INFO).
 * @thread any, but meant for main() before threads start */
void gw_log_set_level(gw_log_level_t level);

/* The current level. */
gw_log_level_t gw_log_get_level(void);

/* True when records of @level are written. */
bool gw_log_enabled(gw_log_level_t level);

/* Upper-case name as it appears in records ("ERROR", "WARN", "INFO",
 * "DEBUG"); "?" for an out-of-range value. */
const char *gw_log_level_name(gw_log_level_t level);

/* Write one record if @level is enabled.  @component is a short lower-case
 * word naming the module ("config", "conn", "flush").  errno is preserved.
 * @thread any */
void gw_log(gw_log_level_t level, const char *component, const char *fmt, ...) GW_PRINTF(3, 4);
void gw_logv(gw_log_level_t level, const char *component, const char *fmt, va_list ap)
    GW_PRINTF(3, 0);

/* The macros skip evaluating their arguments when the level is off. */
#define gw_log_at(level, component, ...)                                                           \
    do {                                                                                           \
        if (gw_log_enabled(level))                                                                 \
            gw_log((level), (component), __VA_ARGS__);                                             \
    } while (0)
#define gw_log_error(component, ...) gw_log_at(GW_LOG_ERROR, component, __VA_ARGS__)
#define gw_log_warn(component, ...) gw_log_at(GW_LOG_WARN, component, __VA_ARGS__)
#define gw_log_info(component, ...) gw_log_at(GW_LOG_INFO, component, __VA_ARGS__)
#define gw_log_debug(component, ...) gw_log_at(GW_LOG_DEBUG, component, __VA_ARGS__)

#endif
