/*
 * routing.c: the routing table snapshot and the pure routing function
 * (rules in routing.h).
 */
#include "routing.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char ROUTING_SQL_UNITS[] =
    "SELECT name, handles_sensitive, coalesce(default_for, ''), ack_target_s,"
    " completion_target_s FROM units WHERE active ORDER BY name";
const char ROUTING_SQL_RULES[] =
    "SELECT r.id, r.category, r.place, r.days, r.from_min, r.to_min, r.unit, r.role = 'copy',"
    " r.priority, coalesce(r.ack_target_s, 0), coalesce(r.completion_target_s, 0)"
    " FROM routing_rules r JOIN units u ON u.name = r.unit AND u.active ORDER BY r.id";

routing_table *
routing_table_new(void)
{
	return xcalloc(1, sizeof(routing_table));
}

void
routing_table_free(routing_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nrules; i++) {
		free(t->rules[i].category);
		free(t->rules[i].place);
		free(t->rules[i].unit);
	}
	for (size_t i = 0; i < t->nunits; i++)
		free(t->units[i].name);
	free(t->rules);
	free(t->units);
	free(t->default_unit);
	free(t->sensitive_default_unit);
	free(t);
}

void
routing_table_add_unit(routing_table *t, const char *name, bool handles_sensitive,
    const char *default_for, int ack_target_s, int completion_target_s)
{
	t->units = xrealloc(t->units, (t->nunits + 1) * sizeof(*t->units));
	routing_unit *u = &t->units[t->nunits++];
	u->name = xstrdup(name);
	u->handles_sensitive = handles_sensitive;
	u->ack_target_s = ack_target_s;
	u->completion_target_s = completion_target_s;
	if (default_for && strcmp(default_for, "all") == 0) {
		free(t->default_unit);
		t->default_unit = xstrdup(name);
	} else if (default_for && strcmp(default_for, "sensitive") == 0) {
		free(t->sensitive_default_unit);
		t->sensitive_default_unit = xstrdup(name);
	}
}

void
routing_table_add_rule(routing_table *t, const routing_rule *r)
{
	t->rules = xrealloc(t->rules, (t->nrules + 1) * sizeof(*t->rules));
	routing_rule *n = &t->rules[t->nrules++];
	*n = *r;
	n->category = xstrdup(r->category);
	n->place = r->place ? xstrdup(r->place) : NULL;
	n->unit = xstrdup(r->unit);
}

static bool
is_true(const char *v)
{
	return v[0] == 't';
}

int
routing_table_from_results(const PGresult *units, const PGresult *rules, routing_table **out)
{
	if (PQnfields(units) != 5 || PQnfields(rules) != 11)
		return TRYGG_EPROTO;
	routing_table *t = routing_table_new();
	for (int i = 0; i < PQntuples(units); i++)
		routing_table_add_unit(t, PQgetvalue(units, i, 0), is_true(PQgetvalue(units, i, 1)),
		    PQgetvalue(units, i, 2), atoi(PQgetvalue(units, i, 3)),
		    atoi(PQgetvalue(units, i, 4)));
	for (int i = 0; i < PQntuples(rules); i++) {
		routing_rule r = {
		    .id = atoi(PQgetvalue(rules, i, 0)),
		    .category = PQgetvalue(rules, i, 1),
		    .place = PQgetisnull(rules, i, 2) ? NULL : PQgetvalue(rules, i, 2),
		    .days = (unsigned)atoi(PQgetvalue(rules, i, 3)),
		    .from_min = atoi(PQgetvalue(rules, i, 4)),
		    .to_min = atoi(PQgetvalue(rules, i, 5)),
		    .unit = PQgetvalue(rules, i, 6),
		    .copy = is_true(PQgetvalue(rules, i, 7)),
		    .priority = atoi(PQgetvalue(rules, i, 8)),
		    .ack_target_s = atoi(PQgetvalue(rules, i, 9)),
		    .completion_target_s = atoi(PQgetvalue(rules, i, 10)),
		};
		routing_table_add_rule(t, &r);
	}
	*out = t;
	return 0;
}

bool
routing_window_matches(unsigned days, int from_min, int to_min, int weekday, int minute)
{
	unsigned today = 1u << weekday, yesterday = 1u << ((weekday + 6) % 7);
	if (from_min < to_min)
		return (days & today) && minute >= from_min && minute < to_min;
	/* Wraps past midnight: the evening part belongs to its own day, the
	 * early-morning part to the day the window started. */
	return ((days & today) && minute >= from_min) || ((days & yesterday) && minute < to_min);
}

static const routing_unit *
find_unit(const routing_table *t, const char *name)
{
	for (size_t i = 0; i < t->nunits; i++)
		if (strcmp(t->units[i].name, name) == 0)
			return &t->units[i];
	return NULL;
}

/* The report's place that the rule names, or NULL if the rule does not
 * apply to any of them. A rule for any place returns "". */
static const char *
rule_place(const routing_rule *rule, const routing_report *r)
{
	if (rule->place == NULL)
		return "";
	for (size_t i = 0; i < r->nplaces; i++)
		if (strcmp(rule->place, r->places[i]) == 0)
			return r->places[i];
	return NULL;
}

/* Whether the rule applies to the report (and, if so, which place). */
static bool
rule_matches(const routing_table *t, const routing_rule *rule, const routing_report *r,
    const char **place)
{
	if (strcmp(rule->category, "*") != 0 && strcmp(rule->category, r->category) != 0)
		return false;
	if (!routing_window_matches(rule->days, rule->from_min, rule->to_min, r->weekday,
	        r->minute))
		return false;
	const routing_unit *u = find_unit(t, rule->unit);
	if (u == NULL || (r->sensitive && !u->handles_sensitive))
		return false;
	*place = rule_place(rule, r);
	return *place != NULL;
}

/* True if rule a beats rule b for the owner. */
static bool
better(const routing_rule *a, const routing_rule *b)
{
	if (a->priority != b->priority)
		return a->priority > b->priority;
	if ((a->place != NULL) != (b->place != NULL))
		return a->place != NULL;
	return a->id < b->id;
}

int
routing_route(const routing_table *t, const routing_report *r, routing_result *out)
{
	const routing_rule *best = NULL;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < t->nrules; i++) {
		const routing_rule *rule = &t->rules[i];
		const char *place;
		if (rule->copy || !rule_matches(t, rule, r, &place))
			continue;
		if (best == NULL || better(rule, best)) {
			best = rule;
		}
	}
	const routing_unit *u;
	if (best) {
		out->unit = best->unit;
		out->matched = true;
	} else {
		const char *def = r->sensitive ? t->sensitive_default_unit : t->default_unit;
		if (def == NULL)
			return TRYGG_ENOENT;
		out->unit = def;
	}
	u = find_unit(t, out->unit);
	/* A sensitive report never reaches a unit that does not handle them,
	 * whatever the default says (the schema refuses such a default too). */
	if (u == NULL || (r->sensitive && !u->handles_sensitive))
		return TRYGG_ENOENT;
	out->place = routing_task_place(r->places, r->nplaces);

	/* Targets: the rule's, else the unit's (ack) and the report's
	 * response target (completion); "at once" shortens both. */
	out->ack_target_s = best && best->ack_target_s ? best->ack_target_s : u->ack_target_s;
	if (best && best->completion_target_s)
		out->completion_target_s = best->completion_target_s;
	else if (r->response_target_min > 0)
		out->completion_target_s =
		    (int)(r->response_target_min > 10000000u ? 600000000u
		                                             : r->response_target_min * 60u);
	else
		out->completion_target_s = ROUTING_AT_ONCE_COMPLETION_S;
	if (r->response_target_min == 0 && out->ack_target_s > ROUTING_AT_ONCE_ACK_S)
		out->ack_target_s = ROUTING_AT_ONCE_ACK_S;
	if (out->ack_target_s <= 0)
		out->ack_target_s = 1800;

	if (r->sensitive)
		return 0; /* only the unit that handles it */
	for (size_t i = 0; i < t->nrules && out->ncopies < ROUTING_MAX_COPIES; i++) {
		const routing_rule *rule = &t->rules[i];
		const char *place;
		if (!rule->copy || !rule_matches(t, rule, r, &place) ||
		    strcmp(rule->unit, out->unit) == 0)
			continue;
		bool dup = false;
		for (size_t j = 0; j < out->ncopies; j++)
			dup = dup || strcmp(out->copies[j], rule->unit) == 0;
		if (!dup)
			out->copies[out->ncopies++] = rule->unit;
	}
	return 0;
}

const char *
routing_task_place(const char *const *places, size_t nplaces)
{
	const char *best = NULL;
	for (size_t i = 0; i < nplaces; i++)
		if (places[i] && places[i][0] && (best == NULL || strcmp(places[i], best) < 0))
			best = places[i];
	return best;
}

bool
routing_timezone_ok(const char *tz)
{
	if (tz == NULL || tz[0] == '\0')
		return true; /* unset: the process's own zone */
	const char *name = tz[0] == ':' ? tz + 1 : tz;
	if (name[0] == '\0' || strstr(name, "..") != NULL)
		return false;
	if (name[0] == '/')
		return access(name, R_OK) == 0;
	/* A zone name (Europe/Stockholm, UTC) must be a file in the zone
	 * database: glibc quietly takes an unknown name for UTC. */
	static const char *const dirs[] = {"/usr/share/zoneinfo/", "/usr/lib/zoneinfo/",
	    "/usr/share/lib/zoneinfo/"};
	const char *env = getenv("TZDIR");
	char path[512];
	if (env && env[0]) {
		snprintf(path, sizeof(path), "%s/%s", env, name);
		if (access(path, R_OK) == 0)
			return true;
	}
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(dirs); i++) {
		snprintf(path, sizeof(path), "%s%s", dirs[i], name);
		if (access(path, R_OK) == 0)
			return true;
	}
	/* A POSIX rule ("CET-1CEST,M3.5.0,M10.5.0/3") has an offset, hence a
	 * digit, and is read by tzset itself; a zone name has none. */
	return tz[0] != ':' && strpbrk(name, "0123456789") != NULL;
}

void
routing_task_key(const char *place, bool has_position, double lat, double lon, const char *address,
    const char *report_id, char *buf, size_t len)
{
	if (place && place[0]) {
		snprintf(buf, len, "%s", place);
	} else if (has_position && isfinite(lat) && isfinite(lon)) {
		snprintf(buf, len, "cell:%ld:%ld", (long)floor(lat / 0.001),
		    (long)floor(lon / 0.002));
	} else if (address && address[0]) {
		/* Lower-cased ASCII, runs of spaces and punctuation folded, so
		 * "Sveavägen 12" and "sveavägen  12," share a task. */
		size_t o = (size_t)snprintf(buf, len, "addr:");
		bool sep = true;
		for (const char *p = address; *p && o + 1 < len; p++) {
			unsigned char c = (unsigned char)*p;
			if (o >= 100 && (c & 0xC0) != 0x80)
				break; /* long enough, and never inside a UTF-8 sequence */
			if (c < 0x80 && !isalnum(c)) {
				if (!sep)
					buf[o++] = ' ';
				sep = true;
				continue;
			}
			buf[o++] = (char)(c < 0x80 ? tolower(c) : c);
			sep = false;
		}
		while (o > 5 && buf[o - 1] == ' ')
			o--;
		buf[o] = '\0';
	} else {
		snprintf(buf, len, "report:%s", report_id);
	}
}

void
routing_local_time(int64_t wall_us, int *weekday, int *minute)
{
	time_t s = (time_t)(wall_us / 1000000);
	struct tm tm;
	localtime_r(&s, &tm);
	*weekday = (tm.tm_wday + 6) % 7; /* tm_wday: 0 is Sunday */
	*minute = tm.tm_hour * 60 + tm.tm_min;
}

void
routing_copies_literal(const routing_result *res, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "{");
	for (size_t i = 0; i < res->ncopies && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "", res->copies[i]);
	if (o < len)
		snprintf(buf + o, len - o, "}");
}
