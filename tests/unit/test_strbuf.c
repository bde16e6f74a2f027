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

/* The byte-at-a-time escaping strbuf_append_json had before its 8-byte fast
 * path: the reference the fast path must match exactly. */
static void
json_reference(strbuf *b, const char *s, size_t n)
{
	strbuf_appendc(b, '"');
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t len;
		if (c == '"' || c == '\\') {
			strbuf_appendc(b, '\\');
			strbuf_appendc(b, (char)c);
			i++;
		} else if (c < 0x20) {
			strbuf_appendf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			strbuf_appendc(b, (char)c);
			i++;
		} else if ((len = trygg_utf8_decode(s + i, n - i, &cp)) != 0) {
			strbuf_appendn(b, s + i, len);
			i += len;
		} else {
			strbuf_append(b, "\xef\xbf\xbd");
			i++;
		}
	}
	strbuf_appendc(b, '"');
}

static void
test_json_fast_path(void **state)
{
	(void)state;
	/* Every special byte at every offset of 8-byte words, among plain
	 * text, UTF-8 split across words and invalid bytes, in random mixes. */
	static const char *const pieces[] = {"abcdefgh", "x", "\"", "\\", "\n", "\x01", "\x1f", " ",
	    "\x7f", "~", "\xc3\xa5", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xe2\x82",
	    "0123456789abcdef"};
	unsigned seed = 7;
	for (int round = 0; round < 20000; round++) {
		char in[256];
		size_t n = 0;
		seed = seed * 1103515245u + 12345u;
		int parts = (int)(seed >> 16) % 12;
		for (int k = 0; k < parts; k++) {
			seed = seed * 1103515245u + 12345u;
			const char *p = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
			size_t len = strlen(p);
			memcpy(in + n, p, len);
			n += len;
		}
		strbuf got = STRBUF_INIT, want = STRBUF_INIT;
		strbuf_append_jsonn(&got, in, n);
		json_reference(&want, in, n);
		assert_int_equal(got.len, want.len);
		assert_memory_equal(got.s, want.s, want.len);
		in[n] = '\0';
		strbuf_reset(&got);
		strbuf_append_json(&got, in);
		assert_string_equal(got.s, want.s);
		strbuf_fini(&got);
		strbuf_fini(&want);
	}
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
	    cmocka_unit_test(test_json_fast_path),
	    cmocka_unit_test(test_xml),
	    cmocka_unit_test(test_pg_text_array),
	    cmocka_unit_test(test_steal_reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
