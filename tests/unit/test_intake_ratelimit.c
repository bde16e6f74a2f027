/*
 * test_intake_ratelimit.c: the per-partner token bucket (ratelimit.c) on
 * a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#define SEC 1000000000ull

static void
test_burst_then_refill(void **state)
{
	(void)state;
	ratelimit r;
	unsigned retry = 0;
	ratelimit_init(&r, 1.0, 3.0, 100 * SEC); /* 1 per second, burst 3 */
	for (int i = 0; i < 3; i++)
		assert_true(ratelimit_take(&r, 100 * SEC, &retry));
	assert_false(ratelimit_take(&r, 100 * SEC, &retry));
	assert_int_equal(retry, 1);
	assert_false(ratelimit_take(&r, 100 * SEC + SEC / 2, &retry));
	assert_int_equal(retry, 1);
	assert_true(ratelimit_take(&r, 101 * SEC, &retry));
	/* A long pause refills only up to the burst. */
	for (int i = 0; i < 3; i++)
		assert_true(ratelimit_take(&r, 1000 * SEC, &retry));
	assert_false(ratelimit_take(&r, 1000 * SEC, &retry));
}

static void
test_slow_rate_retry_after(void **state)
{
	(void)state;
	ratelimit r;
	unsigned retry = 0;
	ratelimit_init(&r, 1.0 / 60.0, 1.0, 0); /* one per minute */
	assert_true(ratelimit_take(&r, 0, &retry));
	assert_false(ratelimit_take(&r, 0, &retry));
	assert_int_equal(retry, 60);
	assert_false(ratelimit_take(&r, 30 * SEC, &retry));
	assert_int_equal(retry, 30);
	assert_true(ratelimit_take(&r, 60 * SEC, &retry));
}

static void
test_set_keeps_tokens(void **state)
{
	(void)state;
	ratelimit r;
	unsigned retry;
	ratelimit_init(&r, 10.0, 100.0, 0);
	ratelimit_set(&r, 10.0, 2.0); /* capped to the new burst */
	assert_true(ratelimit_take(&r, 0, &retry));
	assert_true(ratelimit_take(&r, 0, &retry));
	assert_false(ratelimit_take(&r, 0, &retry));
	/* A clock that goes backwards refills nothing and breaks nothing. */
	assert_false(ratelimit_take(&r, 0, &retry));
}

static void
test_table(void **state)
{
	(void)state;
	static ratelimit_table t;
	unsigned retry;
	ratelimit_table_init(&t, 1.0, 2.0);
	assert_true(ratelimit_table_take(&t, "10.0.0.1", 0, &retry));
	assert_true(ratelimit_table_take(&t, "10.0.0.1", 0, &retry));
	assert_false(ratelimit_table_take(&t, "10.0.0.1", 0, &retry));
	assert_int_equal(retry, 1);
	/* Another address has its own bucket (these two do not collide). */
	assert_true(ratelimit_table_take(&t, "10.0.0.2", 0, &retry));
	assert_true(ratelimit_table_take(&t, "10.0.0.1", 2 * SEC, &retry));
}

/* Peeking (the failed-authentication limit) never spends a token. */
static void
test_table_peek(void **state)
{
	(void)state;
	static ratelimit_table t;
	unsigned retry = 0;
	ratelimit_table_init(&t, 0.5, 1.0);
	for (int i = 0; i < 5; i++)
		assert_true(ratelimit_table_peek(&t, "10.0.0.9", 0, &retry));
	assert_true(ratelimit_table_take(&t, "10.0.0.9", 0, &retry));
	assert_false(ratelimit_table_peek(&t, "10.0.0.9", 0, &retry));
	assert_int_equal(retry, 2);
	assert_true(ratelimit_table_peek(&t, "10.0.0.9", 2 * SEC, &retry));
	assert_true(ratelimit_table_take(&t, "10.0.0.9", 2 * SEC, &retry));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_refill),
	    cmocka_unit_test(test_slow_rate_retry_after),
	    cmocka_unit_test(test_set_keeps_tokens),
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_table_peek),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
