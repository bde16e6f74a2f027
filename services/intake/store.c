/*
 * store.c: group commit of reports (see store.h).
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "render.h"
#include "trygg/events.pb-c.h"

typedef struct pending {
	struct pending *next;
	report_in r;
	store_cb cb;
	void *arg;
	bool alone; /* a retry after its batch failed */
} pending;

typedef struct flight {
	store *s;
	pending *head;
	unsigned n;
} flight;

struct store {
	uv_loop_t *loop;
	db_pool *pool;
	outbox_relay *relay;
	store_options o;
	uv_timer_t timer;
	bool scheduled;
	pending *head, *tail;
	unsigned queued;
	unsigned in_flight;
	void (*drain_cb)(void *arg);
	void *drain_arg;
	metric_counter *m_stored, *m_batches, *m_retries, *m_failed;
	metric_histogram *m_batch_size;
};

/*
 * One statement writes a whole batch: the reports arrive as parallel
 * arrays (one element per report) and are unnested once, so the per-
 * statement cost (bind, executor start, CTE setup) is paid per batch, not
 * per report. Measured here: ~165 us of Postgres CPU per report with one
 * statement per report, far less this way.
 */
static const char SQL_INSERT[] =
    "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bool[],"
    "  $5::int2[], $6::float8[], $7::float8[], $8::text[], $9::text[], $10::text[],"
    "  $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[],"
    "  $17::bool[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[],"
    "  $23::text[]) AS t(id, partner_id, category, sensitive, severity, lat, long, address,"
    "  description, media_url, attributes, created_us, idem_key, hash, payload, places,"
    "  has_contact, first_name, last_name, email, phone, device_id, account_id)),"
    " k AS (INSERT INTO idempotency (partner_id, idem_key, request_hash, report_id)"
    "  SELECT partner_id, idem_key, decode(hash, 'hex'), id FROM i WHERE idem_key IS NOT NULL"
    "  ON CONFLICT DO NOTHING RETURNING report_id),"
    " r AS (INSERT INTO reports (id, partner_id, category, sensitive, severity, lat, long,"
    "  address_string, description, media_url, attributes, place_ids, created_at, updated_at)"
    "  SELECT id, partner_id, category, sensitive, severity, lat, long, address, description,"
    "  media_url, attributes::jsonb, string_to_array(places, ',')::int[],"
    "  'epoch'::timestamptz + created_us * interval '1 microsecond',"
    "  'epoch'::timestamptz + created_us * interval '1 microsecond'"
    "  FROM i WHERE idem_key IS NULL OR id IN (SELECT report_id FROM k)"
    "  RETURNING id, service_request_id, created_at),"
    " p AS (INSERT INTO report_places (report_id, place_id)"
    "  SELECT i.id, pl::int FROM r JOIN i ON i.id = r.id,"
    "  unnest(string_to_array(i.places, ',')) AS pl),"
    " c AS (INSERT INTO report_contacts (report_id, first_name, last_name, email, phone,"
    "  device_id, account_id, created_at)"
    "  SELECT i.id, i.first_name, i.last_name, i.email, i.phone, i.device_id, i.account_id,"
    "  r.created_at FROM r JOIN i ON i.id = r.id WHERE i.has_contact),"
    " o AS (INSERT INTO outbox (event_type, payload)"
    "  SELECT 'trygg.events.ReportReceived', decode(i.payload, 'hex')"
    "  FROM r JOIN i ON i.id = r.id ORDER BY i.created_us)"
    " SELECT id, service_request_id FROM r";

#define NPARAMS 23

/* The smallest batch worth a transaction of its own when spreading. */
#define STORE_MIN_SPREAD 4

/* Postgres array literals, one per column, built report by report. */
typedef struct arrays {
	strbuf col[NPARAMS];
	size_t n;
} arrays;

/* Appends one element: NULL, or a double-quoted string with " and \
 * escaped (valid for every element type in text form). */
static void
arr_add(arrays *a, int col, const char *v)
{
	strbuf *b = &a->col[col];
	sb_append(b, b->len == 0 ? "{" : ",");
	if (v == NULL) {
		sb_append(b, "NULL");
		return;
	}
	char chunk[512];
	size_t o = 0;
	chunk[o++] = '"';
	for (const char *p = v;; p++) {
		if (o + 3 >= sizeof(chunk) || *p == '\0') {
			chunk[o] = '\0';
			sb_append(b, chunk);
			o = 0;
			if (*p == '\0')
				break;
		}
		if (*p == '"' || *p == '\\')
			chunk[o++] = '\\';
		chunk[o++] = *p;
	}
	sb_append(b, "\"");
}

static void
arrays_fini(arrays *a)
{
	for (int i = 0; i < NPARAMS; i++)
		sb_free(&a->col[i]);
}

uint8_t *
store_pack_event(const report_in *r, size_t *len)
{
	Trygg__Events__ReportReceived ev = TRYGG__EVENTS__REPORT_RECEIVED__INIT;
	ev.report_id = (char *)r->id;
	ev.partner = r->partner ? r->partner->name : "";
	ev.partner_role = r->partner ? r->partner->role : "";
	ev.category = r->category;
	ev.focus_area = r->focus_area;
	ev.has_position = r->has_position;
	ev.lat = r->lat;
	ev.long_ = r->lon;
	ev.n_places = r->nplaces;
	ev.places = (char **)r->place_slugs;
	ev.severity = (uint32_t)r->severity;
	ev.sensitive = r->sensitive;
	ev.occurred_at_us = r->created_us;
	ev.response_target_min = (uint32_t)r->response_target_min;
	ev.address = r->address ? r->address : "";
	*len = trygg__events__report_received__get_packed_size(&ev);
	uint8_t *buf = xmalloc(*len ? *len : 1);
	trygg__events__report_received__pack(&ev, buf);
	return buf;
}

/* Adds one report's values to the arrays. */
static void
add_report(arrays *a, const report_in *r)
{
	char partner_id[16], sev[8], lat[32], lon[32], created[24];
	char places[PLACES_MATCH_MAX * 12 + 1], hash[2 * AUTH_HASH_LEN + 1];
	snprintf(partner_id, sizeof(partner_id), "%d", r->partner->id);
	snprintf(sev, sizeof(sev), "%d", r->severity);
	snprintf(lat, sizeof(lat), "%.17g", r->lat);
	snprintf(lon, sizeof(lon), "%.17g", r->lon);
	snprintf(created, sizeof(created), "%" PRId64, r->created_us);
	size_t o = 0;
	places[0] = '\0';
	for (size_t i = 0; i < r->nplaces; i++)
		o += (size_t)snprintf(places + o, sizeof(places) - o, "%s%d", i ? "," : "",
		    r->place_ids[i]);
	auth_hex(r->request_hash, AUTH_HASH_LEN, hash);
	char *attrs = json_dumps(r->attributes, JSON_COMPACT);
	size_t plen;
	uint8_t *payload = store_pack_event(r, &plen);
	char *phex = xmalloc(2 * plen + 1);
	auth_hex(payload, plen, phex);
	const char *v[NPARAMS] = {r->id, partner_id, r->category, r->sensitive ? "t" : "f", sev,
	    r->has_position ? lat : NULL, r->has_position ? lon : NULL, r->address, r->description,
	    r->media_url, attrs ? attrs : "{}", created, r->idem_key, r->idem_key ? hash : NULL,
	    phex, places, r->has_contact ? "t" : "f", r->first_name, r->last_name, r->email,
	    r->phone, r->device_id, r->account_id};
	for (int i = 0; i < NPARAMS; i++)
		arr_add(a, i, v[i]);
	a->n++;
	free(phex);
	free(payload);
	free(attrs);
}

/* Adds the batch's statement to b. */
static void
arrays_submit(arrays *a, db_batch *b)
{
	const char *v[NPARAMS];
	for (int i = 0; i < NPARAMS; i++) {
		sb_append(&a->col[i], "}");
		v[i] = a->col[i].s;
	}
	db_batch_add(b, SQL_INSERT, NPARAMS, v);
}

static void flush(store *s);

static void
finish(store *s, pending *p, store_outcome outcome, int64_t srid)
{
	p->cb(p->arg, outcome, &p->r, srid);
	report_in_fini(&p->r);
	free(p);
	(void)s;
}

static void
enqueue_front(store *s, pending *p)
{
	p->next = s->head;
	s->head = p;
	if (s->tail == NULL)
		s->tail = p;
	s->queued++;
}

static void
check_drained(store *s)
{
	if (s->drain_cb != NULL && s->in_flight == 0 && s->head == NULL) {
		void (*cb)(void *) = s->drain_cb;
		s->drain_cb = NULL;
		cb(s->drain_arg);
	}
}

static void
batch_done(void *arg, const db_reply *rep)
{
	flight *f = arg;
	store *s = f->s;
	s->in_flight--;
	pending *p = f->head, *next;
	if (rep->err == 0) {
		/* Rows come back for the reports that were inserted; a report
		 * without one had an idempotency key that was already used. */
		const PGresult *res = rep->results[0];
		int nrows = PQntuples(res), hint = 0;
		for (; p != NULL; p = next) {
			next = p->next;
			int64_t srid = 0;
			for (int k = 0; k < nrows; k++) {
				int row = (hint + k) % nrows;
				if (strcmp(PQgetvalue(res, row, 0), p->r.id) == 0) {
					srid = strtoll(PQgetvalue(res, row, 1), NULL, 10);
					hint = row + 1;
					break;
				}
			}
			if (srid > 0) {
				metric_counter_inc(s->m_stored);
				finish(s, p, STORE_CREATED, srid);
			} else {
				finish(s, p, STORE_DUPLICATE, 0);
			}
		}
		outbox_relay_kick(s->relay);
	} else if (rep->err == TRYGG_EDB && f->n > 1) {
		/* Something in this batch failed although everything was checked:
		 * retry each report alone so only the bad one fails. */
		char b1[400];
		log_warn("batch_failed_retrying", "\"reports\":%u,\"sqlstate\":\"%s\",\"error\":%s",
		    f->n, rep->sqlstate ? rep->sqlstate : "",
		    log_json_str(rep->message ? rep->message : "", b1, sizeof(b1)));
		metric_counter_add(s->m_retries, f->n);
		pending *rev = NULL;
		for (; p != NULL; p = next) {
			next = p->next;
			p->alone = true;
			p->next = rev;
			rev = p;
		}
		for (p = rev; p != NULL; p = next) {
			next = p->next;
			enqueue_front(s, p);
		}
	} else {
		store_outcome o = rep->err == TRYGG_EDB ? STORE_FAILED : STORE_UNAVAILABLE;
		if (rep->err == TRYGG_EDB) {
			char b1[400];
			log_error("report_insert_failed", "\"sqlstate\":\"%s\",\"error\":%s",
			    rep->sqlstate ? rep->sqlstate : "",
			    log_json_str(rep->message ? rep->message : "", b1, sizeof(b1)));
			metric_counter_inc(s->m_failed);
		}
		for (; p != NULL; p = next) {
			next = p->next;
			finish(s, p, o, 0);
		}
	}
	free(f);
	flush(s);
	check_drained(s);
}

/* Takes reports off the queue into batches while a slot is free. */
static void
flush(store *s)
{
	while (s->head != NULL && s->in_flight < s->o.parallel) {
		/* Spread what is queued over the free slots (but not thinner
		 * than STORE_MIN_SPREAD reports a batch): one statement runs on
		 * one backend, i.e. one core, so several smaller batches
		 * committing side by side finish sooner than one big one. */
		unsigned slots = s->o.parallel - s->in_flight;
		unsigned ways = s->queued / STORE_MIN_SPREAD;
		if (ways > slots)
			ways = slots;
		if (ways < 1)
			ways = 1;
		unsigned take = (s->queued + ways - 1) / ways;
		if (take > s->o.batch_max)
			take = s->o.batch_max;
		flight *f = xcalloc(1, sizeof(*f));
		f->s = s;
		db_batch *b = db_batch_new();
		arrays a = {0};
		pending **tailp = &f->head;
		/* A report being retried alone goes in a batch of its own. */
		bool alone = s->head->alone;
		while (s->head != NULL && f->n < take && (f->n == 0 || !alone) &&
		    !(f->n > 0 && s->head->alone)) {
			pending *p = s->head;
			s->head = p->next;
			if (s->head == NULL)
				s->tail = NULL;
			s->queued--;
			p->next = NULL;
			*tailp = p;
			tailp = &p->next;
			add_report(&a, &p->r);
			f->n++;
		}
		arrays_submit(&a, b);
		arrays_fini(&a);
		int rv = db_pool_submit(s->pool, b, batch_done, f);
		if (rv != 0) {
			db_batch_free(b);
			/* Not connected or overloaded: answer now rather than queue
			 * without bound. */
			pending *p = f->head, *next;
			for (; p != NULL; p = next) {
				next = p->next;
				finish(s, p, STORE_UNAVAILABLE, 0);
			}
			free(f);
			continue;
		}
		s->in_flight++;
		metric_counter_inc(s->m_batches);
		metric_histogram_observe(s->m_batch_size, (double)f->n);
	}
	check_drained(s);
}

static void
on_timer(uv_timer_t *t)
{
	store *s = t->data;
	s->scheduled = false;
	flush(s);
}

void
store_submit(store *s, report_in *r, store_cb cb, void *arg)
{
	pending *p = xcalloc(1, sizeof(*p));
	p->r = *r;
	memset(r, 0, sizeof(*r));
	p->cb = cb;
	p->arg = arg;
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
	s->queued++;
	/* Flush on the next loop iteration, so every request that arrived in
	 * this one joins the same batch. */
	if (!s->scheduled) {
		s->scheduled = true;
		uv_timer_start(&s->timer, on_timer, 0, 0);
	}
}

void
store_drain(store *s, void (*cb)(void *arg), void *arg)
{
	s->drain_cb = cb;
	s->drain_arg = arg;
	flush(s);
}

int
store_new(uv_loop_t *loop, db_pool *pool, outbox_relay *relay, metrics *m, const store_options *o,
    store **out)
{
	store *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->pool = pool;
	s->relay = relay;
	s->o = *o;
	if (s->o.batch_max == 0)
		s->o.batch_max = 500;
	if (s->o.parallel == 0)
		s->o.parallel = 4;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->m_stored =
	    metrics_counter(m, "trygg_intake_reports_stored_total", "Reports committed.", NULL);
	s->m_batches = metrics_counter(m, "trygg_intake_commit_batches_total",
	    "Report transactions started (group commits).", NULL);
	s->m_retries = metrics_counter(m, "trygg_intake_batch_retries_total",
	    "Reports retried alone after their batch failed.", NULL);
	s->m_failed = metrics_counter(m, "trygg_intake_reports_failed_total",
	    "Reports Postgres refused on their own.", NULL);
	static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
	s->m_batch_size = metrics_histogram(m, "trygg_intake_commit_batch_size",
	    "Reports per transaction.", NULL, sizes, TRYGG_ARRAY_LEN(sizes));
	*out = s;
	return 0;
}

static void
on_closed(uv_handle_t *h)
{
	free(h->data);
}

void
store_free(store *s)
{
	if (s == NULL)
		return;
	uv_close((uv_handle_t *)&s->timer, on_closed);
}
