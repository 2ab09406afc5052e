/*
 * test_buf.c: reference-counted buffers and the pool of large buffers'
 * memory -- placement, reuse of released memory, kept ranges moved into a
 * new buffer with their bytes (so neither copied nor zeroed), the limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "st_log.h"

#define MIB (1u << 20)

static st_buf_pool_stats_t stats(void)
{
    st_buf_pool_stats_t s;
    st_buf_pool_stats(&s);
    return s;
}

static int setup(void **state)
{
    (void)state;
    st_buf_pool_drain();
    return 0;
}

/* True when no byte of [p, p + n) differs from @c. */
static bool all(const uint8_t *p, size_t n, uint8_t c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return false;
    return true;
}

/* Below the pool's threshold a buffer is malloc'ed, placed as asked. */
static void test_small(void **state)
{
    (void)state;
    st_buf_pool_stats_t s0 = stats();
    st_buf_t *a = st_buf_new(1000);
    assert_non_null(a);
    assert_int_equal(a->map_len, 0);
    assert_int_equal(a->refs, 1);
    memset(a->data, 1, 1000);
    st_buf_t *b = st_buf_new_at(5000, 3 * ST_OBJ_GET_ALIGN + 123);
    assert_non_null(b);
    assert_int_equal(b->map_len, 0);
    assert_int_equal((uintptr_t)b->mem % ST_OBJ_GET_ALIGN, 0);
    assert_ptr_equal(b->data, (uint8_t *)b->mem + 123);
    memset(b->data, 2, 5000);
    st_buf_unref(st_buf_ref(a));
    assert_int_equal(a->refs, 1);
    st_buf_unref(a);
    st_buf_unref(b);
    assert_int_equal(stats().mapped, s0.mapped);
    assert_int_equal(stats().kept, 0);
}

/* A large buffer is whole units of a mapping starting on a unit, placed
 * as asked, and every byte of it can be written. */
static void test_big_placed(void **state)
{
    (void)state;
    st_buf_pool_stats_t s0 = stats();
    size_t len = 3 * MIB + 10;
    st_buf_t *b = st_buf_new_at(len, 7 * ST_OBJ_GET_ALIGN + 77);
    assert_non_null(b);
    assert_int_equal(b->len, len);
    assert_int_equal(b->map_len, 4 * MIB);
    assert_int_equal((uintptr_t)b->mem % ST_BUF_POOL_UNIT, 0);
    assert_ptr_equal(b->data, (uint8_t *)b->mem + 77);
    memset(b->data, 0xee, len);
    st_buf_t *c = st_buf_new(ST_BUF_BIG_MIN);
    assert_non_null(c);
    assert_int_equal(c->map_len, ST_BUF_POOL_UNIT);
    assert_int_equal((uintptr_t)c->data % ST_OBJ_GET_ALIGN, 0);
    assert_int_equal(stats().mapped, s0.mapped + 2);
    st_buf_unref(b);
    st_buf_unref(c);
    assert_int_equal(stats().kept_bytes, 6 * MIB);
}

/* A released buffer's memory is the next buffer it holds, bytes and all. */
static void test_reuse(void **state)
{
    (void)state;
    st_buf_pool_stats_t s0 = stats();
    st_buf_t *a = st_buf_new(3 * MIB);
    assert_non_null(a);
    void *mem = a->mem;
    memset(a->data, 0x11, a->len);
    st_buf_unref(a);
    st_buf_pool_stats_t s = stats();
    assert_int_equal(s.kept, 1);
    assert_int_equal(s.kept_bytes, 4 * MIB);
    st_buf_t *b = st_buf_new(2 * MIB + 1); /* the same 4 MiB */
    assert_non_null(b);
    assert_ptr_equal(b->mem, mem);
    assert_true(all(b->data, b->len, 0x11)); /* not zeroed: the same pages */
    s = stats();
    assert_int_equal(s.reused, s0.reused + 1);
    assert_int_equal(s.mapped, s0.mapped + 1);
    assert_int_equal(s.kept_bytes, 0);
    /* A smaller one takes the front of a kept range; the rest stays kept. */
    st_buf_unref(b);
    st_buf_t *c = st_buf_new(MIB + 5);
    assert_non_null(c);
    assert_ptr_equal(c->mem, mem);
    assert_int_equal(c->map_len, 2 * MIB);
    s = stats();
    assert_int_equal(s.reused, s0.reused + 2);
    assert_int_equal(s.kept_bytes, 2 * MIB);
    /* Released again, it joins the rest: one range of 4 MiB. */
    st_buf_unref(c);
    s = stats();
    assert_int_equal(s.kept, 1);
    assert_int_equal(s.kept_bytes, 4 * MIB);
}

/* When no kept range is large enough, kept ranges -- largest first -- are
 * moved into the new buffer with their bytes: only the rest is new. */
static void test_moved_into_new(void **state)
{
    (void)state;
    /* Two buffers whose ranges do not touch, so that they stay two. */
    st_buf_t *held[8];
    for (int i = 0; i < 8; i++)
        assert_non_null(held[i] = st_buf_new((size_t)(i % 2 + 1) * 2 * MIB));
    int x = -1, y = -1;
    for (int i = 0; i < 8 && x < 0; i++)
        for (int j = i + 1; j < 8 && x < 0; j++) {
            uint8_t *a = held[i]->mem, *b = held[j]->mem;
            if (held[i]->map_len != held[j]->map_len && a + held[i]->map_len != b &&
                b + held[j]->map_len != a) {
                x = held[i]->map_len == 2 * MIB ? i : j; /* 2 MiB */
                y = x == i ? j : i;                      /* 4 MiB */
            }
        }
    assert_true(x >= 0);
    memset(held[x]->data, 0xa5, held[x]->len);
    memset(held[y]->data, 0x5a, held[y]->len);
    st_buf_unref(held[x]);
    st_buf_unref(held[y]);
    st_buf_pool_stats_t s0 = stats();
    assert_int_equal(s0.kept, 2);
    assert_int_equal(s0.kept_bytes, 6 * MIB);

    st_buf_t *n = st_buf_new(7 * MIB); /* 8 MiB: 4 + 2 moved, 2 new */
    assert_non_null(n);
    assert_int_equal(n->map_len, 8 * MIB);
    st_buf_pool_stats_t s = stats();
    assert_int_equal(s.mapped, s0.mapped + 1);
    assert_int_equal(s.moved_bytes, s0.moved_bytes + 6 * MIB);
    assert_int_equal(s.kept_bytes, 0);
    assert_true(all(n->data, 4 * MIB, 0x5a));
    assert_true(all(n->data + 4 * MIB, 2 * MIB, 0xa5));
    assert_true(all(n->data + 6 * MIB, MIB, 0)); /* new memory */
    memset(n->data, 0, n->len);
    st_buf_unref(n);
    for (int i = 0; i < 8; i++)
        if (i != x && i != y)
            st_buf_unref(held[i]);
}

/* No more than the limit stays kept: the ranges released longest ago go. */
static void test_limits(void **state)
{
    (void)state;
    enum { N = 40 };
    st_buf_t *b[N];
    for (int i = 0; i < N; i++)
        assert_non_null(b[i] = st_buf_new(2 * MIB));
    for (int i = 0; i < N; i++)
        st_buf_unref(b[i]);
    st_buf_pool_stats_t s = stats();
    assert_true(s.kept_bytes <= ST_BUF_POOL_KEEP_BYTES);
    assert_true(s.kept_bytes > 0);
    assert_true(s.unmapped > 0);
    /* A buffer larger than the whole pool takes in all that is kept, and
     * is not kept itself. */
    st_buf_t *huge = st_buf_new(ST_BUF_POOL_KEEP_BYTES + MIB);
    assert_non_null(huge);
    huge->data[huge->len - 1] = 1;
    assert_int_equal(stats().kept_bytes, 0);
    uint64_t unmapped = stats().unmapped;
    st_buf_unref(huge);
    s = stats();
    assert_int_equal(s.kept_bytes, 0);
    assert_int_equal(s.unmapped, unmapped + 1);
    /* Drained, nothing is kept. */
    st_buf_t *c = st_buf_new(2 * MIB);
    assert_non_null(c);
    st_buf_unref(c);
    assert_int_equal(stats().kept_bytes, 2 * MIB);
    st_buf_pool_drain();
    s = stats();
    assert_int_equal(s.kept, 0);
    assert_int_equal(s.kept_bytes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_small, setup),
        cmocka_unit_test_setup(test_big_placed, setup),
        cmocka_unit_test_setup(test_reuse, setup),
        cmocka_unit_test_setup(test_moved_into_new, setup),
        cmocka_unit_test_setup(test_limits, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
