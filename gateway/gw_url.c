/*
 * gw_url.c: the Kafka listener and the store URLs; see gw_url.h.
 */
#include "gw_url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_log.h" /* GW_PRINTF */

static int fail(char *err, size_t err_size, const char *fmt, ...) GW_PRINTF(3, 4);

static int fail(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return -1;
}

#define SHOW_MAX 80 /* bytes of a value shown in a message */

/* Room for SHOW_MAX bytes escaped as \xNN, "..." and the NUL. */
typedef struct shown {
    char s[SHOW_MAX * 4 + 4];
} shown_t;

/* @s[0..len) made printable on one line: control characters escaped, cut
 * after SHOW_MAX bytes.  Returns sh->s. */
static const char *show_n(shown_t *sh, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len && i < SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            sh->s[o++] = '\\';
            sh->s[o++] = 'x';
            sh->s[o++] = hex[c >> 4];
            sh->s[o++] = hex[c & 15];
        } else {
            sh->s[o++] = (char)c;
        }
    }
    if (len > SHOW_MAX) {
        memcpy(sh->s + o, "...", 3);
        o += 3;
    }
    sh->s[o] = '\0';
    return sh->s;
}

static const char *show(shown_t *sh, const char *s)
{
    return show_n(sh, s, strlen(s));
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
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

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\n' || c == '\r' || c == '\v';
}

/* A TCP port, "0".."65535". */
static int parse_port(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int port = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port <= 65535 ? port : -1;
}

/* Host names and IPv4 literals: letters, digits, '.', '-', '_'. */
static bool host_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* An IPv6 literal, optionally with a "%zone". */
static bool ipv6_ok(const char *s, size_t len)
{
    char buf[64];
    const char *pct = memchr(s, '%', len);
    size_t addr_len = pct ? (size_t)(pct - s) : len;
    if (addr_len >= sizeof buf)
        return false;
    if (pct && !host_chars_ok(pct + 1, len - addr_len - 1))
        return false;
    memcpy(buf, s, addr_len);
    buf[addr_len] = '\0';
    struct in6_addr a6;
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

bool gw_host_is_wildcard(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (host[0] == '\0')
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return a4.s_addr == htonl(INADDR_ANY);
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return memcmp(&a6, &in6addr_any, sizeof a6) == 0;
    return false;
}

/* "HOST:PORT" or "[IPV6]:PORT" at @s[0..len) into @out.  Returns 0, or -1
 * with the reason in @why (the caller adds key and value). */
static int parse_hostport(const char *s, size_t len, gw_listener_t *out, char *why, size_t why_size)
{
    const char *host, *colon;
    size_t host_len;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return fail(why, why_size, "no ']' after the IPv6 address");
        host = s + 1;
        host_len = (size_t)(close - host);
        if (!ipv6_ok(host, host_len))
            return fail(why, why_size, "'%.*s' is not an IPv6 address", (int)host_len, host);
        colon = close + 1;
        if (colon == s + len || *colon != ':')
            return fail(why, why_size, "no ':PORT' after the host");
    } else {
        colon = NULL;
        for (const char *p = s; p < s + len; p++)
            if (*p == ':')
                colon = p;
        if (!colon)
            return fail(why, why_size, "no ':PORT' after the host");
        host = s;
        host_len = (size_t)(colon - s);
        if (memchr(host, ':', host_len))
            return fail(why, why_size, "an IPv6 address goes in brackets, as in [::1]:9092");
        if (!host_chars_ok(host, host_len))
            return fail(why, why_size, "'%.*s' is not a host name or address", (int)host_len, host);
    }
    if (host_len >= sizeof out->host)
        return fail(why, why_size, "the host is longer than %zu bytes", sizeof out->host - 1);
    size_t port_len = (size_t)(s + len - (colon + 1));
    int port = parse_port(colon + 1, port_len);
    if (port < 0)
        return fail(why, why_size, "bad port '%.*s' (expected 0..65535)", (int)port_len, colon + 1);
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = port;
    return 0;
}

/* Non-blank items in a comma-separated list. */
static int count_items(const char *v)
{
    int count = 0;
    bool in_item = false;
    for (; *v; v++) {
        if (*v == ',') {
            in_item = false;
        } else if (!in_item && !is_space(*v)) {
            in_item = true;
            count++;
        }
    }
    return count;
}

int gw_listener_parse(const char *key, const char *v, bool advertised, gw_listener_t *out,
                      char *err, size_t err_size)
{
    shown_t sh;
    char why[256];
    if (strchr(v, ',')) {
        int count = count_items(v);
        if (count > 1)
            return fail(err, err_size, "%s: only one listener is supported, got %d in '%s'", key,
                        count, show(&sh, v));
        return fail(err, err_size, "%s: '%s': give a single listener without commas", key,
                    show(&sh, v));
    }
    const char *sep = strstr(v, "://");
    if (!sep)
        return fail(err, err_size, "%s: '%s' is not a listener (expected PLAINTEXT://HOST:PORT)",
                    key, show(&sh, v));
    size_t name_len = (size_t)(sep - v);
    if (name_len != 9 || strncasecmp(v, "PLAINTEXT", 9) != 0)
        return fail(err, err_size, "%s: listener '%s' is not supported (only PLAINTEXT://)", key,
                    show_n(&sh, v, name_len));
    gw_listener_t l;
    if (parse_hostport(sep + 3, strlen(sep + 3), &l, why, sizeof why) < 0)
        return fail(err, err_size, "%s: '%s': %s", key, show(&sh, v), why);
    if (advertised && gw_host_is_wildcard(l.host))
        return fail(err, err_size,
                    "%s: '%s': cannot advertise a wildcard address; name a host clients can "
                    "reach",
                    key, show(&sh, v));
    if (advertised && l.port == 0)
        return fail(err, err_size, "%s: '%s': cannot advertise port 0", key, show(&sh, v));
    *out = l;
    return 0;
}

void gw_listener_format(const gw_listener_t *l, char *buf, size_t size)
{
    bool v6 = strchr(l->host, ':') != NULL;
    snprintf(buf, size, "PLAINTEXT://%s%s%s:%d", v6 ? "[" : "", l->host, v6 ? "]" : "", l->port);
}

/* Percent-decode @s into @out (@size bytes).  -1 on a bad escape or %00,
 * -2 when it does not fit. */
static int percent_decode(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (; *s; s++) {
        char c = *s;
        if (c == '%') {
            int hi = hex_value(s[1]), lo = hi < 0 ? -1 : hex_value(s[2]);
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi << 4 | lo);
            s += 2;
        }
        if (o + 1 >= size)
            return -2;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/*
 * The local-path forms of a "file:" or "sqlite:" URL; @rest follows the
 * scheme and its colon.  "//" + "" or "localhost" + "/abs/path" is the
 * standard form (RFC 8089); "rel/path" or "/abs/path" without "//" is
 * accepted too, as SQLite does for "file:".  Decoded into @path.
 */
static int parse_local(const char *key, const char *url, const char *scheme, const char *rest,
                       char *path, size_t path_size, char *err, size_t err_size)
{
    shown_t sh;
    const char *p = rest;
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        const char *slash = strchr(p, '/');
        size_t host_len = slash ? (size_t)(slash - p) : strlen(p);
        if (host_len != 0 && !(host_len == 9 && strncasecmp(p, "localhost", 9) == 0))
            return fail(err, err_size,
                        "%s: '%s' names the host '%.*s'; only local paths work "
                        "(%s:///absolute/path or %s:relative/path)",
                        key, show(&sh, url), (int)host_len, p, scheme, scheme);
        p += host_len;
    }
    if (*p == '\0')
        return fail(err, err_size, "%s: '%s' has no path", key, show(&sh, url));
    if (strpbrk(p, "?#"))
        return fail(err, err_size,
                    "%s: '%s': a %s: URL takes no query or fragment (write '?' as %%3F, "
                    "'#' as %%23)",
                    key, show(&sh, url), scheme);
    int rc = percent_decode(p, path, path_size);
    if (rc == -1)
        return fail(err, err_size, "%s: '%s': bad percent-escape", key, show(&sh, url));
    if (rc == -2)
        return fail(err, err_size, "%s: the path is longer than %zu bytes", key, path_size - 1);
    return 0;
}

/* "HOST", "HOST:PORT", "[IPV6]" or "[IPV6]:PORT" at @s[0..len); @out->port
 * is -1 without a port.  Returns 0, or -1 with the reason in @why. */
static int parse_authority(const char *s, size_t len, gw_listener_t *out, char *why,
                           size_t why_size)
{
    bool has_port;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return fail(why, why_size, "no ']' after the IPv6 address");
        has_port = close + 1 < s + len;
        if (!has_port) {
            size_t host_len = (size_t)(close - s - 1);
            if (!ipv6_ok(s + 1, host_len))
                return fail(why, why_size, "'%.*s' is not an IPv6 address", (int)host_len, s + 1);
            if (host_len >= sizeof out->host)
                return fail(why, why_size, "the host is too long");
            memcpy(out->host, s + 1, host_len);
            out->host[host_len] = '\0';
            out->port = -1;
            return 0;
        }
    } else {
        has_port = memchr(s, ':', len) != NULL;
    }
    if (has_port) {
        if (parse_hostport(s, len, out, why, why_size) < 0)
            return -1;
    } else {
        if (len == 0 || !host_chars_ok(s, len))
            return fail(why, why_size, "'%.*s' is not a host name or address", (int)len, s);
        if (len >= sizeof out->host)
            return fail(why, why_size, "the host is longer than %zu bytes", sizeof out->host - 1);
        memcpy(out->host, s, len);
        out->host[len] = '\0';
        out->port = -1;
    }
    if (out->host[0] == '\0')
        return fail(why, why_size, "no host");
    if (out->port == 0)
        return fail(why, why_size, "port 0");
    return 0;
}

/* "SCHEME://HOST[:PORT]" (brackets around an IPv6 host) into @out; -1 when
 * it does not fit. */
static int format_endpoint(const char *scheme, const gw_listener_t *hp, char *out, size_t size)
{
    bool v6 = strchr(hp->host, ':') != NULL;
    char port[16] = "";
    if (hp->port >= 0)
        snprintf(port, sizeof port, ":%d", hp->port);
    int n =
        snprintf(out, size, "%s://%s%s%s%s", scheme, v6 ? "[" : "", hp->host, v6 ? "]" : "", port);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* An S3 endpoint, "http[s]://HOST[:PORT][/]", normalized into @out. */
static int parse_s3_endpoint(const char *v, char *out, size_t size, gw_listener_t *hp, char *why,
                             size_t why_size)
{
    const char *scheme;
    size_t skip;
    if (strncasecmp(v, "http://", 7) == 0) {
        scheme = "http";
        skip = 7;
    } else if (strncasecmp(v, "https://", 8) == 0) {
        scheme = "https";
        skip = 8;
    } else {
        return fail(why, why_size, "the endpoint must start with http:// or https://");
    }
    const char *auth = v + skip;
    size_t len = strcspn(auth, "/?#");
    if (auth[len] != '\0' && !(auth[len] == '/' && auth[len + 1] == '\0'))
        return fail(why, why_size, "the endpoint takes no path, query or fragment");
    char inner[256];
    if (parse_authority(auth, len, hp, inner, sizeof inner) < 0)
        return fail(why, why_size, "endpoint: %s", inner);
    if (format_endpoint(scheme, hp, out, size) < 0)
        return fail(why, why_size, "the endpoint is too long");
    return 0;
}

/* S3's bucket naming rules (plus '_', which GCS allows; reported in
 * @underscore). */
static int check_bucket(const char *b, size_t len, bool *underscore, char *why, size_t why_size)
{
    *underscore = false;
    if (len < 3 || len > 63)
        return fail(why, why_size, "a bucket name has 3 to 63 characters");
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || is_digit(c);
        if (!alnum && c != '.' && c != '-' && c != '_')
            return fail(why, why_size,
                        "a bucket name has only a-z, 0-9, '.', '-' (and '_' for GCS)");
        if (!alnum && (i == 0 || i == len - 1))
            return fail(why, why_size, "a bucket name starts and ends with a letter or digit");
        if (c == '.' && b[i + 1] == '.')
            return fail(why, why_size, "a bucket name has no '..'");
        *underscore |= c == '_';
    }
    char buf[64];
    memcpy(buf, b, len);
    buf[len] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return fail(why, why_size, "a bucket name is not an IP address");
    return 0;
}

/* A key prefix or namespace at @s[0..len) ("" or "/" + the path):
 * percent-decoded, one '/' at either end dropped (a leading one put back
 * with @lead_slash), '/'-separated components none empty, "." or "..", no
 * control characters.  Into @out ("" for none). */
static int parse_prefix(const char *s, size_t len, bool lead_slash, char *out, size_t size,
                        char *why, size_t why_size)
{
    char raw[GW_URL_MAX], dec[GW_URL_MAX];
    if (len >= sizeof raw)
        return fail(why, why_size, "the prefix is too long");
    memcpy(raw, s, len);
    raw[len] = '\0';
    int rc = percent_decode(raw, dec, sizeof dec);
    if (rc == -1)
        return fail(why, why_size, "bad percent-escape in the prefix");
    if (rc == -2)
        return fail(why, why_size, "the prefix is too long");
    const char *p = dec + (dec[0] == '/'); /* the '/' after the authority */
    size_t n = strlen(p);
    if (n > 0 && p[n - 1] == '/')
        n--;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return fail(why, why_size, "the prefix contains a control character");
    for (size_t i = 0; i < n;) {
        size_t c = strcspn(p + i, "/");
        if (c > n - i)
            c = n - i;
        if (c == 0 || (c == 1 && p[i] == '.') || (c == 2 && p[i] == '.' && p[i + 1] == '.'))
            return fail(why, why_size, "the prefix has an empty, '.' or '..' component");
        i += c + 1;
    }
    size_t lead = lead_slash && n > 0 ? 1 : 0;
    if (lead + n >= size)
        return fail(why, why_size, "the prefix is longer than %zu bytes", size - 1 - lead);
    out[0] = '/';
    memcpy(out + lead, p, n);
    out[lead + n] = '\0';
    return 0;
}

/* s3://BUCKET[/PREFIX]?endpoint=URL[&region=R][&addressing=path|virtual] */
static int parse_s3(const char *key, const char *url, const char *rest, gw_storage_url_t *out,
                    char *err, size_t err_size)
{
    shown_t sh, sh_key;
    char why[300];
    if (strchr(rest, '#'))
        return fail(err, err_size, "%s: '%s': an s3:// URL takes no fragment", key, show(&sh, url));
    size_t bucket_len = strcspn(rest, "/?");
    bool underscore;
    if (check_bucket(rest, bucket_len, &underscore, why, sizeof why) < 0)
        return fail(err, err_size, "%s: '%s': bad bucket name: %s", key, show(&sh, url), why);
    memcpy(out->bucket, rest, bucket_len);
    out->bucket[bucket_len] = '\0';
    const char *p = rest + bucket_len;
    size_t prefix_len = strcspn(p, "?");
    if (parse_prefix(p, prefix_len, false, out->prefix, sizeof out->prefix, why, sizeof why) < 0)
        return fail(err, err_size, "%s: '%s': %s", key, show(&sh, url), why);
    p += prefix_len;
    gw_listener_t hp = {.port = -1};
    bool seen[3] = {false, false, false};
    snprintf(out->region, sizeof out->region, "%s", GW_S3_DEFAULT_REGION);
    out->addressing = GW_S3_PATH;
    while (*p == '?' || *p == '&') {
        p++;
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        const char *val = eq ? eq + 1 : p + len;
        size_t vlen = (size_t)(p + len - val);
        static const char *const names[] = {"endpoint", "region", "addressing"};
        int which = -1;
        for (int i = 0; i < 3; i++)
            if (klen == strlen(names[i]) && memcmp(p, names[i], klen) == 0)
                which = i;
        if (which < 0)
            return fail(err, err_size,
                        "%s: '%s': unknown parameter '%s' (expected endpoint, region, "
                        "addressing)",
                        key, show(&sh, url), show_n(&sh_key, p, klen));
        if (seen[which])
            return fail(err, err_size, "%s: '%s': '%s' given twice", key, show(&sh, url),
                        names[which]);
        seen[which] = true;
        char raw[GW_URL_MAX], v[GW_URL_MAX];
        memcpy(raw, val, vlen);
        raw[vlen] = '\0';
        if (percent_decode(raw, v, sizeof v) != 0)
            return fail(err, err_size, "%s: '%s': bad percent-escape in '%s'", key, show(&sh, url),
                        names[which]);
        bool ok = true;
        if (which == 0) {
            if (parse_s3_endpoint(v, out->endpoint, sizeof out->endpoint, &hp, why, sizeof why) < 0)
                return fail(err, err_size, "%s: '%s': %s", key, show(&sh, url), why);
        } else if (which == 1) {
            ok = v[0] != '\0' && strlen(v) < sizeof out->region;
            for (const char *c = v; *c && ok; c++)
                ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || is_digit(*c) ||
                     *c == '-' || *c == '_';
            if (ok)
                memcpy(out->region, v, strlen(v) + 1);
        } else if (strcmp(v, "path") == 0) {
            out->addressing = GW_S3_PATH;
        } else if (strcmp(v, "virtual") == 0) {
            out->addressing = GW_S3_VIRTUAL;
        } else {
            ok = false;
        }
        if (!ok)
            return fail(err, err_size, "%s: '%s': bad value for '%s'", key, show(&sh, url),
                        names[which]);
        p += len;
    }
    if (!seen[0])
        return fail(err, err_size,
                    "%s: '%s': no endpoint (add ?endpoint=https://HOST[:PORT], e.g. "
                    "https://s3.us-east-1.amazonaws.com)",
                    key, show(&sh, url));
    if (out->addressing == GW_S3_VIRTUAL) {
        struct in_addr a4;
        if (strchr(hp.host, ':') || inet_pton(AF_INET, hp.host, &a4) == 1)
            return fail(err, err_size,
                        "%s: '%s': virtual addressing needs an endpoint with a host name, not "
                        "an IP address (or use addressing=path)",
                        key, show(&sh, url));
        if (underscore)
            return fail(err, err_size,
                        "%s: '%s': a bucket name with '_' cannot be a host name: use "
                        "addressing=path",
                        key, show(&sh, url));
    }
    return 0;
}

/* etcd://HOST:PORT[,HOST:PORT]...[/PREFIX] */
static int parse_etcd(const char *key, const char *url, const char *rest, gw_metadata_url_t *out,
                      char *err, size_t err_size)
{
    shown_t sh;
    char why[256];
    if (strpbrk(rest, "?#"))
        return fail(err, err_size,
                    "%s: '%s': an etcd:// URL takes no query or fragment (write '?' as %%3F, "
                    "'#' as %%23)",
                    key, show(&sh, url));
    size_t hosts_len = strcspn(rest, "/");
    const char *p = rest, *end = rest + hosts_len;
    if (hosts_len == 0)
        return fail(err, err_size, "%s: '%s' names no etcd endpoint", key, show(&sh, url));
    out->nendpoints = 0;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        gw_listener_t hp;
        if (parse_hostport(p, (size_t)(item_end - p), &hp, why, sizeof why) < 0)
            return fail(err, err_size, "%s: '%s': %s", key, show(&sh, url), why);
        if (hp.host[0] == '\0' || hp.port == 0)
            return fail(err, err_size, "%s: '%s': an etcd endpoint needs a host and a port", key,
                        show(&sh, url));
        if (out->nendpoints == GW_ETCD_ENDPOINTS_MAX)
            return fail(err, err_size, "%s: '%s': more than %d endpoints", key, show(&sh, url),
                        GW_ETCD_ENDPOINTS_MAX);
        char *ep = out->endpoints[out->nendpoints];
        if (format_endpoint("http", &hp, ep, GW_ENDPOINT_MAX) < 0)
            return fail(err, err_size, "%s: '%s': an endpoint is too long", key, show(&sh, url));
        for (int i = 0; i < out->nendpoints; i++)
            if (strcmp(out->endpoints[i], ep) == 0)
                return fail(err, err_size, "%s: '%s': endpoint %s given twice", key, show(&sh, url),
                            ep);
        out->nendpoints++;
        p = item_end + 1;
    }
    if (parse_prefix(end, strlen(end), true, out->prefix, sizeof out->prefix, why, sizeof why) < 0)
        return fail(err, err_size, "%s: '%s': %s", key, show(&sh, url), why);
    return 0;
}

int gw_storage_url_parse(const char *key, const char *v, gw_storage_url_t *out, char *err,
                         size_t err_size)
{
    shown_t sh;
    if (strlen(v) >= sizeof out->url)
        return fail(err, err_size, "%s: longer than %zu bytes", key, sizeof out->url - 1);
    if (strncasecmp(v, "file:", 5) == 0) {
        gw_storage_url_t *u = calloc(1, sizeof *u); /* @out is untouched on error */
        if (!u)
            return fail(err, err_size, "%s: out of memory", key);
        int rc = parse_local(key, v, "file", v + 5, u->path, sizeof u->path, err, err_size);
        if (rc == 0) {
            u->kind = GW_STORAGE_DIR;
            snprintf(u->url, sizeof u->url, "%s", v);
            *out = *u;
        }
        free(u);
        return rc;
    }
    if (strncasecmp(v, "s3://", 5) == 0) {
        gw_storage_url_t *u = calloc(1, sizeof *u); /* @out is untouched on error */
        if (!u)
            return fail(err, err_size, "%s: out of memory", key);
        int rc = parse_s3(key, v, v + 5, u, err, err_size);
        if (rc == 0) {
            u->kind = GW_STORAGE_S3;
            snprintf(u->url, sizeof u->url, "%s", v);
            *out = *u;
        }
        free(u);
        return rc;
    }
    if (strstr(v, "://"))
        return fail(err, err_size, "%s: unsupported URL scheme in '%s' (expected file: or s3://)",
                    key, show(&sh, v));
    return fail(err, err_size,
                "%s: '%s' is not a URL (expected file:///absolute/dir or file:relative/dir)", key,
                show(&sh, v));
}

int gw_metadata_url_parse(const char *key, const char *v, gw_metadata_url_t *out, char *err,
                          size_t err_size)
{
    shown_t sh;
    if (strlen(v) >= sizeof out->url)
        return fail(err, err_size, "%s: longer than %zu bytes", key, sizeof out->url - 1);
    if (strncasecmp(v, "sqlite:", 7) == 0) {
        gw_metadata_url_t *u = calloc(1, sizeof *u); /* @out is untouched on error */
        if (!u)
            return fail(err, err_size, "%s: out of memory", key);
        int rc = parse_local(key, v, "sqlite", v + 7, u->path, sizeof u->path, err, err_size);
        if (rc == 0) {
            u->kind = GW_METADATA_SQLITE;
            snprintf(u->url, sizeof u->url, "%s", v);
            *out = *u;
        }
        free(u);
        return rc;
    }
    if (strncasecmp(v, "etcd://", 7) == 0) {
        gw_metadata_url_t *u = calloc(1, sizeof *u); /* @out is untouched on error */
        if (!u)
            return fail(err, err_size, "%s: out of memory", key);
        int rc = parse_etcd(key, v, v + 7, u, err, err_size);
        if (rc == 0) {
            u->kind = GW_METADATA_ETCD;
            snprintf(u->url, sizeof u->url, "%s", v);
            *out = *u;
        }
        free(u);
        return rc;
    }
    if (strstr(v, "://"))
        return fail(err, err_size,
                    "%s: unsupported URL scheme in '%s' (expected sqlite: or etcd://)", key,
                    show(&sh, v));
    return fail(err, err_size,
                "%s: '%s' is not a URL (expected sqlite:///absolute/file or sqlite:relative/file)",
                key, show(&sh, v));
}

int gw_url_from_path(const char *scheme, const char *dir, const char *leaf, char *buf, size_t size)
{
    static const char keep[] = "-._~/!$&'()*+,;=:@";
    static const char hex[] = "0123456789ABCDEF";
    size_t dir_len = strlen(dir);
    while (dir_len > 0 && dir[dir_len - 1] == '/')
        dir_len--; /* "/data/" -> "/data", "/" -> "" */
    int n = snprintf(buf, size, "%s:%s", scheme, dir[0] == '/' ? "//" : "");
    if (n < 0 || (size_t)n >= size)
        return -1;
    size_t len = (size_t)n;
    for (size_t i = 0; i < dir_len; i++) {
        unsigned char c = (unsigned char)dir[i];
        if (len + 4 > size)
            return -1;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit((char)c) ||
            (c != '\0' && strchr(keep, c))) {
            buf[len++] = (char)c;
        } else {
            buf[len++] = '%';
            buf[len++] = hex[c >> 4];
            buf[len++] = hex[c & 15];
        }
    }
    n = snprintf(buf + len, size - len, "/%s", leaf);
    return n < 0 || (size_t)n >= size - len ? -1 : 0;
}
