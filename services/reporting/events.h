/*
 * events.h: what reporting's stream consumers share (events.c): one
 * consumer file per stream, intake_events.c, notifier_events.c and
 * walk_planner_events.c, each with its inbox apply callback (reporting.h).
 *
 * Payloads are untrusted: identifiers that are not plain names, and
 * geometry that is not JSON, make the event fail on its own (recorded in
 * inbox_failed, shown by `admin events`; events_log_bad() says why).
 */
#ifndef REPORTING_EVENTS_H
#define REPORTING_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "envelope.h"

/* Longest name or free text kept from an event (owner, title, ...). */
#define EVENTS_NAME_MAX 200

/* s if it is valid UTF-8 of at most max bytes, else "" (also for NULL). */
const char *events_clean_text(const char *s, size_t max);

/* "{a,b,c}" of the plain names among `v` but `skip` (others are dropped),
 * unquoted; the caller frees it. */
char *events_text_array(char **v, size_t n, const char *skip);

/* The event's payload decoded as a message of type d, or NULL. */
ProtobufCMessage *events_unpack(const ProtobufCMessageDescriptor *d,
    const Trygg__Bus__Envelope *ev);

/* Logs event_invalid with the event's publisher, seq and why. */
void events_log_bad(const Trygg__Bus__Envelope *ev, const char *why);

#endif
