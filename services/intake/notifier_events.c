/*
 * notifier_events.c: report status from the notifier's task events: the
 * apply function of intake's inbox on the notifier's stream (main.c wires
 * it with svc_consume).
 *
 * The notifier publishes the life of each task (TaskOpened ...
 * TaskCompleted). TaskOpened names the report that opened the task and
 * TaskJoined the one that joined it: intake records the task of each
 * report (report_tasks); the other events name only the task, and are
 * applied to its reports through report_tasks (and, for events published before
 * that change, to the report_ids they list). intake follows that stream
 * through an inbox, so each event changes status exactly once, in the
 * same transaction as the inbox cursor:
 *   TaskOpened        the report's task (report_tasks)
 *   TaskAcknowledged  open|in_progress -> acknowledged
 *   TaskCompleted     -> closed, close_reason fixed, status_notes = note
 *   TaskDeclined      -> closed, close_reason not_ours|duplicate|no_action
 *                        (status_notes: the note, else "Handled by <owner>")
 *   TaskJoined        the joining report's task, and the task's state:
 *                        acknowledged if the task already is
 * A closed report stays closed (a late acknowledgement does not reopen
 * it). Other task events have no effect on reports.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "render.h"
#include "trygg/events.pb-c.h"

#define EVENT_CAP (256u * 1024)
#define MAX_IDS 1000

/* $1: report ids (a literal array, maybe empty), $N: the task id (maybe
 * NULL): the reports of the task (report_tasks), and those named. */
static const char SQL_ACK[] =
    "UPDATE reports SET status = 'acknowledged', updated_at = now(),"
    " status_notes = coalesce(nullif($2, ''), status_notes)"
    " WHERE (id = ANY($1::uuid[]) OR id IN (SELECT report_id FROM report_tasks WHERE task_id = $3))"
    " AND status IN ('open', 'in_progress')";
static const char SQL_CLOSE[] =
    "UPDATE reports SET status = 'closed', close_reason = $2, updated_at = now(),"
    " status_notes = nullif($3, '')"
    " WHERE (id = ANY($1::uuid[]) OR id IN (SELECT report_id FROM report_tasks WHERE task_id = $4))"
    " AND status <> 'closed'";
/* An insert into a small table, not an UPDATE of the report row (see
 * sql/005_report_tasks.sql). */
static const char SQL_TASK[] = "INSERT INTO report_tasks (task_id, report_id)"
                               " SELECT $2, unnest($1::uuid[]) ON CONFLICT DO NOTHING";

/* The task id as sent by the notifier (a UUID; anything short and plain is
 * kept), or NULL: then only the listed reports are touched. */
static const char *
task_of(const char *id)
{
	if (id == NULL || id[0] == '\0' || strlen(id) > 64)
		return NULL;
	for (const char *p = id; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return NULL;
	return id;
}

/* Builds a Postgres array literal of the ids that are UUIDs (at most
 * MAX_IDS of them are looked at); returns NULL if there are none (nothing
 * to do). */
static char *
uuid_array(char **ids, size_t n)
{
	if (n > MAX_IDS)
		n = MAX_IDS;
	char **ok = xmalloc((n + 1) * sizeof(*ok));
	size_t used = 0;
	for (size_t i = 0; i < n; i++)
		if (ids[i] != NULL && trygg_uuid_valid(ids[i]))
			ok[used++] = ids[i];
	char *out = NULL;
	if (used > 0) {
		strbuf b = STRBUF_INIT;
		strbuf_append_pg_text_array(&b, ok, used);
		out = strbuf_steal(&b);
	}
	free(ok);
	return out;
}

/* Notes come from another service but end up in public Open311 output,
 * XML included: keep them short, valid UTF-8 and printable. Control
 * characters become spaces; bytes that are not UTF-8 and characters XML
 * cannot carry (U+FFFE, U+FFFF) become U+FFFD; the cut at len never splits
 * a character. */
void
notifier_events_clean_note(const char *in, char *out, size_t len)
{
	size_t o = 0, n = in ? strlen(in) : 0;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = trygg_utf8_decode(in + i, n - i, &cp);
		const char *rep = NULL;
		if (l == 0) {
			rep = "\xef\xbf\xbd";
			l = 1;
		} else if (cp < 0x20 || cp == 0x7f) {
			rep = " ";
		} else if (!trygg_xml_char(cp)) {
			rep = "\xef\xbf\xbd";
		}
		size_t w = rep ? strlen(rep) : l;
		if (o + w + 1 > len)
			break;
		memcpy(out + o, rep ? rep : in + i, w);
		o += w;
		i += l;
	}
	out[o] = '\0';
}

int
notifier_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	(void)arg;
	const ProtobufCMessageDescriptor *desc;
	if (strcmp(ev->type, "trygg.events.TaskOpened") == 0)
		desc = &trygg__events__task_opened__descriptor;
	else if (strcmp(ev->type, "trygg.events.TaskAcknowledged") == 0)
		desc = &trygg__events__task_acknowledged__descriptor;
	else if (strcmp(ev->type, "trygg.events.TaskCompleted") == 0)
		desc = &trygg__events__task_completed__descriptor;
	else if (strcmp(ev->type, "trygg.events.TaskDeclined") == 0)
		desc = &trygg__events__task_declined__descriptor;
	else if (strcmp(ev->type, "trygg.events.TaskJoined") == 0)
		desc = &trygg__events__task_joined__descriptor;
	else
		return 0; /* not a status change: the cursor still moves */
	ProtobufCMessage *m;
	int rv = envelope_message_unpack(desc, ev->payload.data, ev->payload.len, EVENT_CAP, &m);
	if (rv != 0)
		return rv;
	char note[1001];
	char *ids = NULL;
	if (desc == &trygg__events__task_opened__descriptor) {
		Trygg__Events__TaskOpened *t = (Trygg__Events__TaskOpened *)m;
		const char *task = task_of(t->task_id);
		ids = uuid_array(t->report_ids, t->n_report_ids);
		const char *v[2] = {ids, task};
		if (ids && task)
			db_batch_add(b, SQL_TASK, 2, v);
	} else if (desc == &trygg__events__task_acknowledged__descriptor) {
		Trygg__Events__TaskAcknowledged *t = (Trygg__Events__TaskAcknowledged *)m;
		const char *task = task_of(t->task_id);
		ids = uuid_array(t->report_ids, t->n_report_ids);
		notifier_events_clean_note(t->note, note, sizeof(note));
		const char *v[3] = {ids ? ids : "{}", note, task};
		if (ids || task)
			db_batch_add(b, SQL_ACK, 3, v);
	} else if (desc == &trygg__events__task_completed__descriptor) {
		Trygg__Events__TaskCompleted *t = (Trygg__Events__TaskCompleted *)m;
		const char *task = task_of(t->task_id);
		ids = uuid_array(t->report_ids, t->n_report_ids);
		notifier_events_clean_note(t->note, note, sizeof(note));
		const char *v[4] = {ids ? ids : "{}", "fixed", note, task};
		if (ids || task)
			db_batch_add(b, SQL_CLOSE, 4, v);
	} else if (desc == &trygg__events__task_joined__descriptor) {
		Trygg__Events__TaskJoined *t = (Trygg__Events__TaskJoined *)m;
		const char *task = task_of(t->task_id);
		char *one[1] = {t->report_id};
		ids = uuid_array(one, 1);
		const char *vt[2] = {ids, task};
		if (ids && task)
			db_batch_add(b, SQL_TASK, 2, vt);
		const char *v[3] = {ids, "", NULL};
		if (ids && t->status != NULL && strcmp(t->status, "acknowledged") == 0)
			db_batch_add(b, SQL_ACK, 3, v);
	} else {
		Trygg__Events__TaskDeclined *t = (Trygg__Events__TaskDeclined *)m;
		const char *task = task_of(t->task_id);
		ids = uuid_array(t->report_ids, t->n_report_ids);
		notifier_events_clean_note(t->note, note, sizeof(note));
		if (note[0] == '\0' && t->owner != NULL && t->owner[0] != '\0') {
			char owner[900];
			notifier_events_clean_note(t->owner, owner, sizeof(owner));
			snprintf(note, sizeof(note), "Handled by %s", owner);
		}
		const char *reason = t->reason == TRYGG__EVENTS__TASK_DECLINED__REASON__NOT_OURS
		    ? "not_ours"
		    : t->reason == TRYGG__EVENTS__TASK_DECLINED__REASON__DUPLICATE ? "duplicate"
		                                                                   : "no_action";
		const char *v[4] = {ids ? ids : "{}", reason, note, task};
		if (ids || task)
			db_batch_add(b, SQL_CLOSE, 4, v);
	}
	free(ids);
	envelope_message_free(m);
	return 0;
}
