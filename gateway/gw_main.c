/*
 * gw_main.c: the nuthatch executable.
 *
 * Exit status: 0 after --help or --version; 2 for a bad command line or
 * configuration (one line on standard error: "nuthatch: <reason>"); 1 when
 * the gateway cannot run.
 */
#include <event2/thread.h>
#include <stdio.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "gw_config.h"
#include "gw_log.h"
#include "gw_server.h"

/* Two info records: who we are and where we serve and store, then every
 * setting that differs from its default.  Every key follows at debug. */
static void log_config(const gw_config_t *cfg)
{
    static const char *const keys[] = {"node.id", "listeners", "advertised.listeners",
                                       "storage.url", "metadata.url"};
    char line[GW_LOG_LINE_MAX];
    size_t len = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && len < sizeof line; i++) {
        char v[GW_URL_MAX];
        gw_config_value_str(cfg, keys[i], v, sizeof v);
        int n = snprintf(line + len, sizeof line - len, " %s=%s", keys[i], v);
        len += n > 0 ? (size_t)n : 0;
    }
    gw_log_info("main", "nuthatch %s starting:%s", GW_VERSION, line);
    gw_config_format(cfg, true, line, sizeof line);
    gw_log_info("main", "settings other than the defaults: %s", line);
    gw_config_log(cfg);
}

/* The produce path allocates a request frame, a copy of each batch and a
 * flush object of up to a few MiB, and frees them a moment later.  glibc
 * serves blocks that large with mmap() (or trims the heap after their
 * free()), so every one came back as fresh pages, faulted in and zeroed by
 * the kernel on first touch.  Keeping them in the heap lets the next
 * flush reuse the same pages; at most M_TRIM_THRESHOLD of free memory stays
 * mapped at the top of the heap. */
static void tune_malloc(void)
{
#if defined(__GLIBC__)
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's largest on 64-bit */
    (void)mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
}

int main(int argc, char **argv)
{
    tune_malloc();
    /* Before any event_base or thread exists: the storage worker pool posts
     * completions to the loop from other threads. */
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "nuthatch: libevent was built without pthreads support\n");
        return 1;
    }

    gw_config_t loaded;
    char errstr[1024];
    switch (gw_config_load(&loaded, argc, argv, errstr, sizeof errstr)) {
    case 0:
        break;
    case GW_CONFIG_HELP:
        gw_config_help(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    case GW_CONFIG_VERSION:
        printf("nuthatch %s\n", GW_VERSION);
        return fflush(stdout) == 0 ? 0 : 1;
    default:
        fprintf(stderr, "nuthatch: %s\n", errstr);
        return 2;
    }
    const gw_config_t *cfg = &loaded; /* frozen from here on */

    /* The only process-wide setting; set before any thread starts. */
    gw_log_set_level(cfg->log_level);
    log_config(cfg);

    return gw_server_run(cfg);
}
