/*
 * st_etcd_json.c: etcd v3 JSON gateway bodies, with jansson (see
 * st_etcd_json.h for the format's quirks and the key mapping).
 */
#include "st_etcd_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- bytes */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void st_etcd__b64_encode(const uint8_t *p, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[(v >> 12) & 63];
        *out++ = b64_alphabet[(v >> 6) & 63];
        *out++ = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[(v >> 12) & 63];
        *out++ = b64_alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = 0;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long st_etcd__b64_decode(const char *s, size_t n, uint8_t *out)
{
    if (n % 4 != 0 || n / 4 > (size_t)(LONG_MAX / 3))
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)s[i + j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad) /* data after padding */
                return -1;
            if ((v[j] = b64_value(c)) < 0)
                return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

size_t st_etcd__prefix_end(const uint8_t *p, size_t n, uint8_t *out)
{
    while (n > 0 && p[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

/* ------------------------------------------------------------- requests */

/* A JSON string of the base64 of @n bytes, or NULL. */
static json_t *b64_json(const void *p, size_t n)
{
    if (n > (SIZE_MAX - 8) / 4 * 3)
        return NULL;
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (!s)
        return NULL;
    st_etcd__b64_encode(p, n, s);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* 64-bit integers travel as strings. */
static json_t *i64_json(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return json_string(buf);
}

/* Set @name to @v in @obj, taking @v; -1 when @v is NULL or setting failed. */
static int set(json_t *obj, const char *name, json_t *v)
{
    return v && json_object_set_new(obj, name, v) == 0 ? 0 : -1;
}

/* The full etcd key: @prefix then @key.  @returns malloc'd, with its length. */
static uint8_t *full_key(const char *prefix, const char *key, size_t *len)
{
    size_t pl = strlen(prefix), kl = strlen(key);
    uint8_t *k = malloc(pl + kl + 1);
    if (!k)
        return NULL;
    memcpy(k, prefix, pl);
    memcpy(k + pl, key, kl);
    k[pl + kl] = 0;
    *len = pl + kl;
    return k;
}

/* Set "key" (and "range_end" when @is_prefix) in @obj for @prefix + @key. */
static int set_key(json_t *obj, const char *prefix, const char *key, bool is_prefix)
{
    size_t n;
    uint8_t *k = full_key(prefix, key, &n);
    if (!k)
        return -1;
    int rc = 0;
    if (n == 0) {
        /* etcd refuses an empty key.  A range over every key is written as
         * key "\0", range_end "\0" (etcd's "all keys >= key"); an exact
         * empty key is sent as is for etcd to refuse. */
        static const uint8_t zero = 0;
        rc = set(obj, "key", b64_json(&zero, is_prefix ? 1 : 0));
        if (rc == 0 && is_prefix)
            rc = set(obj, "range_end", b64_json(&zero, 1));
        free(k);
        return rc;
    }
    rc = set(obj, "key", b64_json(k, n));
    if (rc == 0 && is_prefix) {
        uint8_t *end = malloc(n);
        if (!end) {
            free(k);
            return -1;
        }
        size_t en = st_etcd__prefix_end(k, n, end);
        static const uint8_t zero = 0;
        rc = set(obj, "range_end", en ? b64_json(end, en) : b64_json(&zero, 1));
        free(end);
    }
    free(k);
    return rc;
}

/* Serialize and free @root (NULL in, NULL out). */
static char *dump(json_t *root, int ok)
{
    char *s = root && ok == 0 ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

char *st_etcd__req_range(const char *prefix, const char *key, bool is_prefix, size_t limit)
{
    json_t *root = json_object();
    int ok = root ? set_key(root, prefix, key, is_prefix) : -1;
    if (ok == 0 && limit)
        ok = set(root, "limit", i64_json((int64_t)limit));
    return dump(root, ok);
}

char *st_etcd__req_probe(const char *prefix)
{
    static const uint8_t zero = 0;
    json_t *root = json_object();
    int ok =
        root ? set(root, "key", prefix[0] ? b64_json(prefix, strlen(prefix)) : b64_json(&zero, 1))
             : -1;
    if (ok == 0)
        ok = set(root, "count_only", json_true());
    return dump(root, ok);
}

static json_t *cmp_json(const char *prefix, const st_cmp_t *c)
{
    static const char *const targets[] = {[ST_CMP_VALUE] = "VALUE",
                                          [ST_CMP_VERSION] = "VERSION",
                                          [ST_CMP_CREATE] = "CREATE",
                                          [ST_CMP_MOD] = "MOD"};
    static const char *const fields[] = {[ST_CMP_VALUE] = "value",
                                         [ST_CMP_VERSION] = "version",
                                         [ST_CMP_CREATE] = "create_revision",
                                         [ST_CMP_MOD] = "mod_revision"};
    static const char *const results[] = {[ST_CMP_EQ] = "EQUAL",
                                          [ST_CMP_NE] = "NOT_EQUAL",
                                          [ST_CMP_LT] = "LESS",
                                          [ST_CMP_GT] = "GREATER"};
    json_t *o = json_object();
    int ok = o ? set_key(o, prefix, c->key, false) : -1;
    if (ok == 0)
        ok = set(o, "target", json_string(targets[c->target]));
    if (ok == 0)
        ok = set(o, "result", json_string(results[c->op]));
    if (ok == 0)
        ok = set(o, fields[c->target],
                 c->target == ST_CMP_VALUE ? b64_json(c->val, c->val_len) : i64_json(c->num));
    if (ok != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *op_json(const char *prefix, const st_op_t *op)
{
    static const char *const names[] = {[ST_OP_PUT] = "request_put",
                                        [ST_OP_DEL] = "request_delete_range",
                                        [ST_OP_DEL_PREFIX] = "request_delete_range",
                                        [ST_OP_GET] = "request_range",
                                        [ST_OP_GET_PREFIX] = "request_range"};
    json_t *req = json_object(), *wrap = json_object();
    bool is_prefix = op->type == ST_OP_DEL_PREFIX || op->type == ST_OP_GET_PREFIX;
    int ok = req && wrap ? set_key(req, prefix, op->key, is_prefix) : -1;
    if (ok == 0 && op->type == ST_OP_PUT) {
        ok = set(req, "value", b64_json(op->val, op->val_len));
        if (ok == 0 && op->lease)
            ok = set(req, "lease", i64_json(op->lease));
    }
    if (ok == 0) {
        ok = json_object_set_new(wrap, names[op->type], req);
        req = NULL;
    }
    json_decref(req);
    if (ok != 0) {
        json_decref(wrap);
        return NULL;
    }
    return wrap;
}

static int ops_json(json_t *root, const char *name, const char *prefix, const st_op_t *ops,
                    size_t n)
{
    json_t *arr = json_array();
    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(arr, op_json(prefix, &ops[i])) != 0) {
            json_decref(arr);
            return -1;
        }
    return set(root, name, arr);
}

char *st_etcd__req_txn(const char *prefix, const st_txn_t *txn)
{
    json_t *root = json_object();
    json_t *cmps = json_array();
    int ok = root && cmps ? 0 : -1;
    for (size_t i = 0; ok == 0 && i < txn->ncmps; i++)
        ok = json_array_append_new(cmps, cmp_json(prefix, &txn->cmps[i]));
    if (ok == 0) {
        ok = set(root, "compare", cmps);
        cmps = NULL;
    }
    json_decref(cmps);
    if (ok == 0)
        ok = ops_json(root, "success", prefix, txn->success, txn->nsuccess);
    if (ok == 0)
        ok = ops_json(root, "failure", prefix, txn->failure, txn->nfailure);
    return dump(root, ok);
}

char *st_etcd__req_grant(int64_t ttl_s)
{
    json_t *root = json_object();
    return dump(root, root ? set(root, "TTL", i64_json(ttl_s)) : -1);
}

char *st_etcd__req_lease(int64_t id)
{
    json_t *root = json_object();
    return dump(root, root ? set(root, "ID", i64_json(id)) : -1);
}

char *st_etcd__req_compact(int64_t rev)
{
    json_t *root = json_object();
    int ok = root ? set(root, "revision", i64_json(rev)) : -1;
    if (ok == 0) /* not physical: return at once, etcd compacts in the background */
        ok = set(root, "physical", json_false());
    return dump(root, ok);
}

char *st_etcd__req_auth(const char *user, const char *password)
{
    json_t *root = json_object();
    int ok = root ? set(root, "name", json_string(user)) : -1;
    if (ok == 0)
        ok = set(root, "password", json_string(password));
    return dump(root, ok);
}

char *st_etcd__req_watch(const char *prefix, const char *key, int64_t start_rev)
{
    json_t *root = json_object(), *cr = json_object();
    int ok = root && cr ? set_key(cr, prefix, key, true) : -1;
    if (ok == 0 && start_rev > 0)
        ok = set(cr, "start_revision", i64_json(start_rev));
    if (ok == 0) {
        ok = json_object_set_new(root, "create_request", cr);
        cr = NULL;
    }
    json_decref(cr);
    return dump(root, ok);
}

/* ------------------------------------------------------------ decoding */

/* Parse @buf as one JSON object; NULL when it is not. */
static json_t *load(const char *buf, size_t len)
{
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (root && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* An int64 field: a decimal string or a JSON integer; absent or null: 0. */
static st_err_t get_i64(const json_t *obj, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v || json_is_null(v))
        return ST_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return ST_OK;
    }
    if (!json_is_string(v))
        return ST_ERR_CORRUPT;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 20 || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
        return ST_ERR_CORRUPT;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end != s + n)
        return ST_ERR_CORRUPT;
    *out = (int64_t)x;
    return ST_OK;
}

/* A bool field; absent or null: false. */
static st_err_t get_bool(const json_t *obj, const char *name, bool *out)
{
    const json_t *v = json_object_get(obj, name);
    *out = false;
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_boolean(v))
        return ST_ERR_CORRUPT;
    *out = json_is_true(v);
    return ST_OK;
}

/* An object field (absent or null: NULL, which is fine). */
static st_err_t get_obj(const json_t *obj, const char *name, json_t **out)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_object(v))
        return ST_ERR_CORRUPT;
    *out = v;
    return ST_OK;
}

/* An array field (absent or null: empty). */
static st_err_t get_arr(const json_t *obj, const char *name, json_t **out)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_array(v))
        return ST_ERR_CORRUPT;
    *out = v;
    return ST_OK;
}

/* A string field copied into @a (absent or null: NULL). */
static st_err_t get_str(const json_t *obj, const char *name, st_arena_t *a, const char **out)
{
    const json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_string(v))
        return ST_ERR_CORRUPT;
    *out = st_arena__dup(a, json_string_value(v), json_string_length(v));
    return *out ? ST_OK : ST_ERR_NOMEM;
}

/* A base64 field decoded into @a (NUL-terminated after @len bytes). */
static st_err_t get_b64(const json_t *obj, const char *name, st_arena_t *a, const uint8_t **out,
                        size_t *len)
{
    const json_t *v = json_object_get(obj, name);
    *out = NULL;
    *len = 0;
    if (v && !json_is_null(v) && !json_is_string(v))
        return ST_ERR_CORRUPT;
    size_t n = v && json_is_string(v) ? json_string_length(v) : 0;
    uint8_t *d = st_arena__alloc(a, n / 4 * 3 + 1);
    if (!d)
        return ST_ERR_NOMEM;
    long dl = n ? st_etcd__b64_decode(json_string_value(v), n, d) : 0;
    if (dl < 0)
        return ST_ERR_CORRUPT;
    d[dl] = 0;
    *out = d;
    *len = (size_t)dl;
    return ST_OK;
}

/* The response's header.@name (absent: 0). */
static st_err_t get_header_i64(const json_t *root, const char *name, int64_t *out)
{
    json_t *hdr;
    st_err_t err = get_obj(root, "header", &hdr);
    *out = 0;
    if (err == ST_OK && hdr)
        err = get_i64(hdr, name, out);
    return err;
}

/* The response's header.revision. */
static st_err_t get_rev(const json_t *root, int64_t *rev)
{
    return get_header_i64(root, "revision", rev);
}

/* The response's header.raft_term. */
static st_err_t get_term(const json_t *root, int64_t *term)
{
    return get_header_i64(root, "raft_term", term);
}

/* A mvccpb.KeyValue into @kv, its key stripped of @prefix. */
static st_err_t parse_kv(const json_t *o, const char *prefix, st_arena_t *a, st_kv_t *kv)
{
    if (!json_is_object(o))
        return ST_ERR_CORRUPT;
    const uint8_t *key;
    size_t klen, plen = strlen(prefix);
    st_err_t err = get_b64(o, "key", a, &key, &klen);
    if (err)
        return err;
    /* st_meta keys are C strings under the prefix; anything else is not ours. */
    if (klen < plen || memcmp(key, prefix, plen) != 0 || memchr(key, 0, klen))
        return ST_ERR_CORRUPT;
    if (klen == 0 && !json_object_get(o, "key"))
        return ST_ERR_CORRUPT;
    kv->key = (const char *)key + plen;
    if ((err = get_b64(o, "value", a, &kv->val, &kv->val_len)) != ST_OK ||
        (err = get_i64(o, "create_revision", &kv->create_rev)) != ST_OK ||
        (err = get_i64(o, "mod_revision", &kv->mod_rev)) != ST_OK ||
        (err = get_i64(o, "version", &kv->version)) != ST_OK ||
        (err = get_i64(o, "lease", &kv->lease)) != ST_OK)
        return err;
    return ST_OK;
}

/* The "kvs" and "more" of a RangeResponse object @o. */
static st_err_t parse_range_obj(const json_t *o, const char *prefix, st_arena_t *a, st_kv_t **kvs,
                                size_t *n, bool *more)
{
    json_t *arr;
    st_err_t err = get_arr(o, "kvs", &arr);
    *kvs = NULL;
    *n = 0;
    if (err == ST_OK && more)
        err = get_bool(o, "more", more);
    if (err || !arr || json_array_size(arr) == 0)
        return err;
    size_t cnt = json_array_size(arr);
    st_kv_t *v = st_arena__alloc(a, cnt * sizeof(*v));
    if (!v)
        return ST_ERR_NOMEM;
    memset(v, 0, cnt * sizeof(*v));
    for (size_t i = 0; i < cnt; i++)
        if ((err = parse_kv(json_array_get(arr, i), prefix, a, &v[i])) != ST_OK)
            return err;
    *kvs = v;
    *n = cnt;
    return ST_OK;
}

st_err_t st_etcd__parse_range(const char *buf, size_t len, const char *prefix, st_arena_t *a,
                              st_etcd_res_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load(buf, len);
    if (!root)
        return ST_ERR_CORRUPT;
    st_err_t err = get_rev(root, &out->rev);
    if (err == ST_OK)
        err = get_term(root, &out->term);
    if (err == ST_OK)
        err = parse_range_obj(root, prefix, a, &out->kvs, &out->nkvs, &out->more);
    json_decref(root);
    return err;
}

/* One element of a TxnResponse's "responses", checked against op @type. */
static st_err_t parse_op_response(const json_t *o, uint8_t type, const char *prefix, st_arena_t *a,
                                  st_op_result_t *res)
{
    static const char *const names[] = {[ST_OP_PUT] = "response_put",
                                        [ST_OP_DEL] = "response_delete_range",
                                        [ST_OP_DEL_PREFIX] = "response_delete_range",
                                        [ST_OP_GET] = "response_range",
                                        [ST_OP_GET_PREFIX] = "response_range"};
    if (!json_is_object(o) || type > ST_OP_GET_PREFIX)
        return ST_ERR_CORRUPT;
    json_t *body;
    st_err_t err = get_obj(o, names[type], &body);
    if (err || !body) /* the response of another kind of op: not this txn's */
        return err ? err : ST_ERR_CORRUPT;
    if (type != ST_OP_GET && type != ST_OP_GET_PREFIX)
        return ST_OK;
    st_kv_t *kvs;
    err = parse_range_obj(body, prefix, a, &kvs, &res->n, NULL);
    res->kvs = kvs;
    return err;
}

st_err_t st_etcd__parse_txn(const char *buf, size_t len, const char *prefix,
                            const st_etcd_txn_shape_t *shape, st_arena_t *a, st_etcd_res_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load(buf, len);
    if (!root)
        return ST_ERR_CORRUPT;
    json_t *arr;
    st_err_t err = get_rev(root, &out->rev);
    if (err == ST_OK)
        err = get_term(root, &out->term);
    if (err == ST_OK)
        err = get_bool(root, "succeeded", &out->succeeded); /* absent: the compares failed */
    if (err == ST_OK)
        err = get_arr(root, "responses", &arr);
    size_t n = out->succeeded ? shape->nsuccess : shape->nfailure;
    const uint8_t *types = shape->types + (out->succeeded ? 0 : shape->nsuccess);
    if (err == ST_OK && (arr ? json_array_size(arr) : 0) != n)
        err = ST_ERR_CORRUPT; /* one response per op of the branch that ran */
    st_op_result_t *res = NULL;
    if (err == ST_OK && n) {
        res = st_arena__alloc(a, n * sizeof(*res));
        if (!res)
            err = ST_ERR_NOMEM;
        else
            memset(res, 0, n * sizeof(*res));
    }
    for (size_t i = 0; err == ST_OK && i < n; i++)
        err = parse_op_response(json_array_get(arr, i), types[i], prefix, a, &res[i]);
    if (err == ST_OK) {
        out->results = res;
        out->nresults = n;
    }
    json_decref(root);
    return err;
}

st_err_t st_etcd__parse_lease(const char *buf, size_t len, bool stream, st_etcd_res_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load(buf, len);
    if (!root)
        return ST_ERR_CORRUPT;
    json_t *o = root;
    st_err_t err = stream ? get_obj(root, "result", &o) : ST_OK;
    if (err == ST_OK && !o)
        err = ST_ERR_CORRUPT;
    if (err == ST_OK)
        err = get_rev(o, &out->rev);
    if (err == ST_OK)
        err = get_i64(o, "ID", &out->lease_id);
    if (err == ST_OK)
        err = get_i64(o, "TTL", &out->ttl_s);
    json_decref(root);
    return err;
}

st_err_t st_etcd__parse_header(const char *buf, size_t len, st_etcd_res_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load(buf, len);
    if (!root)
        return ST_ERR_CORRUPT;
    st_err_t err = get_rev(root, &out->rev);
    if (err == ST_OK)
        err = get_term(root, &out->term);
    json_decref(root);
    return err;
}

st_err_t st_etcd__parse_auth(const char *buf, size_t len, st_arena_t *a, st_etcd_res_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load(buf, len);
    if (!root)
        return ST_ERR_CORRUPT;
    st_err_t err = get_rev(root, &out->rev);
    if (err == ST_OK)
        err = get_str(root, "token", a, &out->token);
    json_decref(root);
    return err;
}

bool st_etcd__parse_error(const char *buf, size_t len, int *code, char *msg, size_t msg_size)
{
    json_t *root = load(buf, len);
    *code = 0;
    if (msg_size)
        msg[0] = 0;
    if (!root)
        return false;
    if (json_object_get(root, "header")) { /* every success body has one */
        json_decref(root);
        return false;
    }
    json_t *e = json_object_get(root, "error");
    const json_t *c, *m;
    if (json_is_object(e)) { /* inside a stream: {"error": {"grpc_code", "message"}} */
        c = json_object_get(e, "grpc_code");
        if (!c)
            c = json_object_get(e, "code");
        m = json_object_get(e, "message");
    } else {
        c = json_object_get(root, "code");
        m = json_object_get(root, "message");
        if (!json_is_string(m))
            m = e;
    }
    bool is_err = json_is_integer(c) || json_is_string(m);
    if (json_is_integer(c) && json_integer_value(c) >= 0 && json_integer_value(c) < 64)
        *code = (int)json_integer_value(c);
    if (json_is_string(m) && msg_size)
        snprintf(msg, msg_size, "%s", json_string_value(m));
    json_decref(root);
    return is_err;
}

/* The "events" of a WatchResponse. */
static st_err_t parse_events(const json_t *res, const char *prefix, st_arena_t *a,
                             st_etcd_watch_msg_t *out)
{
    json_t *arr;
    st_err_t err = get_arr(res, "events", &arr);
    if (err || !arr || json_array_size(arr) == 0)
        return err;
    size_t n = json_array_size(arr);
    st_watch_event_t *evs = st_arena__alloc(a, n * sizeof(*evs));
    if (!evs)
        return ST_ERR_NOMEM;
    memset(evs, 0, n * sizeof(*evs));
    for (size_t i = 0; err == ST_OK && i < n; i++) {
        const json_t *ev = json_array_get(arr, i);
        json_t *kv;
        const json_t *type = json_is_object(ev) ? json_object_get(ev, "type") : NULL;
        if (!json_is_object(ev))
            return ST_ERR_CORRUPT;
        if (!type || json_is_null(type) ||
            (json_is_string(type) && !strcmp(json_string_value(type), "PUT")) ||
            (json_is_integer(type) && json_integer_value(type) == 0))
            evs[i].type = ST_WATCH_PUT; /* the default: omitted */
        else if ((json_is_string(type) && !strcmp(json_string_value(type), "DELETE")) ||
                 (json_is_integer(type) && json_integer_value(type) == 1))
            evs[i].type = ST_WATCH_DELETE;
        else
            return ST_ERR_CORRUPT;
        err = get_obj(ev, "kv", &kv);
        if (err == ST_OK && !kv)
            err = ST_ERR_CORRUPT;
        if (err == ST_OK)
            err = parse_kv(kv, prefix, a, &evs[i].kv);
        if (err == ST_OK && i > 0 && evs[i].kv.mod_rev < evs[i - 1].kv.mod_rev)
            err = ST_ERR_CORRUPT; /* etcd sends them in revision order */
    }
    if (err == ST_OK) {
        out->evs = evs;
        out->nevs = n;
    }
    return err;
}

st_err_t st_etcd__parse_watch(const char *buf, size_t len, const char *prefix, st_arena_t *a,
                              st_etcd_watch_msg_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load(buf, len);
    if (!root)
        return ST_ERR_CORRUPT;
    json_t *res, *e;
    st_err_t err = get_obj(root, "result", &res);
    if (err == ST_OK && (e = json_object_get(root, "error")) != NULL && !json_is_null(e)) {
        char msg[256];
        out->error = true;
        st_etcd__parse_error(buf, len, &out->err_code, msg, sizeof msg);
        out->err_msg = st_arena__dup(a, msg, strlen(msg));
        if (!out->err_msg)
            err = ST_ERR_NOMEM;
    } else if (err == ST_OK && !res) {
        err = ST_ERR_CORRUPT;
    } else if (err == ST_OK) {
        if ((err = get_rev(res, &out->rev)) == ST_OK &&
            (err = get_bool(res, "created", &out->created)) == ST_OK &&
            (err = get_bool(res, "canceled", &out->canceled)) == ST_OK &&
            (err = get_i64(res, "compact_revision", &out->compact_rev)) == ST_OK &&
            (err = get_str(res, "cancel_reason", a, &out->cancel_reason)) == ST_OK)
            err = parse_events(res, prefix, a, out);
    }
    json_decref(root);
    return err;
}
