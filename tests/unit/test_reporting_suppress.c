/*
 * Unit tests for reporting's small-count suppression (suppress.c) and how
 * the picture applies it (picture.c): a count of 4 is hidden, 5 is shown,
 * a count recoverable by subtraction is hidden too, and the hidden cells
 * become null with "suppressed": true.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "picture.h"
#include "suppress.h"

/* A total and its parts: one relation. Returns the hidden flags. */
static size_t
run_row(const int64_t *parts, size_t n, int64_t total, bool *hidden)
{
	suppress_table t;
	suppress_init(&t);
	size_t idx[16];
	idx[0] = suppress_cell_add(&t, total, NULL, "total");
	for (size_t i = 0; i < n; i++)
		idx[i + 1] = suppress_cell_add(&t, parts[i], NULL, "part");
	suppress_group(&t, idx, n + 1);
	size_t k = suppress_run(&t, 5);
	for (size_t i = 0; i <= n; i++)
		hidden[i] = t.cells[idx[i]].hidden;
	suppress_fini(&t);
	return k;
}

static void
test_threshold_4_and_5(void **state)
{
	(void)state;
	bool h[4];
	/* 4 and 5 in a row whose total is 9: 4 is hidden, and then 5 is the
	 * only other part, so it is hidden too (9 - 5 = 4). */
	int64_t a[] = {4, 5};
	assert_int_equal(run_row(a, 2, 9, h), 2);
	assert_false(h[0]);
	assert_true(h[1]);
	assert_true(h[2]);
	/* 5 and 6 and 7: nothing below 5, nothing hidden. */
	int64_t b[] = {5, 6, 7};
	assert_int_equal(run_row(b, 3, 18, h), 0);
	for (int i = 0; i < 4; i++)
		assert_false(h[i]);
	/* Zero counts nobody: shown. */
	int64_t z[] = {0, 8};
	assert_int_equal(run_row(z, 2, 8, h), 0);
}

static void
test_recoverable_by_subtraction(void **state)
{
	(void)state;
	bool h[4];
	/* 3 + 9 + 20 = 32: 3 is hidden; alone it would be 32 - 9 - 20, so the
	 * next smallest (9) is hidden too; 20 and the total stay. */
	int64_t a[] = {3, 9, 20};
	assert_int_equal(run_row(a, 3, 32, h), 2);
	assert_false(h[0]);
	assert_true(h[1]);
	assert_true(h[2]);
	assert_false(h[3]);
	/* Two parts already hidden: no secondary suppression needed. */
	int64_t b[] = {2, 3, 20};
	assert_int_equal(run_row(b, 3, 25, h), 2);
	assert_false(h[3]);
	/* A hidden total (4) with one non-zero part: the part (4) is hidden
	 * by itself; zeros stay. */
	int64_t c[] = {4, 0};
	assert_int_equal(run_row(c, 2, 4, h), 2);
	assert_true(h[0]);
	assert_true(h[1]);
	assert_false(h[2]);
}

static void
test_chains_across_groups(void **state)
{
	(void)state;
	/* Category A: count 10 = day 7 + night 3. Night 3 is hidden; then day
	 * (7) must go; day 7 is also a part of the day total 27 = 7 + 20, so
	 * 20 must go too; and so on until no relation has one unknown. */
	suppress_table t;
	suppress_init(&t);
	size_t cnt = suppress_cell_add(&t, 10, NULL, "a");
	size_t day = suppress_cell_add(&t, 7, NULL, "b");
	size_t night = suppress_cell_add(&t, 3, NULL, "c");
	size_t dtot = suppress_cell_add(&t, 27, NULL, "d");
	size_t dother = suppress_cell_add(&t, 20, NULL, "e");
	size_t g1[] = {cnt, day, night}, g2[] = {dtot, day, dother};
	suppress_group(&t, g1, 3);
	suppress_group(&t, g2, 3);
	assert_int_equal(suppress_run(&t, 5), 3);
	assert_true(t.cells[night].hidden);
	assert_true(t.cells[day].hidden);
	assert_true(t.cells[dother].hidden);
	assert_false(t.cells[cnt].hidden);
	assert_false(t.cells[dtot].hidden);
	suppress_fini(&t);

	/* An implicit (unshown) cell protects at no cost: count 10 and night
	 * 3 shown, day 7 not shown: hiding night alone is enough. */
	suppress_init(&t);
	size_t c = suppress_cell_add(&t, 10, NULL, "count");
	size_t n = suppress_cell_add(&t, 3, NULL, "night");
	size_t d = suppress_implicit_add(&t, 7);
	size_t g[] = {c, n, d};
	suppress_group(&t, g, 3);
	assert_int_equal(suppress_run(&t, 5), 1);
	assert_false(t.cells[c].hidden);
	assert_true(t.cells[n].hidden);
	suppress_fini(&t);

	/* ...but a small implicit day (10 - 8 = 2) hides a shown one. */
	suppress_init(&t);
	c = suppress_cell_add(&t, 10, NULL, "count");
	n = suppress_cell_add(&t, 8, NULL, "night");
	d = suppress_implicit_add(&t, 2);
	size_t g3[] = {c, n, d};
	suppress_group(&t, g3, 3);
	assert_int_equal(suppress_run(&t, 5), 1);
	assert_true(t.cells[n].hidden);
	suppress_fini(&t);
}

static json_t *
c3(int v, int p, int l)
{
	return json_pack("{s:i,s:i,s:i}", "value", v, "previous", p, "last_year", l);
}

static void
test_picture_public(void **state)
{
	(void)state;
	/* totals 12 (day 8, night 4); litter 8 (5 + 3), graffiti 4 (3 + 1). */
	json_t *pic = json_pack("{s:{s:o,s:o,s:o},s:[{s:s,s:s,s:o,s:o,s:o},{s:s,s:s,s:o,s:o,s:o}],"
	                        "s:[{s:s,s:o}],s:[],s:[],s:{s:[]},s:[],s:{s:{s:i},s:{s:i},s:i,s:[],"
	                        "s:[]}}",
	    "totals", "reports", c3(12, 20, 5), "day", c3(8, 10, 5), "night", c3(4, 10, 0),
	    "by_category", "category", "litter", "focus_area", "pe", "count", c3(8, 10, 5), "day",
	    c3(5, 5, 5), "night", c3(3, 5, 0), "category", "graffiti", "focus_area", "pe", "count",
	    c3(4, 10, 0), "day", c3(3, 5, 0), "night", c3(1, 5, 0), "by_focus_area", "focus_area",
	    "pe", "count", c3(12, 20, 5), "by_place", "hotspots", "trend", "series", "survey",
	    "response", "ack", "n", 0, "done", "n", 0, "overdue_now", 0, "by_unit", "by_category");
	assert_non_null(pic);
	json_t *staff = json_deep_copy(pic);
	assert_int_equal(picture_finish(staff, "staff", 5), 0);
	assert_int_equal(json_integer_value(
	                     json_object_get(json_object_get(json_object_get(staff, "totals"),
	                                         "night"),
	                         "value")),
	    4);
	size_t n = picture_finish(pic, "public", 5);
	assert_true(n > 0);
	json_t *tot = json_object_get(pic, "totals");
	json_t *night = json_object_get(tot, "night");
	assert_true(json_is_null(json_object_get(night, "value")));
	assert_true(json_is_true(json_object_get(night, "suppressed")));
	/* 12 = 8 + night: day 8 would give night away, so it goes too */
	assert_true(json_is_null(json_object_get(json_object_get(tot, "day"), "value")));
	assert_int_equal(json_integer_value(
	                     json_object_get(json_object_get(tot, "reports"), "value")),
	    12);
	/* previous: 20 = 10 + 10, all at or over 5: shown */
	assert_int_equal(json_integer_value(json_object_get(night, "previous")), 10);
	json_t *g = json_array_get(json_object_get(pic, "by_category"), 1);
	assert_true(json_is_null(json_object_get(json_object_get(g, "count"), "value")));
	/* litter 8 = 12 - graffiti: hidden as well */
	json_t *l = json_array_get(json_object_get(pic, "by_category"), 0);
	assert_true(json_is_null(json_object_get(json_object_get(l, "count"), "value")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(pic, "suppression"),
	                     "suppressed_cells")),
	    (json_int_t)n);
	assert_string_equal(json_string_value(json_object_get(pic, "audience")), "public");
	json_decref(pic);
	json_decref(staff);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threshold_4_and_5),
	    cmocka_unit_test(test_recoverable_by_subtraction),
	    cmocka_unit_test(test_chains_across_groups),
	    cmocka_unit_test(test_picture_public),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
