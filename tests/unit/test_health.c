/*
 * test_health.c: unit tests for health.c: /healthz, /readyz turning from
 * 503 to 200 as checks pass, draining, and /metrics, through a real
 * http_server and http_client on one loop.
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

#include "health.h"
#include "http_client.h"
#include "log.h"

typedef struct fx {
	uv_loop_t loop;
	http_server *srv;
	http_client *cli;
	health *health;
	metrics *reg;
	bool db_up, bus_up;
} fx;

typedef struct reply {
	int done;
	long status;
	char body[8192];
	char ctype[128];
} reply;

static bool
check_flag(void *arg)
{
	return *(bool *)arg;
}

static void
on_reply(void *arg, const http_client_response *resp)
{
	reply *r = arg;
	r->done = 1;
	r->status = resp->status;
	snprintf(r->body, sizeof(r->body), "%s", resp->body);
	if (!http_client_response_header(resp, "Content-Type", r->ctype, sizeof(r->ctype)))
		r->ctype[0] = '\0';
}

static void
get(fx *f, const char *path, reply *r)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", http_server_port(f->srv), path);
	memset(r, 0, sizeof(*r));
	assert_int_equal(http_client_request(f->cli, "GET", url, NULL, NULL, 0, 5000, on_reply, r),
	    0);
	while (!r->done) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
}

static void
test_health_endpoints(void **state)
{
	(void)state;
	fx f = {0};
	assert_int_equal(uv_loop_init(&f.loop), 0);
	assert_int_equal(http_server_new(&f.loop, NULL, &f.srv), 0);
	f.reg = metrics_new();
	metric_counter *c = metrics_counter(f.reg, "trygg_test_total", "A test counter.", NULL);
	metric_counter_add(c, 5);
	assert_int_equal(health_new(f.srv, f.reg, &f.health), 0);
	assert_int_equal(health_add_check(f.health, "postgres", check_flag, &f.db_up), 0);
	assert_int_equal(health_add_check(f.health, "bus", check_flag, &f.bus_up), 0);
	assert_int_equal(health_add_check(f.health, "bus", check_flag, &f.bus_up), TRYGG_EEXIST);
	assert_int_equal(health_add_check(f.health, NULL, check_flag, NULL), TRYGG_EINVAL);
	assert_int_equal(http_server_start(f.srv), 0);
	assert_int_equal(http_client_new(&f.loop, &f.cli), 0);

	reply r;
	get(&f, "/healthz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"status\":\"ok\"}");
	assert_string_equal(r.ctype, "application/json");

	f.bus_up = true;
	get(&f, "/readyz", &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body,
	    "{\"status\":\"unavailable\",\"checks\":{\"postgres\":false,\"bus\":true}}");

	f.db_up = true;
	get(&f, "/readyz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body,
	    "{\"status\":\"ok\",\"checks\":{\"postgres\":true,\"bus\":true}}");

	health_set_draining(f.health, true);
	get(&f, "/readyz", &r);
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "\"draining\":true"));
	health_set_draining(f.health, false);

	get(&f, "/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(r.body,
	    "# HELP trygg_test_total A test counter.\n"
	    "# TYPE trygg_test_total counter\n"
	    "trygg_test_total 5\n");

	http_server_close(f.srv);
	http_client_close(f.cli);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	health_free(f.health);
	metrics_free(f.reg);
	assert_int_equal(uv_loop_close(&f.loop), 0);
}

int
main(void)
{
	log_init("test", LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health_endpoints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
