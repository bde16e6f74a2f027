/*
 * store.c: group commit of reports, and finding out the outcome of a
 * batch whose connection broke (see store.h).
 */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "render.h"
#include "sun.h"
#include "trygg/events.pb-c.h"

typedef struct pending {
	struct pending *next;
	report_in r;
	store_cb cb;
	void *arg;
	bool alone;     /* a retry after its batch failed */
	uint8_t *event; /* its ReportReceived, packed once (store_pack_event) */
	size_t event_len;
	int row; /* in the batch's answer: its row, or -1 (not stored) */
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
	unsigned verifying; /* broken batches whose outcome is being looked up */
	void (*drain_cb)(void *arg);
	void *drain_arg;
	metric_counter *m_stored, *m_batches, *m_retries, *m_failed;
	metric_counter *m_verified[3]; /* broken batches: committed, not, unknown */
	metric_histogram *m_batch_size;
};

/*
 * One statement writes a whole batch: the reports arrive as parallel
 * arrays (one element per report) and are unnested once, so the per-
 * statement cost (bind, executor start, CTE setup) is paid per batch, not
 * per report. Measured here: ~165 us of Postgres CPU per report with one
 * statement per report, far less this way.
 */
#define EVENT_TYPE "trygg.events.ReportReceived"
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
    /* The events are numbered here, not by the relay (outbox.h, "Two ways
     * to number"): outbox_reserve_epoch locks outbox_state to the commit.
     * The answer carries each event's number and id and the epoch, so the
     * relay can publish them as they commit (outbox_relay_committed);
     * they occur when their report was received. */
    " s AS (SELECT * FROM outbox_reserve_epoch((SELECT count(*) FROM r))),"
    " e AS (SELECT i.id, s.first - 1 + row_number() OVER (ORDER BY i.created_us) AS seq,"
    "  gen_random_uuid() AS event_id, i.created_us, i.payload FROM s, r JOIN i ON i.id = r.id),"
    " o AS (INSERT INTO outbox (pub_seq, event_id, event_type, payload, occurred_at)"
    "  SELECT seq, event_id, '" EVENT_TYPE "', decode(payload, 'hex'),"
    "  'epoch'::timestamptz + created_us * interval '1 microsecond' FROM e)"
    " SELECT r.id, r.service_request_id, e.seq, e.event_id, s.epoch FROM s, r JOIN e USING (id)";

#define NPARAMS 23

/* The smallest batch worth a transaction of its own when spreading. */
#define STORE_MIN_SPREAD 8

/*
 * While a batch is in flight, a new one starts only when at least this
 * many reports wait; fewer wait for the batch in flight to finish (one
 * commit, ~1 ms) and join the next. Each statement has a fixed cost in
 * Postgres (executor start for five inserts, opening every index, parsing
 * the CHECK constraints: perf, issue 9) that a batch shares among its
 * reports: with 16 connections, starting a batch whenever a slot was free
 * gave batches of ~4 and ~350 us of Postgres CPU per report; waiting for
 * 8 gave ~220 us (BENCHMARKS.md).
 */
#define STORE_MIN_BUSY 8

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
	strbuf_append(b, b->len == 0 ? "{" : ",");
	if (v == NULL) {
		strbuf_append(b, "NULL");
		return;
	}
	char chunk[512];
	size_t o = 0;
	chunk[o++] = '"';
	for (const char *p = v;; p++) {
		if (o + 3 >= sizeof(chunk) || *p == '\0') {
			chunk[o] = '\0';
			strbuf_append(b, chunk);
			o = 0;
			if (*p == '\0')
				break;
		}
		if (*p == '"' || *p == '\\')
			chunk[o++] = '\\';
		chunk[o++] = *p;
	}
	strbuf_append(b, "\"");
}

static void
arrays_fini(arrays *a)
{
	for (int i = 0; i < NPARAMS; i++)
		strbuf_fini(&a->col[i]);
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
	ev.imported = r->imported;
	ev.reported_at_us = r->reported_us ? r->reported_us : r->created_us;
	ev.closed_at_us = r->closed_us;
	ev.source = (char *)(r->source ? r->source : "partner");
	ev.night = sun_is_dark(r->has_position ? r->lat : INTAKE_CENTRE_LAT,
	    r->has_position ? r->lon : INTAKE_CENTRE_LONG, ev.reported_at_us);
	*len = trygg__events__report_received__get_packed_size(&ev);
	uint8_t *buf = xmalloc(*len ? *len : 1);
	trygg__events__report_received__pack(&ev, buf);
	return buf;
}

/* Adds one report's values to the arrays. */
static void
add_report(arrays *a, pending *p)
{
	const report_in *r = &p->r;
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
	crypto_hex(r->request_hash, AUTH_HASH_LEN, hash);
	/* Most reports carry no attributes: no dump for those. */
	char *attrs = json_is_object(r->attributes) && json_object_size(r->attributes) == 0
	    ? NULL
	    : json_dumps(r->attributes, JSON_COMPACT);
	if (p->event == NULL)
		p->event = store_pack_event(r, &p->event_len);
	char *phex = xmalloc(2 * p->event_len + 1);
	crypto_hex(p->event, p->event_len, phex);
	const char *v[NPARAMS] = {r->id, partner_id, r->category, r->sensitive ? "t" : "f", sev,
	    r->has_position ? lat : NULL, r->has_position ? lon : NULL, r->address, r->description,
	    r->media_url, attrs ? attrs : "{}", created, r->idem_key, r->idem_key ? hash : NULL,
	    phex, places, r->has_contact ? "t" : "f", r->first_name, r->last_name, r->email,
	    r->phone, r->device_id, r->account_id};
	for (int i = 0; i < NPARAMS; i++)
		arr_add(a, i, v[i]);
	a->n++;
	free(phex);
	free(attrs);
}

/* Adds the batch's statement to b. */
static void
arrays_submit(arrays *a, db_batch *b)
{
	const char *v[NPARAMS];
	for (int i = 0; i < NPARAMS; i++) {
		strbuf_append(&a->col[i], "}");
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
	free(p->event);
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
	if (s->drain_cb != NULL && s->in_flight == 0 && s->head == NULL && s->verifying == 0) {
		void (*cb)(void *) = s->drain_cb;
		s->drain_cb = NULL;
		cb(s->drain_arg);
	}
}

static int
by_seq(const void *a, const void *b)
{
	uint64_t x = ((const outbox_event *)a)->seq, y = ((const outbox_event *)b)->seq;
	return x < y ? -1 : x > y;
}

/*
 * Publishes the events of the reports that were stored. The batch's own
 * answer has each event's number and id and the epoch (columns 2-4), so
 * the relay can send them at once; a lookup after a broken connection has
 * not, and the relay reads them back in a round.
 */
static void
publish_stored(store *s, flight *f, const PGresult *res, bool any)
{
	if (PQnfields(res) < 5) {
		if (any)
			outbox_relay_kick(s->relay);
		return;
	}
	outbox_event *ev = xcalloc(f->n, sizeof(*ev));
	size_t n = 0;
	for (pending *p = f->head; p != NULL; p = p->next) {
		if (p->row < 0)
			continue;
		ev[n++] = (outbox_event){.seq = strtoull(PQgetvalue(res, p->row, 2), NULL, 10),
		    .event_id = PQgetvalue(res, p->row, 3),
		    .type = EVENT_TYPE,
		    .payload = p->event,
		    .len = p->event_len,
		    .occurred_us = p->r.created_us};
	}
	qsort(ev, n, sizeof(*ev), by_seq);
	if (n > 0)
		outbox_relay_committed(s->relay, PQgetvalue(res, 0, 4), ev, n);
	free(ev);
}

/*
 * Answers each report of a flight from rows (id, service_request_id, ...)
 * of the reports that are stored: those are created. Of the others, those
 * whose dup[i] is true (by position; dup NULL: all) had an idempotency key
 * that was already used; the rest were not stored.
 */
static void
finish_from_rows(store *s, flight *f, const PGresult *res, const bool *dup)
{
	int nrows = PQntuples(res), hint = 0, i = 0;
	bool any = false;
	for (pending *p = f->head; p != NULL; p = p->next) {
		p->row = -1;
		for (int k = 0; k < nrows; k++) {
			int row = (hint + k) % nrows;
			if (strcmp(PQgetvalue(res, row, 0), p->r.id) == 0) {
				p->row = row;
				hint = row + 1;
				any = true;
				break;
			}
		}
	}
	publish_stored(s, f, res, any);
	for (pending *p = f->head, *next; p != NULL; p = next, i++) {
		next = p->next;
		if (p->row >= 0) {
			metric_counter_inc(s->m_stored);
			finish(s, p, STORE_CREATED, strtoll(PQgetvalue(res, p->row, 1), NULL, 10));
		} else {
			finish(s, p, dup == NULL || dup[i] ? STORE_DUPLICATE : STORE_UNAVAILABLE,
			    0);
		}
	}
	f->head = NULL;
}

static void finish_all(store *s, flight *f, store_outcome o);

/* SQLSTATE classes where the server, not the data, failed the statement:
 * 08 connection exception, 53 insufficient resources, 57 operator
 * intervention (57014: statement timeout), 58 system error. */
static bool
transient(const char *sqlstate)
{
	return sqlstate != NULL &&
	    (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
	        strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "58", 2) == 0);
}
static void verify_start(store *s, flight *f, int backend_pid);

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
		finish_from_rows(s, f, rep->results[0], NULL);
	} else if (rep->err == TRYGG_EDBCONN) {
		/* Sent, and then the connection broke: it may have committed. */
		verify_start(s, f, rep->backend_pid);
		flush(s);
		return;
	} else if (rep->err == TRYGG_ECLOSED) {
		/* Closed under us at exit: no connection is left to ask. */
		finish_all(s, f, STORE_UNKNOWN);
	} else if (rep->err == TRYGG_EDB && transient(rep->sqlstate)) {
		/* The server gave up on the transaction (statement timeout, shut
		 * down, out of resources): rolled back, and not the reports'
		 * fault, so no retry one by one. */
		char b1[400];
		log_warn("batch_failed_transient",
		    "\"reports\":%u,\"sqlstate\":\"%s\",\"error\":%s", f->n, rep->sqlstate,
		    log_json_str(rep->message ? rep->message : "", b1, sizeof(b1)));
		finish_all(s, f, STORE_UNAVAILABLE);
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
		finish_all(s, f, o);
	}
	free(f);
	flush(s);
	check_drained(s);
}

static void
finish_all(store *s, flight *f, store_outcome o)
{
	for (pending *p = f->head, *next; p != NULL; p = next) {
		next = p->next;
		finish(s, p, o, 0);
	}
	f->head = NULL;
}

/* ---- the outcome of a broken batch ---- */

/*
 * One statement per question, in one batch; each statement of a batch
 * takes a fresh snapshot, so the lookups see everything the old backend
 * committed before it exited. pg_terminate_backend(pid, timeout) waits up
 * to the timeout for the backend to exit (the role may end its own
 * backends); a backend that is not there any more has no row.
 */
static const char SQL_GONE[] = "SELECT coalesce(bool_and(pg_terminate_backend(pid, 1500)), true)"
                               " FROM pg_stat_activity WHERE pid = $1::int";
static const char SQL_STORED[] =
    "SELECT id, service_request_id FROM reports WHERE id = ANY($1::uuid[])";
static const char SQL_KEYS_USED[] =
    "SELECT k.ord FROM unnest($1::int[], $2::text[]) WITH ORDINALITY AS k(partner_id, idem_key,"
    " ord) JOIN idempotency i USING (partner_id, idem_key)";

typedef struct verify {
	store *s;  /* NULL once answered (the store may be gone then) */
	flight *f; /* the broken batch's reports, answered when known */
	int backend_pid;
	uint64_t deadline_ns;
	uv_timer_t timer;
	bool lookup_out; /* a lookup batch is in flight */
} verify;

static void verify_try(verify *v);

static void
on_verify_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Answers the reports (once) and lets the store drain; v lives on until
 * no lookup of its is in flight. */
static void
verify_answer(verify *v, const PGresult *stored, const bool *dup, store_outcome o)
{
	store *s = v->s;
	if (s == NULL)
		return;
	v->s = NULL;
	metric_counter_inc(s->m_verified[stored == NULL ? 2 : PQntuples(stored) > 0 ? 0 : 1]);
	if (stored != NULL)
		finish_from_rows(s, v->f, stored, dup);
	else
		finish_all(s, v->f, o);
	free(v->f);
	v->f = NULL;
	s->verifying--;
	uv_timer_stop(&v->timer);
	if (!v->lookup_out)
		uv_close((uv_handle_t *)&v->timer, on_verify_closed);
	flush(s);
	check_drained(s);
}

static void
on_verify_timer(uv_timer_t *t)
{
	verify *v = t->data;
	if (v->lookup_out) {
		/* The lookup itself hangs: answer unknown; its reply frees v. */
		log_warn("report_outcome_unknown", "\"reports\":%u,\"why\":\"lookup timed out\"",
		    v->f->n);
		verify_answer(v, NULL, NULL, STORE_UNKNOWN);
		return;
	}
	verify_try(v);
}

static void
on_lookup(void *arg, const db_reply *rep)
{
	verify *v = arg;
	v->lookup_out = false;
	if (v->s == NULL) {
		uv_close((uv_handle_t *)&v->timer, on_verify_closed);
		return;
	}
	if (rep->err == TRYGG_EDBCONN || rep->err == TRYGG_EBUSY) {
		uv_timer_start(&v->timer, on_verify_timer, 100, 0); /* another connection */
		return;
	}
	if (rep->err != 0 || strcmp(PQgetvalue(rep->results[0], 0, 0), "t") != 0) {
		char b1[400];
		log_warn("report_outcome_unknown", "\"reports\":%u,\"backend_pid\":%d,\"why\":%s",
		    v->f->n, v->backend_pid,
		    log_json_str(rep->err ? rep->message : "the old backend did not exit", b1,
		        sizeof(b1)));
		verify_answer(v, NULL, NULL, STORE_UNKNOWN);
		return;
	}
	bool *dup = xcalloc(v->f->n, sizeof(bool));
	const PGresult *used = rep->results[2];
	for (int k = 0; k < PQntuples(used); k++) {
		long ord = strtol(PQgetvalue(used, k, 0), NULL, 10);
		if (ord >= 1 && ord <= (long)v->f->n)
			dup[ord - 1] = true;
	}
	log_info("report_outcome_verified", "\"reports\":%u,\"stored\":%d,\"backend_pid\":%d",
	    v->f->n, PQntuples(rep->results[1]), v->backend_pid);
	verify_answer(v, rep->results[1], dup, STORE_UNAVAILABLE);
	free(dup);
}

/* Sends the lookup on any connected client, or tries again shortly. */
static void
verify_try(verify *v)
{
	uint64_t now = trygg_now_ns();
	if (now >= v->deadline_ns) {
		log_warn("report_outcome_unknown", "\"reports\":%u,\"why\":\"no connection\"",
		    v->f->n);
		verify_answer(v, NULL, NULL, STORE_UNKNOWN);
		return;
	}
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", v->backend_pid);
	arrays a = {0};
	for (pending *p = v->f->head; p != NULL; p = p->next) {
		char partner_id[16];
		snprintf(partner_id, sizeof(partner_id), "%d", p->r.partner->id);
		arr_add(&a, 0, p->r.id);
		arr_add(&a, 1, partner_id);
		arr_add(&a, 2, p->r.idem_key);
	}
	for (int i = 0; i < 3; i++)
		strbuf_append(&a.col[i], "}");
	db_batch *b = db_batch_new();
	const char *v1[1] = {pid}, *v2[1] = {a.col[0].s}, *v3[2] = {a.col[1].s, a.col[2].s};
	db_batch_add(b, SQL_GONE, 1, v1);
	db_batch_add(b, SQL_STORED, 1, v2);
	db_batch_add(b, SQL_KEYS_USED, 2, v3);
	arrays_fini(&a);
	uint64_t left_ms = (v->deadline_ns - now) / 1000000 + 1;
	if (db_pool_submit(v->s->pool, b, on_lookup, v) != 0) {
		db_batch_free(b);
		uv_timer_start(&v->timer, on_verify_timer, left_ms < 100 ? left_ms : 100, 0);
		return;
	}
	v->lookup_out = true;
	uv_timer_start(&v->timer, on_verify_timer, left_ms, 0);
}

static void
verify_start(store *s, flight *f, int backend_pid)
{
	verify *v = xcalloc(1, sizeof(*v));
	v->s = s;
	v->f = f;
	v->backend_pid = backend_pid;
	v->deadline_ns = trygg_now_ns() + (uint64_t)STORE_VERIFY_MS * 1000000u;
	uv_timer_init(s->loop, &v->timer);
	v->timer.data = v;
	s->verifying++;
	verify_try(v);
}

/* Takes reports off the queue into batches while a slot is free. */
static void
flush(store *s)
{
	while (s->head != NULL && s->in_flight < s->o.parallel &&
	    (s->in_flight == 0 || s->queued >= STORE_MIN_BUSY || s->drain_cb != NULL)) {
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
			add_report(&a, p);
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
	/* By batch: some report found committed, none found, or no answer. */
	static const char *const results[3] = {"committed", "not_committed", "unknown"};
	for (int i = 0; i < 3; i++) {
		const char *labels[] = {"result", results[i], NULL};
		s->m_verified[i] = metrics_counter(m, "trygg_intake_outcome_checks_total",
		    "Batches whose connection broke after sending, by what the lookup found.",
		    labels);
	}
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
