/*
 * test_walk_planner_events.c: the events walk-planner's schema encodes by
 * hand (sql/002_events.sql, 004_admin.sql) are what protobuf-c reads, so
 * the notifier and reporting decode them with the generated code
 * (walks.proto); and intake_events.c and notifier_events.c turn intake's
 * and the notifier's events into the expected statements. Needs
 * TRYGG_TEST_DATABASE_URL for the first part.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pg_support.h"
#include "migrate.h"
#include "trygg/events.pb-c.h"
#include "trygg/walks.pb-c.h"
#include "walk_planner.h"

extern const struct migration walk_planner_migrations[];

static PGconn *conn;

static int
setup(void **state)
{
	(void)state;
	if (db_url == NULL)
		return 0;
	free(admin_exec("DROP SCHEMA IF EXISTS wp_unit CASCADE", 0, NULL));
	free(admin_exec("CREATE SCHEMA wp_unit", 0, NULL));
	if (migrate_apply(db_url, "wp_unit", walk_planner_migrations, 5000) != 0)
		return -1;
	conn = PQconnectdb(db_url);
	PQsetNoticeProcessor(conn, quiet_notice, NULL);
	PQclear(PQexec(conn, "SET search_path = wp_unit"));
	return PQstatus(conn) == CONNECTION_OK ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	PQfinish(conn);
	if (db_url != NULL)
		free(admin_exec("DROP SCHEMA IF EXISTS wp_unit CASCADE", 0, NULL));
	return 0;
}

static void
run(const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/* The payload of the last outbox row of `type`, unpacked. */
static ProtobufCMessage *
last_event(const char *type, const ProtobufCMessageDescriptor *d)
{
	const char *v[1] = {type};
	PGresult *r = PQexecParams(conn,
	    "SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id DESC LIMIT 1", 1, NULL, v,
	    NULL, NULL, 1);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), 1);
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, (size_t)PQgetlength(r, 0, 0),
	    (const uint8_t *)PQgetvalue(r, 0, 0));
	PQclear(r);
	assert_non_null(m);
	return m;
}

static void
test_walk_and_invitation(void **state)
{
	(void)state;
	need_db();
	run("INSERT INTO walks (id, title, area, starts_at, ends_at, after_dark, stops, route_m,"
	    " created_by, organizer, organizer_email) VALUES "
	    "('11111111-1111-4111-8111-111111111111',"
	    " 'Kvällsvandring i Klara', 'city-south', '1969-12-31T22:59:59.999999Z', "
	    "'2026-12-15T16:00:00Z',"
	    " true, '[{\"place\":\"klarakvarteren\",\"name\":\"Klara\",\"lat\":59.3318,"
	    "\"long\":18.059,\"minutes\":10}]', 1234.5, 'lead', 'lead', 'walks@trygg.invalid')");
	run("INSERT INTO invitees (walk_id, name, org, role, email) VALUES"
	    " ('11111111-1111-4111-8111-111111111111', 'Anna Berg', 'District', "
	    "'district_official',"
	    " 'anna@x.invalid')");
	run("SELECT walk_emit('11111111-1111-4111-8111-111111111111'),"
	    " invite_all('11111111-1111-4111-8111-111111111111', 'REQUEST', 'http://h')");
	Trygg__Walks__WalkUpdated *w =
	    (Trygg__Walks__WalkUpdated *)last_event("trygg.walks.WalkUpdated",
	        &trygg__walks__walk_updated__descriptor);
	assert_string_equal(w->walk_id, "11111111-1111-4111-8111-111111111111");
	assert_string_equal(w->title, "Kvällsvandring i Klara");
	assert_int_equal(w->starts_at_us, -3600LL * 1000000 - 1); /* a negative int64 */
	assert_true(w->after_dark);
	assert_int_equal(w->n_stops, 1);
	assert_string_equal(w->stops[0]->place, "klarakvarteren");
	assert_true(fabs(w->stops[0]->lat - 59.3318) < 1e-12);
	assert_int_equal(w->stops[0]->minutes, 10);
	assert_true(fabs(w->route_m - 1234.5) < 1e-9);
	assert_int_equal(w->invitees, 1);
	assert_string_equal(w->status, "planned");
	protobuf_c_message_free_unpacked(&w->base, NULL);

	Trygg__Walks__MailRequested *m =
	    (Trygg__Walks__MailRequested *)last_event("trygg.walks.MailRequested",
	        &trygg__walks__mail_requested__descriptor);
	assert_string_equal(m->to_address, "anna@x.invalid");
	assert_string_equal(m->to_name, "Anna Berg");
	assert_string_equal(m->kind, "invitation");
	assert_string_equal(m->attachment_name, "invite.ics");
	assert_string_equal(m->attachment_type, "text/calendar; method=REQUEST; charset=UTF-8");
	assert_int_equal(strlen(m->mail_id), 36);
	assert_non_null(strstr(m->body_text, "http://h/v1/rsvp?i="));
	char *ics = strndup((const char *)m->attachment.data, m->attachment.len);
	assert_non_null(strstr(ics, "\r\nMETHOD:REQUEST\r\n"));
	assert_non_null(strstr(ics, "\r\nUID:walk-11111111-1111-4111-8111-111111111111@trygg\r\n"));
	free(ics);
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void
test_finding_events(void **state)
{
	(void)state;
	need_db();
	run("INSERT INTO findings (id, walk_id, stop_index, place, category, severity, scores,"
	    " description, lat, long, night, responsible_kind, responsible, deadline, idem_key,"
	    " idem_hash) VALUES ('22222222-2222-4222-8222-222222222222',"
	    " '11111111-1111-4111-8111-111111111111', 0, 'klarakvarteren', 'lighting', 4,"
	    " '{3,2,-1,0,-1,-1,-1,-1,1}', 'Mörk gång', 59.3303, 18.0586, true, 'district_unit',"
	    " 'park-north', '2027-05-30', 'k', 'h')");
	run("SELECT finding_emit('22222222-2222-4222-8222-222222222222'),"
	    " finding_task_emit('22222222-2222-4222-8222-222222222222')");
	Trygg__Walks__FindingUpdated *f =
	    (Trygg__Walks__FindingUpdated *)last_event("trygg.walks.FindingUpdated",
	        &trygg__walks__finding_updated__descriptor);
	assert_string_equal(f->finding_id, "22222222-2222-4222-8222-222222222222");
	assert_int_equal(f->version, 1);
	assert_int_equal(f->n_scores, 9);
	uint32_t want[9] = {3, 2, 4, 0, 4, 4, 4, 4, 1}; /* 4: not scored */
	for (int i = 0; i < 9; i++)
		assert_int_equal(f->scores[i], want[i]);
	assert_true(f->has_position);
	assert_true(fabs(f->long_ - 18.0586) < 1e-12);
	assert_true(f->night);
	assert_string_equal(f->description, "Mörk gång");
	assert_string_equal(f->status, "proposed");
	/* 2027-05-30 00:00 in Stockholm (CEST) */
	assert_int_equal(f->deadline_us, 1811628000LL * 1000000);
	protobuf_c_message_free_unpacked(&f->base, NULL);
	Trygg__Walks__FindingTaskRequested *t =
	    (Trygg__Walks__FindingTaskRequested *)last_event("trygg.walks.FindingTaskRequested",
	        &trygg__walks__finding_task_requested__descriptor);
	assert_string_equal(t->finding_id, "22222222-2222-4222-8222-222222222222");
	assert_string_equal(t->unit, "park-north");
	assert_int_equal(t->severity, 4);
	assert_string_equal(t->place, "klarakvarteren");
	protobuf_c_message_free_unpacked(&t->base, NULL);
}

static void
test_survey_event(void **state)
{
	(void)state;
	need_db();
	run("SELECT survey_load(E'area,indicator,value,unit,respondents\\n"
	    "a,worry_late_evening,31.5,percent,812\\na,police_index,2.6,index\\n',"
	    " '{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":"
	    "{\"slug\":\"a\",\"name\":\"Area "
	    "A\"},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
	    "[[[18,59],[18.1,59],[18.1,59.1],[18,59]]]}}]}', 'trygghetsmatning', 2025, true, "
	    "'demo')");
	Trygg__Walks__SurveyFiguresLoaded *s =
	    (Trygg__Walks__SurveyFiguresLoaded *)last_event("trygg.walks.SurveyFiguresLoaded",
	        &trygg__walks__survey_figures_loaded__descriptor);
	assert_string_equal(s->survey, "trygghetsmatning");
	assert_int_equal(s->year, 2025);
	assert_true(s->illustrative);
	assert_int_equal(s->n_areas, 1);
	assert_string_equal(s->areas[0]->name, "Area A");
	assert_int_equal(s->n_figures, 2);
	assert_string_equal(s->figures[0]->indicator, "police_index");
	assert_true(fabs(s->figures[1]->value - 31.5) < 1e-12);
	assert_int_equal(s->figures[1]->respondents, 812);
	protobuf_c_message_free_unpacked(&s->base, NULL);
}

/* intake_events.c, notifier_events.c: one statement per event they
 * follow, none for others, and a payload that does not decode is refused
 * (a poison event). */
static int
ingest(int (*fn)(void *, db_batch *, const Trygg__Bus__Envelope *), const char *type,
    const ProtobufCMessage *m, const char *raw)
{
	uint8_t buf[4096];
	Trygg__Bus__Envelope ev = TRYGG__BUS__ENVELOPE__INIT;
	ev.type = (char *)type;
	if (m) {
		ev.payload.len = protobuf_c_message_pack(m, buf);
		ev.payload.data = buf;
	} else {
		ev.payload.len = strlen(raw);
		ev.payload.data = (uint8_t *)raw;
	}
	db_batch *b = db_batch_new();
	int rv = fn(NULL, b, &ev);
	int n = db_batch_count(b);
	db_batch_free(b);
	return rv != 0 ? -1 : n;
}

static void
test_ingest_statements(void **state)
{
	(void)state;
	Trygg__Events__ReportReceived r = TRYGG__EVENTS__REPORT_RECEIVED__INIT;
	char *places[2] = {"a\"b", "c"};
	r.category = "litter";
	r.places = places;
	r.n_places = 2;
	assert_int_equal(ingest(wp_intake_events_apply, "trygg.events.ReportReceived", &r.base,
	                     NULL),
	    1);
	assert_int_equal(ingest(wp_intake_events_apply, "trygg.events.Other", &r.base, NULL), 0);
	assert_int_equal(ingest(wp_intake_events_apply, "trygg.events.ReportReceived", NULL,
	                     "\xff\xff"),
	    -1);
	Trygg__Events__TaskDeclined d = TRYGG__EVENTS__TASK_DECLINED__INIT;
	d.task_id = "t";
	assert_int_equal(ingest(wp_notifier_events_apply, "trygg.events.TaskDeclined", &d.base,
	                     NULL),
	    1);
	assert_int_equal(ingest(wp_notifier_events_apply, "trygg.events.TaskEscalated", &d.base,
	                     NULL),
	    0);
	/* night: 23:00 UTC in December is dark in Stockholm, 11:00 UTC is not */
	assert_true(wp_night(false, 0, 0, 1797375600LL * 1000000));
	assert_false(wp_night(true, 59.33, 18.06, 1797332400LL * 1000000));
}

int
main(void)
{
	db_url = getenv("TRYGG_TEST_DATABASE_URL");
	if (db_url != NULL && *db_url == '\0')
		db_url = NULL;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_walk_and_invitation),
	    cmocka_unit_test(test_finding_events),
	    cmocka_unit_test(test_survey_event),
	    cmocka_unit_test(test_ingest_statements),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
