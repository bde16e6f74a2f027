/*
 * test_json.c: unit tests for json.c, the bounded JSON parser and typed
 * getters. No loop is involved; each test frees what it parsed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static json_t *
parse_ok(const char *text)
{
	json_t *v = NULL;
	tjson_error e;
	int rv = tjson_parse(text, strlen(text), 0, 0, &v, &e);
	if (rv != 0)
		fail_msg("parse failed: %s", e.message);
	return v;
}

static void
parse_fails(const char *text, size_t max_bytes, int max_depth, int want_rv, const char *want_code)
{
	json_t *v = NULL;
	tjson_error e;
	int rv = tjson_parse(text, strlen(text), max_bytes, max_depth, &v, &e);
	assert_int_equal(rv, want_rv);
	assert_null(v);
	assert_string_equal(e.code, want_code);
	assert_int_equal(e.err, want_rv);
	assert_true(e.message[0] != '\0');
}

static void
test_parse_valid(void **state)
{
	(void)state;
	json_t *v = parse_ok("{\"a\":1,\"b\":\"x\",\"c\":[1,{\"d\":null}]}");
	assert_true(json_is_object(v));
	json_decref(v);
}

static void
test_duplicates_rejected(void **state)
{
	(void)state;
	parse_fails("{\"a\":1,\"a\":2}", 0, 0, TRYGG_EINVAL, "invalid_json");
	parse_fails("{\"o\":{\"k\":1,\"k\":1}}", 0, 0, TRYGG_EINVAL, "invalid_json");
}

static void
test_invalid_utf8_rejected(void **state)
{
	(void)state;
	parse_fails("{\"a\":\"\xff\xfe\"}", 0, 0, TRYGG_EINVAL, "invalid_json");
	parse_fails("{\"\xc3\x28\":1}", 0, 0, TRYGG_EINVAL, "invalid_json");
	/* An escaped NUL would truncate C strings: jansson refuses it by default. */
	parse_fails("{\"a\":\"x\\u0000y\"}", 0, 0, TRYGG_EINVAL, "invalid_json");
	/* Valid multi-byte UTF-8 is fine. */
	json_decref(parse_ok("{\"a\":\"bl\xc3\xa5"
	                     "b\xc3\xa6"
	                     "r\"}"));
}

static void
test_syntax_and_type(void **state)
{
	(void)state;
	parse_fails("", 0, 0, TRYGG_EINVAL, "invalid_json");
	parse_fails("{\"a\":", 0, 0, TRYGG_EINVAL, "invalid_json");
	parse_fails("{} trailing", 0, 0, TRYGG_EINVAL, "invalid_json");
	parse_fails("[1,2]", 0, 0, TRYGG_EINVAL, "not_object");
	parse_fails("\"str\"", 0, 0, TRYGG_EINVAL, "invalid_json");
	/* Embedded raw NUL byte. */
	json_t *v = NULL;
	tjson_error e;
	assert_int_equal(tjson_parse("{\"a\":1}\0", 8, 0, 0, &v, &e), TRYGG_EINVAL);
}

static void
test_size_cap(void **state)
{
	(void)state;
	json_t *v = NULL;
	tjson_error e;
	const char *t = "{\"a\":\"0123456789\"}";
	assert_int_equal(tjson_parse(t, strlen(t), 10, 0, &v, &e), TRYGG_ETOOBIG);
	assert_int_equal(e.status, 413);
	assert_string_equal(e.code, "body_too_large");
	assert_int_equal(tjson_parse(t, strlen(t), strlen(t), 0, &v, &e), 0);
	json_decref(v);
}

static void
test_depth_cap(void **state)
{
	(void)state;
	/* depth 3 allowed, 4 refused */
	json_decref(parse_ok("{\"a\":{\"b\":[1]}}"));
	parse_fails("{\"a\":{\"b\":[[1]]}}", 0, 3, TRYGG_EINVAL, "too_deep");
	json_t *v = NULL;
	tjson_error e;
	const char *ok3 = "{\"a\":{\"b\":[1]}}";
	assert_int_equal(tjson_parse(ok3, strlen(ok3), 0, 3, &v, &e), 0);
	json_decref(v);
	/* Brackets inside strings do not count. */
	const char *s = "{\"a\":\"[[[[[[[[{{{{{{\\\"[[[[\"}";
	assert_int_equal(tjson_parse(s, strlen(s), 0, 2, &v, &e), 0);
	json_decref(v);
	/* A hostile deep document is refused before jansson recurses. */
	size_t n = 100000;
	char *deep = malloc(n * 2 + 1);
	for (size_t i = 0; i < n; i++) {
		deep[i] = '[';
		deep[n + i] = ']';
	}
	deep[2 * n] = '\0';
	deep[0] = '{';
	assert_int_equal(tjson_parse(deep, 2 * n, 4 * n, 0, &v, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "too_deep");
	free(deep);
}

static void
test_get_string(void **state)
{
	(void)state;
	json_t *o = parse_ok("{\"description\":\"hello\",\"n\":5,\"nul\":null}");
	tjson_error e;
	const char *s = NULL;
	assert_int_equal(tjson_get_string(o, "description", true, 10, &s, &e), 0);
	assert_string_equal(s, "hello");

	assert_int_equal(tjson_get_string(o, "description", true, 4, &s, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "too_long");
	assert_string_equal(e.field, "description");
	assert_non_null(strstr(e.message, "description"));

	assert_int_equal(tjson_get_string(o, "n", true, 0, &s, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "wrong_type");
	assert_string_equal(e.field, "n");

	assert_int_equal(tjson_get_string(o, "title", true, 0, &s, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "missing_field");
	assert_string_equal(e.field, "title");
	assert_int_equal(e.status, 400);

	/* null counts as missing */
	assert_int_equal(tjson_get_string(o, "nul", true, 0, &s, &e), TRYGG_EINVAL);
	assert_string_equal(e.field, "nul");
	s = "default";
	assert_int_equal(tjson_get_string(o, "nul", false, 0, &s, &e), 0);
	assert_string_equal(s, "default");
	assert_int_equal(tjson_get_string(o, "absent", false, 0, &s, &e), 0);
	assert_string_equal(s, "default");
	json_decref(o);
}

static void
test_get_int(void **state)
{
	(void)state;
	json_t *o = parse_ok("{\"n\":42,\"neg\":-5,\"r\":1.5,\"s\":\"7\"}");
	tjson_error e;
	int64_t x = 0;
	assert_int_equal(tjson_get_int(o, "n", true, 0, 100, &x, &e), 0);
	assert_int_equal(x, 42);
	assert_int_equal(tjson_get_int(o, "neg", true, 0, 100, &x, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "out_of_range");
	assert_string_equal(e.field, "neg");
	assert_int_equal(tjson_get_int(o, "r", true, 0, 100, &x, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "wrong_type");
	assert_string_equal(e.field, "r");
	assert_int_equal(tjson_get_int(o, "s", true, 0, 100, &x, &e), TRYGG_EINVAL);
	assert_string_equal(e.field, "s");
	assert_int_equal(tjson_get_int(o, "limit", true, 0, 100, &x, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "missing_field");
	assert_string_equal(e.field, "limit");
	x = 9;
	assert_int_equal(tjson_get_int(o, "limit", false, 0, 100, &x, &e), 0);
	assert_int_equal(x, 9);
	json_decref(o);
}

static void
test_get_double(void **state)
{
	(void)state;
	json_t *o = parse_ok("{\"lat\":59.91,\"lon\":10,\"bad\":200.5,\"b\":true}");
	tjson_error e;
	double d = 0;
	assert_int_equal(tjson_get_double(o, "lat", true, -90, 90, &d, &e), 0);
	assert_true(d > 59.9 && d < 59.92);
	assert_int_equal(tjson_get_double(o, "lon", true, -180, 180, &d, &e), 0);
	assert_true(d == 10.0);
	assert_int_equal(tjson_get_double(o, "bad", true, -180, 180, &d, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "out_of_range");
	assert_string_equal(e.field, "bad");
	assert_int_equal(tjson_get_double(o, "b", true, -180, 180, &d, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "wrong_type");
	assert_string_equal(e.field, "b");
	assert_int_equal(tjson_get_double(o, "alt", true, 0, 1, &d, &e), TRYGG_EINVAL);
	assert_string_equal(e.field, "alt");
	json_decref(o);
}

static void
test_get_bool_object_array(void **state)
{
	(void)state;
	json_t *o = parse_ok("{\"t\":true,\"f\":false,\"i\":1,\"o\":{},\"a\":[1,2,3]}");
	tjson_error e;
	bool b = false;
	assert_int_equal(tjson_get_bool(o, "t", true, &b, &e), 0);
	assert_true(b);
	assert_int_equal(tjson_get_bool(o, "f", true, &b, &e), 0);
	assert_false(b);
	assert_int_equal(tjson_get_bool(o, "i", true, &b, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "wrong_type");
	assert_string_equal(e.field, "i");
	assert_int_equal(tjson_get_bool(o, "x", true, &b, &e), TRYGG_EINVAL);
	assert_string_equal(e.field, "x");

	json_t *sub = NULL;
	assert_int_equal(tjson_get_object(o, "o", true, &sub, &e), 0);
	assert_true(json_is_object(sub));
	assert_int_equal(tjson_get_object(o, "a", true, &sub, &e), TRYGG_EINVAL);
	assert_string_equal(e.field, "a");
	assert_int_equal(tjson_get_array(o, "a", true, 3, &sub, &e), 0);
	assert_int_equal(json_array_size(sub), 3);
	assert_int_equal(tjson_get_array(o, "a", true, 2, &sub, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "too_long");
	assert_string_equal(e.field, "a");
	assert_true(tjson_has(o, "t"));
	assert_false(tjson_has(o, "zz"));
	json_decref(o);
}

static void
test_check_fields(void **state)
{
	(void)state;
	json_t *o = parse_ok("{\"a\":1,\"typo\":2}");
	tjson_error e;
	const char *allowed[] = {"a", "b", NULL};
	assert_int_equal(tjson_check_fields(o, allowed, &e), TRYGG_EINVAL);
	assert_string_equal(e.code, "unknown_field");
	assert_string_equal(e.field, "typo");
	const char *allowed2[] = {"a", "typo", NULL};
	assert_int_equal(tjson_check_fields(o, allowed2, &e), 0);
	json_decref(o);
}

static void
test_dump(void **state)
{
	(void)state;
	json_t *o = json_pack("{s:s,s:i}", "k", "v\"q", "n", 3);
	size_t len = 0;
	char *s = tjson_dump(o, &len);
	assert_non_null(s);
	/* jansson keeps insertion order */
	assert_string_equal(s, "{\"k\":\"v\\\"q\",\"n\":3}");
	assert_int_equal(len, strlen(s));
	free(s);
	json_decref(o);
	json_t *arr = json_pack("[i,b]", 1, 1);
	s = tjson_dump(arr, NULL);
	assert_string_equal(s, "[1,true]");
	free(s);
	json_decref(arr);
	assert_null(tjson_dump(NULL, NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_valid),
	    cmocka_unit_test(test_duplicates_rejected),
	    cmocka_unit_test(test_invalid_utf8_rejected),
	    cmocka_unit_test(test_syntax_and_type),
	    cmocka_unit_test(test_size_cap),
	    cmocka_unit_test(test_depth_cap),
	    cmocka_unit_test(test_get_string),
	    cmocka_unit_test(test_get_int),
	    cmocka_unit_test(test_get_double),
	    cmocka_unit_test(test_get_bool_object_array),
	    cmocka_unit_test(test_check_fields),
	    cmocka_unit_test(test_dump),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
