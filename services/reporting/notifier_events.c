/*
 * notifier_events.c: reporting's consumer of the notifier's stream
 * (reporting.h): the task events (apply_task).
 *
 * Each event becomes one call of a SQL function of sql/001_init.sql in the
 * inbox's batch, so the aggregates move in the same transaction as the
 * inbox cursor: exactly once, whatever is redelivered. Event types the
 * stream carries that reporting does not need have no effect (the cursor
 * still moves). Payloads are untrusted (events.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "events.h"
#include "reporting.h"
#include "trygg/events.pb-c.h"
#include "util.h"

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
notifier_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	reporting *r = arg;
	const struct task_type *tt = NULL;
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(task_types); i++)
		if (strcmp(ev->type, task_types[i].type) == 0)
			tt = &task_types[i];
	if (tt == NULL)
		return 0;
	ProtobufCMessage *m = events_unpack(tt->desc, ev);
	if (m == NULL) {
		events_log_bad(ev, "undecodable task event");
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
		owner = events_clean_text(e->owner, EVENTS_NAME_MAX);
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
	if (!trygg_plain_name(task, 64) || (report[0] && !trygg_plain_name(report, 64)) ||
	    ((tt->kind[0] == 'o' || tt->kind[0] == 'j') && !trygg_plain_name(report, 64))) {
		events_log_bad(ev, "task event without a plain task or report id");
		envelope_message_free(m);
		return TRYGG_EPROTO;
	}
	if (at <= 0)
		at = ev->occurred_at_us > 0 ? ev->occurred_at_us : trygg_wall_us();
	char at_s[24];
	snprintf(at_s, sizeof(at_s), "%" PRId64, at);
	const char *v[9] = {tt->kind, task, report, trygg_plain_name(category, 64) ? category : "",
	    trygg_plain_name(place, 100) ? place : "", trygg_plain_name(unit, 100) ? unit : "",
	    at_s, owner, reason};
	db_batch_add(b, SQL_TASK, 9, v);
	envelope_message_free(m);
	metric_counter_inc(r->m_tasks);
	return 0;
}
