/*
 * pg_support.h: the superuser side door that database unit tests use to set
 * up and inspect Postgres (TRYGG_TEST_DATABASE_URL, set by tests/run-all.sh).
 * Header-only, since each unit test is a program of its own; the includer
 * sets db_url (NULL when no database is configured).
 */
#ifndef TRYGG_TEST_PG_SUPPORT_H
#define TRYGG_TEST_PG_SUPPORT_H

#include <libpq-fe.h>

#include "util.h"

static const char *db_url;

/* Skips the calling test when no database is configured. */
__attribute__((unused)) static void
need_db(void)
{
	if (db_url == NULL) {
		print_message("TRYGG_TEST_DATABASE_URL not set: skipping\n");
		skip();
	}
}

static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Runs one statement on a fresh blocking connection; returns the first
 * value of the first row (malloc'd) or NULL. Fails the test on error. */
__attribute__((unused)) static char *
admin_exec(const char *sql, int nparams, const char *const *values)
{
	PGconn *c = PQconnectdb(db_url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	PGresult *r = PQexecParams(c, sql, nparams, NULL, values, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		fail_msg("admin query failed: %s: %s", sql, PQresultErrorMessage(r));
	char *out = NULL;
	if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		out = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return out;
}

/* Drops a test group's schema, if there is a database: the group
 * teardown of the tests that make their own schema. */
__attribute__((unused)) static void
drop_test_schema(const char *schema)
{
	if (db_url == NULL)
		return;
	char *sql = xasprintf("DROP SCHEMA %s CASCADE", schema);
	free(admin_exec(sql, 0, NULL));
	free(sql);
}

#endif
