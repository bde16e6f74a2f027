/*
 * test_bus.c: nng sockets on the libuv loop (bus.c).
 *
 * Pub/sub over ipc:// and tcp:// (in order, none lost while the publisher
 * stays within the buffers), the receive size limit, req/rep with a reply
 * delayed by a timer, request timeouts, and closing sockets with work still
 * pending. Each test runs its own loop and ends with uv_loop_close() == 0,
 * so a handle left open fails it; ASan catches leaked messages.
 *
 * Test messages are raw nng bodies, not protobuf: a tag byte ('P' probe,
 * 'D' data, 'B' oversized) and a big-endian 64-bit counter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"

#define N_MESSAGES 10000
#define WINDOW 256 /* well under SENDBUF/RECVBUF: nothing may be dropped */
#define WATCHDOG_MS 20000

typedef struct ctx {
	uv_loop_t loop;
	char url[128];
	bus_sock *pub, *sub, *rep, *req;
	uv_timer_t tick, watchdog, delay;
	unsigned ticks;

	/* pub/sub */
	bool connected;
	uint64_t sent, probes_sent, next_expected, bigs;
	bool big_sent, got_after_big, close_in_cb;
	uint64_t delivered_before_close;

	/* req/rep */
	nng_msg *held_request; /* a request the rep side has not answered yet */
	bool never_reply;
	int requests_done, requests_wanted, last_err;
	uint64_t t_start_ms, t_done_ms;
} ctx;

static int url_seq;

/* Makes a unique url for the given scheme ("ipc" or "tcp"). */
static void
make_url(ctx *c, const char *scheme)
{
	if (strcmp(scheme, "ipc") == 0) {
		snprintf(c->url, sizeof(c->url), "ipc:///tmp/trygg-test-bus-%d-%d.ipc",
		    (int)getpid(), url_seq++);
		return;
	}
	/* A free port: bind port 0, read it back, let it go. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(c->url, sizeof(c->url), "tcp://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

static nng_msg *
make_msg(char tag, uint64_t n, size_t pad)
{
	nng_msg *m;
	assert_int_equal(nng_msg_alloc(&m, 0), 0);
	assert_int_equal(nng_msg_append(m, &tag, 1), 0);
	assert_int_equal(nng_msg_append_u64(m, n), 0);
	if (pad > 0)
		assert_int_equal(nng_msg_realloc(m, nng_msg_len(m) + pad), 0);
	return m;
}

static char
msg_tag(nng_msg *m)
{
	assert_true(nng_msg_len(m) >= 9);
	return ((char *)nng_msg_body(m))[0];
}

static uint64_t
msg_n(nng_msg *m)
{
	const uint8_t *b = (const uint8_t *)nng_msg_body(m) + 1;
	uint64_t n = 0;
	for (int i = 0; i < 8; i++)
		n = n << 8 | b[i];
	return n;
}

static void
publish(ctx *c, char tag, uint64_t n, size_t pad)
{
	nng_msg *m = make_msg(tag, n, pad);
	assert_int_equal(bus_send(c->pub, m), 0);
}

static void
watchdog_cb(uv_timer_t *t)
{
	(void)t;
	fail_msg("watchdog: test did not finish in %d ms", WATCHDOG_MS);
}

static void
ctx_init(ctx *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	uv_timer_init(&c->loop, &c->tick);
	uv_timer_init(&c->loop, &c->delay);
	uv_timer_init(&c->loop, &c->watchdog);
	uv_timer_start(&c->watchdog, watchdog_cb, WATCHDOG_MS, 0);
	c->tick.data = c->delay.data = c->watchdog.data = c;
}

/* Closes every socket and handle; the loop then runs out. */
static void
ctx_finish(ctx *c)
{
	bus_close(c->pub);
	bus_close(c->sub);
	bus_close(c->rep);
	bus_close(c->req);
	c->pub = c->sub = c->rep = c->req = NULL;
	if (c->held_request != NULL) {
		nng_msg_free(c->held_request);
		c->held_request = NULL;
	}
	if (!uv_is_closing((uv_handle_t *)&c->tick)) {
		uv_close((uv_handle_t *)&c->tick, NULL);
		uv_close((uv_handle_t *)&c->delay, NULL);
		uv_close((uv_handle_t *)&c->watchdog, NULL);
	}
}

static void
ctx_run_and_close(ctx *c)
{
	uv_run(&c->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* --- pub/sub: 10,000 in order --- */

static void
order_sub_cb(void *arg, nng_msg *m)
{
	ctx *c = arg;
	char tag = msg_tag(m);
	if (tag == 'P') {
		c->connected = true;
	} else {
		assert_int_equal(tag, 'D');
		assert_int_equal(msg_n(m), c->next_expected);
		c->next_expected++;
	}
	nng_msg_free(m);
	if (c->next_expected == N_MESSAGES) {
		bus_stats ps, ss;
		bus_get_stats(c->pub, &ps);
		bus_get_stats(c->sub, &ss);
		assert_int_equal(ps.sent, c->sent + c->probes_sent);
		assert_int_equal(ps.send_failed, 0);
		assert_true(ss.received >= N_MESSAGES);
		ctx_finish(c);
	}
}

/*
 * Every millisecond: until the subscriber has seen a probe, send one every
 * 10 ms; then publish data, keeping at most WINDOW messages in flight.
 */
static void
order_tick_cb(uv_timer_t *t)
{
	ctx *c = t->data;
	if (!c->connected) {
		if (c->ticks++ % 10 == 0) {
			publish(c, 'P', c->probes_sent, 0);
			c->probes_sent++;
		}
		return;
	}
	while (c->sent < N_MESSAGES && c->sent - c->next_expected < WINDOW) {
		publish(c, 'D', c->sent, 0);
		c->sent++;
	}
}

static void
pubsub_in_order(const char *scheme)
{
	ctx c;
	ctx_init(&c);
	make_url(&c, scheme);
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &c.pub), 0);
	assert_int_equal(bus_sub_open(&c.loop, c.url, NULL, order_sub_cb, &c, &c.sub), 0);
	uv_timer_start(&c.tick, order_tick_cb, 1, 1);
	ctx_run_and_close(&c);
	assert_int_equal(c.next_expected, N_MESSAGES);
}

static void
test_pubsub_ipc_in_order(void **state)
{
	(void)state;
	pubsub_in_order("ipc");
}

static void
test_pubsub_tcp_in_order(void **state)
{
	(void)state;
	pubsub_in_order("tcp");
}

/* The subscriber may dial before the publisher listens. */
static void
test_sub_before_pub(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	make_url(&c, "ipc");
	assert_int_equal(bus_sub_open(&c.loop, c.url, NULL, order_sub_cb, &c, &c.sub), 0);
	/* Let it fail a few dials first. */
	uv_run(&c.loop, UV_RUN_NOWAIT);
	usleep(100 * 1000);
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &c.pub), 0);
	uv_timer_start(&c.tick, order_tick_cb, 1, 1);
	ctx_run_and_close(&c);
	assert_int_equal(c.next_expected, N_MESSAGES);
}

/* --- recv_max --- */

static void
big_sub_cb(void *arg, nng_msg *m)
{
	ctx *c = arg;
	char tag = msg_tag(m);
	if (tag == 'B')
		c->bigs++;
	else if (!c->connected)
		c->connected = true;
	else if (c->big_sent)
		c->got_after_big = true;
	nng_msg_free(m);
	if (c->got_after_big)
		ctx_finish(c);
}

/*
 * Probe until connected, then send one message over the limit followed by
 * normal ones. nng closes a pipe that announces an oversized message, so
 * the normal message that arrives comes after the subscriber redialed: keep
 * sending until one does.
 */
static void
big_tick_cb(uv_timer_t *t)
{
	ctx *c = t->data;
	if (c->ticks++ % 10 != 0)
		return;
	if (c->connected && !c->big_sent) {
		publish(c, 'B', 0, 4096);
		c->big_sent = true;
	}
	publish(c, 'P', c->probes_sent++, 0);
}

static void
test_recv_max_enforced(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	make_url(&c, "ipc");
	bus_options o = {.recv_max = 1024};
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &c.pub), 0);
	assert_int_equal(bus_sub_open(&c.loop, c.url, &o, big_sub_cb, &c, &c.sub), 0);
	uv_timer_start(&c.tick, big_tick_cb, 1, 1);
	ctx_run_and_close(&c);
	assert_true(c.big_sent);
	assert_true(c.got_after_big);
	assert_int_equal(c.bigs, 0);
}

/* --- req/rep --- */

/* Answers the held request: its body with '!' appended. */
static void
delay_cb(uv_timer_t *t)
{
	ctx *c = t->data;
	nng_msg *m = c->held_request;
	c->held_request = NULL;
	assert_int_equal(nng_msg_append(m, "!", 1), 0);
	assert_int_equal(bus_reply(c->rep, m), 0);
	/* Only one reply per request. */
	nng_msg *extra = make_msg('X', 0, 0);
	assert_int_equal(bus_reply(c->rep, extra), TRYGG_EINVAL);
	nng_msg_free(extra);
}

static void
rep_cb(void *arg, nng_msg *m)
{
	ctx *c = arg;
	assert_null(c->held_request); /* one request at a time */
	c->held_request = m;
	if (!c->never_reply)
		uv_timer_start(&c->delay, delay_cb, 50, 0);
}

static void send_request(ctx *c);

static void
reply_cb(void *arg, int err, nng_msg *m)
{
	ctx *c = arg;
	assert_false(bus_request_pending(c->req));
	assert_int_equal(err, 0);
	assert_non_null(m);
	assert_int_equal(nng_msg_len(m), 10);
	assert_int_equal(msg_tag(m), 'Q');
	assert_int_equal(msg_n(m), (uint64_t)c->requests_done);
	assert_int_equal(((char *)nng_msg_body(m))[9], '!');
	nng_msg_free(m);
	assert_true(trygg_now_ms() - c->t_start_ms >= 45);
	if (++c->requests_done == c->requests_wanted) {
		bus_stats st;
		bus_get_stats(c->rep, &st);
		assert_int_equal(st.received, c->requests_wanted);
		ctx_finish(c);
		return;
	}
	/* A new request straight from the reply callback. */
	send_request(c);
}

static void
send_request(ctx *c)
{
	c->t_start_ms = trygg_now_ms();
	nng_msg *m = make_msg('Q', (uint64_t)c->requests_done, 0);
	assert_int_equal(bus_request(c->req, m, 5000, reply_cb, c), 0);
	assert_true(bus_request_pending(c->req));
	nng_msg *m2 = make_msg('Q', 99, 0);
	assert_int_equal(bus_request(c->req, m2, 5000, reply_cb, c), TRYGG_EBUSY);
	nng_msg_free(m2);
}

static void
reqrep(const char *scheme)
{
	ctx c;
	ctx_init(&c);
	make_url(&c, scheme);
	c.requests_wanted = 3;
	assert_int_equal(bus_rep_open(&c.loop, c.url, NULL, rep_cb, &c, &c.rep), 0);
	assert_int_equal(bus_req_open(&c.loop, c.url, NULL, &c.req), 0);
	send_request(&c);
	ctx_run_and_close(&c);
	assert_int_equal(c.requests_done, 3);
}

static void
test_reqrep_delayed_reply_ipc(void **state)
{
	(void)state;
	reqrep("ipc");
}

static void
test_reqrep_delayed_reply_tcp(void **state)
{
	(void)state;
	reqrep("tcp");
}

static void
timeout_cb(void *arg, int err, nng_msg *m)
{
	ctx *c = arg;
	c->last_err = err;
	c->t_done_ms = trygg_now_ms();
	assert_null(m);
	c->requests_done++;
	ctx_finish(c);
}

/* Nobody listens: the send cannot go anywhere and times out. */
static void
test_request_timeout_no_server(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	make_url(&c, "ipc");
	assert_int_equal(bus_req_open(&c.loop, c.url, NULL, &c.req), 0);
	c.t_start_ms = trygg_now_ms();
	assert_int_equal(bus_request(c.req, make_msg('Q', 0, 0), 200, timeout_cb, &c), 0);
	ctx_run_and_close(&c);
	assert_int_equal(c.requests_done, 1);
	assert_int_equal(c.last_err, TRYGG_ETIMEDOUT);
	assert_true(c.t_done_ms - c.t_start_ms >= 190);
	assert_true(c.t_done_ms - c.t_start_ms < 2000);
}

/* A server that takes the request and never answers: the reply times out. */
static void
test_request_timeout_no_reply(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	make_url(&c, "tcp");
	c.never_reply = true;
	assert_int_equal(bus_rep_open(&c.loop, c.url, NULL, rep_cb, &c, &c.rep), 0);
	assert_int_equal(bus_req_open(&c.loop, c.url, NULL, &c.req), 0);
	c.t_start_ms = trygg_now_ms();
	assert_int_equal(bus_request(c.req, make_msg('Q', 0, 0), 300, timeout_cb, &c), 0);
	ctx_run_and_close(&c);
	assert_int_equal(c.last_err, TRYGG_ETIMEDOUT);
	assert_true(c.t_done_ms - c.t_start_ms >= 290);
}

/* --- closing with work pending --- */

static void
never_cb(void *arg, int err, nng_msg *m)
{
	(void)arg;
	(void)err;
	(void)m;
	fail_msg("a closed socket's request callback ran");
}

static void
close_tick_cb(uv_timer_t *t)
{
	ctx *c = t->data;
	ctx_finish(c);
}

/* bus_close with a request in flight: no callback, nothing leaks. */
static void
test_close_with_pending_request(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	make_url(&c, "ipc");
	assert_int_equal(bus_req_open(&c.loop, c.url, NULL, &c.req), 0);
	assert_int_equal(bus_request(c.req, make_msg('Q', 0, 0), 10000, never_cb, &c), 0);
	uv_timer_start(&c.tick, close_tick_cb, 50, 0);
	ctx_run_and_close(&c);

	/* Same with a server that holds the request. */
	ctx_init(&c);
	make_url(&c, "ipc");
	c.never_reply = true;
	assert_int_equal(bus_rep_open(&c.loop, c.url, NULL, rep_cb, &c, &c.rep), 0);
	assert_int_equal(bus_req_open(&c.loop, c.url, NULL, &c.req), 0);
	assert_int_equal(bus_request(c.req, make_msg('Q', 0, 0), 10000, never_cb, &c), 0);
	uv_timer_start(&c.tick, close_tick_cb, 200, 0);
	ctx_run_and_close(&c);
}

static void
queued_sub_cb(void *arg, nng_msg *m)
{
	ctx *c = arg;
	char tag = msg_tag(m);
	nng_msg_free(m);
	if (tag == 'P') {
		c->connected = true;
		return;
	}
	c->delivered_before_close++;
	if (c->close_in_cb) {
		/* Close from inside the drain: the rest of the batch must be
		 * freed, not delivered. */
		assert_int_equal(c->delivered_before_close, 1);
		ctx_finish(c);
	}
}

static void
probe_tick_cb(uv_timer_t *t)
{
	ctx *c = t->data;
	if (c->connected) {
		uv_timer_stop(t);
		uv_stop(&c->loop);
		return;
	}
	if (c->ticks++ % 10 == 0)
		publish(c, 'P', c->probes_sent++, 0);
}

/*
 * Fills the subscriber's queue while the loop is not running, then closes
 * (directly, or from the first delivery): the queued messages are freed.
 */
static void
close_with_queue(bool in_cb)
{
	ctx c;
	ctx_init(&c);
	c.close_in_cb = in_cb;
	make_url(&c, "ipc");
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &c.pub), 0);
	assert_int_equal(bus_sub_open(&c.loop, c.url, NULL, queued_sub_cb, &c, &c.sub), 0);
	uv_timer_start(&c.tick, probe_tick_cb, 1, 1);
	uv_run(&c.loop, UV_RUN_DEFAULT); /* until probe_tick_cb stops it */
	assert_true(c.connected);

	for (uint64_t i = 0; i < 500; i++)
		publish(&c, 'D', i, 100);
	/* The loop is not running: nng's threads queue what arrives. */
	bus_stats st;
	for (int i = 0; i < 200; i++) {
		bus_get_stats(c.sub, &st);
		if (st.received >= 500 + c.probes_sent - 1)
			break;
		usleep(10 * 1000);
	}
	assert_true(st.received >= 100);
	if (!in_cb)
		ctx_finish(&c);
	ctx_run_and_close(&c);
	if (in_cb)
		assert_int_equal(c.delivered_before_close, 1);
	else
		assert_int_equal(c.delivered_before_close, 0);
}

static void
test_close_with_queued_messages(void **state)
{
	(void)state;
	close_with_queue(false);
}

static void
test_close_from_callback(void **state)
{
	(void)state;
	close_with_queue(true);
}

/* --- a full queue pauses the receive; the loop resumes it --- */

static void
resume_sub_cb(void *arg, nng_msg *m)
{
	ctx *c = arg;
	char tag = msg_tag(m);
	uint64_t n = msg_n(m);
	nng_msg_free(m);
	if (tag == 'D') {
		c->delivered_before_close++;
		return;
	}
	/* Probes numbered from 1000 are sent after the flood. */
	c->connected = true;
	if (n >= 1000)
		ctx_finish(c);
}

static void
late_probe_tick_cb(uv_timer_t *t)
{
	ctx *c = t->data;
	if (c->ticks++ % 10 == 0)
		publish(c, 'P', 1000 + c->probes_sent++, 0);
}

static void
test_sub_resumes_after_full_queue(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	make_url(&c, "ipc");
	bus_options o = {.recv_buf = 16};
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &c.pub), 0);
	assert_int_equal(bus_sub_open(&c.loop, c.url, &o, resume_sub_cb, &c, &c.sub), 0);
	uv_timer_start(&c.tick, probe_tick_cb, 1, 1);
	uv_run(&c.loop, UV_RUN_DEFAULT);
	assert_true(c.connected);

	/* Let the probes still in flight arrive and be delivered. */
	usleep(50 * 1000);
	uv_run(&c.loop, UV_RUN_NOWAIT);
	bus_stats before, st;
	bus_get_stats(c.sub, &before);
	for (uint64_t i = 0; i < 300; i++)
		publish(&c, 'D', i, 0);
	usleep(200 * 1000);
	bus_get_stats(c.sub, &st);
	/* The loop is not running: the queue filled and the receive paused. */
	assert_int_equal(st.received - before.received, 16);

	c.ticks = 0;
	c.probes_sent = 0;
	uv_timer_start(&c.tick, late_probe_tick_cb, 1, 1);
	ctx_run_and_close(&c);
	/* 16 queued plus what nng buffered meanwhile; the rest was dropped. */
	assert_true(c.delivered_before_close >= 16);
	assert_true(c.delivered_before_close < 300);
}

/* --- argument errors --- */

static void
test_bad_arguments(void **state)
{
	(void)state;
	ctx c;
	ctx_init(&c);
	bus_sock *s = (void *)1;
	assert_int_equal(bus_pub_open(&c.loop, "nonsense://x", NULL, &s), TRYGG_EINVAL);
	assert_null(s);
	assert_int_equal(bus_sub_open(&c.loop, "ipc:///tmp/x", NULL, NULL, NULL, &s), TRYGG_EINVAL);
	bus_options bad = {.send_buf = -1};
	assert_int_equal(bus_pub_open(&c.loop, "ipc:///tmp/x", &bad, &s), TRYGG_EINVAL);

	make_url(&c, "ipc");
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &c.pub), 0);
	/* The address is taken. */
	assert_int_equal(bus_pub_open(&c.loop, c.url, NULL, &s), TRYGG_EBUS);
	nng_msg *m = make_msg('X', 0, 0);
	assert_int_equal(bus_reply(c.pub, m), TRYGG_EINVAL);
	assert_int_equal(bus_request(c.pub, m, 100, never_cb, NULL), TRYGG_EINVAL);
	nng_msg_free(m);
	bus_close(NULL);
	ctx_finish(&c);
	ctx_run_and_close(&c);
}

int
main(void)
{
	log_init("test_bus", LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pubsub_ipc_in_order),
	    cmocka_unit_test(test_pubsub_tcp_in_order),
	    cmocka_unit_test(test_sub_before_pub),
	    cmocka_unit_test(test_recv_max_enforced),
	    cmocka_unit_test(test_reqrep_delayed_reply_ipc),
	    cmocka_unit_test(test_reqrep_delayed_reply_tcp),
	    cmocka_unit_test(test_request_timeout_no_server),
	    cmocka_unit_test(test_request_timeout_no_reply),
	    cmocka_unit_test(test_close_with_pending_request),
	    cmocka_unit_test(test_close_with_queued_messages),
	    cmocka_unit_test(test_close_from_callback),
	    cmocka_unit_test(test_sub_resumes_after_full_queue),
	    cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
