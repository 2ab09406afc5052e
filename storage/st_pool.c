/*
 * st_pool.c: worker threads whose completions return to the event loop.
 */
#include "st_pool.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_job {
    struct st_job *next;
    st_work_fn work;
    st_after_fn after;
    void *arg;
} st_job_t;

typedef struct st_jobq {
    st_job_t *head, *tail;
} st_jobq_t;

struct st_pool {
    struct event_base *base;
    struct event *done_ev; /* activated by workers when `done` gains jobs */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when `todo` gains jobs or on stop */
    st_jobq_t todo;    /* submitted, not started */
    st_jobq_t done;    /* worked, waiting for `after` on the loop */
    unsigned pending;  /* submitted and `after` not yet run */
    int stopping;      /* workers exit once `todo` is empty */
    int nthreads;
    pthread_t *threads;
    char name[16];
};

static void jobq_push(st_jobq_t *q, st_job_t *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static st_job_t *jobq_take_all(st_jobq_t *q)
{
    st_job_t *h = q->head;
    q->head = q->tail = NULL;
    return h;
}

static void *worker_main(void *p)
{
    st_pool_t *pool = p;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->todo.head && !pool->stopping)
            pthread_cond_wait(&pool->cv, &pool->mu);
        st_job_t *j = pool->todo.head;
        if (!j)
            break; /* stopping and drained */
        pool->todo.head = j->next;
        if (!pool->todo.head)
            pool->todo.tail = NULL;
        pthread_mutex_unlock(&pool->mu);
        j->work(j->arg);
        pthread_mutex_lock(&pool->mu);
        jobq_push(&pool->done, j);
        event_active(pool->done_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* Loop thread: run `after` for every finished job, in completion order. */
static void run_done(st_pool_t *pool)
{
    pthread_mutex_lock(&pool->mu);
    st_job_t *j = jobq_take_all(&pool->done);
    pthread_mutex_unlock(&pool->mu);
    while (j) {
        st_job_t *next = j->next;
        pool->pending--;
        if (j->after)
            j->after(j->arg);
        free(j);
        j = next;
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_done(arg);
}

st_pool_t *st_pool_new(struct event_base *base, int nthreads, const char *name)
{
    if (nthreads < 1)
        nthreads = 1;
    st_pool_t *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->base = base;
    snprintf(pool->name, sizeof pool->name, "%s", name ? name : "pool");
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->done_ev = event_new(base, -1, EV_PERSIST, done_cb, pool);
    pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!pool->done_ev || !pool->threads)
        goto fail;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
            goto fail;
        pool->nthreads++;
        pthread_setname_np(pool->threads[i], pool->name);
    }
    return pool;
fail:
    st_pool_free(pool);
    return NULL;
}

int st_pool_submit(st_pool_t *pool, st_work_fn work, st_after_fn after, void *arg)
{
    st_job_t *j = malloc(sizeof(*j));
    if (!j)
        return -1;
    j->work = work;
    j->after = after;
    j->arg = arg;
    pthread_mutex_lock(&pool->mu);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->mu);
        free(j);
        return -1;
    }
    jobq_push(&pool->todo, j);
    pool->pending++;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

unsigned st_pool_pending(const st_pool_t *pool)
{
    return pool->pending;
}

void st_pool_free(st_pool_t *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    if (pool->done_ev)
        run_done(pool); /* remaining completions, still on the loop thread */
    if (pool->done_ev)
        event_free(pool->done_ev);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->threads);
    free(pool);
}
