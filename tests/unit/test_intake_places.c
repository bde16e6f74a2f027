/*
 * test_intake_places.c: GeoJSON loading and point-in-polygon (places.c),
 * including holes, multipolygons, the district boundary and the shipped
 * demo file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "places.h"

static geometry
geom(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	assert_non_null(j);
	geometry g;
	char err[200];
	int rv = geometry_from_json(j, &g, err, sizeof(err));
	if (rv != 0)
		fail_msg("geometry rejected: %s", err);
	json_decref(j);
	return g;
}

static void
geom_fails(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	assert_non_null(j);
	geometry g;
	char err[200] = "";
	assert_int_equal(geometry_from_json(j, &g, err, sizeof(err)), TRYGG_EINVAL);
	assert_true(err[0] != '\0');
	json_decref(j);
}

/* A unit square [0,10]x[0,10] (long, lat) with a hole [4,6]x[4,6]. */
static const char SQUARE_WITH_HOLE[] =
    "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[10,0],[10,10],[0,10],[0,0]],"
    "[[4,4],[6,4],[6,6],[4,6],[4,4]]]}";

static void
test_square_and_hole(void **state)
{
	(void)state;
	geometry g = geom(SQUARE_WITH_HOLE);
	assert_true(geometry_contains(&g, 1, 1)); /* lat 1, long 1 */
	assert_true(geometry_contains(&g, 9.9, 0.1));
	assert_false(geometry_contains(&g, 5, 5)); /* in the hole */
	assert_true(geometry_contains(&g, 5, 3.9));
	assert_false(geometry_contains(&g, -1, 5));
	assert_false(geometry_contains(&g, 5, 10.5));
	assert_false(geometry_contains(&g, 11, 11));
	assert_true(g.min_lat == 0 && g.max_lat == 10 && g.min_long == 0 && g.max_long == 10);
	geometry_fini(&g);
}

static void
test_concave(void **state)
{
	(void)state;
	/* A "U": the notch between its arms is outside. */
	geometry g = geom("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[3,0],[3,3],[2,3],"
	                  "[2,1],[1,1],[1,3],[0,3]]]}");
	assert_true(geometry_contains(&g, 0.5, 0.5));
	assert_true(geometry_contains(&g, 2.5, 0.5));
	assert_true(geometry_contains(&g, 2.5, 2.5));
	assert_false(geometry_contains(&g, 2, 1.5)); /* in the notch */
	geometry_fini(&g);
}

static void
test_multipolygon(void **state)
{
	(void)state;
	geometry g =
	    geom("{\"type\":\"MultiPolygon\",\"coordinates\":["
	         "[[[0,0],[1,0],[1,1],[0,1],[0,0]]],"
	         "[[[5,5],[6,5],[6,6],[5,6],[5,5]],[[5.4,5.4],[5.6,5.4],[5.6,5.6],[5.4,5.6]]]]}");
	assert_true(geometry_contains(&g, 0.5, 0.5));
	assert_true(geometry_contains(&g, 5.2, 5.2));
	assert_false(geometry_contains(&g, 5.5, 5.5)); /* hole of the second */
	assert_false(geometry_contains(&g, 3, 3));     /* between them */
	geometry_fini(&g);
}

static void
test_bad_geometry(void **state)
{
	(void)state;
	geom_fails("{\"type\":\"Point\",\"coordinates\":[1,2]}");
	geom_fails("{\"type\":\"Polygon\"}");
	geom_fails("{\"type\":\"Polygon\",\"coordinates\":[]}");
	geom_fails("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,1]]]}");
	geom_fails("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[0,0]]]}");
	geom_fails("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[\"x\",1],[0,0]]]}");
	geom_fails("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[200,0],[1,1],[0,0]]]}");
	geom_fails("{\"type\":\"MultiPolygon\",\"coordinates\":[[]]}");
}

static void
test_collection(void **state)
{
	(void)state;
	const char *fc =
	    "{\"type\":\"FeatureCollection\",\"features\":["
	    "{\"type\":\"Feature\",\"properties\":{\"slug\":\"d\",\"name\":\"District\","
	    "\"kind\":\"district\"},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
	    "[[[0,0],[10,0],[10,10],[0,10],[0,0]]]}},"
	    "{\"type\":\"Feature\",\"properties\":{\"slug\":\"a\",\"name\":\"A\"},"
	    "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[5,0],[5,5],[0,5]]]}},"
	    "{\"type\":\"Feature\",\"properties\":{\"slug\":\"b\",\"name\":\"B\"},"
	    "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[4,4],[8,4],[8,8],[4,8]]]}}]}";
	place_set s;
	char err[200];
	assert_int_equal(places_parse_collection(fc, strlen(fc), &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.ndistrict, 1);
	bool inside;
	size_t idx[PLACES_MATCH_MAX], n;
	places_match(&s, 4.5, 4.5, NULL, &inside, idx, &n); /* in A and B */
	assert_true(inside);
	assert_int_equal(n, 2);
	places_match(&s, 9, 9, NULL, &inside, idx, &n);
	assert_true(inside);
	assert_int_equal(n, 0);
	places_match(&s, 11, 1, NULL, &inside, idx, &n); /* outside the district */
	assert_false(inside);
	places_fini(&s);

	/* Errors name the feature. */
	const char *dup = "{\"type\":\"FeatureCollection\",\"features\":["
	                  "{\"properties\":{\"slug\":\"a\",\"name\":\"A\"},\"geometry\":{\"type\":"
	                  "\"Polygon\",\"coordinates\":[[[0,0],[5,0],[5,5]]]}},"
	                  "{\"properties\":{\"slug\":\"a\",\"name\":\"A\"},\"geometry\":{\"type\":"
	                  "\"Polygon\",\"coordinates\":[[[0,0],[5,0],[5,5]]]}}]}";
	assert_int_equal(places_parse_collection(dup, strlen(dup), &s, err, sizeof(err)),
	    TRYGG_EINVAL);
	assert_non_null(strstr(err, "feature 1"));
	const char *noslug = "{\"type\":\"FeatureCollection\",\"features\":[{\"properties\":{}}]}";
	assert_int_equal(places_parse_collection(noslug, strlen(noslug), &s, err, sizeof(err)),
	    TRYGG_EINVAL);
	const char *bad_slug =
	    "{\"type\":\"FeatureCollection\",\"features\":["
	    "{\"properties\":{\"slug\":\"Ä b\",\"name\":\"A\"},\"geometry\":{\"type\":"
	    "\"Polygon\",\"coordinates\":[[[0,0],[5,0],[5,5]]]}}]}";
	assert_int_equal(places_parse_collection(bad_slug, strlen(bad_slug), &s, err, sizeof(err)),
	    TRYGG_EINVAL);
	assert_int_equal(places_parse_collection("[1]", 3, &s, err, sizeof(err)), TRYGG_EINVAL);
	assert_int_equal(places_parse_collection("{", 1, &s, err, sizeof(err)), TRYGG_EINVAL);
}

static void
test_fallback_box(void **state)
{
	(void)state;
	place_set s = {0};
	bool inside;
	size_t idx[PLACES_MATCH_MAX], n;
	const double box[4] = {59.326, 18.020, 59.357, 18.085};
	places_match(&s, 59.33, 18.06, box, &inside, idx, &n);
	assert_true(inside);
	places_match(&s, 59.30, 18.06, box, &inside, idx, &n);
	assert_false(inside);
	places_match(&s, 0, 0, NULL, &inside, idx, &n);
	assert_true(inside);
}

/* The shipped demo file: every named centre of the issue lies in its place
 * and in the district; Gamla stan and Södermalm do not. */
static void
test_demo_file(void **state)
{
	(void)state;
	FILE *f = fopen("deploy/demo/places.geojson", "rb");
	if (f == NULL)
		f = fopen("../../deploy/demo/places.geojson", "rb");
	assert_non_null(f);
	static char buf[200000];
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	place_set s;
	char err[200];
	assert_int_equal(places_parse_collection(buf, len, &s, err, sizeof(err)), 0);
	static const struct {
		const char *slug;
		double lat, lon;
	} centres[] = {
	    {"sergels-torg", 59.3324, 18.0637},
	    {"klarakvarteren", 59.3318, 18.0590},
	    {"centralstationen", 59.3303, 18.0586},
	    {"kungstradgarden", 59.3310, 18.0716},
	    {"hotorget", 59.3349, 18.0630},
	    {"sodra-johannes", 59.3372, 18.0660},
	    {"odenplan", 59.3430, 18.0497},
	    {"vasaparken", 59.3420, 18.0440},
	    {"observatorielunden", 59.3414, 18.0549},
	    {"sveavagen", 59.3433, 18.0535},
	};
	for (size_t i = 0; i < sizeof(centres) / sizeof(centres[0]); i++) {
		bool inside;
		size_t idx[PLACES_MATCH_MAX], n;
		places_match(&s, centres[i].lat, centres[i].lon, NULL, &inside, idx, &n);
		assert_true(inside);
		bool found = false;
		for (size_t k = 0; k < n; k++)
			found = found || strcmp(s.items[idx[k]].slug, centres[i].slug) == 0;
		if (!found)
			fail_msg("%s centre not in its place", centres[i].slug);
	}
	bool inside;
	size_t idx[PLACES_MATCH_MAX], n;
	places_match(&s, 59.3251, 18.0707, NULL, &inside, idx, &n); /* Gamla stan */
	assert_false(inside);
	places_match(&s, 59.3150, 18.0700, NULL, &inside, idx, &n); /* Södermalm */
	assert_false(inside);
	places_fini(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_square_and_hole),
	    cmocka_unit_test(test_concave),
	    cmocka_unit_test(test_multipolygon),
	    cmocka_unit_test(test_bad_geometry),
	    cmocka_unit_test(test_collection),
	    cmocka_unit_test(test_fallback_box),
	    cmocka_unit_test(test_demo_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
