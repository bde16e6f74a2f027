/*
 * test_strbuf.c: the string builder grows past its first allocation, keeps
 * the text NUL-terminated, formats, escapes JSON and XML (U+FFFD for bytes
 * that are not UTF-8), and hands over or releases its memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strbuf.h"

static void
test_empty(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	assert_string_equal(strbuf_str(&b), "");
	assert_int_equal(b.len, 0);
	char *s = strbuf_steal(&b);
	assert_string_equal(s, "");
	free(s);
	strbuf_fini(&b);
	strbuf_fini(NULL);
}

static void
test_append_grows(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	for (int i = 0; i < 1000; i++)
		strbuf_append(&b, "abc");
	strbuf_appendc(&b, '!');
	strbuf_appendn(&b, "xyz", 2);
	assert_int_equal(b.len, 3003);
	assert_int_equal(strlen(b.s), 3003);
	assert_memory_equal(b.s + 2997, "abc!xy", 7);
	assert_true(b.cap > b.len);
	strbuf_fini(&b);
	assert_null(b.s);
	assert_int_equal(b.len, 0);
}

static void
test_appendf(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	strbuf_append(&b, "n=");
	strbuf_appendf(&b, "%d,%s", 42, "x");
	char big[600];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	strbuf_appendf(&b, "[%s]", big);
	assert_int_equal(b.len, 6 + 601);
	assert_memory_equal(b.s, "n=42,x[qqq", 10);
	assert_int_equal(b.s[b.len - 1], ']');
	strbuf_fini(&b);
}

static void
test_json(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	strbuf_append_json(&b, "a\"b\\c\n\x01\xc3\xa5");
	strbuf_appendc(&b, ' ');
	strbuf_append_json(&b, NULL);
	strbuf_appendc(&b, ' ');
	strbuf_append_json(&b,
	    "x\xff"
	    "y");
	assert_string_equal(b.s, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa5\" null \"x\xef\xbf\xbdy\"");
	strbuf_fini(&b);
}

static void
test_xml(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	strbuf_append_xml(&b, "<a href='x'>&\"\x01\xc3\xa5\xff");
	assert_string_equal(b.s,
	    "&lt;a href=&apos;x&apos;&gt;&amp;&quot;\xef\xbf\xbd\xc3\xa5\xef\xbf\xbd");
	strbuf_fini(&b);
}

/* A Postgres array literal: quoted elements, '"' and '\\' escaped, NULL
 * as "", "{}" for none; appended after what the buffer holds. One element
 * alone likewise. */
static void
test_pg_text_array(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	strbuf_append_pg_text_array(&b, NULL, 0);
	assert_string_equal(b.s, "{}");
	strbuf_reset(&b);
	char *v[] = {"a", "b,c {d}", "say \"hi\"", "back\\slash", NULL, ""};
	strbuf_append(&b, "x=");
	strbuf_append_pg_text_array(&b, v, 6);
	assert_string_equal(b.s,
	    "x={\"a\",\"b,c {d}\",\"say \\\"hi\\\"\",\"back\\\\slash\",\"\",\"\"}");
	strbuf_reset(&b);
	strbuf_append_pg_array_elem(&b, "a\"b\\c");
	strbuf_append_pg_array_elem(&b, NULL);
	assert_string_equal(b.s, "\"a\\\"b\\\\c\"\"\"");
	strbuf_fini(&b);
}

static void
test_steal_reset(void **state)
{
	(void)state;
	strbuf b = STRBUF_INIT;
	strbuf_append(&b, "hello");
	strbuf_reset(&b);
	assert_string_equal(strbuf_str(&b), "");
	assert_int_equal(b.len, 0);
	strbuf_append(&b, "again");
	char *s = strbuf_steal(&b);
	assert_string_equal(s, "again");
	assert_null(b.s);
	assert_int_equal(b.len, 0);
	free(s);
	strbuf_append(&b, "reused");
	assert_string_equal(b.s, "reused");
	strbuf_fini(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_append_grows),
	    cmocka_unit_test(test_appendf),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_xml),
	    cmocka_unit_test(test_pg_text_array),
	    cmocka_unit_test(test_steal_reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
