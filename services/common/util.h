/*
 * util.h: the few macros and helpers every Trygg file uses.
 *
 * Error policy (CONVENTIONS.md): a fallible function returns int, 0 on
 * success and a negative TRYGG_E* code on failure; mark it TRYGG_MUSTCHECK.
 *
 * Out-of-memory policy: like redis, we abort. A service that cannot get a
 * few hundred bytes cannot do anything useful, and treating every malloc as
 * fallible would double the error paths for no gain. Use xmalloc() and
 * friends; they never return NULL. Memory bounds come from limits on input
 * (body size, RECVMAXSZ, capped protobuf allocator), not from malloc failing.
 */
#ifndef TRYGG_UTIL_H
#define TRYGG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRYGG_MUSTCHECK __attribute__((warn_unused_result))
#define TRYGG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define TRYGG_NORETURN __attribute__((noreturn))
#define TRYGG_UNUSED(x) ((void)(x))
#define TRYGG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The one error enum. Keep trygg_strerror() in util.c in step. */
enum trygg_err {
	TRYGG_OK = 0,
	TRYGG_EINVAL = -1,  /* bad argument or input */
	TRYGG_ENOMEM = -2,  /* a bounded allocator refused */
	TRYGG_ENOENT = -3,  /* not found */
	TRYGG_EEXIST = -4,  /* already exists */
	TRYGG_ETOOBIG = -5, /* over a configured limit */
	TRYGG_EIO = -6,     /* system call or socket failed */
	TRYGG_EDB = -7,     /* Postgres reported an error */
	TRYGG_EDBCONN = -8, /* no Postgres connection; outcome unknown */
	TRYGG_EBUS = -9,    /* nng failed */
	TRYGG_ETIMEDOUT = -10,
	TRYGG_ECLOSED = -11, /* object is shutting down */
	TRYGG_EPROTO = -12,  /* malformed message from a peer */
	TRYGG_EBUSY = -13,   /* try again later */
	TRYGG_ECONFIG = -14, /* invalid configuration */
};

const char *trygg_strerror(int err);

/* Allocation wrappers that abort with a message on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) TRYGG_PRINTF(1, 2);

/* Monotonic time in nanoseconds / milliseconds, and wall time in microseconds
 * since the epoch. */
uint64_t trygg_now_ns(void);
uint64_t trygg_now_ms(void);
int64_t trygg_wall_us(void);

/* Formats a UTC ISO-8601 timestamp with milliseconds ("2026-11-25T12:00:00.123Z")
 * into buf, which must hold at least 32 bytes. */
void trygg_format_iso8601(int64_t wall_us, char *buf, size_t len);

/* 16 bytes (a UUID in binary, as Postgres sends one) as canonical text. */
void trygg_uuid_text(const unsigned char b[16], char out[37]);

/* Fills buf with a random UUIDv4 string (37 bytes including NUL). */
void trygg_uuid4(char out[37]);

/*
 * Fills buf with a UUIDv7 string (RFC 9562): the 48-bit Unix time in ms
 * `unix_ms`, then 74 random bits. Ids made in time order sort (as uuid and
 * as text) roughly in time order, so a btree on them grows at its right
 * edge instead of touching a random leaf per insert. For row ids written
 * at a high rate; the time is readable from the id.
 */
void trygg_uuid7(char out[37], int64_t unix_ms);

/* The one UUID check: true if s is canonical UUID text (8-4-4-4-12 hex
 * digits, either case). NULL is not a UUID. */
bool trygg_uuid_valid(const char *s);

/* The one slug check: true for a slug-like identifier as another service
 * sends it: 1..max bytes, no blanks, quotes, backslashes, commas, braces or
 * non-ASCII (safe in a Postgres array literal). */
bool trygg_plain_name(const char *s, size_t max);

/*
 * UTF-8. The one validator: true if the n bytes at s are well-formed UTF-8
 * (no overlongs, surrogates, or code points above U+10FFFF).
 */
bool trygg_utf8_valid(const char *s, size_t n);

/*
 * Decodes the character at s (at most n bytes). Returns its length in bytes
 * (1-4) with the code point in *cp, or 0 for an ill-formed sequence.
 */
size_t trygg_utf8_decode(const char *s, size_t n, uint32_t *cp);

/*
 * The number of bytes of s (NUL-terminated) to keep so that the result is at
 * most max bytes and does not end inside a character: use it for every
 * truncation of text that may be non-ASCII, e.g. printf("%.*s",
 * (int)trygg_utf8_prefix(s, 100), s). Valid UTF-8 in, valid UTF-8 out.
 */
size_t trygg_utf8_prefix(const char *s, size_t max);

/* Replaces, in place, each byte of s (NUL-terminated) that does not start
 * a valid UTF-8 sequence with '?': for text that must be valid (Postgres
 * refuses the rest) but may come from anywhere. */
void trygg_utf8_scrub(char *s);

/* Cuts a NUL-terminated buffer that snprintf may have truncated back to a
 * character boundary (drops a trailing partial sequence). */
void trygg_utf8_trim(char *s);

/* True if XML 1.0 can carry the code point: tab, LF, CR, U+0020-U+D7FF,
 * U+E000-U+FFFD and U+10000-U+10FFFF (not other C0 controls, not U+FFFE or
 * U+FFFF). */
bool trygg_xml_char(uint32_t cp);

#endif
