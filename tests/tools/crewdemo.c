/*
 * trygg-crewdemo: a demo crew receiver, standing in for a crew's
 * work-order system. `make run` points the demo units' webhooks at it.
 *
 * It serves POST /webhook (any path under /hooks/... too), checks each
 * delivery's Trygg-Signature with the shared secret exactly as
 * docs/notifier.md tells a receiver to (HMAC-SHA256 over "<t>.<body>",
 * timestamp within five minutes, constant-time comparison), prints the task
 * and answers 200; a bad signature gets 401. With auto=ack or auto=done it
 * then acknowledges (and completes) the task through the notifier's API
 * with the unit's key from keys_file (the JSON the demo seed writes).
 *
 * For tests: record=<path> appends one JSON line per delivery received;
 * fail_first=N answers 503 to the first N webhooks (a crew system having a
 * bad minute).
 *
 * It needs no database: it is built on the runtime's loop, HTTP server and
 * HTTP client only.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http_client.h"
#include "http_server.h"
#include "json.h"
#include "log.h"
#include "loop.h"

typedef struct crew_config {
	char *http_addr;
	int http_port;
	char *secret;
	char *keys_file;
	char *auto_mode;
	char *record;
	int fail_first;
	enum log_level log_level;
} crew_config;

static const config_option options[] = {
    CONFIG_OPT_STRING("http_addr", crew_config, http_addr, "127.0.0.1", 0, "address to bind"),
    CONFIG_OPT_INT("http_port", crew_config, http_port, "8099", 1, 65535, 0, "port to listen on"),
    CONFIG_OPT_STRING("secret", crew_config, secret, NULL, CONFIG_REQUIRED | CONFIG_SECRET,
        "the webhook secret shared with the notifier"),
    CONFIG_OPT_STRING("keys_file", crew_config, keys_file, "", 0,
        "JSON {\"units\": {name: key}} for acknowledging through the API"),
    CONFIG_OPT_STRING("auto", crew_config, auto_mode, "none", 0,
        "none, ack (acknowledge each task) or done (acknowledge, then complete)"),
    CONFIG_OPT_STRING("record", crew_config, record, "", 0,
        "append one JSON line per delivery to this file (tests)"),
    CONFIG_OPT_INT("fail_first", crew_config, fail_first, "0", 0, 1000000, 0,
        "answer 503 to the first N webhooks (tests)"),
    CONFIG_OPT_LOGLEVEL("log_level", crew_config, log_level, "info", 0, "log level"),
    CONFIG_END,
};

typedef struct crew {
	crew_config cfg;
	config conf;
	loop loop;
	http_server *srv;
	http_client *cli;
	json_t *keys; /* {"units": {name: key}} or NULL */
	FILE *record;
	uint64_t received, rejected, failed_on_purpose;
	unsigned pending; /* API calls in flight */
} crew;

/* The receiver's own check, independent of the notifier's code. */
static bool
verify(const char *secret, const char *header, const char *body, size_t len)
{
	if (header == NULL)
		return false;
	const char *tp = strstr(header, "t=");
	if (tp == NULL || strstr(header, "v1=") == NULL)
		return false;
	char *end;
	long long t = strtoll(tp + 2, &end, 10);
	if (end == tp + 2 || (*end != ',' && *end != '\0'))
		return false;
	long long now = (long long)(trygg_wall_us() / 1000000);
	if (t < now - 300 || t > now + 300)
		return false; /* too old: a replay */
	char prefix[32];
	int n = snprintf(prefix, sizeof(prefix), "%lld.", t);
	char *msg = xmalloc((size_t)n + len + 1);
	memcpy(msg, prefix, (size_t)n);
	memcpy(msg + n, body, len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, (size_t)n + len, md,
	    &mdlen);
	free(msg);
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	/* Any v1 may match: while a secret is rotated the sender signs with
	 * both, and a receiver knows one of them (as Stripe's scheme). */
	bool ok = false;
	for (const char *p = header; (p = strstr(p, "v1=")) != NULL; p += 3) {
		if (p != header && p[-1] != ',' && p[-1] != ' ')
			continue; /* "xv1=": not this field */
		const char *sig = p + 3;
		size_t siglen = strcspn(sig, ",");
		if (siglen == 2 * mdlen && CRYPTO_memcmp(sig, hex, siglen) == 0)
			ok = true; /* no early exit: every candidate costs the same */
	}
	return ok;
}

typedef struct call {
	crew *c;
	char *done_url; /* after the ack: complete, if asked */
	char *key;
	char task[40];
} call;

static void api_call(crew *c, const char *url, const char *key, const char *note,
    const char *then_done, const char *task);

static void
call_done(void *arg, const http_client_response *resp)
{
	call *k = arg;
	crew *c = k->c;
	c->pending--;
	printf("  -> %s task %s: %s %ld\n", k->done_url ? "acknowledged" : "api call for", k->task,
	    resp->err ? resp->error : "HTTP", resp->status);
	fflush(stdout);
	if (resp->err == 0 && resp->status == 200 && k->done_url)
		api_call(c, k->done_url, k->key, "done by the demo crew", NULL, k->task);
	free(k->done_url);
	free(k->key);
	free(k);
}

static void
api_call(crew *c, const char *url, const char *key, const char *note, const char *then_done,
    const char *task)
{
	char auth[300];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	const char *headers[] = {auth, "Content-Type: application/json", NULL};
	json_t *b = json_pack("{s:s}", "note", note);
	size_t len;
	char *body = tjson_dump(b, &len);
	json_decref(b);
	call *k = xcalloc(1, sizeof(*k));
	k->c = c;
	k->done_url = then_done ? xstrdup(then_done) : NULL;
	k->key = xstrdup(key);
	snprintf(k->task, sizeof(k->task), "%s", task);
	if (http_client_request(c->cli, "POST", url, headers, body, len, 5000, call_done, k) != 0) {
		free(k->done_url);
		free(k->key);
		free(k);
	} else {
		c->pending++;
	}
	free(body);
}

static void
handle_webhook(http_request *req, void *arg)
{
	crew *c = arg;
	size_t len;
	const char *body = http_request_body(req, &len);
	const char *sig = http_request_header(req, "Trygg-Signature");
	const char *id = http_request_header(req, "Trygg-Delivery");
	bool ok = verify(c->cfg.secret, sig, body, len);
	bool fail = ok && c->failed_on_purpose < (uint64_t)c->cfg.fail_first;
	json_t *doc = ok ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *task = json_object_get(doc, "task");
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *unit = json_string_value(json_object_get(doc, "unit"));
	const char *task_id = json_string_value(json_object_get(task, "id"));
	if (c->record) {
		json_t *line = json_pack("{s:s?, s:s?, s:b, s:b, s:s?, s:s?, s:s?, s:I, s:O?}",
		    "delivery_id", id, "attempt", http_request_header(req, "Trygg-Attempt"),
		    "signature_ok", ok, "failed_on_purpose", fail, "kind", kind, "unit", unit,
		    "task_id", task_id, "received_us", (json_int_t)trygg_wall_us(), "task", task);
		char *text = tjson_dump(line, NULL);
		fprintf(c->record, "%s\n", text);
		fflush(c->record);
		free(text);
		json_decref(line);
	}
	if (!ok) {
		c->rejected++;
		printf("REJECTED delivery %s: bad or missing signature\n", id ? id : "?");
		fflush(stdout);
		http_respond_error(req, 401, "bad_signature", "signature did not verify", NULL);
		json_decref(doc);
		return;
	}
	if (fail) {
		c->failed_on_purpose++;
		http_respond_error(req, 503, "unavailable", "failing on purpose (fail_first)",
		    NULL);
		json_decref(doc);
		return;
	}
	c->received++;
	printf("%s %s: %s at %s, priority %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
	       " report(s), for %s (delivery %s, attempt %s, signature ok)\n",
	    kind ? kind : "?", task_id ? task_id : "?",
	    json_string_value(json_object_get(task, "category")),
	    json_string_value(json_object_get(task, "task_key")),
	    json_integer_value(json_object_get(task, "priority")),
	    json_integer_value(json_object_get(task, "report_count")), unit ? unit : "?",
	    id ? id : "?", http_request_header(req, "Trygg-Attempt"));
	fflush(stdout);
	const char *key =
	    json_string_value(json_object_get(json_object_get(c->keys, "units"), unit ? unit : ""));
	json_t *api = json_object_get(doc, "api");
	bool act = kind && strcmp(kind, "task") == 0 && key && task_id && api;
	if (act && strcmp(c->cfg.auto_mode, "ack") == 0)
		api_call(c, json_string_value(json_object_get(api, "ack")), key, "on our way", NULL,
		    task_id);
	else if (act && strcmp(c->cfg.auto_mode, "done") == 0)
		api_call(c, json_string_value(json_object_get(api, "ack")), key, "on our way",
		    json_string_value(json_object_get(api, "done")), task_id);
	http_respond_json(req, 200, json_pack("{s:b}", "received", 1));
	json_decref(doc);
}

static void
handle_ready(http_request *req, void *arg)
{
	crew *c = arg;
	http_respond_json(req, 200,
	    json_pack("{s:s, s:I, s:I}", "status", "ok", "received", (json_int_t)c->received,
	        "rejected", (json_int_t)c->rejected));
}

static void
on_drain(loop *l, void *arg)
{
	crew *c = arg;
	http_server_stop(c->srv);
	http_server_close(c->srv);
	c->srv = NULL;
	http_client_close(c->cli);
	c->cli = NULL;
	loop_drain_done(l);
}

int
main(int argc, char **argv)
{
	static crew c;
	log_init("crewdemo", LOG_INFO);
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		config_print_help(options, stdout);
		return 0;
	}
	if (config_load(&c.conf, options, &c.cfg) != 0) {
		fprintf(stderr, "trygg-crewdemo: %s\n", config_error(&c.conf));
		config_fini(&c.conf);
		return 1;
	}
	log_set_level(c.cfg.log_level);
	if (c.cfg.keys_file[0]) {
		json_error_t je;
		c.keys = json_load_file(c.cfg.keys_file, JSON_REJECT_DUPLICATES, &je);
		if (c.keys == NULL) {
			fprintf(stderr, "trygg-crewdemo: %s: %s\n", c.cfg.keys_file, je.text);
			return 1;
		}
	}
	if (c.cfg.record[0] && (c.record = fopen(c.cfg.record, "a")) == NULL) {
		perror(c.cfg.record);
		return 1;
	}
	loop_options lo = {.drain_timeout_ms = 5000, .on_drain = on_drain, .arg = &c};
	if (loop_init(&c.loop, &lo) != 0)
		return 1;
	http_server_options so = {.bind_address = c.cfg.http_addr,
	    .port = (uint16_t)c.cfg.http_port,
	    .name = "crewdemo"};
	if (http_server_new(loop_uv(&c.loop), &so, &c.srv) != 0 ||
	    http_client_new(loop_uv(&c.loop), &c.cli) != 0 ||
	    http_server_route(c.srv, "POST /webhook", handle_webhook, &c) != 0 ||
	    http_server_route(c.srv, "POST /hooks/{unit}", handle_webhook, &c) != 0 ||
	    http_server_route(c.srv, "GET /readyz", handle_ready, &c) != 0 ||
	    http_server_route(c.srv, "GET /healthz", handle_ready, &c) != 0 ||
	    http_server_start(c.srv) != 0) {
		fprintf(stderr, "trygg-crewdemo: cannot listen on %s:%d\n", c.cfg.http_addr,
		    c.cfg.http_port);
		return 1;
	}
	printf("crewdemo: listening on http://%s:%d/webhook (auto=%s)\n", c.cfg.http_addr,
	    http_server_port(c.srv), c.cfg.auto_mode);
	fflush(stdout);
	int code = loop_run(&c.loop);
	if (loop_fini(&c.loop) != 0 && code == 0)
		code = 1;
	json_decref(c.keys);
	if (c.record)
		fclose(c.record);
	config_fini(&c.conf);
	return code;
}
