/*
 * config.h: declarative configuration, in the style of pgbouncer's
 * bouncer_params[] and redis's static_configs[].
 *
 * A service declares one table of options (name, type, default, bounds,
 * flags, help, where to store the value) and a struct that receives the
 * values. config_load() reads every option from the environment
 * (TRYGG_<NAME>, and DATABASE_URL for an option named database_url) over
 * an optional file named by TRYGG_CONFIG_FILE (lines `name = value`, `#`
 * comments), validates all of them, and only then writes the struct. A
 * failed load leaves the struct untouched and lists every problem found
 * in config_error(), separated by "; ", e.g.
 *   "TRYGG_HTTP_PORT=70000: must be between 1 and 65535".
 *
 * The file: blank lines and lines starting with `#` are skipped; a value is
 * everything after the `=` up to the end of the line, trimmed (so `#` may
 * appear in a password), optionally in double quotes to keep outer spaces.
 * An unknown name, a line without `=`, or a name set twice is an error. An
 * unknown TRYGG_* environment variable is only a warning
 * ("config_unknown_env"), since one environment may serve several programs.
 *
 * Precedence, highest first: TRYGG_<NAME>, DATABASE_URL (database_url
 * only), the file, the option's default.
 *
 * Types and what the target field must be:
 *   CONFIG_TYPE_STRING    char *        any text; "" is a valid value
 *   CONFIG_TYPE_URL       char *        scheme://rest (tcp://h:p, ipc:///p,
 *                                       postgresql://u:pw@h/db?...)
 *   CONFIG_TYPE_INT       int           decimal; bounds in min/max
 *   CONFIG_TYPE_BOOL      bool          true/false, yes/no, on/off, 1/0
 *   CONFIG_TYPE_SIZE      size_t        bytes; suffix k, M, G (x1024, case
 *                                       and a trailing "b"/"ib" ignored)
 *   CONFIG_TYPE_DURATION  uint64_t      milliseconds; suffix ms, s, m, h
 *                                       (no suffix means ms)
 *   CONFIG_TYPE_LOGLEVEL  enum log_level  debug, info, warn, error
 * For INT, SIZE and DURATION, min and max are inclusive bounds in the
 * stored unit (ints, bytes, ms); min == max == 0 means only the type's own
 * range. Declare options with the CONFIG_OPT_* macros below: they compute
 * the offset and make the compiler check the field's type.
 *
 * Ownership: the config owns every string it stores in the struct (freed
 * by config_fini()). A reload that replaces a string keeps the old one
 * alive until config_fini(), so a pointer taken before a reload stays
 * valid, though it may be stale. The table must outlive the config.
 *
 * Threading: load, reload, log and fini on one thread (the loop thread);
 * the struct must not be read from other threads during a reload.
 */
#ifndef TRYGG_CONFIG_H
#define TRYGG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

enum config_type {
	CONFIG_TYPE_STRING,
	CONFIG_TYPE_URL,
	CONFIG_TYPE_INT,
	CONFIG_TYPE_BOOL,
	CONFIG_TYPE_SIZE,
	CONFIG_TYPE_DURATION,
	CONFIG_TYPE_LOGLEVEL,
};

/* Option flags. */
#define CONFIG_RELOADABLE 0x1u /* a reload (SIGHUP) may change it */
#define CONFIG_SECRET 0x2u     /* never logged or echoed in errors */
#define CONFIG_REQUIRED 0x4u   /* some source must set it (no default) */

typedef struct config_option {
	const char *name; /* lower snake_case; the env var is TRYGG_<NAME> */
	enum config_type type;
	const char *def;  /* default, in the env syntax; NULL: none */
	int64_t min, max; /* inclusive bounds (INT, SIZE, DURATION) */
	unsigned flags;   /* CONFIG_RELOADABLE | CONFIG_SECRET | ... */
	size_t offset;    /* offset of the field in the struct ... */
	void *ptr;        /* ... or, if not NULL, the field itself */
	const char *help; /* one line for --help */
} config_option;

/*
 * Table helpers. `st` is the service's config struct type; the comparison
 * inside sizeof is never evaluated but makes the compiler warn when the
 * field has the wrong type for the option.
 */
/* clang-format off */
#define CONFIG_OFFSETOF_(st, field, ctype) \
	(offsetof(st, field) + 0 * sizeof(&((st *)0)->field == (ctype *)0))
#define CONFIG_OPT_(name, T, ctype, st, field, def, min, max, flags, help) \
	{ name, T, def, min, max, flags, CONFIG_OFFSETOF_(st, field, ctype), NULL, help }
#define CONFIG_OPT_STRING(name, st, field, def, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_STRING, char *, st, field, def, 0, 0, flags, help)
#define CONFIG_OPT_URL(name, st, field, def, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_URL, char *, st, field, def, 0, 0, flags, help)
#define CONFIG_OPT_INT(name, st, field, def, min, max, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_INT, int, st, field, def, min, max, flags, help)
#define CONFIG_OPT_BOOL(name, st, field, def, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_BOOL, bool, st, field, def, 0, 0, flags, help)
#define CONFIG_OPT_SIZE(name, st, field, def, min, max, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_SIZE, size_t, st, field, def, min, max, flags, help)
#define CONFIG_OPT_DURATION(name, st, field, def, min, max, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_DURATION, uint64_t, st, field, def, min, max, flags, help)
#define CONFIG_OPT_LOGLEVEL(name, st, field, def, flags, help) \
	CONFIG_OPT_(name, CONFIG_TYPE_LOGLEVEL, enum log_level, st, field, def, 0, 0, flags, help)
/* Ends every table. */
#define CONFIG_END { NULL, CONFIG_TYPE_STRING, NULL, 0, 0, 0, 0, NULL, NULL }
/* clang-format on */

struct config_slot; /* private to config.c */

/* Embed one per service; all fields are private. */
typedef struct config {
	const config_option *table;
	void *base;
	size_t n;
	struct config_slot *slots; /* n current values and their sources */
	char **retired;            /* strings replaced by reloads */
	size_t nretired;
	char err[1024];
} config;

/*
 * Reads and validates every option of `table` (ended by CONFIG_END) and, if
 * all are valid, stores them into `base` (the struct the offsets refer to;
 * may be NULL if every option uses ptr). Unknown TRYGG_* variables in the
 * environment are logged as warnings. Returns 0, or TRYGG_ECONFIG with
 * config_error() describing every bad option; in both cases call
 * config_fini() afterwards.
 */
int config_load(config *c, const config_option *table, void *base) TRYGG_MUSTCHECK;

/*
 * Re-reads the environment and the file. If anything is invalid, logs
 * "config_reload_failed", returns TRYGG_ECONFIG and changes nothing.
 * Otherwise applies the changed values of reloadable options (each logged
 * as "config_changed"), keeps the old value of every changed non-reloadable
 * option (each logged as a "config_not_reloadable" warning), logs
 * "config_reloaded" and returns 0. The caller then acts on the new values
 * (e.g. log_set_level()).
 */
int config_reload(config *c) TRYGG_MUSTCHECK;

/* The message of the last failed load or reload ("" if none). */
const char *config_error(const config *c);

/*
 * Formats the effective value of option `name` for display into buf:
 * secrets as "********", passwords inside URLs (user:pw@ and password=) as
 * "***", unset strings as "(unset)", sizes and durations with the largest
 * exact suffix ("1M", "10s"). Returns buf, or NULL if there is no such
 * option (or nothing is loaded).
 */
const char *config_show(const config *c, const char *name, char *buf, size_t len);

/* Logs one "config_value" line per option: name, masked value, source. */
void config_log(const config *c);

/* Prints every option, its variable, type, default and bounds (--help). */
void config_print_help(const config_option *table, FILE *f);

/* Frees the strings the config owns. Accepts NULL and a config whose load
 * failed. The struct's string fields dangle afterwards. */
void config_fini(config *c);

#endif
