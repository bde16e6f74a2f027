"""Replicas (DESIGN.md section 2, docs/ARCHITECTURE.md "Replicas"): two
intakes on the intake schema and two notifiers on the notifier schema, as a
rolling deploy or a Kubernetes Deployment with replicas: 2 runs them. Each
replica listens on its own pub/rep addresses; each subscriber is given
every replica of its publisher as a comma-separated list and dials them all
on one sub and one req socket.

Reports are posted alternately to both intakes under load; mid-stream the
first intake and the first notifier (the first URL of every list) are
killed with SIGKILL, so what follows reaches the survivors only through the
second URL. Afterwards every report intake stored is in exactly one task,
nothing is set aside, intake's outbox is one contiguous sequence, and
intake has applied the notifier's whole stream.
"""
import json
import os
import subprocess
import threading
import time

from harness import (Service, check, free_port, fresh_schemas, http, psql, psql1, role_url,
                     wait_for)
from intake_support import APP, SERGELS, bearer, report
from intake_support import seed as seed_intake
from notifier_support import FAST, SECRET, SEED
from harness import TMP

TOTAL = 600
KILL_AFTER = 200


def tcp():
    return "tcp://127.0.0.1:%d" % free_port()


def post_report(svc, key, i):
    body = json.dumps(report(description="replica report %d" % i)).encode()
    for _ in range(50):
        try:
            status, _, data = http("POST", svc.base + "/v1/reports", body,
                                   dict(bearer(key), **{"Content-Type": "application/json"}),
                                   timeout=15)
        except OSError:
            return None  # killed: the answer (and maybe the report) is lost
        if status != 429:
            break
        time.sleep(0.2)  # the partner's rate limit
    if status != 201:
        return None
    return json.loads(data)["id"]


def test_two_intakes_two_notifiers_one_of_each_killed():
    keys = seed_intake()
    fresh_schemas("notifier")
    key = keys[APP]
    ipub, irep = [tcp(), tcp()], [tcp(), tcp()]
    npub, nrep = [tcp(), tcp()], [tcp(), tcp()]
    crew_port = free_port()
    receiver = "http://127.0.0.1:%d/webhook" % crew_port
    keys_path = os.path.join(TMP, "replica-keys-%d.json" % crew_port)
    crew = Service("crewdemo", "trygg-crewdemo", {
        "TRYGG_HTTP_PORT": crew_port, "TRYGG_SECRET": SECRET, "TRYGG_KEYS_FILE": keys_path,
        "TRYGG_RECORD": os.path.join(TMP, "replica-crew-%d.jsonl" % crew_port)})
    notifiers = []
    for i in range(2):
        port = free_port()
        env = {"DATABASE_URL": role_url("notifier"), "TRYGG_HTTP_PORT": port,
               "TRYGG_BUS_PUB_URL": npub[i], "TRYGG_BUS_REP_URL": nrep[i],
               "TRYGG_BUS_INTAKE_SUB_URL": ",".join(ipub),
               "TRYGG_BUS_INTAKE_REQ_URL": ",".join(irep),
               "TRYGG_PUBLIC_URL": "http://127.0.0.1:%d" % port, "TRYGG_DB_CONNECTIONS": "4",
               # idle ports: never another test's walk-planner on the default one
               "TRYGG_BUS_WALK_PLANNER_SUB_URL": tcp(), "TRYGG_BUS_WALK_PLANNER_REQ_URL": tcp()}
        env.update(FAST)
        notifiers.append(Service("notifier%d" % i, "trygg-notifier", env))
    intakes = [Service("intake%d" % i, "trygg-intake", {
        "DATABASE_URL": role_url("intake"), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_BUS_PUB_URL": ipub[i], "TRYGG_BUS_REP_URL": irep[i],
        "TRYGG_BUS_NOTIFIER_SUB_URL": ",".join(npub),
        "TRYGG_BUS_NOTIFIER_REQ_URL": ",".join(nrep),
        "TRYGG_DB_CONNECTIONS": "4"}) for i in range(2)]
    notifiers[0].start()
    notifiers[1].start()
    out = subprocess.run([SEED, role_url("notifier"), receiver, SECRET, keys_path],
                         capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "seed failed: %s %s" % (out.stdout, out.stderr))
    for n in notifiers:
        wait_for(lambda: any(l.get("msg") == "routing_loaded" and l.get("units", 0) >= 10
                             for l in n.log_lines()), 15, "%s routing reload" % n.name)
    crew.start()
    intakes[0].start()
    intakes[1].start()
    # Each subscriber hears both replicas: the /readyz check per stream.
    for s, stream in ((notifiers[0], "inbox_intake"), (intakes[1], "inbox_notifier")):
        status, body = s.get("/readyz")
        check(status == 200 and body["checks"].get(stream) is True, "%s %r" % (s.name, body))

    accepted, lock, counter = [], threading.Lock(), [0]
    killed = threading.Event()

    def poster():
        while True:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= TOTAL:
                return
            # Alternately to both, and only to the survivor after the kill.
            target = intakes[1] if killed.is_set() or i % 2 else intakes[0]
            rid = post_report(target, key, i)
            if rid:
                with lock:
                    accepted.append(rid)
            if i == KILL_AFTER:
                intakes[0].kill9()
                notifiers[0].kill9()
                killed.set()

    threads = [threading.Thread(target=poster) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    check(killed.is_set(), "the kill did not happen")
    check(len(accepted) >= TOTAL - KILL_AFTER, "only %d reports accepted" % len(accepted))

    # Every report intake stored (also those whose answer the kill lost)
    # reaches the surviving notifier through the second URL, exactly once.
    n = int(psql1("SELECT count(*) FROM intake.reports"))
    stored = set(r[0] for r in psql("SELECT id FROM intake.reports"))
    check(set(accepted) <= stored, "%d accepted reports not stored"
          % len(set(accepted) - stored))
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.task_reports")) >= n, 180,
             "%d reports to reach the notifier" % n, interval=0.5)
    time.sleep(2)  # anything applied twice would show now
    row = psql("SELECT count(*), count(DISTINCT report_id) FROM notifier.task_reports")[0]
    check(row == [str(n), str(n)], "task_reports %r for %d reports" % (row, n))
    missing = stored - set(r[0] for r in psql("SELECT report_id FROM notifier.task_reports"))
    check(not missing, "%d reports have no task, e.g. %s" % (len(missing), sorted(missing)[:3]))
    in_tasks = int(psql1("SELECT coalesce(sum(cardinality(report_ids)), 0) FROM notifier.tasks"))
    check(in_tasks == n, "tasks list %d reports for %d" % (in_tasks, n))
    check(psql1("SELECT count(*) FROM notifier.inbox_failed") == "0",
          "set aside: %r" % psql("SELECT seq, error FROM notifier.inbox_failed"))
    # The outbox also holds the demo places' PlaceDefined (demo-seed).
    ne = int(psql1("SELECT count(*) FROM intake.outbox"))
    check(ne == n + int(psql1("SELECT count(*) FROM intake.outbox"
                              " WHERE event_type = 'trygg.events.PlaceDefined'")), "events %d" % ne)
    cursor = psql1("SELECT last_seq FROM notifier.inbox_cursor WHERE publisher = 'intake'")
    check(cursor == str(ne), "notifier's intake cursor %s for %d events" % (cursor, ne))
    # The two relays shared one sequence: 1..ne, no gap, no duplicate.
    seqs = psql("SELECT count(*), count(DISTINCT pub_seq), min(pub_seq), max(pub_seq)"
                " FROM intake.outbox WHERE pub_seq IS NOT NULL")[0]
    check(seqs == [str(ne), str(ne), "1", str(ne)], "intake's outbox sequence %r" % seqs)

    # The other direction: the surviving intake applied the whole task
    # stream the notifiers published, once.
    last = lambda: psql1("SELECT coalesce(max(pub_seq), 0) FROM notifier.outbox")
    wait_for(lambda: psql1("SELECT last_seq FROM intake.inbox_cursor WHERE publisher ="
                           " 'notifier'") == last(), 60, "intake to apply the task events",
             interval=0.5)
    check(int(last()) >= 1, "the notifiers published no task events")
    check(psql1("SELECT count(*) FROM intake.inbox_failed") == "0",
          "intake set aside: %r" % psql("SELECT seq, error FROM intake.inbox_failed"))
    for s in (intakes[1], notifiers[1]):
        check(s.alive(), "%s died:\n%s" % (s.name, s.tail()))
        check(s.stop() == 0, "%s did not drain cleanly:\n%s" % (s.name, s.tail()))
