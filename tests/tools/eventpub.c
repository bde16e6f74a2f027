/*
 * trygg-eventpub: a stand-in publisher of arbitrary events, for tests that
 * need a service's stream without the service (reporting's tests publish
 * as "intake", "notifier" and "walk-planner" at once, with the times they
 * choose).
 *
 * It is the common runtime's outbox relay and nothing else: a test writes
 * rows into <schema>.outbox (event_type, payload: the protobuf bytes) and
 * the relay sequences, publishes and replays them exactly as a real
 * service's would. The schema is TRYGG_EVENTPUB_SCHEMA (default
 * "eventpub"), so several can run against one database; the publisher
 * name is TRYGG_PUBLISHER.
 */
#include <stdlib.h>

#include "svc.h"

extern const struct migration eventpub_migrations[];

typedef struct eventpub_config {
	svc_config common;
	char *publisher;
	char *eventpub_schema;
} eventpub_config;

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(eventpub_config, "8094"),
    SVC_PUBLISH_OPTIONS(eventpub_config, "tcp://127.0.0.1:5580", "tcp://127.0.0.1:5581"),
    CONFIG_OPT_STRING("publisher", eventpub_config, publisher, "eventpub", 0,
        "publisher name on the envelopes"),
    CONFIG_OPT_STRING("eventpub_schema", eventpub_config, eventpub_schema, "eventpub", 0,
        "the schema whose outbox is published (read before the rest of the config)"),
    CONFIG_END,
};

int
main(int argc, char **argv)
{
	static eventpub_config cfg;
	static svc s;
	const char *schema = getenv("TRYGG_EVENTPUB_SCHEMA");
	svc_options so = {.name = "eventpub",
	    .schema = schema && schema[0] ? schema : "eventpub",
	    .options = options,
	    .config = &cfg,
	    .common = &cfg.common,
	    .migrations = eventpub_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&s, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (svc_publish(&s, cfg.publisher) != 0)
		return svc_abort(&s);
	return svc_run(&s);
}
