/*
 * log.h: JSON-lines logging on stderr.
 *
 * Each line is one JSON object: {"ts":..., "level":..., "service":...,
 * "msg":..., then any key/value pairs}. `msg` is a stable message id
 * (snake_case, e.g. "db_connected"), not a sentence, so operators can grep
 * and alert on it; details go in the fields. Thread-safe (nng callbacks run
 * on nng's threads) through a mutex around the single write(2).
 */
#ifndef TRYGG_LOG_H
#define TRYGG_LOG_H

#include "util.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };

/* Sets the service name put on every line and the minimum level. */
void log_init(const char *service, enum log_level min);
void log_set_level(enum log_level min);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns TRYGG_EINVAL otherwise. */
int log_parse_level(const char *s, enum log_level *out) TRYGG_MUSTCHECK;

/*
 * Writes one line. `fields` is a printf format producing zero or more
 * comma-separated JSON members without braces, e.g.
 *   log_msg(LOG_INFO, "listening", "\"port\":%d", port);
 * Pass NULL for no fields. Strings from outside must go through
 * log_json_str() so they are escaped.
 */
void log_msg(enum log_level lvl, const char *msg, const char *fields, ...) TRYGG_PRINTF(3, 4);

/*
 * Escapes s as a JSON string (with quotes) into buf of size len, truncating
 * safely; returns buf so it can be used inline with "%s".
 */
const char *log_json_str(const char *s, char *buf, size_t len);

#define log_debug(msg, ...) \
	do { \
		if (log_get_level() <= LOG_DEBUG) \
			log_msg(LOG_DEBUG, msg, __VA_ARGS__); \
	} while (0)
#define log_info(msg, ...) log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)

#endif
