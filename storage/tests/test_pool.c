/*
 * test_pool.c: worker pool -- completions on the loop, in order, never
 * re-entrant, drained on free.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>

#include "st_pool.h"

typedef struct job {
    int id;
    pthread_t worker;   /* thread that ran work */
    pthread_t after_on; /* thread that ran after */
    int *order;         /* shared completion log */
    int *norder;
    int in_submit; /* set while st_pool_submit runs */
} job_t;

static void work(void *arg)
{
    job_t *j = arg;
    j->worker = pthread_self();
}

static void after(void *arg)
{
    job_t *j = arg;
    j->after_on = pthread_self();
    assert_int_equal(j->in_submit, 0); /* never called from inside submit */
    j->order[(*j->norder)++] = j->id;
}

static void test_serial_order(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    st_pool_t *pool = st_pool_new(base, 1, "t-serial");
    assert_non_null(pool);
    enum { N = 200 };
    job_t jobs[N];
    int order[N], norder = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (job_t){.id = i, .order = order, .norder = &norder, .in_submit = 1};
        assert_int_equal(st_pool_submit(pool, work, after, &jobs[i]), 0);
        jobs[i].in_submit = 0;
    }
    assert_int_equal(norder, 0); /* nothing completes before the loop runs */
    while (st_pool_pending(pool) > 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(norder, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(order[i], i); /* a one-thread pool is a serial queue */
        assert_true(pthread_equal(jobs[i].after_on, pthread_self()));
        assert_false(pthread_equal(jobs[i].worker, pthread_self()));
    }
    st_pool_free(pool);
    event_base_free(base);
}

static void test_free_drains(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    st_pool_t *pool = st_pool_new(base, 3, "t-drain");
    enum { N = 50 };
    job_t jobs[N];
    int order[N], norder = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (job_t){.id = i, .order = order, .norder = &norder};
        assert_int_equal(st_pool_submit(pool, work, after, &jobs[i]), 0);
    }
    st_pool_free(pool); /* runs every remaining completion */
    assert_int_equal(norder, N);
    event_base_free(base);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serial_order),
        cmocka_unit_test(test_free_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
