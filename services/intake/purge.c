/*
 * purge.c: the purge of personal data after its retention period. A timer
 * deletes contact details (report_contacts) older than contact_retention
 * and idempotency keys older than idempotency_retention, in bounded rounds
 * of 5000 rows so no single transaction grows large; a full round starts
 * the next at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "intake.h"
#include "log.h"

static const char SQL_PURGE_CONTACTS[] =
    "DELETE FROM report_contacts WHERE report_id IN (SELECT report_id FROM report_contacts"
    " WHERE created_at < now() - $1::bigint * interval '1 millisecond' LIMIT 5000)";
static const char SQL_PURGE_IDEM[] =
    "DELETE FROM idempotency WHERE (partner_id, idem_key) IN (SELECT partner_id, idem_key"
    " FROM idempotency WHERE created_at < now() - $1::bigint * interval '1 millisecond'"
    " LIMIT 5000)";

static void purge_round(intake *in);

static void
purged(void *arg, const db_reply *rep)
{
	intake *in = arg;
	in->purge_running = false;
	if (rep->err != 0 || in->svc.draining)
		return; /* the timer tries again */
	long contacts = atol(PQcmdTuples(rep->results[0]));
	long keys = atol(PQcmdTuples(rep->results[1]));
	if (contacts > 0 || keys > 0)
		log_info("purged", "\"contacts\":%ld,\"idempotency_keys\":%ld", contacts, keys);
	if (contacts == 5000 || keys == 5000)
		purge_round(in); /* more to do */
}

static void
purge_round(intake *in)
{
	if (in->purge_running)
		return;
	char c[24], k[24];
	snprintf(c, sizeof(c), "%" PRIu64, in->cfg.contact_retention_ms);
	snprintf(k, sizeof(k), "%" PRIu64, in->cfg.idempotency_retention_ms);
	const char *vc[1] = {c}, *vk[1] = {k};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_PURGE_CONTACTS, 1, vc);
	db_batch_add(b, SQL_PURGE_IDEM, 1, vk);
	if (db_pool_submit(in->svc.pool, b, purged, in) != 0) {
		db_batch_free(b);
		return;
	}
	in->purge_running = true;
}

static void
on_purge_timer(uv_timer_t *t)
{
	purge_round(t->data);
}

int
purge_start(intake *in)
{
	uv_timer_init(svc_uv(&in->svc), &in->purge_timer);
	in->purge_timer.data = in;
	uv_timer_start(&in->purge_timer, on_purge_timer, in->cfg.purge_interval_ms,
	    in->cfg.purge_interval_ms);
	return 0;
}

void
purge_stop(intake *in)
{
	if (in->purge_timer.data != NULL && !uv_is_closing((uv_handle_t *)&in->purge_timer))
		uv_close((uv_handle_t *)&in->purge_timer, NULL);
}
