/*
 * st_arena.c: the bump allocator of st_arena.h.
 */
#include "st_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct st_arena_chunk {
    st_arena_chunk_t *next;
    size_t used, cap;                  /* bytes of data[] */
    _Alignas(16) unsigned char data[]; /* every allocation is 8-aligned in it */
};

#define ARENA_CHUNK 8192

void *st_arena__alloc(st_arena_t *a, size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL; /* no such allocation can succeed; keeps the sums below exact */
    n = (n + 7) & ~(size_t)7;
    st_arena_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void *st_arena__dup(st_arena_t *a, const void *p, size_t n)
{
    unsigned char *d = st_arena__alloc(a, n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = 0;
    return d;
}

void st_arena__free(st_arena_t *a)
{
    st_arena_chunk_t *c = a->head;
    while (c) {
        st_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}
