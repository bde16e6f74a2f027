"""The notifier end to end (issue 5): a report in through a real outbox and
inbox, routed, a signed webhook out to a real receiver (trygg-crewdemo,
which verifies the signature), acknowledged and completed through the API
and through signed e-mail links (real SMTP on loopback), and the task
events back on the bus, decoded by protobuf-c in the stand-in intake.
"""
import hashlib
import hmac
import re
import time
import urllib.parse

from harness import check, http, psql, psql1, wait_for
from notifier_support import SECRET, Smtp, Stack


def test_report_to_signed_webhook_ack_done():
    st = Stack()
    rid = st.report(report_id="rep-flow-1")
    d = st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [rid])[0]
    check(d["signature_ok"], "signature did not verify at the receiver")
    check(d["unit"] == "cleaning-south" and d["kind"] == "task", "routed to %r" % d["unit"])
    task = d["task_id"]
    check(st.task_for(rid) == task, "task id mismatch")
    st.wait_events(task, ["TaskOpened", "TaskDispatched"])
    # Only the owner's key may act; a wrong or missing key may not.
    status, _ = st.api("POST", "/v1/tasks/%s/ack" % task, unit="graffiti-removal")
    check(status == 404, "another unit's key answered %s" % status)
    status, _, _ = http("POST", st.notifier.base + "/v1/tasks/%s/ack" % task, b"")
    check(status == 401, "no key answered %s" % status)
    status, body = st.api("POST", "/v1/tasks/%s/ack" % task, unit="cleaning-south",
                          body={"note": "on our way"})
    check(status == 200 and body["status"] == "acknowledged", "ack: %s %r" % (status, body))
    status, body = st.api("POST", "/v1/tasks/%s/ack" % task, unit="cleaning-south")
    check(status == 200, "a repeated ack answered %s" % status)
    status, body = st.api("POST", "/v1/tasks/%s/done" % task, unit="cleaning-south",
                          body={"note": "swept and emptied the bins"})
    check(status == 200 and body["status"] == "done", "done: %s %r" % (status, body))
    got = st.wait_events(task, ["TaskOpened", "TaskDispatched", "TaskAcknowledged", "TaskCompleted"])
    check(got.count("TaskAcknowledged") == 1, "ack published %d times" % got.count("TaskAcknowledged"))
    completed = [e for e in st.events(task) if e[1] == "TaskCompleted"][0]
    check("swept and emptied the bins" in completed[4], "TaskCompleted carries %r" % completed)
    # The task as the API shows it: deliveries and history.
    status, body = st.api("GET", "/v1/tasks/%s" % task, unit="cleaning-south")
    check(status == 200 and body["deliveries"][0]["id"] == d["delivery_id"], "GET task %r" % body)
    events = [h["event"] for h in body["history"]]
    for e in ("opened", "delivered", "dispatched", "acknowledged", "done"):
        check(e in events, "history lacks %s: %r" % (e, events))
    status, body = st.api("GET", "/v1/tasks?report_id=%s" % rid)
    check(status == 200 and [t["id"] for t in body["tasks"]] == [task], "filter %r" % body)
    status, body = st.api("GET", "/v1/tasks?status=done&unit=cleaning-south&place=sergels-torg")
    check(status == 200 and len(body["tasks"]) == 1, "filters %r" % body)
    status, body = st.api("GET", "/v1/tasks?status=bogus")
    check(status == 400, "bad filter answered %s" % status)
    # Done means a new report at the same place opens a new task.
    rid2 = st.report(report_id="rep-flow-2")
    check(st.task_for(rid2) != task, "a report after completion joined the closed task")


def test_routing_dedup_copies_sensitive_and_default():
    st = Stack()
    a = st.report(report_id="dup-a", places=["odenplan"])
    b = st.report(report_id="dup-b", places=["odenplan"], severity=4)
    ta, tb = st.task_for(a), st.task_for(b)
    check(ta == tb, "repeat report opened a second task")
    row = psql("SELECT cardinality(report_ids), priority, unit FROM notifier.tasks WHERE id = '%s'" % ta)[0]
    check(row[0] == "2" and int(row[1]) > 4 and row[2] == "cleaning-north", "joined task %r" % row)
    st.wait_events(ta, ["TaskOpened", "TaskJoined"])
    time.sleep(0.5)
    check(int(psql1("SELECT count(*) FROM notifier.deliveries WHERE task_id = '%s'" % ta)) == 1,
          "a repeat report paged the crew again")
    # Sleeping outdoors: the outreach unit owns it, the site's cleaning crew gets a copy.
    s = st.report(category="sleeping_outdoors", places=["sergels-torg"], report_id="sleep-1")
    ts = st.task_for(s)
    units = wait_for(lambda: sorted(r[0] + "/" + r[1] for r in psql(
        "SELECT unit, kind FROM notifier.deliveries WHERE task_id = '%s'" % ts)) or None, 5, "deliveries")
    check(units == ["cleaning-south/copy", "outreach/task"], "sleeping outdoors went to %r" % units)
    # Sensitive: only the unit that handles it, no copies, not even a rule for another unit.
    psql("INSERT INTO notifier.routing_rules (category, unit, priority, role) VALUES"
         " ('drug_dealing', 'cleaning-south', 999, 'owner'),"
         " ('drug_dealing', 'cleaning-north', 100, 'copy')")
    time.sleep(0.5)
    dd = st.report(category="drug_dealing", places=["sergels-torg"], sensitive=True, report_id="dd-1")
    td = st.task_for(dd)
    units = wait_for(lambda: [r[0] for r in psql(
        "SELECT DISTINCT unit FROM notifier.deliveries WHERE task_id = '%s'" % td)] or None, 5, "deliveries")
    check(units == ["police-contact"], "sensitive report reached %r" % units)
    # Unmatched: the default unit, flagged and counted, never dropped.
    o = st.report(category="other", places=["hotorget"], report_id="other-1")
    row = psql("SELECT unit, unmatched FROM notifier.tasks WHERE id = '%s'" % st.task_for(o))[0]
    check(row == ["district-office", "t"], "unmatched went to %r" % row)
    check(st.notifier.metric("trygg_notifier_unmatched_total") >= 1, "unmatched not counted")
    # No place: grid cells, ~110 m. Close reports join, distant ones do not.
    c1 = st.report(places=[], lat=59.34001, lon=18.03001, report_id="cell-1")
    c2 = st.report(places=[], lat=59.34005, lon=18.03010, report_id="cell-2")
    c3 = st.report(places=[], lat=59.34501, lon=18.03001, report_id="cell-3")
    check(st.task_for(c1) == st.task_for(c2) != st.task_for(c3), "grid cells do not group")


def test_email_with_signed_links():
    smtp = Smtp()
    try:
        st = Stack(smtp=smtp)
        # This crew has no webhook: e-mail only.
        psql("UPDATE notifier.units SET webhook_url = NULL WHERE name = 'street-lighting'")
        time.sleep(0.3)
        rid = st.report(category="lighting", places=["vasaparken"], report_id="lamp-1")
        task = st.task_for(rid)
        msg = wait_for(lambda: [m for m in smtp.messages if task in m[2]
                                and "lighting@crews" in m[1][0]], 10, "the e-mail")[0]
        text = msg[2]
        check("Trygg-Delivery:" in text and "Subject: [Trygg] New task: lighting" in text,
              "mail headers: %s" % text[:400])
        ack = re.search(r"Acknowledge: (\S+)", text).group(1)
        done = re.search(r"Mark done:\s+(\S+)", text).group(1)
        st.wait_events(task, ["TaskDispatched"])
        # GET only shows a confirmation page; it must not act.
        status, _, page = http("GET", ack)
        check(status == 200 and b"<form method=\"post\">" in page, "link page %s" % status)
        check(psql1("SELECT status FROM notifier.tasks WHERE id = '%s'" % task) == "dispatched",
              "GET on a link acted")
        # A tampered signature is refused.
        bad = re.sub(r"s=[0-9a-f]{4}", "s=0000", ack)
        check(http("POST", bad, b"")[0] == 403, "tampered link accepted")
        status, _, page = http("POST", ack, b"")
        check(status == 200 and b"acknowledged" in page, "link POST %s %r" % (status, page[:200]))
        check(http("POST", ack, b"")[0] == 200, "repeating a link is not idempotent")
        status, _, _ = http("POST", done, b"")
        check(status == 200, "done link %s" % status)
        st.wait_events(task, ["TaskAcknowledged", "TaskCompleted"])
        # A done link on a finished task is harmless; an expired one refused.
        u = urllib.parse.urlsplit(done)
        q = urllib.parse.parse_qs(u.query)
        expired = done.replace("e=" + q["e"][0], "e=1000")
        check(http("POST", expired, b"")[0] == 403, "expired link accepted")
    finally:
        smtp.stop()


def test_decline_validation():
    st = Stack()
    rid = st.report(category="graffiti", places=["hotorget"], report_id="gr-1")
    task = st.task_for(rid)
    status, body = st.api("POST", "/v1/tasks/%s/decline" % task, unit="graffiti-removal", body={})
    check(status == 400 and body["error"]["field"] == "reason", "missing reason %s %r" % (status, body))
    status, body = st.api("POST", "/v1/tasks/%s/decline" % task, unit="graffiti-removal",
                          body={"reason": "not_ours"})
    check(status == 400 and body["error"]["field"] == "owner", "missing owner %r" % body)
    status, body = st.api("POST", "/v1/tasks/%s/decline" % task, unit="graffiti-removal",
                          body={"reason": "not_ours", "owner": "Trafikverket", "note": "state road"})
    check(status == 200 and body["status"] == "declined" and body["decline_owner"] == "Trafikverket",
          "decline %s %r" % (status, body))
    ev = [e for e in st.wait_events(task, ["TaskDeclined"]) if e == "TaskDeclined"]
    detail = [e for e in st.events(task) if e[1] == "TaskDeclined"][0][4]
    check("reason=1" in detail and "owner=Trafikverket" in detail, "TaskDeclined %r" % detail)
    status, body = st.api("POST", "/v1/tasks/%s/done" % task, unit="graffiti-removal")
    check(status == 409, "done after decline answered %s" % status)
    check("task is declined" in body["error"]["message"], "409 body %r" % body)
    status, _ = st.api("POST", "/v1/tasks/%s/decline" % task, unit="graffiti-removal",
                       body={"reason": "duplicate"})
    check(status == 200, "a repeated decline answered %s" % status)
    status, _ = st.api("POST", "/v1/tasks/not-a-uuid/ack", unit="graffiti-removal")
    check(status == 404, "bad id answered %s" % status)
    status, _, _ = http("POST", st.notifier.base + "/v1/tasks/%s/ack" % task, b"{}",
                        headers={"Authorization": "Bearer nope"})
    check(status == 401, "unknown key answered %s" % status)
    # A later event (a new task at the same place) has arrived, so a second
    # TaskDeclined would have too.
    later = st.task_for(st.report(category="graffiti", places=["hotorget"], report_id="gr-2"))
    check(later != task, "a report joined a declined task")
    st.wait_events(later, ["TaskOpened"])
    got = [e[1] for e in st.events(task)]
    check(got.count("TaskDeclined") == 1, "declined published %d times" % got.count("TaskDeclined"))


def test_dead_letter_and_escalation():
    st = Stack(notifier_env={"TRYGG_MAX_ATTEMPTS": "3"})
    dead_url = "http://127.0.0.1:9/hook"  # discard port: connection refused
    psql("UPDATE notifier.units SET webhook_url = '%s' WHERE name = 'traffic-office'" % dead_url)
    time.sleep(0.3)
    rid = st.report(category="traffic", places=["odenplan"], report_id="tr-1")
    task = st.task_for(rid)
    def dead():
        status, body = st.api("GET", "/v1/deliveries?status=dead")
        return [d for d in body["deliveries"] if d["task_id"] == task] if status == 200 else None
    d = wait_for(dead, 20, "a dead letter")[0]
    check(d["attempts"] == 3 and d["target"] == dead_url and d["last_error"], "dead letter %r" % d)
    st.wait_events(task, ["TaskEscalated"])
    # The escalation went to the supervisor's webhook (the crew receiver).
    e = st.wait_delivery(lambda x: x.get("task_id") == task and x.get("kind") == "escalation")
    check(e[0]["signature_ok"], "escalation signature")
    # Dead letters are for operators only.
    status, _ = st.api("GET", "/v1/deliveries?status=dead", unit="traffic-office")
    check(status == 403, "a unit saw the dead letters: %s" % status)


def test_ack_reminder_then_escalation_survive_restart():
    st = Stack()
    psql("UPDATE notifier.units SET ack_target_s = 2 WHERE name = 'park-maintenance'")
    time.sleep(0.3)
    rid = st.report(category="vegetation", places=["vasaparken"], report_id="veg-1")
    task = st.task_for(rid)
    st.wait_events(task, ["TaskDispatched"])
    # Killed before the reminder is due: the timer is in the database.
    st.notifier.kill9()
    time.sleep(2.5)
    st.notifier.start()
    st.wait_delivery(lambda x: x.get("task_id") == task and x.get("kind") == "reminder", 10,
                     "the reminder")
    st.wait_delivery(lambda x: x.get("task_id") == task and x.get("kind") == "escalation", 10,
                     "the escalation")
    st.wait_events(task, ["TaskEscalated"])
    # Acknowledging stops the timers; completion escalation stays armed.
    status, _ = st.api("POST", "/v1/tasks/%s/ack" % task, unit="park-maintenance")
    check(status == 200, "ack %s" % status)
    # TaskAcknowledged came after any second escalation would have.
    got = st.wait_events(task, ["TaskAcknowledged"])
    check(got.count("TaskEscalated") == 1, "escalated %d times" % got.count("TaskEscalated"))
    kinds = [r[0] for r in psql("SELECT kind FROM notifier.timers WHERE task_id = '%s'" % task)]
    check(kinds == ["completion_escalation"], "timers left %r" % kinds)


def test_sigterm_drains_cleanly():
    st = Stack()
    rid = st.report(report_id="drain-1")
    st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [rid])
    for svc in (st.crew, st.notifier, st.reportpub):
        code = svc.stop()
        check(code == 0, "%s exited %s on SIGTERM; log:\n%s" % (svc.name, code, svc.tail()))
        check("AddressSanitizer" not in svc.tail(200) and "runtime error" not in svc.tail(200),
              "%s: sanitizer report:\n%s" % (svc.name, svc.tail(60)))


def test_dead_copy_or_reminder_does_not_escalate_again():
    # The owner got its task; the copy recipient's webhook and then the
    # owner's reminder die: the only escalation is the timer's.
    st = Stack(notifier_env={"TRYGG_MAX_ATTEMPTS": "2"})
    psql("UPDATE notifier.units SET webhook_url = 'http://127.0.0.1:9/dead'"
         " WHERE name = 'cleaning-south'")
    psql("UPDATE notifier.units SET ack_target_s = 3 WHERE name = 'outreach'")
    time.sleep(0.5)
    rid = st.report(category="sleeping_outdoors", places=["sergels-torg"], report_id="copy-dead-1")
    task = st.task_for(rid)
    wait_for(lambda: psql1("SELECT count(*) FROM notifier.deliveries WHERE task_id = '%s'"
                           " AND kind = 'copy' AND status = 'dead'" % task) == "1", 20,
             "the copy to die")
    st.wait_events(task, ["TaskDispatched"])
    # Now the owner's endpoint dies too: the reminder becomes a dead letter.
    psql("UPDATE notifier.units SET webhook_url = 'http://127.0.0.1:9/dead',"
         " supervisor_webhook_url = '%s' WHERE name = 'outreach'" % st.receiver_url)
    wait_for(lambda: psql1("SELECT count(*) FROM notifier.deliveries WHERE task_id = '%s'"
                           " AND kind = 'reminder' AND status = 'dead'" % task) == "1", 20,
             "the reminder to die")
    st.wait_events(task, ["TaskEscalated"], timeout=20)
    status, _ = st.api("POST", "/v1/tasks/%s/ack" % task, unit="outreach")
    check(status == 200, "ack %s" % status)
    got = st.wait_events(task, ["TaskAcknowledged"])
    check(got.count("TaskEscalated") == 1, "escalated %d times: %r" % (got.count("TaskEscalated"),
                                                                     got))


def test_bad_before_is_400_naming_the_field():
    st = Stack()
    status, body = st.api("GET", "/v1/tasks?before=2020-13-45")
    check(status == 400 and body["error"]["field"] == "before", "before: %s %r" % (status, body))
    status, body = st.api("GET", "/v1/tasks?before=2020-01-01T00:00:00Z")
    check(status == 200, "a good before answered %s" % status)


def test_receiver_accepts_any_matching_v1():
    # During a secret rotation the sender signs twice; the demo receiver
    # must accept the delivery if any v1 matches.
    st = Stack()
    body = b'{"delivery_id":"d-rot","kind":"task","task":{"id":"x"}}'
    t = int(time.time())
    good = hmac.new(SECRET.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    url = st.receiver_url
    for header, want in (("t=%d,v1=%s,v1=%s" % (t, "0" * 64, good), 200),
                         ("t=%d,v1=%s" % (t, good), 200),
                         ("t=%d,v1=%s,v1=%s" % (t, "0" * 64, "1" * 64), 401)):
        status, _, _ = http("POST", url, body, headers={"Trygg-Signature": header,
                                                        "Content-Type": "application/json",
                                                        "Trygg-Delivery": "d-rot"})
        check(status == want, "%s answered %s, want %s" % (header[:40], status, want))


def test_unknown_timezone_refused_at_start():
    st = Stack()
    st.notifier.stop()
    from harness import Service
    env = dict(st.notifier.env)
    env["TRYGG_TIMEZONE"] = "Europe/Stokholm"
    bad = Service("notifier-tz", "trygg-notifier", env)
    try:
        bad.start(wait_ready=False)
        wait_for(lambda: not bad.alive(), 15, "the notifier to refuse the zone")
    finally:
        if bad.alive():
            bad.kill9()
    check("Europe/Stokholm" in bad.tail(20) and "time zone" in bad.tail(20),
          "no clear message: %s" % bad.tail(10))


def test_large_task_events_stay_small():
    # Thousands of repeat reports join one task; every event stays small,
    # none is set aside, and the logs do not grow with the task.
    st = Stack()
    n = 3000
    status, body = st.reportpub.post("/reports/bulk", {"count": n, "rate": 1000,
                                                       "places": ["odenplan"]})
    check(status == 202, "bulk %s %r" % (status, body))
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.task_reports")) >= n, 240,
             "%d reports in the notifier" % n, interval=0.5)
    tasks = psql("SELECT id FROM notifier.tasks")
    check(len(tasks) == 1, "%d tasks" % len(tasks))
    task = tasks[0][0]
    status, _ = st.api("POST", "/v1/tasks/%s/ack" % task, unit="cleaning-north")
    check(status == 200, "ack %s" % status)
    status, _ = st.api("POST", "/v1/tasks/%s/done" % task, unit="cleaning-north")
    check(status == 200, "done %s" % status)
    st.wait_events(task, ["TaskOpened", "TaskAcknowledged", "TaskCompleted"], timeout=60)
    joined = int(psql1("SELECT count(*) FROM reportpub.task_events WHERE event_type = 'TaskJoined'"))
    check(joined == n - 1, "%d TaskJoined events for %d repeat reports" % (joined, n - 1))
    biggest = int(psql1("SELECT max(octet_length(payload)) FROM notifier.outbox"))
    check(biggest < 1024, "an event of %d bytes" % biggest)
    check(psql1("SELECT count(*) FROM reportpub.inbox_failed") == "0", "events set aside")
    for svc in (st.notifier, st.reportpub):
        lines = len(svc.log_lines())
        check(lines < 2000, "%s logged %d lines" % (svc.name, lines))
