/*
 * test_log.c: the JSON-lines logger (services/common/log.c). stderr is
 * captured through a pipe and every line is parsed with jansson, so "valid
 * JSON" means what a log shipper would accept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "stderr_capture.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Parses each line of out as a JSON object into lines[]; returns the count. */
static size_t
parse_lines(char *out, json_t **lines, size_t max)
{
	size_t n = 0;
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_error_t err;
		json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &err);
		if (j == NULL || !json_is_object(j))
			fail_msg("not a JSON object: %s (%s)", line, err.text);
		assert_true(n < max);
		lines[n++] = j;
	}
	return n;
}

static const char *
get_str(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_string(v))
		fail_msg("%s is not a string", key);
	return json_string_value(v);
}

static void
test_lines_are_json(void **state)
{
	(void)state;
	char b1[128], b2[128];
	log_init("intake", LOG_DEBUG);
	struct capture cap;
	capture_start(&cap);
	log_msg(LOG_INFO, "listening", "\"port\":%d", 8080);
	log_msg(LOG_WARN, "no_fields", NULL);
	log_debug("db_query", "\"sql\":%s", log_json_str("SELECT \"x\"\n\tFROM t", b1, sizeof(b1)));
	log_error("bad_input", "\"body\":%s,\"n\":%d",
	    log_json_str("\x01\x02 \\ \x7f end", b2, sizeof(b2)), 2);
	char *out = capture_end(&cap);

	json_t *lines[8];
	size_t n = parse_lines(out, lines, 8);
	assert_int_equal(n, 4);
	static const char *levels[] = {"info", "warn", "debug", "error"};
	static const char *msgs[] = {"listening", "no_fields", "db_query", "bad_input"};
	for (size_t k = 0; k < n; k++) {
		const char *ts = get_str(lines[k], "ts");
		/* 2026-11-25T12:00:00.123Z */
		assert_int_equal(strlen(ts), 24);
		assert_int_equal(ts[10], 'T');
		assert_int_equal(ts[19], '.');
		assert_int_equal(ts[23], 'Z');
		assert_string_equal(get_str(lines[k], "level"), levels[k]);
		assert_string_equal(get_str(lines[k], "service"), "intake");
		assert_string_equal(get_str(lines[k], "msg"), msgs[k]);
	}
	assert_int_equal(json_integer_value(json_object_get(lines[0], "port")), 8080);
	assert_string_equal(get_str(lines[2], "sql"), "SELECT \"x\"\n\tFROM t");
	assert_string_equal(get_str(lines[3], "body"), "\x01\x02 \\ \x7f end");
	for (size_t k = 0; k < n; k++)
		json_decref(lines[k]);
	free(out);
}

static void
test_json_str_escaping(void **state)
{
	(void)state;
	char buf[128];
	assert_string_equal(log_json_str("plain", buf, sizeof(buf)), "\"plain\"");
	assert_string_equal(log_json_str("", buf, sizeof(buf)), "\"\"");
	assert_string_equal(log_json_str(NULL, buf, sizeof(buf)), "\"\"");
	assert_string_equal(log_json_str("a\"b", buf, sizeof(buf)), "\"a\\\"b\"");
	assert_string_equal(log_json_str("a\\b", buf, sizeof(buf)), "\"a\\\\b\"");
	assert_string_equal(log_json_str("a\nb", buf, sizeof(buf)), "\"a\\nb\"");
	assert_string_equal(log_json_str("\t\r\x01\x1f\x7f", buf, sizeof(buf)),
	    "\"\\u0009\\u000d\\u0001\\u001f\\u007f\"");
	/* UTF-8 passes through untouched. */
	assert_string_equal(log_json_str("Hägersten", buf, sizeof(buf)), "\"Hägersten\"");
	/* The result is inline-usable: it returns buf. */
	assert_ptr_equal(log_json_str("x", buf, sizeof(buf)), buf);
}

static void
test_json_str_truncation(void **state)
{
	(void)state;
	/* Every buffer size yields a valid JSON string that is a prefix of the
	 * input, and no escape sequence is ever cut in half. */
	const char *in = "ab\"cd\\ef\ngh\x01ij";
	for (size_t len = 3; len < 40; len++) {
		char buf[40];
		log_json_str(in, buf, len);
		assert_true(strlen(buf) < len);
		json_error_t err;
		json_t *j = json_loads(buf, JSON_DECODE_ANY, &err);
		if (j == NULL)
			fail_msg("len %zu: %s is not JSON (%s)", len, buf, err.text);
		const char *s = json_string_value(j);
		assert_non_null(s);
		assert_memory_equal(s, in, strlen(s));
		json_decref(j);
	}
	char tiny[2] = "x";
	log_json_str("abc", tiny, sizeof(tiny));
	assert_string_equal(tiny, "");
}

static void
test_truncation_keeps_utf8_and_lines_valid(void **state)
{
	(void)state;
	/* "å" is two bytes: no buffer size may split it (jansson rejects
	 * invalid UTF-8, so a split would fail to parse). */
	const char *in = "åäöåäöåäö";
	for (size_t len = 3; len < 24; len++) {
		char buf[24];
		log_json_str(in, buf, len);
		json_error_t err;
		json_t *j = json_loads(buf, JSON_DECODE_ANY, &err);
		if (j == NULL)
			fail_msg("len %zu: %s is not JSON (%s)", len, buf, err.text);
		json_decref(j);
	}
	/* Fields longer than a line are dropped, never cut mid-string. */
	char *big = malloc(6000);
	memset(big, 'x', 5999);
	big[5999] = '\0';
	struct capture cap;
	capture_start(&cap);
	log_msg(LOG_ERROR, "too_long", "\"detail\":\"%s\"", big);
	char *out = capture_end(&cap);
	json_t *lines[4];
	assert_int_equal(parse_lines(out, lines, 4), 1);
	assert_true(json_is_true(json_object_get(lines[0], "fields_truncated")));
	assert_string_equal(get_str(lines[0], "msg"), "too_long");
	json_decref(lines[0]);
	free(out);
	free(big);
}

static void
test_level_filtering(void **state)
{
	(void)state;
	log_init("notifier", LOG_WARN);
	assert_int_equal(log_get_level(), LOG_WARN);
	struct capture cap;
	capture_start(&cap);
	log_debug("hidden_debug", NULL);
	log_info("hidden_info", NULL);
	log_warn("shown_warn", NULL);
	log_error("shown_error", NULL);
	log_set_level(LOG_DEBUG);
	log_debug("shown_debug", NULL);
	log_set_level(LOG_ERROR);
	log_warn("hidden_warn", NULL);
	char *out = capture_end(&cap);
	assert_null(strstr(out, "hidden"));
	json_t *lines[8];
	size_t n = parse_lines(out, lines, 8);
	assert_int_equal(n, 3);
	assert_string_equal(get_str(lines[0], "msg"), "shown_warn");
	assert_string_equal(get_str(lines[1], "msg"), "shown_error");
	assert_string_equal(get_str(lines[2], "msg"), "shown_debug");
	assert_string_equal(get_str(lines[2], "service"), "notifier");
	for (size_t k = 0; k < n; k++)
		json_decref(lines[k]);
	free(out);
}

static void
test_parse_level(void **state)
{
	(void)state;
	enum log_level l;
	assert_int_equal(log_parse_level("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_parse_level("INFO", &l), 0);
	assert_int_equal(l, LOG_INFO);
	assert_int_equal(log_parse_level("Warn", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_parse_level("error", &l), 0);
	assert_int_equal(l, LOG_ERROR);
	assert_int_equal(log_parse_level("fatal", &l), TRYGG_EINVAL);
	assert_int_equal(log_parse_level("", &l), TRYGG_EINVAL);
	assert_int_equal(log_parse_level("verbose", &l), TRYGG_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines_are_json),
	    cmocka_unit_test(test_json_str_escaping),
	    cmocka_unit_test(test_json_str_truncation),
	    cmocka_unit_test(test_truncation_keeps_utf8_and_lines_valid),
	    cmocka_unit_test(test_level_filtering),
	    cmocka_unit_test(test_parse_level),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
