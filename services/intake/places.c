/*
 * places.c: GeoJSON polygons and point-in-polygon (see places.h).
 *
 * Ray casting: a horizontal ray from the point crosses the boundary of a
 * polygon an odd number of times iff the point is inside. Counting the
 * crossings over the outline and every hole together gives the right
 * answer for holes as well (a point in a hole crosses one more ring). At
 * the scale of a city district the plane approximation of lat/long is
 * exact enough: the zones are a few hundred metres across.
 */
#include "places.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RINGS 1024
#define MAX_POSITIONS 100000

static int
fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return TRYGG_EINVAL;
}

/* Reads one ring (an array of [long, lat] positions) into r. */
static int
read_ring(const json_t *arr, geo_ring *r, geometry *g, char *err, size_t errlen)
{
	if (!json_is_array(arr))
		return fail(err, errlen, "a ring must be an array of positions");
	size_t n = json_array_size(arr);
	if (n < 3)
		return fail(err, errlen, "a ring needs at least 3 positions");
	if (n > MAX_POSITIONS)
		return fail(err, errlen, "a ring has too many positions");
	r->xy = xmalloc(n * 2 * sizeof(double));
	r->n = 0;
	for (size_t i = 0; i < n; i++) {
		const json_t *pos = json_array_get(arr, i);
		if (!json_is_array(pos) || json_array_size(pos) < 2 ||
		    !json_is_number(json_array_get(pos, 0)) ||
		    !json_is_number(json_array_get(pos, 1)))
			return fail(err, errlen, "a position must be [longitude, latitude]");
		double x = json_number_value(json_array_get(pos, 0));
		double y = json_number_value(json_array_get(pos, 1));
		if (!isfinite(x) || !isfinite(y) || x < -180 || x > 180 || y < -90 || y > 90)
			return fail(err, errlen, "a position is out of range");
		r->xy[2 * r->n] = x;
		r->xy[2 * r->n + 1] = y;
		r->n++;
		if (x < g->min_long)
			g->min_long = x;
		if (x > g->max_long)
			g->max_long = x;
		if (y < g->min_lat)
			g->min_lat = y;
		if (y > g->max_lat)
			g->max_lat = y;
	}
	/* Drop an explicit closing position: the ring is closed implicitly. */
	if (r->n > 1 && r->xy[0] == r->xy[2 * (r->n - 1)] && r->xy[1] == r->xy[2 * (r->n - 1) + 1])
		r->n--;
	if (r->n < 3)
		return fail(err, errlen, "a ring needs at least 3 distinct positions");
	return 0;
}

static int
read_polygon(const json_t *coords, geo_polygon *p, geometry *g, char *err, size_t errlen)
{
	if (!json_is_array(coords) || json_array_size(coords) == 0)
		return fail(err, errlen, "a polygon must be a non-empty array of rings");
	size_t n = json_array_size(coords);
	if (n > MAX_RINGS)
		return fail(err, errlen, "a polygon has too many rings");
	p->rings = xcalloc(n, sizeof(*p->rings));
	for (size_t i = 0; i < n; i++) {
		p->nrings = i + 1;
		int rv = read_ring(json_array_get(coords, i), &p->rings[i], g, err, errlen);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int
geometry_from_json(const json_t *geom, geometry *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->min_lat = out->min_long = INFINITY;
	out->max_lat = out->max_long = -INFINITY;
	const char *type = json_string_value(json_object_get(geom, "type"));
	const json_t *coords = json_object_get(geom, "coordinates");
	int rv;
	if (type == NULL || coords == NULL) {
		rv = fail(err, errlen, "geometry needs a type and coordinates");
	} else if (strcmp(type, "Polygon") == 0) {
		out->polys = xcalloc(1, sizeof(*out->polys));
		out->npolys = 1;
		rv = read_polygon(coords, &out->polys[0], out, err, errlen);
	} else if (strcmp(type, "MultiPolygon") == 0) {
		size_t n = json_array_size(coords);
		if (!json_is_array(coords) || n == 0 || n > MAX_RINGS) {
			rv = fail(err, errlen, "a MultiPolygon needs 1 to 1024 polygons");
		} else {
			out->polys = xcalloc(n, sizeof(*out->polys));
			rv = 0;
			for (size_t i = 0; i < n && rv == 0; i++) {
				out->npolys = i + 1;
				rv = read_polygon(json_array_get(coords, i), &out->polys[i], out,
				    err, errlen);
			}
		}
	} else {
		rv = fail(err, errlen, "geometry type must be Polygon or MultiPolygon");
	}
	if (rv != 0)
		geometry_fini(out);
	return rv;
}

/* Counts crossings of the ray from (x, y) towards +x with the ring. */
static bool
ring_crosses_odd(const geo_ring *r, double x, double y)
{
	bool inside = false;
	for (size_t i = 0, j = r->n - 1; i < r->n; j = i++) {
		double xi = r->xy[2 * i], yi = r->xy[2 * i + 1];
		double xj = r->xy[2 * j], yj = r->xy[2 * j + 1];
		/* The edge straddles the ray's line (half-open, so a vertex on
		 * the line counts once) and the crossing is right of the point. */
		if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi)
			inside = !inside;
	}
	return inside;
}

bool
geometry_contains(const geometry *g, double lat, double lon)
{
	if (g->npolys == 0 || lat < g->min_lat || lat > g->max_lat || lon < g->min_long ||
	    lon > g->max_long)
		return false;
	for (size_t p = 0; p < g->npolys; p++) {
		bool inside = false;
		for (size_t r = 0; r < g->polys[p].nrings; r++) {
			if (ring_crosses_odd(&g->polys[p].rings[r], lon, lat))
				inside = !inside;
		}
		if (inside)
			return true;
	}
	return false;
}

void
geometry_fini(geometry *g)
{
	if (g == NULL)
		return;
	for (size_t p = 0; p < g->npolys; p++) {
		for (size_t r = 0; r < g->polys[p].nrings; r++)
			free(g->polys[p].rings[r].xy);
		free(g->polys[p].rings);
	}
	free(g->polys);
	g->polys = NULL;
	g->npolys = 0;
}

static bool
slug_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (i > 0 && (c == '-' || c == '_'));
		if (!ok)
			return false;
	}
	return true;
}

/* Appends a place built from a parsed geometry object. */
static int
add_place(place_set *s, int id, const char *slug, const char *name, bool district,
    const json_t *geom, char *err, size_t errlen)
{
	if (!slug_ok(slug))
		return fail(err, errlen, "slug must be 1-63 lower-case letters, digits, - or _");
	if (name[0] == '\0' || strlen(name) > 200)
		return fail(err, errlen, "name must be 1-200 bytes");
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->items[i].slug, slug) == 0)
			return fail(err, errlen, "duplicate slug");
	}
	geometry g;
	int rv = geometry_from_json(geom, &g, err, errlen);
	if (rv != 0)
		return rv;
	s->items = xrealloc(s->items, (s->n + 1) * sizeof(*s->items));
	place *p = &s->items[s->n++];
	p->id = id;
	p->slug = xstrdup(slug);
	p->name = xstrdup(name);
	p->district = district;
	p->geom = g;
	if (district)
		s->ndistrict++;
	return 0;
}

int
places_add(place_set *s, int id, const char *slug, const char *name, bool district,
    const char *geometry_json, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *geom = json_loads(geometry_json, JSON_REJECT_DUPLICATES, &jerr);
	if (geom == NULL)
		return fail(err, errlen, "geometry is not valid JSON");
	int rv = add_place(s, id, slug, name, district, geom, err, errlen);
	json_decref(geom);
	return rv;
}

int
places_parse_collection(const char *text, size_t len, place_set *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "invalid JSON at line %d: %s", jerr.line, jerr.text);
		return TRYGG_EINVAL;
	}
	int rv = 0;
	const char *type = json_string_value(json_object_get(root, "type"));
	json_t *features = json_object_get(root, "features");
	if (type == NULL || strcmp(type, "FeatureCollection") != 0 || !json_is_array(features)) {
		rv = fail(err, errlen, "expected a GeoJSON FeatureCollection with features");
		goto out;
	}
	size_t i;
	json_t *f;
	json_array_foreach(features, i, f)
	{
		json_t *props = json_object_get(f, "properties");
		const char *slug = json_string_value(json_object_get(props, "slug"));
		const char *name = json_string_value(json_object_get(props, "name"));
		const char *kind = json_string_value(json_object_get(props, "kind"));
		char why[200];
		if (slug == NULL || name == NULL) {
			snprintf(err, errlen, "feature %zu: properties need slug and name", i);
			rv = TRYGG_EINVAL;
			goto out;
		}
		if (kind != NULL && strcmp(kind, "place") != 0 && strcmp(kind, "district") != 0) {
			snprintf(err, errlen, "feature %zu (%s): kind must be place or district", i,
			    slug);
			rv = TRYGG_EINVAL;
			goto out;
		}
		bool district = kind != NULL && strcmp(kind, "district") == 0;
		rv = add_place(out, 0, slug, name, district, json_object_get(f, "geometry"), why,
		    sizeof(why));
		if (rv != 0) {
			snprintf(err, errlen, "feature %zu (%s): %s", i, slug, why);
			goto out;
		}
	}
	if (out->n == 0)
		rv = fail(err, errlen, "the collection has no features");
out:
	json_decref(root);
	if (rv != 0)
		places_fini(out);
	return rv;
}

void
places_match(const place_set *s, double lat, double lon, const double *fallback_box,
    bool *in_district, size_t out[PLACES_MATCH_MAX], size_t *n)
{
	*n = 0;
	if (s->ndistrict == 0) {
		*in_district = fallback_box == NULL ||
		    (lat >= fallback_box[0] && lon >= fallback_box[1] && lat <= fallback_box[2] &&
		        lon <= fallback_box[3]);
	} else {
		*in_district = false;
	}
	for (size_t i = 0; i < s->n; i++) {
		const place *p = &s->items[i];
		if (p->district) {
			if (!*in_district && geometry_contains(&p->geom, lat, lon))
				*in_district = true;
		} else if (*n < PLACES_MATCH_MAX && geometry_contains(&p->geom, lat, lon)) {
			out[(*n)++] = i;
		}
	}
}

void
places_fini(place_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->items[i].slug);
		free(s->items[i].name);
		geometry_fini(&s->items[i].geom);
	}
	free(s->items);
	memset(s, 0, sizeof(*s));
}
