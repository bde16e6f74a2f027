/*
 * trygg-reporting: the situation picture (issue 11; docs/reporting.md).
 *
 * main() only wires the parts together: three inboxes (intake, notifier,
 * walk-planner) whose apply callbacks (intake_events.c, notifier_events.c,
 * walk_planner_events.c) maintain the aggregates, and the HTTP API and
 * page (api.c). `trygg-reporting admin ...` is the
 * operator's command line instead (admin.c).
 */
#include <string.h>

#include "log.h"
#include "reporting.h"

extern const struct migration reporting_migrations[];

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(reporting_config, "8083"),
    SVC_STREAM_OPTIONS(reporting_config, intake, "intake", "tcp://127.0.0.1:5570",
        "tcp://127.0.0.1:5571"),
    SVC_STREAM_OPTIONS(reporting_config, notifier, "notifier", "tcp://127.0.0.1:5572",
        "tcp://127.0.0.1:5573"),
    SVC_STREAM_OPTIONS(reporting_config, walks, "walk_planner", "tcp://127.0.0.1:5574",
        "tcp://127.0.0.1:5575"),
    CONFIG_OPT_STRING("district_name", reporting_config, district_name, "Norrmalm", 0,
        "the district's name in the picture"),
    CONFIG_OPT_STRING("district_place", reporting_config, district_place, "norrmalm", 0,
        "slug of the PlaceDefined that is the district's boundary, not a place"),
    CONFIG_OPT_INT("suppress_threshold", reporting_config, suppress_threshold, "5", 1, 1000, 0,
        "public output shows no count below this (docs/reporting.md, privacy)"),
    CONFIG_OPT_DURATION("picture_cache", reporting_config, picture_cache_ms, "60s", 0, 3600000, 0,
        "how long a computed picture may be served again while nothing changed (0: never;"
        " any applied event or comment ends it at once)"),
    CONFIG_END,
};

/* An inbox committed a batch: the figures moved. */
static void
on_committed(void *arg, uint64_t last_seq)
{
	TRYGG_UNUSED(last_seq);
	reporting_changed(arg);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "admin") == 0)
		return admin_main(argc - 2, argv + 2);
	static reporting r;
	svc_options so = {.name = "reporting",
	    .schema = "reporting",
	    .options = options,
	    .config = &r.cfg,
	    .common = &r.cfg.common,
	    .migrations = reporting_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&r.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	metrics *m = r.svc.metrics;
	r.m_reports = metrics_counter(m, "trygg_reporting_reports_total",
	    "ReportReceived events applied (including replays after a crash).", NULL);
	r.m_tasks =
	    metrics_counter(m, "trygg_reporting_task_events_total", "Task events applied.", NULL);
	r.m_walks = metrics_counter(m, "trygg_reporting_walk_events_total",
	    "Walk, finding and survey events applied.", NULL);
	r.m_cache_hits = metrics_counter(m, "trygg_reporting_picture_cache_hits_total",
	    "Pictures served from the cache (nothing had changed since they were computed).", NULL);
	if (svc_consume(&r.svc,
	        &(svc_stream){.publisher = "intake",
	            .urls = &r.cfg.intake,
	            .apply = intake_events_apply,
	            .on_committed = on_committed,
	            .arg = &r}) != 0 ||
	    svc_consume(&r.svc,
	        &(svc_stream){.publisher = "notifier",
	            .urls = &r.cfg.notifier,
	            .apply = notifier_events_apply,
	            .on_committed = on_committed,
	            .arg = &r}) != 0 ||
	    svc_consume(&r.svc,
	        &(svc_stream){.publisher = "walk-planner",
	            .urls = &r.cfg.walks,
	            .apply = walk_planner_events_apply,
	            .on_committed = on_committed,
	            .arg = &r}) != 0 ||
	    api_register(&r) != 0)
		return svc_abort(&r.svc);
	return svc_run(&r.svc);
}
