/*
 * delivery.h: the delivery worker, which sends due deliveries by webhook
 * and e-mail on the loop and records each outcome.
 *
 * Work lives in the deliveries table. The worker claims due rows in one
 * statement (claim_deliveries: a lease, the attempt counted), never more
 * than delivery_concurrency in flight overall and endpoint_concurrency per
 * target (URL or address), so a slow or dead endpoint holds at most its
 * own slots and never delays the others. Each claimed row is sent through
 * the shared http_client (libcurl multi): a webhook (composed by webhook.c)
 * is a POST of the task as JSON with the headers
 *     Trygg-Delivery: <delivery id, the same on every retry>
 *     Trygg-Attempt: <n>
 *     Trygg-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 * and an e-mail goes through the SMTP relay (mail.c). The outcome is
 * written by delivery_result(): delivered (the first task delivery also
 * marks the task dispatched), a retry after exponential backoff with
 * jitter, or after max_attempts a dead letter, which escalates the task.
 *
 * The worker wakes on NOTIFY notifier_deliveries (sent by the transactions
 * that create deliveries), when a send finishes, on delivery_worker_kick()
 * and every delivery_poll as a fallback. A crash loses nothing: a claimed
 * row whose outcome was never written is claimed again when its lease
 * runs out, under the same delivery id (at least once).
 */
#ifndef NOTIFIER_DELIVERY_H
#define NOTIFIER_DELIVERY_H

#include "notifier.h"

int delivery_worker_start(notifier *n, delivery_worker **out) TRYGG_MUSTCHECK;

/* Looks for due work now (or right after the current claim). Call it on
 * NOTIFY notifier_deliveries. Accepts NULL. */
void delivery_worker_kick(delivery_worker *w);

/*
 * Stops claiming; calls cb once every send in flight has finished and its
 * outcome has been written (or failed to be), then frees the worker from
 * its close callback. Accepts NULL (cb is then called at once).
 */
void delivery_worker_stop(delivery_worker *w, void (*cb)(void *arg), void *arg);

/* In flight now (sends and outcome writes). */
unsigned delivery_worker_in_flight(const delivery_worker *w);

/* Whether a response counts as delivered, and whether a failure is
 * permanent (retrying cannot help). Exposed for tests. */
bool delivery_is_success(int err, long status);
bool delivery_is_permanent(int err, long status);

#endif
