/*
 * test_intake_render.c: Open311 XML and JSON documents (render.c): XML
 * escaping, the service list and definitions, error documents, and the
 * date parser and list-query builder they rely on (query.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "render.h"

static void
test_xml_escape(void **state)
{
	(void)state;
	strbuf b = {0};
	render_xml_elem(&b, "d", "<a href=\"x\">Tom & Jerry's</a>");
	assert_string_equal(b.s,
	    "<d>&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&apos;s&lt;/a&gt;</d>");
	strbuf_fini(&b);
	render_xml_elem(&b, "empty", NULL);
	assert_string_equal(b.s, "<empty/>");
	strbuf_fini(&b);
	/* Long text crosses the escaper's internal chunks intact. */
	char big[3001];
	memset(big, '&', 3000);
	big[3000] = '\0';
	strbuf_append_xml(&b, big);
	assert_int_equal(b.len, 3000 * 5);
	strbuf_fini(&b);
}

/* Stored text XML cannot carry, or bytes that are not UTF-8, never reach a
 * document as they are (issue 9). */
static void
test_unsafe_text(void **state)
{
	(void)state;
	strbuf b = {0};
	render_xml_elem(&b, "d",
	    "a\xef\xbf\xbf b\x01"
	    "c\xef\xbf\xbe \xff\xc3 \xc3\xa9\t");
	assert_string_equal(b.s,
	    "<d>a\xef\xbf\xbd b\xef\xbf\xbd"
	    "c\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd \xc3\xa9\t</d>");
	strbuf_fini(&b);
	strbuf_append_json(&b, "x\xffy\xc3");
	assert_string_equal(b.s, "\"x\xef\xbf\xbdy\xef\xbf\xbd\"");
	strbuf_fini(&b);
	/* An error whose description is cut inside a character still renders. */
	size_t len;
	char *doc = render_open311_error(false, 400, "field 'aa\xc3' appears twice", &len);
	assert_non_null(doc);
	json_error_t je;
	json_t *v = json_loadb(doc, len, 0, &je);
	assert_non_null(v);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(v, 0), "code")), 400);
	json_decref(v);
	free(doc);
	doc = render_open311_error(true, 404, "x\xef\xbf\xbf", &len);
	assert_non_null(strstr(doc, "<description>x\xef\xbf\xbd</description>"));
	free(doc);
}

static category_set
sample_categories(void)
{
	category_set s = {0};
	char err[200];
	assert_int_equal(
	    categories_add(&s, "graffiti", "Graffiti & tags", "Paint <on> walls",
	        "physical_environment", "graffiti", 2, 1440, false,
	        "[{\"code\":\"surface\",\"datatype\":\"singlevaluelist\",\"required\":true,"
	        "\"order\":1,\"description\":\"What\",\"values\":[{\"key\":\"wall\","
	        "\"name\":\"Wall\"}]}]",
	        err, sizeof(err)),
	    0);
	assert_int_equal(categories_add(&s, "litter", "Litter", "", "physical_environment", "", 2,
	                     1440, false, "[]", err, sizeof(err)),
	    0);
	return s;
}

static void
test_services(void **state)
{
	(void)state;
	category_set s = sample_categories();
	strbuf b = {0};
	render_services_xml(&b, &s);
	assert_non_null(strstr(b.s,
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?><services><service>"
	    "<service_code>graffiti</service_code>"
	    "<service_name>Graffiti &amp; tags</service_name>"
	    "<description>Paint &lt;on&gt; walls</description>"
	    "<metadata>true</metadata><type>realtime</type>"));
	assert_non_null(strstr(b.s, "<service_code>litter</service_code>"));
	assert_non_null(strstr(b.s, "<metadata>false</metadata>"));
	strbuf_fini(&b);
	json_t *j = render_services_json(&s);
	assert_int_equal(json_array_size(j), 2);
	json_t *g = json_array_get(j, 0);
	assert_string_equal(json_string_value(json_object_get(g, "service_code")), "graffiti");
	assert_true(json_is_true(json_object_get(g, "metadata")));
	json_decref(j);

	render_definition_xml(&b, &s.items[0]);
	assert_non_null(strstr(b.s,
	    "<service_definition><service_code>graffiti</service_code>"
	    "<attributes><attribute><variable>true</variable><code>surface</code>"
	    "<datatype>singlevaluelist</datatype><required>true</required>"));
	assert_non_null(strstr(b.s, "<values><value><key>wall</key><name>Wall</name></value>"));
	strbuf_fini(&b);
	j = render_definition_json(&s.items[0]);
	json_t *attr = json_array_get(json_object_get(j, "attributes"), 0);
	assert_string_equal(json_string_value(json_object_get(attr, "datatype")),
	    "singlevaluelist");
	assert_int_equal(json_array_size(json_object_get(attr, "values")), 1);
	json_decref(j);
	categories_fini(&s);
}

static void
test_errors(void **state)
{
	(void)state;
	size_t len;
	char *x = render_open311_error(true, 400, "lat: out of <range>", &len);
	assert_string_equal(x,
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?><errors><error><code>400"
	    "</code><description>lat: out of &lt;range&gt;</description></error>"
	    "</errors>");
	assert_int_equal(len, strlen(x));
	free(x);
	char *j = render_open311_error(false, 403, "bad key", &len);
	assert_string_equal(j, "[{\"code\":403,\"description\":\"bad key\"}]");
	free(j);
}

static void
test_visibility(void **state)
{
	(void)state;
	partner staff = {.staff = true}, police = {.staff = false};
	assert_true(render_description_visible(false, NULL));
	assert_false(render_description_visible(true, NULL));
	assert_false(render_description_visible(true, &police));
	assert_true(render_description_visible(true, &staff));
}

static void
test_parse_time(void **state)
{
	(void)state;
	int64_t us;
	assert_int_equal(query_parse_time("1970-01-01", &us), 0);
	assert_int_equal(us, 0);
	assert_int_equal(query_parse_time("2026-11-25T12:00:00Z", &us), 0);
	assert_int_equal(us, INT64_C(1795608000) * 1000000);
	assert_int_equal(query_parse_time("2026-11-25T13:00:00+01:00", &us), 0);
	assert_int_equal(us, INT64_C(1795608000) * 1000000);
	assert_int_equal(query_parse_time("2026-11-25T06:30:00.25-05:30", &us), 0);
	assert_int_equal(us, INT64_C(1795608000) * 1000000 + 250000);
	assert_int_equal(query_parse_time("2026-11-25T12:00", &us), 0);
	assert_int_equal(query_parse_time("2024-02-29", &us), 0);
	assert_int_equal(query_parse_time("2026-02-29", &us), TRYGG_EINVAL);
	assert_int_equal(query_parse_time("2026-13-01", &us), TRYGG_EINVAL);
	assert_int_equal(query_parse_time("2026-11-25T25:00Z", &us), TRYGG_EINVAL);
	assert_int_equal(query_parse_time("yesterday", &us), TRYGG_EINVAL);
	assert_int_equal(query_parse_time("2026-11-25Tx", &us), TRYGG_EINVAL);
	assert_int_equal(query_parse_time("2026-11-25T12:00:00Zjunk", &us), TRYGG_EINVAL);
}

static void
test_query_builder(void **state)
{
	(void)state;
	query q;
	query_init(&q);
	assert_int_equal(query_where(&q, "r.partner_id = $?", "7"), 0);
	assert_int_equal(query_where(&q, "r.category = ANY($?::text[])", "{litter}"), 0);
	query_where_const(&q, "NOT r.sensitive");
	query_finish(&q, QUERY_ORDER_SRID, 50);
	assert_non_null(strstr(q.sql,
	    " FROM reports r WHERE true AND r.partner_id = $1 AND r.category = ANY($2::text[])"
	    " AND NOT r.sensitive ORDER BY r.service_request_id DESC LIMIT 50"));
	assert_int_equal(q.n, 2);
	assert_string_equal(q.values[1], "{litter}");

	/* Driven by one column: a range of (col, key) per value, then merged. */
	query_init(&q);
	assert_int_equal(query_where(&q, "r.partner_id = $?", "7"), 0);
	assert_int_equal(query_drive(&q, "category", "text", "{litter,graffiti}"), 0);
	assert_int_equal(query_drive(&q, "status", "text", "{open}"), TRYGG_ETOOBIG);
	query_where_const(&q, "NOT r.sensitive");
	query_finish(&q, QUERY_ORDER_CREATED, 1000);
	assert_non_null(strstr(q.sql,
	    " FROM (SELECT DISTINCT unnest($2::text[])) d(v) CROSS JOIN LATERAL"
	    " (SELECT * FROM reports r WHERE r.category = ANY(ARRAY[d.v])"
	    " AND r.partner_id = $1 AND NOT r.sensitive"
	    " ORDER BY r.category, r.created_at DESC LIMIT 1000) r"
	    " ORDER BY r.created_at DESC LIMIT 1000"));
	assert_int_equal(q.n, 2);
	assert_string_equal(q.values[1], "{litter,graffiti}");

	/* One value: the index range alone, in the index's order. */
	query_init(&q);
	assert_int_equal(query_drive(&q, "status", "text", "{open}"), 0);
	assert_int_equal(query_where(&q, "r.service_request_id < $?::bigint", "99"), 0);
	query_finish(&q, QUERY_ORDER_SRID, 10);
	assert_string_equal(strstr(q.sql, " FROM "),
	    " FROM reports r WHERE r.status = ANY($1::text[]) AND r.service_request_id < $2::bigint"
	    " ORDER BY r.status, r.service_request_id DESC LIMIT 10");
	assert_true(trygg_uuid_valid("1cda07ec-88de-44a8-a472-2dd729a3f2ff"));
	assert_false(trygg_uuid_valid("1cda07ec-88de-44a8-a472-2dd729a3f2f"));
	assert_false(trygg_uuid_valid("1cda07ec088de-44a8-a472-2dd729a3f2ff"));
	/* Report ids: UUIDv7, in time order as text (and as uuid). */
	char u1[37], u2[37], u3[37], u4[37];
	trygg_uuid7(u1, 1764500000123);
	trygg_uuid7(u2, 1764500000123);
	trygg_uuid7(u3, 1764500000124);
	trygg_uuid4(u4);
	assert_true(trygg_uuid_valid(u1) && trygg_uuid_valid(u4));
	assert_memory_equal(u1, "019ad465-4d7b-7", 15); /* ms 0x019ad4654d7b, version 7 */
	assert_true(strchr("89ab", u1[19]) != NULL);    /* RFC 9562 variant */
	assert_string_not_equal(u1, u2);                /* 74 random bits */
	assert_true(strcmp(u1, u3) < 0 && strcmp(u2, u3) < 0);
	assert_int_equal(u4[14], '4');
	int64_t n;
	assert_int_equal(query_parse_srid("42", &n), 0);
	assert_int_equal(n, 42);
	assert_int_equal(query_parse_srid("0", &n), TRYGG_EINVAL);
	assert_int_equal(query_parse_srid("4x", &n), TRYGG_EINVAL);
	assert_int_equal(query_parse_srid("1234567890123456789", &n), TRYGG_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xml_escape),
	    cmocka_unit_test(test_unsafe_text),
	    cmocka_unit_test(test_services),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_visibility),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_query_builder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
