/*
 * notifier_events.c: walk-planner's consumer of the notifier's stream
 * (through an inbox, like intake_events.c).
 *
 *   TaskOpened      task_opened(): the task of its report (or finding),
 *                   opened/reopened counts per place
 *   TaskJoined      task_joined(): the task of the joining report
 *   TaskAcknowledged, TaskCompleted, TaskDeclined
 *                   task_changed(): findings of the task move to
 *                   accepted, done or declined (FindingUpdated)
 * Other event types move the cursor and nothing else.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "strbuf.h"
#include "trygg/events.pb-c.h"
#include "walk_planner.h"

static const char SQL_OPENED[] = "SELECT task_opened($1, $2::text[], $3, $4, $5::bigint)";
static const char SQL_JOINED[] = "SELECT task_joined($1, $2)";
static const char SQL_CHANGED[] = "SELECT task_changed($1, $2::text[], $3, $4, $5, $6, $7::bigint)";

static void
add_changed(db_batch *b, const char *task, char **ids, size_t n, const char *kind, const char *note,
    const char *reason, const char *owner, int64_t at_us)
{
	strbuf arr = STRBUF_INIT;
	strbuf_append_pg_text_array(&arr, ids, n);
	char ts[24];
	snprintf(ts, sizeof(ts), "%" PRId64, at_us ? at_us : trygg_wall_us());
	const char *v[7] = {task, arr.s, kind, note ? note : "", reason, owner ? owner : "", ts};
	db_batch_add(b, SQL_CHANGED, 7, v);
	strbuf_fini(&arr);
}

int
wp_notifier_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	TRYGG_UNUSED(arg);
	const char *t = ev->type;
	ProtobufCMessage *m = NULL;
	int rv = 0;
	if (strcmp(t, "trygg.events.TaskOpened") == 0) {
		if ((rv = wp_event_unpack(&trygg__events__task_opened__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskOpened *o = (Trygg__Events__TaskOpened *)m;
		strbuf arr = STRBUF_INIT;
		strbuf_append_pg_text_array(&arr, o->report_ids, o->n_report_ids);
		char ts[24];
		snprintf(ts, sizeof(ts), "%" PRId64, o->at_us ? o->at_us : trygg_wall_us());
		const char *v[5] = {o->task_id, arr.s, o->category, o->place, ts};
		db_batch_add(b, SQL_OPENED, 5, v);
		strbuf_fini(&arr);
	} else if (strcmp(t, "trygg.events.TaskJoined") == 0) {
		if ((rv = wp_event_unpack(&trygg__events__task_joined__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskJoined *j = (Trygg__Events__TaskJoined *)m;
		const char *v[2] = {j->task_id, j->report_id};
		db_batch_add(b, SQL_JOINED, 2, v);
	} else if (strcmp(t, "trygg.events.TaskAcknowledged") == 0) {
		if ((rv = wp_event_unpack(&trygg__events__task_acknowledged__descriptor, ev, &m)) !=
		    0)
			return rv;
		Trygg__Events__TaskAcknowledged *a = (Trygg__Events__TaskAcknowledged *)m;
		add_changed(b, a->task_id, a->report_ids, a->n_report_ids, "ack", a->note, NULL,
		    NULL, a->at_us);
	} else if (strcmp(t, "trygg.events.TaskCompleted") == 0) {
		if ((rv = wp_event_unpack(&trygg__events__task_completed__descriptor, ev, &m)) != 0)
			return rv;
		Trygg__Events__TaskCompleted *c = (Trygg__Events__TaskCompleted *)m;
		add_changed(b, c->task_id, c->report_ids, c->n_report_ids, "done", c->note, NULL,
		    NULL, c->at_us);
	} else if (strcmp(t, "trygg.events.TaskDeclined") == 0) {
		if ((rv = wp_event_unpack(&trygg__events__task_declined__descriptor, ev, &m)) != 0)
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
