/*
 * timers.h: acknowledgement reminders and escalations.
 *
 * The timers themselves are rows of the timers table, written in the same
 * transaction as the task they belong to (created with the task, removed
 * by acknowledge and done), so they survive restarts. A uv_timer fires
 * every timer_interval and runs fire_timers() in one transaction: a due
 * ack_reminder sends the unit a reminder and arms ack_escalation; a due
 * ack_escalation or completion_escalation escalates to the unit's
 * supervisor and publishes TaskEscalated.
 */
#ifndef NOTIFIER_TIMERS_H
#define NOTIFIER_TIMERS_H

#include "notifier.h"

int task_timers_start(notifier *n, task_timers **out) TRYGG_MUSTCHECK;

/* Stops; frees from the close callback after the last query. Accepts NULL. */
void task_timers_stop(task_timers *t);

#endif
