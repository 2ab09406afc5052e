/*
 * group_admin.c: librdkafka's admin API on consumer groups against a running
 * gateway -- DeleteConsumerGroupOffsets (OffsetDelete) and DeleteGroups.
 *
 *   nh_compat_group_admin BOOTSTRAP GROUP TOPIC
 *
 * GROUP has committed offsets for partitions 0 and 1 of TOPIC and no
 * members.  Checks: deleting partition 0's offset succeeds and leaves
 * partition 1's; a group that does not exist is GROUP_ID_NOT_FOUND; while a
 * member of another group is subscribed to TOPIC, deleting that group's
 * offset of TOPIC is GROUP_SUBSCRIBED_TO_TOPIC and deleting the group is
 * NON_EMPTY_GROUP; DeleteGroups of GROUP succeeds and its offsets are gone.
 * Exit status 0 when every check holds; each failure prints one line.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bs, const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bs, err, sizeof err);
    if (group) {
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rd_kafka_new: %s\n", err);
        exit(2);
    }
    return rk;
}

/* The committed offset of GROUP for TOPIC partition @p (-1001 when none). */
static int64_t committed(const char *bs, const char *group, const char *topic, int32_t p)
{
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, bs, group);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t e = rd_kafka_committed(c, l, 10000);
    int64_t off = e ? -2 : l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
    return off;
}

/* Wait for one admin result event on @q. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev) {
        fprintf(stderr, "admin request timed out\n");
        exit(2);
    }
    return ev;
}

/* DeleteConsumerGroupOffsets of @group for @topic partition 0: the
 * request's error, and partition 0's in @perr. */
static rd_kafka_resp_err_t delete_offset(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *group,
                                         const char *topic, rd_kafka_resp_err_t *perr)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0);
    rd_kafka_DeleteConsumerGroupOffsets_t *d = rd_kafka_DeleteConsumerGroupOffsets_new(group, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_DeleteConsumerGroupOffsets(rk, &d, 1, NULL, q);
    rd_kafka_DeleteConsumerGroupOffsets_destroy(d);
    rd_kafka_event_t *ev = admin_wait(q);
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    *perr = RD_KAFKA_RESP_ERR_NO_ERROR;
    const rd_kafka_DeleteConsumerGroupOffsets_result_t *res =
        rd_kafka_event_DeleteConsumerGroupOffsets_result(ev);
    size_t n = 0;
    const rd_kafka_group_result_t **gr =
        res ? rd_kafka_DeleteConsumerGroupOffsets_result_groups(res, &n) : NULL;
    if (n == 1) {
        const rd_kafka_error_t *ge = rd_kafka_group_result_error(gr[0]);
        if (ge && !err)
            err = rd_kafka_error_code(ge);
        const rd_kafka_topic_partition_list_t *parts = rd_kafka_group_result_partitions(gr[0]);
        if (parts && parts->cnt == 1)
            *perr = parts->elems[0].err;
    }
    rd_kafka_event_destroy(ev);
    return err;
}

/* DeleteGroups of @group: its error. */
static rd_kafka_resp_err_t delete_group(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *group)
{
    rd_kafka_DeleteGroup_t *d = rd_kafka_DeleteGroup_new(group);
    rd_kafka_DeleteGroups(rk, &d, 1, NULL, q);
    rd_kafka_DeleteGroup_destroy(d);
    rd_kafka_event_t *ev = admin_wait(q);
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    const rd_kafka_DeleteGroups_result_t *res = rd_kafka_event_DeleteGroups_result(ev);
    size_t n = 0;
    const rd_kafka_group_result_t **gr = res ? rd_kafka_DeleteGroups_result_groups(res, &n) : NULL;
    if (n == 1 && !err) {
        const rd_kafka_error_t *ge = rd_kafka_group_result_error(gr[0]);
        if (ge)
            err = rd_kafka_error_code(ge);
    }
    rd_kafka_event_destroy(ev);
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s BOOTSTRAP GROUP TOPIC\n", argv[0]);
        return 2;
    }
    const char *bs = argv[1], *group = argv[2], *topic = argv[3];
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bs, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_resp_err_t perr;

    int64_t before0 = committed(bs, group, topic, 0), before1 = committed(bs, group, topic, 1);
    if (before0 < 0 || before1 < 0)
        fail("%s has no committed offsets to start with (%" PRId64 ", %" PRId64 ")", group, before0,
             before1);
    rd_kafka_resp_err_t err = delete_offset(rk, q, group, topic, &perr);
    if (err || perr)
        fail("OffsetDelete %s: %s / %s", group, rd_kafka_err2name(err), rd_kafka_err2name(perr));
    if (committed(bs, group, topic, 0) != RD_KAFKA_OFFSET_INVALID)
        fail("partition 0's offset is still committed");
    if (committed(bs, group, topic, 1) != before1)
        fail("partition 1's offset changed");

    err = delete_offset(rk, q, "no-such-group", topic, &perr);
    if (err != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)
        fail("OffsetDelete of a missing group: %s", rd_kafka_err2name(err));

    /* A live member subscribed to the topic. */
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, bs, "live-group");
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m)
            rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *asg = NULL;
        if (rd_kafka_assignment(c, &asg) == 0 && asg && asg->cnt > 0) {
            rd_kafka_topic_partition_list_destroy(asg);
            break;
        }
        if (asg)
            rd_kafka_topic_partition_list_destroy(asg);
    }
    err = delete_offset(rk, q, "live-group", topic, &perr);
    if (err || perr != RD_KAFKA_RESP_ERR_GROUP_SUBSCRIBED_TO_TOPIC)
        fail("OffsetDelete on a subscribed topic: %s / %s", rd_kafka_err2name(err),
             rd_kafka_err2name(perr));
    err = delete_group(rk, q, "live-group");
    if (err != RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP)
        fail("DeleteGroups of a group with a member: %s", rd_kafka_err2name(err));
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);

    err = delete_group(rk, q, group);
    if (err)
        fail("DeleteGroups %s: %s", group, rd_kafka_err2name(err));
    if (committed(bs, group, topic, 1) != RD_KAFKA_OFFSET_INVALID)
        fail("partition 1's offset survived DeleteGroups");
    err = delete_group(rk, q, group);
    if (err != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)
        fail("DeleteGroups of a deleted group: %s", rd_kafka_err2name(err));

    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    if (failures)
        return 1;
    printf("group_admin: ok\n");
    return 0;
}
