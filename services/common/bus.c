/*
 * bus.c: nng pub/sub and req/rep sockets driven from a libuv loop.
 *
 * Threads. nng completes an aio on one of its own threads and calls the
 * aio's callback there. Those callbacks never call user code: they append
 * {kind, result, msg} to the socket's mutex-guarded queue and uv_async_send
 * the loop. The async callback (loop thread) takes the whole queue at once,
 * since several sends may coalesce into one wakeup, and calls the user's
 * callbacks in order.
 *
 * Re-arming. The next nng operation is started as early as is safe, by
 * whichever thread knows it is due, so the nng side never waits for the loop:
 *  - sub: the receive callback re-arms the receive itself while the queue has
 *    room (fewer than recv_buf events). When it is full, or the receive
 *    failed, it leaves the receive "paused" and the loop re-arms it after
 *    draining, so a stalled loop cannot grow the queue without bound (nng
 *    then drops the oldest messages, as pub/sub does anyway) and a
 *    persistent error cannot spin on nng's thread.
 *  - rep: one request at a time. The loop delivers the request; bus_reply
 *    starts the send; the send callback starts the next receive. A failed
 *    receive pauses, as for sub.
 *  - req: bus_request starts the send; the send callback starts the receive
 *    for the reply with the rest of the timeout; the receive callback (or a
 *    failed send) queues the outcome for the loop.
 * The paused flag lives under the mutex, so exactly one side re-arms.
 *
 * Shutdown. bus_close marks the socket closing, stops the send aio and then
 * the receive aio (a send callback may start a receive, never the reverse),
 * so after that no callback is running or can run. Only then does it close
 * the nng socket, free what is still queued and uv_close the async handle;
 * the memory goes in the close callback.
 *
 * Log ids (all warn): bus_socket_failed, bus_option_failed,
 * bus_listen_failed, bus_dial_failed, bus_async_failed, bus_send_failed,
 * bus_reply_failed, bus_request_failed, bus_recv_failed. A request timeout
 * is an outcome the caller handles, not logged.
 */
#include "bus.h"

#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DEFAULT_RECV_MAX (1024 * 1024)
#define DEFAULT_BUF 1024
#define RECONN_MIN_MS 50
#define RECONN_MAX_MS 1000
/*
 * nng's req resends a request that got no reply after this long. Requests
 * are idempotent, so a resend is only wasted work; 5 s is longer than a
 * normal replay query and still recovers a silently lost request well
 * within a typical caller timeout. (A request on a pipe that closes is
 * resent at once anyway.)
 */
#define REQ_RESEND_MS 5000

enum bus_kind { BUS_PUB, BUS_SUB, BUS_REP, BUS_REQ };
static const char *kind_names[] = {"pub", "sub", "rep", "req"};

enum ev_kind { EV_RECV, EV_SEND };

/* One completed nng operation waiting for the loop. */
typedef struct bus_event {
	struct bus_event *next;
	enum ev_kind kind;
	int result; /* nng error code, 0 on success */
	nng_msg *msg;
} bus_event;

struct bus_sock {
	uv_loop_t *loop;
	enum bus_kind kind;
	char *url;
	nng_socket sock;
	nng_aio *recv_aio; /* sub, rep, req */
	nng_aio *send_aio; /* rep, req */
	uv_async_t async;

	bus_msg_cb msg_cb; /* sub, rep */
	void *msg_arg;

	/* Guarded by mtx: shared with nng's threads. */
	uv_mutex_t mtx;
	bus_event *head, *tail;
	size_t qlen, qmax;
	bool recv_paused; /* the loop must re-arm the receive */
	bool closing;

	/* Loop thread only. */
	bool rep_busy;    /* a request was delivered and not yet answered */
	bool req_pending; /* bus_request is waiting for its outcome */
	bus_reply_cb reply_cb;
	void *reply_arg;
	/* Written before nng_send_aio, read in the send callback: nng's own
	 * locking orders the two. */
	uint64_t req_deadline_ms;

	atomic_uint_fast64_t sent, received, send_failed;
};

/* Maps an nng error to ours. */
static int
map_err(int rv)
{
	switch (rv) {
	case 0: return 0;
	case NNG_ETIMEDOUT: return TRYGG_ETIMEDOUT;
	case NNG_ECLOSED:
	case NNG_ECANCELED: return TRYGG_ECLOSED;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP: return TRYGG_EINVAL;
	case NNG_EMSGSIZE: return TRYGG_ETOOBIG;
	default: return TRYGG_EBUS;
	}
}

/* Logs a failed nng call on socket s under the stable id `msg`. */
static void
warn_nng(const bus_sock *s, const char *msg, const char *url, int rv)
{
	char ubuf[256];
	log_warn(msg, "\"socket\":\"%s\",\"url\":%s,\"error\":\"%s\"", kind_names[s->kind],
	    log_json_str(url, ubuf, sizeof(ubuf)), nng_strerror(rv));
}

/*
 * Appends a completed operation to the queue and wakes the loop. Called on
 * nng's threads with mtx held; the caller sends the wakeup after unlocking.
 */
static void
push_locked(bus_sock *s, enum ev_kind kind, int result, nng_msg *msg)
{
	bus_event *ev = xmalloc(sizeof(*ev));
	ev->next = NULL;
	ev->kind = kind;
	ev->result = result;
	ev->msg = msg;
	if (s->tail != NULL)
		s->tail->next = ev;
	else
		s->head = ev;
	s->tail = ev;
	s->qlen++;
}

/*
 * Receive completion (nng thread) for every kind of socket. Queues the
 * outcome for the loop; a sub socket with room in its queue re-arms at once.
 * When it pauses instead, the loop may re-arm the aio before this function
 * has returned; that is safe because after unlocking it no longer touches
 * the aio (nng allows resubmitting an aio whose callback is still running,
 * the same as resubmitting from inside the callback).
 */
static void
recv_cb(void *arg)
{
	bus_sock *s = arg;
	int rv = nng_aio_result(s->recv_aio);
	nng_msg *msg = NULL;
	if (rv == 0) {
		msg = nng_aio_get_msg(s->recv_aio);
		atomic_fetch_add_explicit(&s->received, 1, memory_order_relaxed);
	}
	bool rearm = false;
	uv_mutex_lock(&s->mtx);
	push_locked(s, EV_RECV, rv, msg);
	if (s->kind == BUS_SUB || (s->kind == BUS_REP && rv != 0)) {
		/* Closed or cancelled means we are shutting down: no re-arm. */
		bool stopping = s->closing || rv == NNG_ECLOSED || rv == NNG_ECANCELED;
		rearm = !stopping && rv == 0 && s->qlen < s->qmax;
		s->recv_paused = !stopping && !rearm;
	}
	uv_mutex_unlock(&s->mtx);
	uv_async_send(&s->async);
	if (rearm)
		nng_recv_aio(s->sock, s->recv_aio);
}

/*
 * Send completion (nng thread) for rep and req sockets. rep: the reply went
 * out (or failed, logged here), so receive the next request. req: on success
 * wait for the reply with what is left of the timeout; on failure queue the
 * error for the loop.
 */
static void
send_cb(void *arg)
{
	bus_sock *s = arg;
	int rv = nng_aio_result(s->send_aio);
	if (rv != 0) {
		/* On failure the message is still ours. */
		nng_msg_free(nng_aio_get_msg(s->send_aio));
		nng_aio_set_msg(s->send_aio, NULL);
		atomic_fetch_add_explicit(&s->send_failed, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&s->sent, 1, memory_order_relaxed);
	}
	if (s->kind == BUS_REP) {
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			return;
		if (rv != 0)
			warn_nng(s, "bus_reply_failed", s->url, rv);
		nng_recv_aio(s->sock, s->recv_aio);
		return;
	}
	if (rv == 0) {
		uint64_t now = trygg_now_ms();
		uint64_t left = s->req_deadline_ms > now ? s->req_deadline_ms - now : 1;
		nng_aio_set_timeout(s->recv_aio, (nng_duration)left);
		nng_recv_aio(s->sock, s->recv_aio);
		return;
	}
	uv_mutex_lock(&s->mtx);
	push_locked(s, EV_SEND, rv, NULL);
	uv_mutex_unlock(&s->mtx);
	uv_async_send(&s->async);
}

/* Hands one event to the user (loop thread). Takes ownership of ev->msg. */
static void
deliver(bus_sock *s, bus_event *ev)
{
	int rv = ev->result;
	if (s->kind == BUS_REQ) {
		if (!s->req_pending) {
			/* Cannot happen: one request at a time, cancelled only by
			 * bus_close, which never drains into here. */
			nng_msg_free(ev->msg);
			return;
		}
		s->req_pending = false;
		int err = map_err(rv);
		if (rv != 0 && rv != NNG_ETIMEDOUT)
			warn_nng(s, "bus_request_failed", s->url, rv);
		s->reply_cb(s->reply_arg, err, ev->msg);
		return;
	}
	if (rv != 0) {
		if (rv != NNG_ECLOSED && rv != NNG_ECANCELED)
			warn_nng(s, "bus_recv_failed", s->url, rv);
		return;
	}
	if (s->kind == BUS_REP)
		s->rep_busy = true;
	s->msg_cb(s->msg_arg, ev->msg);
}

/*
 * The loop's side of the queue: takes every queued event, delivers them in
 * order, then re-arms a paused receive. A user callback may call bus_close;
 * the rest of the batch is then freed without delivery.
 */
static void
async_cb(uv_async_t *h)
{
	bus_sock *s = h->data;
	uv_mutex_lock(&s->mtx);
	bus_event *ev = s->head;
	s->head = s->tail = NULL;
	s->qlen = 0;
	uv_mutex_unlock(&s->mtx);

	while (ev != NULL) {
		bus_event *next = ev->next;
		if (s->closing)
			nng_msg_free(ev->msg);
		else
			deliver(s, ev);
		free(ev);
		ev = next;
	}
	if (s->closing)
		return;

	bool rearm = false;
	uv_mutex_lock(&s->mtx);
	if (s->recv_paused) {
		s->recv_paused = false;
		rearm = true;
	}
	uv_mutex_unlock(&s->mtx);
	if (rearm)
		nng_recv_aio(s->sock, s->recv_aio);
}

static void
aio_free(nng_aio *aio)
{
	if (aio != NULL)
		nng_aio_free(aio);
}

static void
close_cb(uv_handle_t *h)
{
	bus_sock *s = h->data;
	uv_mutex_destroy(&s->mtx);
	free(s->url);
	free(s);
}

/* Sets an option that not every protocol has; ENOTSUP is fine. */
static int
set_opt(bus_sock *s, int rv, const char *name)
{
	if (rv == 0 || rv == NNG_ENOTSUP)
		return 0;
	log_warn("bus_option_failed", "\"socket\":\"%s\",\"option\":\"%s\",\"error\":\"%s\"",
	    kind_names[s->kind], name, nng_strerror(rv));
	return map_err(rv);
}

/*
 * Creates a socket of the given kind with its options, aios and async
 * handle, then listens or dials and starts receiving. On error nothing is
 * left behind and *out is NULL.
 */
/*
 * Dials every URL of a comma-separated list on the one socket: nng keeps a
 * dialer per URL, so a subscriber hears every replica of a publisher and a
 * requester asks whichever replica is connected. Non-blocking: each dialer
 * keeps retrying in the background. An empty element is an error.
 */
static int
dial_all(bus_sock *s, const char *urls)
{
	char *list = xstrdup(urls);
	int err = 0;
	char *save = NULL;
	int n = 0;
	for (char *u = strtok_r(list, ",", &save); u != NULL; u = strtok_r(NULL, ",", &save)) {
		while (*u == ' ')
			u++;
		int rv = nng_dial(s->sock, u, NULL, NNG_FLAG_NONBLOCK);
		if (rv != 0) {
			warn_nng(s, "bus_dial_failed", u, rv);
			err = map_err(rv);
			break;
		}
		n++;
	}
	if (err == 0 && n == 0)
		err = TRYGG_EINVAL;
	free(list);
	return err;
}

static int
sock_open(uv_loop_t *loop, enum bus_kind kind, const char *url, const bus_options *o, bus_msg_cb cb,
    void *arg, bus_sock **out)
{
	*out = NULL;
	if (loop == NULL || url == NULL || ((kind == BUS_SUB || kind == BUS_REP) && cb == NULL))
		return TRYGG_EINVAL;
	bus_options def = {0};
	if (o == NULL)
		o = &def;
	if (o->send_buf < 0 || o->recv_buf < 0)
		return TRYGG_EINVAL;

	bus_sock *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->kind = kind;
	s->url = xstrdup(url);
	s->msg_cb = cb;
	s->msg_arg = arg;
	int recv_buf = o->recv_buf ? o->recv_buf : DEFAULT_BUF;
	int send_buf = o->send_buf ? o->send_buf : DEFAULT_BUF;
	s->qmax = (size_t)recv_buf;
	atomic_init(&s->sent, 0);
	atomic_init(&s->received, 0);
	atomic_init(&s->send_failed, 0);
	uv_mutex_init(&s->mtx);

	int rv = 0, err;
	switch (kind) {
	case BUS_PUB: rv = nng_pub0_open(&s->sock); break;
	case BUS_SUB: rv = nng_sub0_open(&s->sock); break;
	case BUS_REP: rv = nng_rep0_open(&s->sock); break;
	case BUS_REQ: rv = nng_req0_open(&s->sock); break;
	}
	if (rv != 0) {
		warn_nng(s, "bus_socket_failed", url, rv);
		err = map_err(rv);
		goto fail_mtx;
	}

	/* Every socket bounds what it will accept, even pub: a peer could
	 * otherwise announce a huge message and make nng allocate it. */
	size_t recv_max = o->recv_max ? o->recv_max : DEFAULT_RECV_MAX;
	if ((err = set_opt(s, nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, recv_max),
	         NNG_OPT_RECVMAXSZ)) != 0 ||
	    (err = set_opt(s, nng_socket_set_int(s->sock, NNG_OPT_SENDBUF, send_buf),
	         NNG_OPT_SENDBUF)) != 0)
		goto fail_sock;
	if (kind != BUS_PUB &&
	    (err = set_opt(s, nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, recv_buf),
	         NNG_OPT_RECVBUF)) != 0)
		goto fail_sock;
	if (kind == BUS_SUB &&
	    (err = set_opt(s, nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0),
	         NNG_OPT_SUB_SUBSCRIBE)) != 0)
		goto fail_sock;
	if (kind == BUS_REQ &&
	    (err = set_opt(s, nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, REQ_RESEND_MS),
	         NNG_OPT_REQ_RESENDTIME)) != 0)
		goto fail_sock;
	if ((kind == BUS_SUB || kind == BUS_REQ) &&
	    ((err = set_opt(s, nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, RECONN_MIN_MS),
	          NNG_OPT_RECONNMINT)) != 0 ||
	        (err = set_opt(s, nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, RECONN_MAX_MS),
	             NNG_OPT_RECONNMAXT)) != 0))
		goto fail_sock;

	if (kind != BUS_PUB && (rv = nng_aio_alloc(&s->recv_aio, recv_cb, s)) != 0) {
		err = map_err(rv);
		goto fail_sock;
	}
	if ((kind == BUS_REP || kind == BUS_REQ) &&
	    (rv = nng_aio_alloc(&s->send_aio, send_cb, s)) != 0) {
		err = map_err(rv);
		goto fail_aio;
	}

	if (kind == BUS_PUB || kind == BUS_REP) {
		rv = nng_listen(s->sock, url, NULL, 0);
		if (rv != 0) {
			warn_nng(s, "bus_listen_failed", url, rv);
			err = map_err(rv);
			goto fail_aio;
		}
	} else {
		if ((err = dial_all(s, url)) != 0)
			goto fail_aio;
	}

	if ((rv = uv_async_init(loop, &s->async, async_cb)) != 0) {
		log_warn("bus_async_failed", "\"error\":\"%s\"", uv_strerror(rv));
		err = TRYGG_EIO;
		goto fail_aio;
	}
	s->async.data = s;

	/* Callbacks may run from here on: the async handle exists. */
	if (kind == BUS_SUB || kind == BUS_REP)
		nng_recv_aio(s->sock, s->recv_aio);
	*out = s;
	return 0;

fail_aio:
	aio_free(s->send_aio);
	aio_free(s->recv_aio);
fail_sock:
	nng_close(s->sock);
fail_mtx:
	uv_mutex_destroy(&s->mtx);
	free(s->url);
	free(s);
	return err;
}

int
bus_pub_open(uv_loop_t *loop, const char *url, const bus_options *o, bus_sock **out)
{
	return sock_open(loop, BUS_PUB, url, o, NULL, NULL, out);
}

int
bus_sub_open(uv_loop_t *loop, const char *url, const bus_options *o, bus_msg_cb cb, void *arg,
    bus_sock **out)
{
	return sock_open(loop, BUS_SUB, url, o, cb, arg, out);
}

int
bus_rep_open(uv_loop_t *loop, const char *url, const bus_options *o, bus_msg_cb cb, void *arg,
    bus_sock **out)
{
	return sock_open(loop, BUS_REP, url, o, cb, arg, out);
}

int
bus_req_open(uv_loop_t *loop, const char *url, const bus_options *o, bus_sock **out)
{
	return sock_open(loop, BUS_REQ, url, o, NULL, NULL, out);
}

int
bus_send(bus_sock *s, nng_msg *msg)
{
	if (s == NULL || msg == NULL || s->kind != BUS_PUB)
		return TRYGG_EINVAL;
	if (s->closing)
		return TRYGG_ECLOSED;
	/* pub0 never blocks; the flag only makes that explicit. */
	int rv = nng_sendmsg(s->sock, msg, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		atomic_fetch_add_explicit(&s->send_failed, 1, memory_order_relaxed);
		warn_nng(s, "bus_send_failed", s->url, rv);
		return map_err(rv);
	}
	atomic_fetch_add_explicit(&s->sent, 1, memory_order_relaxed);
	return 0;
}

int
bus_reply(bus_sock *s, nng_msg *msg)
{
	if (s == NULL || msg == NULL || s->kind != BUS_REP)
		return TRYGG_EINVAL;
	if (s->closing)
		return TRYGG_ECLOSED;
	if (!s->rep_busy)
		return TRYGG_EINVAL; /* no request to answer */
	s->rep_busy = false;
	nng_aio_set_msg(s->send_aio, msg);
	nng_send_aio(s->sock, s->send_aio);
	return 0;
}

int
bus_request(bus_sock *s, nng_msg *msg, unsigned timeout_ms, bus_reply_cb cb, void *arg)
{
	if (s == NULL || msg == NULL || cb == NULL || s->kind != BUS_REQ || timeout_ms == 0)
		return TRYGG_EINVAL;
	if (s->closing)
		return TRYGG_ECLOSED;
	if (s->req_pending)
		return TRYGG_EBUSY;
	if (timeout_ms > INT32_MAX)
		timeout_ms = INT32_MAX;
	s->req_pending = true;
	s->reply_cb = cb;
	s->reply_arg = arg;
	s->req_deadline_ms = trygg_now_ms() + timeout_ms;
	/* The send waits for a connected rep; it gets the whole timeout, the
	 * receive gets what is left (send_cb). */
	nng_aio_set_timeout(s->send_aio, (nng_duration)timeout_ms);
	nng_aio_set_msg(s->send_aio, msg);
	nng_send_aio(s->sock, s->send_aio);
	return 0;
}

bool
bus_request_pending(const bus_sock *s)
{
	return s != NULL && s->req_pending;
}

void
bus_close(bus_sock *s)
{
	if (s == NULL || s->closing)
		return;
	uv_mutex_lock(&s->mtx);
	s->closing = true;
	uv_mutex_unlock(&s->mtx);

	/* Send first: a send callback may start a receive, never the reverse.
	 * Each stop waits for a running callback, which only holds mtx
	 * briefly, so the loop blocks for microseconds at most. */
	if (s->send_aio != NULL)
		nng_aio_stop(s->send_aio);
	if (s->recv_aio != NULL)
		nng_aio_stop(s->recv_aio);
	nng_close(s->sock);

	uv_mutex_lock(&s->mtx);
	bus_event *ev = s->head;
	s->head = s->tail = NULL;
	s->qlen = 0;
	uv_mutex_unlock(&s->mtx);
	while (ev != NULL) {
		bus_event *next = ev->next;
		nng_msg_free(ev->msg);
		free(ev);
		ev = next;
	}
	/* A send stopped mid-flight completed with ECANCELED, and send_cb
	 * freed its message. */
	aio_free(s->send_aio);
	aio_free(s->recv_aio);
	s->send_aio = s->recv_aio = NULL;
	s->req_pending = false;
	uv_close((uv_handle_t *)&s->async, close_cb);
}

void
bus_get_stats(const bus_sock *s, bus_stats *out)
{
	if (s == NULL) {
		*out = (bus_stats){0};
		return;
	}
	/* atomic_load takes a non-const pointer in C11. */
	bus_sock *m = (bus_sock *)s;
	out->sent = atomic_load_explicit(&m->sent, memory_order_relaxed);
	out->received = atomic_load_explicit(&m->received, memory_order_relaxed);
	out->send_failed = atomic_load_explicit(&m->send_failed, memory_order_relaxed);
}
