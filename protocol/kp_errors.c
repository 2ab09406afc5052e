/*
 * kp_errors.c: names of Kafka protocol error codes.
 */
#include "kp_errors.h"

const char *kp_err_str(int err)
{
    switch (err) {
#define KP_ERR_CASE_(name, v)                                                                      \
    case v:                                                                                        \
        return #name;
        KP_ERRORS(KP_ERR_CASE_)
#undef KP_ERR_CASE_
    }
    return "UNKNOWN_ERROR_CODE";
}
