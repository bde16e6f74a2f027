/*
 * log.c: JSON-lines logger. One mutex-guarded write(2) per line keeps lines
 * whole when nng's threads and the loop thread log at once.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char service_name[64] = "trygg";
static enum log_level min_level = LOG_INFO;
static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error", "fatal"};

void
log_init(const char *service, enum log_level min)
{
	snprintf(service_name, sizeof(service_name), "%s", service);
	min_level = min;
}

void
log_set_level(enum log_level min)
{
	min_level = min;
}

enum log_level
log_get_level(void)
{
	return min_level;
}

int
log_parse_level(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return TRYGG_EINVAL;
}

const char *
log_json_str(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	if (len < 3) {
		if (len > 0)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		char esc[8];
		size_t n;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			n = 2;
		} else if (*p == '\n') {
			memcpy(esc, "\\n", 2);
			n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
		} else {
			esc[0] = (char)*p;
			n = 1;
		}
		if (o + n + 2 > len) {
			/* Truncate at a character boundary: never leave half of a
			 * UTF-8 sequence, which would make the line invalid. */
			while (o > 1 && ((unsigned char)buf[o - 1] & 0xc0) == 0x80)
				o--;
			if (o > 1 && ((unsigned char)buf[o - 1] & 0xc0) == 0xc0)
				o--;
			break;
		}
		memcpy(buf + o, esc, n);
		o += n;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void
log_msg(enum log_level lvl, const char *msg, const char *fields, ...)
{
	if (lvl < min_level)
		return;
	char line[4096];
	char ts[32];
	trygg_format_iso8601(trygg_wall_us(), ts, sizeof(ts));
	int n = snprintf(line, sizeof(line),
	    "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\",\"msg\":\"%s\"", ts,
	    level_names[lvl], service_name, msg);
	if (n < 0)
		return;
	size_t o = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	if (fields != NULL && fields[0] != '\0' && o + 2 < sizeof(line)) {
		size_t start = o;
		line[o++] = ',';
		va_list ap;
		va_start(ap, fields);
		int m = vsnprintf(line + o, sizeof(line) - o, fields, ap);
		va_end(ap);
		if (m < 0 || (size_t)m + 3 > sizeof(line) - o) {
			/* The fields do not fit: a cut inside a string would make
			 * the line invalid JSON, so drop them and say so. */
			static const char cut[] = ",\"fields_truncated\":true";
			memcpy(line + start, cut, sizeof(cut) - 1);
			o = start + sizeof(cut) - 1;
		} else {
			o += (size_t)m;
		}
	}
	if (o > sizeof(line) - 3)
		o = sizeof(line) - 3;
	line[o++] = '}';
	line[o++] = '\n';
	pthread_mutex_lock(&log_mtx);
	ssize_t w = write(STDERR_FILENO, line, o);
	(void)w;
	pthread_mutex_unlock(&log_mtx);
}
