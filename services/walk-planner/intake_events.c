/*
 * intake_events.c: walk-planner's consumer of intake's stream (through an
 * inbox, so every event has its effect exactly once, in the transaction
 * that moves the cursor).
 *
 *   ReportReceived  report_apply(): +1 in agg_reports and agg_weeks (and
 *                   their running totals, sql/005_prefix_sums.sql) for
 *                   each of its places (or '' without one), category,
 *                   local day and day/night; a place first seen in a
 *                   report is remembered with its position
 *   PlaceDefined    place_define(): the place's polygon and centroid
 * Other event types move the cursor and nothing else.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "strbuf.h"
#include "trygg/events.pb-c.h"
#include "walk_planner.h"

static const char SQL_REPORT[] =
    "SELECT report_apply($1::text[], $2, $3::int, $4::boolean, $5::bigint, $6::float8, $7::float8)";
static const char SQL_PLACE[] = "SELECT place_define($1, $2, $3, $4::boolean, 'event')";

static int
apply_report(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m;
	int rv = wp_event_unpack(&trygg__events__report_received__descriptor, ev, &m);
	if (rv != 0)
		return rv;
	Trygg__Events__ReportReceived *r = (Trygg__Events__ReportReceived *)m;
	int64_t at = r->reported_at_us ? r->reported_at_us : r->occurred_at_us;
	if (at == 0)
		at = trygg_wall_us();
	/* intake sets night with the same sun.h; events from before that
	 * field get it computed here. */
	bool night = r->night || wp_night(r->has_position, r->lat, r->long_, at);
	strbuf places = STRBUF_INIT;
	strbuf_append_pg_text_array(&places, r->places, r->n_places);
	char sev[8], ts[24], la[32], lo[32];
	snprintf(sev, sizeof(sev), "%u", r->severity >= 1 && r->severity <= 5 ? r->severity : 2);
	snprintf(ts, sizeof(ts), "%" PRId64, at);
	snprintf(la, sizeof(la), "%.7f", r->lat);
	snprintf(lo, sizeof(lo), "%.7f", r->long_);
	const char *v[7] = {places.s, r->category && r->category[0] ? r->category : "other", sev,
	    night ? "true" : "false", ts, r->has_position ? la : NULL, r->has_position ? lo : NULL};
	db_batch_add(b, SQL_REPORT, 7, v);
	strbuf_fini(&places);
	envelope_message_free(m);
	return 0;
}

static int
apply_place(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m;
	int rv = wp_event_unpack(&trygg__events__place_defined__descriptor, ev, &m);
	if (rv != 0)
		return rv;
	Trygg__Events__PlaceDefined *p = (Trygg__Events__PlaceDefined *)m;
	const char *v[4] = {p->slug, p->name, p->geojson, p->removed ? "true" : "false"};
	db_batch_add(b, SQL_PLACE, 4, v);
	envelope_message_free(m);
	return 0;
}

int
wp_intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	TRYGG_UNUSED(arg);
	if (strcmp(ev->type, "trygg.events.ReportReceived") == 0)
		return apply_report(b, ev);
	if (strcmp(ev->type, "trygg.events.PlaceDefined") == 0)
		return apply_place(b, ev);
	return 0;
}
