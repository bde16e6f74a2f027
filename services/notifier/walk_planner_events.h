/*
 * walk_planner_events.h: the effect of walk-planner's events on the
 * notifier: the consumer of walk-planner's stream (issue 10).
 *
 * - MailRequested: recorded once per mail_id (request_mail) with one e-mail
 *   delivery, sent by the delivery worker with the same retries, backoff
 *   and dead letters as task e-mails (mail_prepare_message: the attachment
 *   as a MIME part of its own type, e.g. text/calendar; method=REQUEST).
 * - FindingTaskRequested: a walk finding becomes a task routed like a
 *   report whose report_id is the finding_id (ingest_finding); the unit
 *   walk-planner names wins over the routing rules when it is a known,
 *   active unit. The task events name the finding_id as report id.
 * Other event types (WalkUpdated, FindingUpdated, ...) are skipped.
 */
#ifndef NOTIFIER_WALK_PLANNER_EVENTS_H
#define NOTIFIER_WALK_PLANNER_EVENTS_H

#include "notifier.h"

/* The inbox_apply_fn; arg is the notifier. */
int walk_planner_events_apply(void *arg, db_batch *b,
    const Trygg__Bus__Envelope *ev) TRYGG_MUSTCHECK;

#endif
