/*
 * mockbroker: runs librdkafka's in-process mock Kafka cluster (one broker)
 * so that real clients can be recorded against it.
 *
 * usage: mockbroker [topic[:partitions]]...
 *
 * Pre-creates the given topics (default 1 partition), prints the cluster's
 * bootstrap address ("host:port") on one line on stdout, then runs until
 * SIGTERM/SIGINT or end of file on stdin.
 *
 * Build: cc -O1 -o mockbroker mockbroker.c -lrdkafka
 * Not part of the project's build: used only by capture.sh.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    struct sigaction sa;
    int i;

    /* The handle is only bookkeeping for the mock cluster: keep it quiet. */
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "mockbroker: %s\n", errstr);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "mockbroker: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fprintf(stderr, "mockbroker: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }

    for (i = 1; i < argc; i++) {
        char name[256];
        int parts = 1;
        const char *colon = strchr(argv[i], ':');
        size_t len = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
        rd_kafka_resp_err_t err;

        if (len == 0 || len >= sizeof(name)) {
            fprintf(stderr, "mockbroker: bad topic '%s'\n", argv[i]);
            continue;
        }
        memcpy(name, argv[i], len);
        name[len] = '\0';
        if (colon)
            parts = atoi(colon + 1);
        if (parts < 1)
            parts = 1;
        err = rd_kafka_mock_topic_create(mc, name, parts, 1);
        if (err)
            fprintf(stderr, "mockbroker: topic %s: %s\n", name, rd_kafka_err2str(err));
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    while (!stop_flag) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int r = poll(&pfd, 1, 200);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r > 0) {
            char buf[256];
            ssize_t n = read(0, buf, sizeof(buf));
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                break; /* stdin closed */
        }
    }

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
