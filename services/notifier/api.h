/*
 * api.h: the notifier's HTTP API (default port 8081).
 *
 *   POST /v1/tasks/{id}/ack      {"note"?}                  unit key
 *   POST /v1/tasks/{id}/done     {"note"?}                  unit key
 *   POST /v1/tasks/{id}/decline  {"reason", "owner"?, "note"?}   unit key
 *   GET  /v1/tasks?status=&unit=&place=&report_id=&limit=&before=
 *   GET  /v1/tasks/{id}          with its deliveries and history
 *   GET  /v1/deliveries?status=pending|delivered|dead&unit=&task=&limit=
 *                                (operators only: dead letters)
 *   GET  /v1/links/{ack|done}/{id}?e=&s=   a confirmation page
 *   POST /v1/links/{ack|done}/{id}?e=&s=   performs the action
 *
 * Keys: "Authorization: Bearer <key>"; the notifier stores SHA-256 hashes
 * only. A unit's key sees and acts on that unit's tasks; an operator key
 * (a unit of kind operator) on all of them.
 *
 * Signed links: the link in an e-mail is signed (sign.h) and expires
 * (link_ttl). Opening it (GET) only shows a page with a button; the
 * button POSTs to the same URL, which acts. Mail scanners and link
 * previewers fetch links with GET, so a GET that acted would acknowledge
 * tasks nobody has seen. Either way the action is idempotent: repeating
 * it answers with the task as it is.
 */
#ifndef NOTIFIER_API_H
#define NOTIFIER_API_H

#include "notifier.h"

/* Adds the routes to the service's HTTP server. */
int api_register(notifier *n) TRYGG_MUSTCHECK;

#endif
