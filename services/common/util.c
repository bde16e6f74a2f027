/*
 * util.c: error strings, aborting allocators, clocks and ids shared by
 * every module. See util.h for the out-of-memory policy.
 */
#include "util.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *
trygg_strerror(int err)
{
	switch (err) {
	case TRYGG_OK: return "ok";
	case TRYGG_EINVAL: return "invalid argument";
	case TRYGG_ENOMEM: return "out of memory";
	case TRYGG_ENOENT: return "not found";
	case TRYGG_EEXIST: return "already exists";
	case TRYGG_ETOOBIG: return "over limit";
	case TRYGG_EIO: return "i/o error";
	case TRYGG_EDB: return "database error";
	case TRYGG_EDBCONN: return "database unavailable";
	case TRYGG_EBUS: return "bus error";
	case TRYGG_ETIMEDOUT: return "timed out";
	case TRYGG_ECLOSED: return "closed";
	case TRYGG_EPROTO: return "protocol error";
	case TRYGG_EBUSY: return "busy";
	case TRYGG_ECONFIG: return "invalid configuration";
	}
	return "unknown error";
}

TRYGG_NORETURN static void
oom(size_t n)
{
	fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (p == NULL)
		oom(count * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	char *p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

uint64_t
trygg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
trygg_now_ms(void)
{
	return trygg_now_ns() / 1000000u;
}

int64_t
trygg_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes v as exactly `width` decimal digits. */
static char *
put_digits(char *p, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

/*
 * Formatted by hand (days to civil date after Howard Hinnant's algorithm):
 * lists of a thousand reports format three timestamps each, and
 * gmtime_r + snprintf showed up in profiles.
 */
void
trygg_format_iso8601(int64_t wall_us, char *buf, size_t len)
{
	if (len < 25) {
		if (len > 0)
			buf[0] = '\0';
		return;
	}
	int64_t secs = wall_us >= 0 ? wall_us / 1000000 : (wall_us - 999999) / 1000000;
	unsigned ms = (unsigned)((wall_us - secs * 1000000) / 1000);
	int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
	unsigned sod = (unsigned)(secs - days * 86400);
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;
	int64_t y = (int64_t)yoe + era * 400 + (m <= 2);
	if (y < 0 || y > 9999) {
		snprintf(buf, len, "%s",
		    y < 0 ? "0000-01-01T00:00:00.000Z" : "9999-12-31T23:59:59.999Z");
		return;
	}
	char *p = put_digits(buf, (unsigned)y, 4);
	*p++ = '-';
	p = put_digits(p, m, 2);
	*p++ = '-';
	p = put_digits(p, d, 2);
	*p++ = 'T';
	p = put_digits(p, sod / 3600, 2);
	*p++ = ':';
	p = put_digits(p, sod / 60 % 60, 2);
	*p++ = ':';
	p = put_digits(p, sod % 60, 2);
	*p++ = '.';
	p = put_digits(p, ms, 3);
	*p++ = 'Z';
	*p = '\0';
}

/* A table, not snprintf (measured at several % of intake's CPU per report
 * with snprintf, issue 9). */
void
trygg_uuid_text(const unsigned char b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = '\0';
}

/*
 * Random bytes for ids, taken from a per-thread buffer that RAND_bytes
 * refills 1 KiB at a time: one RAND_bytes call per id (the DRBG's locking
 * and re-keying) was ~4% of intake's CPU per report (perf, issue 9). A
 * forked child empties its buffer (pthread_atfork), so it never hands out
 * the bytes its parent will also use.
 */
static __thread unsigned char rand_buf[1024];
static __thread size_t rand_left;
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;

static void
rand_forked(void)
{
	rand_left = 0;
}

static void
rand_init(void)
{
	if (pthread_atfork(NULL, NULL, rand_forked) != 0)
		abort();
}

static void
id_random(unsigned char *out, size_t n)
{
	pthread_once(&rand_once, rand_init);
	if (rand_left < n) {
		if (RAND_bytes(rand_buf, (int)sizeof(rand_buf)) != 1)
			abort(); /* no entropy: nothing safe to do */
		rand_left = sizeof(rand_buf);
	}
	unsigned char *p = rand_buf + sizeof(rand_buf) - rand_left;
	memcpy(out, p, n);
	memset(p, 0, n); /* handed out once */
	rand_left -= n;
}

void
trygg_uuid4(char out[37])
{
	unsigned char b[16];
	id_random(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	trygg_uuid_text(b, out);
}

void
trygg_uuid7(char out[37], int64_t unix_ms)
{
	unsigned char b[16];
	id_random(b + 6, 10);
	uint64_t ms = unix_ms > 0 ? (uint64_t)unix_ms : 0;
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(ms >> (40 - 8 * i));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x70);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	trygg_uuid_text(b, out);
}

bool
trygg_plain_name(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (c <= ' ' || c == '"' || c == '\\' || c == ',' || c == '{' || c == '}' ||
		    c >= 0x7f)
			return false;
	}
	return n > 0 && n <= max;
}

bool
trygg_uuid_valid(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? c != '-'
		         : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		               (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

size_t
trygg_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned c;
	size_t len;
	uint32_t v;
	if (n == 0)
		return 0;
	c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		v = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		v = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

bool
trygg_utf8_valid(const char *s, size_t n)
{
	size_t i = 0;
	uint32_t cp;
	while (i < n) {
		size_t len = trygg_utf8_decode(s + i, n - i, &cp);
		if (len == 0)
			return false;
		i += len;
	}
	return true;
}

size_t
trygg_utf8_prefix(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n <= max)
		return n;
	/* Back up over continuation bytes to the start of the character that
	 * straddles the limit, and leave it out. */
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

void
trygg_utf8_scrub(char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = trygg_utf8_decode(s + i, n - i, &cp);
		if (len == 0) {
			s[i] = '?';
			len = 1;
		}
		i += len;
	}
}

void
trygg_utf8_trim(char *s)
{
	size_t n = strlen(s), start = n;
	/* Find the start of the last character (at most 3 continuation bytes
	 * back) and drop it if it is incomplete. */
	while (start > 0 && n - start < 4 && ((unsigned char)s[start - 1] & 0xc0) == 0x80)
		start--;
	if (start == 0 || n - start >= 4)
		return;
	start--; /* the lead byte, or an ASCII byte when there was no tail */
	uint32_t cp;
	if ((unsigned char)s[start] >= 0x80 && trygg_utf8_decode(s + start, n - start, &cp) == 0)
		s[start] = '\0';
}

bool
trygg_xml_char(uint32_t cp)
{
	if (cp < 0x20)
		return cp == 0x09 || cp == 0x0a || cp == 0x0d;
	if (cp >= 0xd800 && cp <= 0xdfff)
		return false;
	return cp != 0xfffe && cp != 0xffff && cp <= 0x10ffff;
}
