/*
 * query.c: report read queries (see query.h).
 */
#include "query.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The timestamps travel as float8 seconds (date_part), not as numeric
 * (extract returns numeric since Postgres 14): the numeric arithmetic was
 * about a third of the database's time for a list of 1,000 (issue 9).
 * render.c turns them back into exact microseconds (render_col_us).
 */
#define REPORT_COLUMNS \
	"r.id, r.service_request_id, r.partner_id, r.category, r.sensitive, r.severity," \
	" r.lat, r.long, r.address_string, r.description, r.media_url, r.attributes::text," \
	" r.status, r.close_reason, r.status_notes," \
	" date_part('epoch', r.created_at), date_part('epoch', r.updated_at)," \
	" array_to_string(r.place_ids, ',')" /* ids; render.c maps them to slugs */

/*
 * The same columns for binary results (the lists): the id, the integers,
 * `sensitive` and the timestamps as raw values; lat and long as Postgres's
 * text (its shortest exact form, which the JSON carries as is); the rest
 * text-typed, which binary format carries as the same bytes. Postgres's
 * output functions (uuid, float8 for the times, date_part's unit lookup)
 * were about a fifth of its CPU for a list of 1,000.
 */
#define REPORT_COLUMNS_BINARY \
	"r.id, r.service_request_id, r.partner_id, r.category, r.sensitive, r.severity," \
	" r.lat::text, r.long::text, r.address_string, r.description, r.media_url," \
	" r.attributes::text, r.status, r.close_reason, r.status_notes, r.created_at," \
	" r.updated_at, array_to_string(r.place_ids, ',')"

/* Postgres's timestamps in binary: microseconds since 2000-01-01 UTC. */
#define PG_EPOCH_US 946684800000000LL

static uint64_t
be_uint(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

const char *
query_col_text(const PGresult *res, int row, int c)
{
	return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

int64_t
query_col_int(const PGresult *res, int row, int c)
{
	const char *v = PQgetvalue(res, row, c);
	if (PQfformat(res, c) == 0)
		return strtoll(v, NULL, 10);
	int n = PQgetlength(res, row, c);
	uint64_t u = be_uint((const unsigned char *)v, n);
	/* Sign-extend int2 and int4. */
	if (n == 2)
		return (int16_t)u;
	if (n == 4)
		return (int32_t)u;
	return n == 8 ? (int64_t)u : 0;
}

const char *
query_col_dec(const PGresult *res, int row, int c, char buf[24])
{
	if (PQfformat(res, c) == 0)
		return PQgetvalue(res, row, c);
	int64_t v = query_col_int(res, row, c);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	char t[24], *p = t + sizeof(t);
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	size_t n = (size_t)(t + sizeof(t) - p);
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

bool
query_col_bool(const PGresult *res, int row, int c)
{
	const char *v = PQgetvalue(res, row, c);
	return PQfformat(res, c) == 0 ? v[0] == 't' : v[0] != 0;
}

const char *
query_col_uuid(const PGresult *res, int row, int c, char buf[37])
{
	const unsigned char *v = (const unsigned char *)PQgetvalue(res, row, c);
	if (PQfformat(res, c) == 0 || PQgetlength(res, row, c) != 16)
		return (const char *)v;
	trygg_uuid_text(v, buf);
	return buf;
}

/*
 * Text: float8 epoch seconds (date_part, see REPORT_COLUMNS). Postgres
 * prints the shortest text that reads back as the same double, and that
 * double is within half an ulp (< 0.25 us until 2106) of the stored
 * microseconds, so the usual text, "1764500000.123456" (float8out never
 * uses an exponent below 1e15), read as decimal digits, its first six
 * fraction digits rounded by the seventh, gives them back exactly;
 * anything else goes through strtold (long double keeps the product
 * exact). Binary: the stored microseconds themselves.
 */
int64_t
query_col_us(const PGresult *res, int row, int c)
{
	const char *s = PQgetvalue(res, row, c), *p = s;
	if (PQfformat(res, c) != 0)
		return (int64_t)be_uint((const unsigned char *)s, 8) + PG_EPOCH_US;
	bool neg = *p == '-';
	p += neg;
	int64_t sec = 0, frac = 0;
	int n = 0, nf = 0;
	for (; *p >= '0' && *p <= '9' && n < 15; p++, n++)
		sec = sec * 10 + (*p - '0');
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, nf++) {
			if (nf < 6)
				frac = frac * 10 + (*p - '0');
			else if (nf == 6 && *p >= '5')
				frac++;
		}
	}
	if (n == 0 || *p != '\0' || neg)
		return (int64_t)llroundl(strtold(s, NULL) * 1000000.0L);
	for (; nf < 6; nf++)
		frac *= 10;
	return sec * 1000000 + frac;
}

const char QUERY_BY_ID[] = "SELECT " REPORT_COLUMNS " FROM reports r WHERE r.id = $1";
const char QUERY_BY_SRID[] =
    "SELECT " REPORT_COLUMNS " FROM reports r WHERE r.service_request_id = $1";
const char QUERY_IDEMPOTENCY[] = "SELECT encode(k.request_hash, 'hex'), " REPORT_COLUMNS
                                 " FROM idempotency k JOIN reports r ON r.id = k.report_id"
                                 " WHERE k.partner_id = $1 AND k.idem_key = $2";

void
query_init(query *q)
{
	q->n = 0;
	q->len = 0;
	q->sql[0] = '\0';
	q->where[0] = '\0';
	q->wlen = 0;
	q->drive_col = NULL;
	q->drive_param = 0;
	q->custom_plan = false;
	q->order = QUERY_ORDER_SRID;
}

bool
query_custom_plan(const query *q)
{
	return q->custom_plan || q->drive_col == NULL || !q->drive_one ||
	    q->order != QUERY_ORDER_SRID;
}

/* Adds the condition; whether it leaves the plan to the generic one is the
 * caller's (query_where: no; query_cursor: yes). */
static int
add_where(query *q, const char *cond, const char *value)
{
	if (q->n == QUERY_MAX_PARAMS || strlen(value) >= sizeof(q->store[0]))
		return TRYGG_ETOOBIG;
	const char *mark = strstr(cond, "$?");
	if (mark == NULL)
		return TRYGG_EINVAL;
	int n = snprintf(q->where + q->wlen, sizeof(q->where) - q->wlen, " AND %.*s$%d%s",
	    (int)(mark - cond), cond, q->n + 1, mark + 2);
	if (n < 0 || (size_t)n >= sizeof(q->where) - q->wlen)
		return TRYGG_ETOOBIG;
	q->wlen += (size_t)n;
	snprintf(q->store[q->n], sizeof(q->store[0]), "%s", value);
	q->values[q->n] = q->store[q->n];
	q->n++;
	return 0;
}

int
query_where(query *q, const char *cond, const char *value)
{
	q->custom_plan = true;
	return add_where(q, cond, value);
}

int
query_cursor(query *q, const char *srid)
{
	/* A bound on the driving index's key: the one condition a generic plan
	 * handles as well as a custom one (query_custom_plan). */
	return add_where(q, "r.service_request_id < $?::bigint", srid);
}

void
query_where_const(query *q, const char *cond)
{
	int n = snprintf(q->where + q->wlen, sizeof(q->where) - q->wlen, " AND %s", cond);
	if (n > 0 && (size_t)n < sizeof(q->where) - q->wlen)
		q->wlen += (size_t)n;
	q->custom_plan = true;
}

int
query_drive(query *q, const char *col, const char *type, const char *array)
{
	if (q->drive_col != NULL || q->n == QUERY_MAX_PARAMS ||
	    strlen(array) >= sizeof(q->store[0]) || strlen(type) >= sizeof(q->drive_type))
		return TRYGG_ETOOBIG;
	q->drive_col = col;
	q->drive_one = strchr(array, ',') == NULL;
	snprintf(q->drive_type, sizeof(q->drive_type), "%s", type);
	snprintf(q->store[q->n], sizeof(q->store[0]), "%s", array);
	q->values[q->n] = q->store[q->n];
	q->drive_param = ++q->n;
	return 0;
}

/*
 * Without a driving column: one scan in the order's index (the primary
 * key's service_request_id, or reports_created), the filters applied to
 * each row. With one: per value, the rows of (col, order key DESC) in
 * index order, at most `limit` each, then the newest `limit` of those.
 *
 * The per-value subquery says "col = ANY(ARRAY[d.v])" and orders by col
 * first on purpose. With "col = d.v" Postgres treats col as a constant
 * and may satisfy "ORDER BY service_request_id DESC" by walking the
 * primary key backwards and filtering on col, which its cost model prices
 * as sequential reads: for a generic plan (prepared statements; one in
 * eight rows of a category) it chose that walk, 8 rows read per row
 * returned, and for a rare category (or one with no rows) the walk reads
 * the whole table. The array comparison keeps col out of the constants,
 * so only (col, key DESC) delivers the order asked for.
 */
void
query_finish(query *q, query_order order, int limit)
{
	/* Exactly an index's order, no tie-breaker: with "created_at DESC,
	 * service_request_id DESC" a generic plan (which guesses a date
	 * window holds a few hundred rows) sorted the whole window instead of
	 * reading the index in order and stopping at the limit. */
	const char *key =
	    order == QUERY_ORDER_CREATED ? "r.created_at DESC" : "r.service_request_id DESC";
	q->order = order;
	int n;
	if (q->drive_col == NULL)
		n = snprintf(q->sql, sizeof(q->sql),
		    "SELECT " REPORT_COLUMNS_BINARY
		    " FROM reports r WHERE true%s ORDER BY %s LIMIT %d",
		    q->where, key, limit);
	else if (q->drive_one) /* one range, already in order: no merge, no sort */
		n = snprintf(q->sql, sizeof(q->sql),
		    "SELECT " REPORT_COLUMNS_BINARY " FROM reports r WHERE r.%s = ANY($%d::%s[])%s"
		    " ORDER BY r.%s, %s LIMIT %d",
		    q->drive_col, q->drive_param, q->drive_type, q->where, q->drive_col, key,
		    limit);
	else
		n = snprintf(q->sql, sizeof(q->sql),
		    "SELECT " REPORT_COLUMNS_BINARY
		    " FROM (SELECT DISTINCT unnest($%d::%s[])) d(v) CROSS JOIN LATERAL"
		    " (SELECT * FROM reports r WHERE r.%s = ANY(ARRAY[d.v])%s"
		    " ORDER BY r.%s, %s LIMIT %d) r ORDER BY %s LIMIT %d",
		    q->drive_param, q->drive_type, q->drive_col, q->where, q->drive_col, key, limit,
		    key, limit);
	q->len = n > 0 && (size_t)n < sizeof(q->sql) ? (size_t)n : 0;
	if (q->len == 0)
		q->sql[0] = '\0';
}

static int
digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return TRYGG_EINVAL;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int
query_parse_time(const char *s, int64_t *out_us)
{
	int Y, M, D, h = 0, m = 0, sec = 0, zh = 0, zm = 0, sign = 0;
	int64_t frac_us = 0;
	const char *p = s;
	if (strlen(s) > 40 || digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) ||
	    *p++ != '-' || digits(&p, 2, &D))
		return TRYGG_EINVAL;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m))
			return TRYGG_EINVAL;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec))
				return TRYGG_EINVAL;
			if (*p == '.' || *p == ',') {
				p++;
				int64_t scale = 100000;
				if (*p < '0' || *p > '9')
					return TRYGG_EINVAL;
				while (*p >= '0' && *p <= '9') {
					frac_us += (*p - '0') * scale;
					scale /= 10;
					p++;
				}
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p == '+' ? 1 : -1;
			p++;
			if (digits(&p, 2, &zh))
				return TRYGG_EINVAL;
			if (*p == ':')
				p++;
			if (*p != '\0' && digits(&p, 2, &zm))
				return TRYGG_EINVAL;
		}
	}
	if (*p != '\0' || Y < 1970 || Y > 9999 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 ||
	    m > 59 || sec > 60 || zh > 14 || zm > 59)
		return TRYGG_EINVAL;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (D > mdays[M - 1] ||
	    (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0)))
		return TRYGG_EINVAL;
	struct tm tm = {.tm_year = Y - 1900,
	    .tm_mon = M - 1,
	    .tm_mday = D,
	    .tm_hour = h,
	    .tm_min = m,
	    .tm_sec = sec};
	int64_t t = (int64_t)timegm(&tm);
	t -= (int64_t)sign * (zh * 3600 + zm * 60);
	*out_us = t * 1000000 + frac_us;
	return 0;
}

int
query_parse_srid(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18)
		return TRYGG_EINVAL;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return TRYGG_EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v <= 0)
		return TRYGG_EINVAL;
	*out = v;
	return 0;
}
