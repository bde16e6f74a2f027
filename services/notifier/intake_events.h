/*
 * intake_events.h: the effect of intake's events on the notifier: the
 * consumer of intake's stream.
 *
 * The notifier follows intake's stream through an inbox. For each
 * ReportReceived, intake_events_apply() routes the report (routing.c) and
 * collects it; the inbox's batch-level hook, intake_events_flush(), then
 * adds one statement for the whole run, SELECT ingest_reports(<the run's
 * reports as JSON>), before the cursor advance (inbox.h). In the same
 * transaction as the inbox cursor, for each report in event order, it
 * creates the task (or joins the open one for the same place and
 * category), schedules its deliveries and timers and writes TaskOpened (or
 * TaskJoined) to the outbox: ingest_report()'s effect, one report at a
 * time, inside one statement (sql/004_batch_ingest.sql). A redelivered
 * event is skipped by the cursor, and a report already attached to a task
 * is a no-op besides, so a task is created exactly once. If the statement
 * fails for good, the inbox applies the run one event per transaction and
 * sets aside only the report that fails alone. Imported history
 * (imported = true) is one INSERT into history_reports per event. Other
 * event types are skipped.
 */
#ifndef NOTIFIER_INTAKE_EVENTS_H
#define NOTIFIER_INTAKE_EVENTS_H

#include "notifier.h"

/* The inbox_apply_fn; arg is the notifier. */
int intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev) TRYGG_MUSTCHECK;

/* The inbox's flush hook (inbox_options.flush); arg is the notifier. Adds
 * SELECT ingest_reports(...) for the reports collected since the last call
 * (nothing if none), then forgets them; with b == NULL only forgets. */
void intake_events_flush(void *arg, db_batch *b);

#endif
