/*
 * query.h: reading reports back (GET one, lists), shared by both APIs.
 *
 * Every read selects REPORT_COLUMNS, so one renderer serves every query.
 * Lists are newest first by service_request_id and use keyset pagination
 * (service_request_id < cursor), so a page costs the same at row one
 * million as at row one. Each list's SQL is built from only the filters
 * present, so every variant is a prepared statement with a plan that can
 * use the matching index (reports_partner_srid, reports_category_srid,
 * reports_status_srid, the primary key, reports_created).
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

/* A list query under construction: SQL text and its text parameters. */
#define QUERY_MAX_PARAMS 12
typedef struct query {
	char sql[2048];
	size_t len;
	const char *values[QUERY_MAX_PARAMS];
	char store[QUERY_MAX_PARAMS][1100]; /* parameter texts */
	int n;
} query;

/* Starts "SELECT <REPORT_COLUMNS> FROM reports r WHERE true". */
void query_init(query *q);

/*
 * Adds " AND " + cond, where cond contains "$?" once for the parameter
 * `value` (copied; at most 1099 bytes), e.g. "r.partner_id = $?". Returns
 * TRYGG_ETOOBIG if the query is full.
 */
int query_where(query *q, const char *cond, const char *value) TRYGG_MUSTCHECK;

/* Adds a condition without a parameter. */
void query_where_const(query *q, const char *cond);

/* Ends with "ORDER BY service_request_id DESC LIMIT n". */
void query_finish(query *q, int limit);

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
