/*
 * routing.h: which unit gets a report, and which task it belongs to.
 *
 * The rules and units live in the notifier's schema (routing_rules,
 * units); the service keeps a snapshot of them in a routing_table,
 * reloaded when they change (NOTIFY notifier_routing) and periodically.
 * Routing itself is a pure function of the table and the report, so it is
 * unit-tested without a database.
 *
 * A rule matches a report when its category is the report's (or "*"), its
 * place is one of the report's places (or NULL: any place), and the
 * report's local time of week falls inside its window. Among the matching
 * owner rules the highest priority wins, then a rule naming a place over
 * one for any place, then the lowest id. Every matching copy rule adds
 * its unit as a copy recipient (the cleaning crew of the site beside the
 * outreach unit). A sensitive report considers only units that handle
 * sensitive categories, and gets no copies. A report no rule matches goes
 * to the default unit (for a sensitive one, the sensitive default, which
 * must handle sensitive reports) and is flagged unmatched so it is
 * counted; it is never dropped.
 *
 * The place a task is about (its key) does not depend on the rule: of the
 * report's places, the first in byte order of the slug. So a report in
 * two overlapping places joins the same task whichever rule (or time of
 * week) routed it.
 *
 * Ownership: a routing_result borrows its strings from the table, which
 * must outlive it.
 */
#ifndef NOTIFIER_ROUTING_H
#define NOTIFIER_ROUTING_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define ROUTING_MAX_COPIES 8
#define ROUTING_KEY_MAX 160

/* Ack and completion targets for a report that must be handled at once. */
#define ROUTING_AT_ONCE_ACK_S 600
#define ROUTING_AT_ONCE_COMPLETION_S 3600

typedef struct routing_rule {
	int id;
	char *category; /* "*" = any */
	char *place;    /* NULL = any place */
	unsigned days;  /* bit 0 Monday .. bit 6 Sunday */
	int from_min;   /* window [from_min, to_min) in minutes of the local day; */
	int to_min;     /* wraps past midnight when from_min >= to_min */
	char *unit;
	bool copy; /* a copy recipient rather than the owner */
	int priority;
	int ack_target_s;        /* 0: the unit's */
	int completion_target_s; /* 0: the report's response target */
} routing_rule;

typedef struct routing_unit {
	char *name;
	bool handles_sensitive;
	int ack_target_s;
	int completion_target_s;
} routing_unit;

typedef struct routing_table {
	routing_rule *rules;
	size_t nrules;
	routing_unit *units;
	size_t nunits;
	char *default_unit;           /* NULL if none */
	char *sensitive_default_unit; /* NULL if none */
} routing_table;

typedef struct routing_report {
	const char *category;
	const char *const *places;
	size_t nplaces;
	bool sensitive;
	int weekday;                  /* 0 Monday .. 6 Sunday, local time */
	int minute;                   /* 0 .. 1439, local time */
	uint32_t response_target_min; /* 0 = at once */
} routing_report;

typedef struct routing_result {
	const char *unit;  /* the owner */
	const char *place; /* the place the task is about, or NULL */
	const char *copies[ROUTING_MAX_COPIES];
	size_t ncopies;
	bool matched; /* false: routed to a default unit */
	int ack_target_s;
	int completion_target_s;
} routing_result;

routing_table *routing_table_new(void);
void routing_table_free(routing_table *t);

/* Builders (strings are copied; place may be NULL). */
void routing_table_add_unit(routing_table *t, const char *name, bool handles_sensitive,
    const char *default_for, int ack_target_s, int completion_target_s);
void routing_table_add_rule(routing_table *t, const routing_rule *r);

/*
 * Builds a table from the two results of ROUTING_SQL_UNITS and
 * ROUTING_SQL_RULES. Returns 0 or TRYGG_EPROTO for an unexpected shape.
 */
extern const char ROUTING_SQL_UNITS[];
extern const char ROUTING_SQL_RULES[];
int routing_table_from_results(const PGresult *units, const PGresult *rules,
    routing_table **out) TRYGG_MUSTCHECK;

/* True if (weekday, minute) falls inside the rule window. */
bool routing_window_matches(unsigned days, int from_min, int to_min, int weekday, int minute);

/*
 * Routes a report. Returns 0 with *out filled, or TRYGG_ENOENT when no
 * rule matches and there is no (suitable) default unit either.
 */
int routing_route(const routing_table *t, const routing_report *r,
    routing_result *out) TRYGG_MUSTCHECK;

/* The place a report's task is about: of its places, the smallest slug in
 * byte order (stable, and independent of the routing rules); NULL if none. */
const char *routing_task_place(const char *const *places, size_t nplaces);

/* True if tz (a TZ value such as "Europe/Stockholm") names a zone in the
 * zone database, is a POSIX rule (it has an offset), or is empty; false for
 * a name glibc would silently take as UTC. */
bool routing_timezone_ok(const char *tz);

/*
 * The key of the task a report belongs to: the place slug; else, with a
 * position, its grid cell ("cell:<row>:<col>", cells of 0.001 degrees of
 * latitude by 0.002 of longitude, about 110 m square at 59 N); else the
 * normalised address ("addr:..."); else the report itself ("report:<id>").
 */
/* Writes res's copies as a Postgres array literal ("{a,b}"; unit names are
 * [a-z0-9_-], so no quoting is needed) into buf. */
void routing_copies_literal(const routing_result *res, char *buf, size_t len);

void routing_task_key(const char *place, bool has_position, double lat, double lon,
    const char *address, const char *report_id, char *buf, size_t len);

/* Local weekday (0 Monday) and minute of day of a wall time (µs), in the
 * process's time zone (TZ). */
void routing_local_time(int64_t wall_us, int *weekday, int *minute);

#endif
