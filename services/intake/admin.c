/*
 * admin.c: the operator's command line, `trygg-intake admin <command>`.
 *
 * It is part of the intake binary (not a separate program) so it always
 * speaks the schema of the intake it ships with: it applies the same
 * embedded migrations first, then works with plain blocking libpq. That is
 * fine here: it is a short-lived process with no event loop to block.
 * After every change it sends NOTIFY intake_directory, so a running intake
 * reloads partners, keys, categories and places at once.
 *
 * The database comes from TRYGG_DATABASE_URL or DATABASE_URL, like the
 * service's. Keys are printed once and only their SHA-256 is stored.
 * The blocking connection, die() and option scanning are shared with the
 * notifier's admin (services/common/admin_db.c).
 */
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_cli.h"
#include "admin_db.h"
#include "admin_keys.h"
#include "auth.h"
#include "directory.h"
#include "import.h"
#include "intake.h"
#include "log.h"
#include "migrate.h"
#include "places.h"
#include "trygg/events.pb-c.h"

extern const struct migration intake_migrations[];

static const char USAGE[] =
    "usage: trygg-intake admin <command>\n"
    "\n"
    "  partner add NAME --role ROLE [--display-name TEXT] [--rate PER_MIN]\n"
    "                   [--categories CODE,CODE|all]\n"
    "      ROLE is police, housing, school, resident_app or staff\n"
    "  partner list\n"
    "  partner categories set NAME CODE,CODE,...|all\n"
    "  partner rate NAME PER_MIN\n"
    "  partner deactivate|activate NAME\n"
    "  key issue PARTNER [--label TEXT] [--quiet]   prints the new key once\n"
    "  key list [PARTNER]\n"
    "  key revoke ID|PREFIX|KEY   ID or PREFIX as `key list` shows them\n"
    "  places load FILE.geojson [--replace]\n"
    "  places list\n"
    "  import FILE.csv [--partner NAME] [--dry-run]\n"
    "      historical reports (columns reported_at, category, lat, long,\n"
    "      description, address, closed_at, status, external_id); see docs/intake.md\n"
    "  categories list\n"
    "  demo-seed [--keys-file PATH] [--places FILE.geojson] [--url URL]\n"
    "      creates the demo partners, issues each a fresh key (revoking the\n"
    "      previous demo keys), prints them and writes PATH (JSON: name -> key)\n"
    "\n"
    "The database is TRYGG_DATABASE_URL or DATABASE_URL (intake's role).\n";

static void
notify(void)
{
	admin_db_exec("NOTIFY " DIRECTORY_CHANNEL, 0, NULL);
}

/* Turns "a,b" / "all" into an array literal, or NULL for all; checks each
 * code exists. */
static char *
categories_literal(const char *csv)
{
	if (strcmp(csv, "all") == 0)
		return NULL;
	size_t n = strlen(csv);
	char *lit = xmalloc(n + 3);
	snprintf(lit, n + 3, "{%s}", csv);
	const char *v[1] = {lit};
	PGresult *r = admin_db_run("SELECT string_agg(c, ',') FROM unnest($1::text[]) c"
	                           " WHERE c NOT IN (SELECT service_code FROM categories)",
	    1, v);
	if (!PQgetisnull(r, 0, 0))
		admin_die("unknown categories: %s (see `categories list`)", PQgetvalue(r, 0, 0));
	PQclear(r);
	return lit;
}

static int
partner_id(const char *name)
{
	const char *v[1] = {name};
	PGresult *r = admin_db_run("SELECT id FROM partners WHERE name = $1", 1, v);
	if (PQntuples(r) != 1)
		admin_die("no partner named '%s' (see `partner list`)", name);
	int id = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	return id;
}

static void
partner_add(int argc, char **argv)
{
	if (argc < 1)
		admin_die("partner add NAME --role ROLE ...");
	const char *role = admin_opt(argc, argv, "--role");
	const char *rate = admin_opt(argc, argv, "--rate");
	const char *cats = admin_opt(argc, argv, "--categories");
	const char *disp = admin_opt(argc, argv, "--display-name");
	if (role == NULL)
		admin_die("--role is required (police, housing, school, resident_app, staff)");
	char *lit = cats ? categories_literal(cats) : NULL;
	const char *v[5] = {argv[0], disp ? disp : argv[0], role, lit, rate ? rate : "600"};
	admin_db_exec(
	    "INSERT INTO partners (name, display_name, role, allowed_categories, rate_per_min)"
	    " VALUES ($1, $2, $3, $4, $5)",
	    5, v);
	free(lit);
	notify();
	printf("partner %s added (role %s)\n", argv[0], role);
}

static void
partner_list(void)
{
	PGresult *r = admin_db_run("SELECT p.name, p.role, p.active, p.rate_per_min,"
	                           " coalesce(array_to_string(p.allowed_categories, ','), 'all'),"
	                           " (SELECT count(*) FROM api_keys k WHERE k.partner_id = p.id"
	                           "  AND k.revoked_at IS NULL)"
	                           " FROM partners p ORDER BY p.name",
	    0, NULL);
	printf("%-24s %-13s %-7s %-8s %-5s %s\n", "NAME", "ROLE", "ACTIVE", "RATE/MIN", "KEYS",
	    "CATEGORIES");
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-24s %-13s %-7s %-8s %-5s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		    PQgetvalue(r, i, 2)[0] == 't' ? "yes" : "no", PQgetvalue(r, i, 3),
		    PQgetvalue(r, i, 5), PQgetvalue(r, i, 4));
	PQclear(r);
}

/* Issues a key; returns it (static buffer). */
static const char *
issue_key(int pid, const char *label)
{
	static char key[AUTH_KEY_LEN + 1];
	uint8_t hash[AUTH_HASH_LEN];
	char hex[2 * AUTH_HASH_LEN + 1], prefix[AUTH_PREFIX_LEN + 1], id[16];
	if (auth_generate_key(key) != 0)
		admin_die("the random generator failed");
	crypto_sha256(key, strlen(key), hash);
	crypto_hex(hash, AUTH_HASH_LEN, hex);
	memcpy(prefix, key, AUTH_PREFIX_LEN);
	prefix[AUTH_PREFIX_LEN] = '\0';
	snprintf(id, sizeof(id), "%d", pid);
	const char *v[4] = {id, hex, prefix, label ? label : ""};
	admin_db_exec("INSERT INTO api_keys (partner_id, key_hash, prefix, label)"
	              " VALUES ($1, decode($2, 'hex'), $3, $4)",
	    4, v);
	return key;
}

static void
key_issue(int argc, char **argv)
{
	if (argc < 1)
		admin_die("key issue PARTNER [--label TEXT]");
	int pid = partner_id(argv[0]);
	const char *key = issue_key(pid, admin_opt(argc, argv, "--label"));
	notify();
	char hash[CRYPTO_SHA256_HEX_LEN];
	crypto_sha256_hex(key, strlen(key), hash);
	admin_key_print_new(key, hash, argv[0], admin_flag(argc, argv, "--quiet"));
}

static const admin_key_store KEYS = {
    .usage = "trygg-intake admin key revoke ID|PREFIX|KEY",
    .table = "api_keys",
    .key_prefix = "tk_",
    .hash_hex_sql = "encode(key_hash, 'hex')",
    .holder_sql = "(SELECT name FROM partners p WHERE p.id = partner_id)",
    .shown_prefix_col = "prefix",
    .list_columns = "partner, prefix, label",
    .list_headers = (const char *const[]){"PARTNER", "PREFIX", "LABEL", NULL},
    .list_from = "(SELECT k.*, p.name AS partner FROM api_keys k"
                 " JOIN partners p ON p.id = k.partner_id) k",
    .holder_filter = "partner = $1",
};

static void
key_list(int argc, char **argv)
{
	admin_parse(argc, argv, argc > 0 && argv[0][0] != '-', NULL, 0,
	    "trygg-intake admin key list [PARTNER]");
	admin_key_list(&KEYS, argc > 0 ? argv[0] : NULL);
}

static void
key_revoke(int argc, char **argv)
{
	admin_key_revoke(&KEYS, argc, argv);
	notify(); /* the running intake forgets the key at once */
}

static void
partner_set(int argc, char **argv)
{
	/* partner categories set NAME LIST | partner rate NAME N |
	 * partner (de)activate NAME */
	if (argc >= 4 && strcmp(argv[0], "categories") == 0 && strcmp(argv[1], "set") == 0) {
		partner_id(argv[2]);
		char *lit = categories_literal(argv[3]);
		const char *v[2] = {argv[2], lit};
		admin_db_exec("UPDATE partners SET allowed_categories = $2 WHERE name = $1", 2, v);
		free(lit);
		printf("%s may now report: %s\n", argv[2], argv[3]);
	} else if (argc >= 3 && strcmp(argv[0], "rate") == 0) {
		partner_id(argv[1]);
		const char *v[2] = {argv[1], argv[2]};
		admin_db_exec("UPDATE partners SET rate_per_min = $2 WHERE name = $1", 2, v);
		printf("%s: %s requests per minute\n", argv[1], argv[2]);
	} else if (argc >= 2 &&
	    (strcmp(argv[0], "deactivate") == 0 || strcmp(argv[0], "activate") == 0)) {
		partner_id(argv[1]);
		const char *v[2] = {argv[1], strcmp(argv[0], "activate") == 0 ? "t" : "f"};
		admin_db_exec("UPDATE partners SET active = $2 WHERE name = $1", 2, v);
		printf("%s %sd\n", argv[1], argv[0]);
	} else {
		admin_die("unknown partner command; try `trygg-intake admin help`");
	}
	notify();
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		admin_die("cannot open %s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	do {
		if (n + 65536 > cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > 64u * 1024 * 1024)
				admin_die("%s is larger than 64 MiB", path);
			buf = xrealloc(buf, cap + 1);
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Writes one PlaceDefined into the outbox (inside the caller's
 * transaction). */
static void
place_event(const char *slug, const char *name, const char *geojson, bool removed)
{
	Trygg__Events__PlaceDefined ev = TRYGG__EVENTS__PLACE_DEFINED__INIT;
	ev.slug = (char *)slug;
	ev.name = (char *)name;
	ev.geojson = (char *)geojson;
	ev.removed = removed;
	ev.at_us = trygg_wall_us();
	size_t len = trygg__events__place_defined__get_packed_size(&ev);
	uint8_t *buf = xmalloc(len ? len : 1);
	trygg__events__place_defined__pack(&ev, buf);
	char *hex = xmalloc(2 * len + 1);
	crypto_hex(buf, len, hex);
	const char *v[1] = {hex};
	admin_db_exec("INSERT INTO outbox (event_type, payload)"
	              " VALUES ('trygg.events.PlaceDefined', decode($1, 'hex'))",
	    1, v);
	free(hex);
	free(buf);
}

/* Loads a FeatureCollection, upserting by slug; with replace, deletes the
 * places the file does not have. Returns the number loaded. */
static size_t
places_load(const char *path, bool replace)
{
	size_t len;
	char *text = read_file(path, &len);
	place_set ps;
	char err[300];
	if (places_parse_collection(text, len, &ps, err, sizeof(err)) != 0)
		admin_die("%s: %s", path, err);
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr);
	json_t *features = json_object_get(root, "features");
	admin_db_exec("BEGIN", 0, NULL);
	char *slugs = xstrdup("{");
	for (size_t i = 0; i < ps.n; i++) {
		const place *p = &ps.items[i];
		char *geom = json_dumps(json_object_get(json_array_get(features, i), "geometry"),
		    JSON_COMPACT | JSON_REAL_PRECISION(15));
		char a[32], b[32], c[32], d[32];
		snprintf(a, sizeof(a), "%.9g", p->geom.min_lat);
		snprintf(b, sizeof(b), "%.9g", p->geom.min_long);
		snprintf(c, sizeof(c), "%.9g", p->geom.max_lat);
		snprintf(d, sizeof(d), "%.9g", p->geom.max_long);
		const char *v[8] = {p->slug, p->name, p->district ? "district" : "place", geom, a,
		    b, c, d};
		admin_db_exec(
		    "INSERT INTO places (slug, name, kind, geometry, min_lat, min_long, max_lat,"
		    " max_long) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)"
		    " ON CONFLICT (slug) DO UPDATE SET name = $2, kind = $3, geometry = $4::jsonb,"
		    " min_lat = $5, min_long = $6, max_lat = $7, max_long = $8, updated_at = now()",
		    8, v);
		place_event(p->slug, p->name, geom, false);
		free(geom);
		char *s2 = xasprintf("%s%s%s", slugs, i ? "," : "", p->slug);
		free(slugs);
		slugs = s2;
	}
	char *s2 = xasprintf("%s}", slugs);
	free(slugs);
	slugs = s2;
	if (replace) {
		const char *v[1] = {slugs};
		PGresult *gone = admin_db_run("DELETE FROM places WHERE slug <> ALL($1::text[])"
		                              " RETURNING slug, name, geometry::text",
		    1, v);
		for (int i = 0; i < PQntuples(gone); i++)
			place_event(PQgetvalue(gone, i, 0), PQgetvalue(gone, i, 1),
			    PQgetvalue(gone, i, 2), true);
		PQclear(gone);
		/* report_places has no foreign key (see 001_init.sql). */
		admin_db_exec(
		    "DELETE FROM report_places WHERE place_id NOT IN (SELECT id FROM places)", 0,
		    NULL);
	}
	admin_db_exec("COMMIT", 0, NULL);
	notify();
	/* A running intake's relay publishes the PlaceDefined events at once. */
	admin_db_exec("NOTIFY intake_outbox", 0, NULL);
	size_t n = ps.n;
	free(slugs);
	json_decref(root);
	places_fini(&ps);
	free(text);
	return n;
}

static void
places_list(void)
{
	PGresult *r = admin_db_run(
	    "SELECT slug, kind, name, round(min_lat::numeric, 4), round(min_long::numeric, 4),"
	    " round(max_lat::numeric, 4), round(max_long::numeric, 4),"
	    " (SELECT count(*) FROM report_places rp WHERE rp.place_id = p.id)"
	    " FROM places p ORDER BY kind, slug",
	    0, NULL);
	printf("%-26s %-9s %-28s %-33s %s\n", "SLUG", "KIND", "NAME", "BOX (lat,long .. lat,long)",
	    "REPORTS");
	for (int i = 0; i < PQntuples(r); i++) {
		char box[80];
		snprintf(box, sizeof(box), "%s,%s .. %s,%s", PQgetvalue(r, i, 3),
		    PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
		printf("%-26s %-9s %-28s %-33s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		    PQgetvalue(r, i, 2), box, PQgetvalue(r, i, 7));
	}
	PQclear(r);
}

static void
categories_list(void)
{
	PGresult *r =
	    admin_db_run("SELECT service_code, focus_area, default_severity, response_target_min,"
	                 " sensitive, name FROM categories ORDER BY service_code",
	        0, NULL);
	printf("%-20s %-22s %-4s %-10s %-9s %s\n", "CODE", "FOCUS AREA", "SEV", "TARGET",
	    "SENSITIVE", "NAME");
	for (int i = 0; i < PQntuples(r); i++) {
		int min = atoi(PQgetvalue(r, i, 3));
		char target[32];
		if (min == 0)
			snprintf(target, sizeof(target), "at once");
		else if (min % 60 == 0)
			snprintf(target, sizeof(target), "%d h", min / 60);
		else
			snprintf(target, sizeof(target), "%d min", min);
		printf("%-20s %-22s %-4s %-10s %-9s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		    PQgetvalue(r, i, 2), target, PQgetvalue(r, i, 4)[0] == 't' ? "yes" : "no",
		    PQgetvalue(r, i, 5));
	}
	PQclear(r);
}

/* The demo partners of `make run`. */
static const struct {
	const char *name, *display, *role, *categories, *rate;
} demo[] = {
    {"polisen-norrmalm", "Polisen, lokalpolisområde Norrmalm", "police", "all", "1200"},
    {"stockholmshem", "Stockholmshem (housing company)", "housing",
        "litter,graffiti,graffiti_offensive,vandalism,lighting,vegetation,other", "600"},
    {"klara-skola", "Klara skola (school)", "school",
        "school_incident,youth_at_risk,vandalism,graffiti,graffiti_offensive,litter,other", "600"},
    {"trygg-app", "Trygg i Norrmalm (resident app)", "resident_app",
        "litter,graffiti,graffiti_offensive,vandalism,lighting,vegetation,traffic,"
        "sleeping_outdoors,other",
        "3000"},
    {"norrmalm-staff", "Norrmalm district staff", "staff", "all", "6000"},
};

static void
demo_seed(int argc, char **argv)
{
	admin_option o[] = {{.name = "--keys-file", .takes_value = true},
	    {.name = "--places", .takes_value = true}, {.name = "--url", .takes_value = true}};
	admin_parse(argc, argv, 0, o, TRYGG_ARRAY_LEN(o),
	    "trygg-intake admin demo-seed [--keys-file PATH] [--places FILE.geojson] [--url URL]");
	const char *keys_file = o[0].value ? o[0].value : "var/demo-keys.json";
	const char *places = o[1].value;
	const char *url = o[2].value ? o[2].value : "http://127.0.0.1:8080";
	if (places != NULL)
		printf("loaded %zu places from %s\n", places_load(places, false), places);
	json_t *keys = json_object();
	admin_db_exec("BEGIN", 0, NULL);
	printf("\nDemo partners and their API keys (shown once; also in %s):\n\n", keys_file);
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(demo); i++) {
		char *lit = categories_literal(demo[i].categories);
		const char *v[5] = {demo[i].name, demo[i].display, demo[i].role, lit, demo[i].rate};
		admin_db_exec(
		    "INSERT INTO partners (name, display_name, role, allowed_categories, "
		    "rate_per_min)"
		    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET"
		    " display_name = $2, role = $3, allowed_categories = $4, rate_per_min = $5,"
		    " active = true",
		    5, v);
		free(lit);
		int pid = partner_id(demo[i].name);
		char id[16];
		snprintf(id, sizeof(id), "%d", pid);
		const char *v2[1] = {id};
		admin_db_exec(
		    "UPDATE api_keys SET revoked_at = now() WHERE partner_id = $1 AND label = "
		    "'demo'"
		    " AND revoked_at IS NULL",
		    1, v2);
		const char *key = issue_key(pid, "demo");
		printf("  %-18s %-13s %s\n", demo[i].name, demo[i].role, key);
		json_object_set_new(keys, demo[i].name, json_string(key));
	}
	admin_db_exec("COMMIT", 0, NULL);
	notify();
	char *tmp = xasprintf("%s.tmp", keys_file);
	FILE *f = fopen(tmp, "w");
	if (f == NULL || json_dumpf(keys, f, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 ||
	    fputc('\n', f) == EOF || fclose(f) != 0)
		admin_die("cannot write %s: %s", tmp, strerror(errno));
	if (rename(tmp, keys_file) != 0)
		admin_die("cannot rename %s: %s", tmp, strerror(errno));
	free(tmp);
	printf("\nTry: curl -s -H \"Authorization: Bearer %s\" %s/v1/reports\n",
	    json_string_value(json_object_get(keys, "trygg-app")), url);
	json_decref(keys);
}

static void
partner_list_cmd(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-intake admin partner list");
	partner_list();
}

static void
places_load_cmd(int argc, char **argv)
{
	admin_option o[] = {{.name = "--replace"}};
	admin_parse(argc, argv, 1, o, 1, "trygg-intake admin places load FILE.geojson [--replace]");
	printf("loaded %zu places from %s\n", places_load(argv[0], o[0].value != NULL), argv[0]);
}

static void
places_list_cmd(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-intake admin places list");
	places_list();
}

static void
import_cmd(int argc, char **argv)
{
	int code = import_main(argc, argv);
	if (code != 0) {
		admin_db_close();
		exit(code);
	}
}

static void
categories_cmd(int argc, char **argv)
{
	if (argc > 0 && strcmp(argv[0], "list") == 0)
		argc--, argv++;
	admin_parse(argc, argv, 0, NULL, 0, "trygg-intake admin categories list");
	categories_list();
}

static const admin_command commands[] = {
    {"partner", "add", partner_add},
    {"partner", "list", partner_list_cmd},
    {"partner", NULL, partner_set}, /* categories set, rate, (de)activate */
    {"key", "issue", key_issue},
    {"key", "list", key_list},
    {"key", "revoke", key_revoke},
    {"places", "load", places_load_cmd},
    {"places", "list", places_list_cmd},
    {"import", NULL, import_cmd},
    {"categories", NULL, categories_cmd},
    {"demo-seed", NULL, demo_seed},
};

int
admin_main(int argc, char **argv)
{
	static const admin_program program = {
	    .prog = "trygg-intake admin",
	    .schema = "intake",
	    .migrations = intake_migrations,
	    .who = "intake's",
	    .usage = USAGE,
	    .commands = commands,
	    .ncommands = TRYGG_ARRAY_LEN(commands),
	};
	return admin_run(&program, argc, argv);
}
