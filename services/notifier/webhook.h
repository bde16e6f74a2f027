/*
 * webhook.h: composing task webhooks, the HTTP channel's counterpart of
 * mail.h.
 *
 * webhook_prepare() builds the JSON body a crew's endpoint receives for a
 * delivery (delivery_id, kind, attempt, unit, sent_at, the task, the API
 * URLs to act on it and, where the receiver owns the task, signed links)
 * and the headers that go with it:
 *     Content-Type: application/json
 *     Trygg-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *     Trygg-Delivery: <delivery id>   (stable across retries: deduplicate)
 *     Trygg-Attempt: <n>
 *     Trygg-Event: task.<kind>
 * ready for http_client_request(). delivery.c sends it.
 *
 * Ownership: the webhook is an embedded object the caller owns; its
 * headers point into it, so it must not be copied or moved between
 * webhook_prepare() and the request. Release it with webhook_fini() once
 * the request was handed over (http_client_request copies what it needs).
 */
#ifndef NOTIFIER_WEBHOOK_H
#define NOTIFIER_WEBHOOK_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

typedef struct webhook_params {
	const char *delivery_id; /* stable across retries */
	const char *kind;        /* task, copy, reminder, escalation */
	int attempt;
	const char *unit;
	const char *secret;     /* the endpoint's signing secret */
	const char *public_url; /* the notifier's base URL for the api links */
	const json_t *task;     /* task_json(), with an "id" */
	const char *ack_link;   /* signed links; both NULL or both set */
	const char *done_link;
} webhook_params;

typedef struct webhook {
	char *body; /* the JSON text */
	size_t len;
	const char *headers[7]; /* NULL-terminated */
	char h_sig[200], h_id[80], h_att[40], h_kind[64];
} webhook;

/*
 * Composes the body and headers into *w, signed at the current wall time.
 * Returns 0, or TRYGG_EINVAL if the task has no id (w is then empty).
 */
int webhook_prepare(const webhook_params *p, webhook *w) TRYGG_MUSTCHECK;

/* Frees the body and empties w. Accepts NULL. */
void webhook_fini(webhook *w);

#endif
