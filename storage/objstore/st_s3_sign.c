/*
 * st_s3_sign.c: AWS Signature Version 4 (header form, single-chunk payload)
 * on OpenSSL's digests.  See st_s3_sign.h.
 */
#include "st_s3_sign.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- strings */

/* A growing string with a sticky out-of-memory flag. */
typedef struct sb {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
} sb_t;

static void sb_addn(sb_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_add(sb_t *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

static void sb_addc(sb_t *b, char c)
{
    sb_addn(b, &c, 1);
}

/* The string built so far, returned owned ("" when nothing was added), or
 * NULL after an allocation failure. */
static char *sb_take(sb_t *b)
{
    if (!b->oom && !b->p)
        sb_addn(b, "", 0);
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static void sb_add_encoded(sb_t *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            sb_addc(b, (char)*p);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sb_addn(b, esc, 3);
        }
    }
}

char *st_s3_uri_encode(const char *s, bool keep_slash)
{
    sb_t b = {0};
    sb_add_encoded(&b, s, keep_slash);
    return sb_take(&b);
}

/* ---------------------------------------------------------------- digests */

void st_s3_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void st_s3_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        memset(md, 0, sizeof md); /* OpenSSL cannot fail here short of a broken build */
    st_s3_hex(md, sizeof md, out);
}

void st_s3_md5(const void *data, size_t len, uint8_t out[16])
{
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, out, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16)
        memset(out, 0, 16);
}

void st_s3_base64(const uint8_t *in, size_t n, char *out)
{
    /* EVP_EncodeBlock writes no newlines and NUL-terminates. */
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

void st_s3_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* HMAC-SHA256 of @msg under @key (@keylen bytes) into @out. */
static int hmac256(const uint8_t *key, size_t keylen, const char *msg, uint8_t out[32])
{
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out,
              &outlen) ||
        outlen != 32)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- query */

typedef struct enc_kv {
    char *name;  /* encoded, owned */
    char *value; /* encoded, owned */
} enc_kv_t;

static int enc_kv_cmp(const void *a, const void *b)
{
    const enc_kv_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

char *st_s3_query_string(const st_s3_kv_t *query, size_t n)
{
    sb_t b = {0};
    enc_kv_t *kv = n ? calloc(n, sizeof(*kv)) : NULL;
    if (n && !kv)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        kv[i].name = st_s3_uri_encode(query[i].name, false);
        kv[i].value = st_s3_uri_encode(query[i].value ? query[i].value : "", false);
        if (!kv[i].name || !kv[i].value)
            b.oom = true;
    }
    if (!b.oom && n > 1)
        qsort(kv, n, sizeof(*kv), enc_kv_cmp);
    for (size_t i = 0; i < n && !b.oom; i++) {
        if (i)
            sb_addc(&b, '&');
        sb_add(&b, kv[i].name);
        sb_addc(&b, '=');
        sb_add(&b, kv[i].value);
    }
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
    return sb_take(&b);
}

/* ---------------------------------------------------------------- headers */

typedef struct canon_hdr {
    char *name;        /* lower-cased, owned */
    const char *value; /* borrowed, untrimmed */
    size_t order;      /* position in the caller's list: keeps duplicates in order */
} canon_hdr_t;

static int canon_hdr_cmp(const void *a, const void *b)
{
    const canon_hdr_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* @v with leading and trailing blanks dropped and inner runs of blanks
 * collapsed to one space (SigV4's Trimall). */
static void sb_add_trimmed(sb_t *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool blank = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            blank = true;
            continue;
        }
        if (blank)
            sb_addc(b, ' ');
        blank = false;
        sb_addc(b, *v);
    }
}

/* Canonical headers ("name:value\n" each, sorted; duplicates joined with
 * ',') into @canon, and the signed-header list ("a;b") into @signed_list. */
static int canon_headers(const st_s3_sign_req_t *req, sb_t *canon, sb_t *signed_list)
{
    canon_hdr_t *h = calloc(req->nheaders ? req->nheaders : 1, sizeof(*h));
    if (!h)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        h[i].name = strdup(req->headers[i].name);
        if (!h[i].name) {
            rc = -1;
            goto out;
        }
        for (char *p = h[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        h[i].value = req->headers[i].value ? req->headers[i].value : "";
        h[i].order = i;
    }
    qsort(h, req->nheaders, sizeof(*h), canon_hdr_cmp);
    for (size_t i = 0; i < req->nheaders; i++) {
        bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (same) {
            sb_addc(canon, ',');
        } else {
            if (i > 0) {
                sb_addc(canon, '\n');
                sb_addc(signed_list, ';');
            }
            sb_add(canon, h[i].name);
            sb_addc(canon, ':');
            sb_add(signed_list, h[i].name);
        }
        sb_add_trimmed(canon, h[i].value);
    }
    if (req->nheaders)
        sb_addc(canon, '\n');
out:
    for (size_t i = 0; i < req->nheaders; i++)
        free(h[i].name);
    free(h);
    return rc;
}

/* ---------------------------------------------------------------- sign */

char *st_s3_sign(const st_s3_sign_req_t *req, char **canonical)
{
    if (!req->method || !req->path || !req->payload_sha256 || !req->amz_date || !req->region ||
        !req->service || !req->access_key || !req->secret_key || strlen(req->amz_date) != 16)
        return NULL;

    /* CanonicalRequest = Method \n URI \n Query \n Headers \n SignedHeaders \n HashedPayload */
    sb_t creq = {0}, hdrs = {0}, signed_list = {0};
    char *query = st_s3_query_string(req->query, req->query ? req->nquery : 0);
    if (!query || canon_headers(req, &hdrs, &signed_list) != 0)
        creq.oom = true;
    sb_add(&creq, req->method);
    sb_addc(&creq, '\n');
    sb_add(&creq, req->path);
    sb_addc(&creq, '\n');
    sb_add(&creq, query ? query : "");
    sb_addc(&creq, '\n');
    sb_add(&creq, hdrs.p ? hdrs.p : "");
    sb_addc(&creq, '\n');
    sb_add(&creq, signed_list.p ? signed_list.p : "");
    sb_addc(&creq, '\n');
    sb_add(&creq, req->payload_sha256);
    free(query);
    free(hdrs.p);
    char *creq_s = sb_take(&creq);
    if (!creq_s || hdrs.oom || signed_list.oom) {
        free(creq_s);
        free(signed_list.p);
        return NULL;
    }

    /* StringToSign = Algorithm \n RequestDateTime \n CredentialScope \n
     * Hex(SHA256(CanonicalRequest)) */
    char date8[9];
    memcpy(date8, req->amz_date, 8);
    date8[8] = '\0';
    char creq_hash[65];
    st_s3_sha256_hex(creq_s, strlen(creq_s), creq_hash);
    sb_t scope = {0}, sts = {0};
    sb_add(&scope, date8);
    sb_addc(&scope, '/');
    sb_add(&scope, req->region);
    sb_addc(&scope, '/');
    sb_add(&scope, req->service);
    sb_add(&scope, "/aws4_request");
    char *scope_s = sb_take(&scope);
    sb_add(&sts, "AWS4-HMAC-SHA256\n");
    sb_add(&sts, req->amz_date);
    sb_addc(&sts, '\n');
    sb_add(&sts, scope_s ? scope_s : "");
    sb_addc(&sts, '\n');
    sb_add(&sts, creq_hash);
    char *sts_s = sb_take(&sts);

    /* SigningKey = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
     */
    char *ksecret = malloc(strlen(req->secret_key) + 5);
    uint8_t k[32], sig[32];
    int bad = !scope_s || !sts_s || !ksecret;
    if (!bad) {
        memcpy(ksecret, "AWS4", 4);
        strcpy(ksecret + 4, req->secret_key);
        uint8_t k2[32]; /* HMAC's key and output never alias */
        bad = hmac256((const uint8_t *)ksecret, strlen(ksecret), date8, k) != 0 ||
              hmac256(k, sizeof k, req->region, k2) != 0 ||
              hmac256(k2, sizeof k2, req->service, k) != 0 ||
              hmac256(k, sizeof k, "aws4_request", k2) != 0 ||
              hmac256(k2, sizeof k2, sts_s, sig) != 0;
        OPENSSL_cleanse(k2, sizeof k2);
    }
    char sig_hex[65];
    sb_t auth = {0};
    if (!bad) {
        st_s3_hex(sig, sizeof sig, sig_hex);
        sb_add(&auth, "AWS4-HMAC-SHA256 Credential=");
        sb_add(&auth, req->access_key);
        sb_addc(&auth, '/');
        sb_add(&auth, scope_s);
        sb_add(&auth, ",SignedHeaders=");
        sb_add(&auth, signed_list.p ? signed_list.p : "");
        sb_add(&auth, ",Signature=");
        sb_add(&auth, sig_hex);
    }
    if (ksecret) {
        OPENSSL_cleanse(ksecret, strlen(ksecret));
        free(ksecret);
    }
    OPENSSL_cleanse(k, sizeof k);
    free(scope_s);
    free(sts_s);
    free(signed_list.p);
    char *out = bad ? NULL : sb_take(&auth);
    if (out && canonical)
        *canonical = creq_s;
    else
        free(creq_s);
    return out;
}
