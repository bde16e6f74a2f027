/*
 * admin.c: the operator's command line, `trygg-reporting admin <command>`.
 *
 * Part of the service's binary, so it speaks the schema of the reporting it
 * ships with (services/common/admin_db.c: embedded migrations, blocking
 * libpq, one connection). A mistake on the command line exits 2, a failure
 * 1.
 *
 * Keys have the form "rk_" and 40 random hex digits (admin_keys.h); they
 * are printed once and only their SHA-256 (hex) is stored; a key's ID is
 * the first 12 digits of that hash. The running service looks keys up
 * per request, so issuing or revoking one needs no restart.
 *
 * `places load FILE` reads the same GeoJSON as `trygg-intake admin places
 * load` (features with properties slug, name, kind place|district): the
 * fallback until intake publishes PlaceDefined.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_cli.h"
#include "admin_db.h"
#include "admin_keys.h"
#include "crypto.h"
#include "reporting.h"

extern const struct migration reporting_migrations[];

static const char USAGE[] =
    "usage: trygg-reporting admin <command>\n"
    "\n"
    "  key issue NAME --role staff|police|partner [--partner PARTNER] [--quiet]\n"
    "      prints the new key once; a partner key sees that partner's reports\n"
    "  key list\n"
    "  key revoke ID|KEY                     ID as `key list` shows it\n"
    "  places load FILE.geojson              places as intake loads them\n"
    "  places list\n"
    "\n"
    "The database is TRYGG_DATABASE_URL or DATABASE_URL (reporting's role).\n";

static bool
plain(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
			return false;
	return true;
}

static const admin_key_store KEYS = {
    .usage = "trygg-reporting admin key revoke ID|KEY",
    .table = "keys",
    .key_prefix = "rk_",
    .hash_hex_sql = "key_hash",
    .holder_sql = "name",
    .list_columns = "name, role, coalesce(partner, '')",
    .list_headers = (const char *const[]){"NAME", "ROLE", "PARTNER", NULL},
};

static void
key_issue(int argc, char **argv)
{
	admin_option o[] = {{.name = "--role", .takes_value = true},
	    {.name = "--partner", .takes_value = true}, {.name = "--quiet"}};
	const char *usage = "trygg-reporting admin key issue NAME --role staff|police|partner"
	                    " [--partner PARTNER] [--quiet]";
	admin_parse(argc, argv, 1, o, TRYGG_ARRAY_LEN(o), usage);
	const char *name = argv[0], *role = o[0].value, *partner = o[1].value;
	if (!plain(name, 100))
		admin_usage("key issue: NAME is 1-100 printable characters");
	if (role == NULL ||
	    (strcmp(role, "staff") != 0 && strcmp(role, "police") != 0 &&
	        strcmp(role, "partner") != 0))
		admin_usage("key issue: --role is staff, police or partner");
	if ((strcmp(role, "partner") == 0) != (partner != NULL))
		admin_usage(
		    "key issue: --partner PARTNER goes with --role partner, and only with it");
	if (partner && !plain(partner, 200))
		admin_usage("key issue: --partner is the partner's name as intake knows it");
	char key[ADMIN_KEY_MAX], hash[CRYPTO_SHA256_HEX_LEN];
	admin_key_new("rk_", key, hash);
	const char *v[4] = {hash, name, role, partner};
	admin_db_exec("INSERT INTO keys (key_hash, name, role, partner) VALUES ($1, $2, $3, $4)", 4,
	    v);
	char *holder = xasprintf("%s (%s%s%s)", name, role, partner ? ", partner " : "",
	    partner ? partner : "");
	admin_key_print_new(key, hash, holder, o[2].value != NULL);
	free(holder);
}

static void
key_list(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-reporting admin key list");
	admin_key_list(&KEYS, NULL);
}

static void
key_revoke(int argc, char **argv)
{
	admin_key_revoke(&KEYS, argc, argv);
}

static void
places_load(int argc, char **argv)
{
	admin_parse(argc, argv, 1, NULL, 0, "trygg-reporting admin places load FILE.geojson");
	json_error_t err;
	json_t *fc = json_load_file(argv[0], JSON_REJECT_DUPLICATES, &err);
	if (fc == NULL)
		admin_die("places load: %s: %s (line %d)", argv[0], err.text, err.line);
	json_t *features = json_object_get(fc, "features");
	if (!json_is_array(features) || json_array_size(features) == 0)
		admin_die("places load: %s: not a FeatureCollection with features", argv[0]);
	/* Check everything before writing anything. */
	size_t i;
	json_t *f;
	json_array_foreach(features, i, f)
	{
		json_t *p = json_object_get(f, "properties"), *g = json_object_get(f, "geometry");
		const char *slug = json_string_value(json_object_get(p, "slug"));
		const char *kind = json_string_value(json_object_get(p, "kind"));
		const char *type = json_string_value(json_object_get(g, "type"));
		bool ok = slug != NULL && strlen(slug) > 0 && strlen(slug) <= 100;
		for (const char *s = slug; ok && *s; s++)
			ok = islower((unsigned char)*s) || isdigit((unsigned char)*s) ||
			    *s == '-' || *s == '_';
		if (!ok)
			admin_die("places load: feature %zu: properties.slug must be a slug", i);
		if (kind && strcmp(kind, "place") != 0 && strcmp(kind, "district") != 0)
			admin_die("places load: feature %zu (%s): kind must be place or district",
			    i, slug);
		if (type == NULL ||
		    (strcmp(type, "Polygon") != 0 && strcmp(type, "MultiPolygon") != 0))
			admin_die("places load: feature %zu (%s): geometry must be a Polygon or"
			          " MultiPolygon",
			    i, slug);
	}
	admin_db_exec("BEGIN", 0, NULL);
	json_array_foreach(features, i, f)
	{
		json_t *p = json_object_get(f, "properties");
		const char *slug = json_string_value(json_object_get(p, "slug"));
		const char *name = json_string_value(json_object_get(p, "name"));
		const char *kind = json_string_value(json_object_get(p, "kind"));
		char *geom = json_dumps(json_object_get(f, "geometry"), JSON_COMPACT);
		const char *v[4] = {slug, name ? name : slug, kind ? kind : "place", geom};
		admin_db_exec("SELECT place_define($1, $2, $3, $4::jsonb, false)", 4, v);
		free(geom);
	}
	admin_db_exec("COMMIT", 0, NULL);
	printf("loaded %zu places\n", json_array_size(features));
	json_decref(fc);
}

static void
places_list(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-reporting admin places list");
	PGresult *r =
	    admin_db_run("SELECT slug, kind, name, removed FROM places ORDER BY kind, slug", 0,
	        NULL);
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-24s  %-8s  %s%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		    PQgetvalue(r, i, 2), PQgetvalue(r, i, 3)[0] == 't' ? " (removed)" : "");
	PQclear(r);
}

static const admin_command commands[] = {
    {"key", "issue", key_issue},
    {"key", "list", key_list},
    {"key", "revoke", key_revoke},
    {"places", "load", places_load},
    {"places", "list", places_list},
};

int
admin_main(int argc, char **argv)
{
	static const admin_program program = {
	    .prog = "trygg-reporting admin",
	    .schema = "reporting",
	    .migrations = reporting_migrations,
	    .who = "reporting's",
	    .usage = USAGE,
	    .commands = commands,
	    .ncommands = TRYGG_ARRAY_LEN(commands),
	};
	return admin_run(&program, argc, argv);
}
