/*
 * ingest.c: walk-planner's own view of what happens, from intake's and the
 * notifier's streams (each through an inbox, so every event has its effect
 * exactly once, in the transaction that moves the cursor).
 *
 *   intake    ReportReceived  report_apply(): +1 in agg_reports for each of
 *                             its places (or '' without one), category,
 *                             local day and day/night; a place first seen
 *                             in a report is remembered with its position
 *             PlaceDefined    place_define(): the place's polygon and centroid
 *   notifier  TaskOpened      task_opened(): the task of its report (or
 *                             finding), opened/reopened counts per place
 *             TaskJoined      task_joined(): the task of the joining report
 *             TaskAcknowledged, TaskCompleted, TaskDeclined
 *                             task_changed(): findings of the task move to
 *                             accepted, done or declined (FindingUpdated)
 * Other event types move the cursor and nothing else.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "sun.h"
#include "trygg/events.pb-c.h"
#include "walk_planner.h"

#define EVENT_CAP (256u * 1024)

static const char SQL_REPORT[] =
    "SELECT report_apply($1::text[], $2, $3::int, $4::boolean, $5::bigint, $6::float8, $7::float8)";
static const char SQL_PLACE[] = "SELECT place_define($1, $2, $3, $4::boolean, 'event')";
static const char SQL_OPENED[] = "SELECT task_opened($1, $2::text[], $3, $4, $5::bigint)";
static const char SQL_JOINED[] = "SELECT task_joined($1, $2)";
static const char SQL_CHANGED[] = "SELECT task_changed($1, $2::text[], $3, $4, $5, $6, $7::bigint)";

bool
wp_night(bool has_position, double lat, double lon, int64_t t_us)
{
	if (!has_position)
		return sun_is_dark(WP_CENTRE_LAT, WP_CENTRE_LONG, t_us);
	return sun_is_dark(lat, lon, t_us);
}

/* A Postgres text[] literal of n strings, each quoted and escaped. */
static char *
text_array(char **v, size_t n)
{
	size_t cap = 3;
	for (size_t i = 0; i < n; i++)
		cap += 2 * (v[i] ? strlen(v[i]) : 0) + 3;
	char *out = xmalloc(cap), *o = out;
	*o++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*o++ = ',';
		*o++ = '"';
		for (const char *p = v[i] ? v[i] : ""; *p; p++) {
			if (*p == '"' || *p == '\\')
				*o++ = '\\';
			*o++ = *p;
		}
		*o++ = '"';
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

static int
unpack(const ProtobufCMessageDescriptor *d, const Trygg__Bus__Envelope *ev, ProtobufCMessage **m)
{
	return envelope_message_unpack(d, ev->payload.data, ev->payload.len, EVENT_CAP, m);
}

static int
apply_report(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m;
	int rv = unpack(&trygg__events__report_received__descriptor, ev, &m);
	if (rv != 0)
		return rv;
	Trygg__Events__ReportReceived *r = (Trygg__Events__ReportReceived *)m;
	int64_t at = r->reported_at_us ? r->reported_at_us : r->occurred_at_us;
	if (at == 0)
		at = trygg_wall_us();
	/* intake sets night with the same sun.h; events from before that
	 * field get it computed here. */
	bool night = r->night || wp_night(r->has_position, r->lat, r->long_, at);
	char *places = text_array(r->places, r->n_places);
	char sev[8], ts[24], la[32], lo[32];
	snprintf(sev, sizeof(sev), "%u", r->severity >= 1 && r->severity <= 5 ? r->severity : 2);
	snprintf(ts, sizeof(ts), "%" PRId64, at);
	snprintf(la, sizeof(la), "%.7f", r->lat);
	snprintf(lo, sizeof(lo), "%.7f", r->long_);
	const char *v[7] = {places, r->category && r->category[0] ? r->category : "other", sev,
	    night ? "true" : "false", ts, r->has_position ? la : NULL, r->has_position ? lo : NULL};
	db_batch_add(b, SQL_REPORT, 7, v);
	free(places);
	envelope_message_free(m);
	return 0;
}

static int
apply_place(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m;
	int rv = unpack(&trygg__events__place_defined__descriptor, ev, &m);
	if (rv != 0)
		return rv;
	Trygg__Events__PlaceDefined *p = (Trygg__Events__PlaceDefined *)m;
	const char *v[4] = {p->slug, p->name, p->geojson, p->removed ? "true" : "false"};
	db_batch_add(b, SQL_PLACE, 4, v);
	envelope_message_free(m);
	return 0;
}

int
wp_ingest_intake(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	TRYGG_UNUSED(arg);
	if (strcmp(ev->type, "trygg.events.ReportReceived") == 0)
		return apply_report(b, ev);
	if (strcmp(ev->type, "trygg.events.PlaceDefined") == 0)
		return apply_place(b, ev);
	return 0;
}

static void
add_changed(db_batch *b, const char *task, char **ids, size_t n, const char *kind, const char *note,
    const char *reason, const char *owner, int64_t at_us)
{
	char *arr = text_array(ids, n);
	char ts[24];
	snprintf(ts, sizeof(ts), "%" PRId64, at_us ? at_us : trygg_wall_us());
	const char *v[7] = {task, arr, kind, note ? note : "", reason, owner ? owner : "", ts};
	db_batch_add(b, SQL_CHANGED, 7, v);
	free(arr);
}

int
wp_ingest_notifier(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	TRYGG_UNUSED(arg);
	const char *t = ev->type;
	ProtobufCMessage *m = NULL;
	int rv = 0;
	if (strcmp(t, "trygg.events.TaskOpened") == 0) {
		if ((rv = unpack(&trygg__events__task_opened__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskOpened *o = (Trygg__Events__TaskOpened *)m;
		char *arr = text_array(o->report_ids, o->n_report_ids);
		char ts[24];
		snprintf(ts, sizeof(ts), "%" PRId64, o->at_us ? o->at_us : trygg_wall_us());
		const char *v[5] = {o->task_id, arr, o->category, o->place, ts};
		db_batch_add(b, SQL_OPENED, 5, v);
		free(arr);
	} else if (strcmp(t, "trygg.events.TaskJoined") == 0) {
		if ((rv = unpack(&trygg__events__task_joined__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskJoined *j = (Trygg__Events__TaskJoined *)m;
		const char *v[2] = {j->task_id, j->report_id};
		db_batch_add(b, SQL_JOINED, 2, v);
	} else if (strcmp(t, "trygg.events.TaskAcknowledged") == 0) {
		if ((rv = unpack(&trygg__events__task_acknowledged__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskAcknowledged *a = (Trygg__Events__TaskAcknowledged *)m;
		add_changed(b, a->task_id, a->report_ids, a->n_report_ids, "ack", a->note, NULL,
		    NULL, a->at_us);
	} else if (strcmp(t, "trygg.events.TaskCompleted") == 0) {
		if ((rv = unpack(&trygg__events__task_completed__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskCompleted *c = (Trygg__Events__TaskCompleted *)m;
		add_changed(b, c->task_id, c->report_ids, c->n_report_ids, "done", c->note, NULL,
		    NULL, c->at_us);
	} else if (strcmp(t, "trygg.events.TaskDeclined") == 0) {
		if ((rv = unpack(&trygg__events__task_declined__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskDeclined *d = (Trygg__Events__TaskDeclined *)m;
		const char *reason = d->reason == TRYGG__EVENTS__TASK_DECLINED__REASON__NOT_OURS
		    ? "not ours"
		    : d->reason == TRYGG__EVENTS__TASK_DECLINED__REASON__DUPLICATE ? "duplicate"
		                                                                   : "no action";
		add_changed(b, d->task_id, d->report_ids, d->n_report_ids, "declined", d->note,
		    reason, d->owner, d->at_us);
	}
	envelope_message_free(m);
	return 0;
}
