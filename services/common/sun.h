/*
 * sun.h: sunrise and sunset for a place and a date, computed (NOAA's
 * solar position equations, accurate to about a minute at these
 * latitudes), so "after dark" needs no table.
 *
 * Used for day or night of a report (after sunset or before sunrise at its
 * position, for its date) and for the start of a safety walk after dark.
 * Times are UTC microseconds; the date is the civil date in UTC at noon of
 * the given day, which for Stockholm (UTC+1/+2) is the local date.
 */
#ifndef TRYGG_SUN_H
#define TRYGG_SUN_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef enum sun_day {
	SUN_NORMAL = 0,     /* rises and sets */
	SUN_ALWAYS_UP = 1,  /* midnight sun: no sunset */
	SUN_ALWAYS_DOWN = 2 /* polar night: no sunrise */
} sun_day;

/*
 * Sunrise and sunset (UTC µs) on the date of `day_us` (any time in that UTC
 * day) at lat/lon (degrees, east positive). For SUN_ALWAYS_UP/DOWN both
 * times are set to the day's solar noon.
 */
sun_day sun_times(double lat, double lon, int64_t day_us, int64_t *sunrise_us, int64_t *sunset_us);

/* True if `t_us` is before sunrise or after sunset of its day at lat/lon. */
bool sun_is_dark(double lat, double lon, int64_t t_us);

#endif
