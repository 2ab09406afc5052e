/*
 * gw_api_api_versions.c: ApiVersions (key 18), v0-3.  The list comes from
 * the dispatch table; a version we do not speak never reaches this handler
 * (the dispatcher answers it in v0 format).
 */
#include "gw_api.h"
#include "gw_dispatch.h"

int gw_api_api_versions(gw_req_t *req)
{
    kp_api_versions_response_t resp;
    /* v3+ requests carry ClientSoftwareName/Version: informational only. */
    gw_api_versions_fill(req, KP_ERR_NONE, &resp);
    /* v3+: SupportedFeatures, FinalizedFeaturesEpoch (-1) and
     * FinalizedFeatures are tagged fields left at their defaults, so none
     * is written. */
    gw_req_respond(req, &resp);
    return 0;
}
