/*
 * st_arena.h: a bump allocator for the metadata backends -- a request, its
 * copies and everything built for its result live in one arena; freeing
 * the arena frees them all.
 *
 * Ownership: every allocation is owned by the arena.
 * Threading: an arena is used by one thread at a time.
 */
#ifndef ST_ARENA_H
#define ST_ARENA_H

#include <stddef.h>

typedef struct st_arena_chunk st_arena_chunk_t;
typedef struct st_arena {
    st_arena_chunk_t *head; /* newest chunk first; NULL = nothing allocated */
} st_arena_t;

/* @returns owned by @a: @n bytes aligned to 8, or NULL when out of memory. */
void *st_arena__alloc(st_arena_t *a, size_t n);
/* Copies @n bytes of @p plus a NUL byte after them (never NULL unless out
 * of memory, even for @n == 0).  @p borrowed. */
void *st_arena__dup(st_arena_t *a, const void *p, size_t n);
void st_arena__free(st_arena_t *a);

#endif
