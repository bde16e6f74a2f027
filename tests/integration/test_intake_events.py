"""intake's events, status flow, privacy purge and faults (issue 4, parts
5, 6 and 7), black-box.

ReportReceived must leave through the outbox and the real bus; task
events published by a real outbox (trygg-testpub standing in for the
notifier) must move report status exactly once; with Postgres stopped the
answer is 503 with Retry-After and never a 201.
"""
import json
import os
import signal
import struct
import subprocess
import threading
import time

from harness import (PGBIN, PGDIR, SUPER_URL, Service, check, free_port, fresh_schemas, http,
                     pg_start, pg_stop, psql, psql1, role_url, wait_for)
from intake_support import (stop, APP, POLICE, SCHOOL, SERGELS, STAFF, bearer, form_post, get,
                            outbox_events, pb_fields, pb_string, pb_varint, post, report,
                            report_count, start_intake)


def test_intake_report_received_event():
    svc, keys = start_intake()
    s, _, b = post(svc, keys[POLICE], report("drug_dealing", description="Stairs",
                                             contact={"first_name": "Sven", "last_name": "Svensson",
                                                      "email": "sven@example.se",
                                                      "phone": "+46701234567"}))
    check(s == 201, "post %s %r" % (s, b))
    # demo-seed's place load wrote a PlaceDefined per place before it.
    events = [e for e in outbox_events() if e[0] != "trygg.events.PlaceDefined"]
    check(len(events) == 1 and events[0][0] == "trygg.events.ReportReceived", "events %r" % events)
    payload = events[0][1]
    for secret in (b"Sven", b"Svensson", b"sven@example.se", b"+46701234567", b"Stairs"):
        check(secret not in payload, "event carries %r" % secret)
    f = pb_fields(payload)
    check(f[1][0].decode() == b["id"], "report_id")
    check(f[3][0] == POLICE.encode() and f[4][0] == b"police", "partner")
    check(f[5][0] == b"drug_dealing" and f[6][0] == b"crime", "category and focus area")
    check(f[7][0] == 1, "has_position")
    lat = struct.unpack("<d", f[8][0])[0]
    lon = struct.unpack("<d", f[9][0])[0]
    check(abs(lat - SERGELS[0]) < 1e-9 and abs(lon - SERGELS[1]) < 1e-9, "position")
    check(f[10] == [b"sergels-torg"], "places %r" % f.get(10))
    check(f[11][0] == 4 and f[12][0] == 1, "severity and sensitive")
    check(f[13][0] > 1.7e15, "occurred_at_us")
    stop(svc)


def test_intake_events_on_the_bus():
    """A real subscriber follows intake's stream: every event, in order,
    exactly as the outbox holds it, whether it came by replay or live as
    its batch committed (outbox_relay_committed)."""
    svc, keys = start_intake()
    fresh_schemas("testsub")
    sub = Service("testsub", "trygg-testsub", {
        "DATABASE_URL": role_url("testsub"), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_PUBLISHER": "intake", "TRYGG_BUS_TESTPUB_SUB_URL": svc.env["TRYGG_BUS_PUB_URL"],
        "TRYGG_BUS_TESTPUB_REQ_URL": svc.env["TRYGG_BUS_REP_URL"], "TRYGG_RECORD_ALL": "1"})
    for i in range(20):
        check(post(svc, keys[APP], report(description="n%d" % i))[0] == 201, "post")
    sub.start()  # late: the first 20 come by replay
    # Then 8 clients at once, so batches of several reports commit side by
    # side and their answers come back in either order.
    codes = []

    def client(c):
        for i in range(25):
            codes.append(post(svc, keys[APP], report(description="m%d-%d" % (c, i)))[0])
    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(codes == [201] * 200, "posts %r" % sorted(set(codes)))
    # The demo places' PlaceDefined events come first (demo-seed).
    total = len(outbox_events())
    check(total == 220 + len([e for e in outbox_events() if e[0] == "trygg.events.PlaceDefined"]),
          "events %d" % total)
    wait_for(lambda: psql1("SELECT last_seq FROM testsub.inbox_cursor WHERE publisher = 'intake'")
             == str(total), 20, "subscriber to reach seq %d" % total)
    seqs = sorted(e[2] for e in outbox_events())
    check(seqs == list(range(1, total + 1)), "sequence numbers %r" % seqs[:5])
    # Every event applied once, each field as the outbox has it.
    check(psql1("SELECT count(*) FROM testsub.applied") == str(total), "applied once each")
    differ = psql1("SELECT count(*) FROM testsub.applied a FULL JOIN intake.outbox o"
                   " ON o.pub_seq = a.seq AND o.event_id::text = a.event_id"
                   " AND o.event_type = a.event_type AND o.payload = a.payload"
                   " AND o.occurred_at = a.occurred_at WHERE o.id IS NULL OR a.id IS NULL")
    check(differ == "0", "%s events differ between the bus and the outbox" % differ)
    # ... and the reports' events went out as their batches committed.
    m = http("GET", svc.base + "/metrics")[2].decode()
    at_commit = [float(l.split()[-1]) for l in m.splitlines()
                 if l.startswith("trygg_outbox_published_at_commit_total")]
    check(at_commit and at_commit[0] >= 100, "published at commit %r" % at_commit)
    stop(sub)
    stop(svc)


NOTIFIER = "testpub"  # a real outbox relay publishing as "notifier"


def start_notifier():
    fresh_schemas(NOTIFIER)
    pub = Service("notifier", "trygg-testpub", {
        "DATABASE_URL": role_url(NOTIFIER), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_PUBLISHER": "notifier",
        "TRYGG_BUS_PUB_URL": "tcp://127.0.0.1:%d" % free_port(),
        "TRYGG_BUS_REP_URL": "tcp://127.0.0.1:%d" % free_port()})
    pub.start()
    return pub


def publish(event_type, payload):
    """Writes one task event into the stand-in notifier's outbox."""
    psql("INSERT INTO %s.outbox (event_type, payload) VALUES ('%s', '\\x%s'::bytea)"
         % (NOTIFIER, event_type, payload.hex()))


def task(report_ids, note=None, reason=None, unit=False, tid="task-1"):
    # Each task has its own id: intake applies an event to the reports it
    # has recorded for the task (TaskOpened) as well as to those listed.
    msg = pb_string(1, tid)
    for r in report_ids:
        msg += pb_string(2, r)
    if unit:
        msg += pb_string(3, "crew-7")
        if note:
            msg += pb_string(4, note)
        return msg
    if reason is not None:
        msg += pb_varint(3, reason)
        if note:
            msg += pb_string(4, note)
        return msg
    if note:
        msg += pb_string(3, note)
    return msg


def test_intake_status_from_task_events():
    pub = start_notifier()
    svc, keys = start_intake({"TRYGG_BUS_NOTIFIER_SUB_URL": pub.env["TRYGG_BUS_PUB_URL"],
                              "TRYGG_BUS_NOTIFIER_REQ_URL": pub.env["TRYGG_BUS_REP_URL"]})
    ids = []
    for i in range(6):
        s, _, b = post(svc, keys[APP], report(description="r%d" % i))
        check(s == 201, "post")
        ids.append(b["id"])

    def status_of(i):
        return get(svc, "/v1/reports/" + ids[i], keys[APP])[1]

    publish("trygg.events.TaskOpened", task(ids[:2]))
    publish("trygg.events.TaskAcknowledged", task(ids[:2], note="On our way", unit=True))
    wait_for(lambda: status_of(0)["status"] == "acknowledged", 15, "acknowledged")
    check(status_of(1)["status"] == "acknowledged" and status_of(2)["status"] == "open", "scope")
    publish("trygg.events.TaskCompleted", task(ids[:1], note="Bin emptied", tid="task-2"))
    wait_for(lambda: status_of(0)["status"] == "closed", 15, "completed")
    r0 = status_of(0)
    check(r0["close_reason"] == "fixed" and r0["status_notes"] == "Bin emptied", "fixed %r" % r0)
    publish("trygg.events.TaskDeclined", task(ids[1:2], reason=1, note="Private property",
                                              tid="task-3"))
    publish("trygg.events.TaskDeclined", task(ids[2:3], reason=2, tid="task-4"))
    wait_for(lambda: status_of(2)["status"] == "closed", 15, "declined")
    check(status_of(1)["close_reason"] == "not_ours" and
          status_of(1)["status_notes"] == "Private property", "not ours %r" % status_of(1))
    check(status_of(2)["close_reason"] == "duplicate", "duplicate")
    # A poison event is recorded and skipped; a late acknowledgement does
    # not reopen a closed report; a bogus id is ignored.
    publish("trygg.events.TaskCompleted", b"\xff\xff\xff")
    publish("trygg.events.TaskAcknowledged", task(ids[:1] + ["not-a-uuid"], unit=True,
                                                  tid="task-5"))
    publish("trygg.events.TaskCompleted", task(ids[3:4], note="Done", tid="task-6"))
    wait_for(lambda: status_of(3)["status"] == "closed", 15, "after the poison event")
    check(status_of(0)["status"] == "closed", "closed report reopened")
    check(psql1("SELECT count(*) FROM intake.inbox_failed") == "1", "poison event recorded")
    # A repeat report joining an acknowledged task is acknowledged; a
    # decline naming the owner says who handles it.
    joined = pb_string(1, "task-7") + pb_string(2, ids[0]) + pb_string(3, ids[4]) + \
        pb_string(5, "acknowledged")
    publish("trygg.events.TaskJoined", joined)
    publish("trygg.events.TaskDeclined", task(ids[5:6], reason=1, tid="task-8")
            + pb_string(6, "Trafikverket"))
    wait_for(lambda: status_of(5)["status"] == "closed", 15, "declined with owner")
    check(status_of(4)["status"] == "acknowledged", "joined %r" % status_of(4))
    check(status_of(5)["status_notes"] == "Handled by Trafikverket", "owner %r" % status_of(5))
    # Open311 shows closed with the notes.
    status, o = get(svc, "/open311/v2/requests/%s.json" % status_of(0)["service_request_id"])
    check(o[0]["status"] == "closed" and o[0]["status_notes"] == "Bin emptied", "open311 %r" % o)
    # Exactly once: restart intake; nothing is applied twice.
    stop(svc)
    svc.start()
    check(psql1("SELECT last_seq FROM intake.inbox_cursor WHERE publisher = 'notifier'") == "10",
          "cursor")
    stop(svc)
    stop(pub)


def hold_lock(table):
    """A psql session holding an exclusive lock on table until its stdin is
    closed (or it is killed): writes to it block, in flight."""
    p = subprocess.Popen([os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                          SUPER_URL], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
    p.stdin.write("BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT 1;\n" % table)
    p.stdin.flush()
    return p


def intake_waiting_on_lock():
    return int(psql1("SELECT count(*) FROM pg_stat_activity WHERE usename = 'intake'"
                     " AND wait_event_type = 'Lock'"))


def test_intake_postgres_down_503():
    svc, keys = start_intake()
    check(post(svc, keys[APP], report())[0] == 201, "post before")
    # A report in flight when Postgres goes down: its INSERT waits on a
    # lock (seen in pg_stat_activity) when the server stops. It must be
    # answered 503, not 201 and not never, and it must not be stored.
    locker = hold_lock("intake.reports")
    inflight = {}

    def in_flight_post():
        try:
            inflight["answer"] = post(svc, keys[APP], report(description="in flight"),
                                      timeout=30)
        except Exception as e:
            inflight["answer"] = e
    t = threading.Thread(target=in_flight_post)
    try:
        wait_for(lambda: psql1("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock'"
                               " AND relation = 'intake.reports'::regclass AND granted") == "1",
                 10, "the lock on intake.reports")
        t.start()
        wait_for(lambda: intake_waiting_on_lock() >= 1, 10, "the POST to wait on the lock")
        pg_stop()
    finally:
        locker.kill()
        locker.wait(10)
    try:
        t.join(20)
        check(not t.is_alive(), "the in-flight POST got no answer within 20 s")
        a = inflight.get("answer")
        check(isinstance(a, tuple), "the in-flight POST failed: %r" % (a,))
        # The answer must be true: a 503 if it was not stored, or a 201 if
        # its commit won the race with the shutdown (the lock holder's
        # backend can exit first); checked against the table below.
        check(a[0] in (201, 503), "in-flight POST while Postgres went down: %s %r" % (a[0], a[2]))
        inflight_stored = a[0] == 201
        time.sleep(0.5)
        for body in (report(), report("graffiti", attributes={"surface": "wall"})):
            s, h, b = post(svc, keys[APP], body)
            check(s == 503, "POST with Postgres down: %s %r" % (s, b))
            check(int(h.get("Retry-After", "0")) >= 1, "Retry-After %r" % h)
        s, h, _ = form_post(svc, "xml", {"api_key": keys[APP], "service_code": "litter",
                                         "lat": "59.3324", "long": "18.0637"})
        check(s == 503 and h.get("Retry-After"), "Open311 POST %s" % s)
        check(get(svc, "/v1/reports", keys[APP])[0] == 503, "GET list")
        check(get(svc, "/open311/v2/requests.json")[0] == 503, "Open311 GET")
        # A key never seen before cannot be checked: 503, not 401.
        check(post(svc, "tk_" + "D" * 43, report())[0] == 503, "unknown key while down")
        # Client mistakes are still 4xx.
        s, _, b = post(svc, keys[APP], None, raw=b"{bad")
        check(s == 400, "malformed JSON while down: %s" % s)
        check(http("GET", svc.base + "/readyz")[0] == 503, "ready while Postgres is down")
        check(svc.alive(), "intake died")
    finally:
        pg_start()
    wait_for(lambda: post(svc, keys[APP], report())[0] == 201, 30, "recovery")
    check(report_count() == 2 + inflight_stored, "exactly the 201s were stored: %d" % report_count())
    check(psql1("SELECT count(*) FROM intake.reports WHERE description = 'in flight'")
          == ("1" if inflight_stored else "0"),
          "the in-flight report's answer (%s) is not what happened" % a[0])
    stop(svc)


def test_intake_statement_timeout():
    """An INSERT stuck behind a lock is cancelled by statement_timeout: a
    503 that says not stored (it rolled back), not a 500 and not a hang."""
    svc, keys = start_intake({"TRYGG_DB_STATEMENT_TIMEOUT": "1s"})
    check(post(svc, keys[APP], report())[0] == 201, "post before")
    locker = hold_lock("intake.reports")
    try:
        wait_for(lambda: psql1("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock'"
                               " AND relation = 'intake.reports'::regclass AND granted") == "1",
                 10, "the lock on intake.reports")
        t0 = time.time()
        s, h, b = post(svc, keys[APP], report(description="timed out"), timeout=10)
        took = time.time() - t0
    finally:
        locker.kill()
        locker.wait(10)
    check(s == 503 and h.get("Trygg-Outcome") == "not-stored",
          "POST behind a lock: %s %r %r" % (s, h.get("Trygg-Outcome"), b))
    check(took < 5, "POST behind a lock took %.1f s (statement timeout 1 s)" % took)
    check(psql1("SELECT count(*) FROM intake.reports WHERE description = 'timed out'") == "0",
          "the timed-out report was stored")
    check(post(svc, keys[APP], report())[0] == 201, "post after")
    stop(svc)


def postgres_pids():
    """The postmaster of the test cluster and all its children."""
    check(PGDIR, "this test needs the test's own cluster (TRYGG_TEST_PGDIR)")
    with open(os.path.join(PGDIR, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    # pid (comm) state ppid ...; comm may hold spaces.
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                kids.append(int(d))
    return master, kids


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def test_intake_postgres_frozen():
    """Postgres frozen (SIGSTOP), not down: no error ever comes back on the
    connections. A POST must still be answered 503 within the batch
    timeout, /readyz must say not ready, and all recovers on SIGCONT."""
    svc, keys = start_intake({"TRYGG_DB_BATCH_TIMEOUT": "2s", "TRYGG_DB_STATEMENT_TIMEOUT": "2s"})
    check(post(svc, keys[APP], report())[0] == 201, "post before")
    master, _ = postgres_pids()
    frozen = [master]
    try:
        os.kill(master, signal.SIGSTOP)  # first, so it forks no one new
        _, kids = postgres_pids()
        frozen += kids
        signal_all(kids, signal.SIGSTOP)
        t0 = time.time()
        try:
            s, h, b = post(svc, keys[APP], report(description="frozen"), idem="frozen-1",
                           timeout=12)
        except OSError as e:
            raise AssertionError("POST with Postgres frozen: no answer after %.1f s (%s)"
                                 % (time.time() - t0, e))
        took = time.time() - t0
        check(s == 503, "POST with Postgres frozen: %s %r" % (s, b))
        check(took < 6, "POST with Postgres frozen took %.1f s (batch timeout 2 s)" % took)
        check(int(h.get("Retry-After", "0")) >= 1, "Retry-After %r" % h)
        # It was sent to a backend that never answered: nobody can know.
        check(h.get("Trygg-Outcome") == "unknown" and b["error"]["code"] == "outcome_unknown",
              "outcome of the frozen POST: %r %r" % (h, b))
        check(h.get("Trygg-Report-Id") and len(h["Trygg-Report-Id"]) == 36, "Trygg-Report-Id")
        wait_for(lambda: http("GET", svc.base + "/readyz", timeout=3)[0] == 503, 8,
                 "/readyz to say not ready")
        check(http("GET", svc.base + "/healthz", timeout=3)[0] == 200, "/healthz")
        check(svc.alive(), "intake died")
    finally:
        signal_all(frozen, signal.SIGCONT)
    wait_for(lambda: http("GET", svc.base + "/readyz", timeout=3)[0] == 200, 30, "ready again")
    # The retry with the same Idempotency-Key gives the one report.
    s, _, b = post(svc, keys[APP], report(description="frozen"), idem="frozen-1")
    check(s == 201, "retry after the freeze: %s %r" % (s, b))
    check(psql1("SELECT count(*) FROM intake.reports WHERE description = 'frozen'") == "1",
          "the frozen report is stored once")
    check(post(svc, keys[APP], report())[0] == 201, "post after")
    stop(svc)


def test_intake_contact_purge_and_drain():
    svc, keys = start_intake({"TRYGG_CONTACT_RETENTION": "1h", "TRYGG_PURGE_INTERVAL": "200ms"})
    s, _, old = post(svc, keys[APP], report(contact={"email": "old@example.se"}))
    check(s == 201, "post")
    s, _, new = post(svc, keys[APP], report(contact={"email": "new@example.se"}))
    check(s == 201, "post")
    # One contact past its retention, one well within it: only the first
    # goes (a purge that ignored age would take both).
    psql("UPDATE intake.report_contacts SET created_at = now() - interval '2 hours'"
         " WHERE report_id = '%s'" % old["id"])
    wait_for(lambda: psql1("SELECT count(*) FROM intake.report_contacts") == "1", 15, "purge")
    time.sleep(1.0)  # several more purge rounds
    check(psql1("SELECT report_id FROM intake.report_contacts") == new["id"],
          "a contact within its retention was purged")
    check(report_count() == 2, "the reports themselves stay")
    # SIGTERM under load: every answered 201 is stored, the exit is clean.
    import threading
    results = []

    def worker():
        for _ in range(30):
            try:
                results.append(post(svc, keys[STAFF], report(), timeout=5)[0])
            except Exception:
                results.append(None)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    rc = svc.stop()
    for t in threads:
        t.join()
    check(rc == 0, "exit code %s; log:\n%s" % (rc, svc.tail()))
    created = results.count(201)
    check(report_count() >= 2 + created, "201s not stored: %d > %d" % (2 + created, report_count()))
