/*
 * events.c: what walk-planner's stream consumers (intake_events.c,
 * notifier_events.c) share: decoding a payload, day or night.
 */
#include "envelope.h"
#include "sun.h"
#include "walk_planner.h"

#define EVENT_CAP (256u * 1024)

int
wp_event_unpack(const ProtobufCMessageDescriptor *d, const Trygg__Bus__Envelope *ev,
    ProtobufCMessage **m)
{
	return envelope_message_unpack(d, ev->payload.data, ev->payload.len, EVENT_CAP, m);
}

bool
wp_night(bool has_position, double lat, double lon, int64_t t_us)
{
	if (!has_position)
		return sun_is_dark(WP_CENTRE_LAT, WP_CENTRE_LONG, t_us);
	return sun_is_dark(lat, lon, t_us);
}
