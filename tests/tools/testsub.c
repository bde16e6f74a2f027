/*
 * trygg-testsub: a stand-in subscribing service for the backbone's tests
 * and benchmark. It follows one publisher through an inbox and records
 * each event's effect as a row in testsub.applied, in the same transaction
 * as the inbox cursor, exactly as a real consumer does.
 *
 * fail_on_n makes the effect of the event with that number fail (a poison
 * event), for the fault tests. apply_sql adds one more statement to every
 * event's effect, with $1 = the event's n, so a fault test can make the
 * effect take locks on a table it controls, fail for some events until the
 * test "fixes" them, or violate a deferred constraint at commit.
 *
 * record_all records every event, of any type, with its type and payload
 * (n = 0 for events other than TestEvent), so a test can compare what came
 * over the bus with the publisher's outbox.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "inbox.h"
#include "log.h"
#include "outbox.h"
#include "svc.h"
#include "trygg/testing.pb-c.h"

extern const struct migration testsub_migrations[];

typedef struct testsub_config {
	svc_config common;
	svc_stream_urls stream;
	char *publisher;
	int batch_max;
	int fail_on_n;
	char *apply_sql;
	int queue_max;
	int queue_max_bytes;
	int record_all;
} testsub_config;

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(testsub_config, "8091"),
    /* TRYGG_BUS_TESTPUB_SUB_URL, _REQ_URL, whatever the publisher's name. */
    SVC_STREAM_OPTIONS(testsub_config, stream, "testpub", "tcp://127.0.0.1:5560",
        "tcp://127.0.0.1:5561"),
    CONFIG_OPT_STRING("publisher", testsub_config, publisher, "testpub", 0,
        "whose stream to follow (the name on its envelopes)"),
    CONFIG_OPT_INT("batch_max", testsub_config, batch_max, "500", 1, 10000, 0,
        "events applied per transaction"),
    CONFIG_OPT_INT("fail_on_n", testsub_config, fail_on_n, "0", 0, 2147483647, 0,
        "make the effect of event n fail (tests only; 0: never)"),
    CONFIG_OPT_STRING("apply_sql", testsub_config, apply_sql, "", 0,
        "one more statement in each event's effect, $1 = the event's n (tests only)"),
    CONFIG_OPT_INT("queue_max", testsub_config, queue_max, "0", 0, 1000000, 0,
        "events the inbox holds in memory (0: the inbox's default)"),
    CONFIG_OPT_INT("queue_max_bytes", testsub_config, queue_max_bytes, "0", 0, 1073741824, 0,
        "bytes the inbox holds in memory (0: the inbox's default)"),
    CONFIG_OPT_INT("record_all", testsub_config, record_all, "0", 0, 1, 0,
        "record every event with its type and payload, not only TestEvents (tests only)"),
    CONFIG_END,
};

typedef struct testsub {
	testsub_config cfg;
	svc svc;
} testsub;

static const char SQL_APPLY[] =
    "INSERT INTO applied (publisher, seq, event_id, n, occurred_at, event_type, payload)"
    " VALUES ($1, $2, $3, $4, 'epoch'::timestamptz + $5::bigint * interval '1 microsecond',"
    " $6, $7)";

/* The effect of one event: decode it (it came from the network, so with
 * the capped allocator) and add its row to the batch. */
static int
apply_event(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	testsub *ts = arg;
	ProtobufCMessage *m = NULL;
	uint64_t te_n = 0;
	if (strcmp(ev->type, "trygg.testing.TestEvent") == 0) {
		int rv = envelope_message_unpack(&trygg__testing__test_event__descriptor,
		    ev->payload.data, ev->payload.len, OUTBOX_PAYLOAD_MAX * 2, &m);
		if (rv != 0)
			return rv;
		te_n = ((const Trygg__Testing__TestEvent *)m)->n;
	} else if (!ts->cfg.record_all) {
		return 0; /* not ours to apply: no effect, the cursor still moves */
	}
	char seq[24], n[24], at[24];
	snprintf(seq, sizeof(seq), "%" PRIu64, ev->seq);
	snprintf(n, sizeof(n), "%" PRIu64, te_n);
	snprintf(at, sizeof(at), "%" PRId64, ev->occurred_at_us);
	const char *payload = ev->payload.len ? (const char *)ev->payload.data : "";
	const char *values[7] = {ev->publisher, seq, ev->event_id, n, at,
	    ts->cfg.record_all ? ev->type : NULL, ts->cfg.record_all ? payload : NULL};
	int lengths[7] = {0, 0, 0, 0, 0, 0, (int)ev->payload.len};
	int formats[7] = {0, 0, 0, 0, 0, 0, 1};
	db_batch_addb(b, SQL_APPLY, 7, values, lengths, formats);
	if (m == NULL)
		return 0;
	if (ts->cfg.fail_on_n > 0 && te_n == (uint64_t)ts->cfg.fail_on_n)
		db_batch_add(b, "SELECT 1 / 0", 0, NULL);
	if (ts->cfg.apply_sql != NULL && ts->cfg.apply_sql[0] != '\0') {
		const char *nv[1] = {n};
		db_batch_add(b, ts->cfg.apply_sql, 1, nv);
	}
	envelope_message_free(m);
	return 0;
}

int
main(int argc, char **argv)
{
	static testsub ts;
	svc_options so = {.name = "testsub",
	    .schema = "testsub",
	    .options = options,
	    .config = &ts.cfg,
	    .common = &ts.cfg.common,
	    .migrations = testsub_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&ts.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (svc_consume(&ts.svc,
	        &(svc_stream){.publisher = ts.cfg.publisher,
	            .urls = &ts.cfg.stream,
	            .apply = apply_event,
	            .arg = &ts,
	            .batch_max = (unsigned)ts.cfg.batch_max,
	            .queue_max = (unsigned)ts.cfg.queue_max,
	            .queue_max_bytes = (size_t)ts.cfg.queue_max_bytes}) != 0)
		return svc_abort(&ts.svc);
	return svc_run(&ts.svc);
}
