/*
 * events.c: what reporting's stream consumers (intake_events.c,
 * notifier_events.c, walk_planner_events.c) share; see events.h.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "events.h"
#include "log.h"
#include "util.h"

#define DECODE_MAX (256 * 1024)

/* Free text that goes into a text column: valid UTF-8 (jansson checks),
 * bounded; "" when missing or invalid. */
const char *
events_clean_text(const char *s, size_t max)
{
	if (s == NULL || strlen(s) > max)
		return "";
	json_t *j = json_string(s);
	if (j == NULL)
		return "";
	json_decref(j);
	return s;
}

/* "{a,b,c}" of the plain names among `v` (others are dropped). */
char *
events_text_array(char **v, size_t n, const char *skip)
{
	size_t cap = 3, o = 0;
	for (size_t i = 0; i < n; i++)
		cap += strlen(v[i]) + 1;
	char *out = xmalloc(cap);
	out[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (!trygg_plain_name(v[i], 100) || (skip && strcmp(v[i], skip) == 0))
			continue;
		o += (size_t)sprintf(out + o, "%s%s", o > 1 ? "," : "", v[i]);
	}
	out[o++] = '}';
	out[o] = '\0';
	return out;
}

ProtobufCMessage *
events_unpack(const ProtobufCMessageDescriptor *d, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m = NULL;
	if (envelope_message_unpack(d, ev->payload.data, ev->payload.len, DECODE_MAX, &m) != 0)
		return NULL;
	return m;
}

void
events_log_bad(const Trygg__Bus__Envelope *ev, const char *why)
{
	log_warn("event_invalid", "\"publisher\":\"%s\",\"seq\":%" PRIu64 ",\"reason\":\"%s\"",
	    ev->publisher ? ev->publisher : "", ev->seq, why);
}
