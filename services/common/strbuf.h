/*
 * strbuf.h: the one growable string builder (redis has sds; we need far
 * less). Every service builds text with it: Prometheus exposition, Open311
 * JSON and XML, task e-mails, webhook bodies, SQL array literals.
 *
 * A strbuf is an embedded object: zero it (or use STRBUF_INIT), append,
 * then either take the text with strbuf_steal() or release it with
 * strbuf_fini(). The text is always NUL-terminated once anything has been
 * appended; strbuf_str() gives "" for a buffer that is still empty.
 *
 * Out of memory aborts (util.h's policy), so no function here can fail.
 */
#ifndef TRYGG_STRBUF_H
#define TRYGG_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

#include "util.h"

typedef struct strbuf {
	char *s;    /* the text, NUL-terminated; NULL until the first append */
	size_t len; /* bytes of text, not counting the NUL */
	size_t cap; /* bytes allocated at s */
} strbuf;

#define STRBUF_INIT \
	{ \
		NULL, 0, 0 \
	}

/* Makes room for n more bytes and a NUL. */
void strbuf_reserve(strbuf *b, size_t n);

void strbuf_append(strbuf *b, const char *s);
void strbuf_appendn(strbuf *b, const char *s, size_t n);
void strbuf_appendc(strbuf *b, char c);
void strbuf_appendf(strbuf *b, const char *fmt, ...) TRYGG_PRINTF(2, 3);
void strbuf_vappendf(strbuf *b, const char *fmt, va_list ap) TRYGG_PRINTF(2, 0);

/*
 * Appends s as a JSON string with its quotes ("null" for NULL): '"', '\\'
 * and control characters escaped, bytes that are not UTF-8 written as
 * U+FFFD, so the result is always valid JSON.
 */
void strbuf_append_json(strbuf *b, const char *s);

/* The same for the n bytes at s (a NUL among them is escaped as \u0000). */
void strbuf_append_jsonn(strbuf *b, const char *s, size_t n);

/*
 * Appends s escaped for XML text or attribute values (&, <, >, ", ').
 * Bytes that are not UTF-8 and characters XML 1.0 cannot carry (C0 controls
 * but tab, LF and CR; U+FFFE, U+FFFF) are written as U+FFFD, so one bad row
 * never makes a document unparsable.
 */
void strbuf_append_xml(strbuf *b, const char *s);

/*
 * Appends a Postgres array literal of the n strings of v: "{" then each
 * element in double quotes with '"' and '\\' escaped by a backslash,
 * separated by commas, then "}" ("{}" when n is 0). A NULL element is
 * written as "" (the empty string, not an SQL NULL). The literal fits a
 * text[] parameter, or any array type whose elements parse from text.
 */
void strbuf_append_pg_text_array(strbuf *b, char *const *v, size_t n);

/* Appends one element of such a literal, s in double quotes with '"' and
 * '\\' escaped (NULL as ""), for a caller that writes the braces and
 * commas itself. */
void strbuf_append_pg_array_elem(strbuf *b, const char *s);

/* The text so far; "" (not NULL) while the buffer is empty. Valid until
 * the next append, steal, reset or fini. */
const char *strbuf_str(const strbuf *b);

/* The text as a heap string the caller owns and frees (never NULL: "" for
 * an empty buffer); the buffer is left empty and reusable. */
char *strbuf_steal(strbuf *b);

/* Empties the buffer and keeps its memory. */
void strbuf_reset(strbuf *b);

/* Frees the memory and leaves the buffer empty; accepts NULL. */
void strbuf_fini(strbuf *b);

#endif
