/*
 * Unit tests for the notifier's routing (routing.c): rule matching,
 * priorities and specificity, time-of-week windows, copies, sensitive
 * categories, defaults, targets, and task keys (places, grid cells,
 * addresses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <cmocka.h>

#include "routing.h"

static routing_table *
demo_table(void)
{
	routing_table *t = routing_table_new();
	routing_table_add_unit(t, "cleaning-south", false, NULL, 1800, 86400);
	routing_table_add_unit(t, "cleaning-north", false, NULL, 1800, 86400);
	routing_table_add_unit(t, "graffiti", false, NULL, 1800, 86400);
	routing_table_add_unit(t, "outreach", false, NULL, 1200, 86400);
	routing_table_add_unit(t, "police", true, NULL, 900, 86400);
	routing_table_add_unit(t, "social", true, "sensitive", 900, 86400);
	routing_table_add_unit(t, "district", false, "all", 3600, 172800);
	routing_rule rules[] = {
	    {1, "litter", "sergels-torg", 127, 0, 1440, "cleaning-south", false, 100, 0, 0},
	    {2, "litter", "odenplan", 127, 0, 1440, "cleaning-north", false, 100, 0, 0},
	    {3, "litter", NULL, 127, 0, 1440, "cleaning-south", false, 10, 0, 0},
	    {4, "graffiti", NULL, 127, 0, 1440, "graffiti", false, 100, 0, 0},
	    {5, "graffiti_offensive", NULL, 127, 0, 1440, "graffiti", false, 100, 600, 14400},
	    {6, "sleeping_outdoors", NULL, 127, 0, 1440, "outreach", false, 100, 0, 0},
	    {7, "sleeping_outdoors", "sergels-torg", 127, 0, 1440, "cleaning-south", true, 100, 0,
	        0},
	    {8, "drug_dealing", NULL, 127, 0, 1440, "police", false, 100, 0, 0},
	    {9, "drug_dealing", NULL, 127, 0, 1440, "cleaning-south", false, 999, 0, 0},
	    {10, "drug_dealing", NULL, 127, 0, 1440, "cleaning-north", true, 100, 0, 0},
	    /* Fri, Sat 22:00-06:00 youth at risk at Sergels torg: the police */
	    {11, "youth_at_risk", "sergels-torg", 48, 1320, 360, "police", false, 110, 0, 0},
	    {12, "youth_at_risk", NULL, 127, 0, 1440, "social", false, 100, 0, 0},
	};
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		routing_table_add_rule(t, &rules[i]);
	return t;
}

static routing_result
route(routing_table *t, const char *category, const char *place, bool sensitive, int weekday,
    int minute, uint32_t target_min, int expect_rv)
{
	const char *places[1] = {place};
	routing_report r = {.category = category,
	    .places = places,
	    .nplaces = place ? 1 : 0,
	    .sensitive = sensitive,
	    .weekday = weekday,
	    .minute = minute,
	    .response_target_min = target_min};
	routing_result res;
	assert_int_equal(routing_route(t, &r, &res), expect_rv);
	return res;
}

static void
test_place_beats_any_and_priority(void **state)
{
	(void)state;
	routing_table *t = demo_table();
	routing_result r = route(t, "litter", "odenplan", false, 0, 600, 1440, 0);
	assert_string_equal(r.unit, "cleaning-north");
	assert_string_equal(r.place, "odenplan");
	assert_true(r.matched);
	r = route(t, "litter", "vasaparken", false, 0, 600, 1440, 0);
	assert_string_equal(r.unit, "cleaning-south"); /* the any-place fallback */
	assert_string_equal(r.place, "vasaparken");
	assert_int_equal(r.completion_target_s, 1440 * 60);
	assert_int_equal(r.ack_target_s, 1800);
	routing_table_free(t);
}

static void
test_copies_and_at_once(void **state)
{
	(void)state;
	routing_table *t = demo_table();
	routing_result r = route(t, "sleeping_outdoors", "sergels-torg", false, 2, 100, 60, 0);
	assert_string_equal(r.unit, "outreach");
	assert_int_equal(r.ncopies, 1);
	assert_string_equal(r.copies[0], "cleaning-south");
	r = route(t, "sleeping_outdoors", "odenplan", false, 2, 100, 60, 0);
	assert_int_equal(r.ncopies, 0);
	/* Offensive graffiti: the rule's targets. */
	r = route(t, "graffiti_offensive", NULL, false, 2, 100, 0, 0);
	assert_int_equal(r.ack_target_s, 600);
	assert_int_equal(r.completion_target_s, 14400);
	/* "At once" without rule targets shortens both. */
	r = route(t, "graffiti", NULL, false, 2, 100, 0, 0);
	assert_int_equal(r.ack_target_s, ROUTING_AT_ONCE_ACK_S);
	assert_int_equal(r.completion_target_s, ROUTING_AT_ONCE_COMPLETION_S);
	routing_table_free(t);
}

static void
test_sensitive_only_to_handlers(void **state)
{
	(void)state;
	routing_table *t = demo_table();
	/* The priority-999 rule names a crew: ignored for a sensitive report,
	 * and so is the copy rule. */
	routing_result r = route(t, "drug_dealing", "sergels-torg", true, 0, 600, 60, 0);
	assert_string_equal(r.unit, "police");
	assert_int_equal(r.ncopies, 0);
	/* Unmatched sensitive: the sensitive default, never the general one. */
	r = route(t, "vulnerable_victim", NULL, true, 0, 600, 60, 0);
	assert_string_equal(r.unit, "social");
	assert_false(r.matched);
	routing_table_free(t);
}

static void
test_default_and_no_default(void **state)
{
	(void)state;
	routing_table *t = demo_table();
	routing_result r = route(t, "other", "hotorget", false, 0, 600, 1440, 0);
	assert_string_equal(r.unit, "district");
	assert_false(r.matched);
	assert_int_equal(r.ack_target_s, 3600);
	routing_table_free(t);
	t = routing_table_new();
	routing_table_add_unit(t, "crew", false, NULL, 60, 60);
	route(t, "other", NULL, false, 0, 0, 0, TRYGG_ENOENT);
	routing_table_free(t);
}

static void
test_time_window(void **state)
{
	(void)state;
	routing_table *t = demo_table();
	/* Friday 23:00: police. Saturday 03:00 (Friday's night): police.
	 * Sunday 03:00 (Saturday's night): police. Sunday 23:00: social.
	 * Friday 03:00 (Thursday's night): social. */
	assert_string_equal(route(t, "youth_at_risk", "sergels-torg", true, 4, 1380, 0, 0).unit,
	    "police");
	assert_string_equal(route(t, "youth_at_risk", "sergels-torg", true, 5, 180, 0, 0).unit,
	    "police");
	assert_string_equal(route(t, "youth_at_risk", "sergels-torg", true, 6, 180, 0, 0).unit,
	    "police");
	assert_string_equal(route(t, "youth_at_risk", "sergels-torg", true, 6, 1380, 0, 0).unit,
	    "social");
	assert_string_equal(route(t, "youth_at_risk", "sergels-torg", true, 4, 180, 0, 0).unit,
	    "social");
	assert_true(routing_window_matches(1, 480, 1020, 0, 480));
	assert_false(routing_window_matches(1, 480, 1020, 0, 1020));
	assert_false(routing_window_matches(1, 480, 1020, 1, 600));
	routing_table_free(t);
}

static void
test_task_keys(void **state)
{
	(void)state;
	char k[ROUTING_KEY_MAX], k2[ROUTING_KEY_MAX];
	routing_task_key("sergels-torg", true, 59.3324, 18.0637, "", "r", k, sizeof(k));
	assert_string_equal(k, "sergels-torg");
	routing_task_key(NULL, true, 59.3324, 18.0637, "", "r", k, sizeof(k));
	assert_string_equal(k, "cell:59332:9031");
	/* 50 m apart in the same cell; 120 m north is the next one. */
	routing_task_key(NULL, true, 59.33280, 18.06380, "", "r", k2, sizeof(k2));
	assert_string_equal(k, k2);
	routing_task_key(NULL, true, 59.3335, 18.0637, "", "r", k2, sizeof(k2));
	assert_string_not_equal(k, k2);
	routing_task_key(NULL, false, 0, 0, "  Sveavägen 12, ", "r", k, sizeof(k));
	assert_string_equal(k, "addr:sveavägen 12");
	routing_task_key(NULL, false, 0, 0, "SVEAVÄGEN  12", "r", k2, sizeof(k2));
	assert_string_equal(k2, "addr:sveavÄgen 12"); /* ASCII folded only */
	routing_task_key(NULL, false, 0, 0, "", "abc", k, sizeof(k));
	assert_string_equal(k, "report:abc");
}

/* Local weekday and minute of a UTC instant (seconds), in Stockholm. */
static void
stockholm(int64_t utc_s, int *weekday, int *minute)
{
	routing_local_time(utc_s * 1000000, weekday, minute);
}

static void
test_dst_europe_stockholm(void **state)
{
	(void)state;
	setenv("TZ", "Europe/Stockholm", 1);
	tzset();
	int wd, min;
	/* Spring forward, Sunday 29 March 2026: 02:00 CET is 03:00 CEST. */
	stockholm(1774745940, &wd, &min); /* 00:59 UTC */
	assert_int_equal(wd, 6);
	assert_int_equal(min, 1 * 60 + 59);
	stockholm(1774746000, &wd, &min); /* 01:00 UTC */
	assert_int_equal(min, 3 * 60);
	/* Fall back, Sunday 25 October 2026: 03:00 CEST is 02:00 CET. */
	stockholm(1792889940, &wd, &min); /* 00:59 UTC */
	assert_int_equal(min, 2 * 60 + 59);
	stockholm(1792890000, &wd, &min); /* 01:00 UTC */
	assert_int_equal(wd, 6);
	assert_int_equal(min, 2 * 60);
	/* A weekday 07:00-18:00 rule opens at 07:00 local on both sides of
	 * the change: 06:00 UTC in winter, 05:00 UTC in summer. */
	routing_table *t = routing_table_new();
	routing_table_add_unit(t, "day-crew", false, NULL, 1800, 86400);
	routing_table_add_unit(t, "district", false, "all", 3600, 86400);
	routing_rule day = {1, "litter", NULL, 31, 420, 1080, "day-crew", false, 100, 0, 0};
	routing_table_add_rule(t, &day);
	static const struct {
		int64_t utc_s;
		const char *unit;
	} cases[] = {
	    {1774589400, "district"}, /* Fri 27 March 05:30 UTC = 06:30 CET */
	    {1774593000, "day-crew"}, /* Fri 27 March 06:30 UTC = 07:30 CET */
	    {1774845000, "district"}, /* Mon 30 March 04:30 UTC = 06:30 CEST */
	    {1774848600, "day-crew"}, /* Mon 30 March 05:30 UTC = 07:30 CEST */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *places[1] = {"odenplan"};
		routing_report r = {.category = "litter",
		    .places = places,
		    .nplaces = 1,
		    .response_target_min = 60};
		stockholm(cases[i].utc_s, &r.weekday, &r.minute);
		routing_result res;
		assert_int_equal(routing_route(t, &r, &res), 0);
		assert_string_equal(res.unit, cases[i].unit);
	}
	routing_table_free(t);
	/* An unknown zone is refused, not taken for UTC. */
	assert_true(routing_timezone_ok("Europe/Stockholm"));
	assert_true(routing_timezone_ok(""));
	assert_true(routing_timezone_ok("UTC"));
	assert_false(routing_timezone_ok("Europe/Stokholm"));
	assert_false(routing_timezone_ok("../../etc/passwd"));
	assert_true(routing_timezone_ok("CET-1CEST,M3.5.0,M10.5.0/3"));
}

static void
test_place_independent_of_rule(void **state)
{
	(void)state;
	/* A report inside two overlapping places: a night rule names one of
	 * them; by day an any-place rule routes it. Its task's place is the
	 * same either way. */
	routing_table *t = routing_table_new();
	routing_table_add_unit(t, "night", false, NULL, 1800, 86400);
	routing_table_add_unit(t, "day", false, NULL, 1800, 86400);
	routing_rule night = {1, "litter", "z-square", 127, 1320, 360, "night", false, 200, 0, 0};
	routing_rule any = {2, "litter", NULL, 127, 0, 1440, "day", false, 100, 0, 0};
	routing_table_add_rule(t, &night);
	routing_table_add_rule(t, &any);
	const char *places[2] = {"z-square", "a-park"};
	routing_report r = {.category = "litter",
	    .places = places,
	    .nplaces = 2,
	    .weekday = 2,
	    .minute = 23 * 60,
	    .response_target_min = 60};
	routing_result res;
	assert_int_equal(routing_route(t, &r, &res), 0);
	assert_string_equal(res.unit, "night");
	assert_string_equal(res.place, "a-park");
	r.minute = 12 * 60;
	assert_int_equal(routing_route(t, &r, &res), 0);
	assert_string_equal(res.unit, "day");
	assert_string_equal(res.place, "a-park");
	/* Another order of the same places: the same place. */
	const char *swapped[2] = {"a-park", "z-square"};
	r.places = swapped;
	assert_int_equal(routing_route(t, &r, &res), 0);
	assert_string_equal(res.place, "a-park");
	routing_table_free(t);
}

static void
test_sensitive_default_must_handle(void **state)
{
	(void)state;
	/* A crew named the sensitive default (a stale snapshot, say) still
	 * never gets a sensitive report. */
	routing_table *t = routing_table_new();
	routing_table_add_unit(t, "crew", false, "sensitive", 1800, 86400);
	routing_table_add_unit(t, "district", false, "all", 1800, 86400);
	const char *places[1] = {"odenplan"};
	routing_report r = {.category = "school_incident",
	    .places = places,
	    .nplaces = 1,
	    .sensitive = true};
	routing_result res;
	assert_int_equal(routing_route(t, &r, &res), TRYGG_ENOENT);
	routing_table_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_place_beats_any_and_priority),
	    cmocka_unit_test(test_copies_and_at_once),
	    cmocka_unit_test(test_sensitive_only_to_handlers),
	    cmocka_unit_test(test_default_and_no_default),
	    cmocka_unit_test(test_time_window),
	    cmocka_unit_test(test_task_keys),
	    cmocka_unit_test(test_dst_europe_stockholm),
	    cmocka_unit_test(test_place_independent_of_rule),
	    cmocka_unit_test(test_sensitive_default_must_handle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
