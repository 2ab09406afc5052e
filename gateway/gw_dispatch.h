/*
 * gw_dispatch.h: the table of the APIs the gateway answers (STYLE §7), the
 * dispatcher that checks a request against it before any handler runs, and
 * the ApiVersions answer built from the same table.
 *
 * Ownership: the table is static and read-only.
 * Threading: loop thread (the table itself may be read anywhere).
 */
#ifndef GW_DISPATCH_H
#define GW_DISPATCH_H

#include <stdint.h>

#include "gw_conn.h"
#include "kp_msgs.h"

/**
 * A handler.  It answers @req now or later with gw_req_respond() (or
 * gw_req_finish_silent()), and never sees a version outside its row's range.
 * @returns 0, or -1 when the request breaks the protocol and the connection
 *          must close (the request is then finished by the dispatcher).
 */
typedef int (*gw_api_fn)(gw_req_t *req);

typedef struct gw_api {
    int16_t min_ver, max_ver; /* versions answered, inclusive; the ones ApiVersions lists */
    gw_api_fn handle;         /* NULL: not handled (the key closes the connection) */
    bool list_from_v0;        /* ApiVersions lists the range from v0 (below min_ver, the
                               * versions are still refused): see Produce in the table */
} gw_api_t;

/* The row of @api_key, or NULL when the gateway does not handle it. */
const gw_api_t *gw_api_lookup(int16_t api_key);

/**
 * Fill @resp with the ApiVersions answer: @error_code and every handled API
 * with its range, in key order (arrays from req->resp_arena).
 * @thread loop
 */
void gw_api_versions_fill(gw_req_t *req, int16_t error_code, kp_api_versions_response_t *resp);

/**
 * Decode @req's frame and run its handler.  A malformed frame, an API the
 * table does not have, or a version outside its range closes the connection
 * -- except ApiVersions, which answers a version it does not know with
 * UNSUPPORTED_VERSION and the version ranges in v0 format (DESIGN §8).
 * @thread loop
 */
void gw_dispatch(gw_req_t *req);

#endif
