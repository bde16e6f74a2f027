/*
 * admin_db.c: the blocking database and argument helpers of the operator
 * command lines (admin_db.h).
 */
#include "admin_db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static PGconn *conn;
static const char *prog = "trygg admin";

void
admin_set_prog(const char *name)
{
	prog = name;
}

static TRYGG_NORETURN void
vexit(int code, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	admin_db_close();
	exit(code);
}

void
admin_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vexit(ADMIN_EXIT_FAILURE, fmt, ap);
}

void
admin_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vexit(ADMIN_EXIT_USAGE, fmt, ap);
}

void
admin_db_connect(const char *schema, const struct migration *own, const char *who)
{
	const char *url = getenv("TRYGG_DATABASE_URL");
	if (url == NULL || url[0] == '\0')
		url = getenv("DATABASE_URL");
	if (url == NULL || url[0] == '\0')
		admin_die("set DATABASE_URL (or TRYGG_DATABASE_URL) to %s Postgres URL", who);
	char logname[64];
	snprintf(logname, sizeof(logname), "%s-admin", schema);
	log_init(logname, LOG_WARN);
	if (migrate_apply(url, schema, own, 10000) != 0)
		admin_die("could not reach Postgres or migrate the %s schema (see the log above)",
		    schema);
	conn = PQconnectdb(url);
	if (PQstatus(conn) != CONNECTION_OK)
		admin_die("cannot connect: %s", PQerrorMessage(conn));
	const char *v[1] = {schema};
	admin_db_exec("SELECT set_config('search_path', $1, false)", 1, v);
}

PGconn *
admin_db_conn(void)
{
	return conn;
}

void
admin_db_close(void)
{
	if (conn)
		PQfinish(conn);
	conn = NULL;
}

PGresult *
admin_db_run(const char *sql, int n, const char *const *values)
{
	PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
		msg[strcspn(msg, "\n")] = '\0';
		PQclear(r);
		admin_die("%s", msg);
	}
	return r;
}

void
admin_db_exec(const char *sql, int n, const char *const *values)
{
	PQclear(admin_db_run(sql, n, values));
}

/* Characters in a UTF-8 string (continuation bytes not counted). */
static size_t
utf8_width(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static void
print_cell(const char *s, size_t width, bool last)
{
	fputs(s, stdout);
	if (last) {
		putchar('\n');
		return;
	}
	for (size_t w = utf8_width(s); w < width + 2; w++)
		putchar(' ');
}

void
admin_print_table(PGresult *r, const char *const *headers)
{
	int nf = PQnfields(r), nt = PQntuples(r);
	size_t *width = xcalloc((size_t)nf + 1, sizeof(*width));
	for (int j = 0; j < nf; j++) {
		width[j] = utf8_width(headers[j]);
		for (int i = 0; i < nt; i++) {
			size_t w = utf8_width(PQgetvalue(r, i, j));
			if (w > width[j])
				width[j] = w;
		}
	}
	for (int j = 0; j < nf; j++)
		print_cell(headers[j], width[j], j == nf - 1);
	for (int i = 0; i < nt; i++)
		for (int j = 0; j < nf; j++)
			print_cell(PQgetvalue(r, i, j), width[j], j == nf - 1);
	free(width);
	PQclear(r);
}

const char *
admin_opt(int argc, char **argv, const char *name)
{
	for (int i = 0; i + 1 < argc; i++) {
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	}
	return NULL;
}

bool
admin_flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], name) == 0)
			return true;
	}
	return false;
}

static TRYGG_NORETURN void
usage_with(const char *usage, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nusage: %s\n", usage);
	admin_db_close();
	exit(ADMIN_EXIT_USAGE);
}

void
admin_parse(int argc, char **argv, int npos, admin_option *opts, size_t nopts, const char *usage)
{
	for (size_t j = 0; j < nopts; j++) {
		opts[j].value = NULL;
		opts[j].nvalues = 0;
	}
	int i = 0;
	for (; i < argc && i < npos; i++) {
		if (strncmp(argv[i], "--", 2) == 0)
			break;
	}
	if (i < npos)
		usage_with(usage, "missing argument%s", i + 1 < npos ? "s" : "");
	for (; i < argc; i++) {
		admin_option *o = NULL;
		for (size_t j = 0; j < nopts && o == NULL; j++) {
			if (strcmp(argv[i], opts[j].name) == 0)
				o = &opts[j];
		}
		if (o == NULL)
			usage_with(usage,
			    strncmp(argv[i], "--", 2) == 0 ? "unknown option %s"
			                                   : "unexpected argument '%s'",
			    argv[i]);
		if (o->value != NULL && !o->repeat)
			usage_with(usage, "%s given twice", o->name);
		const char *v = "";
		if (o->takes_value) {
			if (i + 1 >= argc)
				usage_with(usage, "%s needs a value", o->name);
			v = argv[++i];
		}
		o->value = v;
		if (o->repeat) {
			if (o->nvalues >= ADMIN_OPT_MAX_REPEAT)
				usage_with(usage, "%s given too many times", o->name);
			o->values[o->nvalues++] = v;
		}
	}
}

admin_option *
admin_get(admin_option *opts, size_t nopts, const char *name)
{
	for (size_t j = 0; j < nopts; j++) {
		if (strcmp(opts[j].name, name) == 0)
			return &opts[j];
	}
	abort(); /* a programming error: the option is not in the table */
}
