/*
 * walk_planner.h: trygg-walk-planner, the safety-walk planner (issue 10;
 * docs/walk-planner.md).
 *
 * The service keeps its own view of what happens (report and task
 * aggregates from intake's and the notifier's streams: one consumer file
 * per stream, intake_events.c and notifier_events.c), ranks
 * hotspots, proposes walks, and runs their lifecycle, findings and
 * protocol over HTTP (api.c). The domain logic lives in its schema's
 * functions (sql/): each request is one call of api(), so a change and
 * the events it publishes commit together. `trygg-walk-planner admin ...`
 * is the operator's command line (admin.c).
 */
#ifndef WALK_PLANNER_H
#define WALK_PLANNER_H

#include "svc.h"

/* The district's centre: sunset for walks after dark, and day or night
 * of a report that has no position. */
#define WP_CENTRE_LAT 59.3326
#define WP_CENTRE_LONG 18.0649

typedef struct wp_config {
	svc_config common;
	svc_stream_urls intake;   /* TRYGG_BUS_INTAKE_SUB_URL, _REQ_URL */
	svc_stream_urls notifier; /* TRYGG_BUS_NOTIFIER_SUB_URL, _REQ_URL */
	char *public_url;
	char *organizer_email;
	int detour_percent;
	int speed_m_per_h;
	int max_length_m;
	int max_minutes;
	int stop_minutes;
	uint64_t after_sunset_ms;
	uint64_t day_start_ms;
} wp_config;

typedef struct walk_planner {
	wp_config cfg;
	svc svc;
	char *cfg_json; /* the route settings api() reads, as a JSON object */
} walk_planner;

/* Routes of the HTTP API (api.c). Returns 0 or TRYGG_EINVAL. */
int wp_api_register(walk_planner *wp) TRYGG_MUSTCHECK;

/* The effects of intake's events (intake_events.c) and of the notifier's
 * (notifier_events.c); see inbox_apply_fn. */
int wp_intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);
int wp_notifier_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);

/* Decodes an event's payload as a message of type d (events.c); see
 * envelope_message_unpack(). */
int wp_event_unpack(const ProtobufCMessageDescriptor *d, const Trygg__Bus__Envelope *ev,
    ProtobufCMessage **m);

/* True if `t_us` is after dark at lat/long, or at the district's centre
 * when has_position is false (events.c). */
bool wp_night(bool has_position, double lat, double lon, int64_t t_us);

/* `trygg-walk-planner admin ...` (admin.c). Returns the exit code. */
int wp_admin_main(int argc, char **argv);

#endif
