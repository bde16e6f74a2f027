/*
 * query.c: report read queries (see query.h).
 */
#include "query.h"

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
	q->len = (size_t)snprintf(q->sql, sizeof(q->sql),
	    "SELECT " REPORT_COLUMNS " FROM reports r WHERE true");
}

int
query_where(query *q, const char *cond, const char *value)
{
	if (q->n == QUERY_MAX_PARAMS || strlen(value) >= sizeof(q->store[0]))
		return TRYGG_ETOOBIG;
	const char *mark = strstr(cond, "$?");
	if (mark == NULL)
		return TRYGG_EINVAL;
	int n = snprintf(q->sql + q->len, sizeof(q->sql) - q->len, " AND %.*s$%d%s",
	    (int)(mark - cond), cond, q->n + 1, mark + 2);
	if (n < 0 || (size_t)n >= sizeof(q->sql) - q->len)
		return TRYGG_ETOOBIG;
	q->len += (size_t)n;
	snprintf(q->store[q->n], sizeof(q->store[0]), "%s", value);
	q->values[q->n] = q->store[q->n];
	q->n++;
	return 0;
}

void
query_where_const(query *q, const char *cond)
{
	int n = snprintf(q->sql + q->len, sizeof(q->sql) - q->len, " AND %s", cond);
	if (n > 0 && (size_t)n < sizeof(q->sql) - q->len)
		q->len += (size_t)n;
}

void
query_finish(query *q, int limit)
{
	int n = snprintf(q->sql + q->len, sizeof(q->sql) - q->len,
	    " ORDER BY r.service_request_id DESC LIMIT %d", limit);
	if (n > 0 && (size_t)n < sizeof(q->sql) - q->len)
		q->len += (size_t)n;
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
