/*
 * strbuf.c: the growable string builder (see strbuf.h).
 */
#include "strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* U+FFFD, written for anything the output cannot carry. */
#define REPLACEMENT "\xef\xbf\xbd"

void
strbuf_reserve(strbuf *b, size_t n)
{
	if (b->len + n + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	b->s = xrealloc(b->s, cap);
	b->cap = cap;
}

void
strbuf_appendn(strbuf *b, const char *s, size_t n)
{
	strbuf_reserve(b, n);
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void
strbuf_append(strbuf *b, const char *s)
{
	strbuf_appendn(b, s, strlen(s));
}

void
strbuf_appendc(strbuf *b, char c)
{
	strbuf_reserve(b, 1);
	b->s[b->len++] = c;
	b->s[b->len] = '\0';
}

void
strbuf_vappendf(strbuf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0) /* only a bad format string: append nothing */
		return;
	strbuf_reserve(b, (size_t)n);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void
strbuf_appendf(strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	strbuf_vappendf(b, fmt, ap);
	va_end(ap);
}

void
strbuf_append_json(strbuf *b, const char *s)
{
	if (s == NULL)
		strbuf_appendn(b, "null", 4);
	else
		strbuf_append_jsonn(b, s, strlen(s));
}

/* Bytes of x that are below 0x20 or 0x80 and above, '"' or '\\': zero if
 * none, so the 8 bytes go out as they are (SWAR; each test flags a byte
 * by its top bit, never wrongly for a byte that passes). */
static uint64_t
json_special8(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
	return ((x - ones * 0x20) | (q - ones) | (bs - ones) | x) & high;
}

void
strbuf_append_jsonn(strbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	/* Worst case every byte becomes \u00XX: written in place, no copies. */
	strbuf_reserve(b, n * 6 + 2);
	char *o = b->s + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		/* Plain ASCII, the usual text, eight bytes at a time. */
		uint64_t w;
		while (n - i >= 8 && (memcpy(&w, s + i, 8), json_special8(w) == 0)) {
			memcpy(o, &w, 8);
			o += 8;
			i += 8;
		}
		if (i == n)
			break;
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t len;
		if (c < 0x80) {
			if (c == '"' || c == '\\') {
				*o++ = '\\';
				*o++ = (char)c;
			} else if (c < 0x20) {
				memcpy(o, "\\u00", 4);
				o[4] = hex[c >> 4];
				o[5] = hex[c & 15];
				o += 6;
			} else {
				*o++ = (char)c;
			}
			i++;
		} else if ((len = trygg_utf8_decode(s + i, n - i, &cp)) != 0) {
			memcpy(o, s + i, len);
			o += len;
			i += len;
		} else {
			memcpy(o, REPLACEMENT, 3);
			o += 3;
			i++;
		}
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

void
strbuf_append_xml(strbuf *b, const char *s)
{
	size_t n = strlen(s);
	/* Worst case every byte becomes "&quot;" or U+FFFD. */
	strbuf_reserve(b, n * 6);
	char *o = b->s + b->len;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = trygg_utf8_decode(s + i, n - i, &cp);
		const char *rep = NULL;
		if (len == 0 || !trygg_xml_char(cp)) {
			rep = REPLACEMENT;
			len = len ? len : 1;
		} else {
			switch (cp) {
			case '&': rep = "&amp;"; break;
			case '<': rep = "&lt;"; break;
			case '>': rep = "&gt;"; break;
			case '"': rep = "&quot;"; break;
			case '\'': rep = "&apos;"; break;
			default: break;
			}
		}
		if (rep != NULL) {
			size_t rl = strlen(rep);
			memcpy(o, rep, rl);
			o += rl;
		} else {
			memcpy(o, s + i, len);
			o += len;
		}
		i += len;
	}
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

const char *
strbuf_str(const strbuf *b)
{
	return b->s ? b->s : "";
}

char *
strbuf_steal(strbuf *b)
{
	char *s = b->s ? b->s : xstrdup("");
	b->s = NULL;
	b->len = b->cap = 0;
	return s;
}

void
strbuf_reset(strbuf *b)
{
	b->len = 0;
	if (b->s)
		b->s[0] = '\0';
}

void
strbuf_fini(strbuf *b)
{
	if (b == NULL)
		return;
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

void
strbuf_append_pg_array_elem(strbuf *b, const char *s)
{
	strbuf_appendc(b, '"');
	for (const char *p = s ? s : ""; *p; p++) {
		if (*p == '"' || *p == '\\')
			strbuf_appendc(b, '\\');
		strbuf_appendc(b, *p);
	}
	strbuf_appendc(b, '"');
}

void
strbuf_append_pg_text_array(strbuf *b, char *const *v, size_t n)
{
	strbuf_appendc(b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			strbuf_appendc(b, ',');
		strbuf_append_pg_array_elem(b, v[i]);
	}
	strbuf_appendc(b, '}');
}
