/*
 * st_pool.h: a small pool of worker threads for blocking work (file I/O,
 * fsync, SQLite), whose completions are posted back to the event loop.
 *
 * Ownership: the pool borrows @base; @arg passed to st_pool_submit is
 * borrowed by the pool until @after has run.
 * Threading: st_pool_new/submit/free are called on the loop thread; @work
 * runs on a worker thread; @after always runs later on the loop thread,
 * never from inside st_pool_submit.  A pool with one thread runs work items
 * strictly in submission order (a serial queue), and @after callbacks always
 * run in the order their work finished.
 */
#ifndef ST_POOL_H
#define ST_POOL_H

struct event_base;

typedef struct st_pool st_pool_t;
typedef void (*st_work_fn)(void *arg);  /* worker thread */
typedef void (*st_after_fn)(void *arg); /* loop thread */

/* Returns owned (st_pool_free), or NULL on failure.  Needs libevent thread
 * support enabled (evthread_use_pthreads) before @base was created. */
st_pool_t *st_pool_new(struct event_base *base, int nthreads, const char *name);

/* Queue @work(@arg); then @after(@arg) on the loop.  @after may be NULL.
 * @returns 0, or -1 when the pool is shutting down (nothing will run). */
int st_pool_submit(st_pool_t *pool, st_work_fn work, st_after_fn after, void *arg);

/* Number of items submitted whose @after has not run yet. */
unsigned st_pool_pending(const st_pool_t *pool);

/* Finish all queued work, run the remaining @after callbacks, join the
 * threads and free the pool. */
void st_pool_free(st_pool_t *pool);

#endif
