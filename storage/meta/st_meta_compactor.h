/*
 * st_meta_compactor.h: keeps the metadata store's revision history bounded.
 *
 * etcd keeps every old revision of every key until it is told to compact
 * (DESIGN §5); a default etcd does not compact by itself, and its
 * database would grow with every commit until its quota (2 GiB) stops all
 * writes.  The compactor does etcd's periodic auto-compaction from the
 * client side: every interval it learns the store's current revision (a
 * one-key range) and compacts the history up to the revision it learnt at
 * the tick before -- so that one interval of history is always kept for
 * watches that resume after a dropped stream, and nothing Nuthatch reads
 * (it reads current values only) is ever lost.  Several gateways sharing
 * an etcd may all run one: compacting to an already compacted revision
 * succeeds.
 *
 * Ownership: borrows @base and @meta, which must outlive it.
 * Threading: loop thread only.
 */
#ifndef ST_META_COMPACTOR_H
#define ST_META_COMPACTOR_H

#include <stdint.h>

#include "st_meta.h"

struct event_base;

typedef struct st_compactor st_compactor_t;

/* Called after each compaction request: @rev the revision compacted up to
 * (history before it is gone), or the error. */
typedef void (*st_compactor_cb)(st_err_t err, int64_t rev, void *arg);

/* Start compacting every @interval_ms (> 0); @probe_key: any key (it need
 * not exist), read to learn the revision.  @cb may be NULL.
 * @returns owned (st_compactor_free), NULL when out of memory. */
st_compactor_t *st_compactor_new(struct event_base *base, st_meta_t *meta, const char *probe_key,
                                 int64_t interval_ms, st_compactor_cb cb, void *arg);

/* The revision history is compacted up to (0: not yet). */
int64_t st_compactor_compacted(const st_compactor_t *c);

/* Stop; an operation in flight completes without calling the callback. */
void st_compactor_free(st_compactor_t *c);

#endif
