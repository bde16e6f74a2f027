/*
 * walk_planner_events.c: reporting's consumer of walk-planner's stream
 * (reporting.h): WalkUpdated (apply_walk), FindingUpdated (apply_finding)
 * and SurveyFiguresLoaded (apply_survey).
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
#include "json.h"
#include "reporting.h"
#include "trygg/walks.pb-c.h"
#include "util.h"

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
	    (Trygg__Walks__WalkUpdated *)events_unpack(&trygg__walks__walk_updated__descriptor, ev);
	if (m == NULL || !trygg_plain_name(m->walk_id, 64)) {
		events_log_bad(ev, "bad WalkUpdated");
		envelope_message_free(m ? &m->base : NULL);
		return TRYGG_EPROTO;
	}
	char **stops = xmalloc((m->n_stops + 1) * sizeof(char *));
	for (size_t i = 0; i < m->n_stops; i++)
		stops[i] = m->stops[i]->place ? m->stops[i]->place : (char *)"";
	char *places = events_text_array(stops, m->n_stops, NULL);
	free(stops);
	char ver[24], starts[24];
	snprintf(ver, sizeof(ver), "%" PRIu64, m->version);
	snprintf(starts, sizeof(starts), "%" PRId64, m->starts_at_us);
	const char *v[8] = {m->walk_id, ver, trygg_plain_name(m->area, 100) ? m->area : "",
	    events_clean_text(m->title, EVENTS_NAME_MAX),
	    trygg_plain_name(m->status, 64) ? m->status : "planned", starts,
	    m->after_dark ? "true" : "false", places};
	db_batch_add(b, SQL_WALK, 8, v);
	free(places);
	envelope_message_free(&m->base);
	return 0;
}

static int
apply_finding(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Walks__FindingUpdated *m = (Trygg__Walks__FindingUpdated *)
	    events_unpack(&trygg__walks__finding_updated__descriptor, ev);
	if (m == NULL || !trygg_plain_name(m->finding_id, 64) ||
	    !trygg_plain_name(m->walk_id, 64)) {
		events_log_bad(ev, "bad FindingUpdated");
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
	    trygg_plain_name(m->place, 100) ? m->place : "",
	    trygg_plain_name(m->category, 64) ? m->category : "other",
	    trygg_plain_name(m->status, 64) ? m->status : "proposed",
	    events_clean_text(m->responsible, EVENTS_NAME_MAX), deadline,
	    events_clean_text(m->declined_owner, EVENTS_NAME_MAX), rec, st};
	db_batch_add(b, SQL_FINDING, 11, v);
	envelope_message_free(&m->base);
	return 0;
}

static int
apply_survey(db_batch *b, const Trygg__Bus__Envelope *ev)
{
	Trygg__Walks__SurveyFiguresLoaded *m = (Trygg__Walks__SurveyFiguresLoaded *)
	    events_unpack(&trygg__walks__survey_figures_loaded__descriptor, ev);
	if (m == NULL || !trygg_plain_name(m->survey, 64)) {
		events_log_bad(ev, "bad SurveyFiguresLoaded");
		envelope_message_free(m ? &m->base : NULL);
		return TRYGG_EPROTO;
	}
	json_t *areas = json_array(), *figs = json_array();
	int rv = 0;
	for (size_t i = 0; i < m->n_areas && rv == 0; i++) {
		const Trygg__Walks__SurveyArea *a = m->areas[i];
		json_t *g = json_loads(a->geojson ? a->geojson : "", JSON_REJECT_DUPLICATES, NULL);
		const char *type = json_string_value(json_object_get(g, "type"));
		if (!trygg_plain_name(a->slug, 100) || type == NULL ||
		    (strcmp(type, "Polygon") != 0 && strcmp(type, "MultiPolygon") != 0)) {
			json_decref(g);
			rv = TRYGG_EPROTO;
			break;
		}
		json_array_append_new(areas,
		    json_pack("{s:s,s:s,s:o}", "slug", a->slug, "name",
		        events_clean_text(a->name, EVENTS_NAME_MAX), "geometry", g));
	}
	for (size_t i = 0; i < m->n_figures && rv == 0; i++) {
		const Trygg__Walks__SurveyFigure *f = m->figures[i];
		if (!trygg_plain_name(f->area, 100) || !trygg_plain_name(f->indicator, 64)) {
			rv = TRYGG_EPROTO;
			break;
		}
		json_array_append_new(figs,
		    json_pack("{s:s,s:s,s:f,s:s,s:I}", "area", f->area, "indicator", f->indicator,
		        "value", f->value, "unit", trygg_plain_name(f->unit, 32) ? f->unit : "",
		        "respondents", (json_int_t)f->respondents));
	}
	if (rv == 0) {
		char *ja = tjson_dump(areas, NULL), *jf = tjson_dump(figs, NULL);
		char year[16];
		snprintf(year, sizeof(year), "%d", m->year);
		const char *v[6] = {m->survey, year, events_clean_text(m->source, 500),
		    m->illustrative ? "true" : "false", ja, jf};
		db_batch_add(b, SQL_SURVEY, 6, v);
		free(ja);
		free(jf);
	} else {
		events_log_bad(ev, "survey area or figure without a plain slug or polygon");
	}
	json_decref(areas);
	json_decref(figs);
	envelope_message_free(&m->base);
	return rv;
}

int
walk_planner_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
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
