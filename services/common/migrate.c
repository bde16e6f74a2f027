/*
 * migrate.c: applies a service's schema migrations at start (see
 * migrate.h).
 *
 * The only blocking libpq code in Trygg: it runs before the loop, on its
 * own short-lived connection. The steps are
 *
 *   connect (retrying every 200 ms until wait_ms has passed)
 *   pg_advisory_lock(hashtext('trygg_migrate:' || schema))
 *   CREATE SCHEMA IF NOT EXISTS <schema>
 *   SET search_path TO <schema>
 *   CREATE TABLE IF NOT EXISTS schema_migrations (...)
 *   per missing migration: BEGIN; <sql>; INSERT INTO schema_migrations; COMMIT
 *   pg_advisory_unlock, disconnect
 *
 * The lock makes concurrent starts of one service take turns: the second
 * sees what the first recorded and applies nothing. It is taken first,
 * since even CREATE SCHEMA IF NOT EXISTS fails (23505) when two sessions
 * race to create the same schema. Migration files go
 * through PQexec (simple query protocol), so one file may hold many
 * statements; it must not contain its own BEGIN/COMMIT. Common migrations
 * are recorded as "common/<file>", a service's own under their file name.
 */
#include "migrate.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define MIGRATE_RETRY_MS 200

/* Sleeps ms milliseconds (the caller is not on the loop). */
static void
sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Routes server notices ("schema ... already exists, skipping") to our log. */
static void
on_notice(void *arg, const char *message)
{
	(void)arg;
	char buf[1024], m[1100];
	snprintf(buf, sizeof(buf), "%s", message);
	buf[strcspn(buf, "\n")] = '\0';
	log_debug("migrate_notice", "\"notice\":%s", log_json_str(buf, m, sizeof(m)));
}

/*
 * Connects, retrying until wait_ms has passed. Each attempt is bounded by
 * a connect_timeout (the URL's own wins if it sets one). Returns the
 * connection or NULL, having logged why.
 */
static PGconn *
connect_retry(const char *conninfo, unsigned wait_ms)
{
	uint64_t deadline = trygg_now_ms() + wait_ms;
	unsigned attempts = 0;
	for (;;) {
		uint64_t now = trygg_now_ms();
		unsigned left_s = now < deadline ? (unsigned)((deadline - now + 999) / 1000) : 0;
		char timeout[16];
		snprintf(timeout, sizeof(timeout), "%u", left_s < 2 ? 2 : left_s);
		const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
		const char *vals[] = {timeout, "trygg-migrate", conninfo, NULL};
		PGconn *c = PQconnectdbParams(keys, vals, 1);
		attempts++;
		if (c != NULL && PQstatus(c) == CONNECTION_OK) {
			PQsetNoticeProcessor(c, on_notice, NULL);
			return c;
		}
		char err[512], m[600];
		snprintf(err, sizeof(err), "%s", c ? PQerrorMessage(c) : "out of memory");
		err[strcspn(err, "\n")] = '\0';
		PQfinish(c);
		now = trygg_now_ms();
		if (now >= deadline) {
			log_error("migrate_connect_failed", "\"attempts\":%u,\"error\":%s",
			    attempts, log_json_str(err, m, sizeof(m)));
			return NULL;
		}
		if (attempts == 1)
			log_warn("migrate_connect_retry", "\"wait_ms\":%u,\"error\":%s", wait_ms,
			    log_json_str(err, m, sizeof(m)));
		uint64_t left = deadline - now;
		sleep_ms(left < MIGRATE_RETRY_MS ? (unsigned)left : MIGRATE_RETRY_MS);
	}
}

/* run() returns this, unlogged, when the error has an expected SQLSTATE. */
#define RUN_EXPECTED 1

/*
 * Runs sql (with optional text parameters) and checks the outcome. On
 * failure logs `step` and the migration name with the server's message and
 * returns TRYGG_EDB, or TRYGG_EDBCONN if the connection is gone; an error
 * whose SQLSTATE is in the space-separated list `expected` (may be NULL)
 * returns RUN_EXPECTED without logging.
 */
static int
run(PGconn *c, const char *step, const char *name, const char *sql, int nparams,
    const char *const *params, const char *expected)
{
	PGresult *r = nparams > 0 ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
	                          : PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(r);
		return 0;
	}
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (expected != NULL && state != NULL && strlen(state) == 5 && strstr(expected, state)) {
		PQclear(r);
		return RUN_EXPECTED;
	}
	char msg[1024], m1[1100], m2[300];
	snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	size_t n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_error("migrate_failed",
	    "\"step\":\"%s\",\"migration\":%s,\"sqlstate\":\"%s\",\"error\":%s", step,
	    log_json_str(name ? name : "", m2, sizeof(m2)), state ? state : "",
	    log_json_str(msg, m1, sizeof(m1)));
	PQclear(r);
	return PQstatus(c) == CONNECTION_OK ? TRYGG_EDB : TRYGG_EDBCONN;
}

/*
 * Creates the schema unless it exists. A role that may not create schemas
 * gets insufficient_privilege (42501) even with IF NOT EXISTS; that is fine
 * when the schema is already there (bootstrapped by an administrator). So
 * is losing a creation race to a session outside our lock (23505, 42P06).
 */
static int
ensure_schema(PGconn *c, const char *schema, const char *quoted)
{
	char *sql = xasprintf("CREATE SCHEMA IF NOT EXISTS %s", quoted);
	int rc = run(c, "create_schema", NULL, sql, 0, NULL, "42501 23505 42P06");
	free(sql);
	if (rc != RUN_EXPECTED)
		return rc;
	const char *p[1] = {schema};
	PGresult *r = PQexecParams(c, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL, p,
	    NULL, NULL, 0);
	bool exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	PQclear(r);
	if (exists)
		return 0;
	char m[300];
	log_error("migrate_failed",
	    "\"step\":\"create_schema\",\"schema\":%s,"
	    "\"error\":\"cannot create the schema and it does not exist\"",
	    log_json_str(schema, m, sizeof(m)));
	return TRYGG_EDB;
}

/* Whether `name` is recorded in schema_migrations; -1 on error (logged). */
static int
is_applied(PGconn *c, const char *name)
{
	const char *p[1] = {name};
	PGresult *r = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, NULL, p,
	    NULL, NULL, 0);
	int out = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		out = PQntuples(r) > 0;
	} else {
		char m[600], m2[300];
		log_error("migrate_failed", "\"step\":\"check\",\"migration\":%s,\"error\":%s",
		    log_json_str(name, m2, sizeof(m2)),
		    log_json_str(PQresultErrorMessage(r), m, sizeof(m)));
	}
	PQclear(r);
	return out;
}

/*
 * Applies the missing entries of `list` (NULL-terminated, may be NULL),
 * recording each as prefix+name. Counts applications in *applied. Stops at
 * the first failure, which is rolled back and logged with the name.
 */
static int
apply_list(PGconn *c, const char *schema, const char *prefix, const struct migration *list,
    unsigned *applied)
{
	for (const struct migration *mg = list; mg != NULL && mg->name != NULL; mg++) {
		char *name = xasprintf("%s%s", prefix, mg->name);
		int rc = is_applied(c, name);
		if (rc != 0) {
			free(name);
			if (rc < 0)
				return PQstatus(c) == CONNECTION_OK ? TRYGG_EDB : TRYGG_EDBCONN;
			continue;
		}
		uint64_t t0 = trygg_now_ms();
		const char *p[1] = {name};
		rc = run(c, "begin", name, "BEGIN", 0, NULL, NULL);
		if (rc == 0)
			rc = run(c, "apply", name, mg->sql, 0, NULL, NULL);
		if (rc == 0)
			rc = run(c, "record", name,
			    "INSERT INTO schema_migrations (name) VALUES ($1)", 1, p, NULL);
		if (rc == 0)
			rc = run(c, "commit", name, "COMMIT", 0, NULL, NULL);
		if (rc != 0) {
			PQclear(PQexec(c, "ROLLBACK"));
			free(name);
			return rc;
		}
		char m1[300], m2[300];
		log_info("migration_applied", "\"schema\":%s,\"name\":%s,\"ms\":%llu",
		    log_json_str(schema, m1, sizeof(m1)), log_json_str(name, m2, sizeof(m2)),
		    (unsigned long long)(trygg_now_ms() - t0));
		(*applied)++;
		free(name);
	}
	return 0;
}

int
migrate_apply(const char *conninfo, const char *schema, const struct migration *own,
    unsigned wait_ms)
{
	if (conninfo == NULL || schema == NULL || *schema == '\0')
		return TRYGG_EINVAL;
	PGconn *c = connect_retry(conninfo, wait_ms);
	if (c == NULL)
		return TRYGG_EDBCONN;

	int rc;
	unsigned applied = 0;
	bool locked = false;
	char *sql, m[300];
	const char *p[1] = {schema};
	char *quoted = PQescapeIdentifier(c, schema, strlen(schema));
	if (quoted == NULL) {
		log_error("migrate_failed", "\"step\":\"schema_name\",\"schema\":%s",
		    log_json_str(schema, m, sizeof(m)));
		rc = TRYGG_EINVAL;
		goto out;
	}
	/* Session-level: released by the unlock below or by disconnecting. */
	rc = run(c, "lock", NULL, "SELECT pg_advisory_lock(hashtext('trygg_migrate:' || $1))", 1, p,
	    NULL);
	if (rc != 0)
		goto out;
	locked = true;
	if ((rc = ensure_schema(c, schema, quoted)) != 0)
		goto out;
	sql = xasprintf("SET search_path TO %s", quoted);
	rc = run(c, "search_path", NULL, sql, 0, NULL, NULL);
	free(sql);
	if (rc != 0)
		goto out;
	rc = run(c, "create_table", NULL,
	    "CREATE TABLE IF NOT EXISTS schema_migrations ("
	    "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	    0, NULL, NULL);
	if (rc != 0)
		goto out;
	if ((rc = apply_list(c, schema, "common/", common_migrations, &applied)) != 0)
		goto out;
	if ((rc = apply_list(c, schema, "", own, &applied)) != 0)
		goto out;
	log_info("migrations_done", "\"schema\":%s,\"applied\":%u",
	    log_json_str(schema, m, sizeof(m)), applied);
out:
	if (locked && PQstatus(c) == CONNECTION_OK)
		PQclear(
		    PQexecParams(c, "SELECT pg_advisory_unlock(hashtext('trygg_migrate:' || $1))",
		        1, NULL, p, NULL, NULL, 0));
	PQfreemem(quoted);
	PQfinish(c);
	return rc;
}
