/*
 * places.h: the district's named zones as polygons, and which of them a
 * point lies in.
 *
 * Places come as GeoJSON (RFC 7946): a Feature's geometry is a Polygon or a
 * MultiPolygon whose positions are [longitude, latitude] in WGS84; the first
 * ring of each polygon is its outline and further rings are holes. There is
 * no PostGIS here, so containment is tested in C by ray casting (even-odd
 * rule over all rings of a polygon, which handles holes), after a bounding
 * box check. The district boundary is a place of kind "district"; a point
 * outside every district polygon is outside the district.
 *
 * A place_set is immutable once built: the directory swaps whole sets on
 * reload, so lookups need no locking (and everything runs on the loop
 * thread anyway).
 */
#ifndef INTAKE_PLACES_H
#define INTAKE_PLACES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Most places one report is matched to (overlapping zones). */
#define PLACES_MATCH_MAX 16

typedef struct geo_ring {
	double *xy; /* long, lat pairs; the ring is closed implicitly */
	size_t n;   /* number of positions */
} geo_ring;

typedef struct geo_polygon {
	geo_ring *rings; /* [0] is the outline, the rest are holes */
	size_t nrings;
} geo_polygon;

typedef struct geometry {
	geo_polygon *polys;
	size_t npolys;
	double min_lat, min_long, max_lat, max_long;
} geometry;

/*
 * Reads a GeoJSON Polygon or MultiPolygon geometry object. Rings need at
 * least 4 positions (3 distinct and the closing one; an unclosed ring is
 * accepted and closed implicitly), positions must be finite numbers within
 * [-180, 180] x [-90, 90]. On error returns TRYGG_EINVAL with a reason in
 * err and leaves *out empty. On success the caller owns *out
 * (geometry_fini).
 */
int geometry_from_json(const json_t *geom, geometry *out, char *err, size_t errlen) TRYGG_MUSTCHECK;

/* True if the point lies inside (even-odd rule; points exactly on an edge
 * may go either way). */
bool geometry_contains(const geometry *g, double lat, double lon);

/* Frees the rings. Accepts NULL and an empty geometry. */
void geometry_fini(geometry *g);

typedef struct place {
	int id; /* places.id; 0 when not stored yet */
	char *slug;
	char *name;
	bool district;
	geometry geom;
} place;

typedef struct place_set {
	place *items;
	size_t n;
	size_t ndistrict; /* how many are of kind district */
} place_set;

/*
 * Adds a place whose geometry is GeoJSON text (a geometry object). Returns
 * 0, or TRYGG_EINVAL with a reason in err.
 */
int places_add(place_set *s, int id, const char *slug, const char *name, bool district,
    const char *geometry_json, char *err, size_t errlen) TRYGG_MUSTCHECK;

/*
 * Parses a GeoJSON FeatureCollection into a place_set (ids 0). Each
 * feature needs properties "slug" (lower case letters, digits, - and _)
 * and "name"; "kind" is "place" (default) or "district". Slugs must be
 * unique. Returns 0 or TRYGG_EINVAL with the reason (naming the feature)
 * in err.
 */
int places_parse_collection(const char *text, size_t len, place_set *out, char *err,
    size_t errlen) TRYGG_MUSTCHECK;

/*
 * Matches a point: *in_district is true if it lies in a district polygon
 * (or, when the set has no district at all, in the fallback box given as
 * min_lat, min_long, max_lat, max_long; NULL box = anywhere). Fills
 * out[0..*n) with the indexes into s->items of the ordinary places that
 * contain it, at most PLACES_MATCH_MAX.
 */
void places_match(const place_set *s, double lat, double lon, const double *fallback_box,
    bool *in_district, size_t out[PLACES_MATCH_MAX], size_t *n);

/* Frees every place. Accepts NULL. */
void places_fini(place_set *s);

#endif
