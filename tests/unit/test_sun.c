/*
 * test_sun.c: sunrise and sunset against published almanac times for
 * Stockholm at the solstices (to the minute; we allow 3), and the shape of
 * the equinox day.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "sun.h"

#define STHLM_LAT 59.3326
#define STHLM_LON 18.0649

static int64_t
utc_us(int y, int mo, int d, int h, int mi)
{
	struct tm tm = {.tm_year = y - 1900,
	    .tm_mon = mo - 1,
	    .tm_mday = d,
	    .tm_hour = h,
	    .tm_min = mi};
	return (int64_t)timegm(&tm) * 1000000;
}

static void
assert_near(int64_t got, int64_t want)
{
	int64_t diff = got > want ? got - want : want - got;
	assert_true(diff <= INT64_C(3) * 60 * 1000000);
}

/* Midsummer 2026: sunrise 03:31, sunset 22:08 CEST (UTC+2). */
static void
test_midsummer(void **state)
{
	(void)state;
	int64_t rise, set;
	assert_int_equal(sun_times(STHLM_LAT, STHLM_LON, utc_us(2026, 6, 21, 12, 0), &rise, &set),
	    SUN_NORMAL);
	assert_near(rise, utc_us(2026, 6, 21, 1, 31));
	assert_near(set, utc_us(2026, 6, 21, 20, 8));
}

/* Midwinter 2026: sunrise 08:44, sunset 14:48 CET (UTC+1). */
static void
test_midwinter(void **state)
{
	(void)state;
	int64_t rise, set;
	assert_int_equal(sun_times(STHLM_LAT, STHLM_LON, utc_us(2026, 12, 21, 12, 0), &rise, &set),
	    SUN_NORMAL);
	assert_near(rise, utc_us(2026, 12, 21, 7, 44));
	assert_near(set, utc_us(2026, 12, 21, 13, 48));
}

/* Equinox 2026-03-20: the day is a little over 12 hours (refraction and
 * the sun's radius add ~12 minutes at 59 N), centred on solar noon, which
 * is 12:00 minus 4 min per degree east (72 min) plus the equation of time
 * (+7.5 min in late March): 10:55 UTC. */
static void
test_equinox(void **state)
{
	(void)state;
	int64_t rise, set;
	sun_times(STHLM_LAT, STHLM_LON, utc_us(2026, 3, 20, 0, 30), &rise, &set);
	int64_t day_min = (set - rise) / 60000000;
	assert_true(day_min >= 12 * 60 + 5 && day_min <= 12 * 60 + 20);
	assert_near((rise + set) / 2, utc_us(2026, 3, 20, 10, 55));
}

static void
test_is_dark(void **state)
{
	(void)state;
	/* A December afternoon at 16:00 local is dark, noon is not; a June
	 * night at 23:30 local is dark, 21:00 is not. */
	assert_true(sun_is_dark(STHLM_LAT, STHLM_LON, utc_us(2026, 12, 10, 15, 0)));
	assert_false(sun_is_dark(STHLM_LAT, STHLM_LON, utc_us(2026, 12, 10, 11, 0)));
	assert_true(sun_is_dark(STHLM_LAT, STHLM_LON, utc_us(2026, 6, 10, 21, 30)));
	assert_false(sun_is_dark(STHLM_LAT, STHLM_LON, utc_us(2026, 6, 10, 19, 0)));
	/* Just after midnight UTC in winter (01:00 local) is dark. */
	assert_true(sun_is_dark(STHLM_LAT, STHLM_LON, utc_us(2026, 1, 15, 0, 5)));
}

static void
test_polar(void **state)
{
	(void)state;
	int64_t rise, set;
	/* Kiruna area (68 N): midnight sun in June, polar night in December. */
	assert_int_equal(sun_times(69.5, 20.2, utc_us(2026, 6, 21, 12, 0), &rise, &set),
	    SUN_ALWAYS_UP);
	assert_int_equal(sun_times(69.5, 20.2, utc_us(2026, 12, 21, 12, 0), &rise, &set),
	    SUN_ALWAYS_DOWN);
	assert_false(sun_is_dark(69.5, 20.2, utc_us(2026, 6, 21, 23, 0)));
	assert_true(sun_is_dark(69.5, 20.2, utc_us(2026, 12, 21, 11, 0)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_midsummer),
	    cmocka_unit_test(test_midwinter),
	    cmocka_unit_test(test_equinox),
	    cmocka_unit_test(test_is_dark),
	    cmocka_unit_test(test_polar),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
