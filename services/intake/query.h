/*
 * query.h: reading reports back (GET one, lists), shared by both APIs.
 *
 * Every read selects REPORT_COLUMNS, so one renderer serves every query.
 * Native lists are newest first by service_request_id and use keyset
 * pagination (service_request_id < cursor); Open311 lists (a date window,
 * no cursor) are newest first by created_at. Each list's SQL is built from
 * only the filters present, and a list filtered on category, partner or
 * status is driven by that column's index (query_drive), so a page of n
 * rows reads about n index entries and n rows, at row one million as at
 * row one, whatever the filter's share of the table (issue 9).
 */
#ifndef INTAKE_QUERY_H
#define INTAKE_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "util.h"

enum report_col {
	RC_ID,
	RC_SRID,
	RC_PARTNER_ID,
	RC_CATEGORY,
	RC_SENSITIVE,
	RC_SEVERITY,
	RC_LAT,
	RC_LONG,
	RC_ADDRESS,
	RC_DESCRIPTION,
	RC_MEDIA_URL,
	RC_ATTRIBUTES,
	RC_STATUS,
	RC_CLOSE_REASON,
	RC_STATUS_NOTES,
	RC_CREATED_US,
	RC_UPDATED_US,
	RC_PLACES,
	RC_NCOLS
};

/*
 * Reading a column of a report row in either result format. The single
 * reads (by id, idempotency) use REPORT_COLUMNS in text; the lists use
 * REPORT_COLUMNS_BINARY in binary format (query_batch), where the id, the
 * integers, `sensitive` and the timestamps arrive as raw values and every
 * other column as text (the same bytes in both formats). Each reader asks
 * the result for its column's format (PQfformat).
 *
 * query_col_text: a text-typed column (NULL for SQL NULL). query_col_dec:
 * an integer column as decimal text, written into buf if it came binary.
 * query_col_int: an integer column's value. query_col_bool: `sensitive`.
 * query_col_uuid: the id as canonical text, written into buf if binary.
 * query_col_us: a timestamp column in microseconds since the epoch.
 */
const char *query_col_text(const PGresult *res, int row, int c);
const char *query_col_dec(const PGresult *res, int row, int c, char buf[24]);
int64_t query_col_int(const PGresult *res, int row, int c);
bool query_col_bool(const PGresult *res, int row, int c);
const char *query_col_uuid(const PGresult *res, int row, int c, char buf[37]);
int64_t query_col_us(const PGresult *res, int row, int c);

typedef enum query_order {
	QUERY_ORDER_SRID,    /* service_request_id DESC (native lists, cursors) */
	QUERY_ORDER_CREATED, /* created_at DESC (Open311: a date window, no cursor) */
} query_order;

/* A list query under construction: its conditions, its driving column
 * (if any) and their text parameters; query_finish writes the SQL. */
#define QUERY_MAX_PARAMS 12
typedef struct query {
	char sql[4096];
	size_t len;
	char where[1536];
	size_t wlen;
	const char *drive_col; /* a static string, or NULL */
	bool drive_one;        /* its array holds one value */
	bool custom_plan;      /* a condition needs custom plans (query_custom_plan) */
	query_order order;     /* set by query_finish */
	char drive_type[16];
	int drive_param;
	const char *values[QUERY_MAX_PARAMS];
	char store[QUERY_MAX_PARAMS][1100]; /* parameter texts */
	int n;
} query;

/* Starts an empty list query (every report). */
void query_init(query *q);

/*
 * Adds " AND " + cond, where cond contains "$?" once for the parameter
 * `value` (copied; at most 1099 bytes), e.g. "r.partner_id = $?". Returns
 * TRYGG_ETOOBIG if the query is full.
 */
int query_where(query *q, const char *cond, const char *value) TRYGG_MUSTCHECK;

/* Adds the native lists' cursor: service_request_id below `srid` (a
 * number query_parse_srid accepted). Unlike other conditions it leaves a
 * list fit for a generic plan (query_custom_plan). */
int query_cursor(query *q, const char *srid) TRYGG_MUSTCHECK;

/* Adds a condition without a parameter. */
void query_where_const(query *q, const char *cond);

/*
 * Makes the list "r.<col> is one of `array`" (a Postgres array literal of
 * `type`, e.g. "{litter,graffiti}" of "text") and has the rows found
 * through the index (col, order key DESC): each row returned costs one
 * index entry and one heap row, whatever share of the table the values
 * have (query.c says why this needs its own form). col is a static string
 * and needs an index on (col, service_request_id DESC), and for
 * QUERY_ORDER_CREATED on (col, created_at DESC). At most one per query:
 * TRYGG_ETOOBIG for a second.
 */
int query_drive(query *q, const char *col, const char *type, const char *array) TRYGG_MUSTCHECK;

/* Writes the SQL, newest first in `order`, at most `limit` rows, selecting
 * REPORT_COLUMNS_BINARY (query_batch asks for binary results). */
void query_finish(query *q, query_order order, int limit);

/*
 * Whether the finished query must be planned for its own parameter values
 * (each execution) or may run a generic plan (planned once per connection).
 * Generic only for a list driven by one value, newest first by
 * service_request_id, with at most the cursor besides: its one sensible
 * plan is the range of the driving index in index order, stopping at the
 * limit, and planning that for every list cost more Postgres CPU than the
 * guess it avoids. Any other condition (a date window, a place, a second
 * equality whose rarity could favour its own index) keeps custom plans.
 */
bool query_custom_plan(const query *q);
#define QUERY_ROWS(rep) ((rep)->results[(rep)->nresults - 1])

/* The single-report queries: by UUID, or by service_request_id. */
extern const char QUERY_BY_ID[];
extern const char QUERY_BY_SRID[];
/* Idempotency lookup ($1 partner id, $2 key): request hash (hex), then
 * REPORT_COLUMNS of the report it created. */
extern const char QUERY_IDEMPOTENCY[];

/*
 * Parses an ISO 8601 date or date-time ("2026-11-25", "2026-11-25T12:00Z",
 * "2026-11-25T12:00:00.5+01:00"; no zone means UTC) into µs since the
 * epoch. Returns 0 or TRYGG_EINVAL.
 */
int query_parse_time(const char *s, int64_t *out_us) TRYGG_MUSTCHECK;

/* Parses a positive decimal id of at most 18 digits. */
int query_parse_srid(const char *s, int64_t *out) TRYGG_MUSTCHECK;

#endif
