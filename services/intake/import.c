/*
 * import.c: `trygg-intake admin import FILE.csv`, history from a district's
 * old systems (see import.h and docs/intake.md, "Importing history").
 *
 * Each line becomes a report with its original time, marked imported, and
 * a ReportReceived (imported, source "import", reported_at, closed_at,
 * night at the original time) in intake's outbox in the same statement,
 * so the history flows to the other services like any report. Lines are
 * written in transactions of IMPORT_BATCH, each line under a savepoint: a
 * line that fails leaves nothing behind and stops nothing else. The old
 * system's id (external_id) makes a second import of the same file a
 * no-op; a line without one gets an id derived from its content.
 */
#include "import.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_db.h"
#include "crypto.h"
#include "log.h"
#include "partner.h"
#include "places.h"
#include "report.h"
#include "store.h"
#include "strbuf.h"

#define IMPORT_BATCH 1000
#define IMPORT_MAX_FIELDS 32
#define IMPORT_MAX_ERRORS_SHOWN 50

enum col { C_REPORTED, C_CATEGORY, C_LAT, C_LONG, C_DESC, C_ADDR, C_CLOSED, C_STATUS, C_EXT, NCOL };

static const char *const col_names[NCOL] = {"reported_at", "category", "lat", "long", "description",
    "address", "closed_at", "status", "external_id"};

/* The per-line statement: the report, its places and its event, or
 * nothing when the external id is known already. */
static const char SQL_LINE[] =
    "WITH r AS (INSERT INTO reports (id, partner_id, category, sensitive, severity, lat, long,"
    "  address_string, description, place_ids, status, close_reason, created_at, updated_at,"
    "  imported, external_id, closed_at)"
    "  VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, ''), nullif($9, ''), $10::int[],"
    "  CASE WHEN $11 THEN 'closed' ELSE 'open' END, NULL,"
    "  'epoch'::timestamptz + $12::bigint * interval '1 microsecond',"
    "  coalesce('epoch'::timestamptz + $13::bigint * interval '1 microsecond',"
    "   'epoch'::timestamptz + $12::bigint * interval '1 microsecond'),"
    "  true, $14,"
    "  'epoch'::timestamptz + $13::bigint * interval '1 microsecond')"
    "  ON CONFLICT DO NOTHING RETURNING id),"
    " p AS (INSERT INTO report_places (report_id, place_id)"
    "  SELECT r.id, unnest($10::int[]) FROM r),"
    " o AS (INSERT INTO outbox (event_type, payload)"
    "  SELECT 'trygg.events.ReportReceived', decode($15, 'hex') FROM r)"
    " SELECT count(*) FROM r";

typedef struct cat {
	char *code, *focus;
	int severity, target;
	bool sensitive;
} cat;

#define NPARAM 15

/* A valid line waiting for its batch. */
typedef struct row {
	size_t line;
	char *v[NPARAM];
} row;

typedef struct importer {
	row rows[IMPORT_BATCH];
	size_t nrows;
	const char *path;
	int partner_id;
	char *partner_name, *partner_role;
	cat *cats;
	size_t ncats;
	place_set places;
	size_t lines, created, existing, failed;
	strbuf errors;
	size_t errors_shown;
} importer;

/* Notes a line's error (the first IMPORT_MAX_ERRORS_SHOWN are printed at
 * the end; all are counted). */
static void TRYGG_PRINTF(3, 4) line_error(importer *im, size_t line, const char *fmt, ...)
{
	im->failed++;
	if (im->errors_shown++ >= IMPORT_MAX_ERRORS_SHOWN)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	strbuf_appendf(&im->errors, "%s:%zu: %s\n", im->path, line, msg);
}

/*
 * Reads one CSV record (RFC 4180: quoted fields with "" inside, CRLF or
 * LF) from *p, splitting it in place into fields[]. Counts the lines it
 * crosses in *line. Returns the number of fields, 0 at the end, or -1 for
 * a record with too many fields or an unterminated quote.
 */
static int
csv_record(char **p, char *fields[IMPORT_MAX_FIELDS], size_t *line)
{
	char *s = *p;
	if (*s == '\0')
		return 0;
	int n = 0;
	bool bad = false;
	for (;;) {
		char *out = s, *start = s;
		if (*s == '"') {
			s++;
			for (;;) {
				if (*s == '\0') {
					bad = true;
					break;
				}
				if (*s == '"' && s[1] == '"') {
					*out++ = '"';
					s += 2;
				} else if (*s == '"') {
					s++;
					break;
				} else {
					if (*s == '\n')
						(*line)++;
					*out++ = *s++;
				}
			}
		}
		while (*s != '\0' && *s != ',' && *s != '\n' && *s != '\r')
			*out++ = *s++;
		char end = *s;
		if (n < IMPORT_MAX_FIELDS)
			fields[n] = start;
		else
			bad = true;
		n++;
		*out = '\0';
		if (end == ',') {
			s++;
			continue;
		}
		/* *s may now be the terminator written above: step by end. */
		if (end == '\r' && s[1] == '\n')
			s += 2;
		else if (end != '\0')
			s++;
		(*line)++;
		break;
	}
	*p = s;
	return bad ? -1 : n;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t
days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * Parses ISO 8601 "YYYY-MM-DDTHH:MM[:SS[.frac]]" with "Z" or "+HH:MM" /
 * "-HH:MM" (a space for the T is accepted). The offset is required: old
 * systems' local times are ambiguous without it. Returns 0 and *us, or -1.
 */
int
import_parse_time(const char *s, int64_t *us)
{
	int y, mo, d, h, mi, n = 0;
	if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 || n != 16)
		return -1;
	const char *p = s + n;
	int sec = 0;
	int64_t frac = 0;
	if (*p == ':') {
		if (p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
			return -1;
		sec = (p[1] - '0') * 10 + (p[2] - '0');
		p += 3;
		if (*p == '.') {
			p++;
			int digits = 0;
			while (*p >= '0' && *p <= '9') {
				if (digits < 6)
					frac = frac * 10 + (*p - '0'), digits++;
				p++;
			}
			if (digits == 0)
				return -1;
			while (digits++ < 6)
				frac *= 10;
		}
	}
	int off = 0;
	if (*p == 'Z' && p[1] == '\0') {
		off = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh = 0, om = 0;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 18 || om > 59)
			return -1;
		off = (*p == '-' ? -1 : 1) * (oh * 60 + om);
	} else {
		return -1;
	}
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1900 || y > 2999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -1;
	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off * 60;
	*us = secs * 1000000 + frac;
	return 0;
}

static const cat *
find_cat(const importer *im, const char *code)
{
	for (size_t i = 0; i < im->ncats; i++)
		if (strcmp(im->cats[i].code, code) == 0)
			return &im->cats[i];
	return NULL;
}

static void
load_reference(importer *im, const char *pname)
{
	PGresult *r = admin_db_run("SELECT service_code, focus_area, default_severity,"
	                           " response_target_min, sensitive FROM categories",
	    0, NULL);
	im->ncats = (size_t)PQntuples(r);
	im->cats = xcalloc(im->ncats ? im->ncats : 1, sizeof(cat));
	for (size_t i = 0; i < im->ncats; i++) {
		im->cats[i].code = xstrdup(PQgetvalue(r, (int)i, 0));
		im->cats[i].focus = xstrdup(PQgetvalue(r, (int)i, 1));
		im->cats[i].severity = atoi(PQgetvalue(r, (int)i, 2));
		im->cats[i].target = atoi(PQgetvalue(r, (int)i, 3));
		im->cats[i].sensitive = PQgetvalue(r, (int)i, 4)[0] == 't';
	}
	PQclear(r);
	r = admin_db_run("SELECT id, slug, name, kind, geometry::text FROM places ORDER BY id", 0,
	    NULL);
	for (int i = 0; i < PQntuples(r); i++) {
		char err[200];
		if (places_add(&im->places, atoi(PQgetvalue(r, i, 0)), PQgetvalue(r, i, 1),
		        PQgetvalue(r, i, 2), strcmp(PQgetvalue(r, i, 3), "district") == 0,
		        PQgetvalue(r, i, 4), err, sizeof(err)) != 0)
			admin_die("place %s: %s", PQgetvalue(r, i, 1), err);
	}
	PQclear(r);
	/* The importing partner: named, or "history-import" (a staff partner
	 * without keys, created on first use). */
	const char *v[1] = {pname};
	if (strcmp(pname, "history-import") == 0)
		admin_db_exec(
		    "INSERT INTO partners (name, display_name, role, active)"
		    " VALUES ($1, 'History imported from earlier systems', 'staff', false)"
		    " ON CONFLICT (name) DO NOTHING",
		    1, v);
	r = admin_db_run("SELECT id, name, role FROM partners WHERE name = $1", 1, v);
	if (PQntuples(r) != 1)
		admin_die("no partner named '%s' (see `partner list`)", pname);
	im->partner_id = atoi(PQgetvalue(r, 0, 0));
	im->partner_name = xstrdup(PQgetvalue(r, 0, 1));
	im->partner_role = xstrdup(PQgetvalue(r, 0, 2));
	PQclear(r);
}

static bool
parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	*out = strtod(s, &end);
	return s[0] != '\0' && *end == '\0' && errno == 0 && isfinite(*out);
}

/*
 * Validates one record and queues its statement's values for the batch
 * (flush_rows). Returns 0, or -1 when it is invalid (the error is noted).
 */
static int
import_line(importer *im, size_t line, char **f, const int *map, int nf)
{
	const char *v[NCOL];
	for (int c = 0; c < NCOL; c++)
		v[c] = map[c] >= 0 && map[c] < nf ? f[map[c]] : "";
	int64_t reported, closed = 0;
	if (import_parse_time(v[C_REPORTED], &reported) != 0) {
		line_error(im, line,
		    "reported_at: '%.40s' is not an ISO 8601 time with an offset"
		    " (e.g. 2026-03-01T21:30:00+01:00)",
		    v[C_REPORTED]);
		return -1;
	}
	if (v[C_CLOSED][0] && import_parse_time(v[C_CLOSED], &closed) != 0) {
		line_error(im, line, "closed_at: '%.40s' is not an ISO 8601 time with an offset",
		    v[C_CLOSED]);
		return -1;
	}
	if (closed && closed < reported) {
		line_error(im, line, "closed_at: before reported_at");
		return -1;
	}
	int64_t now = trygg_wall_us();
	if (reported > now + 3600LL * 1000000) {
		line_error(im, line, "reported_at: in the future");
		return -1;
	}
	const cat *c = find_cat(im, v[C_CATEGORY]);
	if (c == NULL) {
		line_error(im, line,
		    "category: unknown service code '%.40s' (see `categories list`)",
		    v[C_CATEGORY]);
		return -1;
	}
	bool has_pos = v[C_LAT][0] || v[C_LONG][0];
	double lat = 0, lon = 0;
	if (has_pos && (!parse_double(v[C_LAT], &lat) || lat < -90 || lat > 90)) {
		line_error(im, line, "lat: '%.40s' is not a latitude", v[C_LAT]);
		return -1;
	}
	if (has_pos && (!parse_double(v[C_LONG], &lon) || lon < -180 || lon > 180)) {
		line_error(im, line, "long: '%.40s' is not a longitude", v[C_LONG]);
		return -1;
	}
	if (!has_pos && !v[C_ADDR][0]) {
		line_error(im, line, "lat: a position (lat, long) or an address is required");
		return -1;
	}
	if (strlen(v[C_DESC]) > 4000 || !trygg_utf8_valid(v[C_DESC], strlen(v[C_DESC]))) {
		line_error(im, line, "description: longer than 4000 bytes or not UTF-8");
		return -1;
	}
	if (strlen(v[C_ADDR]) > 500 || !trygg_utf8_valid(v[C_ADDR], strlen(v[C_ADDR]))) {
		line_error(im, line, "address: longer than 500 bytes or not UTF-8");
		return -1;
	}
	const char *status = v[C_STATUS];
	if (status[0] && strcmp(status, "open") != 0 && strcmp(status, "closed") != 0) {
		line_error(im, line, "status: '%.20s' is neither open nor closed", status);
		return -1;
	}
	if (strcmp(status, "open") == 0 && closed) {
		line_error(im, line, "status: open, but closed_at is set");
		return -1;
	}
	bool is_closed = closed != 0 || strcmp(status, "closed") == 0;
	char ext[201];
	if (v[C_EXT][0]) {
		if (strlen(v[C_EXT]) > 200 || !trygg_utf8_valid(v[C_EXT], strlen(v[C_EXT]))) {
			line_error(im, line, "external_id: longer than 200 bytes or not UTF-8");
			return -1;
		}
		snprintf(ext, sizeof(ext), "%s", v[C_EXT]);
	} else {
		/* No id from the old system: the line's content is its identity. */
		strbuf b = STRBUF_INIT;
		for (int k = 0; k < C_EXT; k++)
			strbuf_appendf(&b, "%s\x1f", v[k]);
		uint8_t h[32];
		crypto_sha256(b.s ? b.s : "", b.len, h);
		strbuf_fini(&b);
		memcpy(ext, "sha256:", 7);
		crypto_hex(h, 32, ext + 7);
	}

	report_in r;
	memset(&r, 0, sizeof(r));
	trygg_uuid4(r.id);
	partner p;
	memset(&p, 0, sizeof(p));
	p.id = im->partner_id;
	p.name = im->partner_name;
	p.role = im->partner_role;
	r.partner = &p;
	r.category = c->code;
	r.focus_area = c->focus;
	r.severity = c->severity;
	r.sensitive = c->sensitive;
	r.response_target_min = c->target;
	r.has_position = has_pos;
	r.lat = lat;
	r.lon = lon;
	r.address = (char *)v[C_ADDR];
	r.created_us = now;
	r.imported = true;
	r.reported_us = reported;
	r.closed_us = closed;
	r.source = "import";
	char places[PLACES_MATCH_MAX * 12 + 3] = "{";
	if (has_pos) {
		bool inside;
		size_t idx[PLACES_MATCH_MAX], n = 0, o = 1;
		places_match(&im->places, lat, lon, NULL, &inside, idx, &n);
		for (size_t i = 0; i < n; i++) {
			r.place_slugs[i] = im->places.items[idx[i]].slug;
			r.place_ids[i] = im->places.items[idx[i]].id;
			o += (size_t)snprintf(places + o, sizeof(places) - o, "%s%d", i ? "," : "",
			    r.place_ids[i]);
		}
		r.nplaces = n;
	}
	strcat(places, "}");
	size_t plen;
	uint8_t *payload = store_pack_event(&r, &plen);
	char *phex = xmalloc(2 * plen + 1);
	crypto_hex(payload, plen, phex);
	char pid[16], sev[8], slat[32], slon[32], srep[24], sclo[24];
	snprintf(pid, sizeof(pid), "%d", im->partner_id);
	snprintf(sev, sizeof(sev), "%d", c->severity);
	snprintf(slat, sizeof(slat), "%.17g", lat);
	snprintf(slon, sizeof(slon), "%.17g", lon);
	snprintf(srep, sizeof(srep), "%" PRId64, reported);
	snprintf(sclo, sizeof(sclo), "%" PRId64, closed);
	const char *vals[NPARAM] = {r.id, pid, c->code, c->sensitive ? "t" : "f", sev,
	    has_pos ? slat : NULL, has_pos ? slon : NULL, v[C_ADDR], v[C_DESC], places,
	    is_closed ? "t" : "f", srep, closed ? sclo : NULL, ext, phex};
	row *w = &im->rows[im->nrows++];
	w->line = line;
	for (int k = 0; k < NPARAM; k++)
		w->v[k] = vals[k] ? xstrdup(vals[k]) : NULL;
	free(phex);
	free(payload);
	return 0;
}

static void
commit(bool dry_run)
{
	if (dry_run) {
		admin_db_exec("ROLLBACK", 0, NULL);
		return;
	}
	admin_db_exec("COMMIT", 0, NULL);
	/* A running intake's relay publishes at once (it also scans on a
	 * timer). */
	admin_db_exec("NOTIFY intake_outbox", 0, NULL);
}

static void
rows_clear(importer *im)
{
	for (size_t i = 0; i < im->nrows; i++)
		for (int k = 0; k < NPARAM; k++)
			free(im->rows[i].v[k]);
	im->nrows = 0;
}

/* Reads the result of one pipelined query (and the NULL after it).
 * Returns 1 created, 0 already there, -1 failed (msg set). */
static int
pipeline_result(PGconn *conn, char *msg, size_t len)
{
	PGresult *res = PQgetResult(conn);
	int rv = -1;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
		rv = atoi(PQgetvalue(res, 0, 0)) > 0 ? 1 : 0;
	else if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
		rv = 0;
	else
		snprintf(msg, len, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return rv;
}

/*
 * Writes the pending rows in one transaction: first all at once in a
 * pipeline (one round trip); if any row fails, that transaction is rolled
 * back and the rows are written again one by one, each under a savepoint,
 * so the failing ones are named and leave nothing behind.
 */
static void
flush_rows(importer *im, bool dry_run)
{
	if (im->nrows == 0)
		return;
	PGconn *conn = admin_db_conn();
	char msg[512] = "";
	bool ok = PQenterPipelineMode(conn) == 1;
	int created = 0, existing = 0;
	if (ok) {
		bool sent = PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
		for (size_t i = 0; sent && i < im->nrows; i++)
			sent = PQsendQueryParams(conn, SQL_LINE, NPARAM, NULL,
			           (const char *const *)im->rows[i].v, NULL, NULL, 0) == 1;
		if (!sent || PQpipelineSync(conn) != 1)
			admin_die("cannot send to the database: %s", PQerrorMessage(conn));
		ok = pipeline_result(conn, msg, sizeof(msg)) == 0;
		for (size_t i = 0; i < im->nrows; i++) {
			int rv = pipeline_result(conn, msg, sizeof(msg));
			ok = ok && rv >= 0;
			created += rv == 1;
			existing += rv == 0;
		}
		PGresult *sync = PQgetResult(conn);
		if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
			admin_die("the database pipeline went out of step");
		PQclear(sync);
		if (PQexitPipelineMode(conn) != 1)
			admin_die("cannot leave pipeline mode: %s", PQerrorMessage(conn));
	}
	if (ok) {
		im->created += (size_t)created;
		im->existing += (size_t)existing;
		commit(dry_run);
		rows_clear(im);
		return;
	}
	admin_db_exec("ROLLBACK", 0, NULL);
	admin_db_exec("BEGIN", 0, NULL);
	for (size_t i = 0; i < im->nrows; i++) {
		PQclear(PQexec(conn, "SAVEPOINT line"));
		PGresult *res = PQexecParams(conn, SQL_LINE, NPARAM, NULL,
		    (const char *const *)im->rows[i].v, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			if (atoi(PQgetvalue(res, 0, 0)) > 0)
				im->created++;
			else
				im->existing++;
			PQclear(PQexec(conn, "RELEASE SAVEPOINT line"));
		} else {
			snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
			msg[strcspn(msg, "\n")] = '\0';
			line_error(im, im->rows[i].line, "not stored: %s", msg);
			PQclear(PQexec(conn, "ROLLBACK TO SAVEPOINT line"));
		}
		PQclear(res);
	}
	commit(dry_run);
	rows_clear(im);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		admin_die("cannot open %s: %s", path, strerror(errno));
	strbuf b = STRBUF_INIT;
	char chunk[65536];
	size_t got;
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + got > 512u * 1024 * 1024)
			admin_die("%s is larger than 512 MiB", path);
		strbuf_appendn(&b, chunk, got);
	}
	fclose(f);
	*len = b.len;
	return b.s ? strbuf_steal(&b) : xstrdup("");
}

int
import_main(int argc, char **argv)
{
	if (argc < 1 || argv[0][0] == '-')
		admin_usage("import FILE.csv [--partner NAME] [--dry-run]");
	importer *im = xcalloc(1, sizeof(*im)); /* large: the batch's rows */
	im->path = argv[0];
	const char *pname = admin_opt(argc, argv, "--partner");
	bool dry = admin_flag(argc, argv, "--dry-run");
	load_reference(im, pname ? pname : "history-import");
	size_t len;
	char *text = slurp(im->path, &len);
	if (strlen(text) != len)
		admin_die("%s: contains a NUL byte", im->path);
	char *p = text;
	if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
	    (unsigned char)p[2] == 0xBF)
		p += 3; /* a BOM, as spreadsheets write */
	char *f[IMPORT_MAX_FIELDS];
	size_t line = 1;
	int nf = csv_record(&p, f, &line);
	if (nf <= 0)
		admin_die("%s: no header line", im->path);
	int map[NCOL];
	for (int c = 0; c < NCOL; c++) {
		map[c] = -1;
		for (int i = 0; i < nf; i++)
			if (strcmp(f[i], col_names[c]) == 0)
				map[c] = i;
	}
	for (int c = 0; c <= C_LONG; c++)
		if (map[c] < 0)
			admin_die("%s:1: the header has no column '%s'", im->path, col_names[c]);
	for (;;) {
		size_t at = line;
		nf = csv_record(&p, f, &line);
		if (nf == 0)
			break;
		if (nf == 1 && f[0][0] == '\0')
			continue; /* a blank line */
		im->lines++;
		if (nf < 0)
			line_error(im, at,
			    "not a CSV record (unterminated quote or over %d fields)",
			    IMPORT_MAX_FIELDS);
		else
			(void)import_line(im, at, f, map, nf);
		if (im->nrows == IMPORT_BATCH)
			flush_rows(im, dry);
	}
	flush_rows(im, dry);
	fputs(im->errors.s ? im->errors.s : "", stderr);
	if (im->failed > IMPORT_MAX_ERRORS_SHOWN)
		fprintf(stderr, "... and %zu more\n", im->failed - IMPORT_MAX_ERRORS_SHOWN);
	printf("%s%s: %zu lines, %zu imported, %zu already there, %zu failed\n",
	    dry ? "dry run (nothing written): " : "", im->path, im->lines, im->created,
	    im->existing, im->failed);
	strbuf_fini(&im->errors);
	for (size_t i = 0; i < im->ncats; i++) {
		free(im->cats[i].code);
		free(im->cats[i].focus);
	}
	free(im->cats);
	free(im->partner_name);
	free(im->partner_role);
	places_fini(&im->places);
	free(text);
	int code = im->failed ? ADMIN_EXIT_FAILURE : 0;
	free(im);
	return code;
}
