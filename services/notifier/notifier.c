/*
 * notifier.c: the small accessors the notifier's modules share (see
 * notifier.h); kept out of main.c so unit tests can link every module.
 */
#include "notifier.h"

#include "delivery.h"
#include "directory.h"

bool
notifier_email_enabled(const notifier *n)
{
	return n->cfg.smtp_url && n->cfg.smtp_url[0];
}

const routing_table *
notifier_routes(const notifier *n)
{
	return directory_routes(n->dir);
}

const char *
notifier_link_secret(const notifier *n)
{
	return directory_link_secret(n->dir);
}

void
notifier_after_commit(notifier *n, bool deliveries)
{
	if (n->relay)
		outbox_relay_kick(n->relay);
	if (deliveries)
		delivery_worker_kick(n->deliveries);
}
