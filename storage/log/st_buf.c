/*
 * st_buf.c: reference-counted bytes, and the pool that keeps the memory of
 * large buffers for the next ones.
 *
 * A flush builds its object, up to a few MiB, in a new buffer that then
 * stays in the tail cache until newer objects push it out; a chunk loaded
 * for the read cache is another such buffer.  New memory is what costs most
 * on the produce path: the first touch of each page is a fault in which the
 * kernel zeroes the page (and on a virtual machine the host may have to
 * back it first).  Producing to 16 partitions, 47% of the gateway's samples
 * were clear_page_erms under the copy into new flush objects: glibc grew
 * its heap for each of them while the buffers the tail cache had let go
 * lay elsewhere in it, too small or too scattered for the next.
 *
 * Buffers of BIG_MIN bytes and more are therefore mappings of their own,
 * in whole huge pages, and a released one is kept for the next: its range
 * joins the kept ranges next to it, and a new buffer takes the front of the
 * smallest kept range that holds it.  Objects come in all sizes (2 to 9 MB
 * when producing to 16 partitions), so the kept ranges are often each too
 * small for the next object while together they are large enough: then the
 * new buffer is a new mapping into which kept ranges are moved with mremap
 * -- the kernel hands their pages over, no copy and no zeroing -- and only
 * what they lack is new memory.  In steady state a flush takes the pages of
 * the objects the tail cache let go.  At most BIG_KEEP ranges and
 * BIG_KEEP_BYTES are kept; beyond, the ranges released longest ago go back
 * to the kernel, so memory no longer in use does not linger as it can in
 * malloc's heap.  All of it goes back while produce waits for the write
 * buffer (st_log_wait_space): then memory is what bounds the gateway.
 *
 * Threading: buffers are created and released on the loop thread, but the
 * pool takes a mutex so that no caller has to know that.
 */
#include "st_log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define NH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NH_ASAN 1
#endif
#endif
#ifdef NH_ASAN /* kept memory and a buffer's unused room are off limits */
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define BIG_MIN ST_BUF_BIG_MIN                /* buffers this large come from the pool */
#define BIG_UNIT ST_BUF_POOL_UNIT             /* in whole huge pages */
#define BIG_KEEP 32                           /* free ranges kept at most ... */
#define BIG_KEEP_BYTES ST_BUF_POOL_KEEP_BYTES /* ... and bytes in them */

/* A range of free memory kept for reuse. */
typedef struct big_range {
    uint8_t *base;
    size_t len;   /* a multiple of BIG_UNIT */
    uint64_t seq; /* when it was (last) released: the oldest go back first */
} big_range_t;

static struct {
    pthread_mutex_t mu;
    big_range_t r[BIG_KEEP]; /* by address */
    size_t n, bytes;
    uint64_t seq;
    st_buf_pool_stats_t stats;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A new mapping of @len bytes whose start is a multiple of BIG_UNIT; NULL
 * if the kernel refuses. */
static void *big_map(size_t len)
{
    size_t span = len + BIG_UNIT;
    uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    size_t head = (BIG_UNIT - (uintptr_t)m % BIG_UNIT) % BIG_UNIT;
    if (head)
        munmap(m, head);
    if (span - head - len)
        munmap(m + head + len, span - head - len);
#ifdef MADV_HUGEPAGE
    (void)madvise(m + head, len, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
#endif
    return m + head;
}

static void range_del(size_t i)
{
    pool.bytes -= pool.r[i].len;
    pool.n--;
    memmove(pool.r + i, pool.r + i + 1, (pool.n - i) * sizeof *pool.r);
}

/* Give the kept range released longest ago back to the kernel; its index. */
static size_t range_drop_oldest(void)
{
    size_t old = 0;
    for (size_t j = 1; j < pool.n; j++)
        if (pool.r[j].seq < pool.r[old].seq)
            old = j;
    UNPOISON(pool.r[old].base, pool.r[old].len);
    munmap(pool.r[old].base, pool.r[old].len);
    pool.stats.unmapped++;
    range_del(old);
    return old;
}

/* Hand out the first @n bytes of kept range @i (all of it, or its front). */
static uint8_t *range_take(size_t i, size_t n)
{
    uint8_t *m = pool.r[i].base;
    if (n == pool.r[i].len) {
        range_del(i);
    } else {
        pool.r[i].base += n;
        pool.r[i].len -= n;
        pool.bytes -= n;
    }
    return m;
}

static void stats_kept(void)
{
    pool.stats.kept = pool.n;
    pool.stats.kept_bytes = pool.bytes;
}

/* Move kept ranges, largest first, into the new mapping @m of @cap bytes
 * for as much of it as they cover: mremap hands their pages over, without
 * a copy and without zeroing, so only what they lack is new memory. */
static void big_move_into(uint8_t *m, size_t cap)
{
    size_t off = 0;
    while (off < cap && pool.n) {
        size_t big = 0;
        for (size_t i = 1; i < pool.n; i++)
            if (pool.r[i].len > pool.r[big].len)
                big = i;
        size_t take = pool.r[big].len < cap - off ? pool.r[big].len : cap - off;
        uint8_t *from = range_take(big, take);
        UNPOISON(from, take);
        if (mremap(from, take, take, MREMAP_MAYMOVE | MREMAP_FIXED, m + off) == MAP_FAILED) {
            munmap(from, take); /* it spans two mappings: given back, new memory instead */
            pool.stats.unmapped++;
        } else {
            pool.stats.moved_bytes += take;
        }
        off += take;
    }
}

/* Memory for @len bytes, rounded up to BIG_UNIT in *@cap: the front of the
 * smallest kept range that holds it; else a new mapping, made of kept
 * ranges as far as they go. */
static void *big_get(size_t len, size_t *cap)
{
    if (len > SIZE_MAX - BIG_UNIT - BIG_UNIT)
        return NULL;
    *cap = (len + BIG_UNIT - 1) / BIG_UNIT * BIG_UNIT;
    pthread_mutex_lock(&pool.mu);
    size_t best = pool.n;
    for (size_t i = 0; i < pool.n; i++)
        if (pool.r[i].len >= *cap && (best == pool.n || pool.r[i].len < pool.r[best].len))
            best = i;
    uint8_t *m;
    if (best < pool.n) {
        m = range_take(best, *cap);
        UNPOISON(m, *cap);
        pool.stats.reused++;
    } else if ((m = big_map(*cap)) != NULL) {
        big_move_into(m, *cap);
        pool.stats.mapped++;
    }
    stats_kept();
    pthread_mutex_unlock(&pool.mu);
    return m;
}

/* Keep @cap bytes at @mem for reuse, joined to the kept ranges either side
 * of it; then give back the ranges released longest ago while more than
 * BIG_KEEP ranges or BIG_KEEP_BYTES bytes are kept. */
static void big_put(uint8_t *mem, size_t cap)
{
    POISON(mem, cap);
    pthread_mutex_lock(&pool.mu);
    size_t i = 0;
    while (i < pool.n && pool.r[i].base < mem)
        i++;
    uint64_t seq = ++pool.seq;
    if (i > 0 && pool.r[i - 1].base + pool.r[i - 1].len == mem) {
        i--; /* joins the range before it */
        pool.r[i].len += cap;
        pool.r[i].seq = seq;
        pool.bytes += cap;
    } else if (i < pool.n && mem + cap == pool.r[i].base) {
        pool.r[i].base = mem;
        pool.r[i].len += cap;
        pool.r[i].seq = seq;
        pool.bytes += cap;
    } else {
        if (pool.n == BIG_KEEP && range_drop_oldest() < i) /* no slot: the oldest goes */
            i--;
        memmove(pool.r + i + 1, pool.r + i, (pool.n - i) * sizeof *pool.r);
        pool.r[i] = (big_range_t){mem, cap, seq};
        pool.n++;
        pool.bytes += cap;
    }
    if (i + 1 < pool.n && pool.r[i].base + pool.r[i].len == pool.r[i + 1].base) {
        pool.r[i].len += pool.r[i + 1].len; /* and the one after it */
        pool.n--;
        memmove(pool.r + i + 1, pool.r + i + 2, (pool.n - i - 1) * sizeof *pool.r);
    }
    while (pool.bytes > BIG_KEEP_BYTES)
        range_drop_oldest();
    stats_kept();
    pthread_mutex_unlock(&pool.mu);
}

void st_buf_pool_stats(st_buf_pool_stats_t *s)
{
    pthread_mutex_lock(&pool.mu);
    *s = pool.stats;
    pthread_mutex_unlock(&pool.mu);
}

void st_buf_pool_drain(void)
{
    pthread_mutex_lock(&pool.mu);
    for (size_t i = 0; i < pool.n; i++) {
        UNPOISON(pool.r[i].base, pool.r[i].len);
        munmap(pool.r[i].base, pool.r[i].len);
    }
    pool.stats.unmapped += pool.n;
    pool.n = pool.bytes = 0;
    stats_kept();
    pthread_mutex_unlock(&pool.mu);
}

st_buf_t *st_buf_new(size_t len)
{
    if (len >= BIG_MIN)
        return st_buf_new_at(len, 0);
    uint8_t *d = malloc(len ? len : 1);
    if (!d)
        return NULL;
    st_buf_t *b = st_buf_wrap(d, len);
    if (!b)
        free(d);
    return b;
}

st_buf_t *st_buf_new_at(size_t len, uint64_t at)
{
    size_t skip = (size_t)(at % ST_OBJ_GET_ALIGN);
    if (len > SIZE_MAX - skip)
        return NULL;
    size_t need = skip + (len ? len : 1), cap = 0;
    void *mem = NULL;
    if (need >= BIG_MIN) {
        if ((mem = big_get(need, &cap)) == NULL)
            return NULL;
    } else if (posix_memalign(&mem, ST_OBJ_GET_ALIGN, need) != 0) {
        return NULL;
    }
    if (cap) { /* only the buffer's bytes are to be touched */
        POISON(mem, skip);
        POISON((uint8_t *)mem + skip + len, cap - skip - len);
    }
    st_buf_t *b = st_buf_wrap((uint8_t *)mem + skip, len);
    if (!b) {
        if (cap)
            big_put(mem, cap);
        else
            free(mem);
        return NULL;
    }
    b->mem = mem;
    b->map_len = cap;
    return b;
}

st_buf_t *st_buf_wrap(uint8_t *data, size_t len)
{
    st_buf_t *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    b->data = data;
    b->len = len;
    b->refs = 1;
    b->mem = data;
    b->map_len = 0;
    return b;
}

void st_buf_unref(st_buf_t *b)
{
    if (b && --b->refs == 0) {
        if (b->map_len)
            big_put(b->mem, b->map_len);
        else
            free(b->mem);
        free(b);
    }
}
