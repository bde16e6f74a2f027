/*
 * test_migrate.c: schema migrations against a real Postgres.
 *
 * Needs TRYGG_TEST_DATABASE_URL (a superuser URL); every test that talks
 * to Postgres skips without it. Each run uses schemas named
 * test_mig_<pid>_<case> and drops them at the end, so re-runs never
 * collide. Links with the generated common_migrations (outbox, inbox).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg_support.h"
#include <libpq-fe.h>

#include "log.h"
#include "migrate.h"

static char prefix[48];

/* The number of rows in schema.table, as the superuser sees it. */
static int
admin_count(const char *schema, const char *table)
{
	char *sql = xasprintf("SELECT count(*) FROM %s.%s", schema, table);
	char *v = admin_exec(sql, 0, NULL);
	int n = v ? atoi(v) : -1;
	free(v);
	free(sql);
	return n;
}

/* The comma-separated names recorded in schema.schema_migrations. */
static char *
recorded(const char *schema)
{
	char *sql =
	    xasprintf("SELECT string_agg(name, ',' ORDER BY name) FROM %s.schema_migrations",
	        schema);
	char *v = admin_exec(sql, 0, NULL);
	free(sql);
	return v ? v : xstrdup("");
}

static void
schema_name(char *out, size_t len, const char *what)
{
	snprintf(out, len, "%s_%s", prefix, what);
}

/* ---------------------------------------------------------------------- */

static const struct migration own_v1[] = {
    {"001_a.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n"},
    {"002_b.sql", "CREATE TABLE b (y text NOT NULL);"},
    {NULL, NULL},
};

static const struct migration own_v2[] = {
    {"001_a.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n"},
    {"002_b.sql", "CREATE TABLE b (y text NOT NULL);"},
    {"003_c.sql", "ALTER TABLE b ADD COLUMN z int; INSERT INTO a VALUES (3);"},
    {NULL, NULL},
};

/* How many common migrations there are, and "own,common/..." as recorded
 * (sorted by name), so adding a common migration breaks no test here. */
static int
n_common(void)
{
	int n = 0;
	while (common_migrations[n].name != NULL)
		n++;
	return n;
}

static char *
expected_names(const char *own)
{
	char *out = xstrdup(own);
	for (int i = 0; common_migrations[i].name != NULL; i++) {
		char *next = xasprintf("%s,common/%s", out, common_migrations[i].name);
		free(out);
		out = next;
	}
	return out;
}

static void
test_fresh_then_idempotent(void **state)
{
	(void)state;
	need_db();
	char s[64];
	schema_name(s, sizeof(s), "fresh");
	assert_int_equal(migrate_apply(db_url, s, own_v1, 1000), 0);
	char *names = recorded(s), *want = expected_names("001_a.sql,002_b.sql");
	assert_string_equal(names, want);
	free(want);
	free(names);
	/* the common tables landed in the schema */
	assert_int_equal(admin_count(s, "outbox_state"), 1);
	assert_int_equal(admin_count(s, "inbox_cursor"), 0);
	assert_int_equal(admin_count(s, "a"), 1);

	/* second run: nothing re-applied (a's row would double) */
	assert_int_equal(migrate_apply(db_url, s, own_v1, 1000), 0);
	assert_int_equal(admin_count(s, "a"), 1);
	assert_int_equal(admin_count(s, "schema_migrations"), 2 + n_common());

	/* a new migration: only it is applied */
	assert_int_equal(migrate_apply(db_url, s, own_v2, 1000), 0);
	assert_int_equal(admin_count(s, "a"), 2);
	assert_int_equal(admin_count(s, "schema_migrations"), 3 + n_common());

	/* no service migrations at all is fine too */
	assert_int_equal(migrate_apply(db_url, s, NULL, 1000), 0);
}

static const struct migration own_bad[] = {
    {"001_ok.sql", "CREATE TABLE ok_t (x int);"},
    {"002_bad.sql", "CREATE TABLE half (x int);\nINSERT INTO half VALUES (1);\nSELECT 1/0;\n"},
    {"003_never.sql", "CREATE TABLE never (x int);"},
    {NULL, NULL},
};

static void
test_failing_migration_rolls_back(void **state)
{
	(void)state;
	need_db();
	char s[64];
	schema_name(s, sizeof(s), "bad");
	assert_int_equal(migrate_apply(db_url, s, own_bad, 1000), TRYGG_EDB);
	char *names = recorded(s), *want = expected_names("001_ok.sql");
	assert_string_equal(names, want);
	free(want);
	free(names);
	const char *p[1] = {s};
	char *n = admin_exec("SELECT string_agg(table_name, ',' ORDER BY table_name) "
	                     "FROM information_schema.tables WHERE table_schema = $1 "
	                     "AND table_name IN ('ok_t', 'half', 'never')",
	    1, p);
	/* 001 stayed, 002 left nothing behind, 003 never ran */
	assert_string_equal(n, "ok_t");
	free(n);
	/* and it fails the same way again, without harm */
	assert_int_equal(migrate_apply(db_url, s, own_bad, 1000), TRYGG_EDB);
	assert_int_equal(admin_count(s, "schema_migrations"), 1 + n_common());
}

/* Each thread applies the same list to the same schema. */
static const struct migration own_slow[] = {
    {"001_counter.sql", "CREATE TABLE runs (n int); INSERT INTO runs VALUES (1);"},
    {"002_slow.sql", "SELECT pg_sleep(0.3); INSERT INTO runs VALUES (2);"},
    {"003_more.sql", "INSERT INTO runs VALUES (3);"},
    {NULL, NULL},
};

struct thread_arg {
	const char *schema;
	int rc;
};

static void *
migrate_thread(void *p)
{
	struct thread_arg *a = p;
	a->rc = migrate_apply(db_url, a->schema, own_slow, 5000);
	return NULL;
}

static void
test_concurrent_runs_apply_once(void **state)
{
	(void)state;
	need_db();
	char s[64];
	schema_name(s, sizeof(s), "conc");
	struct thread_arg a[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		a[i].schema = s;
		a[i].rc = 99;
		assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, &a[i]), 0);
	}
	/* join all before asserting: a failed assert must not leave threads
	 * writing into this frame */
	int joined = 0;
	for (int i = 0; i < 4; i++)
		joined += pthread_join(t[i], NULL) == 0;
	assert_int_equal(joined, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i].rc, 0);
	assert_int_equal(admin_count(s, "runs"), 3);
	assert_int_equal(admin_count(s, "schema_migrations"), 3 + n_common());
}

/* Builds a keyword/value conninfo from the test URL with another user. */
static char *
conninfo_as(const char *user)
{
	char *err = NULL;
	PQconninfoOption *o = PQconninfoParse(db_url, &err);
	assert_non_null(o);
	char *out = xasprintf("user='%s'", user);
	for (PQconninfoOption *k = o; k->keyword; k++) {
		if (k->val == NULL || strcmp(k->keyword, "user") == 0)
			continue;
		char *next = xasprintf("%s %s='%s'", out, k->keyword, k->val);
		free(out);
		out = next;
	}
	PQconninfoFree(o);
	return out;
}

/* A role that may not create schemas, with its schema bootstrapped. */
static void
test_existing_schema_without_create_privilege(void **state)
{
	(void)state;
	need_db();
	char s[64];
	schema_name(s, sizeof(s), "role");
	char *sql = xasprintf("CREATE ROLE %s LOGIN", s);
	free(admin_exec(sql, 0, NULL));
	free(sql);
	sql = xasprintf("CREATE SCHEMA %s AUTHORIZATION %s", s, s);
	free(admin_exec(sql, 0, NULL));
	free(sql);
	char *ci = conninfo_as(s);
	assert_int_equal(migrate_apply(ci, s, own_v1, 1000), 0);
	assert_int_equal(admin_count(s, "schema_migrations"), 2 + n_common());
	/* a schema it cannot create is an error, not a crash */
	char other[80];
	snprintf(other, sizeof(other), "%s_missing", s);
	assert_int_equal(migrate_apply(ci, other, own_v1, 1000), TRYGG_EDB);
	free(ci);
}

static void
test_unreachable_database(void **state)
{
	(void)state;
	uint64_t t0 = trygg_now_ms();
	assert_int_equal(migrate_apply("postgresql://trygg@127.0.0.1:1/postgres", "x", NULL, 500),
	    TRYGG_EDBCONN);
	uint64_t took = trygg_now_ms() - t0;
	assert_true(took >= 450);
	assert_true(took < 3000);
	assert_int_equal(migrate_apply("postgresql://x@127.0.0.1:1/postgres", "", NULL, 0),
	    TRYGG_EINVAL);
}

/* ---------------------------------------------------------------------- */

static int
group_setup(void **state)
{
	(void)state;
	log_init("test_migrate", LOG_INFO);
	db_url = getenv("TRYGG_TEST_DATABASE_URL");
	if (db_url != NULL && *db_url == '\0')
		db_url = NULL;
	snprintf(prefix, sizeof(prefix), "test_mig_%d", (int)getpid());
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	if (db_url == NULL)
		return 0;
	const char *what[] = {"fresh", "bad", "conc", "role"};
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(what); i++) {
		char s[64];
		schema_name(s, sizeof(s), what[i]);
		char *sql = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", s);
		free(admin_exec(sql, 0, NULL));
		free(sql);
	}
	char s[64];
	schema_name(s, sizeof(s), "role");
	char *sql = xasprintf("DROP ROLE IF EXISTS %s", s);
	free(admin_exec(sql, 0, NULL));
	free(sql);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fresh_then_idempotent),
	    cmocka_unit_test(test_failing_migration_rolls_back),
	    cmocka_unit_test(test_concurrent_runs_apply_once),
	    cmocka_unit_test(test_existing_schema_without_create_privilege),
	    cmocka_unit_test(test_unreachable_database),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
