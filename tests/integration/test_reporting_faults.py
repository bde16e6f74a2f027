"""Reporting (issue 11) with the real services and under faults: reports
posted to the real intake and routed by the real notifier reach every
figure; a kill -9 of reporting under load loses nothing and counts
nothing twice."""
import datetime
import json
import os
import random
import subprocess
import time

from harness import TMP, Service, check, free_port, fresh_schemas, psql1, role_url, wait_for
from intake_support import APP, POLICE, SERGELS, VASAPARKEN, post, report, start_intake
from reporting_support import (PUBS, Stack, by, local, new_id, report_received, task_acked,
                               task_completed, task_opened)

SEED = os.path.join(os.path.dirname(__file__), "../../deploy/demo/seed-notifier.sh")


def test_reporting_follows_real_intake_and_notifier():
    intake, keys = start_intake()
    ipub, irep = intake.env["TRYGG_BUS_PUB_URL"], intake.env["TRYGG_BUS_REP_URL"]
    fresh_schemas("notifier")
    npub, nrep = "tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()
    nport = free_port()
    notifier = Service("notifier", "trygg-notifier", {
        "DATABASE_URL": role_url("notifier"), "TRYGG_HTTP_PORT": nport,
        "TRYGG_BUS_PUB_URL": npub, "TRYGG_BUS_REP_URL": nrep,
        "TRYGG_BUS_INTAKE_SUB_URL": ipub, "TRYGG_BUS_INTAKE_REQ_URL": irep,
        "TRYGG_PUBLIC_URL": "http://127.0.0.1:%d" % nport, "TRYGG_TIMER_INTERVAL": "100ms"})
    notifier.start()
    keys_path = os.path.join(TMP, "reporting-unit-keys.json")
    out = subprocess.run([SEED, role_url("notifier"), "http://127.0.0.1:9/none", "s3cret",
                          keys_path], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "seed %s %s" % (out.stdout, out.stderr))
    units = json.load(open(keys_path))["units"]
    st = Stack(pubs=False, extra={"TRYGG_BUS_INTAKE_SUB_URL": ipub,
                                  "TRYGG_BUS_INTAKE_REQ_URL": irep,
                                  "TRYGG_BUS_NOTIFIER_SUB_URL": npub,
                                  "TRYGG_BUS_NOTIFIER_REQ_URL": nrep})
    sent = {"litter": 0, "graffiti": 0, "lighting": 0}
    ids = []
    for i in range(30):
        cat = ["litter", "graffiti", "lighting"][i % 3]
        pos = SERGELS if i % 2 else VASAPARKEN
        s, _, b = post(intake, keys[APP if i % 4 else POLICE], report(cat, pos))
        check(s == 201, "intake answered %s %r" % (s, b))
        sent[cat] += 1
        ids.append(b["id"])
    wait_for(lambda: psql1("SELECT count(*) FROM notifier.task_reports") == "30", 30,
             "the notifier routed every report")
    task = psql1("SELECT task_id FROM notifier.task_reports WHERE report_id = '%s'" % ids[1])
    unit = psql1("SELECT unit FROM notifier.tasks WHERE id = '%s'" % task)
    hdr = {"Authorization": "Bearer " + units[unit]}
    from harness import http_json
    for action in ("ack", "done"):
        s, b = http_json("POST", notifier.base + "/v1/tasks/%s/%s" % (task, action), {},
                         headers=hdr)
        check(s == 200, "%s: %s %r" % (action, s, b))

    def caught_up():
        pic = st.picture(st.staff, period="month")
        r = pic["response"]
        return pic if (pic["totals"]["reports"]["value"] == 30 and r["done"]["n"] == 1) else None
    pic = wait_for(caught_up, 30, "reporting caught up")
    cats = by(pic["by_category"], "category")
    for c, n in sent.items():
        check(cats[c]["count"]["value"] == n, "%s %r vs %d" % (c, cats[c]["count"], n))
    places = by(pic["by_place"], "place")
    check(places["sergels-torg"]["count"]["value"] == 15
          and places["vasaparken"]["count"]["value"] == 15, "places %r" % places["vasaparken"])
    check(by(pic["response"]["by_unit"], "unit")[unit]["done"]["n"] == 1, "unit %r"
          % pic["response"]["by_unit"])
    check(psql1("SELECT count(*) FROM reporting.tasks WHERE known") ==
          psql1("SELECT count(*) FROM notifier.tasks"), "every task known")
    part = st.picture(st.partner, period="month")
    check(part["totals"]["reports"]["value"] == sum(1 for i in range(30) if i % 4),
          "the app's own reports %r" % part["totals"])


def test_reporting_kill9_under_load_counts_exactly_once():
    st = Stack()
    rng = random.Random(3)
    cats = ["litter", "graffiti", "traffic", "lighting"]
    want = {c: 0 for c in cats}
    tasks = 0
    batches = []
    for b in range(6):
        evs, nevs = [], []
        for i in range(800):
            c = rng.choice(cats)
            want[c] += 1
            rid = new_id()
            at = local(2026, 6, 1 + (i % 28), 10)
            evs.append(("trygg.events.ReportReceived", report_received(
                rid, c, at, places=["odenplan"])))
            if i % 4 == 0:
                t = new_id()
                tasks += 1
                nevs += [("trygg.events.TaskOpened", task_opened(t, rid, c, "odenplan", at)),
                         ("trygg.events.TaskAcknowledged",
                          task_acked(t, "crew", at + datetime.timedelta(minutes=30))),
                         ("trygg.events.TaskCompleted",
                          task_completed(t, at + datetime.timedelta(minutes=90)))]
        batches.append((evs, nevs))
    midway = 0
    for k, (evs, nevs) in enumerate(batches):
        st.publish_many("intake", evs)
        st.publish_many("notifier", nevs)
        # Kill it while it applies, then start it again.
        time.sleep(0.3 + 0.2 * (k % 3))
        at = int(psql1("SELECT coalesce(max(last_seq), 0) FROM reporting.inbox_cursor"
                       " WHERE publisher = 'intake'"))
        st.reporting.kill9()
        if 0 < at < st.last_seq("intake"):
            midway += 1
        st.reporting.start()
    check(midway >= 1, "no kill landed while events were being applied")
    st.wait_applied(120)
    pic = st.picture(st.staff, period="month", at="2026-06-01")
    total = sum(want.values())
    check(pic["totals"]["reports"]["value"] == total, "total %r vs %d" % (pic["totals"], total))
    got = by(pic["by_category"], "category")
    for c in cats:
        check(got[c]["count"]["value"] == want[c], "%s: %r vs %d" % (c, got[c]["count"], want[c]))
    check(by(pic["by_place"], "place")["odenplan"]["count"]["value"] == total, "place")
    check(pic["response"]["ack"]["n"] == tasks and pic["response"]["done"]["n"] == tasks,
          "tasks %r vs %d" % (pic["response"]["ack"], tasks))
    check(pic["response"]["ack"]["within_target_share"] == 1, "share")
    check(st.reporting.starts == 7, "restarted %d times" % st.reporting.starts)
