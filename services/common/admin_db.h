/*
 * admin_db.h: what the services' operator command lines share
 * (`trygg-intake admin ...`, `trygg-notifier admin ...`).
 *
 * An admin command is a short-lived process with no event loop, so it
 * uses plain blocking libpq on one connection: it applies the service's
 * embedded migrations first (so it always speaks the schema of the binary
 * it ships in), connects, and sets the search path to the service's
 * schema. Any failure prints "<prog>: <message>" on stderr and exits;
 * exit status 1 for a failure, 2 for a usage error.
 *
 * Not thread-safe: the connection is process-wide.
 */
#ifndef TRYGG_ADMIN_DB_H
#define TRYGG_ADMIN_DB_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "migrate.h"
#include "util.h"

#define ADMIN_EXIT_FAILURE 1
#define ADMIN_EXIT_USAGE 2

/* Names the program in messages, e.g. "trygg-intake admin". */
void admin_set_prog(const char *prog);

/* Prints "<prog>: <message>" and exits 1 (closing the connection). */
TRYGG_NORETURN void admin_die(const char *fmt, ...) TRYGG_PRINTF(1, 2);

/* The same for a mistake on the command line: exits 2. */
TRYGG_NORETURN void admin_usage(const char *fmt, ...) TRYGG_PRINTF(1, 2);

/*
 * Reads the URL from TRYGG_DATABASE_URL or DATABASE_URL, applies the
 * common and `own` migrations to `schema`, connects, and sets the search
 * path to `schema`. `who` names the role in the message when no URL is
 * set ("intake's"). Dies on failure.
 */
void admin_db_connect(const char *schema, const struct migration *own, const char *who);

/* The connection (NULL before admin_db_connect). */
PGconn *admin_db_conn(void);

/* Closes the connection (harmless if none). */
void admin_db_close(void);

/* Runs a statement with n text parameters (NULL: SQL NULL); dies with the
 * server's message on error. The caller PQclear()s the result. */
PGresult *admin_db_run(const char *sql, int n, const char *const *values);

/* The same, discarding the result. */
void admin_db_exec(const char *sql, int n, const char *const *values);

/* Prints r as a table under `headers` (one per column of r, counted in
 * characters of UTF-8), each column as wide as its widest cell, two
 * spaces apart, the last unpadded; then PQclear()s r. */
void admin_print_table(PGresult *r, const char *const *headers);

/* The value of "--name VALUE" in argv (the first occurrence), or NULL. */
const char *admin_opt(int argc, char **argv, const char *name);

/* True if argv holds the word `name`. */
bool admin_flag(int argc, char **argv, const char *name);

/*
 * Strict option parsing. Each spec names an option; `takes_value` says
 * whether a value follows it; the parser stores the value (or "" for a
 * flag) in `value`, and with `repeat` also collects every value in
 * values[0..nvalues) (at most ADMIN_OPT_MAX_REPEAT). argv[0..npos) must be
 * the positional arguments (they come first); what follows must be known
 * options. An unknown option, a missing value, a repeated option without
 * `repeat`, or a wrong number of positional arguments is a usage error
 * (exit 2) naming it; `usage` is printed after the message.
 */
#define ADMIN_OPT_MAX_REPEAT 8

typedef struct admin_option {
	const char *name; /* "--kind" */
	bool takes_value;
	bool repeat;
	const char *value; /* out: NULL if absent */
	const char *values[ADMIN_OPT_MAX_REPEAT];
	int nvalues;
} admin_option;

void admin_parse(int argc, char **argv, int npos, admin_option *opts, size_t nopts,
    const char *usage);

/* The parsed option called `name` (it must be among opts). */
admin_option *admin_get(admin_option *opts, size_t nopts, const char *name);

#endif
