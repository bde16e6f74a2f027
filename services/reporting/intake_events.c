/*
 * ingest.c: the three inboxes' apply callbacks (reporting.h).
 *
 * Each event becomes one call of a SQL function of sql/001_init.sql
 * (apply_report, apply_task, place_define, apply_walk, apply_finding,
 * apply_survey) in the inbox's batch, so the aggregates move in the same
 * transaction as the inbox cursor: exactly once, whatever is redelivered.
 * Event types a stream carries that reporting does not need have no
 * effect (the cursor still moves). Payloads are untrusted: identifiers
 * that are not plain names, and geometry that is not JSON, make the event
 * fail on its own (recorded in inbox_failed, shown by `admin events`).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "json.h"
#include "log.h"
#include "reporting.h"
#include "sun.h"
#include "trygg/events.pb-c.h"
#include "trygg/walks.pb-c.h"

#define DECODE_MAX (256 * 1024)
#define NAME_MAX_LEN 200
#define DISTRICT_LAT 59.3326
#define DISTRICT_LON 18.0649

/* A slug-like identifier: short, printable, nothing that needs quoting in
 * a Postgres array literal. */
static bool
plain_name(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (c <= ' ' || c == '"' || c == '\\' || c == ',' || c == '{' || c == '}' ||
		    c >= 0x7f)
			return false;
	}
	return n > 0 && n <= max;
}

/* Free text that goes into a text column: valid UTF-8 (jansson checks),
 * bounded; "" when missing or invalid. */
static const char *
clean_text(const char *s, size_t max)
{
	if (s == NULL || strlen(s) > max)
		return "";
	json_t *j = json_string(s);
	if (j == NULL)
		return "";
	json_decref(j);
	return s;
}

/* "{a,b,c}" of the plain names among `v` (others are dropped). */
static char *
text_array(char **v, size_t n, const char *skip)
{
	size_t cap = 3, o = 0;
	for (size_t i = 0; i < n; i++)
		cap += strlen(v[i]) + 1;
	char *out = xmalloc(cap);
	out[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (!plain_name(v[i], 100) || (skip && strcmp(v[i], skip) == 0))
			continue;
		o += (size_t)sprintf(out + o, "%s%s", o > 1 ? "," : "", v[i]);
	}
	out[o++] = '}';
	out[o] = '\0';
	return out;
}

static ProtobufCMessage *
unpack(const ProtobufCMessageDescriptor *d, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m = NULL;
	if (envelope_message_unpack(d, ev->payload.data, ev->payload.len, DECODE_MAX, &m) != 0)
		return NULL;
	return m;
}

static void
log_bad(const Trygg__Bus__Envelope *ev, const char *why)
{
	log_warn("event_invalid", "\"publisher\":\"%s\",\"seq\":%" PRIu64 ",\"reason\":\"%s\"",
	    ev->publisher ? ev->publisher : "", ev->seq, why);
}

static const char SQL_REPORT[] =
    "SELECT apply_report($1, $2, $3, $4, $5, $6::boolean, $7::text[], $8::boolean,"
    " $9::float8, $10::float8, $11::bigint, $12::boolean, $13::int, $14::boolean)";

static int
apply_report(reporting *r, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Events__ReportReceived *m =
	    (Trygg__Events__ReportReceived *)unpack(&trygg__events__report_received__descriptor,
	        ev);
	if (m == NULL) {
		log_bad(ev, "undecodable ReportReceived");
		return TRYGG_EPROTO;
	}
	if (!plain_name(m->report_id, 64) || !plain_name(m->category, 64)) {
		log_bad(ev, "report_id or category not a plain name");
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
	char *places = text_array(m->places, m->n_places, r->cfg.district_place);
	char lat[32], lon[32], at_s[24], target[16];
	snprintf(lat, sizeof(lat), "%.7f", m->lat);
	snprintf(lon, sizeof(lon), "%.7f", m->long_);
	snprintf(at_s, sizeof(at_s), "%" PRId64, at);
	snprintf(target, sizeof(target), "%u", m->response_target_min);
	const char *partner = plain_name(m->partner, NAME_MAX_LEN) ? m->partner : "unknown";
	const char *role = plain_name(m->partner_role, 64) ? m->partner_role : "";
	const char *focus = plain_name(m->focus_area, 64) ? m->focus_area : "other";
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
	    (Trygg__Events__PlaceDefined *)unpack(&trygg__events__place_defined__descriptor, ev);
	if (m == NULL) {
		log_bad(ev, "undecodable PlaceDefined");
		return TRYGG_EPROTO;
	}
	json_t *g = json_loads(m->geojson ? m->geojson : "", JSON_REJECT_DUPLICATES, NULL);
	const char *type = json_string_value(json_object_get(g, "type"));
	if (!plain_name(m->slug, 100) || g == NULL || type == NULL ||
	    (strcmp(type, "Polygon") != 0 && strcmp(type, "MultiPolygon") != 0)) {
		json_decref(g);
		log_bad(ev, "PlaceDefined without a slug or a Polygon/MultiPolygon");
		envelope_message_free(&m->base);
		return TRYGG_EPROTO;
	}
	json_decref(g);
	const char *name = clean_text(m->name, NAME_MAX_LEN);
	const char *v[5] = {m->slug, name[0] ? name : m->slug,
	    strcmp(m->slug, r->cfg.district_place) == 0 ? "district" : "place", m->geojson,
	    m->removed ? "true" : "false"};
	db_batch_add(b, SQL_PLACE, 5, v);
	envelope_message_free(&m->base);
	return 0;
}

int
ingest_intake(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	reporting *r = arg;
	if (strcmp(ev->type, "trygg.events.ReportReceived") == 0)
		return apply_report(r, b, ev);
	if (strcmp(ev->type, "trygg.events.PlaceDefined") == 0)
		return apply_place(r, b, ev);
	return 0;
}

static const char SQL_TASK[] = "SELECT apply_task($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9)";

/* The task event types and what each carries. */
static const struct task_type {
	const char *type;
	const char *kind;
	const ProtobufCMessageDescriptor *desc;
} task_types[] = {
    {"trygg.events.TaskOpened", "opened", &trygg__events__task_opened__descriptor},
    {"trygg.events.TaskDispatched", "dispatched", &trygg__events__task_dispatched__descriptor},
    {"trygg.events.TaskAcknowledged", "acknowledged",
        &trygg__events__task_acknowledged__descriptor},
    {"trygg.events.TaskEscalated", "escalated", &trygg__events__task_escalated__descriptor},
    {"trygg.events.TaskCompleted", "completed", &trygg__events__task_completed__descriptor},
    {"trygg.events.TaskDeclined", "declined", &trygg__events__task_declined__descriptor},
    {"trygg.events.TaskJoined", "joined", &trygg__events__task_joined__descriptor},
};

static const char *
decline_reason(int r)
{
	switch (r) {
	case TRYGG__EVENTS__TASK_DECLINED__REASON__NOT_OURS: return "not_ours";
	case TRYGG__EVENTS__TASK_DECLINED__REASON__DUPLICATE: return "duplicate";
	case TRYGG__EVENTS__TASK_DECLINED__REASON__NO_ACTION: return "no_action";
	default: return "unspecified";
	}
}

int
ingest_notifier(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	reporting *r = arg;
	const struct task_type *tt = NULL;
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(task_types); i++)
		if (strcmp(ev->type, task_types[i].type) == 0)
			tt = &task_types[i];
	if (tt == NULL)
		return 0;
	ProtobufCMessage *m = unpack(tt->desc, ev);
	if (m == NULL) {
		log_bad(ev, "undecodable task event");
		return TRYGG_EPROTO;
	}
	const char *task = "", *report = "", *category = "", *place = "", *unit = "", *owner = "",
	           *reason = "";
	int64_t at = 0;
	switch (tt->kind[0] == 'd' && tt->kind[1] == 'e' ? 'X' : tt->kind[0]) {
	case 'o': {
		Trygg__Events__TaskOpened *e = (Trygg__Events__TaskOpened *)m;
		task = e->task_id;
		report = e->n_report_ids > 0 ? e->report_ids[0] : "";
		category = e->category;
		place = e->place;
		at = e->at_us;
		break;
	}
	case 'd': {
		Trygg__Events__TaskDispatched *e = (Trygg__Events__TaskDispatched *)m;
		task = e->task_id;
		unit = e->unit;
		at = e->at_us;
		break;
	}
	case 'a': {
		Trygg__Events__TaskAcknowledged *e = (Trygg__Events__TaskAcknowledged *)m;
		task = e->task_id;
		unit = e->unit;
		at = e->at_us;
		break;
	}
	case 'e': {
		Trygg__Events__TaskEscalated *e = (Trygg__Events__TaskEscalated *)m;
		task = e->task_id;
		at = e->at_us;
		break;
	}
	case 'c': {
		Trygg__Events__TaskCompleted *e = (Trygg__Events__TaskCompleted *)m;
		task = e->task_id;
		at = e->at_us;
		break;
	}
	case 'X': {
		Trygg__Events__TaskDeclined *e = (Trygg__Events__TaskDeclined *)m;
		task = e->task_id;
		owner = clean_text(e->owner, NAME_MAX_LEN);
		reason = decline_reason(e->reason);
		at = e->at_us;
		break;
	}
	case 'j': {
		Trygg__Events__TaskJoined *e = (Trygg__Events__TaskJoined *)m;
		task = e->task_id;
		report = e->report_id;
		unit = e->unit;
		at = e->at_us;
		break;
	}
	}
	if (!plain_name(task, 64) || (report[0] && !plain_name(report, 64)) ||
	    ((tt->kind[0] == 'o' || tt->kind[0] == 'j') && !plain_name(report, 64))) {
		log_bad(ev, "task event without a plain task or report id");
		envelope_message_free(m);
		return TRYGG_EPROTO;
	}
	if (at <= 0)
		at = ev->occurred_at_us > 0 ? ev->occurred_at_us : trygg_wall_us();
	char at_s[24];
	snprintf(at_s, sizeof(at_s), "%" PRId64, at);
	const char *v[9] = {tt->kind, task, report, plain_name(category, 64) ? category : "",
	    plain_name(place, 100) ? place : "", plain_name(unit, 100) ? unit : "", at_s, owner,
	    reason};
	db_batch_add(b, SQL_TASK, 9, v);
	envelope_message_free(m);
	metric_counter_inc(r->m_tasks);
	return 0;
}

static const char SQL_WALK[] =
    "SELECT apply_walk($1, $2::bigint, $3, $4, $5, $6::bigint, $7::boolean, $8::text[])";
static const char SQL_FINDING[] = "SELECT apply_finding($1, $2::bigint, $3, $4, $5, $6, $7,"
                                  " $8::bigint, $9, $10::bigint, $11::bigint)";
static const char SQL_SURVEY[] =
    "SELECT apply_survey($1, $2::int, $3, $4::boolean, $5::jsonb, $6::jsonb)";

static int
apply_walk(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Walks__WalkUpdated *m =
	    (Trygg__Walks__WalkUpdated *)unpack(&trygg__walks__walk_updated__descriptor, ev);
	if (m == NULL || !plain_name(m->walk_id, 64)) {
		log_bad(ev, "bad WalkUpdated");
		envelope_message_free(m ? &m->base : NULL);
		return TRYGG_EPROTO;
	}
	char **stops = xmalloc((m->n_stops + 1) * sizeof(char *));
	for (size_t i = 0; i < m->n_stops; i++)
		stops[i] = m->stops[i]->place ? m->stops[i]->place : (char *)"";
	char *places = text_array(stops, m->n_stops, NULL);
	free(stops);
	char ver[24], starts[24];
	snprintf(ver, sizeof(ver), "%" PRIu64, m->version);
	snprintf(starts, sizeof(starts), "%" PRId64, m->starts_at_us);
	const char *v[8] = {m->walk_id, ver, plain_name(m->area, 100) ? m->area : "",
	    clean_text(m->title, NAME_MAX_LEN), plain_name(m->status, 64) ? m->status : "planned",
	    starts, m->after_dark ? "true" : "false", places};
	db_batch_add(b, SQL_WALK, 8, v);
	free(places);
	envelope_message_free(&m->base);
	return 0;
}

static int
apply_finding(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Walks__FindingUpdated *m =
	    (Trygg__Walks__FindingUpdated *)unpack(&trygg__walks__finding_updated__descriptor, ev);
	if (m == NULL || !plain_name(m->finding_id, 64) || !plain_name(m->walk_id, 64)) {
		log_bad(ev, "bad FindingUpdated");
		envelope_message_free(m ? &m->base : NULL);
		return TRYGG_EPROTO;
	}
	char ver[24], deadline[24], rec[24], st[24];
	snprintf(ver, sizeof(ver), "%" PRIu64, m->version);
	snprintf(deadline, sizeof(deadline), "%" PRId64, m->deadline_us);
	int64_t recorded = m->recorded_at_us > 0 ? m->recorded_at_us : ev->occurred_at_us;
	snprintf(rec, sizeof(rec), "%" PRId64, recorded);
	snprintf(st, sizeof(st), "%" PRId64, m->status_at_us > 0 ? m->status_at_us : recorded);
	const char *v[11] = {m->finding_id, ver, m->walk_id,
	    plain_name(m->place, 100) ? m->place : "",
	    plain_name(m->category, 64) ? m->category : "other",
	    plain_name(m->status, 64) ? m->status : "proposed",
	    clean_text(m->responsible, NAME_MAX_LEN), deadline,
	    clean_text(m->declined_owner, NAME_MAX_LEN), rec, st};
	db_batch_add(b, SQL_FINDING, 11, v);
	envelope_message_free(&m->base);
	return 0;
}

static int
apply_survey(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Walks__SurveyFiguresLoaded *m = (Trygg__Walks__SurveyFiguresLoaded *)
	    unpack(&trygg__walks__survey_figures_loaded__descriptor, ev);
	if (m == NULL || !plain_name(m->survey, 64)) {
		log_bad(ev, "bad SurveyFiguresLoaded");
		envelope_message_free(m ? &m->base : NULL);
		return TRYGG_EPROTO;
	}
	json_t *areas = json_array(), *figs = json_array();
	int rv = 0;
	for (size_t i = 0; i < m->n_areas && rv == 0; i++) {
		const Trygg__Walks__SurveyArea *a = m->areas[i];
		json_t *g = json_loads(a->geojson ? a->geojson : "", JSON_REJECT_DUPLICATES, NULL);
		const char *type = json_string_value(json_object_get(g, "type"));
		if (!plain_name(a->slug, 100) || type == NULL ||
		    (strcmp(type, "Polygon") != 0 && strcmp(type, "MultiPolygon") != 0)) {
			json_decref(g);
			rv = TRYGG_EPROTO;
			break;
		}
		json_array_append_new(areas,
		    json_pack("{s:s,s:s,s:o}", "slug", a->slug, "name",
		        clean_text(a->name, NAME_MAX_LEN), "geometry", g));
	}
	for (size_t i = 0; i < m->n_figures && rv == 0; i++) {
		const Trygg__Walks__SurveyFigure *f = m->figures[i];
		if (!plain_name(f->area, 100) || !plain_name(f->indicator, 64)) {
			rv = TRYGG_EPROTO;
			break;
		}
		json_array_append_new(figs,
		    json_pack("{s:s,s:s,s:f,s:s,s:I}", "area", f->area, "indicator", f->indicator,
		        "value", f->value, "unit", plain_name(f->unit, 32) ? f->unit : "",
		        "respondents", (json_int_t)f->respondents));
	}
	if (rv == 0) {
		char *ja = tjson_dump(areas, NULL), *jf = tjson_dump(figs, NULL);
		char year[16];
		snprintf(year, sizeof(year), "%d", m->year);
		const char *v[6] = {m->survey, year, clean_text(m->source, 500),
		    m->illustrative ? "true" : "false", ja, jf};
		db_batch_add(b, SQL_SURVEY, 6, v);
		free(ja);
		free(jf);
	} else {
		log_bad(ev, "survey area or figure without a plain slug or polygon");
	}
	json_decref(areas);
	json_decref(figs);
	envelope_message_free(&m->base);
	return rv;
}

int
ingest_walks(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	reporting *r = arg;
	int rv = 0;
	if (strcmp(ev->type, "trygg.walks.WalkUpdated") == 0)
		rv = apply_walk(b, ev);
	else if (strcmp(ev->type, "trygg.walks.FindingUpdated") == 0)
		rv = apply_finding(b, ev);
	else if (strcmp(ev->type, "trygg.walks.SurveyFiguresLoaded") == 0)
		rv = apply_survey(b, ev);
	else
		return 0;
	if (rv == 0)
		metric_counter_inc(r->m_walks);
	return rv;
}
