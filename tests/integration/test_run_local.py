"""`make run` as a new user runs it.

deploy/run-local.sh is started in its own process group with a private
var/ directory and free ports; it must start its own Postgres, bring every
service to ready and load the demo data. Then the journey the issues'
"Done means" describe: a litter report at Sergels torg posted with the
printed demo key reaches the demo crew's receiver as a signed task; the
crew acknowledges and completes it; Open311 shows the report closed with
the crew's note. Finally Ctrl-C (SIGINT to the group, as a terminal sends
it) stops all of it, leaving no process and no running cluster behind.
"""
import json
import os
import re

from harness import check, http, http_json, wait_for
from run_local_support import RunLocal, procs_under


def _report_to_crew_and_back(run):
    intake = run.url("INTAKE_PORT")
    notifier = run.url("NOTIFIER_PORT")
    keys = run.keys("demo-keys.json")
    check(set(keys) >= {"polisen-norrmalm", "trygg-app", "norrmalm-staff"}, "demo keys %r" % keys)
    check(keys["trygg-app"] in run.out(), "demo keys not printed")
    body = json.dumps({"category": "litter", "lat": 59.3324, "long": 18.0637,
                       "description": "Overflowing bin by the stairs"}).encode()
    status, _, data = http("POST", intake + "/v1/reports", body,
                           {"Authorization": "Bearer " + keys["trygg-app"],
                            "Content-Type": "application/json"})
    check(status == 201, "POST /v1/reports answered %s %s" % (status, data[:300]))
    report = json.loads(data)
    check("sergels-torg" in report["places"], "places %r" % report["places"])

    # The crew receiver prints the task with a verified signature.
    def printed():
        m = re.search(r"task ([0-9a-f-]{36}): litter at sergels-torg.*signature ok",
                      run.out())
        return m.group(1) if m else None
    task = wait_for(printed, 10, "the crew receiver to print a signed task")

    unit_keys = run.keys("notifier-keys.json")["units"]
    status, body = http_json("GET", notifier + "/v1/tasks/" + task,
                             headers={"Authorization": "Bearer " + unit_keys["cleaning-south"]})
    check(status == 200, "GET task answered %s %r" % (status, body))
    for action, note in (("ack", "on our way"), ("done", "bin emptied")):
        status, body = http_json("POST", "%s/v1/tasks/%s/%s" % (notifier, task, action),
                                 {"note": note},
                                 {"Authorization": "Bearer " + unit_keys["cleaning-south"],
                                  "Content-Type": "application/json"})
        check(status == 200, "%s answered %s %r" % (action, status, body))

    def closed():
        status, body = http_json("GET", "%s/open311/v2/requests/%s.json"
                                 % (intake, report["service_request_id"]))
        return status == 200 and body[0]["status"] == "closed" and body[0]["status_notes"] == "bin emptied"
    wait_for(closed, 10, "Open311 to show the report closed")

    # The situation picture counts it, for the printed staff key.
    rkey = run.keys("reporting-keys.json")["staff"]
    check(rkey in run.out(), "reporting staff key not printed")
    wait_for(lambda: http_json("GET", run.url("REPORTING_PORT") + "/v1/picture",
                               headers={"Authorization": "Bearer " + rkey})[1]
             ["totals"]["reports"]["value"] >= 1, 10, "the picture to count the report")


def _walk_planner_counts_it(run):
    """The report posted to the real intake reaches walk-planner's hotspots
    (issue 10), with the staff key make run printed."""
    key = run.keys("walks-keys.json")["demo-staff"]

    def counted():
        status, _, body = http("GET", run.url("WALKS_PORT") + "/v1/hotspots",
                               headers={"Authorization": "Bearer " + key})
        check(status == 200, "hotspots answered %s %r" % (status, body[:300]))
        return any(h["place"] == "sergels-torg" for h in json.loads(body)["hotspots"])
    wait_for(counted, 20, "the report in walk-planner's hotspots")


def test_make_run_starts_everything_and_ctrl_c_stops_it():
    with RunLocal("run-local", backbone=True) as run:
        check(run.ready_check("TESTSUB_PORT"), "testsub not ready")
        check(os.path.exists(run.path("pg", "data", "postmaster.pid")),
              "no local cluster under TRYGG_VAR_DIR")
        # The backbone demo flows: events reach the subscriber.
        def applied():
            _, _, body = http("GET", run.url("TESTSUB_PORT") + "/metrics")
            for line in body.decode().splitlines():
                if line.startswith("trygg_inbox_applied_seq"):
                    return float(line.rsplit(" ", 1)[1]) > 0
            return False
        wait_for(applied, 30, "demo events to arrive")
        check(len(procs_under(run.var)) >= 6, "expected postgres and five programs running")
        _report_to_crew_and_back(run)
        _walk_planner_counts_it(run)
        run.stop()
