/*
 * test_intake_import.c: the history import's time parser (import.c) and
 * the ReportReceived fields it relies on (store_pack_event: source,
 * reported_at, closed_at, night at the position or the district centre).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "store.h"
#include "trygg/events.pb-c.h"

static void
parse_time(void **state)
{
	(void)state;
	int64_t us = 0;
	assert_int_equal(import_parse_time("2025-12-10T19:30:00+01:00", &us), 0);
	assert_true(us == INT64_C(1765391400) * 1000000);
	assert_int_equal(import_parse_time("2025-12-10T18:30:00Z", &us), 0);
	assert_true(us == INT64_C(1765391400) * 1000000);
	assert_int_equal(import_parse_time("2025-12-10 13:30-05:00", &us), 0);
	assert_true(us == INT64_C(1765391400) * 1000000);
	assert_int_equal(import_parse_time("2025-12-10T18:30:00.25Z", &us), 0);
	assert_true(us == INT64_C(1765391400) * 1000000 + 250000);
	assert_int_equal(import_parse_time("2024-02-29T00:00:00Z", &us), 0);
	assert_int_equal(import_parse_time("1970-01-01T00:00:00Z", &us), 0);
	assert_true(us == 0);
}

static void
parse_time_refuses(void **state)
{
	(void)state;
	int64_t us;
	const char *bad[] = {"", "2025-12-10", "2025-12-10T19:30:00", "2025-12-10T19:30:00+0100",
	    "2025-13-10T19:30:00Z", "2025-02-29T00:00:00Z", "2025-04-31T00:00:00Z",
	    "2025-12-10T24:00:00Z", "2025-12-10T19:30:00Zjunk", "2025-12-10T19:30:00.Z",
	    "2025-12-10T19:30:0Z", "2025-12-10X19:30:00Z", "1899-12-31T00:00:00Z"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(import_parse_time(bad[i], &us), -1);
}

static Trygg__Events__ReportReceived *
pack(const report_in *r)
{
	size_t len;
	uint8_t *buf = store_pack_event(r, &len);
	Trygg__Events__ReportReceived *ev = trygg__events__report_received__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(ev);
	return ev;
}

static void
event_fields(void **state)
{
	(void)state;
	partner p;
	memset(&p, 0, sizeof(p));
	p.name = "history-import";
	p.role = "staff";
	report_in r;
	memset(&r, 0, sizeof(r));
	strcpy(r.id, "00000000-0000-4000-8000-000000000001");
	r.partner = &p;
	r.category = "litter";
	r.focus_area = "physical_environment";
	r.severity = 2;
	/* Live, no position: reported_at = created, source partner, night at
	 * the centre (22:00 in December is dark in Stockholm). */
	r.created_us = INT64_C(1765400400) * 1000000; /* 2025-12-10T21:00:00Z */
	Trygg__Events__ReportReceived *ev = pack(&r);
	assert_string_equal(ev->source, "partner");
	assert_false(ev->imported);
	assert_true(ev->reported_at_us == r.created_us);
	assert_true(ev->closed_at_us == 0);
	assert_true(ev->night);
	trygg__events__report_received__free_unpacked(ev, NULL);
	/* Imported, at Sergels torg, midsummer noon: day, with its times. */
	r.has_position = true;
	r.lat = 59.3324;
	r.lon = 18.0637;
	r.imported = true;
	r.source = "import";
	r.reported_us = INT64_C(1750500000) * 1000000; /* 2025-06-21T10:00:00Z */
	r.closed_us = r.reported_us + INT64_C(3600) * 1000000;
	ev = pack(&r);
	assert_string_equal(ev->source, "import");
	assert_true(ev->imported);
	assert_true(ev->reported_at_us == r.reported_us);
	assert_true(ev->occurred_at_us == r.created_us);
	assert_true(ev->closed_at_us == r.closed_us);
	assert_false(ev->night);
	trygg__events__report_received__free_unpacked(ev, NULL);
	/* The same place at 02:30 local time in January: night. */
	r.reported_us = INT64_C(1767922200) * 1000000; /* 2026-01-09T01:30:00Z */
	ev = pack(&r);
	assert_true(ev->night);
	trygg__events__report_received__free_unpacked(ev, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_time),
	    cmocka_unit_test(parse_time_refuses),
	    cmocka_unit_test(event_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
