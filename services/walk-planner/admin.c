/*
 * admin.c: `trygg-walk-planner admin ...`, the operator's command line
 * (docs/walk-planner.md). Blocking libpq on one connection
 * (services/common/admin_db.h); the work is done by the schema's functions
 * (sql/004_admin.sql) so the events they publish commit with it.
 *
 *   key issue NAME [--keys-file F]   a staff key (printed once, stored hashed)
 *   key list | key revoke ID|PREFIX|KEY
 *   participant add NAME --org ORG --role ROLE --email E [--places a,b]
 *   participant list
 *   places load FILE.geojson         fallback places (intake's PlaceDefined wins)
 *   survey load FILE.csv --areas AREAS.geojson --survey NAME --year Y
 *               [--illustrative] [--source TEXT]
 *   events ...                       the common event commands
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_cli.h"
#include "admin_db.h"
#include "admin_keys.h"
#include "crypto.h"
#include "walk_planner.h"

extern const struct migration walk_planner_migrations[];

static const char USAGE[] =
    "usage: trygg-walk-planner admin COMMAND\n"
    "  key issue NAME [--keys-file FILE]   issue a staff key (shown once; FILE gets {NAME: key})\n"
    "  key list\n"
    "  key revoke ID|PREFIX|KEY             ID or PREFIX as `key list` shows them\n"
    "  participant add NAME --org ORG --role ROLE --email E [--places slug,slug]\n"
    "      ROLE: district_official, police, housing, business, residents_association, school\n"
    "  participant list\n"
    "  places load FILE.geojson            places with polygons (a fallback until intake\n"
    "                                      publishes PlaceDefined)\n"
    "  survey load FILE.csv --areas AREAS.geojson --survey NAME --year Y [--illustrative]\n"
    "      [--source TEXT]                 survey figures per area (CSV header:\n"
    "                                      area,indicator,value,unit[,respondents])\n";

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		admin_die("cannot open %s", path);
	size_t cap = 1 << 16, n = 0;
	char *buf = xmalloc(cap);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (cap - n < 2) {
			if (cap > (size_t)64 << 20)
				admin_die("%s is larger than 64 MiB", path);
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Writes or updates {"NAME": "key"} in a small JSON file. */
static void
write_key_file(const char *path, const char *name, const char *key)
{
	const char *v[3] = {NULL, name, key};
	char *old = NULL;
	FILE *f = fopen(path, "rb");
	if (f != NULL) {
		fclose(f);
		old = read_file(path);
	}
	v[0] = old && old[0] ? old : "{}";
	PGresult *r = admin_db_run(
	    "SELECT jsonb_pretty(CASE WHEN jsonb_typeof($1::jsonb) = 'object' THEN $1::jsonb"
	    " ELSE '{}' END || jsonb_build_object($2::text, $3::text))",
	    3, v);
	f = fopen(path, "wb");
	if (f == NULL)
		admin_die("cannot write %s", path);
	fprintf(f, "%s\n", PQgetvalue(r, 0, 0));
	fclose(f);
	PQclear(r);
	free(old);
}

static void
key_issue(int argc, char **argv)
{
	admin_option o[] = {{.name = "--keys-file", .takes_value = true}};
	admin_parse(argc, argv, 1, o, 1, USAGE);
	if (strcmp(argv[0], "walk") == 0) /* api() calls a walk key's holder "walk" */
		admin_usage("the name walk is reserved");
	char key[ADMIN_KEY_MAX], hash[CRYPTO_SHA256_HEX_LEN];
	admin_key_new("ws_", key, hash);
	const char *v[3] = {argv[0], hash, key};
	admin_db_exec(
	    "INSERT INTO staff_keys (name, key_hash, prefix) VALUES ($1, $2, left($3, 10))", 3, v);
	admin_key_print_new(key, hash, argv[0], 1); /* alone: scripts capture it */
	if (o[0].value)
		write_key_file(o[0].value, argv[0], key);
}

static const admin_key_store KEYS = {
    .usage = "trygg-walk-planner admin key revoke ID|PREFIX|KEY",
    .table = "staff_keys",
    .key_prefix = "ws_",
    .hash_hex_sql = "key_hash",
    .holder_sql = "name",
    .shown_prefix_col = "prefix",
    .list_columns = "name, prefix",
    .list_headers = (const char *const[]){"NAME", "PREFIX", NULL},
};

static void
print_rows(PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		for (int j = 0; j < PQnfields(r); j++)
			printf("%s%s", j ? "\t" : "", PQgetvalue(r, i, j));
		printf("\n");
	}
	PQclear(r);
}

static void
participant_add(int argc, char **argv)
{
	admin_option o[] = {{.name = "--org", .takes_value = true},
	    {.name = "--role", .takes_value = true}, {.name = "--email", .takes_value = true},
	    {.name = "--places", .takes_value = true}};
	admin_parse(argc, argv, 1, o, TRYGG_ARRAY_LEN(o), USAGE);
	if (!o[0].value || !o[1].value || !o[2].value)
		admin_usage("participant add needs --org, --role and --email");
	static const char *const roles[] = {"district_official", "police", "housing", "business",
	    "residents_association", "school"};
	bool known = false;
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(roles); i++)
		known = known || strcmp(o[1].value, roles[i]) == 0;
	if (!known)
		admin_usage("unknown role %s (district_official, police, housing, business, "
		            "residents_association, school)",
		    o[1].value);
	if (strchr(o[2].value, '@') == NULL)
		admin_usage("--email %s is not an e-mail address", o[2].value);
	const char *v[5] = {argv[0], o[0].value, o[1].value, o[2].value,
	    o[3].value ? o[3].value : ""};
	PGresult *r = admin_db_run(
	    "INSERT INTO participants (name, org, role, email, places)"
	    " VALUES ($1, $2, $3, $4, array_remove(string_to_array($5, ','), ''))"
	    " ON CONFLICT (email, org) DO UPDATE SET name = excluded.name, role = excluded.role,"
	    " places = excluded.places RETURNING id",
	    5, v);
	printf("%s\n", PQgetvalue(r, 0, 0));
	PQclear(r);
}

static void
survey_load(int argc, char **argv)
{
	admin_option o[] = {{.name = "--areas", .takes_value = true},
	    {.name = "--survey", .takes_value = true}, {.name = "--year", .takes_value = true},
	    {.name = "--illustrative"}, {.name = "--source", .takes_value = true}};
	admin_parse(argc, argv, 1, o, TRYGG_ARRAY_LEN(o), USAGE);
	if (!o[0].value || !o[1].value || !o[2].value)
		admin_usage("survey load needs --areas, --survey and --year");
	char *end;
	long year = strtol(o[2].value, &end, 10);
	if (*end != '\0' || year < 1990 || year > 2100)
		admin_usage("--year %s is not a year", o[2].value);
	char *csv = read_file(argv[0]);
	char *areas = read_file(o[0].value);
	const char *v[6] = {csv, areas, o[1].value, o[2].value, o[3].value ? "true" : "false",
	    o[4].value ? o[4].value : argv[0]};
	PGresult *r =
	    admin_db_run("SELECT survey_load($1, $2::jsonb, $3, $4::int, $5::boolean, $6)", 6, v);
	printf("loaded %s figures of %s %s%s\n", PQgetvalue(r, 0, 0), o[1].value, o[2].value,
	    o[3].value ? " (illustrative)" : "");
	PQclear(r);
	free(csv);
	free(areas);
}

static void
key_list(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-walk-planner admin key list");
	admin_key_list(&KEYS, NULL);
}

static void
key_revoke(int argc, char **argv)
{
	admin_key_revoke(&KEYS, argc, argv);
}

static void
participant_list(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-walk-planner admin participant list");
	print_rows(admin_db_run("SELECT id, name, org, role, email, array_to_string(places, ',')"
	                        " FROM participants ORDER BY role, org, name",
	    0, NULL));
}

static void
places_load(int argc, char **argv)
{
	admin_parse(argc, argv, 1, NULL, 0, "trygg-walk-planner admin places load FILE.geojson");
	char *text = read_file(argv[0]);
	const char *v[1] = {text};
	PGresult *r = admin_db_run("SELECT places_load($1::jsonb)", 1, v);
	printf("loaded %s places from %s\n", PQgetvalue(r, 0, 0), argv[0]);
	PQclear(r);
	free(text);
}

static const admin_command commands[] = {
    {"key", "issue", key_issue},
    {"key", "list", key_list},
    {"key", "revoke", key_revoke},
    {"participant", "add", participant_add},
    {"participant", "list", participant_list},
    {"places", "load", places_load},
    {"survey", "load", survey_load},
};

int
wp_admin_main(int argc, char **argv)
{
	static const admin_program program = {
	    .prog = "trygg-walk-planner admin",
	    .schema = "walks",
	    .migrations = walk_planner_migrations,
	    .who = "walk-planner's",
	    .usage = USAGE,
	    .commands = commands,
	    .ncommands = TRYGG_ARRAY_LEN(commands),
	};
	return admin_run(&program, argc, argv);
}
