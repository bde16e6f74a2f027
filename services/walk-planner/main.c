/*
 * trygg-walk-planner: plans safety walks (trygghetsvandringar) from what
 * is reported, runs them and follows up their findings (issue 10;
 * docs/walk-planner.md).
 *
 * main() only wires the parts together: it publishes walk events
 * (WalkUpdated, FindingUpdated, FindingTaskRequested, MailRequested,
 * SurveyFiguresLoaded) as "walk-planner", consumes intake's reports and
 * places (intake_events.c) and the notifier's task events
 * (notifier_events.c), and serves the API
 * and the phone page (api.c). `trygg-walk-planner admin ...` is the
 * operator's command line instead (admin.c).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "walk_planner.h"

extern const struct migration walk_planner_migrations[];

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(wp_config, "8082"),
    SVC_PUBLISH_OPTIONS(wp_config, "tcp://127.0.0.1:5574", "tcp://127.0.0.1:5575"),
    SVC_STREAM_OPTIONS(wp_config, intake, "intake", "tcp://127.0.0.1:5570", "tcp://127.0.0.1:5571"),
    SVC_STREAM_OPTIONS(wp_config, notifier, "notifier", "tcp://127.0.0.1:5572",
        "tcp://127.0.0.1:5573"),
    CONFIG_OPT_STRING("public_url", wp_config, public_url, "http://127.0.0.1:8082", 0,
        "base URL of this service as people reach it (links in mails, phone_url)"),
    CONFIG_OPT_STRING("organizer_email", wp_config, organizer_email, "walks@trygg.invalid", 0,
        "ORGANIZER address of walk invitations"),
    CONFIG_OPT_INT("walk_detour_percent", wp_config, detour_percent, "130", 100, 300, 0,
        "walking distance as a percentage of the straight line (detour factor 1.3)"),
    CONFIG_OPT_INT("walk_speed_m_per_h", wp_config, speed_m_per_h, "4000", 1000, 8000, 0,
        "walking speed of a group on a safety walk, metres per hour"),
    CONFIG_OPT_INT("walk_max_length_m", wp_config, max_length_m, "3000", 200, 50000, 0,
        "longest proposed walk (the loop), metres"),
    CONFIG_OPT_INT("walk_max_minutes", wp_config, max_minutes, "120", 10, 600, 0,
        "longest proposed walk including the stops, minutes"),
    CONFIG_OPT_INT("walk_stop_minutes", wp_config, stop_minutes, "10", 0, 120, 0,
        "time planned at each stop, minutes"),
    CONFIG_OPT_DURATION("walk_after_sunset", wp_config, after_sunset_ms, "45m", 0, 14400000, 0,
        "an after-dark walk starts this long after sunset (on the next quarter hour)"),
    CONFIG_OPT_DURATION("walk_day_start", wp_config, day_start_ms, "14h", 0, 86340000, 0,
        "a daytime walk starts at this local time of day"),
    CONFIG_END,
};

/* A batch of events committed; task events may have published findings. */
static void
on_committed(void *arg, uint64_t last_seq)
{
	walk_planner *wp = arg;
	TRYGG_UNUSED(last_seq);
	svc_relay_kick(&wp->svc);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "admin") == 0)
		return wp_admin_main(argc - 2, argv + 2);
	static walk_planner wp;
	svc_options so = {.name = "walk-planner",
	    .schema = "walks",
	    .options = options,
	    .config = &wp.cfg,
	    .common = &wp.cfg.common,
	    .migrations = walk_planner_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&wp.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (svc_publish(&wp.svc, "walk-planner") != 0 ||
	    svc_consume(&wp.svc,
	        &(svc_stream){.publisher = "intake",
	            .urls = &wp.cfg.intake,
	            .apply = wp_intake_events_apply,
	            .on_committed = on_committed,
	            .arg = &wp}) != 0 ||
	    svc_consume(&wp.svc,
	        &(svc_stream){.publisher = "notifier",
	            .urls = &wp.cfg.notifier,
	            .apply = wp_notifier_events_apply,
	            .on_committed = on_committed,
	            .arg = &wp}) != 0 ||
	    wp_api_register(&wp) != 0) {
		free(wp.cfg_json);
		return svc_abort(&wp.svc);
	}
	rv = svc_run(&wp.svc);
	free(wp.cfg_json);
	return rv;
}
