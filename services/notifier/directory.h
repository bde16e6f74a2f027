/*
 * directory.h: the notifier's snapshot of its own reference data: the
 * routing table (units and rules) and the link-signing secret.
 *
 * It loads them at start (the inbox starts only once routing is known,
 * see on_ready), and reloads the routing table when the rules or units
 * change (their trigger sends NOTIFY notifier_routing, which main.c
 * LISTENs for on the primary connection) and every
 * routing_refresh as a fallback, since NOTIFY is not durable. A failed
 * reload keeps the previous table.
 */
#ifndef NOTIFIER_DIRECTORY_H
#define NOTIFIER_DIRECTORY_H

#include "notifier.h"

/* Starts loading; on_ready runs once, after the first successful load.
 * TRYGG_EINVAL (logged, nothing started) if the configured time zone is
 * not in the zone database. */
int directory_start(notifier *n, void (*on_ready)(notifier *n), directory **out) TRYGG_MUSTCHECK;

/* Reloads the routing table now (on NOTIFY notifier_routing). Accepts
 * NULL. */
void directory_reload(directory *d);

/* Stops the timer; frees from its close callback (after the last query).
 * Accepts NULL. */
void directory_stop(directory *d);

const routing_table *directory_routes(const directory *d);
const char *directory_link_secret(const directory *d);

#endif
