/*
 * st_curl.c: libcurl's multi interface on the libevent loop (curl's
 * "multi_socket" API: curl tells us which sockets to watch and when to
 * call it back; we turn that into libevent events and a timer).
 */
#include "st_curl.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

/* One transfer in flight. */
typedef struct st_xfer {
    struct st_xfer *next, *prev;
    CURL *easy;
    st_curl_done_cb done;
    void *arg;
} st_xfer_t;

/* One socket curl asked us to watch. */
typedef struct st_sock {
    struct st_sock *next, *prev; /* st_curl's socket list */
    st_curl_t *c;
    curl_socket_t fd;
    struct event *ev; /* persistent, for curl's current interest */
} st_sock_t;

struct st_curl {
    struct event_base *base;
    CURLM *multi;
    struct event *timer; /* curl's timeout */
    st_xfer_t xfers;     /* sentinel: transfers in flight */
    st_sock_t socks;     /* sentinel: sockets being watched */
    unsigned running;    /* transfers in the list */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static st_xfer_t *xfer_of(st_curl_t *c, CURL *easy)
{
    for (st_xfer_t *x = c->xfers.next; x != &c->xfers; x = x->next)
        if (x->easy == easy)
            return x;
    return NULL;
}

static void xfer_unlink(st_curl_t *c, st_xfer_t *x)
{
    x->prev->next = x->next;
    x->next->prev = x->prev;
    c->running--;
}

/* Deliver every finished transfer. */
static void check_done(st_curl_t *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(c->multi, easy);
        st_xfer_t *x = xfer_of(c, easy);
        if (!x)
            continue;
        xfer_unlink(c, x);
        st_curl_done_cb done = x->done;
        void *arg = x->arg;
        free(x);
        done(rc, easy, arg); /* may start or cancel other transfers */
    }
}

static void sock_cb_ev(evutil_socket_t fd, short what, void *arg)
{
    st_sock_t *s = arg;
    st_curl_t *c = s->c;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int still;
    curl_multi_socket_action(c->multi, fd, flags, &still);
    check_done(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    st_curl_t *c = arg;
    int still;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    check_done(c);
}

static void sock_free(st_sock_t *s)
{
    s->prev->next = s->next;
    s->next->prev = s->prev;
    if (s->ev)
        event_free(s->ev);
    free(s);
}

/* CURLMOPT_SOCKETFUNCTION: watch @fd for @what, or stop watching it. */
static int socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
    (void)easy;
    st_curl_t *c = userp;
    st_sock_t *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_free(s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->c = c;
        s->fd = fd;
        s->next = &c->socks;
        s->prev = c->socks.prev;
        c->socks.prev->next = s;
        c->socks.prev = s;
        curl_multi_assign(c->multi, fd, s);
    } else if (s->ev) {
        event_free(s->ev);
    }
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                         (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
    s->ev = event_new(c->base, fd, kind, sock_cb_ev, s);
    if (!s->ev || event_add(s->ev, NULL) != 0)
        return -1;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: call back in @ms (-1: no timer). */
static int timer_fn(CURLM *multi, long ms, void *userp)
{
    (void)multi;
    st_curl_t *c = userp;
    if (ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    /* Even a 0 ms timeout goes through the loop: never re-enter curl
     * from inside curl_multi_add_handle(). */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

st_curl_t *st_curl_new(struct event_base *base)
{
    pthread_once(&global_once, global_init);
    st_curl_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->xfers.next = c->xfers.prev = &c->xfers;
    c->socks.next = c->socks.prev = &c->socks;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, timer_cb, c);
    if (!c->multi || !c->timer) {
        st_curl_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* Parallel requests to one host on separate connections (no HTTP/2
     * multiplexing over plain HTTP); keep a generous connection cache. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L);
    return c;
}

void st_curl_free(st_curl_t *c)
{
    if (!c)
        return;
    while (c->xfers.next != &c->xfers) {
        st_xfer_t *x = c->xfers.next;
        curl_multi_remove_handle(c->multi, x->easy);
        xfer_unlink(c, x);
        free(x);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (c->socks.next != &c->socks) /* those curl did not report removed */
        sock_free(c->socks.next);
    if (c->timer)
        event_free(c->timer);
    free(c);
}

int st_curl_start(st_curl_t *c, CURL *easy, st_curl_done_cb done, void *arg)
{
    st_xfer_t *x = calloc(1, sizeof(*x));
    if (!x)
        return -1;
    x->easy = easy;
    x->done = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        free(x);
        return -1;
    }
    x->next = &c->xfers;
    x->prev = c->xfers.prev;
    c->xfers.prev->next = x;
    c->xfers.prev = x;
    c->running++;
    return 0;
}

void st_curl_cancel(st_curl_t *c, CURL *easy)
{
    st_xfer_t *x = xfer_of(c, easy);
    if (!x)
        return;
    curl_multi_remove_handle(c->multi, easy);
    xfer_unlink(c, x);
    free(x);
}

unsigned st_curl_running(const st_curl_t *c)
{
    return c->running;
}
