/*
 * test_metrics.c: unit tests for metrics.c. The rendering test pins the
 * exact Prometheus text output for a small registry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static double
queue_depth(void *arg)
{
	return *(double *)arg;
}

static void
test_render_exact(void **state)
{
	(void)state;
	metrics *m = metrics_new();
	metric_counter *pub = metrics_counter(m, "trygg_published_total", "Messages published.",
	    (const char *[]){"publisher", "intake", NULL});
	metric_counter *pub2 = metrics_counter(m, "trygg_published_total", "ignored",
	    (const char *[]){"publisher", "dispatch", NULL});
	metric_gauge *conn = metrics_gauge(m, "trygg_connections", "Open connections.", NULL);
	double depth = 2.5;
	metrics_gauge_fn(m, "trygg_queue_depth", "Queue depth.\nSecond \\ line.",
	    (const char *[]){"q", "a\"b\\c\nd", NULL}, queue_depth, &depth);
	const double b[] = {0.1, 0.5, 1};
	metric_histogram *lat = metrics_histogram(m, "trygg_latency_seconds", "Latency.",
	    (const char *[]){"route", "GET /x", NULL}, b, 3);
	metric_histogram *plain = metrics_histogram(m, "trygg_plain_seconds", "Plain.", NULL, b, 1);

	metric_counter_add(pub, 3);
	metric_counter_inc(pub2);
	metric_gauge_set(conn, 7);
	metric_gauge_add(conn, -2);
	metric_histogram_observe(lat, 0.05);
	metric_histogram_observe(lat, 0.1); /* le is inclusive */
	metric_histogram_observe(lat, 0.75);
	metric_histogram_observe(lat, 3);
	metric_histogram_observe(plain, 0.25);

	/* Same name and labels: same series. */
	assert_ptr_equal(pub,
	    metrics_counter(m, "trygg_published_total", "x",
	        (const char *[]){"publisher", "intake", NULL}));

	size_t len = 0;
	char *text = metrics_render(m, &len);
	const char *want = "# HELP trygg_published_total Messages published.\n"
	                   "# TYPE trygg_published_total counter\n"
	                   "trygg_published_total{publisher=\"intake\"} 3\n"
	                   "trygg_published_total{publisher=\"dispatch\"} 1\n"
	                   "# HELP trygg_connections Open connections.\n"
	                   "# TYPE trygg_connections gauge\n"
	                   "trygg_connections 5\n"
	                   "# HELP trygg_queue_depth Queue depth.\\nSecond \\\\ line.\n"
	                   "# TYPE trygg_queue_depth gauge\n"
	                   "trygg_queue_depth{q=\"a\\\"b\\\\c\\nd\"} 2.5\n"
	                   "# HELP trygg_latency_seconds Latency.\n"
	                   "# TYPE trygg_latency_seconds histogram\n"
	                   "trygg_latency_seconds_bucket{route=\"GET /x\",le=\"0.1\"} 2\n"
	                   "trygg_latency_seconds_bucket{route=\"GET /x\",le=\"0.5\"} 2\n"
	                   "trygg_latency_seconds_bucket{route=\"GET /x\",le=\"1\"} 3\n"
	                   "trygg_latency_seconds_bucket{route=\"GET /x\",le=\"+Inf\"} 4\n"
	                   "trygg_latency_seconds_sum{route=\"GET /x\"} 3.9\n"
	                   "trygg_latency_seconds_count{route=\"GET /x\"} 4\n"
	                   "# HELP trygg_plain_seconds Plain.\n"
	                   "# TYPE trygg_plain_seconds histogram\n"
	                   "trygg_plain_seconds_bucket{le=\"0.1\"} 0\n"
	                   "trygg_plain_seconds_bucket{le=\"+Inf\"} 1\n"
	                   "trygg_plain_seconds_sum 0.25\n"
	                   "trygg_plain_seconds_count 1\n";
	assert_string_equal(text, want);
	assert_int_equal(len, strlen(want));
	free(text);

	depth = 1e-3;
	text = metrics_render(m, NULL);
	assert_non_null(strstr(text, "} 0.001\n"));
	free(text);
	metrics_free(m);
}

static void
test_null_updates_are_noops(void **state)
{
	(void)state;
	metric_counter_inc(NULL);
	metric_gauge_set(NULL, 1);
	metric_histogram_observe(NULL, 1);
	metrics_free(NULL);
	metrics *m = metrics_new();
	char *text = metrics_render(m, NULL);
	assert_string_equal(text, "");
	free(text);
	metrics_free(m);
}

static metric_counter *shared_counter;
static metric_gauge *shared_gauge;

static void *
hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000; i++) {
		metric_counter_inc(shared_counter);
		metric_gauge_add(shared_gauge, 1);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	(void)state;
	metrics *m = metrics_new();
	shared_counter = metrics_counter(m, "c_total", "c", NULL);
	shared_gauge = metrics_gauge(m, "g", "g", NULL);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(metric_counter_get(shared_counter), 400000);
	assert_true(metric_gauge_get(shared_gauge) == 400000.0);
	metrics_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_exact),
	    cmocka_unit_test(test_null_updates_are_noops),
	    cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
