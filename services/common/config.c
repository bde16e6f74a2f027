/*
 * config.c: reads a service's option table from the environment and an
 * optional file, validates every value, and stores them into the service's
 * struct. See config.h for the types, precedence and ownership.
 *
 * Loading and reloading share one path, read_all(), which builds a fresh
 * array of slots (value and source per option) without touching the
 * current ones. Only when every option is valid are the slots applied, so
 * an error can never leave a half-updated struct.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define ENV_PREFIX "TRYGG_"
#define ENV_FILE "TRYGG_CONFIG_FILE"
#define NAME_MAX_LEN 64
#define MASK "********"

/* The current value of one option and where it came from. */
struct config_slot {
	int64_t i;     /* INT, BOOL, SIZE, DURATION, LOGLEVEL */
	char *s;       /* STRING, URL; owned; NULL when unset */
	bool set;      /* some source (or the default) gave a value */
	int file_line; /* line in the file that set it, 0 if none */
	char src[192]; /* "default", "TRYGG_HTTP_PORT", "/etc/x.conf:3" */
};

static const char *level_names[] = {"debug", "info", "warn", "error", "fatal"};

static void add_err(config *c, const char *fmt, ...) TRYGG_PRINTF(2, 3);

/* Appends one problem to c->err, separated from earlier ones by "; ". */
static void
add_err(config *c, const char *fmt, ...)
{
	size_t o = strlen(c->err);
	if (o + 3 >= sizeof(c->err))
		return;
	if (o > 0) {
		memcpy(c->err + o, "; ", 3);
		o += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + o, sizeof(c->err) - o, fmt, ap);
	va_end(ap);
}

static void *
target(const config *c, const config_option *o)
{
	return o->ptr != NULL ? o->ptr : (char *)c->base + o->offset;
}

static bool
is_string_type(enum config_type t)
{
	return t == CONFIG_TYPE_STRING || t == CONFIG_TYPE_URL;
}

/* The environment variable name of an option: TRYGG_ + upper case name. */
static void
env_name(const config_option *o, char *buf, size_t len)
{
	size_t p = strlen(ENV_PREFIX);
	snprintf(buf, len, "%s", ENV_PREFIX);
	for (const char *s = o->name; *s != '\0' && p + 1 < len; s++)
		buf[p++] = (char)toupper((unsigned char)*s);
	buf[p] = '\0';
}

/* The inclusive range an option's value must fall in. */
static void
bounds(const config_option *o, int64_t *lo, int64_t *hi)
{
	if (o->min != 0 || o->max != 0) {
		*lo = o->min;
		*hi = o->max;
	} else if (o->type == CONFIG_TYPE_INT) {
		*lo = INT_MIN;
		*hi = INT_MAX;
	} else {
		*lo = 0;
		*hi = INT64_MAX;
	}
}

/* Formats a number in the option's unit with the largest exact suffix. */
static void
format_num(const config_option *o, int64_t v, char *buf, size_t len)
{
	static const struct {
		int64_t mult;
		const char *suffix;
	} size_units[] = {{1 << 30, "G"}, {1 << 20, "M"}, {1 << 10, "k"}},
	  dur_units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}};
	const char *unit = o->type == CONFIG_TYPE_DURATION ? "ms" : "";
	if (v != 0 && (o->type == CONFIG_TYPE_SIZE || o->type == CONFIG_TYPE_DURATION)) {
		for (size_t k = 0; k < 3; k++) {
			int64_t m =
			    o->type == CONFIG_TYPE_SIZE ? size_units[k].mult : dur_units[k].mult;
			if (v % m == 0) {
				snprintf(buf, len, "%lld%s", (long long)(v / m),
				    o->type == CONFIG_TYPE_SIZE ? size_units[k].suffix
				                                : dur_units[k].suffix);
				return;
			}
		}
	}
	snprintf(buf, len, "%lld%s", (long long)v, unit);
}

/* Describes the allowed range of a numeric option ("between 1 and 65535"). */
static void
format_bounds(const config_option *o, char *buf, size_t len)
{
	int64_t lo, hi, tlo, thi;
	char a[32], b[32];
	bounds(o, &lo, &hi);
	config_option plain = *o;
	plain.min = plain.max = 0;
	bounds(&plain, &tlo, &thi);
	format_num(o, lo, a, sizeof(a));
	format_num(o, hi, b, sizeof(b));
	if (lo > tlo && hi < thi)
		snprintf(buf, len, "between %s and %s", a, b);
	else if (lo > tlo)
		snprintf(buf, len, "at least %s", a);
	else if (hi < thi)
		snprintf(buf, len, "at most %s", b);
	else
		snprintf(buf, len, "any");
}

/*
 * Copies url into buf with the password of its userinfo ("user:pw@") and
 * any "password=" query parameter replaced by "***".
 */
static void
mask_url(const char *url, char *buf, size_t len)
{
	size_t o = 0;
	const char *auth = strstr(url, "://");
	const char *pw = NULL, *pw_end = NULL;
	if (auth != NULL) {
		auth += 3;
		size_t alen = strcspn(auth, "/?#");
		const char *at = NULL;
		for (size_t k = 0; k < alen; k++)
			if (auth[k] == '@')
				at = auth + k;
		if (at != NULL) {
			const char *colon = memchr(auth, ':', (size_t)(at - auth));
			if (colon != NULL) {
				pw = colon + 1;
				pw_end = at;
			}
		}
	}
	for (const char *p = url; *p != '\0' && o + 1 < len;) {
		if (p == pw) {
			for (const char *m = "***"; *m && o + 1 < len; m++)
				buf[o++] = *m;
			p = pw_end;
			continue;
		}
		/* libpq also takes the password as a query parameter. */
		if ((*p == '?' || *p == '&') && strncasecmp(p + 1, "password=", 9) == 0) {
			for (const char *m = p; m < p + 10 && o + 1 < len; m++)
				buf[o++] = *m;
			for (const char *m = "***"; *m && o + 1 < len; m++)
				buf[o++] = *m;
			p += 10;
			p += strcspn(p, "&#");
			continue;
		}
		buf[o++] = *p++;
	}
	buf[o] = '\0';
}

/* Formats a raw value as given by a source for an error message, masked. */
static const char *
show_raw(const config_option *o, const char *text, char *buf, size_t len)
{
	if (o->flags & CONFIG_SECRET)
		snprintf(buf, len, MASK);
	else if (o->type == CONFIG_TYPE_URL)
		mask_url(text, buf, len);
	else
		snprintf(buf, len, "%s", text);
	return buf;
}

/* Parses an unsigned decimal with an optional unit suffix from `units`. */
struct unit {
	const char *suffix;
	int64_t mult;
};

static int
parse_scaled(const char *s, const struct unit *units, int64_t *out)
{
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE || v > INT64_MAX)
		return -2;
	while (*end == ' ')
		end++;
	for (const struct unit *u = units; u->suffix != NULL; u++) {
		if (strcasecmp(end, u->suffix) == 0) {
			if ((int64_t)v > INT64_MAX / u->mult)
				return -2;
			*out = (int64_t)v * u->mult;
			return 0;
		}
	}
	return -1;
}

static bool
valid_url(const char *s)
{
	if (!isalpha((unsigned char)*s))
		return false;
	const char *p = s;
	while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	if (strncmp(p, "://", 3) != 0 || p[3] == '\0')
		return false;
	for (; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/*
 * Parses text as the value of option o into slot, replacing its old value.
 * On failure leaves the slot alone and writes the reason into why.
 */
static int
parse_value(const config_option *o, const char *text, struct config_slot *slot, char *why,
    size_t whylen)
{
	static const struct unit size_units[] = {{"", 1}, {"b", 1}, {"k", 1 << 10}, {"kb", 1 << 10},
	    {"kib", 1 << 10}, {"m", 1 << 20}, {"mb", 1 << 20}, {"mib", 1 << 20}, {"g", 1 << 30},
	    {"gb", 1 << 30}, {"gib", 1 << 30}, {NULL, 0}};
	static const struct unit dur_units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000},
	    {"min", 60000}, {"h", 3600000}, {NULL, 0}};
	int64_t v = 0;
	int rc;

	switch (o->type) {
	case CONFIG_TYPE_URL:
		if (!valid_url(text)) {
			snprintf(why, whylen, "not a URL (expected scheme://...)");
			return -1;
		}
		/* fall through */
	case CONFIG_TYPE_STRING:
		free(slot->s);
		slot->s = xstrdup(text);
		slot->set = true;
		return 0;
	case CONFIG_TYPE_BOOL: {
		static const char *yes[] = {"true", "yes", "on", "1"};
		static const char *no[] = {"false", "no", "off", "0"};
		for (size_t k = 0; k < 4; k++) {
			if (strcasecmp(text, yes[k]) == 0 || strcasecmp(text, no[k]) == 0) {
				slot->i = strcasecmp(text, yes[k]) == 0;
				slot->set = true;
				return 0;
			}
		}
		snprintf(why, whylen, "not a boolean (expected true/false, yes/no, on/off, 1/0)");
		return -1;
	}
	case CONFIG_TYPE_LOGLEVEL: {
		enum log_level lvl;
		if (log_parse_level(text, &lvl) != 0) {
			snprintf(why, whylen,
			    "not a log level (expected debug, info, warn, error)");
			return -1;
		}
		slot->i = lvl;
		slot->set = true;
		return 0;
	}
	case CONFIG_TYPE_INT: {
		char *end;
		errno = 0;
		long long ll = strtoll(text, &end, 10);
		if (end == text || *end != '\0' || isspace((unsigned char)*text)) {
			snprintf(why, whylen, "not an integer");
			return -1;
		}
		if (errno == ERANGE || ll < INT_MIN || ll > INT_MAX) {
			snprintf(why, whylen, "out of range");
			return -1;
		}
		v = ll;
		break;
	}
	case CONFIG_TYPE_SIZE:
		rc = parse_scaled(text, size_units, &v);
		if (rc != 0) {
			snprintf(why, whylen, "%s",
			    rc == -2 ? "too large"
			             : "not a size (expected a number with an optional k, M or G "
			               "suffix)");
			return -1;
		}
		break;
	case CONFIG_TYPE_DURATION:
		rc = parse_scaled(text, dur_units, &v);
		if (rc != 0) {
			snprintf(why, whylen, "%s",
			    rc == -2 ? "too large"
			             : "not a duration (expected a number with a ms, s, m or h "
			               "suffix)");
			return -1;
		}
		break;
	}

	int64_t lo, hi;
	bounds(o, &lo, &hi);
	if (v < lo || v > hi) {
		char b[96];
		format_bounds(o, b, sizeof(b));
		snprintf(why, whylen, "must be %s", b);
		return -1;
	}
	slot->i = v;
	slot->set = true;
	return 0;
}

static const config_option *
find_option(const config *c, const char *name, size_t *idx)
{
	for (size_t k = 0; k < c->n; k++) {
		if (strcmp(c->table[k].name, name) == 0) {
			*idx = k;
			return &c->table[k];
		}
	}
	return NULL;
}

static char *
trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Applies every `name = value` line of the file at path to slots. */
static void
read_file(config *c, const char *path, struct config_slot *slots)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		add_err(c, "%s=%s: cannot open: %s", ENV_FILE, path, strerror(errno));
		return;
	}
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0;
	while (getline(&line, &cap, f) != -1) {
		lineno++;
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			add_err(c, "%s:%d: expected `name = value`", path, lineno);
			continue;
		}
		*eq = '\0';
		char *key = trim(s);
		char *val = trim(eq + 1);
		size_t vlen = strlen(val);
		/* Quotes keep leading or trailing spaces, and allow "". */
		if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
			val[vlen - 1] = '\0';
			val++;
		}
		size_t k;
		const config_option *o = find_option(c, key, &k);
		if (o == NULL) {
			add_err(c, "%s:%d: unknown option \"%.64s\"", path, lineno, key);
			continue;
		}
		if (slots[k].file_line != 0) {
			add_err(c, "%s:%d: %s is already set on line %d", path, lineno, key,
			    slots[k].file_line);
			continue;
		}
		char why[160], shown[256];
		if (parse_value(o, val, &slots[k], why, sizeof(why)) != 0) {
			add_err(c, "%s:%d: %s = %s: %s", path, lineno, key,
			    show_raw(o, val, shown, sizeof(shown)), why);
			continue;
		}
		slots[k].file_line = lineno;
		snprintf(slots[k].src, sizeof(slots[k].src), "%s:%d", path, lineno);
	}
	free(line);
	fclose(f);
}

static void
free_slots(struct config_slot *slots, size_t n)
{
	if (slots == NULL)
		return;
	for (size_t k = 0; k < n; k++)
		free(slots[k].s);
	free(slots);
}

/*
 * Builds a complete set of slots from defaults, the file and the
 * environment, in rising precedence. Returns NULL with c->err filled if any
 * value is invalid.
 */
static struct config_slot *
read_all(config *c)
{
	struct config_slot *slots = xcalloc(c->n, sizeof(*slots));
	char why[160], shown[256], env[NAME_MAX_LEN + 8];
	c->err[0] = '\0';

	for (size_t k = 0; k < c->n; k++) {
		const config_option *o = &c->table[k];
		snprintf(slots[k].src, sizeof(slots[k].src), "default");
		if (o->def != NULL && parse_value(o, o->def, &slots[k], why, sizeof(why)) != 0)
			add_err(c, "%s: default \"%s\" is invalid: %s", o->name, o->def, why);
	}

	const char *path = getenv(ENV_FILE);
	if (path != NULL && path[0] != '\0')
		read_file(c, path, slots);

	for (size_t k = 0; k < c->n; k++) {
		const config_option *o = &c->table[k];
		env_name(o, env, sizeof(env));
		const char *name = env;
		const char *val = getenv(env);
		if (val == NULL && strcmp(o->name, "database_url") == 0) {
			name = "DATABASE_URL";
			val = getenv(name);
		}
		if (val == NULL)
			continue;
		if (parse_value(o, val, &slots[k], why, sizeof(why)) != 0) {
			add_err(c, "%s=%s: %s", name, show_raw(o, val, shown, sizeof(shown)), why);
			continue;
		}
		snprintf(slots[k].src, sizeof(slots[k].src), "%s", name);
	}

	for (size_t k = 0; k < c->n; k++) {
		const config_option *o = &c->table[k];
		if ((o->flags & CONFIG_REQUIRED) && !slots[k].set) {
			env_name(o, env, sizeof(env));
			add_err(c, "%s is required: set %s%s, or %s in the config file", o->name,
			    env, strcmp(o->name, "database_url") == 0 ? " (or DATABASE_URL)" : "",
			    o->name);
		}
	}

	if (c->err[0] != '\0') {
		free_slots(slots, c->n);
		return NULL;
	}
	return slots;
}

/* Writes the value of slot k into the service's field. */
static void
store(config *c, size_t k)
{
	const config_option *o = &c->table[k];
	const struct config_slot *s = &c->slots[k];
	void *t = target(c, o);
	switch (o->type) {
	case CONFIG_TYPE_STRING:
	case CONFIG_TYPE_URL: *(char **)t = s->s; break;
	case CONFIG_TYPE_INT: *(int *)t = (int)s->i; break;
	case CONFIG_TYPE_BOOL: *(bool *)t = s->i != 0; break;
	case CONFIG_TYPE_SIZE: *(size_t *)t = (size_t)s->i; break;
	case CONFIG_TYPE_DURATION: *(uint64_t *)t = (uint64_t)s->i; break;
	case CONFIG_TYPE_LOGLEVEL: *(enum log_level *)t = (enum log_level)s->i; break;
	}
}

/* Checks the table itself: a bad table is a programming error. */
static void
check_table(config *c)
{
	for (size_t k = 0; k < c->n; k++) {
		const config_option *o = &c->table[k];
		size_t len = strlen(o->name);
		bool ok = len > 0 && len <= NAME_MAX_LEN;
		for (const char *p = o->name; *p; p++)
			if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
			        *p == '_'))
				ok = false;
		if (!ok)
			add_err(c, "config table: bad option name \"%s\"", o->name);
		if (o->min > o->max)
			add_err(c, "config table: %s: min > max", o->name);
		if (o->ptr == NULL && c->base == NULL)
			add_err(c, "config table: %s: no base struct and no ptr", o->name);
		for (size_t j = 0; j < k; j++)
			if (strcmp(c->table[j].name, o->name) == 0)
				add_err(c, "config table: %s declared twice", o->name);
	}
}

/* Warns about TRYGG_* variables that name no option: usually a typo. */
static void
warn_unknown_env(const config *c)
{
	char env[NAME_MAX_LEN + 8], ebuf[160];
	size_t plen = strlen(ENV_PREFIX);
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, ENV_PREFIX, plen) != 0)
			continue;
		size_t nlen = strcspn(*e, "=");
		if (nlen == strlen(ENV_FILE) && strncmp(*e, ENV_FILE, nlen) == 0)
			continue;
		bool known = false;
		for (size_t k = 0; k < c->n && !known; k++) {
			env_name(&c->table[k], env, sizeof(env));
			known = strlen(env) == nlen && strncmp(*e, env, nlen) == 0;
		}
		if (!known) {
			char name[128];
			snprintf(name, sizeof(name), "%.*s", (int)(nlen < 127 ? nlen : 127), *e);
			log_warn("config_unknown_env", "\"name\":%s",
			    log_json_str(name, ebuf, sizeof(ebuf)));
		}
	}
}

int
config_load(config *c, const config_option *table, void *base)
{
	memset(c, 0, sizeof(*c));
	c->table = table;
	c->base = base;
	while (table[c->n].name != NULL)
		c->n++;
	check_table(c);
	if (c->err[0] != '\0')
		return TRYGG_ECONFIG;
	c->slots = read_all(c);
	if (c->slots == NULL)
		return TRYGG_ECONFIG;
	for (size_t k = 0; k < c->n; k++)
		store(c, k);
	warn_unknown_env(c);
	return 0;
}

static bool
slot_equal(const config_option *o, const struct config_slot *a, const struct config_slot *b)
{
	if (is_string_type(o->type)) {
		if (a->s == NULL || b->s == NULL)
			return a->s == b->s;
		return strcmp(a->s, b->s) == 0;
	}
	return a->i == b->i;
}

/* Formats slot s of option o for display, masking secrets. */
static const char *
show_slot(const config_option *o, const struct config_slot *s, char *buf, size_t len)
{
	if (is_string_type(o->type) && s->s == NULL)
		snprintf(buf, len, "(unset)");
	else if (o->flags & CONFIG_SECRET)
		snprintf(buf, len, MASK);
	else if (o->type == CONFIG_TYPE_URL)
		mask_url(s->s, buf, len);
	else if (o->type == CONFIG_TYPE_STRING)
		snprintf(buf, len, "%s", s->s);
	else if (o->type == CONFIG_TYPE_BOOL)
		snprintf(buf, len, "%s", s->i ? "true" : "false");
	else if (o->type == CONFIG_TYPE_LOGLEVEL)
		snprintf(buf, len, "%s", level_names[s->i]);
	else
		format_num(o, s->i, buf, len);
	return buf;
}

int
config_reload(config *c)
{
	if (c->slots == NULL)
		return TRYGG_EINVAL;
	struct config_slot *fresh = read_all(c);
	if (fresh == NULL) {
		char ebuf[1100];
		log_error("config_reload_failed", "\"error\":%s",
		    log_json_str(c->err, ebuf, sizeof(ebuf)));
		return TRYGG_ECONFIG;
	}
	int changed = 0;
	for (size_t k = 0; k < c->n; k++) {
		const config_option *o = &c->table[k];
		char nbuf[64], obuf[256], vbuf[256], sbuf[256], wbuf[256];
		if (slot_equal(o, &c->slots[k], &fresh[k]))
			continue;
		log_json_str(o->name, nbuf, sizeof(nbuf));
		if (!(o->flags & CONFIG_RELOADABLE)) {
			log_warn("config_not_reloadable", "\"name\":%s,\"kept\":%s,\"wanted\":%s",
			    nbuf,
			    log_json_str(show_slot(o, &c->slots[k], vbuf, sizeof(vbuf)), obuf,
			        sizeof(obuf)),
			    log_json_str(show_slot(o, &fresh[k], vbuf, sizeof(vbuf)), wbuf,
			        sizeof(wbuf)));
			continue;
		}
		log_info("config_changed", "\"name\":%s,\"value\":%s,\"source\":%s", nbuf,
		    log_json_str(show_slot(o, &fresh[k], vbuf, sizeof(vbuf)), obuf, sizeof(obuf)),
		    log_json_str(fresh[k].src, sbuf, sizeof(sbuf)));
		/* Readers may still hold the old string: keep it until fini. */
		if (c->slots[k].s != NULL) {
			c->retired = xrealloc(c->retired, (c->nretired + 1) * sizeof(char *));
			c->retired[c->nretired++] = c->slots[k].s;
		}
		c->slots[k] = fresh[k];
		fresh[k].s = NULL;
		store(c, k);
		changed++;
	}
	free_slots(fresh, c->n);
	log_info("config_reloaded", "\"changed\":%d", changed);
	return 0;
}

const char *
config_error(const config *c)
{
	return c->err;
}

const char *
config_show(const config *c, const char *name, char *buf, size_t len)
{
	size_t k;
	const config_option *o = find_option(c, name, &k);
	if (o == NULL || c->slots == NULL)
		return NULL;
	return show_slot(o, &c->slots[k], buf, len);
}

void
config_log(const config *c)
{
	if (c->slots == NULL)
		return;
	for (size_t k = 0; k < c->n; k++) {
		const config_option *o = &c->table[k];
		char vbuf[512], nbuf[80], qbuf[1100], sbuf[420];
		log_info("config_value", "\"name\":%s,\"value\":%s,\"source\":%s",
		    log_json_str(o->name, nbuf, sizeof(nbuf)),
		    log_json_str(show_slot(o, &c->slots[k], vbuf, sizeof(vbuf)), qbuf,
		        sizeof(qbuf)),
		    log_json_str(c->slots[k].src, sbuf, sizeof(sbuf)));
	}
}

void
config_print_help(const config_option *table, FILE *f)
{
	static const char *type_names[] = {"string", "url", "int", "bool", "size", "duration",
	    "log level"};
	fprintf(f,
	    "Options: set TRYGG_<NAME> in the environment, or `name = value` in the\n"
	    "file named by %s. The environment wins.\n\n",
	    ENV_FILE);
	for (const config_option *o = table; o->name != NULL; o++) {
		char env[NAME_MAX_LEN + 8], b[96];
		env_name(o, env, sizeof(env));
		fprintf(f, "  %s (%s%s)\n", o->name, env,
		    strcmp(o->name, "database_url") == 0 ? " or DATABASE_URL" : "");
		if (o->help != NULL)
			fprintf(f, "      %s\n", o->help);
		fprintf(f, "      %s", type_names[o->type]);
		if (o->flags & CONFIG_REQUIRED)
			fprintf(f, ", required");
		else if (o->def != NULL)
			fprintf(f, ", default %s", (o->flags & CONFIG_SECRET) ? MASK : o->def);
		if (o->type == CONFIG_TYPE_INT || o->type == CONFIG_TYPE_SIZE ||
		    o->type == CONFIG_TYPE_DURATION) {
			format_bounds(o, b, sizeof(b));
			if (strcmp(b, "any") != 0)
				fprintf(f, ", %s", b);
		}
		fprintf(f, "%s%s\n\n", (o->flags & CONFIG_RELOADABLE) ? ", reloadable" : "",
		    (o->flags & CONFIG_SECRET) ? ", secret" : "");
	}
}

void
config_fini(config *c)
{
	if (c == NULL)
		return;
	free_slots(c->slots, c->n);
	for (size_t k = 0; k < c->nretired; k++)
		free(c->retired[k]);
	free(c->retired);
	c->slots = NULL;
	c->retired = NULL;
	c->nretired = 0;
}
