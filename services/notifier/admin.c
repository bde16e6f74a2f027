/*
 * admin.c: the operator's command line, `trygg-notifier admin <command>`.
 *
 * Like intake's (services/intake/admin.c) it is part of the service's
 * binary, so it speaks the schema of the notifier it ships with: it applies
 * the same embedded migrations, then works with plain blocking libpq on one
 * connection (services/common/admin_db.c); it is a short-lived process with
 * no event loop to block. Every argument is checked before anything is
 * written, and a mistake names the argument: exit 2 for a usage error, 1
 * for a failure (an unknown unit, a constraint Postgres refused).
 *
 * A running notifier needs no signal for most changes: a trigger on units
 * and routing_rules NOTIFYs notifier_routing, and keys are looked up per
 * request. A retried dead letter NOTIFYs notifier_deliveries so the
 * delivery worker picks it up at once.
 *
 * Unit keys have the seed's format, "tu_" and 40 hex digits (20 random
 * bytes); they are printed once and only their SHA-256 (hex) is stored.
 * unit_keys has no id column, so a key's ID is the first 12 digits of its
 * hash; `key revoke` takes that (or a longer prefix of it) or the key.
 */
#include "admin.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_cli.h"
#include "admin_db.h"
#include "admin_keys.h"
#include "crypto.h"
#include "sign.h"

extern const struct migration notifier_migrations[];

static const char USAGE[] =
    "usage: trygg-notifier admin <command>\n"
    "\n"
    "  unit add NAME --kind KIND [unit options]\n"
    "  unit set NAME [unit options]\n"
    "  unit list\n"
    "      KIND is crew, unit, police or operator. Unit options:\n"
    "        --display-name TEXT       (default: NAME)\n"
    "        --webhook URL|none --secret S   webhook and its signing secret\n"
    "        --email ADDR|none\n"
    "        --supervisor ADDR|URL|none  supervisor's e-mail and/or webhook\n"
    "                                  (give it twice for both); a webhook URL\n"
    "                                  gets a new secret of its own, printed once\n"
    "        --supervisor-name TEXT\n"
    "        --ack-target DUR --completion-target DUR   e.g. 30m, 24h, 1h30m\n"
    "        --sensitive | --not-sensitive   handles sensitive categories\n"
    "        --default all|sensitive|none    default unit for unmatched reports\n"
    "        --active | --inactive\n"
    "  rule add --category CODE|* [--place SLUG|*] --unit NAME [--copy UNIT]...\n"
    "           [--window WINDOW] [--priority N] [--ack-target DUR]\n"
    "           [--completion-target DUR] [--note TEXT]\n"
    "      WINDOW is local time of week: \"always\" (default), \"mon-fri 07:00-18:00\",\n"
    "      \"sat,sun\", \"22:00-06:00\" (wraps midnight), \"fri-sat 22:00-06:00\"\n"
    "  rule list [--unit NAME] [--category CODE]\n"
    "  rule remove ID\n"
    "  key issue UNIT [--label TEXT] [--quiet]   prints the new key once\n"
    "  key list [UNIT]\n"
    "  key revoke ID|KEY                        ID as `key list` shows it\n"
    "  deliveries dead [--unit NAME] [--limit N]\n"
    "  deliveries retry ID                      re-queues a dead letter\n"
    "\n"
    "The database is TRYGG_DATABASE_URL or DATABASE_URL (the notifier's role).\n";

#define DUR_MAX_S (366 * 86400)

/* ---- argument checks (no database needed) ---- */

static bool
matches(const char *s, const char *first, const char *rest, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max || strchr(first, s[0]) == NULL)
		return false;
	for (size_t i = 1; i < n; i++) {
		if (strchr(rest, s[i]) == NULL)
			return false;
	}
	return true;
}

#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"

static void
check_unit_name(const char *what, const char *name)
{
	if (!matches(name, LOWER_DIGITS, LOWER_DIGITS "_-", 63))
		admin_usage("%s '%s': a unit name is 1-63 lower-case letters, digits, '-' or '_',"
		            " starting with a letter or digit",
		    what, name);
}

static bool
is_none(const char *v)
{
	return strcmp(v, "none") == 0;
}

static bool
url_ok(const char *u)
{
	size_t skip;
	if (strncmp(u, "http://", 7) == 0)
		skip = 7;
	else if (strncmp(u, "https://", 8) == 0)
		skip = 8;
	else
		return false;
	if (u[skip] == '\0' || u[skip] == '/' || u[skip] == ':' || strlen(u) > 2000)
		return false;
	for (const char *p = u; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	}
	return true;
}

static bool
email_ok(const char *e)
{
	const char *at = strchr(e, '@');
	if (at == NULL || at == e || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
	    strchr(at + 1, '.') == NULL || strlen(e) > 254)
		return false;
	for (const char *p = e; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>' || *p == ',')
			return false;
	}
	return true;
}

static void
check_url(const char *opt, const char *u)
{
	if (!url_ok(u))
		admin_usage("%s '%s' is not an http:// or https:// URL", opt, u);
}

static void
check_email(const char *opt, const char *e)
{
	if (!email_ok(e))
		admin_usage("%s '%s' is not an e-mail address (name@example.org)", opt, e);
}

/* "30m", "24h", "1h30m", "90s", "2d" -> seconds, or usage error. */
static long
parse_duration(const char *opt, const char *s)
{
	long total = 0;
	const char *p = s;
	if (*p == '\0')
		goto bad;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			goto bad;
		errno = 0;
		char *end;
		long v = strtol(p, &end, 10);
		if (errno != 0 || v > DUR_MAX_S)
			goto bad;
		long mul;
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: goto bad;
		}
		total += v * mul;
		if (total > DUR_MAX_S)
			goto bad;
		p = end + 1;
	}
	if (total <= 0)
		goto bad;
	return total;
bad:
	admin_usage("%s '%s' is not a duration (e.g. 90s, 30m, 24h, 1h30m, 2d; more than 0, at most"
	            " 366d)",
	    opt, s);
}

static long
parse_int(const char *opt, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
		admin_usage("%s '%s' is not a whole number from %ld to %ld", opt, s, min, max);
	return v;
}

static const char *const day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static int
day_index(const char *s, size_t n)
{
	for (int i = 0; i < 7; i++) {
		if (n == 3 && strncasecmp(s, day_names[i], 3) == 0)
			return i;
	}
	return -1;
}

/* "HH:MM" (00:00 .. 24:00) -> minutes, or -1. */
static int
parse_hhmm(const char *s, size_t n)
{
	if (n != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    s[2] != ':' || !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && m != 0))
		return -1;
	return h * 60 + m;
}

typedef struct window {
	int days, from_min, to_min;
} window;

/* WINDOW := always | DAYS | TIMES | DAYS TIMES, DAYS := daily | D[-D][,D[-D]]...,
 * TIMES := HH:MM-HH:MM (wrapping midnight when the end is earlier). */
static window
parse_window(const char *s)
{
	window w = {127, 0, 1440};
	const char *p = s;
	while (*p == ' ')
		p++;
	if (strcmp(p, "always") == 0)
		return w;
	const char *sp = strchr(p, ' ');
	const char *days = p, *times = NULL;
	size_t dlen = sp ? (size_t)(sp - p) : strlen(p);
	if (isdigit((unsigned char)p[0])) {
		days = NULL;
		times = p;
	} else if (sp) {
		times = sp;
		while (*times == ' ')
			times++;
	}
	if (days) {
		if (dlen == 5 && strncasecmp(days, "daily", 5) == 0) {
			w.days = 127;
		} else {
			w.days = 0;
			const char *q = days, *end = days + dlen;
			while (q < end) {
				const char *comma = memchr(q, ',', (size_t)(end - q));
				const char *item_end = comma ? comma : end;
				const char *dash = memchr(q, '-', (size_t)(item_end - q));
				int a = day_index(q, (size_t)((dash ? dash : item_end) - q));
				int b =
				    dash ? day_index(dash + 1, (size_t)(item_end - dash - 1)) : a;
				if (a < 0 || b < 0)
					goto bad;
				for (int d = a;; d = (d + 1) % 7) {
					w.days |= 1 << d;
					if (d == b)
						break;
				}
				q = comma ? comma + 1 : end;
				if (comma && q == end)
					goto bad;
			}
		}
	}
	if (times) {
		const char *dash = strchr(times, '-');
		if (dash == NULL)
			goto bad;
		const char *tend = times + strlen(times);
		while (tend > dash && tend[-1] == ' ')
			tend--;
		int from = parse_hhmm(times, (size_t)(dash - times));
		int to = parse_hhmm(dash + 1, (size_t)(tend - dash - 1));
		if (from < 0 || to < 0 || from == 1440)
			goto bad;
		if (to == 0)
			to = 1440; /* "22:00-00:00" is "22:00-24:00" */
		if (from == to)
			admin_usage("--window '%s': the window is empty (start and end are equal)",
			    s);
		w.from_min = from;
		w.to_min = to;
	}
	return w;
bad:
	admin_usage("--window '%s' is not a window; e.g. always, mon-fri 07:00-18:00, sat,sun,"
	            " 22:00-06:00, fri-sat 22:00-06:00",
	    s);
}

/* The inverse of parse_window, for listings. */
static void
format_window(int days, int from, int to, char *buf, size_t len)
{
	char d[64] = "";
	if (days == 127) {
		snprintf(d, sizeof(d), "%s", from == 0 && to == 1440 ? "always" : "daily");
	} else {
		size_t n = 0;
		for (int i = 0; i < 7;) {
			if (!(days & (1 << i))) {
				i++;
				continue;
			}
			int j = i;
			while (j + 1 < 7 && (days & (1 << (j + 1))))
				j++;
			n += (size_t)snprintf(d + n, sizeof(d) - n, "%s%s", n ? "," : "",
			    day_names[i]);
			if (j > i)
				n += (size_t)snprintf(d + n, sizeof(d) - n, "-%s", day_names[j]);
			i = j + 1;
		}
	}
	if (from == 0 && to == 1440)
		snprintf(buf, len, "%s", d);
	else
		snprintf(buf, len, "%s %02d:%02d-%02d:%02d", d, from / 60, from % 60, to / 60,
		    to % 60);
}

static void
format_duration(long s, char *buf, size_t len)
{
	if (s % 86400 == 0)
		snprintf(buf, len, "%ldd", s / 86400);
	else if (s % 3600 == 0)
		snprintf(buf, len, "%ldh", s / 3600);
	else if (s % 60 == 0)
		snprintf(buf, len, "%ldm", s / 60);
	else
		snprintf(buf, len, "%lds", s);
}

static const char *
duration_or(const char *secs, const char *dflt, char *buf, size_t len)
{
	if (secs[0] == '\0')
		return dflt;
	format_duration(atol(secs), buf, len);
	return buf;
}

/* ---- database helpers ---- */

static bool
unit_exists(const char *name)
{
	const char *v[1] = {name};
	PGresult *r = admin_db_run("SELECT 1 FROM units WHERE name = $1", 1, v);
	bool found = PQntuples(r) == 1;
	PQclear(r);
	return found;
}

static void
need_unit(const char *what, const char *name)
{
	if (!unit_exists(name))
		admin_die("%s: no unit named '%s' (see `unit list`)", what, name);
}

/* ---- units ---- */

static const char UNIT_ADD_USAGE[] =
    "trygg-notifier admin unit add NAME --kind KIND [unit options] (see `help`)";
static const char UNIT_SET_USAGE[] =
    "trygg-notifier admin unit set NAME [unit options] (see `help`)";

#define UNIT_OPTIONS \
	{ \
		{.name = "--display-name", .takes_value = true}, \
		    {.name = "--kind", .takes_value = true}, \
		    {.name = "--webhook", .takes_value = true}, \
		    {.name = "--secret", .takes_value = true}, \
		    {.name = "--email", .takes_value = true}, \
		    {.name = "--supervisor", .takes_value = true, .repeat = true}, \
		    {.name = "--supervisor-name", .takes_value = true}, \
		    {.name = "--ack-target", .takes_value = true}, \
		    {.name = "--completion-target", .takes_value = true}, {.name = "--sensitive"}, \
		    {.name = "--not-sensitive"}, {.name = "--default", .takes_value = true}, \
		    {.name = "--active"}, {.name = "--inactive"}, \
	}

#define UNIT_MAX_COLS 20

/* The columns a unit command sets, as text parameters (NULL = SQL NULL). */
typedef struct unit_change {
	const char *col[UNIT_MAX_COLS];
	const char *val[UNIT_MAX_COLS];
	int n;
	char ack[24], done[24];
	const char *webhook; /* given and not none */
	bool secret;         /* --secret given */
	const char *default_for;
	bool default_given;
	int sensitive;               /* 1 --sensitive, 0 --not-sensitive, -1 neither */
	char sup_secret[2 * 32 + 1]; /* generated for a new supervisor webhook, or "" */
} unit_change;

static void
set_col(unit_change *c, const char *col, const char *val)
{
	c->col[c->n] = col;
	c->val[c->n] = val;
	c->n++;
}

/* Checks the unit options and turns them into columns (no database). */
static void
unit_options(admin_option *o, size_t no, unit_change *c, bool adding)
{
	const char *v;
	memset(c, 0, sizeof(*c));
	if ((v = admin_get(o, no, "--display-name")->value) != NULL) {
		if (v[0] == '\0' || strlen(v) > 200)
			admin_usage("--display-name must be 1 to 200 characters");
		set_col(c, "display_name", v);
	}
	if ((v = admin_get(o, no, "--kind")->value) != NULL) {
		if (strcmp(v, "crew") != 0 && strcmp(v, "unit") != 0 && strcmp(v, "police") != 0 &&
		    strcmp(v, "operator") != 0)
			admin_usage("--kind '%s': expected crew, unit, police or operator", v);
		set_col(c, "kind", v);
	} else if (adding) {
		admin_usage("--kind is required (crew, unit, police or operator)");
	}
	if ((v = admin_get(o, no, "--webhook")->value) != NULL) {
		if (!is_none(v)) {
			check_url("--webhook", v);
			c->webhook = v;
		}
		set_col(c, "webhook_url", is_none(v) ? NULL : v);
	}
	if ((v = admin_get(o, no, "--secret")->value) != NULL) {
		if (strlen(v) < 8)
			admin_usage("--secret must be at least 8 characters");
		c->secret = true;
		set_col(c, "webhook_secret", v);
	}
	if (adding && c->webhook && !c->secret)
		admin_usage("--webhook needs --secret (every webhook is signed)");
	if ((v = admin_get(o, no, "--email")->value) != NULL) {
		if (!is_none(v))
			check_email("--email", v);
		set_col(c, "email", is_none(v) ? NULL : v);
	}
	admin_option *sup = admin_get(o, no, "--supervisor");
	bool sup_mail = false, sup_hook = false;
	for (int i = 0; i < sup->nvalues; i++) {
		v = sup->values[i];
		if (is_none(v)) {
			if (sup->nvalues > 1)
				admin_usage("--supervisor none cannot be combined with another "
				            "--supervisor");
			set_col(c, "supervisor_email", NULL);
			set_col(c, "supervisor_webhook_url", NULL);
			set_col(c, "supervisor_webhook_secret", NULL);
		} else if (strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0) {
			check_url("--supervisor", v);
			if (sup_hook)
				admin_usage("--supervisor: two webhook URLs given");
			sup_hook = true;
			set_col(c, "supervisor_webhook_url", v);
			/* The supervisor's webhook has a secret of its own, so the crew
			 * cannot forge what its supervisor receives: a new one each
			 * time a URL is given, printed once. */
			uint8_t raw[32];
			if (RAND_bytes(raw, sizeof(raw)) != 1)
				admin_die("the random generator failed");
			crypto_hex(raw, sizeof(raw), c->sup_secret);
			set_col(c, "supervisor_webhook_secret", c->sup_secret);
		} else {
			check_email("--supervisor", v);
			if (sup_mail)
				admin_usage("--supervisor: two e-mail addresses given");
			sup_mail = true;
			set_col(c, "supervisor_email", v);
		}
	}
	if ((v = admin_get(o, no, "--supervisor-name")->value) != NULL)
		set_col(c, "supervisor_name", v[0] ? v : NULL);
	if ((v = admin_get(o, no, "--ack-target")->value) != NULL) {
		snprintf(c->ack, sizeof(c->ack), "%ld", parse_duration("--ack-target", v));
		set_col(c, "ack_target_s", c->ack);
	}
	if ((v = admin_get(o, no, "--completion-target")->value) != NULL) {
		snprintf(c->done, sizeof(c->done), "%ld", parse_duration("--completion-target", v));
		set_col(c, "completion_target_s", c->done);
	}
	bool sens = admin_get(o, no, "--sensitive")->value != NULL;
	bool notsens = admin_get(o, no, "--not-sensitive")->value != NULL;
	if (sens && notsens)
		admin_usage("--sensitive and --not-sensitive contradict each other");
	c->sensitive = sens ? 1 : notsens ? 0 : -1;
	if (sens || notsens)
		set_col(c, "handles_sensitive", sens ? "true" : "false");
	if ((v = admin_get(o, no, "--default")->value) != NULL) {
		if (strcmp(v, "all") != 0 && strcmp(v, "sensitive") != 0 && !is_none(v))
			admin_usage("--default '%s': expected all, sensitive or none", v);
		c->default_for = is_none(v) ? NULL : v;
		c->default_given = true;
		set_col(c, "default_for", c->default_for);
	}
	bool act = admin_get(o, no, "--active")->value != NULL;
	bool inact = admin_get(o, no, "--inactive")->value != NULL;
	if (act && inact)
		admin_usage("--active and --inactive contradict each other");
	if (act || inact)
		set_col(c, "active", act ? "true" : "false");
}

/* Prints a generated supervisor secret, once, after the change committed. */
static void
print_supervisor_secret(const char *name, const unit_change *c)
{
	if (c->sup_secret[0])
		printf("Supervisor webhook secret for %s (signs its escalations; shown only now,"
		       " give it to the supervisor's receiver):\n\n  %s\n\n",
		    name, c->sup_secret);
}

/* Checks against the database what the columns alone cannot say. */
static void
unit_precheck(const char *name, const unit_change *c)
{
	/* Sensitive reports without a rule go to the sensitive default: it
	 * must be a unit that handles them (the schema insists too). */
	const char *v1[1] = {name};
	PGresult *cur = admin_db_run("SELECT handles_sensitive, coalesce(default_for, '')"
	                             " FROM units WHERE name = $1",
	    1, v1);
	bool exists = PQntuples(cur) == 1;
	bool handles = exists && PQgetvalue(cur, 0, 0)[0] == 't';
	bool is_sens_default = exists && strcmp(PQgetvalue(cur, 0, 1), "sensitive") == 0;
	PQclear(cur);
	if (c->sensitive >= 0)
		handles = c->sensitive == 1;
	if (c->default_for && strcmp(c->default_for, "sensitive") == 0 && !handles)
		admin_die("--default sensitive: unit '%s' does not handle sensitive reports; only"
		          " such a unit may receive them (add --sensitive if it should)",
		    name);
	if (c->sensitive == 0 && is_sens_default && !(c->default_given && c->default_for == NULL))
		admin_die("--not-sensitive: unit '%s' is the default for sensitive reports; give it"
		          " --default none (and another unit --default sensitive) first",
		    name);
	if (c->default_for) {
		const char *v[2] = {c->default_for, name};
		PGresult *r =
		    admin_db_run("SELECT name FROM units WHERE default_for = $1 AND name <> $2", 2,
		        v);
		if (PQntuples(r) > 0) {
			char other[80];
			snprintf(other, sizeof(other), "%s", PQgetvalue(r, 0, 0));
			PQclear(r);
			admin_die("--default %s: unit '%s' is already the default for %s reports;"
			          " run `unit set %s --default none` first",
			    c->default_for, other,
			    strcmp(c->default_for, "all") == 0 ? "unmatched"
			                                       : "unmatched sensitive",
			    other);
		}
		PQclear(r);
	}
	if (c->webhook && !c->secret) {
		const char *v[1] = {name};
		PGresult *r = admin_db_run(
		    "SELECT 1 FROM units WHERE name = $1 AND webhook_secret IS NOT NULL", 1, v);
		bool has = PQntuples(r) == 1;
		PQclear(r);
		if (!has)
			admin_die(
			    "--webhook: unit '%s' has no webhook secret yet; give --secret too",
			    name);
	}
}

static void
unit_add(int argc, char **argv)
{
	admin_option o[] = UNIT_OPTIONS;
	admin_parse(argc, argv, 1, o, TRYGG_ARRAY_LEN(o), UNIT_ADD_USAGE);
	const char *name = argv[0];
	check_unit_name("unit", name);
	unit_change c;
	unit_options(o, TRYGG_ARRAY_LEN(o), &c, true);
	if (unit_exists(name))
		admin_die("unit '%s' already exists (change it with `unit set %s ...`)", name,
		    name);
	unit_precheck(name, &c);
	char *cols = xstrdup("name, display_name");
	char *vals = xstrdup("$1, $2");
	const char *params[UNIT_MAX_COLS + 2] = {name, name};
	int np = 2;
	for (int i = 0; i < c.n; i++) {
		if (strcmp(c.col[i], "display_name") == 0) {
			params[1] = c.val[i];
			continue;
		}
		params[np++] = c.val[i];
		char *a = xasprintf("%s, %s", cols, c.col[i]);
		char *b = xasprintf("%s, $%d", vals, np);
		free(cols);
		free(vals);
		cols = a;
		vals = b;
	}
	char *sql = xasprintf("INSERT INTO units (%s) VALUES (%s)", cols, vals);
	admin_db_exec(sql, np, params);
	free(sql);
	free(cols);
	free(vals);
	printf("unit %s added (%s)\n", name, admin_get(o, TRYGG_ARRAY_LEN(o), "--kind")->value);
	print_supervisor_secret(name, &c);
}

static void
unit_set(int argc, char **argv)
{
	admin_option o[] = UNIT_OPTIONS;
	admin_parse(argc, argv, 1, o, TRYGG_ARRAY_LEN(o), UNIT_SET_USAGE);
	const char *name = argv[0];
	check_unit_name("unit", name);
	unit_change c;
	unit_options(o, TRYGG_ARRAY_LEN(o), &c, false);
	if (c.n == 0)
		admin_usage("unit set %s: nothing to change (give at least one option; see `help`)",
		    name);
	need_unit("unit set", name);
	unit_precheck(name, &c);
	char *sets = xstrdup("");
	const char *params[UNIT_MAX_COLS + 1] = {name};
	for (int i = 0; i < c.n; i++) {
		params[i + 1] = c.val[i];
		char *a = xasprintf("%s%s%s = $%d", sets, i ? ", " : "", c.col[i], i + 2);
		free(sets);
		sets = a;
	}
	char *sql = xasprintf("UPDATE units SET %s WHERE name = $1", sets);
	admin_db_exec(sql, c.n + 1, params);
	free(sql);
	free(sets);
	printf("unit %s updated\n", name);
	print_supervisor_secret(name, &c);
}

static void
unit_list(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, "trygg-notifier admin unit list");
	PGresult *r = admin_db_run(
	    "SELECT u.name, u.kind, u.handles_sensitive, coalesce(u.default_for, ''),"
	    " u.ack_target_s, u.completion_target_s, u.active,"
	    " (SELECT count(*) FROM unit_keys k WHERE k.unit = u.name AND k.revoked_at IS NULL),"
	    " (SELECT count(*) FROM routing_rules r WHERE r.unit = u.name),"
	    " concat_ws(' ', 'webhook=' || u.webhook_url, 'email=' || u.email,"
	    "  'supervisor=' || concat_ws(',', u.supervisor_email, u.supervisor_webhook_url)),"
	    " u.display_name"
	    " FROM units u ORDER BY u.name",
	    0, NULL);
	printf("%-20s %-9s %-9s %-9s %-6s %-6s %-6s %-4s %-5s %s\n", "NAME", "KIND", "SENSITIVE",
	    "DEFAULT", "ACK", "DONE", "ACTIVE", "KEYS", "RULES", "CHANNELS");
	for (int i = 0; i < PQntuples(r); i++) {
		char ack[24], done[24];
		format_duration(atol(PQgetvalue(r, i, 4)), ack, sizeof(ack));
		format_duration(atol(PQgetvalue(r, i, 5)), done, sizeof(done));
		printf("%-20s %-9s %-9s %-9s %-6s %-6s %-6s %-4s %-5s %s\n", PQgetvalue(r, i, 0),
		    PQgetvalue(r, i, 1), PQgetvalue(r, i, 2)[0] == 't' ? "yes" : "no",
		    PQgetvalue(r, i, 3)[0] ? PQgetvalue(r, i, 3) : "-", ack, done,
		    PQgetvalue(r, i, 6)[0] == 't' ? "yes" : "no", PQgetvalue(r, i, 7),
		    PQgetvalue(r, i, 8), PQgetvalue(r, i, 9)[0] ? PQgetvalue(r, i, 9) : "(none)");
	}
	PQclear(r);
}

/* ---- routing rules ---- */

static const char RULE_ADD_USAGE[] =
    "trygg-notifier admin rule add --category CODE|* [--place SLUG|*] --unit NAME"
    " [--copy UNIT]... [--window WINDOW] [--priority N] [--ack-target DUR]"
    " [--completion-target DUR] [--note TEXT]";

static void
rule_add(int argc, char **argv)
{
	admin_option o[] = {
	    {.name = "--category", .takes_value = true},
	    {.name = "--place", .takes_value = true},
	    {.name = "--unit", .takes_value = true},
	    {.name = "--copy", .takes_value = true, .repeat = true},
	    {.name = "--window", .takes_value = true},
	    {.name = "--priority", .takes_value = true},
	    {.name = "--ack-target", .takes_value = true},
	    {.name = "--completion-target", .takes_value = true},
	    {.name = "--note", .takes_value = true},
	};
	size_t no = TRYGG_ARRAY_LEN(o);
	admin_parse(argc, argv, 0, o, no, RULE_ADD_USAGE);
	const char *cat = admin_get(o, no, "--category")->value;
	const char *place = admin_get(o, no, "--place")->value;
	const char *owner = admin_get(o, no, "--unit")->value;
	admin_option *copies = admin_get(o, no, "--copy");
	const char *win = admin_get(o, no, "--window")->value;
	const char *prio = admin_get(o, no, "--priority")->value;
	const char *ackv = admin_get(o, no, "--ack-target")->value;
	const char *donev = admin_get(o, no, "--completion-target")->value;
	const char *note = admin_get(o, no, "--note")->value;
	if (cat == NULL)
		admin_usage("--category is required (a category code, or * for any)");
	if (strcmp(cat, "*") != 0 && !matches(cat, LOWER_DIGITS, LOWER_DIGITS "_-", 64))
		admin_usage("--category '%s': expected a category code (lower-case letters, digits,"
		            " '_') or *",
		    cat);
	if (place != NULL && strcmp(place, "*") == 0)
		place = NULL;
	if (place != NULL && !matches(place, LOWER_DIGITS, LOWER_DIGITS "_-", 100))
		admin_usage("--place '%s': expected a place slug (lower-case letters, digits, '-',"
		            " '_') or *",
		    place);
	if (owner == NULL && copies->nvalues == 0)
		admin_usage("--unit is required (the owner), or --copy for a copy-only rule");
	if (owner)
		check_unit_name("--unit", owner);
	for (int i = 0; i < copies->nvalues; i++)
		check_unit_name("--copy", copies->values[i]);
	window w = win ? parse_window(win) : (window){127, 0, 1440};
	char prio_s[24] = "100", ack_s[24], done_s[24], days_s[16], from_s[16], to_s[16];
	if (prio)
		snprintf(prio_s, sizeof(prio_s), "%ld",
		    parse_int("--priority", prio, -1000000, 1000000));
	if (ackv)
		snprintf(ack_s, sizeof(ack_s), "%ld", parse_duration("--ack-target", ackv));
	if (donev)
		snprintf(done_s, sizeof(done_s), "%ld",
		    parse_duration("--completion-target", donev));
	snprintf(days_s, sizeof(days_s), "%d", w.days);
	snprintf(from_s, sizeof(from_s), "%d", w.from_min);
	snprintf(to_s, sizeof(to_s), "%d", w.to_min);
	if (owner)
		need_unit("--unit", owner);
	for (int i = 0; i < copies->nvalues; i++)
		need_unit("--copy", copies->values[i]);
	char wtext[64];
	format_window(w.days, w.from_min, w.to_min, wtext, sizeof(wtext));
	admin_db_exec("BEGIN", 0, NULL);
	for (int i = owner ? -1 : 0; i < copies->nvalues; i++) {
		const char *unit = i < 0 ? owner : copies->values[i];
		const char *v[11] = {cat, place, days_s, from_s, to_s, unit,
		    i < 0 ? "owner" : "copy", prio_s, ackv ? ack_s : NULL, donev ? done_s : NULL,
		    note ? note : ""};
		PGresult *r = admin_db_run(
		    "INSERT INTO routing_rules (category, place, days, from_min, to_min, unit, "
		    "role,"
		    " priority, ack_target_s, completion_target_s, note)"
		    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
		    11, v);
		printf("rule %s added: %s at %s, %s -> %s (%s, priority %s)\n", PQgetvalue(r, 0, 0),
		    cat, place ? place : "any place", wtext, unit, v[6], prio_s);
		PQclear(r);
	}
	admin_db_exec("COMMIT", 0, NULL);
}

static void
rule_list(int argc, char **argv)
{
	admin_option o[] = {
	    {.name = "--unit", .takes_value = true},
	    {.name = "--category", .takes_value = true},
	};
	admin_parse(argc, argv, 0, o, 2,
	    "trygg-notifier admin rule list [--unit NAME]"
	    " [--category CODE]");
	const char *v[2] = {o[0].value, o[1].value};
	if (v[0])
		need_unit("--unit", v[0]);
	PGresult *r = admin_db_run(
	    "SELECT id, category, coalesce(place, '*'), days, from_min, to_min, unit, role, "
	    "priority,"
	    " coalesce(ack_target_s::text, ''), coalesce(completion_target_s::text, ''), note"
	    " FROM routing_rules WHERE ($1::text IS NULL OR unit = $1)"
	    " AND ($2::text IS NULL OR category = $2) ORDER BY category, place NULLS LAST, id",
	    2, v);
	printf("%-5s %-20s %-20s %-26s %-18s %-5s %-5s %-5s %-5s %s\n", "ID", "CATEGORY", "PLACE",
	    "WINDOW", "UNIT", "ROLE", "PRIO", "ACK", "DONE", "NOTE");
	for (int i = 0; i < PQntuples(r); i++) {
		char wtext[64], ack[24], done[24];
		format_window(atoi(PQgetvalue(r, i, 3)), atoi(PQgetvalue(r, i, 4)),
		    atoi(PQgetvalue(r, i, 5)), wtext, sizeof(wtext));
		printf("%-5s %-20s %-20s %-26s %-18s %-5s %-5s %-5s %-5s %s\n", PQgetvalue(r, i, 0),
		    PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), wtext, PQgetvalue(r, i, 6),
		    PQgetvalue(r, i, 7), PQgetvalue(r, i, 8),
		    duration_or(PQgetvalue(r, i, 9), "unit", ack, sizeof(ack)),
		    duration_or(PQgetvalue(r, i, 10), "-", done, sizeof(done)),
		    PQgetvalue(r, i, 11));
	}
	PQclear(r);
}

static void
rule_remove(int argc, char **argv)
{
	admin_parse(argc, argv, 1, NULL, 0, "trygg-notifier admin rule remove ID");
	char id[24];
	snprintf(id, sizeof(id), "%ld", parse_int("rule ID", argv[0], 1, 2147483647));
	const char *v[1] = {id};
	PGresult *r = admin_db_run("DELETE FROM routing_rules WHERE id = $1 RETURNING category,"
	                           " coalesce(place, 'any place'), unit",
	    1, v);
	if (PQntuples(r) == 0) {
		PQclear(r);
		admin_die("no rule with id %s (see `rule list`)", id);
	}
	printf("rule %s removed (%s at %s -> %s)\n", id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
	    PQgetvalue(r, 0, 2));
	PQclear(r);
}

/* ---- keys ---- */

static const admin_key_store KEYS = {
    .usage = "trygg-notifier admin key revoke ID|KEY",
    .table = "unit_keys",
    .key_prefix = "tu_",
    .hash_hex_sql = "key_hash",
    .holder_sql = "unit",
    .list_columns = "unit, label",
    .list_headers = (const char *const[]){"UNIT", "LABEL", NULL},
    .holder_filter = "unit = $1",
};

static void
key_issue(int argc, char **argv)
{
	admin_option o[] = {
	    {.name = "--label", .takes_value = true},
	    {.name = "--quiet"},
	};
	admin_parse(argc, argv, 1, o, 2,
	    "trygg-notifier admin key issue UNIT [--label TEXT]"
	    " [--quiet]");
	const char *unit = argv[0];
	check_unit_name("unit", unit);
	need_unit("key issue", unit);
	char key[ADMIN_KEY_MAX], hash[CRYPTO_SHA256_HEX_LEN];
	admin_key_new("tu_", key, hash);
	const char *v[3] = {hash, unit, o[0].value ? o[0].value : ""};
	admin_db_exec("INSERT INTO unit_keys (key_hash, unit, label) VALUES ($1, $2, $3)", 3, v);
	admin_key_print_new(key, hash, unit, o[1].value != NULL);
}

static void
key_list(int argc, char **argv)
{
	const char *unit = NULL;
	if (argc > 0 && strncmp(argv[0], "--", 2) != 0) {
		unit = argv[0];
		check_unit_name("unit", unit);
	}
	admin_parse(argc - (unit != NULL), argv + (unit != NULL), 0, NULL, 0,
	    "trygg-notifier admin key list [UNIT]");
	if (unit)
		need_unit("key list", unit);
	admin_key_list(&KEYS, unit);
}

static void
key_revoke(int argc, char **argv)
{
	admin_key_revoke(&KEYS, argc, argv);
}

/* ---- dead letters ---- */

static void
deliveries_dead(int argc, char **argv)
{
	admin_option o[] = {
	    {.name = "--unit", .takes_value = true},
	    {.name = "--limit", .takes_value = true},
	};
	admin_parse(argc, argv, 0, o, 2,
	    "trygg-notifier admin deliveries dead [--unit NAME]"
	    " [--limit N]");
	char limit[24] = "100";
	if (o[1].value)
		snprintf(limit, sizeof(limit), "%ld", parse_int("--limit", o[1].value, 1, 100000));
	if (o[0].value)
		check_unit_name("--unit", o[0].value);
	if (o[0].value)
		need_unit("--unit", o[0].value);
	const char *v[2] = {o[0].value, limit};
	PGresult *r = admin_db_run(
	    "SELECT id, task_id, unit, kind, channel, attempts,"
	    " to_char(dead_at, 'YYYY-MM-DD HH24:MI:SS'), target, coalesce(last_error, '')"
	    " FROM deliveries WHERE status = 'dead' AND ($1::text IS NULL OR unit = $1)"
	    " ORDER BY dead_at DESC LIMIT $2",
	    2, v);
	printf("%-36s %-36s %-18s %-10s %-7s %-8s %-19s %s\n", "ID", "TASK", "UNIT", "KIND",
	    "CHANNEL", "ATTEMPTS", "DEAD AT", "TARGET / LAST ERROR");
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-36s %-36s %-18s %-10s %-7s %-8s %-19s %s  %s\n", PQgetvalue(r, i, 0),
		    PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
		    PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
		    PQgetvalue(r, i, 7), PQgetvalue(r, i, 8));
	PQclear(r);
}

static void
deliveries_retry(int argc, char **argv)
{
	admin_parse(argc, argv, 1, NULL, 0, "trygg-notifier admin deliveries retry ID");
	const char *id = argv[0];
	if (!trygg_uuid_valid(id))
		admin_usage("deliveries retry '%s': expected a delivery id (a UUID, as `deliveries"
		            " dead` shows it)",
		    id);
	const char *v[1] = {id};
	admin_db_exec("BEGIN", 0, NULL);
	PGresult *r = admin_db_run(
	    "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),"
	    " lease_until = NULL, dead_at = NULL WHERE id = $1::uuid AND status = 'dead'"
	    " RETURNING task_id, unit, channel",
	    1, v);
	if (PQntuples(r) == 0) {
		PQclear(r);
		r = admin_db_run("SELECT status FROM deliveries WHERE id = $1::uuid", 1, v);
		if (PQntuples(r) == 0)
			admin_die("no delivery with id %s (see `deliveries dead`)", id);
		char st[32];
		snprintf(st, sizeof(st), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		admin_die("delivery %s is %s, not a dead letter", id, st);
	}
	const char *h[2] = {PQgetvalue(r, 0, 0), id};
	admin_db_exec(
	    "INSERT INTO task_history (task_id, event, actor, detail)"
	    " VALUES ($1, 'retried', 'operator', jsonb_build_object('delivery_id', $2::text))",
	    2, h);
	admin_db_exec("SELECT pg_notify('notifier_deliveries', '')", 0, NULL);
	admin_db_exec("COMMIT", 0, NULL);
	printf("delivery %s to %s by %s queued again\n", id, PQgetvalue(r, 0, 1),
	    PQgetvalue(r, 0, 2));
	PQclear(r);
}

/* ---- dispatch ---- */

static const admin_command commands[] = {
    {"unit", "add", unit_add},
    {"unit", "set", unit_set},
    {"unit", "list", unit_list},
    {"rule", "add", rule_add},
    {"rule", "list", rule_list},
    {"rule", "remove", rule_remove},
    {"key", "issue", key_issue},
    {"key", "list", key_list},
    {"key", "revoke", key_revoke},
    {"deliveries", "dead", deliveries_dead},
    {"deliveries", "retry", deliveries_retry},
};

int
admin_main(int argc, char **argv)
{
	static const admin_program program = {
	    .prog = "trygg-notifier admin",
	    .schema = "notifier",
	    .migrations = notifier_migrations,
	    .who = "the notifier's",
	    .usage = USAGE,
	    .commands = commands,
	    .ncommands = TRYGG_ARRAY_LEN(commands),
	};
	return admin_run(&program, argc, argv);
}
