/*
 * webhook.c: composing task webhooks (see webhook.h).
 */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "sign.h"

int
webhook_prepare(const webhook_params *p, webhook *w)
{
	memset(w, 0, sizeof(*w));
	const char *task_id = json_string_value(json_object_get(p->task, "id"));
	if (task_id == NULL)
		return TRYGG_EINVAL;
	char sent_at[40];
	trygg_format_iso8601(trygg_wall_us(), sent_at, sizeof(sent_at));
	json_t *body = json_pack("{s:s, s:s, s:i, s:s, s:s, s:O}", "delivery_id", p->delivery_id,
	    "kind", p->kind, "attempt", p->attempt, "unit", p->unit, "sent_at", sent_at, "task",
	    (json_t *)p->task);
	json_t *api = json_pack("{s:s+++, s:s+++, s:s+++}", "ack", p->public_url, "/v1/tasks/",
	    task_id, "/ack", "done", p->public_url, "/v1/tasks/", task_id, "/done", "decline",
	    p->public_url, "/v1/tasks/", task_id, "/decline");
	json_object_set_new(body, "api", api);
	if (p->ack_link)
		json_object_set_new(body, "links",
		    json_pack("{s:s, s:s}", "ack", p->ack_link, "done", p->done_link));
	w->body = tjson_dump(body, &w->len);
	json_decref(body);

	char sig[160];
	sign_webhook(p->secret, trygg_wall_us() / 1000000, w->body, w->len, sig, sizeof(sig));
	snprintf(w->h_sig, sizeof(w->h_sig), "Trygg-Signature: %s", sig);
	snprintf(w->h_id, sizeof(w->h_id), "Trygg-Delivery: %s", p->delivery_id);
	snprintf(w->h_att, sizeof(w->h_att), "Trygg-Attempt: %d", p->attempt);
	snprintf(w->h_kind, sizeof(w->h_kind), "Trygg-Event: task.%s", p->kind);
	const char *headers[] = {"Content-Type: application/json", "User-Agent: trygg-notifier",
	    w->h_sig, w->h_id, w->h_att, w->h_kind, NULL};
	memcpy(w->headers, headers, sizeof(headers));
	return 0;
}

void
webhook_fini(webhook *w)
{
	if (w == NULL)
		return;
	free(w->body);
	memset(w, 0, sizeof(*w));
}
