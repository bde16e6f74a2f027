/*
 * test_intake_report.c: report validation (report.c, categories.c) for
 * both front ends: every field, and that each error names its field with
 * the right status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static category_set cats;
static place_set places;
static partner app, school;
static const double box[4] = {59.326, 18.020, 59.357, 18.085};

static int
setup(void **state)
{
	(void)state;
	char err[200];
	assert_int_equal(categories_add(&cats, "litter", "Litter", "", "physical_environment", "",
	                     2, 1440, false, "[]", err, sizeof(err)),
	    0);
	assert_int_equal(
	    categories_add(&cats, "graffiti", "Graffiti", "", "physical_environment", "", 2, 1440,
	        false,
	        "[{\"code\":\"surface\",\"datatype\":\"singlevaluelist\",\"required\":true,"
	        "\"values\":[{\"key\":\"wall\",\"name\":\"Wall\"}]},"
	        "{\"code\":\"count\",\"datatype\":\"number\"},"
	        "{\"code\":\"tags\",\"datatype\":\"multivaluelist\",\"values\":"
	        "[{\"key\":\"a\"},{\"key\":\"b\"}]}]",
	        err, sizeof(err)),
	    0);
	assert_int_equal(categories_add(&cats, "youth_at_risk", "Youth at risk", "", "social", "",
	                     4, 60, true, NULL, err, sizeof(err)),
	    0);
	assert_int_equal(
	    places_add(&places, 1, "norrmalm", "Norrmalm", true,
	        "{\"type\":\"Polygon\",\"coordinates\":[[[18.02,59.326],[18.085,59.326],"
	        "[18.085,59.357],[18.02,59.357]]]}",
	        err, sizeof(err)),
	    0);
	assert_int_equal(places_add(&places, 7, "sergels-torg", "Sergels torg", false,
	                     "{\"type\":\"Polygon\",\"coordinates\":[[[18.06,59.33],[18.067,59.33],"
	                     "[18.067,59.335],[18.06,59.335]]]}",
	                     err, sizeof(err)),
	    0);
	app = (partner){.id = 3, .name = "app", .role = "resident_app"};
	partner_set_allowed(&app, "litter,graffiti");
	school = (partner){.id = 4, .name = "school", .role = "school"};
	partner_set_allowed(&school, NULL);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	categories_fini(&cats);
	places_fini(&places);
	partner_set_allowed(&app, "");
	partner_set_allowed(&school, "");
	return 0;
}

/* Validates JSON text as the given partner; returns rv, err filled. */
static int
check_json(const char *text, const partner *p, report_in *r, tjson_error *e)
{
	json_t *obj;
	assert_int_equal(tjson_parse(text, strlen(text), 0, 0, &obj, e), 0);
	report_ctx ctx = {.categories = &cats,
	    .places = &places,
	    .district_box = box,
	    .partner = p};
	int rv = intake_report_from_json(obj, &ctx, r, e);
	json_decref(obj);
	return rv;
}

static void
json_fails(const char *text, const partner *p, int status, const char *code, const char *field)
{
	report_in r;
	tjson_error e;
	int rv = check_json(text, p, &r, &e);
	if (rv == 0) {
		report_in_fini(&r);
		fail_msg("accepted: %s", text);
	}
	assert_int_equal(e.status, status);
	assert_string_equal(e.code, code);
	assert_string_equal(e.field, field);
}

static void
test_valid_json(void **state)
{
	(void)state;
	report_in r;
	tjson_error e;
	assert_int_equal(
	    check_json("{\"category\":\"litter\",\"lat\":59.3324,\"long\":18.0637,"
	               "\"description\":\"Bin\\nfull\",\"media_url\":\"https://x.se/a.jpg\","
	               "\"contact\":{\"email\":\"a@b.se\",\"phone\":\"+46 8-123\"}}",
	        &app, &r, &e),
	    0);
	assert_string_equal(r.category, "litter");
	assert_int_equal(r.severity, 2);
	assert_false(r.sensitive);
	assert_true(r.has_position);
	assert_int_equal(r.nplaces, 1);
	assert_int_equal(r.place_ids[0], 7);
	assert_string_equal(r.place_slugs[0], "sergels-torg");
	assert_true(r.has_contact);
	assert_string_equal(r.email, "a@b.se");
	assert_int_equal(strlen(r.id), 36);
	report_in_fini(&r);

	/* Address only: no position, no places. */
	assert_int_equal(
	    check_json("{\"category\":\"litter\",\"address_string\":\"Drottninggatan 5\"}", &app,
	        &r, &e),
	    0);
	assert_false(r.has_position);
	assert_int_equal(r.nplaces, 0);
	assert_false(r.has_contact);
	report_in_fini(&r);
}

static void
test_json_errors(void **state)
{
	(void)state;
	json_fails("{\"lat\":59.33,\"long\":18.06}", &app, 400, "missing_field", "category");
	json_fails("{\"category\":\"nope\",\"lat\":59.33,\"long\":18.06}", &app, 400,
	    "unknown_category", "category");
	json_fails("{\"category\":\"youth_at_risk\",\"lat\":59.33,\"long\":18.06}", &app, 403,
	    "category_not_allowed", "category");
	json_fails("{\"category\":\"litter\"}", &app, 400, "missing_field", "lat");
	json_fails("{\"category\":\"litter\",\"lat\":59.33}", &app, 400, "missing_field", "long");
	json_fails("{\"category\":\"litter\",\"lat\":91,\"long\":18.06}", &app, 400, "out_of_range",
	    "lat");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":-181}", &app, 400,
	    "out_of_range", "long");
	json_fails("{\"category\":\"litter\",\"lat\":\"59\",\"long\":18.06}", &app, 400,
	    "wrong_type", "lat");
	json_fails("{\"category\":\"litter\",\"lat\":59.32,\"long\":18.07}", &app, 400,
	    "outside_district", "lat");
	json_fails(
	    "{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"media_url\":\"ftp://x\"}",
	    &app, 400, "invalid_url", "media_url");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,"
	           "\"media_url\":\"http://x y\"}",
	    &app, 400, "invalid_url", "media_url");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"extra\":1}", &app, 400,
	    "unknown_field", "extra");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"contact\":{\"email\":"
	           "\"nope\"}}",
	    &app, 400, "invalid_value", "contact.email");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"contact\":{\"fax\":1}}",
	    &app, 400, "unknown_field", "contact.fax");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"contact\":{\"phone\":"
	           "\"call me\"}}",
	    &app, 400, "invalid_value", "contact.phone");
	json_fails("{\"category\":\"litter\",\"address_string\":\"a\\u0001b\"}", &app, 400,
	    "invalid_value", "address_string");

	/* Description: 4000 characters (not bytes) is the limit. */
	char *body = malloc(20000);
	strcpy(body, "{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"description\":\"");
	for (int i = 0; i < 4000; i++)
		strcat(body, "\xc3\xa5"); /* å: 2 bytes, 1 character */
	strcat(body, "\"}");
	report_in r;
	tjson_error e;
	assert_int_equal(check_json(body, &app, &r, &e), 0);
	report_in_fini(&r);
	body[strlen(body) - 2] = '\0';
	strcat(body, "x\"}");
	json_fails(body, &app, 400, "too_long", "description");
	free(body);
}

static void
test_attributes(void **state)
{
	(void)state;
	report_in r;
	tjson_error e;
	assert_int_equal(
	    check_json("{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06,"
	               "\"attributes\":{\"surface\":\"wall\",\"count\":\"3\",\"tags\":[\"a\"]}}",
	        &app, &r, &e),
	    0);
	assert_true(json_is_real(json_object_get(r.attributes, "count")));
	report_in_fini(&r);
	json_fails("{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06}", &app, 400,
	    "missing_field", "attributes.surface");
	json_fails("{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06,\"attributes\":"
	           "{\"surface\":\"roof\"}}",
	    &app, 400, "invalid_value", "attributes.surface");
	json_fails("{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06,\"attributes\":"
	           "{\"surface\":\"wall\",\"count\":\"many\"}}",
	    &app, 400, "wrong_type", "attributes.count");
	json_fails("{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06,\"attributes\":"
	           "{\"surface\":\"wall\",\"tags\":[\"c\"]}}",
	    &app, 400, "invalid_value", "attributes.tags");
	json_fails("{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06,\"attributes\":"
	           "{\"surface\":\"wall\",\"colour\":\"red\"}}",
	    &app, 400, "unknown_field", "attributes.colour");
}

static int
check_form(const char *body, const partner *p, report_in *r, tjson_error *e)
{
	form f;
	int rv = form_parse(body, strlen(body), &f, e);
	if (rv != 0)
		return rv;
	report_ctx ctx = {.categories = &cats,
	    .places = &places,
	    .district_box = box,
	    .partner = p};
	rv = intake_report_from_form(&f, &ctx, r, e);
	form_fini(&f);
	return rv;
}

static void
form_fails(const char *body, const partner *p, int status, const char *code, const char *field)
{
	report_in r;
	tjson_error e;
	if (check_form(body, p, &r, &e) == 0) {
		report_in_fini(&r);
		fail_msg("accepted: %s", body);
	}
	assert_int_equal(e.status, status);
	assert_string_equal(e.code, code);
	assert_string_equal(e.field, field);
}

static void
test_form(void **state)
{
	(void)state;
	report_in r;
	tjson_error e;
	assert_int_equal(
	    check_form("api_key=k&service_code=graffiti&lat=59.3324&long=18.0637&"
	               "description=Tag+on+wall%21&attribute%5Bsurface%5D=wall&"
	               "attribute[tags][]=a&attribute[tags][]=b&first_name=Anna&email=a%40b.se",
	        &school, &r, &e),
	    0);
	assert_string_equal(r.description, "Tag on wall!");
	assert_string_equal(json_string_value(json_object_get(r.attributes, "surface")), "wall");
	assert_int_equal(json_array_size(json_object_get(r.attributes, "tags")), 2);
	assert_string_equal(r.first_name, "Anna");
	report_in_fini(&r);
	form_fails("service_code=graffiti&lat=59.33&long=18.06", &school, 400, "missing_field",
	    "attribute[surface]");
	form_fails("service_code=litter&lat=abc&long=18.06", &school, 400, "wrong_type", "lat");
	form_fails("service_code=youth_at_risk&lat=59.33&long=18.06", &app, 403,
	    "category_not_allowed", "service_code");
	form_fails("service_code=litter&lat=59.33&long=18.06&bogus=1", &app, 400, "unknown_field",
	    "bogus");
	form_fails("service_code=litter&lat=59.33&lat=59.34&long=18.06", &app, 400,
	    "duplicate_field", "lat");
	form_fails("service_code=litter&lat=59.33&long=18.06&description=%FF", &app, 400,
	    "invalid_form", "description");
	form_fails("service_code=litter&lat=59.33&long=18.06&description=%4", &app, 400,
	    "invalid_form", "description");
	form_fails("service_code=litter&lat=59.33&long=18.06&attribute[x=1", &app, 400,
	    "invalid_form", "attribute[x");
}

/* True if the error's texts are valid UTF-8 (they go into JSON and XML). */
static bool
err_texts_ok(const tjson_error *e)
{
	return trygg_utf8_valid(e->message, strlen(e->message)) &&
	    trygg_utf8_valid(e->field, strlen(e->field));
}

/* Issue 9: names and codes cut inside a character, characters XML cannot
 * carry, and what Open311 clients send for "nothing". */
static void
test_hostile(void **state)
{
	(void)state;
	report_in r;
	tjson_error e;
	char body[600], name[128];
	/* 99 bytes, then a two-byte character: a cut at 100 splits it. */
	memset(name, 'a', 99);
	strcpy(name + 99, "%C3%A9");
	snprintf(body, sizeof(body), "%s=1&%s=2", name, name);
	form f;
	assert_int_not_equal(form_parse(body, strlen(body), &f, &e), 0);
	assert_string_equal(e.code, "duplicate_field");
	assert_true(err_texts_ok(&e));
	snprintf(body, sizeof(body), "service_code=litter&lat=59.33&long=18.06&%s=1", name);
	form_fails(body, &app, 400, "unknown_field",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "\xc3\xa9");
	assert_int_not_equal(check_form(body, &app, &r, &e), 0);
	assert_true(err_texts_ok(&e));
	/* An unknown service_code cut at 64 bytes; Open311 answers 404. */
	snprintf(body, sizeof(body),
	    "service_code=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa%%C3%%A9&"
	    "lat=59.33&long=18.06");
	assert_int_not_equal(check_form(body, &app, &r, &e), 0);
	assert_int_equal(e.status, 404);
	assert_string_equal(e.code, "unknown_category");
	assert_true(err_texts_ok(&e));
	/* The native API keeps 400 for it, and a long attribute name is cut
	 * at a character boundary too. */
	json_fails("{\"category\":\"nope\",\"lat\":59.33,\"long\":18.06}", &app, 400,
	    "unknown_category", "category");
	char jb[400];
	snprintf(jb, sizeof(jb),
	    "{\"category\":\"graffiti\",\"lat\":59.33,\"long\":18.06,\"attributes\":{\"%s\":1}}",
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbb"
	    "bbbbbbbb\xc3\xa9");
	assert_int_not_equal(check_json(jb, &app, &r, &e), 0);
	assert_string_equal(e.code, "unknown_field");
	assert_true(err_texts_ok(&e));

	/* U+FFFF, U+FFFE and C0 controls in every text field are refused. */
	static const char *const bad[] = {"%EF%BF%BF", "%EF%BF%BE", "%01", "%1B"};
	static const char *const fields[] = {"description", "address_string", "address_id",
	    "first_name", "last_name", "email", "device_id", "account_id"};
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(bad); i++) {
		for (size_t k = 0; k < TRYGG_ARRAY_LEN(fields); k++) {
			snprintf(body, sizeof(body),
			    "service_code=litter&lat=59.33&long=18.06&%s=x%s@y", fields[k], bad[i]);
			if (check_form(body, &app, &r, &e) == 0) {
				report_in_fini(&r);
				fail_msg("accepted: %s", body);
			}
			assert_int_equal(e.status, 400);
			assert_string_equal(e.field, fields[k]);
		}
		snprintf(body, sizeof(body),
		    "service_code=graffiti&lat=59.33&long=18.06&attribute[surface]=wall&"
		    "attribute[count]=1&attribute[tags][]=a%s",
		    bad[i]);
		assert_int_not_equal(check_form(body, &app, &r, &e), 0);
	}
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"description\":"
	           "\"a\\uffffb\"}",
	    &app, 400, "invalid_value", "description");
	json_fails("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,\"contact\":"
	           "{\"last_name\":\"\\ufffe\"}}",
	    &app, 400, "invalid_value", "contact.last_name");
	/* Tab and newlines in a description, U+FFFD and astral characters are fine. */
	assert_int_equal(check_json("{\"category\":\"litter\",\"lat\":59.33,\"long\":18.06,"
	                            "\"description\":\"a\\tb\\r\\nc \\ufffd \\ud83d\\ude00\"}",
	                     &app, &r, &e),
	    0);
	report_in_fini(&r);

	/* Empty optional attributes count as absent; an empty required one
	 * is missing. */
	assert_int_equal(check_form("service_code=graffiti&lat=59.33&long=18.06&"
	                            "attribute[surface]=wall&attribute[count]=&attribute[tags][]=",
	                     &app, &r, &e),
	    0);
	assert_null(json_object_get(r.attributes, "count"));
	assert_null(json_object_get(r.attributes, "tags"));
	report_in_fini(&r);
	form_fails("service_code=graffiti&lat=59.33&long=18.06&attribute[surface]=", &app, 400,
	    "missing_field", "attribute[surface]");
	/* address_id alone is a location. */
	assert_int_equal(check_form("service_code=litter&address_id=%23NOTPINPOINTED%23", &app, &r,
	                     &e),
	    0);
	assert_string_equal(r.address, "#NOTPINPOINTED#");
	report_in_fini(&r);
}

static void
test_helpers(void **state)
{
	(void)state;
	assert_true(intake_media_url_ok("https://example.com/photo.jpg?x=1"));
	assert_true(intake_media_url_ok("http://a"));
	assert_false(intake_media_url_ok("https://"));
	assert_false(intake_media_url_ok("javascript:alert(1)"));
	assert_false(intake_media_url_ok("https://a/<script>"));
	assert_true(intake_idem_key_ok("a-1_B.c"));
	assert_false(intake_idem_key_ok(""));
	assert_false(intake_idem_key_ok("has space"));
	assert_true(partner_may_report(&app, "litter"));
	assert_false(partner_may_report(&app, "youth_at_risk"));
	assert_true(partner_may_report(&school, "youth_at_risk"));
	assert_true(trygg_utf8_valid("\xc3\xa5", 2));
	assert_false(trygg_utf8_valid("\xc3", 1));
	assert_false(trygg_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
	assert_false(trygg_utf8_valid("\xc0\xaf", 2));     /* overlong */
	assert_false(trygg_utf8_valid("\xf4\x90\x80\x80", 4));
	/* Truncation never splits a character. */
	assert_int_equal(trygg_utf8_prefix("ab\xc3\xa9", 3), 2);
	assert_int_equal(trygg_utf8_prefix("ab\xc3\xa9", 4), 4);
	assert_int_equal(trygg_utf8_prefix("ab\xc3\xa9", 100), 4);
	assert_int_equal(trygg_utf8_prefix("\xf0\x9f\x98\x80", 3), 0);
	char t[8] = "ab\xe2\x82";
	trygg_utf8_trim(t);
	assert_string_equal(t, "ab");
	strcpy(t, "ab\xc3\xa9");
	trygg_utf8_trim(t);
	assert_string_equal(t, "ab\xc3\xa9");
	assert_false(trygg_xml_char(0xffff));
	assert_false(trygg_xml_char(0xfffe));
	assert_false(trygg_xml_char(0x1));
	assert_true(trygg_xml_char('\t'));
	assert_true(trygg_xml_char(0xfffd));
	assert_true(trygg_xml_char(0x1f600));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_json),
	    cmocka_unit_test(test_json_errors),
	    cmocka_unit_test(test_attributes),
	    cmocka_unit_test(test_form),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_helpers),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
