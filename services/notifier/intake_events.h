/*
 * intake_events.h: the effect of intake's events on the notifier: the
 * consumer of intake's stream.
 *
 * The notifier follows intake's stream through an inbox. For each
 * ReportReceived, intake_events_apply() routes the report (routing.c) and adds
 * one statement, SELECT ingest_report(...), to the inbox's batch: in the
 * same transaction as the inbox cursor it creates the task (or joins the
 * open one for the same place and category), schedules its deliveries and
 * timers and writes TaskOpened (or TaskJoined) to the outbox. A
 * redelivered event is skipped by the cursor, and a report already
 * attached to a task is a no-op besides, so a task is created exactly
 * once. Other event types are skipped.
 */
#ifndef NOTIFIER_INTAKE_EVENTS_H
#define NOTIFIER_INTAKE_EVENTS_H

#include "notifier.h"

/* The inbox_apply_fn; arg is the notifier. */
int intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev) TRYGG_MUSTCHECK;

#endif
