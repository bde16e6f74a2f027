/*
 * store.c: group commit of reports (see store.h).
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
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

static const char SQL_INSERT[] =
    "WITH k AS (INSERT INTO idempotency (partner_id, idem_key, request_hash, report_id)"
    "  SELECT $2, $14, decode($15, 'hex'), $1 WHERE $14::text IS NOT NULL"
    "  ON CONFLICT DO NOTHING RETURNING 1),"
    " r AS (INSERT INTO reports (id, partner_id, category, sensitive, severity, lat, long,"
    "  address_string, description, media_url, attributes, created_at, updated_at)"
    "  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, t.ts, t.ts"
    "  FROM (SELECT 'epoch'::timestamptz + $12::bigint * interval '1 microsecond' AS ts) t"
    "  WHERE $14::text IS NULL OR EXISTS (SELECT 1 FROM k)"
    "  RETURNING id, service_request_id, created_at),"
    " p AS (INSERT INTO report_places (report_id, place_id)"
    "  SELECT r.id, unnest($13::int[]) FROM r),"
    " c AS (INSERT INTO report_contacts (report_id, first_name, last_name, email, phone,"
    "  device_id, account_id, created_at)"
    "  SELECT r.id, $18, $19, $20, $21, $22, $23, r.created_at FROM r WHERE $17::bool),"
    " o AS (INSERT INTO outbox (event_type, payload)"
    "  SELECT 'trygg.events.ReportReceived', $16::bytea FROM r)"
    " SELECT service_request_id FROM r";

#define NPARAMS 23

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

/* Appends the statement for one report to b. */
static void
add_report(db_batch *b, const report_in *r)
{
	char partner_id[16], sev[8], lat[32], lon[32], created[24];
	char places[PLACES_MATCH_MAX * 12 + 3], hash[2 * AUTH_HASH_LEN + 1];
	snprintf(partner_id, sizeof(partner_id), "%d", r->partner->id);
	snprintf(sev, sizeof(sev), "%d", r->severity);
	snprintf(lat, sizeof(lat), "%.9g", r->lat);
	snprintf(lon, sizeof(lon), "%.9g", r->lon);
	snprintf(created, sizeof(created), "%" PRId64, r->created_us);
	size_t o = 0;
	places[o++] = '{';
	for (size_t i = 0; i < r->nplaces; i++)
		o += (size_t)snprintf(places + o, sizeof(places) - o, "%s%d", i ? "," : "",
		    r->place_ids[i]);
	places[o++] = '}';
	places[o] = '\0';
	auth_hex(r->request_hash, AUTH_HASH_LEN, hash);
	char *attrs = json_dumps(r->attributes, JSON_COMPACT);
	size_t plen;
	uint8_t *payload = store_pack_event(r, &plen);
	const char *v[NPARAMS] = {r->id, partner_id, r->category, r->sensitive ? "t" : "f", sev,
	    r->has_position ? lat : NULL, r->has_position ? lon : NULL, r->address, r->description,
	    r->media_url, attrs ? attrs : "{}", created, places, r->idem_key,
	    r->idem_key ? hash : NULL, (const char *)payload, r->has_contact ? "t" : "f",
	    r->first_name, r->last_name, r->email, r->phone, r->device_id, r->account_id};
	int lengths[NPARAMS] = {0};
	int formats[NPARAMS] = {0};
	lengths[15] = (int)plen;
	formats[15] = 1;
	db_batch_addb(b, SQL_INSERT, NPARAMS, v, lengths, formats);
	free(payload);
	free(attrs);
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
		int i = 0;
		for (; p != NULL; p = next, i++) {
			next = p->next;
			const PGresult *res = rep->results[i];
			if (PQntuples(res) == 1) {
				metric_counter_inc(s->m_stored);
				finish(s, p, STORE_CREATED,
				    strtoll(PQgetvalue(res, 0, 0), NULL, 10));
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
		flight *f = xcalloc(1, sizeof(*f));
		f->s = s;
		db_batch *b = db_batch_new();
		pending **tailp = &f->head;
		/* A report being retried alone goes in a batch of its own. */
		bool alone = s->head->alone;
		while (s->head != NULL && f->n < s->o.batch_max && (f->n == 0 || !alone) &&
		    !(f->n > 0 && s->head->alone)) {
			pending *p = s->head;
			s->head = p->next;
			if (s->head == NULL)
				s->tail = NULL;
			s->queued--;
			p->next = NULL;
			*tailp = p;
			tailp = &p->next;
			add_report(b, &p->r);
			f->n++;
		}
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
