/*
 * trygg-reportpub: a stand-in for intake in the notifier's tests and
 * benchmark, wired like a real service on the common runtime.
 *
 * POST /reports {"report_id"?, "category", "lat"?, "long"?, "places"?,
 * "sensitive"?, "severity"?, "response_target_min"?, "address"?} writes a
 * ReportReceived through its outbox (publisher "intake" by default), in the
 * same transaction as a row in reportpub.reports, exactly as intake does.
 * POST /reports/bulk {"count", "rate", "category"?, "places"?} produces
 * many, at most `rate` per second, for load tests.
 *
 * With TRYGG_BUS_NOTIFIER_SUB_URL set it also follows the notifier's stream through
 * an inbox and records each task event, decoded with protobuf-c, in
 * reportpub.task_events: this is what proves that the events the notifier
 * encodes are what intake will read.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "inbox.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "svc.h"
#include "trygg/events.pb-c.h"

extern const struct migration reportpub_migrations[];

typedef struct reportpub_config {
	svc_config common;
	char *publisher;
	svc_stream_urls notifier;
} reportpub_config;

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(reportpub_config, "8092"),
    SVC_PUBLISH_OPTIONS(reportpub_config, "tcp://127.0.0.1:5570", "tcp://127.0.0.1:5571"),
    CONFIG_OPT_STRING("publisher", reportpub_config, publisher, "intake", 0,
        "publisher name on the envelopes"),
    /* Unset: do not follow the notifier. */
    SVC_STREAM_OPTIONS(reportpub_config, notifier, "notifier", NULL, NULL),
    CONFIG_END,
};

typedef struct reportpub {
	reportpub_config cfg;
	svc svc;
	uv_timer_t tick;
	/* bulk production */
	uint64_t remaining, done, failed, seq;
	unsigned rate, in_flight;
	double tokens;
	uint64_t last_ms;
	char *bulk_category;
	json_t *bulk_places;
	bool stopping;
} reportpub;

static const char SQL_REPORT[] = "INSERT INTO reports (report_id) VALUES ($1)";
static const char SQL_EVENT[] =
    "INSERT INTO task_events (seq, event_type, task_id, report_ids, detail)"
    " VALUES ($1, $2, $3, $4::text[], $5)";

typedef struct tx {
	reportpub *rp;
	http_request *req; /* NULL for bulk */
	char id[64];
} tx;

static void bulk_pump(reportpub *rp);

static void
tx_done(void *arg, const db_reply *rep)
{
	tx *t = arg;
	reportpub *rp = t->rp;
	bool ok = rep->err == 0;
	if (ok)
		svc_relay_kick(&rp->svc);
	if (t->req) {
		if (ok)
			http_respond_json(t->req, 201, json_pack("{s:s}", "report_id", t->id));
		else
			http_respond_error(t->req, 503, "unavailable", "not stored", NULL);
	} else {
		rp->in_flight--;
		if (ok)
			rp->done++;
		else
			rp->failed++, rp->remaining++; /* try again */
		bulk_pump(rp);
	}
	free(t);
}

/* Writes one report and its event in one transaction. */
static int
write_report(reportpub *rp, http_request *req, const char *id, const char *category,
    const json_t *places, bool has_pos, double lat, double lon, bool sensitive, int severity,
    int target_min, const char *address)
{
	Trygg__Events__ReportReceived ev = TRYGG__EVENTS__REPORT_RECEIVED__INIT;
	char *pl[16];
	size_t np = 0, i;
	json_t *v;
	json_array_foreach(places, i, v)
	{
		if (np < 16 && json_is_string(v))
			pl[np++] = (char *)json_string_value(v);
	}
	ev.report_id = (char *)id;
	ev.partner = "reportpub";
	ev.partner_role = "staff";
	ev.category = (char *)category;
	ev.has_position = has_pos;
	ev.lat = lat;
	ev.long_ = lon;
	ev.n_places = np;
	ev.places = pl;
	ev.severity = (uint32_t)severity;
	ev.sensitive = sensitive;
	ev.occurred_at_us = trygg_wall_us();
	ev.response_target_min = (uint32_t)target_min;
	ev.address = (char *)(address ? address : "");
	size_t len = trygg__events__report_received__get_packed_size(&ev);
	uint8_t *buf = xmalloc(len);
	trygg__events__report_received__pack(&ev, buf);
	db_batch *b = db_batch_new();
	const char *values[1] = {id};
	db_batch_add(b, SQL_REPORT, 1, values);
	int rv = outbox_add_event(b, "trygg.events.ReportReceived", buf, len);
	free(buf);
	if (rv != 0) {
		db_batch_free(b);
		return rv;
	}
	tx *t = xcalloc(1, sizeof(*t));
	t->rp = rp;
	t->req = req;
	snprintf(t->id, sizeof(t->id), "%s", id);
	if (db_pool_submit(rp->svc.pool, b, tx_done, t) != 0) {
		db_batch_free(b);
		free(t);
		return TRYGG_EDBCONN;
	}
	return 0;
}

static void
handle_report(http_request *req, void *arg)
{
	reportpub *rp = arg;
	size_t len;
	const char *body = http_request_body(req, &len);
	json_t *obj, *places = NULL;
	tjson_error err;
	const char *id = NULL, *category, *address = NULL;
	double lat = 0, lon = 0;
	bool sensitive = false;
	int64_t severity = 2, target = 1440;
	char idbuf[37];
	if (tjson_parse(body, len, 0, 0, &obj, &err) != 0) {
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	if (tjson_get_string(obj, "report_id", false, 63, &id, &err) != 0 ||
	    tjson_get_string(obj, "category", true, 64, &category, &err) != 0 ||
	    tjson_get_double(obj, "lat", false, -90, 90, &lat, &err) != 0 ||
	    tjson_get_double(obj, "long", false, -180, 180, &lon, &err) != 0 ||
	    tjson_get_array(obj, "places", false, 16, &places, &err) != 0 ||
	    tjson_get_bool(obj, "sensitive", false, &sensitive, &err) != 0 ||
	    tjson_get_int(obj, "severity", false, 1, 5, &severity, &err) != 0 ||
	    tjson_get_int(obj, "response_target_min", false, 0, 1000000, &target, &err) != 0 ||
	    tjson_get_string(obj, "address", false, 200, &address, &err) != 0) {
		json_decref(obj);
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	if (id == NULL) {
		trygg_uuid4(idbuf);
		id = idbuf;
	}
	bool has_pos = tjson_has(obj, "lat") && tjson_has(obj, "long");
	if (write_report(rp, req, id, category, places, has_pos, lat, lon, sensitive, (int)severity,
	        (int)target, address) != 0)
		http_respond_error(req, 503, "unavailable", "database down", NULL);
	json_decref(obj);
}

static void
bulk_pump(reportpub *rp)
{
	while (rp->remaining > 0 && rp->in_flight < 64 && !rp->stopping) {
		if (rp->rate > 0 && rp->tokens < 1.0)
			break;
		char id[37];
		trygg_uuid4(id);
		/* One grid cell (0.001 x 0.002 degrees) per report, so each
		 * opens its own task unless places are given. */
		rp->seq++;
		double lat = 59.0 + (double)(rp->seq % 1000) * 0.0011 + 0.0003;
		double lon = 17.0 + (double)((rp->seq / 1000) % 1000) * 0.0021 + 0.0005;
		if (write_report(rp, NULL, id, rp->bulk_category, rp->bulk_places, true, lat, lon,
		        false, 2, 1440, "") != 0)
			break;
		rp->in_flight++;
		rp->remaining--;
		if (rp->rate > 0)
			rp->tokens -= 1.0;
	}
	if (rp->remaining == 0 && rp->in_flight == 0)
		uv_timer_stop(&rp->tick);
}

static void
on_tick(uv_timer_t *t)
{
	reportpub *rp = t->data;
	uint64_t now = trygg_now_ms();
	rp->tokens += (double)(now - rp->last_ms) * rp->rate / 1000.0;
	if (rp->tokens > rp->rate / 50.0 + 1.0)
		rp->tokens = rp->rate / 50.0 + 1.0;
	rp->last_ms = now;
	bulk_pump(rp);
}

static void
handle_bulk(http_request *req, void *arg)
{
	reportpub *rp = arg;
	size_t len;
	const char *body = http_request_body(req, &len);
	json_t *obj, *places = NULL;
	tjson_error err;
	int64_t count, rate = 0;
	const char *category = "litter";
	if (tjson_parse(body, len, 0, 0, &obj, &err) != 0) {
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	if (tjson_get_int(obj, "count", true, 1, 10000000, &count, &err) != 0 ||
	    tjson_get_int(obj, "rate", false, 0, 100000, &rate, &err) != 0 ||
	    tjson_get_string(obj, "category", false, 64, &category, &err) != 0 ||
	    tjson_get_array(obj, "places", false, 16, &places, &err) != 0) {
		json_decref(obj);
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	free(rp->bulk_category);
	rp->bulk_category = xstrdup(category);
	json_decref(rp->bulk_places);
	rp->bulk_places = places ? json_incref(places) : json_array();
	json_decref(obj);
	rp->remaining += (uint64_t)count;
	rp->rate = (unsigned)rate;
	rp->tokens = 1.0;
	rp->last_ms = trygg_now_ms();
	uv_timer_start(&rp->tick, on_tick, 2, 2);
	bulk_pump(rp);
	http_respond_json(req, 202, json_pack("{s:I}", "remaining", (json_int_t)rp->remaining));
}

static void
handle_bulk_get(http_request *req, void *arg)
{
	reportpub *rp = arg;
	http_respond_json(req, 200,
	    json_pack("{s:I, s:I, s:I, s:I}", "remaining", (json_int_t)rp->remaining, "done",
	        (json_int_t)rp->done, "failed", (json_int_t)rp->failed, "in_flight",
	        (json_int_t)rp->in_flight));
}

/* Records one task event from the notifier. */
static int
apply_event(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	TRYGG_UNUSED(arg);
	static const struct {
		const char *type;
		const ProtobufCMessageDescriptor *desc;
	} known[] = {
	    {"trygg.events.TaskOpened", &trygg__events__task_opened__descriptor},
	    {"trygg.events.TaskDispatched", &trygg__events__task_dispatched__descriptor},
	    {"trygg.events.TaskAcknowledged", &trygg__events__task_acknowledged__descriptor},
	    {"trygg.events.TaskEscalated", &trygg__events__task_escalated__descriptor},
	    {"trygg.events.TaskCompleted", &trygg__events__task_completed__descriptor},
	    {"trygg.events.TaskDeclined", &trygg__events__task_declined__descriptor},
	    {"trygg.events.TaskJoined", &trygg__events__task_joined__descriptor},
	};
	const ProtobufCMessageDescriptor *desc = NULL;
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(known); i++)
		if (strcmp(ev->type, known[i].type) == 0)
			desc = known[i].desc;
	if (desc == NULL)
		return 0;
	ProtobufCMessage *m;
	int rv = envelope_message_unpack(desc, ev->payload.data, ev->payload.len, 256 * 1024, &m);
	if (rv != 0)
		return rv;
	/* Every task event has task_id = 1 and report_ids = 2: read them by
	 * field descriptor, and render the rest as "name=value" pairs. */
	char detail[1024] = "", *task_id = "", ids[4096] = "{";
	size_t o = 1, d = 0;
	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		const char *base = (const char *)m;
		if (f->id == 1) {
			task_id = *(char *const *)(base + f->offset);
		} else if (f->id == 2) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			char *const *a = *(char *const *const *)(base + f->offset);
			for (size_t j = 0; j < n && o + strlen(a[j]) + 4 < sizeof(ids); j++)
				o += (size_t)snprintf(ids + o, sizeof(ids) - o, "%s\"%s\"",
				    j ? "," : "", a[j]);
		} else if (f->type == PROTOBUF_C_TYPE_STRING && d < sizeof(detail) - 1) {
			const char *s = *(char *const *)(base + f->offset);
			d += (size_t)snprintf(detail + d, sizeof(detail) - d, "%s=%s;", f->name,
			    s ? s : "");
		} else if ((f->type == PROTOBUF_C_TYPE_UINT32 || f->type == PROTOBUF_C_TYPE_ENUM) &&
		    d < sizeof(detail) - 1) {
			d += (size_t)snprintf(detail + d, sizeof(detail) - d, "%s=%u;", f->name,
			    *(const uint32_t *)(base + f->offset));
		} else if (f->type == PROTOBUF_C_TYPE_INT64 && d < sizeof(detail) - 1) {
			d += (size_t)snprintf(detail + d, sizeof(detail) - d, "%s=%" PRId64 ";",
			    f->name, *(const int64_t *)(base + f->offset));
		}
	}
	if (o < sizeof(ids) - 1)
		ids[o++] = '}';
	ids[o < sizeof(ids) ? o : sizeof(ids) - 1] = '\0';
	char seq[24];
	snprintf(seq, sizeof(seq), "%" PRIu64, ev->seq);
	const char *values[5] = {seq, ev->type + strlen("trygg.events."), task_id, ids, detail};
	db_batch_add(b, SQL_EVENT, 5, values);
	envelope_message_free(m);
	return 0;
}

static void
on_drain(svc *s, void *arg)
{
	reportpub *rp = arg;
	rp->stopping = true;
	uv_close((uv_handle_t *)&rp->tick, NULL);
	free(rp->bulk_category);
	json_decref(rp->bulk_places);
	svc_drain_done(s);
}

int
main(int argc, char **argv)
{
	static reportpub rp;
	svc_options so = {.name = "reportpub",
	    .schema = "reportpub",
	    .options = options,
	    .config = &rp.cfg,
	    .common = &rp.cfg.common,
	    .migrations = reportpub_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&rp.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (svc_publish(&rp.svc, rp.cfg.publisher) != 0 ||
	    svc_consume(&rp.svc,
	        &(svc_stream){.publisher = "notifier",
	            .urls = &rp.cfg.notifier,
	            .apply = apply_event,
	            .arg = &rp}) != 0)
		return svc_abort(&rp.svc);
	uv_timer_init(svc_uv(&rp.svc), &rp.tick);
	rp.tick.data = &rp;
	if (http_server_route(rp.svc.http, "POST /reports", handle_report, &rp) != 0 ||
	    http_server_route(rp.svc.http, "POST /reports/bulk", handle_bulk, &rp) != 0 ||
	    http_server_route(rp.svc.http, "GET /reports/bulk", handle_bulk_get, &rp) != 0)
		return svc_abort(&rp.svc);
	svc_set_drain(&rp.svc, on_drain, &rp);
	return svc_run(&rp.svc);
}
