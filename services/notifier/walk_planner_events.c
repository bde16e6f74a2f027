/*
 * walk_planner_events.c: walk-planner's MailRequested and
 * FindingTaskRequested -> mail deliveries and tasks (see
 * walk_planner_events.h).
 */
#include "walk_planner_events.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "envelope.h"
#include "log.h"
#include "trygg/walks.pb-c.h"
#include "util.h"

static const char SQL_MAIL[] = "SELECT request_mail($1, $2, $3, $4, $5, $6, $7,"
                               " decode($8, 'hex'), $9, $10)";

static const char SQL_FINDING[] =
    "SELECT ingest_finding($1, $2, $3, $4, $5::int, $6::double precision,"
    " $7::double precision, $8, $9, $10::text[], $11::boolean, $12::int, $13::int, $14::uuid,"
    " $15::boolean, $16)";

/* Bounded so one event cannot grow a row or a message without limit. */
#define MAIL_TEXT_MAX (256 * 1024)
#define MAIL_ATTACHMENT_MAX (1024 * 1024)

/* Text for Postgres: valid UTF-8 (invalid bytes replaced), else the
 * event would fail forever. Returns a copy. */
static char *
text_of(const char *s)
{
	char *c = xstrdup(s ? s : "");
	trygg_utf8_scrub(c);
	return c;
}

static int
apply_mail(notifier *n, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m;
	int rv = envelope_message_unpack(&trygg__walks__mail_requested__descriptor,
	    ev->payload.data, ev->payload.len, 4 * 1024 * 1024, &m);
	if (rv != 0)
		return rv;
	const Trygg__Walks__MailRequested *r = (const Trygg__Walks__MailRequested *)m;
	char lb[160];
	if (!trygg_plain_name(r->mail_id, 64) || !trygg_plain_name(r->to_address, 254) ||
	    strlen(r->subject) > 998 || strlen(r->body_text) > MAIL_TEXT_MAX ||
	    r->attachment.len > MAIL_ATTACHMENT_MAX) {
		log_warn("mail_invalid", "\"seq\":%" PRIu64 ",\"mail_id\":%s", ev->seq,
		    log_json_str(r->mail_id, lb, sizeof(lb)));
		envelope_message_free(m);
		return TRYGG_EPROTO; /* set aside in inbox_failed, visible to operators */
	}
	char *hex = xmalloc(2 * r->attachment.len + 1);
	crypto_hex(r->attachment.data, r->attachment.len, hex);
	char *to_name = text_of(r->to_name), *subject = text_of(r->subject),
	     *body = text_of(r->body_text), *att_name = text_of(r->attachment_name),
	     *att_type = text_of(r->attachment_type), *kind = text_of(r->kind),
	     *walk = text_of(r->walk_id);
	const char *v[10] = {r->mail_id, r->to_address, to_name, subject, body, att_name, att_type,
	    r->attachment.len ? hex : NULL, kind, walk};
	db_batch_add(b, SQL_MAIL, 10, v);
	log_info("mail_requested", "\"mail_id\":%s,\"kind\":\"%s\"",
	    log_json_str(r->mail_id, lb, sizeof(lb)), trygg_plain_name(kind, 32) ? kind : "?");
	free(hex);
	free(to_name);
	free(subject);
	free(body);
	free(att_name);
	free(att_type);
	free(kind);
	free(walk);
	envelope_message_free(m);
	(void)n;
	return 0;
}

static int
apply_finding(notifier *n, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ProtobufCMessage *m;
	int rv = envelope_message_unpack(&trygg__walks__finding_task_requested__descriptor,
	    ev->payload.data, ev->payload.len, 256 * 1024, &m);
	if (rv != 0)
		return rv;
	const Trygg__Walks__FindingTaskRequested *r = (const Trygg__Walks__FindingTaskRequested *)m;
	char lb[160];
	if (!trygg_plain_name(r->finding_id, 64) || !trygg_plain_name(r->category, 64)) {
		log_warn("finding_invalid", "\"seq\":%" PRIu64 ",\"finding_id\":%s", ev->seq,
		    log_json_str(r->finding_id, lb, sizeof(lb)));
		envelope_message_free(m);
		return TRYGG_EPROTO;
	}
	const char *places[1];
	size_t nplaces = 0;
	if (r->place[0] && trygg_plain_name(r->place, 64))
		places[nplaces++] = r->place;
	int64_t at = r->at_us ? r->at_us : ev->occurred_at_us;
	routing_report rr = {.category = r->category, .places = places, .nplaces = nplaces};
	routing_local_time(at ? at : trygg_wall_us(), &rr.weekday, &rr.minute);
	routing_result res;
	const routing_table *t = notifier_routes(n);
	if (t == NULL || routing_route(t, &rr, &res) != 0) {
		log_error("finding_unroutable", "\"seq\":%" PRIu64 ",\"finding_id\":%s", ev->seq,
		    log_json_str(r->finding_id, lb, sizeof(lb)));
		envelope_message_free(m);
		return TRYGG_ENOENT; /* kept in inbox_failed, never silently dropped */
	}
	char key[ROUTING_KEY_MAX], task_id[37], sev[16], lat[32], lon[32], ack[16], done[16];
	routing_task_key(res.place, r->has_position, r->lat, r->long_, "", r->finding_id, key,
	    sizeof(key));
	trygg_uuid4(task_id);
	snprintf(sev, sizeof(sev), "%u", r->severity < 1 ? 1u : r->severity > 5 ? 5u : r->severity);
	snprintf(lat, sizeof(lat), "%.7f", r->lat);
	snprintf(lon, sizeof(lon), "%.7f", r->long_);
	snprintf(ack, sizeof(ack), "%d", res.ack_target_s);
	/* The finding's deadline, when it has one, is when it must be done. */
	int completion_s = res.completion_target_s;
	if (r->deadline_us > at) {
		int64_t left = (r->deadline_us - at) / 1000000;
		completion_s = left > INT32_MAX ? INT32_MAX : (int)left;
	}
	snprintf(done, sizeof(done), "%d", completion_s);
	char copies[ROUTING_MAX_COPIES * 66 + 4];
	routing_copies_literal(&res, copies, sizeof(copies));
	char *desc = text_of(r->description);
	if (strlen(desc) > 4000)
		desc[trygg_utf8_prefix(desc, 4000)] = '\0';
	const char *named = trygg_plain_name(r->unit, 64) ? r->unit : "";
	const char *v[16] = {r->finding_id, r->category, key, res.place, sev,
	    r->has_position ? lat : NULL, r->has_position ? lon : NULL, res.unit, named, copies,
	    res.matched ? "false" : "true", ack, done, task_id,
	    notifier_email_enabled(n) ? "true" : "false", desc};
	db_batch_add(b, SQL_FINDING, 16, v);
	log_info("finding_task_requested", "\"finding_id\":%s,\"category\":\"%s\",\"unit\":\"%s\"",
	    log_json_str(r->finding_id, lb, sizeof(lb)), r->category, named[0] ? named : res.unit);
	free(desc);
	envelope_message_free(m);
	return 0;
}

int
walk_planner_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	notifier *n = arg;
	if (strcmp(ev->type, "trygg.walks.MailRequested") == 0)
		return apply_mail(n, b, ev);
	if (strcmp(ev->type, "trygg.walks.FindingTaskRequested") == 0)
		return apply_finding(n, b, ev);
	return 0; /* not ours: no effect, the cursor still moves */
}
