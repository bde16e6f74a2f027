/*
 * test_http_client.c: unit tests for http_client.c against our own
 * http_server on the same loop: success with headers, timeout, connection
 * refused, body cap, a prepared easy handle, and closing with transfers in
 * flight (also from inside a callback).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_client.h"
#include "http_server.h"
#include "log.h"

typedef struct fx {
	uv_loop_t loop;
	http_server *srv;
	http_client *cli;
	http_request *parked[4];
	int nparked;
	char url[128];
} fx;

typedef struct reply {
	int done;
	int err;
	long status;
	size_t body_len;
	char body[256];
	char hdr[128];
	fx *f;
	bool close_in_cb;
} reply;

static void
h_echo(http_request *req, void *arg)
{
	(void)arg;
	size_t len;
	const char *body = http_request_body(req, &len);
	(void)!http_response_header(req, "X-Echo-Method", http_request_method(req));
	http_respond(req, 200, "text/plain", body, len);
}

static void
h_park(http_request *req, void *arg)
{
	fx *f = arg;
	f->parked[f->nparked++] = req;
}

static void
h_huge(http_request *req, void *arg)
{
	(void)arg;
	size_t n = HTTP_CLIENT_MAX_BODY + 100;
	char *b = malloc(n);
	memset(b, 'z', n);
	http_respond(req, 200, "text/plain", b, n);
	free(b);
}

static int
setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(http_server_new(&f->loop, NULL, &f->srv), 0);
	assert_int_equal(http_server_route(f->srv, "POST /echo", h_echo, f), 0);
	assert_int_equal(http_server_route(f->srv, "PATCH /echo", h_echo, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /park", h_park, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /huge", h_huge, f), 0);
	assert_int_equal(http_server_start(f->srv), 0);
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u", http_server_port(f->srv));
	assert_int_equal(http_client_new(&f->loop, &f->cli), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fx *f = *state;
	http_client_close(f->cli);
	http_server_close(f->srv);
	for (int i = 0; i < f->nparked; i++)
		http_respond(f->parked[i], 200, NULL, NULL, 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

static void
on_reply(void *arg, const http_client_response *resp)
{
	reply *r = arg;
	r->done = 1;
	r->err = resp->err;
	r->status = resp->status;
	r->body_len = resp->body_len;
	snprintf(r->body, sizeof(r->body), "%s", resp->body);
	if (!http_client_response_header(resp, "X-Echo-Method", r->hdr, sizeof(r->hdr)))
		r->hdr[0] = '\0';
	assert_non_null(resp->error);
	if (resp->err != 0)
		assert_true(resp->error[0] != '\0');
	if (r->close_in_cb) {
		http_client_close(r->f->cli);
		r->f->cli = NULL; /* freed once the loop runs; teardown must not close it again */
	}
}

/* Runs the loop until r is answered. Not UV_RUN_ONCE: a callback run from
 * a due timer at the start of an iteration would leave it blocked in poll. */
static void
wait_for(fx *f, reply *r)
{
	uint64_t end = uv_hrtime() + 10 * (uint64_t)1000000000;
	while (!r->done && uv_hrtime() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
	assert_true(r->done);
}

static void
url(fx *f, char *buf, size_t len, const char *path)
{
	snprintf(buf, len, "%s%s", f->url, path);
}

static void
test_success(void **state)
{
	fx *f = *state;
	char u[160];
	reply r = {0};
	url(f, u, sizeof(u), "/echo");
	const char *h[] = {"Content-Type: text/plain", NULL};
	assert_int_equal(http_client_request(f->cli, "POST", u, h, "hello", 5, 2000, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "hello");
	assert_string_equal(r.hdr, "POST");

	memset(&r, 0, sizeof(r));
	assert_int_equal(http_client_request(f->cli, "PATCH", u, NULL, "x", 1, 2000, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.hdr, "PATCH");

	/* An HTTP error status is not a transport error. */
	memset(&r, 0, sizeof(r));
	url(f, u, sizeof(u), "/nope");
	assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 0, 2000, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.status, 404);

	/* Bad arguments fail at once and never call back. */
	assert_int_equal(http_client_request(f->cli, "get me", u, NULL, NULL, 0, 0, on_reply, &r),
	    TRYGG_EINVAL);
	assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 3, 0, on_reply, &r),
	    TRYGG_EINVAL);
}

static void
test_errors(void **state)
{
	fx *f = *state;
	char u[160];
	reply r = {0};

	url(f, u, sizeof(u), "/park");
	assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 0, 200, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.err, TRYGG_ETIMEDOUT);

	memset(&r, 0, sizeof(r));
	url(f, u, sizeof(u), "/huge");
	assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 0, 5000, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.err, TRYGG_ETOOBIG);

	/* Nothing listens on port 1. */
	memset(&r, 0, sizeof(r));
	assert_int_equal(http_client_request(f->cli, "GET", "http://127.0.0.1:1/", NULL, NULL, 0,
	                     2000, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.err, TRYGG_EIO);
	assert_int_equal(r.status, 0);

	/* Only http and https. */
	memset(&r, 0, sizeof(r));
	assert_int_equal(http_client_request(f->cli, "GET", "file:///etc/passwd", NULL, NULL, 0,
	                     2000, on_reply, &r),
	    0);
	wait_for(f, &r);
	assert_int_equal(r.err, TRYGG_EIO);
}

static void
test_submit_easy(void **state)
{
	fx *f = *state;
	char u[160];
	reply r = {0};
	url(f, u, sizeof(u), "/echo");
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, u);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, "prepared");
	assert_int_equal(http_client_submit(f->cli, e, on_reply, &r), 0);
	wait_for(f, &r);
	assert_int_equal(r.err, 0);
	assert_string_equal(r.body, "prepared");
}

static void
test_close_in_flight(void **state)
{
	fx *f = *state;
	char u[160];
	reply r[3];
	memset(r, 0, sizeof(r));
	url(f, u, sizeof(u), "/park");
	for (int i = 0; i < 3; i++) {
		r[i].f = f;
		assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 0, 5000,
		                     on_reply, &r[i]),
		    0);
	}
	while (f->nparked < 3) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
	http_client_close(f->cli);
	for (int i = 0; i < 3; i++) {
		assert_true(r[i].done);
		assert_int_equal(r[i].err, TRYGG_ECLOSED);
	}
	assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 0, 0, on_reply, &r[0]),
	    TRYGG_ECLOSED);
	f->cli = NULL;
}

static void
test_close_from_callback(void **state)
{
	fx *f = *state;
	char u[160];
	reply a = {.f = f, .close_in_cb = true}, b = {.f = f};
	url(f, u, sizeof(u), "/park");
	assert_int_equal(http_client_request(f->cli, "GET", u, NULL, NULL, 0, 5000, on_reply, &b),
	    0);
	url(f, u, sizeof(u), "/echo");
	assert_int_equal(http_client_request(f->cli, "POST", u, NULL, "a", 1, 5000, on_reply, &a),
	    0);
	wait_for(f, &a);
	assert_int_equal(a.err, 0);
	assert_true(b.done);
	assert_int_equal(b.err, TRYGG_ECLOSED);
}

int
main(void)
{
	log_init("test", LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_success, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_easy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
