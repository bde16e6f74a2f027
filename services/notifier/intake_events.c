/*
 * intake_events.c: intake's ReportReceived -> task (see intake_events.h).
 */
#include "intake_events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "strbuf.h"
#include "trygg/events.pb-c.h"
#include "util.h"

/* The batch's reports, one statement (sql/004_batch_ingest.sql). */
static const char SQL_INGEST_BATCH[] = "SELECT ingest_reports($1::jsonb, $2::boolean)";

static const char SQL_HISTORY[] =
    "INSERT INTO history_reports (report_id, category, places, lat, lon, reported_at,"
    " closed_at, night, source) VALUES ($1, $2, $3::text[], $4::double precision,"
    " $5::double precision, 'epoch'::timestamptz + $6::bigint * interval '1 microsecond',"
    " 'epoch'::timestamptz + $7::bigint * interval '1 microsecond', $8::boolean, $9)"
    " ON CONFLICT (report_id) DO NOTHING";

int
intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	notifier *n = arg;
	if (strcmp(ev->type, "trygg.events.ReportReceived") != 0)
		return 0; /* not ours: no effect, the cursor still moves */
	ProtobufCMessage *m;
	int rv = envelope_message_unpack(&trygg__events__report_received__descriptor,
	    ev->payload.data, ev->payload.len, 256 * 1024, &m);
	if (rv != 0)
		return rv;
	const Trygg__Events__ReportReceived *r = (const Trygg__Events__ReportReceived *)m;
	char lb[160];
	if (!trygg_plain_name(r->report_id, 64) || !trygg_plain_name(r->category, 64)) {
		log_warn("report_invalid", "\"seq\":%" PRIu64 ",\"report_id\":%s", ev->seq,
		    log_json_str(r->report_id, lb, sizeof(lb)));
		envelope_message_free(m);
		return TRYGG_EPROTO; /* recorded in inbox_failed, visible to operators */
	}
	/* Places that are not plain slugs are ignored rather than trusted. */
	const char *places[16];
	size_t nplaces = 0;
	for (size_t i = 0; i < r->n_places && nplaces < TRYGG_ARRAY_LEN(places); i++)
		if (trygg_plain_name(r->places[i], 64))
			places[nplaces++] = r->places[i];

	int64_t at = r->occurred_at_us ? r->occurred_at_us : ev->occurred_at_us;
	if (r->imported) {
		/* History from an earlier system: recorded, never a task, a
		 * delivery or a timer (it pages nobody). */
		char pl[16 * 66 + 4], lat[32], lon[32], rep[24], clo[24];
		size_t o = (size_t)snprintf(pl, sizeof(pl), "{");
		for (size_t i = 0; i < nplaces; i++)
			o += (size_t)snprintf(pl + o, sizeof(pl) - o, "%s%s", i ? "," : "",
			    places[i]);
		snprintf(pl + o, sizeof(pl) - o, "}");
		snprintf(lat, sizeof(lat), "%.7f", r->lat);
		snprintf(lon, sizeof(lon), "%.7f", r->long_);
		snprintf(rep, sizeof(rep), "%" PRId64, r->reported_at_us ? r->reported_at_us : at);
		snprintf(clo, sizeof(clo), "%" PRId64, r->closed_at_us);
		const char *hv[9] = {r->report_id, r->category, pl, r->has_position ? lat : NULL,
		    r->has_position ? lon : NULL, rep, r->closed_at_us ? clo : NULL,
		    r->night ? "true" : "false", r->source && r->source[0] ? r->source : "import"};
		char src[32];
		snprintf(src, sizeof(src), "%s", hv[8]);
		if (!trygg_plain_name(src, 31))
			hv[8] = "import";
		db_batch_add(b, SQL_HISTORY, 9, hv);
		envelope_message_free(m);
		return 0;
	}
	routing_report rr = {.category = r->category,
	    .places = places,
	    .nplaces = nplaces,
	    .sensitive = r->sensitive,
	    .response_target_min = r->response_target_min};
	routing_local_time(at ? at : trygg_wall_us(), &rr.weekday, &rr.minute);
	routing_result res;
	const routing_table *t = notifier_routes(n);
	if (t == NULL || routing_route(t, &rr, &res) != 0) {
		log_error("report_unroutable",
		    "\"seq\":%" PRIu64
		    ",\"report_id\":%s,\"reason\":\"no rule and no default unit\"",
		    ev->seq, log_json_str(r->report_id, lb, sizeof(lb)));
		envelope_message_free(m);
		return TRYGG_ENOENT; /* kept in inbox_failed, never silently dropped */
	}

	char key[ROUTING_KEY_MAX], task_id[37];
	/* Postgres refuses invalid text, which would make the event poison. */
	char *address = xstrdup(r->address ? r->address : "");
	trygg_utf8_scrub(address);
	routing_task_key(res.place, r->has_position, r->lat, r->long_, address, r->report_id, key,
	    sizeof(key));
	trygg_uuid4(task_id);
	/* One element of ingest_reports()'s array: ingest_report()'s
	 * parameters, flushed with the rest of the run (intake_events_flush). */
	strbuf *j = &n->ingest_rows;
	strbuf_appendc(j, n->ingest_count++ ? ',' : '[');
	strbuf_append(j, "{\"report_id\":");
	strbuf_append_json(j, r->report_id);
	strbuf_append(j, ",\"category\":");
	strbuf_append_json(j, r->category);
	strbuf_append(j, ",\"task_key\":");
	strbuf_append_json(j, key);
	strbuf_append(j, ",\"place\":");
	strbuf_append_json(j, res.place);
	strbuf_appendf(j, ",\"sensitive\":%s,\"severity\":%u", r->sensitive ? "true" : "false",
	    r->severity > 5 ? 5u : r->severity);
	if (r->has_position) /* as text, read by float8in as before (also "nan") */
		strbuf_appendf(j, ",\"lat\":\"%.7f\",\"lon\":\"%.7f\"", r->lat, r->long_);
	strbuf_append(j, ",\"address\":");
	strbuf_append_json(j, address);
	strbuf_append(j, ",\"unit\":");
	strbuf_append_json(j, res.unit);
	strbuf_append(j, ",\"copies\":[");
	for (size_t i = 0; i < res.ncopies; i++) {
		if (i)
			strbuf_appendc(j, ',');
		strbuf_append_json(j, res.copies[i]);
	}
	strbuf_appendf(j,
	    "],\"unmatched\":%s,\"ack_target_s\":%d,\"completion_target_s\":%d,"
	    "\"task_id\":\"%s\"}",
	    res.matched ? "false" : "true", res.ack_target_s, res.completion_target_s, task_id);
	metric_counter_inc(n->m_reports);
	if (!res.matched) {
		metric_counter_inc(n->m_unmatched);
		log_info("report_unmatched", "\"report_id\":%s,\"category\":\"%s\",\"unit\":\"%s\"",
		    log_json_str(r->report_id, lb, sizeof(lb)), r->category, res.unit);
	}
	free(address);
	envelope_message_free(m);
	return 0;
}

void
intake_events_flush(void *arg, db_batch *b)
{
	notifier *n = arg;
	if (b != NULL && n->ingest_count > 0) {
		strbuf_appendc(&n->ingest_rows, ']');
		const char *values[2] = {strbuf_str(&n->ingest_rows),
		    notifier_email_enabled(n) ? "true" : "false"};
		db_batch_add(b, SQL_INGEST_BATCH, 2, values);
	}
	strbuf_reset(&n->ingest_rows);
	n->ingest_count = 0;
}
