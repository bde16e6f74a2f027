/*
 * test_intake_notifier_events.c: how task events become report status statements
 * (notifier_events.c's inbox apply function), without a database: each event adds
 * the expected number of statements to a batch, bad ids are ignored and a
 * payload that does not decode is refused (recorded as a poison event by
 * the inbox).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "trygg/events.pb-c.h"

static const char *const ID1 = "1cda07ec-88de-44a8-a472-2dd729a3f2ff";

/* Applies one event of `type` with the packed payload; returns the
 * statement count (or the error). */
static int
apply(const char *type, const ProtobufCMessage *m, const uint8_t *raw, size_t rawlen)
{
	uint8_t buf[4096];
	Trygg__Bus__Envelope ev = TRYGG__BUS__ENVELOPE__INIT;
	ev.publisher = "notifier";
	ev.seq = 1;
	ev.event_id = "e";
	ev.type = (char *)type;
	if (m != NULL) {
		ev.payload.len = protobuf_c_message_pack(m, buf);
		ev.payload.data = buf;
	} else {
		ev.payload.len = rawlen;
		ev.payload.data = (uint8_t *)raw;
	}
	db_batch *b = db_batch_new();
	int rv = notifier_events_apply(NULL, b, &ev);
	int n = db_batch_count(b);
	db_batch_free(b);
	return rv != 0 ? rv : n;
}

static void
test_acknowledged_completed_declined(void **state)
{
	(void)state;
	char *ids[2] = {(char *)ID1, "not-a-uuid"};
	Trygg__Events__TaskAcknowledged ack = TRYGG__EVENTS__TASK_ACKNOWLEDGED__INIT;
	ack.task_id = "t";
	ack.n_report_ids = 2;
	ack.report_ids = ids;
	assert_int_equal(apply("trygg.events.TaskAcknowledged", &ack.base, NULL, 0), 1);
	Trygg__Events__TaskCompleted done = TRYGG__EVENTS__TASK_COMPLETED__INIT;
	done.n_report_ids = 1;
	done.report_ids = ids;
	done.note = "fixed\x01 it";
	assert_int_equal(apply("trygg.events.TaskCompleted", &done.base, NULL, 0), 1);
	Trygg__Events__TaskDeclined dec = TRYGG__EVENTS__TASK_DECLINED__INIT;
	dec.n_report_ids = 1;
	dec.report_ids = ids;
	dec.reason = TRYGG__EVENTS__TASK_DECLINED__REASON__DUPLICATE;
	assert_int_equal(apply("trygg.events.TaskDeclined", &dec.base, NULL, 0), 1);
	dec.reason = TRYGG__EVENTS__TASK_DECLINED__REASON__NOT_OURS;
	dec.owner = "Trafikverket";
	assert_int_equal(apply("trygg.events.TaskDeclined", &dec.base, NULL, 0), 1);
	/* A report joining an acknowledged task is acknowledged; joining an
	 * open one changes nothing. */
	Trygg__Events__TaskJoined joined = TRYGG__EVENTS__TASK_JOINED__INIT;
	joined.report_id = (char *)ID1;
	joined.status = "acknowledged";
	assert_int_equal(apply("trygg.events.TaskJoined", &joined.base, NULL, 0), 1);
	joined.status = "dispatched";
	assert_int_equal(apply("trygg.events.TaskJoined", &joined.base, NULL, 0), 0);
}

static void
test_nothing_to_do(void **state)
{
	(void)state;
	/* Only bad ids: no statement. */
	char *bad[1] = {"'; DROP TABLE reports; --"};
	Trygg__Events__TaskCompleted done = TRYGG__EVENTS__TASK_COMPLETED__INIT;
	done.n_report_ids = 1;
	done.report_ids = bad;
	assert_int_equal(apply("trygg.events.TaskCompleted", &done.base, NULL, 0), 0);
	/* Other task events change no report. */
	Trygg__Events__TaskOpened opened = TRYGG__EVENTS__TASK_OPENED__INIT;
	assert_int_equal(apply("trygg.events.TaskOpened", &opened.base, NULL, 0), 0);
	assert_int_equal(apply("trygg.events.ReportReceived", NULL, (const uint8_t *)"x", 1), 0);
}

/* Crews' notes reach the public XML feed: nothing XML cannot carry, no
 * invalid UTF-8, no character cut in half (issue 9). */
static void
test_clean_note(void **state)
{
	(void)state;
	char out[16];
	notifier_events_clean_note("a\x01"
	                           "b\xef\xbf\xbf"
	                           "c\xef\xbf\xbe\xff",
	    out, sizeof(out));
	assert_string_equal(out,
	    "a b\xef\xbf\xbd"
	    "c\xef\xbf\xbd\xef\xbf\xbd");
	notifier_events_clean_note("abcdefghijkl\xc3\xa9\xc3\xa9", out, sizeof(out));
	assert_string_equal(out, "abcdefghijkl\xc3\xa9");
	notifier_events_clean_note(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	notifier_events_clean_note("tab\there", out, sizeof(out));
	assert_string_equal(out, "tab here");
}

static void
test_poison(void **state)
{
	(void)state;
	static const uint8_t garbage[] = {0xff, 0xff, 0xff};
	assert_true(apply("trygg.events.TaskCompleted", NULL, garbage, sizeof(garbage)) < 0);
}

static void
test_by_task_id(void **state)
{
	(void)state;
	/* TaskOpened records the opening report's task; the later events name
	 * only the task and still make one statement each. */
	char *ids[1] = {(char *)ID1};
	Trygg__Events__TaskOpened opened = TRYGG__EVENTS__TASK_OPENED__INIT;
	opened.task_id = "0b7c6d1e-0000-4000-8000-000000000001";
	opened.n_report_ids = 1;
	opened.report_ids = ids;
	assert_int_equal(apply("trygg.events.TaskOpened", &opened.base, NULL, 0), 1);
	Trygg__Events__TaskJoined joined = TRYGG__EVENTS__TASK_JOINED__INIT;
	joined.task_id = opened.task_id;
	joined.report_id = (char *)ID1;
	joined.status = "dispatched";
	assert_int_equal(apply("trygg.events.TaskJoined", &joined.base, NULL, 0), 1);
	joined.status = "acknowledged";
	assert_int_equal(apply("trygg.events.TaskJoined", &joined.base, NULL, 0), 2);
	Trygg__Events__TaskAcknowledged ack = TRYGG__EVENTS__TASK_ACKNOWLEDGED__INIT;
	ack.task_id = opened.task_id;
	assert_int_equal(apply("trygg.events.TaskAcknowledged", &ack.base, NULL, 0), 1);
	Trygg__Events__TaskCompleted done = TRYGG__EVENTS__TASK_COMPLETED__INIT;
	done.task_id = opened.task_id;
	assert_int_equal(apply("trygg.events.TaskCompleted", &done.base, NULL, 0), 1);
	Trygg__Events__TaskDeclined dec = TRYGG__EVENTS__TASK_DECLINED__INIT;
	dec.task_id = "bad id with spaces";
	assert_int_equal(apply("trygg.events.TaskDeclined", &dec.base, NULL, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_acknowledged_completed_declined),
	    cmocka_unit_test(test_nothing_to_do),
	    cmocka_unit_test(test_clean_note),
	    cmocka_unit_test(test_poison),
	    cmocka_unit_test(test_by_task_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
