/*
 * gw_props.h: a reader for Java properties text (the format of Kafka's
 * server.properties), following java.util.Properties.load():
 *
 *   - a natural line ends at "\n", "\r" or "\r\n";
 *   - blank lines and lines whose first non-blank character is '#' or '!'
 *     are ignored (a comment never continues onto the next line);
 *   - a line ending in an odd number of backslashes continues on the next
 *     line, whose leading blanks (space, tab, form feed) are dropped;
 *   - the key runs to the first unescaped '=', ':' or blank; blanks around
 *     the separator are skipped; the rest of the line is the value;
 *   - escapes: \t \n \r \f, \uXXXX (written out as UTF-8, surrogate pairs
 *     combined), and a backslash before any other character stands for that
 *     character ("\=", "\:", "\ ", "\#", "\\").
 *
 * Two differences from Java: trailing unescaped blanks of a value are
 * dropped (Kafka trims values before using them anyway), and bytes are
 * taken as they are (UTF-8 files work) rather than as ISO-8859-1.  A NUL
 * byte in the text is an error.
 *
 * Ownership: @text is borrowed; the key and value passed to the callback are
 * borrowed and valid only during the callback.
 * Threading: no shared state; callable from any thread.
 */
#ifndef GW_PROPS_H
#define GW_PROPS_H

#include <stddef.h>

/* One setting.  @line is the 1-based line on which the setting starts.
 * Returns 0 to go on, or -1 to stop, having written a one-line reason into
 * @errstr. */
typedef int (*gw_props_cb)(void *arg, int line, const char *key, const char *value, char *errstr,
                           size_t errstr_size);

/* Parse @len bytes of properties text, calling @cb for each setting in order
 * (a key that appears twice is reported twice; the caller decides, usually
 * the last wins as in Java).
 * @returns 0; or -1 with a one-line reason in @errstr: either "line N: ..."
 *          for malformed text (a bad \uXXXX escape, a NUL byte, out of
 *          memory) or what the callback wrote. */
int gw_props_parse(const char *text, size_t len, gw_props_cb cb, void *arg, char *errstr,
                   size_t errstr_size);

#endif
