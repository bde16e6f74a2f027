/*
 * sun.c: NOAA's sunrise equation (see sun.h). The sun's apparent position
 * from the Julian century: geometric mean longitude and anomaly, equation
 * of centre, apparent longitude, obliquity, declination and the equation
 * of time; sunrise/sunset where the centre is 0.833 degrees below the
 * horizon (refraction plus the sun's radius).
 */
#include "sun.h"

#include <math.h>

#define DEG (M_PI / 180.0)
#define DAY_US INT64_C(86400000000)

/* Declination (degrees) and equation of time (minutes) at Julian day jd. */
static void
solar_position(double jd, double *decl, double *eqtime)
{
	double t = (jd - 2451545.0) / 36525.0;
	double l0 = fmod(280.46646 + t * (36000.76983 + t * 0.0003032), 360.0);
	double m = 357.52911 + t * (35999.05029 - 0.0001537 * t);
	double e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t);
	double c = sin(m * DEG) * (1.914602 - t * (0.004817 + 0.000014 * t)) +
	    sin(2 * m * DEG) * (0.019993 - 0.000101 * t) + sin(3 * m * DEG) * 0.000289;
	double true_long = l0 + c;
	double omega = 125.04 - 1934.136 * t;
	double app_long = true_long - 0.00569 - 0.00478 * sin(omega * DEG);
	double eps0 =
	    23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0;
	double eps = eps0 + 0.00256 * cos(omega * DEG);
	*decl = asin(sin(eps * DEG) * sin(app_long * DEG)) / DEG;
	double y = tan(eps * DEG / 2) * tan(eps * DEG / 2);
	*eqtime = 4.0 / DEG *
	    (y * sin(2 * l0 * DEG) - 2 * e * sin(m * DEG) +
	        4 * e * y * sin(m * DEG) * cos(2 * l0 * DEG) - 0.5 * y * y * sin(4 * l0 * DEG) -
	        1.25 * e * e * sin(2 * m * DEG));
}

sun_day
sun_times(double lat, double lon, int64_t day_us, int64_t *sunrise_us, int64_t *sunset_us)
{
	int64_t day = day_us >= 0 ? day_us / DAY_US : -((-day_us + DAY_US - 1) / DAY_US);
	int64_t midnight_us = day * DAY_US;
	/* Evaluate at local solar noon for that UTC date. */
	double jd_noon = 2440587.5 + (double)day + 0.5 - lon / 360.0;
	double decl, eqtime;
	solar_position(jd_noon, &decl, &eqtime);
	double noon_min = 720.0 - 4.0 * lon - eqtime;
	double cos_ha = (cos(90.833 * DEG) - sin(lat * DEG) * sin(decl * DEG)) /
	    (cos(lat * DEG) * cos(decl * DEG));
	sun_day kind = SUN_NORMAL;
	double ha = 0;
	if (cos_ha < -1)
		kind = SUN_ALWAYS_UP;
	else if (cos_ha > 1)
		kind = SUN_ALWAYS_DOWN;
	else
		ha = acos(cos_ha) / DEG;
	*sunrise_us = midnight_us + (int64_t)((noon_min - 4.0 * ha) * 60e6);
	*sunset_us = midnight_us + (int64_t)((noon_min + 4.0 * ha) * 60e6);
	return kind;
}

bool
sun_is_dark(double lat, double lon, int64_t t_us)
{
	int64_t rise, set;
	/* The solar day that contains t: for east longitudes a UTC date's
	 * sunrise can fall on the previous UTC day, so ask for the date of
	 * t shifted to local mean time. */
	int64_t local_us = t_us + (int64_t)(lon / 15.0 * 3600e6);
	sun_day kind = sun_times(lat, lon, local_us, &rise, &set);
	if (kind == SUN_ALWAYS_UP)
		return false;
	if (kind == SUN_ALWAYS_DOWN)
		return true;
	return t_us < rise || t_us > set;
}
