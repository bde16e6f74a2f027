/*
 * test_http_server.c: unit tests for http_server.c.
 *
 * Each test starts a server on 127.0.0.1 port 0 and talks to it with our
 * own http_client or with raw sockets, all on one loop: helpers run the
 * loop until the awaited thing happens, so tests read top to bottom. Every
 * test ends by closing the server and client, running the loop dry and
 * asserting uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"
#include "http_server.h"
#include "log.h"

typedef struct fx {
	uv_loop_t loop;
	http_server *srv;
	http_client *cli;
	uint16_t port;
	http_request *parked; /* a request whose handler never answered */
	int gone_seen;        /* http_request_is_gone() result in a delayed reply, -1 unset */
	int delayed_done;
} fx;

/* ---- handlers ---- */

static void
h_report(http_request *req, void *arg)
{
	(void)arg;
	const char *x = http_request_query(req, "x");
	http_respond_json(req, 200,
	    json_pack("{s:s,s:s?,s:s,s:s}", "id", http_request_param(req, "id"), "q", x, "rid",
	        http_request_id(req), "client", http_request_client_addr(req)));
}

static void
h_search(http_request *req, void *arg)
{
	(void)arg;
	http_respond_json(req, 200, json_pack("{s:b}", "search", 1));
}

static void
h_post(http_request *req, void *arg)
{
	(void)arg;
	size_t len;
	const char *body = http_request_body(req, &len);
	const char *t = http_request_header(req, "x-test");
	assert_int_equal(http_response_header(req, "Location", "/v1/reports/1"), 0);
	assert_int_equal(http_response_header(req, "Bad\nName", "x"), TRYGG_EINVAL);
	http_respond_json(req, 201,
	    json_pack("{s:i,s:s%,s:s?}", "len", (json_int_t)len, "body", body, len, "xtest", t));
}

typedef struct delayed {
	uv_timer_t timer;
	http_request *req;
	fx *f;
} delayed;

static void
on_delayed_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
on_delay(uv_timer_t *t)
{
	delayed *d = t->data;
	d->f->gone_seen = http_request_is_gone(d->req);
	(void)!http_response_header(d->req, "Retry-After", "5");
	http_respond(d->req, 200, "text/plain", "slow", 4);
	d->f->delayed_done++;
	uv_close((uv_handle_t *)t, on_delayed_closed);
}

static void
delay_reply(http_request *req, fx *f, uint64_t ms)
{
	delayed *d = calloc(1, sizeof(*d));
	d->req = req;
	d->f = f;
	uv_timer_init(&f->loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, on_delay, ms, 0);
}

static void
h_slow(http_request *req, void *arg)
{
	delay_reply(req, arg, 50);
}

static void
h_slower(http_request *req, void *arg)
{
	delay_reply(req, arg, 300);
}

static void
h_park(http_request *req, void *arg)
{
	((fx *)arg)->parked = req;
}

static void
h_boom(http_request *req, void *arg)
{
	(void)arg;
	http_respond_error(req, 503, "unavailable", "database down", NULL);
}

/* ---- fixture ---- */

static int
setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	f->gone_seen = -1;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	http_server_options o = {.bind_address = "127.0.0.1",
	    .port = 0,
	    .max_body_bytes = 1024,
	    .max_header_bytes = 8192,
	    .idle_timeout_s = 5,
	    .name = "test"};
	assert_int_equal(http_server_new(&f->loop, &o, &f->srv), 0);
	assert_int_equal(http_server_route(f->srv, "GET /v1/reports/{id}", h_report, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /v1/reports/search", h_search, f), 0);
	assert_int_equal(http_server_route(f->srv, "PUT /v1/reports/{id}", h_report, f), 0);
	assert_int_equal(http_server_route(f->srv, "POST /v1/reports", h_post, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /slow", h_slow, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /slower", h_slower, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /park", h_park, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /boom", h_boom, f), 0);
	assert_int_equal(http_server_route(f->srv, "no-space", h_boom, f), TRYGG_EINVAL);
	assert_int_equal(http_server_route(f->srv, "GET nopath", h_boom, f), TRYGG_EINVAL);
	assert_int_equal(http_server_route(f->srv, "GET /a{b}", h_boom, f), TRYGG_EINVAL);
	assert_int_equal(http_server_port(f->srv), 0);
	assert_int_equal(http_server_start(f->srv), 0);
	f->port = http_server_port(f->srv);
	assert_true(f->port > 0);
	assert_int_equal(http_client_new(&f->loop, &f->cli), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fx *f = *state;
	http_server_close(f->srv);
	http_client_close(f->cli);
	if (f->parked != NULL) {
		/* Answering after the server closed just frees the request. */
		assert_true(http_request_is_gone(f->parked));
		http_respond(f->parked, 200, NULL, NULL, 0);
	}
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* Runs the loop a little at a time (so raw blocking-free sockets can be
 * interleaved) for up to ms milliseconds or until *flag becomes true. */
static void
run_until(fx *f, const int *flag, uint64_t ms)
{
	uint64_t end = uv_hrtime() / 1000000 + ms;
	while ((flag == NULL || !*flag) && uv_hrtime() / 1000000 < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
}

/* ---- requests through http_client ---- */

typedef struct reply {
	int done;
	int err;
	long status;
	char body[4096];
	char hdr_rid[128];
	char hdr_allow[128];
	char hdr_other[128];
	char error[256];
	const char *want_header;
} reply;

static void
on_reply(void *arg, const http_client_response *resp)
{
	reply *r = arg;
	r->done = 1;
	r->err = resp->err;
	r->status = resp->status;
	snprintf(r->body, sizeof(r->body), "%s", resp->body);
	snprintf(r->error, sizeof(r->error), "%s", resp->error);
	if (getenv("TEST_VERBOSE"))
		print_message("reply err=%d status=%ld error=%s\n", resp->err, resp->status,
		    resp->error);
	if (!http_client_response_header(resp, "x-request-id", r->hdr_rid, sizeof(r->hdr_rid)))
		r->hdr_rid[0] = '\0';
	if (!http_client_response_header(resp, "Allow", r->hdr_allow, sizeof(r->hdr_allow)))
		r->hdr_allow[0] = '\0';
	if (r->want_header == NULL ||
	    !http_client_response_header(resp, r->want_header, r->hdr_other, sizeof(r->hdr_other)))
		r->hdr_other[0] = '\0';
}

static void
request(fx *f, reply *r, const char *method, const char *path, const char *const *headers,
    const char *body, size_t len)
{
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", f->port, path);
	const char *want = r->want_header;
	memset(r, 0, sizeof(*r));
	r->want_header = want;
	assert_int_equal(http_client_request(f->cli, method, url, headers, body, len, 5000,
	                     on_reply, r),
	    0);
	run_until(f, &r->done, 6000);
	assert_true(r->done);
}

static json_t *
body_json(const reply *r)
{
	json_error_t e;
	json_t *v = json_loads(r->body, 0, &e);
	if (v == NULL)
		fail_msg("not JSON: %s", r->body);
	return v;
}

static void
assert_error_body(const reply *r, const char *code)
{
	json_t *v = body_json(r);
	json_t *err = json_object_get(v, "error");
	assert_non_null(err);
	assert_string_equal(json_string_value(json_object_get(err, "code")), code);
	assert_true(json_is_string(json_object_get(err, "message")));
	assert_non_null(json_object_get(err, "field"));
	assert_string_equal(json_string_value(json_object_get(err, "request_id")), r->hdr_rid);
	json_decref(v);
}

/* ---- raw sockets ---- */

static int
raw_connect(fx *f)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	/* connect() to a listening socket completes in the kernel's backlog. */
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void
raw_send(int fd, const char *s, size_t len)
{
	assert_int_equal(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
raw_sends(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

/* Sends a chunked POST whose body (1400 bytes) is over the 1024-byte cap. */
static void
raw_send_chunked_over_cap(int fd, const char *path)
{
	char head[256];
	int hl = snprintf(head, sizeof(head),
	    "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", path);
	raw_send(fd, head, (size_t)hl);
	char chunk[700 + 16];
	int cl = snprintf(chunk, sizeof(chunk), "%x\r\n", 700);
	memset(chunk + cl, 'b', 700);
	memcpy(chunk + cl + 700, "\r\n", 2);
	raw_send(fd, chunk, (size_t)cl + 702);
	raw_send(fd, chunk, (size_t)cl + 702);
	raw_send(fd, "0\r\n\r\n", 5);
}

/*
 * Reads one response (headers plus Content-Length body) while running the
 * loop. Returns its length, 0 on EOF before anything, -1 on timeout.
 */
static ssize_t
raw_read_response_ms(fx *f, int fd, char *buf, size_t cap, uint64_t ms)
{
	size_t got = 0;
	uint64_t end = uv_hrtime() / 1000000 + ms;
	while (uv_hrtime() / 1000000 < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		ssize_t n = recv(fd, buf + got, cap - 1 - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return (ssize_t)got;
		if (n < 0) {
			usleep(500);
			continue;
		}
		got += (size_t)n;
		buf[got] = '\0';
		char *hend = strstr(buf, "\r\n\r\n");
		if (hend == NULL)
			continue;
		const char *cl = strcasestr(buf, "\r\nContent-Length:");
		size_t blen = cl && cl < hend ? strtoul(cl + 17, NULL, 10) : 0;
		if (got >= (size_t)(hend + 4 - buf) + blen)
			return (ssize_t)got;
	}
	return -1;
}

static ssize_t
raw_read_response(fx *f, int fd, char *buf, size_t cap)
{
	return raw_read_response_ms(f, fd, buf, cap, 5000);
}

/* ---- tests ---- */

static void
test_routing(void **state)
{
	fx *f = *state;
	reply r = {0};

	request(f, &r, "GET", "/v1/reports/42?x=hello%20there&y", NULL, NULL, 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.status, 200);
	json_t *v = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "id")), "42");
	assert_string_equal(json_string_value(json_object_get(v, "q")), "hello there");
	assert_string_equal(json_string_value(json_object_get(v, "client")), "127.0.0.1");
	json_decref(v);

	/* A literal segment beats a parameter. */
	request(f, &r, "GET", "/v1/reports/search", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"search\":true}");

	request(f, &r, "GET", "/v1/nothing", NULL, NULL, 0);
	assert_int_equal(r.status, 404);
	assert_error_body(&r, "not_found");

	/* Empty parameter segment and trailing slash do not match. */
	request(f, &r, "GET", "/v1/reports/", NULL, NULL, 0);
	assert_int_equal(r.status, 404);
	request(f, &r, "GET", "/v1/reports/42/", NULL, NULL, 0);
	assert_int_equal(r.status, 404);

	request(f, &r, "DELETE", "/v1/reports/42", NULL, NULL, 0);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.hdr_allow, "GET, HEAD, PUT");
	assert_error_body(&r, "method_not_allowed");

	/* HEAD falls back to GET and has no body. */
	request(f, &r, "HEAD", "/v1/reports/7", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "");

	request(f, &r, "PUT", "/v1/reports/9", NULL, "{}", 2);
	assert_int_equal(r.status, 200);

	/* A 5xx goes through the error path with the request id. */
	request(f, &r, "GET", "/boom", NULL, NULL, 0);
	assert_int_equal(r.status, 503);
	assert_error_body(&r, "unavailable");
}

static void
test_body_and_headers(void **state)
{
	fx *f = *state;
	reply r = {.want_header = "Location"};
	const char *hdrs[] = {"X-Test: yes", "Content-Type: application/json", NULL};
	request(f, &r, "POST", "/v1/reports", hdrs, "{\"a\":1}", 7);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.hdr_other, "/v1/reports/1");
	json_t *v = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(v, "len")), 7);
	assert_string_equal(json_string_value(json_object_get(v, "body")), "{\"a\":1}");
	assert_string_equal(json_string_value(json_object_get(v, "xtest")), "yes");
	json_decref(v);

	/* Exactly at the cap is fine; one byte over is 413. */
	char *big = malloc(5000);
	memset(big, 'a', 5000);
	request(f, &r, "POST", "/v1/reports", NULL, big, 1024);
	assert_int_equal(r.status, 201);
	request(f, &r, "POST", "/v1/reports", NULL, big, 1025);
	assert_int_equal(r.status, 413);
	assert_error_body(&r, "body_too_large");
	request(f, &r, "POST", "/v1/reports", NULL, big, 5000);
	free(big);
	assert_int_equal(r.status, 413);

	/* The server still works afterwards. */
	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
}

static void
test_body_cap_raw(void **state)
{
	fx *f = *state;
	char buf[8192];

	/* Content-Length over the cap is refused before any body is sent. */
	int fd = raw_connect(f);
	const char *req =
	    "POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
	raw_send(fd, req, strlen(req));
	ssize_t n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 413", 12);
	close(fd);

	/* A chunked body that grows over the cap is answered 413 (at its
	 * end), not with a closed connection. */
	fd = raw_connect(f);
	raw_send_chunked_over_cap(fd, "/v1/reports");
	n = raw_read_response(f, fd, buf, sizeof(buf));
	if (getenv("TEST_VERBOSE"))
		print_message("chunked: n=%zd %.40s\n", n, n > 0 ? buf : "");
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 413", 12);
	assert_non_null(strstr(buf, "body_too_large"));
	/* The body was read to its end, so the connection still works. */
	req = "GET /v1/reports/5 HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	close(fd);

	reply r = {0};
	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
}

static void
test_delayed_response(void **state)
{
	fx *f = *state;
	reply r = {.want_header = "Retry-After"};
	uint64_t t0 = uv_hrtime();
	request(f, &r, "GET", "/slow", NULL, NULL, 0);
	uint64_t ms = (uv_hrtime() - t0) / 1000000;
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "slow");
	assert_string_equal(r.hdr_other, "5");
	assert_true(ms >= 45);
	assert_int_equal(f->gone_seen, 0);

	/* Several delayed requests at once, on separate connections. */
	reply rs[5];
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/slow", f->port);
	for (int i = 0; i < 5; i++) {
		memset(&rs[i], 0, sizeof(rs[i]));
		assert_int_equal(http_client_request(f->cli, "GET", url, NULL, NULL, 0, 5000,
		                     on_reply, &rs[i]),
		    0);
	}
	run_until(f, &rs[4].done, 5000);
	run_until(f, &rs[0].done, 5000);
	for (int i = 0; i < 5; i++) {
		assert_true(rs[i].done);
		assert_int_equal(rs[i].status, 200);
	}
}

static void
test_keepalive(void **state)
{
	fx *f = *state;
	char buf[8192];
	int fd = raw_connect(f);
	const char *req = "GET /v1/reports/1 HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	ssize_t n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_non_null(strstr(buf, "\"id\":\"1\""));

	/* Same connection: a delayed response (suspend/resume), then another. */
	req = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_non_null(strstr(buf, "slow"));

	req = "GET /v1/reports/2 HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_non_null(strstr(buf, "\"id\":\"2\""));

	/* A 404 with a small body keeps the connection too. */
	req = "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
	raw_send(fd, req, strlen(req));
	n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 404", 12);
	req = "GET /v1/reports/3 HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\"id\":\"3\""));
	close(fd);
}

static void
test_request_id(void **state)
{
	fx *f = *state;
	reply r = {0};
	const char *good[] = {"X-Request-Id: abc-123.X_y", NULL};
	request(f, &r, "GET", "/v1/reports/1", good, NULL, 0);
	assert_string_equal(r.hdr_rid, "abc-123.X_y");
	json_t *v = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "rid")), "abc-123.X_y");
	json_decref(v);

	const char *bad[] = {"X-Request-Id: no spaces\"allowed", NULL};
	request(f, &r, "GET", "/v1/reports/1", bad, NULL, 0);
	assert_int_equal(strlen(r.hdr_rid), 36);

	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_int_equal(strlen(r.hdr_rid), 36);
	char first[128];
	snprintf(first, sizeof(first), "%s", r.hdr_rid);
	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_string_not_equal(first, r.hdr_rid);

	/* Also on errors. */
	request(f, &r, "GET", "/nope", good, NULL, 0);
	assert_string_equal(r.hdr_rid, "abc-123.X_y");
	assert_error_body(&r, "not_found");
}

static void
test_client_gone_before_delayed_response(void **state)
{
	fx *f = *state;
	int fd = raw_connect(f);
	const char *req = "GET /slower HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	run_until(f, NULL, 50);
	close(fd);
	run_until(f, &f->delayed_done, 2000);
	assert_int_equal(f->delayed_done, 1);
	assert_int_equal(f->gone_seen, 1);
	run_until(f, NULL, 50);

	/* Vanish with a RST instead of a FIN. */
	f->delayed_done = 0;
	fd = raw_connect(f);
	raw_send(fd, req, strlen(req));
	run_until(f, NULL, 50);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	run_until(f, &f->delayed_done, 2000);
	assert_int_equal(f->delayed_done, 1);
	run_until(f, NULL, 50);

	reply r = {0};
	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
}

static void
test_close_with_parked_request(void **state)
{
	fx *f = *state;
	int fd = raw_connect(f);
	const char *req = "GET /park HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	run_until(f, NULL, 100);
	assert_non_null(f->parked);
	assert_false(http_request_is_gone(f->parked));
	/* teardown closes the server while the request is suspended, then
	 * answers it; ASan checks nothing leaks or is used after free. */
	close(fd);
}

static void
test_limits_and_garbage(void **state)
{
	fx *f = *state;
	char buf[8192];

	/* Oversized headers: MHD answers 431 (or closes), we do not crash. */
	int fd = raw_connect(f);
	size_t hl = 20000;
	char *big = malloc(hl + 128);
	int o = snprintf(big, 128, "GET /v1/reports/1 HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(big + o, 'h', hl);
	memcpy(big + o + hl, "\r\n\r\n", 5);
	raw_send(fd, big, strlen(big));
	ssize_t n = raw_read_response(f, fd, buf, sizeof(buf));
	if (getenv("TEST_VERBOSE"))
		print_message("big headers: n=%zd %.40s\n", n, n > 0 ? buf : "");
	assert_true(n >= 0);
	if (n > 0)
		assert_memory_equal(buf, "HTTP/1.1 431", 12);
	close(fd);
	free(big);

	/* Garbage request lines. */
	const char *junk[] = {"\x00\x01\x02 garbage\r\n\r\n", "GET\r\n\r\n",
	    "GET /v1/reports/1 HTTP/9.9\r\n\r\n",
	    "POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
	    "POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: "
	    "99999999999999999999999\r\n\r\n",
	    "GET /%00%ff/../.. HTTP/1.1\r\nHost: x\r\n\r\n"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		fd = raw_connect(f);
		size_t jl = i == 0 ? 16 : strlen(junk[i]);
		raw_send(fd, junk[i], jl);
		/* MHD may answer 400, close, or wait for more until the idle
		 * timeout: all fine as long as it is not a 500 or a crash. */
		n = raw_read_response_ms(f, fd, buf, sizeof(buf), 300);
		if (getenv("TEST_VERBOSE"))
			print_message("junk %zu: n=%zd %.40s\n", i, n, n > 0 ? buf : "");
		if (n > 0)
			assert_null(strstr(buf, "HTTP/1.1 500"));
		close(fd);
	}

	reply r = {0};
	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
}

static void
test_stop(void **state)
{
	fx *f = *state;
	/* A keep-alive connection open across the stop. */
	char buf[8192];
	int fd = raw_connect(f);
	const char *req = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	run_until(f, NULL, 10);
	http_server_stop(f->srv);
	http_server_stop(f->srv);
	ssize_t n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_non_null(strcasestr(buf, "Connection: close"));
	close(fd);

	/* New connections are refused. */
	reply r = {0};
	request(f, &r, "GET", "/v1/reports/1", NULL, NULL, 0);
	assert_int_equal(r.err, TRYGG_EIO);
	assert_int_equal(r.status, 0);
}

static void
test_close_from_handler_path(void **state)
{
	/* http_server_close() while requests are in flight on keep-alive
	 * connections, then the loop must drain. */
	fx *f = *state;
	int fd = raw_connect(f);
	const char *req = "GET /v1/reports/1 HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096];
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	/* The idle connection is still open when teardown closes the server. */
	(void)fd;
}

/* An API's own error format: [{"code":N,"description":"..."}] plus who
 * rendered it; XML for paths ending in .xml. */
static void
render_o311(http_request *req, unsigned status, const char *code, const char *message, void *arg)
{
	char body[512];
	(void)code;
	const char *path = http_request_path(req);
	size_t pl = strlen(path);
	if (pl > 4 && strcmp(path + pl - 4, ".xml") == 0) {
		snprintf(body, sizeof(body),
		    "<errors><error><code>%u</code><description>%s [%s]"
		    "</description></error></errors>",
		    status, message, (const char *)arg);
		http_respond(req, status, "text/xml", body, strlen(body));
		return;
	}
	snprintf(body, sizeof(body), "[{\"code\":%u,\"description\":\"%s [%s]\"}]", status, message,
	    (const char *)arg);
	http_respond(req, status, "application/json", body, strlen(body));
}

static void
assert_o311(const char *buf, unsigned status, const char *who)
{
	char want[64];
	snprintf(want, sizeof(want), "HTTP/1.1 %u", status);
	assert_memory_equal(buf, want, strlen(want));
	const char *body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	snprintf(want, sizeof(want), "[{\"code\":%u,", status);
	if (strncmp(body + 4, want, strlen(want)) != 0)
		fail_msg("not an Open311 error: %s", body + 4);
	assert_non_null(strstr(body, who));
}

static void
test_error_renderer(void **state)
{
	fx *f = *state;
	char buf[8192];
	assert_int_equal(http_server_set_error_renderer(f->srv, "", render_o311, NULL),
	    TRYGG_EINVAL);
	assert_int_equal(http_server_set_error_renderer(f->srv, "/o311/", render_o311, "short"), 0);
	assert_int_equal(http_server_set_error_renderer(f->srv, "/o311/v2/", render_o311, "long"),
	    0);
	assert_int_equal(http_server_route(f->srv, "GET /o311/v2/things.json", h_search, f), 0);
	assert_int_equal(http_server_route(f->srv, "POST /o311/v2/things.json", h_post, f), 0);

	int fd = raw_connect(f);
	/* 404 and 405 under the prefix: the longest prefix's renderer. */
	const char *req = "GET /o311/v2/nothing.json HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_o311(buf, 404, "[long]");
	req = "GET /o311/other HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_o311(buf, 404, "[short]");
	req = "DELETE /o311/v2/things.json HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_o311(buf, 405, "[long]");
	assert_non_null(strcasestr(buf, "\r\nAllow: GET, HEAD, POST\r\n"));
	req = "GET /o311/v2/nothing.xml HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 404", 12);
	assert_non_null(strstr(buf, "<errors><error><code>404</code>"));
	/* Outside the prefixes: the standard JSON error. */
	req = "GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 404", 12);
	assert_non_null(strstr(buf, "{\"error\":{\"code\":\"not_found\""));
	close(fd);

	/* 413 by Content-Length. */
	fd = raw_connect(f);
	req = "POST /o311/v2/things.json HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
	raw_send(fd, req, strlen(req));
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_o311(buf, 413, "[long]");
	close(fd);

	/* 413 for a chunked body that grows over the cap. */
	fd = raw_connect(f);
	raw_send_chunked_over_cap(fd, "/o311/v2/things.json");
	assert_true(raw_read_response(f, fd, buf, sizeof(buf)) > 0);
	assert_o311(buf, 413, "[long]");
	close(fd);

	/* 431: headers over max_header_bytes (8192 here). */
	fd = raw_connect(f);
	size_t hl = 10000;
	char *big = malloc(hl + 128);
	int o = snprintf(big, 128, "GET /o311/v2/things.json HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(big + o, 'h', hl);
	memcpy(big + o + hl, "\r\n\r\n", 5);
	raw_send(fd, big, strlen(big));
	free(big);
	ssize_t n = raw_read_response(f, fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_o311(buf, 431, "[long]");
	close(fd);

	/* Routes under the prefix still answer themselves. */
	reply r = {0};
	request(f, &r, "GET", "/o311/v2/things.json", NULL, NULL, 0);
	assert_int_equal(r.status, 200);
}

/* True once the server has closed fd (EOF or reset); runs the loop. */
static bool
raw_closed_within(fx *f, int fd, uint64_t ms)
{
	char c[256];
	uint64_t end = uv_hrtime() / 1000000 + ms;
	while (uv_hrtime() / 1000000 < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		ssize_t n = recv(fd, c, sizeof(c), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			return true;
		usleep(1000);
	}
	return false;
}

static void
h_ok(http_request *req, void *arg)
{
	(void)arg;
	http_respond(req, 200, "text/plain", "ok", 2);
}

/*
 * Slow heads against a server of its own with small limits: 2 ordinary
 * connections, 1 reserved, 2 waiting per address, a 400 ms head deadline
 * (the idle timeout is 5 s).
 */
static void
test_slow_heads(void **state)
{
	fx *f = *state;
	http_server_options o = {.port = 0,
	    .max_body_bytes = 1024,
	    .max_connections = 2,
	    .reserved_connections = 1,
	    .max_waiting_per_addr = 2,
	    .head_timeout_ms = 400,
	    .idle_timeout_s = 5};
	http_server *srv;
	assert_int_equal(http_server_new(&f->loop, &o, &srv), 0);
	assert_int_equal(http_server_route(srv, "GET /healthz", h_ok, f), 0);
	assert_int_equal(http_server_route(srv, "GET /park", h_park, f), 0);
	assert_int_equal(http_server_route(srv, "GET /x", h_ok, f), 0);
	assert_int_equal(http_server_start(srv), 0);
	uint16_t main_port = f->port;
	f->port = http_server_port(srv);
	char buf[4096];

	/* A head trickled a line every 100 ms is closed at its deadline. */
	int fd = raw_connect(f);
	raw_sends(fd, "GET /x HTTP/1.1\r\n");
	uint64_t t0 = uv_hrtime();
	bool closed = false;
	for (int i = 0; i < 20 && !closed; i++) {
		closed = raw_closed_within(f, fd, 100);
		if (!closed)
			send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL);
	}
	uint64_t ms = (uv_hrtime() - t0) / 1000000;
	assert_true(closed);
	assert_true(ms >= 350 && ms < 1500);
	close(fd);

	/* A third waiting connection from one address closes the oldest. */
	int a = raw_connect(f), b = raw_connect(f);
	run_until(f, NULL, 20);
	int c = raw_connect(f);
	assert_true(raw_closed_within(f, a, 200));
	assert_false(raw_closed_within(f, b, 50));
	/* b and c hold both ordinary slots; a complete request still gets in,
	 * closing the oldest waiting connection (b). */
	int d = raw_connect(f);
	raw_sends(d, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_true(raw_read_response(f, d, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_true(raw_closed_within(f, b, 200));
	close(a);
	close(b);
	close(c);
	close(d);
	run_until(f, NULL, 50);

	/* Both ordinary slots busy with requests in progress: a new connection
	 * is a reserve one, for the ops paths only. */
	int p1 = raw_connect(f);
	raw_sends(p1, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
	run_until(f, NULL, 50);
	assert_non_null(f->parked);
	http_request *first = f->parked;
	f->parked = NULL;
	int p2 = raw_connect(f);
	raw_sends(p2, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
	run_until(f, NULL, 50);
	assert_non_null(f->parked);
	int r = raw_connect(f);
	raw_sends(r, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_true(raw_read_response(f, r, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 503", 12);
	assert_non_null(strstr(buf, "\"busy\""));
	assert_non_null(strcasestr(buf, "Connection: close"));
	close(r);
	run_until(f, NULL, 50);
	r = raw_connect(f);
	raw_sends(r, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_true(raw_read_response(f, r, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	close(r);

	http_respond(first, 200, NULL, NULL, 0);
	http_respond(f->parked, 200, NULL, NULL, 0);
	f->parked = NULL;
	run_until(f, NULL, 50);
	close(p1);
	close(p2);
	http_server_close(srv);
	f->port = main_port;
}

int
main(void)
{
	log_init("test", LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_and_headers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_cap_raw, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delayed_response, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_request_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_gone_before_delayed_response, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(test_close_with_parked_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits_and_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_from_handler_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_renderer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_heads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
