/*
 * intake_events.c: reporting's consumer of intake's stream (reporting.h):
 * ReportReceived (apply_report) and PlaceDefined (place_define).
 *
 * Each event becomes one call of a SQL function of sql/001_init.sql in the
 * inbox's batch, so the aggregates move in the same transaction as the
 * inbox cursor: exactly once, whatever is redelivered. Event types the
 * stream carries that reporting does not need have no effect (the cursor
 * still moves). Payloads are untrusted (events.h).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "events.h"
#include "reporting.h"
#include "sun.h"
#include "trygg/events.pb-c.h"
#include "util.h"

#define DISTRICT_LAT 59.3326
#define DISTRICT_LON 18.0649

static const char SQL_REPORT[] =
    "SELECT apply_report($1, $2, $3, $4, $5, $6::boolean, $7::text[], $8::boolean,"
    " $9::float8, $10::float8, $11::bigint, $12::boolean, $13::int, $14::boolean)";

static int
apply_report(reporting *r, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Events__ReportReceived *m = (Trygg__Events__ReportReceived *)
	    events_unpack(&trygg__events__report_received__descriptor, ev);
	if (m == NULL) {
		events_log_bad(ev, "undecodable ReportReceived");
		return TRYGG_EPROTO;
	}
	if (!trygg_plain_name(m->report_id, 64) || !trygg_plain_name(m->category, 64)) {
		events_log_bad(ev, "report_id or category not a plain name");
		envelope_message_free(&m->base);
		return TRYGG_EPROTO;
	}
	int64_t at = m->reported_at_us
	    ? m->reported_at_us
	    : (m->occurred_at_us ? m->occurred_at_us : ev->occurred_at_us);
	if (at <= 0)
		at = trygg_wall_us();
	/* ReportReceived.night exists since the import fields; an event from
	 * before (no reported_at_us) gets it computed here. */
	bool night = m->night;
	if (m->reported_at_us == 0)
		night = m->has_position ? sun_is_dark(m->lat, m->long_, at)
		                        : sun_is_dark(DISTRICT_LAT, DISTRICT_LON, at);
	char *places = events_text_array(m->places, m->n_places, r->cfg.district_place);
	char lat[32], lon[32], at_s[24], target[16];
	snprintf(lat, sizeof(lat), "%.7f", m->lat);
	snprintf(lon, sizeof(lon), "%.7f", m->long_);
	snprintf(at_s, sizeof(at_s), "%" PRId64, at);
	snprintf(target, sizeof(target), "%u", m->response_target_min);
	const char *partner =
	    trygg_plain_name(m->partner, EVENTS_NAME_MAX) ? m->partner : "unknown";
	const char *role = trygg_plain_name(m->partner_role, 64) ? m->partner_role : "";
	const char *focus = trygg_plain_name(m->focus_area, 64) ? m->focus_area : "other";
	const char *v[14] = {m->report_id, partner, role, m->category, focus,
	    m->sensitive ? "true" : "false", places, m->has_position ? "true" : "false", lat, lon,
	    at_s, night ? "true" : "false", target, m->imported ? "true" : "false"};
	db_batch_add(b, SQL_REPORT, 14, v);
	free(places);
	envelope_message_free(&m->base);
	metric_counter_inc(r->m_reports);
	return 0;
}

static const char SQL_PLACE[] = "SELECT place_define($1, $2, $3, $4::jsonb, $5::boolean)";

static int
apply_place(reporting *r, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Events__PlaceDefined *m =
	    (Trygg__Events__PlaceDefined *)events_unpack(&trygg__events__place_defined__descriptor,
	        ev);
	if (m == NULL) {
		events_log_bad(ev, "undecodable PlaceDefined");
		return TRYGG_EPROTO;
	}
	json_t *g = json_loads(m->geojson ? m->geojson : "", JSON_REJECT_DUPLICATES, NULL);
	const char *type = json_string_value(json_object_get(g, "type"));
	if (!trygg_plain_name(m->slug, 100) || g == NULL || type == NULL ||
	    (strcmp(type, "Polygon") != 0 && strcmp(type, "MultiPolygon") != 0)) {
		json_decref(g);
		events_log_bad(ev, "PlaceDefined without a slug or a Polygon/MultiPolygon");
		envelope_message_free(&m->base);
		return TRYGG_EPROTO;
	}
	json_decref(g);
	const char *name = events_clean_text(m->name, EVENTS_NAME_MAX);
	const char *v[5] = {m->slug, name[0] ? name : m->slug,
	    strcmp(m->slug, r->cfg.district_place) == 0 ? "district" : "place", m->geojson,
	    m->removed ? "true" : "false"};
	db_batch_add(b, SQL_PLACE, 5, v);
	envelope_message_free(&m->base);
	return 0;
}

int
intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	reporting *r = arg;
	if (strcmp(ev->type, "trygg.events.ReportReceived") == 0)
		return apply_report(r, b, ev);
	if (strcmp(ev->type, "trygg.events.PlaceDefined") == 0)
		return apply_place(r, b, ev);
	return 0;
}
