/*
 * picture.h: the situation picture as the audience gets it.
 *
 * The SQL function picture() (sql/002_picture.sql) answers every figure,
 * unsuppressed. picture_finish() turns that into what one audience may
 * see: it names the audience, stamps generated_at, and for the public
 * applies suppress.c to every count (primary below the threshold,
 * secondary against recovery by subtraction, see docs/reporting.md), then
 * writes the hotspots' explanations. picture_csv() and picture_geojson()
 * render a finished picture in the other formats.
 *
 * Ownership: the functions borrow the picture; what they return is the
 * caller's (free() / json_decref()).
 */
#ifndef REPORTING_PICTURE_H
#define REPORTING_PICTURE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* audience: "staff", "police", "partner" or "public"; only "public" is
 * suppressed. Returns the number of suppressed cells. */
size_t picture_finish(json_t *pic, const char *audience, int64_t threshold);

/* One row per figure: section,key,name,value,previous,last_year (RFC 4180,
 * CRLF). Never NULL. */
char *picture_csv(const json_t *pic, size_t *len);

/* A FeatureCollection of the picture's places (from `places`, the
 * FeatureCollection of places_geojson()) with their figures. New reference. */
json_t *picture_geojson(const json_t *pic, const json_t *places);

#endif
