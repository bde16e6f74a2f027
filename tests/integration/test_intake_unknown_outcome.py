"""A 503 must not lie about what was stored (issue 9, part 3), black-box.

Reports are posted concurrently while intake's Postgres backends are
terminated over and over (pg_terminate_backend), so some connections break
after a commit was sent. Then every report answered 201 exists (once),
every report answered 503 "not stored" does not exist, and the rest were
answered 503 "outcome unknown" (counted). A retry with the same
Idempotency-Key after the storm gives exactly one report for each.
Reports are told apart by a unique description.
"""
import json
import threading
import time

from harness import check, http, psql, psql1, wait_for
from intake_support import APP, STAFF, post, report, seed, start_intake, stop

WORKERS = 12
SECONDS = 8          # of posting under the storm
MAX_PER_WORKER = 400  # and at most this many posts per worker


def kill_intake_backends():
    rows = psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = 'intake' AND backend_type = 'client backend'")
    return len(rows)


def classify(status, headers, body):
    """'created', 'not_stored', 'unknown' or 'other: ...'."""
    if status == 201:
        return "created"
    if status == 503:
        outcome = headers.get("Trygg-Outcome", "")
        if outcome == "unknown":
            check(isinstance(body, dict) and body["error"]["code"] == "outcome_unknown",
                  "unknown outcome body %r" % (body,))
            check("Idempotency-Key" in body["error"]["message"], "advice %r" % (body,))
            return "unknown"
        return "not_stored"
    return "other: %s %r" % (status, body)


def test_intake_unknown_outcome():
    keys = seed()
    psql("UPDATE intake.partners SET rate_per_min = 1000000")  # the test is no flood
    svc, _ = start_intake({"TRYGG_DB_CONNECTIONS": "6", "TRYGG_DB_BATCH_TIMEOUT": "3s"},
                          seed_db=False)
    results = []  # (description, idem key or None, outcome)
    lock = threading.Lock()
    stop_at = time.time() + SECONDS
    storm = threading.Event()

    def worker(w):
        key = keys[STAFF] if w % 2 else keys[APP]
        for i in range(MAX_PER_WORKER):
            if time.time() > stop_at:
                break
            desc = "uo-%d-%d" % (w, i)
            idem = "uo-key-%d-%d" % (w, i) if w % 3 == 0 else None
            try:
                s, h, b = post(svc, key, report(description=desc), idem=idem, timeout=20)
                outcome = classify(s, h, b)
            except AssertionError:
                raise
            except Exception as e:  # a client-side failure is a failure too
                outcome = "other: %r" % e
            with lock:
                results.append((desc, idem, outcome))

    def killer():
        n = 0
        while not storm.is_set() and n < 200:
            try:
                kill_intake_backends()
            except Exception:
                pass
            n += 1
            storm.wait(0.15)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    k = threading.Thread(target=killer)
    for t in threads:
        t.start()
    k.start()
    try:
        for t in threads:
            t.join(SECONDS + 60)
    finally:
        storm.set()
        k.join(10)
    check(not any(t.is_alive() for t in threads), "a poster hung")
    check(svc.alive(), "intake died")

    others = [r for r in results if r[2].startswith("other")]
    check(not others, "answers other than 201/503: %d, e.g. %r" % (len(others), others[:3]))
    stored = {}
    for desc, n in psql("SELECT description, count(*) FROM intake.reports"
                        " WHERE description LIKE 'uo-%' GROUP BY description"):
        stored[desc] = int(n)
    created = [r for r in results if r[2] == "created"]
    not_stored = [r for r in results if r[2] == "not_stored"]
    unknown = [r for r in results if r[2] == "unknown"]
    print("    %d posts: %d created, %d not stored, %d unknown; %d stored in all"
          % (len(results), len(created), len(not_stored), len(unknown), len(stored)))
    check(len(created) > 100, "too few 201s (%d): the test did not run" % len(created))
    check(len(not_stored) + len(unknown) > 0, "no 503 at all: the storm did not hit")
    missing = [r[0] for r in created if stored.get(r[0]) != 1]
    check(not missing, "answered 201 but not stored once: %r" % missing[:5])
    lies = [r[0] for r in not_stored if r[0] in stored]
    check(not lies, "answered 503 'not stored' but stored: %d of %d, e.g. %r"
          % (len(lies), len(not_stored), lies[:5]))

    # After the storm, retrying with the same Idempotency-Key gives exactly
    # one report for each, whatever the first answer was.
    wait_for(lambda: http("GET", svc.base + "/readyz", timeout=3)[0] == 200, 30, "ready again")
    retried = [r for r in results if r[1] is not None and r[2] != "created"][:50]
    for desc, idem, _ in retried:
        w = int(desc.split("-")[1])
        for _ in range(20):  # a pool connection may still be reconnecting
            s, _, b = post(svc, keys[STAFF] if w % 2 else keys[APP], report(description=desc),
                           idem=idem)
            if s != 503:
                break
            time.sleep(0.25)
        check(s == 201, "retry of %s: %s %r" % (desc, s, b))
        check(psql1("SELECT count(*) FROM intake.reports WHERE description = '%s'" % desc)
              == "1", "retry of %s: not exactly one report" % desc)
    stop(svc)
