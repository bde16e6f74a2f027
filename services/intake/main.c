/*
 * trygg-intake: the gateway partners post reports to (issue 4).
 *
 * main only wires the parts together. intake publishes ReportReceived,
 * consumes the notifier's task events (report status, notifier_events.c), and
 * serves the native and Open311 APIs from the directory (partners, keys,
 * categories, places) and the group-committing store; a timer purges
 * personal data (purge.c). `trygg-intake admin ...` is the operator's command line
 * instead (admin.c).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "log.h"

extern const struct migration intake_migrations[];

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(intake_config, "8080"),
    SVC_PUBLISH_OPTIONS(intake_config, "tcp://127.0.0.1:5570", "tcp://127.0.0.1:5571"),
    /* Unset: report status stays open (no notifier to follow). */
    SVC_STREAM_OPTIONS(intake_config, notifier, "notifier", NULL, NULL),
    CONFIG_OPT_STRING("district_box", intake_config, district_box, "59.326,18.020,59.357,18.085", 0,
        "min_lat,min_long,max_lat,max_long: the district when no boundary polygon is loaded"),
    CONFIG_OPT_DURATION("directory_refresh", intake_config, directory_refresh_ms, "10s", 100,
        3600000, 0, "how often partners, keys, categories and places are reloaded"),
    CONFIG_OPT_DURATION("contact_retention", intake_config, contact_retention_ms, "2160h", 1000,
        INT64_C(315360000000), 0, "how long reporters' contact details are kept (90 days)"),
    CONFIG_OPT_DURATION("idempotency_retention", intake_config, idempotency_retention_ms, "168h",
        1000, INT64_C(315360000000), 0, "how long Idempotency-Keys are remembered"),
    CONFIG_OPT_DURATION("purge_interval", intake_config, purge_interval_ms, "1h", 100, 86400000, 0,
        "how often expired contact details and keys are deleted"),
    CONFIG_OPT_INT("commit_batch_max", intake_config, commit_batch_max, "500", 1, 10000, 0,
        "most reports written in one transaction"),
    CONFIG_OPT_INT("commit_parallel", intake_config, commit_parallel, "4", 1, 64, 0,
        "report transactions in flight at once (at most db_connections)"),
    CONFIG_OPT_INT("list_limit_max", intake_config, list_limit_max, "1000", 1, 10000, 0,
        "largest page of GET /v1/reports"),
    CONFIG_OPT_INT("public_rate_per_min", intake_config, public_rate_per_min, "600", 1, 1000000, 0,
        "Open311 GETs without an api_key per minute and client address (burst: a tenth, at "
        "least 10)"),
    CONFIG_OPT_INT("auth_fail_per_min", intake_config, auth_fail_per_min, "60", 1, 1000000, 0,
        "failed authentications per minute and client address before 429 (burst: a tenth, at "
        "least 10)"),
    CONFIG_OPT_URL("public_url", intake_config, public_url, NULL, 0,
        "the public base URL clients reach intake at (https behind a proxy), for Open311 "
        "discovery; unset: http://<http_addr>:<http_port>"),
    CONFIG_END,
};

static bool
check_directory(void *arg)
{
	intake *in = arg;
	return in->dir != NULL && directory_loaded(in->dir);
}

static int
parse_box(intake *in)
{
	double *b = in->district_box;
	char extra;
	if (in->cfg.district_box == NULL || in->cfg.district_box[0] == '\0')
		return 0;
	if (sscanf(in->cfg.district_box, "%lf,%lf,%lf,%lf%c", &b[0], &b[1], &b[2], &b[3], &extra) !=
	        4 ||
	    b[0] >= b[2] || b[1] >= b[3] || b[0] < -90 || b[2] > 90 || b[1] < -180 || b[3] > 180) {
		log_error("config_invalid",
		    "\"option\":\"district_box\",\"error\":\"expected "
		    "min_lat,min_long,max_lat,max_long\"");
		return TRYGG_ECONFIG;
	}
	in->has_district_box = true;
	return 0;
}

/* SIGTERM, after the HTTP server and the inbox stopped: every accepted
 * report gets its answer, then svc flushes the outbox. */
static void
on_store_drained(void *arg)
{
	intake *in = arg;
	purge_stop(in);
	directory_free(in->dir);
	in->dir = NULL;
	store_free(in->store);
	in->store = NULL;
	svc_drain_done(&in->svc);
}

static void
on_drain(svc *s, void *arg)
{
	intake *in = arg;
	(void)s;
	store_drain(in->store, on_store_drained, in);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "admin") == 0)
		return admin_main(argc - 2, argv + 2);
#ifdef M_TRIM_THRESHOLD
	/* A list of 1,000 reports allocates and frees buffers of 0.5-1 MB
	 * (libpq's rows, the JSON, the HTTP server's copy). With glibc's
	 * sliding thresholds, once many small requests had shaped the heap,
	 * those buffers came from fresh pages every time (heap grown and
	 * trimmed, or mmap and munmap: page faults and zeroing, ~1 ms of CPU
	 * per list after 10,000 GETs of one report, issue 9). Fixed
	 * thresholds keep them in the heap for reuse. */
	(void)mallopt(M_MMAP_THRESHOLD, 8 << 20);
	(void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
	static intake in;
	svc_options so = {.name = "intake",
	    .schema = "intake",
	    .options = options,
	    .config = &in.cfg,
	    .common = &in.cfg.common,
	    .migrations = intake_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&in.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (parse_box(&in) != 0)
		return svc_abort(&in.svc);
	in.m_rejected = metrics_counter(in.svc.metrics, "trygg_intake_rejected_total",
	    "Requests refused for a client mistake (4xx).", NULL);
	in.m_rate_limited = metrics_counter(in.svc.metrics, "trygg_intake_rate_limited_total",
	    "Requests refused by a partner's rate limit.", NULL);
	static ratelimit_table public_rl;
	double per_min = in.cfg.public_rate_per_min;
	ratelimit_table_init(&public_rl, per_min / 60.0, per_min / 10.0 < 10 ? 10 : per_min / 10.0);
	in.public_rl = &public_rl;
	if (svc_publish(&in.svc, "intake") != 0 ||
	    svc_consume(&in.svc,
	        &(svc_stream){.publisher = "notifier",
	            .urls = &in.cfg.notifier,
	            .apply = notifier_events_apply,
	            .arg = &in}) != 0)
		return svc_abort(&in.svc);
	in.relay = svc_relay(&in.svc);
	unsigned parallel = (unsigned)in.cfg.commit_parallel;
	if (parallel > (unsigned)in.cfg.common.db_connections)
		parallel = (unsigned)in.cfg.common.db_connections;
	store_options sto = {.batch_max = (unsigned)in.cfg.commit_batch_max, .parallel = parallel};
	if (directory_new(svc_uv(&in.svc), in.svc.db, (unsigned)in.cfg.directory_refresh_ms,
	        &in.dir) != 0 ||
	    store_new(svc_uv(&in.svc), in.svc.pool, in.relay, in.svc.metrics, &sto, &in.store) !=
	        0 ||
	    health_add_check(in.svc.health, "directory", check_directory, &in) != 0 ||
	    api_register(&in) != 0 || open311_register(&in) != 0 || purge_start(&in) != 0) {
		purge_stop(&in);
		directory_free(in.dir);
		store_free(in.store);
		return svc_abort(&in.svc);
	}
	svc_set_drain(&in.svc, on_drain, &in);
	return svc_run(&in.svc);
}
