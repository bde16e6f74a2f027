/*
 * delivery.c: the delivery worker (see delivery.h).
 */
#include "delivery.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "directory.h"
#include "json.h"
#include "log.h"
#include "mail.h"
#include "sign.h"
#include "strbuf.h"
#include "webhook.h"

/* How long a claim is leased beyond the send's own timeout. */
#define LEASE_MARGIN_MS 15000
/* Outcomes written in one transaction at most. */
#define OUTCOMES_MAX 128

static const char SQL_CLAIM[] =
    "SELECT id, attempts, kind, channel, target, unit, coalesce(secret, ''), task::text"
    " FROM claim_deliveries($1::int, $2::int, $3::text[], $4::int[], $5::int)";
/* The outcomes of a batch of sends, one statement (sql/005_probe_plans.sql):
 * a text[] of results in the order of the JSON array. */
static const char SQL_RESULTS[] = "SELECT delivery_results($1::jsonb, $2::int, $3::boolean)::text";

typedef struct endpoint {
	char *target;
	unsigned busy;
} endpoint;

struct delivery_worker {
	notifier *n;
	uv_timer_t poll;
	bool claiming, again, stopping, closed;
	/* A claim may find due rows: set by every kick and poll, and after a
	 * claim that a cap cut short; cleared by a claim that took everything
	 * due. A finished send refills its slot only while it is set, so at
	 * hundreds of webhooks a second not every send costs an empty claim. */
	bool maybe_due;
	/* The claim in flight: its limit, and each endpoint's sends in flight
	 * when it was made (what it could take from each). */
	unsigned claim_limit;
	endpoint *claim_busy;
	size_t nclaim_busy;
	unsigned sends;  /* transfers in flight */
	unsigned writes; /* outcome writes in flight (one batch, or its parts on a split) */
	/* Outcomes waiting for the write in flight to finish: written together,
	 * one transaction and one commit for all of them (group commit). */
	struct dsend **queued;
	size_t nqueued, capqueued;
	endpoint *eps;
	size_t neps, capeps;
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

typedef struct dsend {
	delivery_worker *w;
	char id[37];
	char task_id[37]; /* "" for a mail: outcomes are written in task order */
	int attempt;
	char *kind, *channel, *target, *unit;
	mail_job *mail;
	uint64_t started_ms;
	/* the outcome, kept until written */
	bool ok, permanent;
	long status;
	char error[256];
} dsend;

static void claim(delivery_worker *w);
static void refill(delivery_worker *w);
static void maybe_finish(delivery_worker *w);
static void write_outcomes(delivery_worker *w);

bool
delivery_is_success(int err, long status)
{
	return err == 0 && status >= 200 && status < 300;
}

bool
delivery_is_permanent(int err, long status)
{
	/* The receiver understood and refused: a retry would be refused too.
	 * 408, 425 and 429 (and every 5xx) are worth retrying. */
	return err == 0 &&
	    (status == 400 || status == 401 || status == 403 || status == 404 || status == 405 ||
	        status == 410 || status == 413 || status == 415 || status == 422);
}

static endpoint *
endpoint_get(delivery_worker *w, const char *target)
{
	for (size_t i = 0; i < w->neps; i++)
		if (strcmp(w->eps[i].target, target) == 0)
			return &w->eps[i];
	if (w->neps == w->capeps) {
		w->capeps = w->capeps ? w->capeps * 2 : 16;
		w->eps = xrealloc(w->eps, w->capeps * sizeof(*w->eps));
	}
	endpoint *e = &w->eps[w->neps++];
	e->target = xstrdup(target);
	e->busy = 0;
	return e;
}

static void
endpoint_release(delivery_worker *w, const char *target)
{
	for (size_t i = 0; i < w->neps; i++) {
		if (strcmp(w->eps[i].target, target) != 0)
			continue;
		if (--w->eps[i].busy == 0) {
			free(w->eps[i].target);
			w->eps[i] = w->eps[--w->neps];
		}
		return;
	}
}

/* Forgets the claim's snapshot of the endpoints. */
static void
claim_busy_clear(delivery_worker *w)
{
	for (size_t i = 0; i < w->nclaim_busy; i++)
		free(w->claim_busy[i].target);
	free(w->claim_busy);
	w->claim_busy = NULL;
	w->nclaim_busy = 0;
}

/* Appends s to b as one element of a Postgres array literal. */
static void
array_elem(strbuf *b, const char *s, bool first)
{
	if (!first)
		strbuf_appendc(b, ',');
	strbuf_append_pg_array_elem(b, s);
}

static void
send_free(dsend *s)
{
	free(s->kind);
	free(s->channel);
	free(s->target);
	free(s->unit);
	mail_job_free(s->mail);
	free(s);
}

/* The outcome of one send is in the database (or could not be written). */
static void
outcome_written(dsend *s, int err, const char *what)
{
	delivery_worker *w = s->w;
	if (err != 0) {
		/* The lease runs out and the delivery is sent again, same id. */
		log_warn("delivery_result_failed", "\"delivery_id\":\"%s\",\"error\":\"%s\"", s->id,
		    trygg_strerror(err));
	} else {
		if (strcmp(what, "dead") == 0) {
			metric_counter_inc(w->n->m_dead);
			char eb[300];
			log_warn("delivery_dead",
			    "\"delivery_id\":\"%s\",\"unit\":\"%s\",\"error\":%s", s->id, s->unit,
			    log_json_str(s->error, eb, sizeof(eb)));
		}
		notifier_after_commit(w->n, strcmp(what, "dead") == 0);
	}
	send_free(s);
}

/* One write: the outcomes of `n` sends, in one transaction (n == 1 when a
 * batch is retried one by one). */
typedef struct outcome_write {
	delivery_worker *w;
	size_t n;
	dsend *sends[];
} outcome_write;

static int
by_task(const void *a, const void *b)
{
	const dsend *x = *(dsend *const *)a, *y = *(dsend *const *)b;
	int c = strcmp(x->task_id, y->task_id);
	return c != 0 ? c : strcmp(x->id, y->id);
}

static void submit_outcomes(delivery_worker *w, dsend **sends, size_t n);

/* Splits delivery_results()' text[] ("{delivered,stale}": plain words, no
 * quoting) into at most n results; *count says how many there were. */
static void
split_results(char *text, char **out, size_t n, size_t *count)
{
	*count = 0;
	size_t len = strlen(text);
	if (len < 2 || text[0] != '{' || text[len - 1] != '}')
		return;
	text[len - 1] = '\0';
	for (char *save = NULL, *tok = strtok_r(text + 1, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*count < n)
			out[*count] = tok;
		(*count)++;
	}
}

static void
outcomes_written(void *arg, const db_reply *rep)
{
	outcome_write *ow = arg;
	delivery_worker *w = ow->w;
	w->writes--;
	if (rep->err == TRYGG_EDB && ow->n > 1) {
		/* One outcome's statement failed and took the transaction with it:
		 * write each on its own, so the others are not held back by it. */
		log_info("delivery_results_split", "\"count\":%zu,\"error\":\"%s\"", ow->n,
		    rep->message ? rep->message : "");
		for (size_t i = 0; i < ow->n; i++)
			submit_outcomes(w, &ow->sends[i], 1);
	} else {
		char *text = rep->err == 0 ? xstrdup(PQgetvalue(rep->results[0], 0, 0)) : NULL;
		char **results = xcalloc(ow->n, sizeof(results[0]));
		size_t count = 0;
		if (text != NULL)
			split_results(text, results, ow->n, &count);
		int err = rep->err;
		if (err == 0 && count != ow->n) {
			/* Cannot happen: the function returns one result per outcome. */
			log_error("delivery_results_mismatch", "\"sent\":%zu,\"results\":%zu",
			    ow->n, count);
			err = TRYGG_EPROTO;
		}
		for (size_t i = 0; i < ow->n; i++)
			outcome_written(ow->sends[i], err, err == 0 ? results[i] : NULL);
		free(results);
		free(text);
	}
	free(ow);
	write_outcomes(w);
	if (w->stopping)
		maybe_finish(w);
	else
		refill(w);
}

/* Appends one element of delivery_results()' array: what one send did. */
static void
add_outcome(strbuf *j, const dsend *s, bool first)
{
	notifier *n = s->w->n;
	uint32_t rnd = 0;
	if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
		rnd = (uint32_t)trygg_now_ns();
	uint64_t retry = backoff_delay_ms((unsigned)s->attempt, n->cfg.backoff_base_ms,
	    n->cfg.backoff_max_ms, rnd);
	strbuf_appendf(j, "%s{\"id\":\"%s\",\"attempt\":%d,\"ok\":%s,\"permanent\":%s,",
	    first ? "" : ",", s->id, s->attempt, s->ok ? "true" : "false",
	    s->permanent ? "true" : "false");
	if (s->status)
		strbuf_appendf(j, "\"status\":%ld,", s->status);
	strbuf_append(j, "\"error\":");
	strbuf_append_json(j, s->ok ? NULL : s->error);
	strbuf_appendf(j, ",\"retry_ms\":%" PRIu64 ",\"mail\":%s}", retry,
	    strcmp(s->kind, "mail") == 0 ? "true" : "false");
}

/* Writes the outcomes of `n` sends in one transaction, in task order (the
 * order every transaction that locks several tasks takes them in). */
static void
submit_outcomes(delivery_worker *w, dsend **sends, size_t n)
{
	outcome_write *ow = xmalloc(sizeof(*ow) + n * sizeof(ow->sends[0]));
	ow->w = w;
	ow->n = n;
	memcpy(ow->sends, sends, n * sizeof(ow->sends[0]));
	qsort(ow->sends, n, sizeof(ow->sends[0]), by_task);
	strbuf j = STRBUF_INIT;
	strbuf_appendc(&j, '[');
	for (size_t i = 0; i < n; i++)
		add_outcome(&j, ow->sends[i], i == 0);
	strbuf_appendc(&j, ']');
	char max_s[16];
	snprintf(max_s, sizeof(max_s), "%d", w->n->cfg.max_attempts);
	const char *values[3] = {strbuf_str(&j), max_s,
	    notifier_email_enabled(w->n) ? "true" : "false"};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_RESULTS, 3, values);
	strbuf_fini(&j);
	w->writes++;
	if (db_pool_submit(w->n->svc.pool, b, outcomes_written, ow) != 0) {
		db_batch_free(b);
		outcomes_written(ow, &(db_reply){.err = TRYGG_EDBCONN});
	}
}

/* Writes what is queued, unless a write is in flight: its completion
 * writes what queued up meanwhile, so under load the outcomes of many
 * sends share one commit, and alone each is written at once. */
static void
write_outcomes(delivery_worker *w)
{
	if (w->nqueued == 0 || w->writes > 0)
		return;
	/* Off the queue before submitting: a submit that fails at once
	 * completes (and frees them) before it returns. */
	dsend *take[OUTCOMES_MAX];
	size_t n = w->nqueued < OUTCOMES_MAX ? w->nqueued : OUTCOMES_MAX;
	memcpy(take, w->queued, n * sizeof(take[0]));
	memmove(w->queued, w->queued + n, (w->nqueued - n) * sizeof(w->queued[0]));
	w->nqueued -= n;
	submit_outcomes(w, take, n);
}

/* Records the outcome of one attempt. */
static void
finish_send(dsend *s, int err, long status, const char *error)
{
	delivery_worker *w = s->w;
	notifier *n = w->n;
	w->sends--;
	endpoint_release(w, s->target);
	s->ok = delivery_is_success(err, status);
	s->permanent = !s->ok && delivery_is_permanent(err, status);
	s->status = status;
	if (s->ok)
		s->error[0] = '\0';
	else if (err != 0)
		snprintf(s->error, sizeof(s->error), "%s: %s", trygg_strerror(err),
		    error ? error : "");
	else
		snprintf(s->error, sizeof(s->error), "HTTP %ld", status);
	metric_counter_inc(s->ok ? n->m_sent : n->m_failed);
	metric_histogram_observe(n->m_latency, (double)(trygg_now_ms() - s->started_ms) / 1000.0);
	if (!s->ok)
		log_info("delivery_failed",
		    "\"delivery_id\":\"%s\",\"unit\":\"%s\",\"attempt\":%d,\"error\":\"%s\"", s->id,
		    s->unit, s->attempt, s->error);

	if (w->nqueued == w->capqueued) {
		w->capqueued = w->capqueued ? 2 * w->capqueued : 64;
		w->queued = xrealloc(w->queued, w->capqueued * sizeof(w->queued[0]));
	}
	w->queued[w->nqueued++] = s;
	write_outcomes(w);
	/* The send's slot is free now: refill it while the outcome is being
	 * written (the row keeps its lease until then, so it is not claimed
	 * again), instead of one claim round trip and commit later. */
	refill(w);
}

static void
webhook_done(void *arg, const http_client_response *resp)
{
	dsend *s = arg;
	finish_send(s, resp->err, resp->status, resp->error);
}

static void
mail_done(void *arg, const http_client_response *resp)
{
	dsend *s = arg;
	/* SMTP: curl succeeds only when the relay accepted the message. */
	finish_send(s, resp->err, resp->err == 0 ? 250 : 0, resp->error);
}

/* A signed link for an action on a task. */
static char *
make_link(notifier *n, const char *action, const char *task_id)
{
	int64_t exp = trygg_wall_us() / 1000000 + (int64_t)(n->cfg.link_ttl_ms / 1000);
	char sig[SIGN_HEX_LEN];
	sign_link(directory_link_secret(n->dir), action, task_id, exp, sig);
	return xasprintf("%s/v1/links/%s/%s?e=%" PRId64 "&s=%s", n->cfg.public_url, action, task_id,
	    exp, sig);
}

/* Starts a MailRequested e-mail (no task: the body is the mail). */
static void
start_mail(dsend *s, const char *mail_text)
{
	notifier *n = s->w->n;
	json_t *mail = json_loads(mail_text, 0, NULL);
	CURL *easy;
	mail_message mm = {.smtp_url = n->cfg.smtp_url,
	    .from = n->cfg.smtp_from,
	    .delivery_id = s->id,
	    .mail = mail,
	    .timeout_ms = (unsigned)n->cfg.webhook_timeout_ms * 2};
	int rv = mail ? mail_prepare_message(&mm, &easy, &s->mail) : TRYGG_EPROTO;
	if (rv == 0) {
		rv = http_client_submit(n->http, easy, mail_done, s);
		if (rv != 0)
			curl_easy_cleanup(easy);
	}
	json_decref(mail);
	if (rv != 0)
		/* A mail that cannot be composed never will be: permanent. */
		finish_send(s, rv == TRYGG_EINVAL ? 0 : rv, rv == TRYGG_EINVAL ? 400 : 0,
		    "could not compose or start the mail");
}

/* Starts one claimed delivery. On failure to start, records it as a
 * failed attempt. */
static void
start_send(delivery_worker *w, PGresult *res, int row)
{
	notifier *n = w->n;
	dsend *s = xcalloc(1, sizeof(*s));
	s->w = w;
	snprintf(s->id, sizeof(s->id), "%s", PQgetvalue(res, row, 0));
	s->attempt = atoi(PQgetvalue(res, row, 1));
	s->kind = xstrdup(PQgetvalue(res, row, 2));
	s->channel = xstrdup(PQgetvalue(res, row, 3));
	s->target = xstrdup(PQgetvalue(res, row, 4));
	s->unit = xstrdup(PQgetvalue(res, row, 5));
	const char *secret = PQgetvalue(res, row, 6);
	const char *task_text = PQgetvalue(res, row, 7);
	s->started_ms = trygg_now_ms();
	w->sends++;
	endpoint_get(w, s->target)->busy++;

	if (strcmp(s->kind, "mail") == 0) {
		start_mail(s, task_text);
		return;
	}
	json_t *task = json_loads(task_text, 0, NULL);
	const char *task_id = task ? json_string_value(json_object_get(task, "id")) : NULL;
	if (task == NULL || task_id == NULL) {
		json_decref(task);
		finish_send(s, TRYGG_EPROTO, 0, "task not readable");
		return;
	}
	snprintf(s->task_id, sizeof(s->task_id), "%s", task_id);
	/* Acknowledge and done links only where the receiver owns the task. */
	bool actionable = strcmp(s->kind, "copy") != 0 && strcmp(s->kind, "escalation") != 0;
	char *ack = actionable ? make_link(n, "ack", task_id) : NULL;
	char *done = actionable ? make_link(n, "done", task_id) : NULL;
	int rv;
	if (strcmp(s->channel, "email") == 0) {
		CURL *easy;
		mail_params mp = {.smtp_url = n->cfg.smtp_url,
		    .from = n->cfg.smtp_from,
		    .to = s->target,
		    .delivery_id = s->id,
		    .kind = s->kind,
		    .task = task,
		    .ack_link = ack,
		    .done_link = done,
		    .timeout_ms = (unsigned)n->cfg.webhook_timeout_ms * 2};
		rv = mail_prepare(&mp, &easy, &s->mail);
		if (rv == 0) {
			rv = http_client_submit(n->http, easy, mail_done, s);
			if (rv != 0)
				curl_easy_cleanup(easy);
		}
	} else {
		webhook wh;
		webhook_params wp = {.delivery_id = s->id,
		    .kind = s->kind,
		    .attempt = s->attempt,
		    .unit = s->unit,
		    .secret = secret,
		    .public_url = n->cfg.public_url,
		    .task = task,
		    .ack_link = ack,
		    .done_link = done};
		rv = webhook_prepare(&wp, &wh);
		if (rv == 0)
			rv = http_client_request(n->http, "POST", s->target, wh.headers, wh.body,
			    wh.len, (unsigned)n->cfg.webhook_timeout_ms, webhook_done, s);
		webhook_fini(&wh);
	}
	free(ack);
	free(done);
	json_decref(task);
	if (rv != 0)
		finish_send(s, rv, 0, "could not start the transfer");
}

/* The sends an endpoint had in flight when the claim was made. */
static unsigned
busy_at_claim(const delivery_worker *w, const char *target)
{
	for (size_t i = 0; i < w->nclaim_busy; i++)
		if (strcmp(w->claim_busy[i].target, target) == 0)
			return w->claim_busy[i].busy;
	return 0;
}

/* Whether a cap cut the claim short, so more may be due: the whole limit
 * came back, or an endpoint got every slot it had free when the claim was
 * made (or had none), and its other due rows wait for one. Otherwise the
 * claim took everything due. */
static bool
claim_was_capped(const delivery_worker *w, const PGresult *res, int rows)
{
	unsigned per = (unsigned)w->n->cfg.endpoint_concurrency;
	if ((unsigned)rows >= w->claim_limit)
		return true;
	for (size_t i = 0; i < w->nclaim_busy; i++)
		if (w->claim_busy[i].busy >= per)
			return true;
	for (int r = 0; r < rows; r++) {
		const char *t = PQgetvalue(res, r, 4);
		unsigned got = 0;
		for (int q = 0; q < rows; q++)
			got += strcmp(PQgetvalue(res, q, 4), t) == 0;
		if (busy_at_claim(w, t) + got >= per)
			return true;
	}
	return false;
}

static void
claimed(void *arg, const db_reply *rep)
{
	delivery_worker *w = arg;
	w->claiming = false;
	if (w->stopping) {
		maybe_finish(w);
		return;
	}
	if (rep->err != 0) {
		log_warn("delivery_claim_failed", "\"error\":\"%s\"", trygg_strerror(rep->err));
		claim_busy_clear(w);
		w->maybe_due = true;
		return; /* the poll timer tries again */
	}
	PGresult *res = rep->results[0];
	int rows = PQntuples(res);
	/* Judged before any send starts: one that fails at once refills. */
	w->maybe_due = claim_was_capped(w, res, rows);
	claim_busy_clear(w);
	for (int i = 0; i < rows; i++)
		start_send(w, res, i);
	if (w->again) {
		/* a kick came while the claim ran */
		w->again = false;
		claim(w);
	}
}

/* Refills the slots of finished sends, if a claim may find something. */
static void
refill(delivery_worker *w)
{
	if (w->maybe_due)
		claim(w);
}

static void
claim(delivery_worker *w)
{
	notifier *n = w->n;
	if (w->stopping || n->draining)
		return;
	if (w->claiming) {
		w->again = true;
		return;
	}
	unsigned cap = (unsigned)n->cfg.delivery_concurrency;
	if (w->sends >= cap)
		return; /* a finishing send claims again */
	strbuf targets = STRBUF_INIT, counts = STRBUF_INIT;
	strbuf_appendc(&targets, '{');
	strbuf_appendc(&counts, '{');
	claim_busy_clear(w);
	w->claim_busy = w->neps ? xcalloc(w->neps, sizeof(w->claim_busy[0])) : NULL;
	w->nclaim_busy = w->neps;
	for (size_t i = 0; i < w->neps; i++) {
		w->claim_busy[i].target = xstrdup(w->eps[i].target);
		w->claim_busy[i].busy = w->eps[i].busy;
		char num[16];
		snprintf(num, sizeof(num), "%u", w->eps[i].busy);
		array_elem(&targets, w->eps[i].target, i == 0);
		array_elem(&counts, num, i == 0);
	}
	strbuf_appendc(&targets, '}');
	strbuf_appendc(&counts, '}');
	char limit[16], per[16], lease[24];
	w->claim_limit = cap - w->sends;
	snprintf(limit, sizeof(limit), "%u", w->claim_limit);
	snprintf(per, sizeof(per), "%d", n->cfg.endpoint_concurrency);
	snprintf(lease, sizeof(lease), "%" PRIu64, n->cfg.webhook_timeout_ms * 2 + LEASE_MARGIN_MS);
	const char *values[5] = {limit, per, targets.s, counts.s, lease};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_CLAIM, 5, values);
	strbuf_fini(&targets);
	strbuf_fini(&counts);
	if (db_pool_submit(n->svc.pool, b, claimed, w) != 0) {
		db_batch_free(b);
		return;
	}
	w->claiming = true;
}

static void
on_poll(uv_timer_t *t)
{
	delivery_worker *w = t->data;
	w->maybe_due = true; /* retries and expired leases fall due unannounced */
	claim(w);
}

int
delivery_worker_start(notifier *n, delivery_worker **out)
{
	delivery_worker *w = xcalloc(1, sizeof(*w));
	w->n = n;
	uv_timer_init(svc_uv(&n->svc), &w->poll);
	w->poll.data = w;
	w->maybe_due = true;
	uv_timer_start(&w->poll, on_poll, 0, n->cfg.delivery_poll_ms);
	*out = w;
	return 0;
}

void
delivery_worker_kick(delivery_worker *w)
{
	if (w && !w->closed) {
		w->maybe_due = true;
		claim(w);
	}
}

unsigned
delivery_worker_in_flight(const delivery_worker *w)
{
	return w ? w->sends + w->writes + (unsigned)w->nqueued : 0;
}

static void
on_closed(uv_handle_t *h)
{
	delivery_worker *w = h->data;
	for (size_t i = 0; i < w->neps; i++)
		free(w->eps[i].target);
	free(w->eps);
	claim_busy_clear(w);
	free(w->queued);
	void (*cb)(void *) = w->stop_cb;
	void *arg = w->stop_arg;
	free(w);
	if (cb)
		cb(arg);
}

static void
maybe_finish(delivery_worker *w)
{
	if (!w->stopping || w->closed || w->claiming || w->sends > 0 || w->writes > 0 ||
	    w->nqueued > 0)
		return;
	w->closed = true;
	uv_close((uv_handle_t *)&w->poll, on_closed);
}

void
delivery_worker_stop(delivery_worker *w, void (*cb)(void *arg), void *arg)
{
	if (w == NULL) {
		if (cb)
			cb(arg);
		return;
	}
	w->stopping = true;
	w->stop_cb = cb;
	w->stop_arg = arg;
	uv_timer_stop(&w->poll);
	maybe_finish(w);
}
