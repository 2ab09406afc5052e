/*
 * gw_api_offset_fetch.c: OffsetFetch (key 9), v1-8.  v1-7 ask for one
 * group, v8 for several (KIP-709).  Topics null (v2+) means every committed
 * offset of the group.  A partition without a committed offset answers
 * offset -1 with no error, as Kafka does.
 */
#include "gw_api.h"

#include <string.h>

#include "gw_log.h"

/* One group's stored offsets, copied out of the log's callback. */
typedef struct group_offsets {
    st_offset_commit_t *offs;
    size_t n;
    kp_err_t err;
} group_offsets_t;

/* What one st_log_fetch_offsets() call fills. */
typedef struct of_ctx {
    gw_req_t *req;
    group_offsets_t *go;
} of_ctx_t;

static const st_offset_commit_t *find(const group_offsets_t *go, kp_str_t topic, int32_t part)
{
    for (size_t i = 0; i < go->n; i++)
        if (go->offs[i].partition == part && kp_str_eq(topic, go->offs[i].topic))
            return &go->offs[i];
    return NULL;
}

/* Set a partition answer from the stored offset @o (NULL: none). */
#define FILL_PART(pr, o, e)                                                                        \
    do {                                                                                           \
        (pr)->committed_offset = (o) ? (o)->offset : -1;                                           \
        (pr)->committed_leader_epoch = (o) ? (o)->leader_epoch : -1;                               \
        (pr)->metadata = kp_str((o) && (o)->metadata ? (o)->metadata : "");                        \
        (pr)->error_code = (int16_t)(e);                                                           \
    } while (0)

/* Distinct topics of @go in order of first appearance; returns the count. */
static size_t distinct_topics(gw_req_t *req, const group_offsets_t *go, const char ***out)
{
    const char **names = gw_req_alloc(req, go->n * sizeof *names);
    size_t k = 0;
    for (size_t i = 0; i < go->n; i++) {
        size_t j = 0;
        while (j < k && strcmp(names[j], go->offs[i].topic) != 0)
            j++;
        if (j == k)
            names[k++] = go->offs[i].topic;
    }
    *out = names;
    return k;
}

/* Fill a topic array for the v1-7 (T = _topic/_partition) or v8 (_topics/
 * _partitions) response from the request's topics (or all when null). */
#define FILL_TOPICS(req, go, rtopics, rcount, TT, PT, out, outcount)                               \
    do {                                                                                           \
        if ((rcount) >= 0) {                                                                       \
            (out) = gw_req_alloc(req, (size_t)(rcount) * sizeof *(out));                           \
            (outcount) = (rcount);                                                                 \
            for (int32_t t_ = 0; t_ < (rcount); t_++) {                                            \
                TT *tr_ = &(out)[t_];                                                              \
                tr_->name = (rtopics)[t_].name;                                                    \
                int32_t np_ = (rtopics)[t_].partition_indexes_count;                               \
                np_ = np_ > 0 ? np_ : 0;                                                           \
                tr_->partitions = gw_req_alloc(req, (size_t)np_ * sizeof *tr_->partitions);        \
                tr_->partitions_count = np_;                                                       \
                for (int32_t p_ = 0; p_ < np_; p_++) {                                             \
                    PT *pr_ = &tr_->partitions[p_];                                                \
                    pr_->partition_index = (rtopics)[t_].partition_indexes[p_];                    \
                    const st_offset_commit_t *o_ = find(go, tr_->name, pr_->partition_index);      \
                    FILL_PART(pr_, o_, (go)->err);                                                 \
                }                                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            const char **names_;                                                                   \
            size_t nt_ = distinct_topics(req, go, &names_);                                        \
            (out) = gw_req_alloc(req, nt_ * sizeof *(out));                                        \
            (outcount) = (int32_t)nt_;                                                             \
            for (size_t t_ = 0; t_ < nt_; t_++) {                                                  \
                TT *tr_ = &(out)[t_];                                                              \
                tr_->name = kp_str(names_[t_]);                                                    \
                tr_->partitions = gw_req_alloc(req, (go)->n * sizeof *tr_->partitions);            \
                for (size_t i_ = 0; i_ < (go)->n; i_++) {                                          \
                    const st_offset_commit_t *o_ = &(go)->offs[i_];                                \
                    if (strcmp(o_->topic, names_[t_]) != 0)                                        \
                        continue;                                                                  \
                    PT *pr_ = &tr_->partitions[tr_->partitions_count++];                           \
                    pr_->partition_index = o_->partition;                                          \
                    FILL_PART(pr_, o_, KP_ERR_NONE);                                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

typedef kp_offset_fetch_response_offset_fetch_response_topic_t v1_topic_t;
typedef kp_offset_fetch_response_offset_fetch_response_partition_t v1_part_t;
typedef kp_offset_fetch_response_offset_fetch_response_topics_t v8_topic_t;
typedef kp_offset_fetch_response_offset_fetch_response_partitions_t v8_part_t;
typedef kp_offset_fetch_response_offset_fetch_response_group_t v8_group_t;

static void respond(gw_req_t *req)
{
    const kp_offset_fetch_request_t *rq = req->body;
    group_offsets_t *gos = req->hstate;
    kp_offset_fetch_response_t resp;
    kp_offset_fetch_response_init(&resp);
    resp.throttle_time_ms = 0; /* v3+ */
    if (req->api_version < 8) {
        FILL_TOPICS(req, &gos[0], rq->topics, rq->topics_count, v1_topic_t, v1_part_t, resp.topics,
                    resp.topics_count);
        resp.error_code = (int16_t)gos[0].err; /* v2-7 */
    } else {
        int32_t ng = rq->groups_count > 0 ? rq->groups_count : 0;
        resp.groups = gw_req_alloc(req, (size_t)ng * sizeof *resp.groups);
        resp.groups_count = ng;
        for (int32_t g = 0; g < ng; g++) {
            v8_group_t *gr = &resp.groups[g];
            gr->group_id = rq->groups[g].group_id;
            gr->error_code = (int16_t)gos[g].err;
            FILL_TOPICS(req, &gos[g], rq->groups[g].topics, rq->groups[g].topics_count, v8_topic_t,
                        v8_part_t, gr->topics, gr->topics_count);
        }
    }
    gw_req_respond(req, &resp);
}

static void fetched_cb(st_err_t err, const st_offset_commit_t *offs, size_t n, void *arg)
{
    of_ctx_t *ctx = arg;
    gw_req_t *req = ctx->req;
    group_offsets_t *go = ctx->go;
    go->err = gw_err_from_st(err);
    if (err == ST_OK) {
        /* Borrowed during the callback only: copy. */
        go->offs = gw_req_alloc(req, n * sizeof *go->offs);
        for (size_t i = 0; i < n; i++) {
            go->offs[i] = offs[i];
            go->offs[i].topic = gw_req_strdup(req, offs[i].topic, strlen(offs[i].topic));
            if (offs[i].metadata)
                go->offs[i].metadata =
                    gw_req_strdup(req, offs[i].metadata, strlen(offs[i].metadata));
        }
        go->n = n;
    } else {
        gw_log_warn("group", "reading committed offsets failed: %s", st_err_str(err));
    }
    if (--req->pending == 0)
        respond(req);
}

static void fetch_group(gw_req_t *req, kp_str_t group, group_offsets_t *go)
{
    if (!gw_coordinates(req->srv, group)) {
        go->err = KP_ERR_NOT_COORDINATOR;
        return;
    }
    of_ctx_t *ctx = gw_req_alloc(req, sizeof *ctx);
    ctx->req = req;
    ctx->go = go;
    const char *name = gw_req_strdup(req, group.ptr, group.len > 0 ? (size_t)group.len : 0);
    int rc = st_log_fetch_offsets(req->srv->log, name, fetched_cb, ctx);
    if (rc != 0)
        go->err = gw_err_from_st(gw_st_start_err(rc));
    else
        req->pending++;
}

int gw_api_offset_fetch(gw_req_t *req)
{
    const kp_offset_fetch_request_t *rq = req->body;
    int32_t ng = req->api_version < 8 ? 1 : (rq->groups_count > 0 ? rq->groups_count : 0);
    group_offsets_t *gos = gw_req_alloc(req, (size_t)ng * sizeof *gos);
    req->hstate = gos;
    req->pending = 1; /* held while reads are being started */
    if (req->api_version < 8)
        fetch_group(req, rq->group_id, &gos[0]);
    else
        for (int32_t g = 0; g < ng; g++)
            fetch_group(req, rq->groups[g].group_id, &gos[g]);
    if (--req->pending == 0)
        respond(req);
    return 0;
}
