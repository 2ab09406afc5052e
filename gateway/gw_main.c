/*
 * gw_main.c: the nuthatch executable.
 *
 * Exit status: 0 after --help or --version; 2 for a bad command line or
 * configuration (one line on standard error: "nuthatch: <reason>"); 1 when
 * the gateway cannot run.
 */
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

#if defined(__SANITIZE_ADDRESS__)
#define NH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NH_ASAN 1
#endif
#endif

/* Each first touch of a fresh 4 KiB page of those buffers is a page fault,
 * and on a paravirtualized guest a fault costs several microseconds: on
 * one, producing to a single partition spent 10% of the gateway's samples
 * in them, in the copy into each new flush object.  Where transparent huge
 * pages are given only to memory that asks for them
 * (/sys/kernel/mm/transparent_hugepage/enabled "[madvise]", the common
 * default), glibc asks for the heap when the tunable glibc.malloc.hugetlb=1
 * is set -- about 500 times fewer faults; there the same produce went from
 * 207-227 to 262-293 MB/s with a fifth less CPU.  Tunables are read when
 * the process starts, so the gateway starts itself again once with it
 * added (same pid, same arguments).  A GLIBC_TUNABLES that names
 * glibc.malloc.hugetlb already (=0 to opt out) is left alone; so is
 * everything under AddressSanitizer, which brings its own allocator. */
static void exec_with_thp(char **argv)
{
#if defined(__GLIBC__) && !defined(NH_ASAN)
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.malloc.hugetlb"))
        return;
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return;
    size_t n = fread(mode, 1, sizeof mode - 1, f);
    fclose(f);
    mode[n] = '\0';
    if (!strstr(mode, "[madvise]"))
        return;
    char v[1024];
    /* First: glibc 2.36 leaves only the first tunable in the environment
     * it shows (all of them take effect). */
    int len = snprintf(v, sizeof v, "glibc.malloc.hugetlb=1%s%s", t && *t ? ":" : "", t ? t : "");
    if (len < 0 || (size_t)len >= sizeof v || setenv("GLIBC_TUNABLES", v, 1) != 0)
        return;
    char exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0 || (size_t)el >= sizeof exe - 1)
        return;
    exe[el] = '\0';
    execv(exe, argv);
    /* Still here (the executable was replaced or removed since): go on
     * with 4 KiB pages. */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    exec_with_thp(argv);
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
