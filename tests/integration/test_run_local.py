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
import signal
import subprocess
import time

from harness import ROOT, TMP, check, free_port, http, http_json, wait_for


def _procs_under(path):
    """Processes whose command line or environment mentions path: the
    cluster (-D path/pg/data) and the services (bus sockets under path)."""
    found = []
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if path.encode() in cmd or path.encode() in env:
            found.append("%s %s" % (pid, cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


def _report_to_crew_and_back(var, ports):
    out_path = os.path.join(TMP, "run-local.out")
    intake = "http://127.0.0.1:%d" % ports["INTAKE_PORT"]
    notifier = "http://127.0.0.1:%d" % ports["NOTIFIER_PORT"]
    keys = json.load(open(os.path.join(var, "demo-keys.json")))
    check(set(keys) >= {"polisen-norrmalm", "trygg-app", "norrmalm-staff"}, "demo keys %r" % keys)
    check(keys["trygg-app"] in open(out_path).read(), "demo keys not printed")
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
                      open(out_path).read())
        return m.group(1) if m else None
    task = wait_for(printed, 10, "the crew receiver to print a signed task")

    unit_keys = json.load(open(os.path.join(var, "notifier-keys.json")))["units"]
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
    rkey = json.load(open(os.path.join(var, "reporting-keys.json")))["staff"]
    check(rkey in open(out_path).read(), "reporting staff key not printed")
    wait_for(lambda: http_json("GET", "http://127.0.0.1:%d/v1/picture" % ports["REPORTING_PORT"],
                               headers={"Authorization": "Bearer " + rkey})[1]
             ["totals"]["reports"]["value"] >= 1, 10, "the picture to count the report")


def _walk_planner_counts_it(var, ports):
    """The report posted to the real intake reaches walk-planner's hotspots
    (issue 10), with the staff key make run printed."""
    key = json.load(open(os.path.join(var, "walks-keys.json")))["demo-staff"]

    def counted():
        status, _, body = http("GET", "http://127.0.0.1:%d/v1/hotspots" % ports["WALKS_PORT"],
                               headers={"Authorization": "Bearer " + key})
        check(status == 200, "hotspots answered %s %r" % (status, body[:300]))
        return any(h["place"] == "sergels-torg" for h in json.loads(body)["hotspots"])
    wait_for(counted, 20, "the report in walk-planner's hotspots")


def test_make_run_starts_everything_and_ctrl_c_stops_it():
    var = os.path.join(TMP, "run-local-var")
    ports = {k: free_port() for k in ("INTAKE_PORT", "NOTIFIER_PORT", "CREW_PORT",
                                      "TESTPUB_PORT", "TESTSUB_PORT", "WALKS_PORT",
                                      "REPORTING_PORT", "MAIL_PORT")}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRYGG_") and k != "DATABASE_URL"}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"TRYGG_VAR_DIR": var, "BACKBONE": "1",
                "BUILD": os.path.relpath(os.path.dirname(os.environ.get("TRYGG_BIN_DIR", "build/bin")), ROOT)})
    log = open(os.path.join(TMP, "run-local.out"), "wb")
    proc = subprocess.Popen([os.path.join(ROOT, "deploy/run-local.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def ready():
            check(proc.poll() is None, "run-local.sh exited early:\n" +
                  open(os.path.join(TMP, "run-local.out")).read())
            return b"ready. Ctrl-C stops everything." in open(os.path.join(TMP, "run-local.out"), "rb").read()
        wait_for(ready, 90, "make run to be ready", interval=0.2)
        check(http("GET", "http://127.0.0.1:%d/readyz" % ports["TESTSUB_PORT"])[0] == 200,
              "testsub not ready")
        check(os.path.exists(os.path.join(var, "pg", "data", "postmaster.pid")),
              "no local cluster under TRYGG_VAR_DIR")
        # The backbone demo flows: events reach the subscriber.
        def applied():
            _, _, body = http("GET", "http://127.0.0.1:%d/metrics" % ports["TESTSUB_PORT"])
            for line in body.decode().splitlines():
                if line.startswith("trygg_inbox_applied_seq"):
                    return float(line.rsplit(" ", 1)[1]) > 0
            return False
        wait_for(applied, 30, "demo events to arrive")
        check(len(_procs_under(var)) >= 6, "expected postgres and five programs running")
        _report_to_crew_and_back(var, ports)
        _walk_planner_counts_it(var, ports)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(0.5)
    left = _procs_under(var)
    check(not left, "processes left behind:\n" + "\n".join(left))
    check(not os.path.exists(os.path.join(var, "pg", "data", "postmaster.pid")),
          "Postgres still running after Ctrl-C")
    out = open(os.path.join(TMP, "run-local.out")).read()
    check("stopped." in out, "no clean stop:\n" + out[-2000:])
    # A demo script that runs a stray command (an unquoted heredoc's
    # backticks) still "works" but tells a new user something is broken.
    check("command not found" not in out, "a demo step ran a stray command:\n" + out[-4000:])
