"""Report status in intake from the notifier's bounded task events (issue
9): TaskOpened and TaskJoined name one report each; TaskAcknowledged and
TaskCompleted name only the task, and intake applies them to every report
it has recorded for that task. A real intake follows a real outbox relay
(trygg-testpub as publisher "notifier")."""
from harness import check, psql1, wait_for
from intake_support import APP, get, pb_string, post, report, start_intake, stop
from test_intake_events import publish, start_notifier


def test_intake_applies_task_events_by_task_id():
    pub = start_notifier()
    svc, keys = start_intake({"TRYGG_BUS_NOTIFIER_SUB_URL": pub.env["TRYGG_BUS_PUB_URL"],
                              "TRYGG_BUS_NOTIFIER_REQ_URL": pub.env["TRYGG_BUS_REP_URL"]})
    n = 40
    ids = []
    for i in range(n):
        s, _, b = post(svc, keys[APP], report(description="big task %d" % i))
        check(s == 201, "post %s" % s)
        ids.append(b["id"])
    other = post(svc, keys[APP], report(description="another task"))[2]["id"]
    task = "0b7c6d1e-0000-4000-8000-000000000001"
    publish("trygg.events.TaskOpened", pb_string(1, task) + pb_string(2, ids[0]))
    publish("trygg.events.TaskOpened", pb_string(1, "0b7c6d1e-0000-4000-8000-000000000002")
            + pb_string(2, other))
    for r in ids[1:]:
        publish("trygg.events.TaskJoined", pb_string(1, task) + pb_string(3, r)
                + pb_string(5, "dispatched"))
    publish("trygg.events.TaskAcknowledged", pb_string(1, task) + pb_string(3, "crew-7"))
    publish("trygg.events.TaskCompleted", pb_string(1, task) + pb_string(3, "All swept"))

    def closed():
        return psql1("SELECT count(*) FROM intake.reports WHERE status = 'closed'"
                     " AND close_reason = 'fixed' AND status_notes = 'All swept'")
    wait_for(lambda: closed() == str(n), 20, "every report of the task closed")
    check(get(svc, "/v1/reports/" + other, keys[APP])[1]["status"] == "open",
          "another task's report changed")
    srid = get(svc, "/v1/reports/" + ids[-1], keys[APP])[1]["service_request_id"]
    status, o = get(svc, "/open311/v2/requests/%s.json" % srid)
    check(status == 200 and o[0]["status"] == "closed" and o[0]["status_notes"] == "All swept",
          "open311 %r" % o)
    check(psql1("SELECT count(*) FROM intake.inbox_failed") == "0", "events set aside")
    stop(svc)
    stop(pub)
