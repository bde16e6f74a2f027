"""The notifier's fault tests (issue 5, part 6): the notifier killed with
SIGKILL and restarted under load, the crews' webhook receiver down for a
while and back, Postgres restarted. Afterwards every report has exactly
one task, every task was delivered at least once with a stable delivery
id, and nothing is left undelivered.
"""
import os
import random
import threading
import time

from harness import PGDIR, check, pg_start, pg_stop, psql, psql1, wait_for
from notifier_support import Stack


def bulk(st, count, rate):
    status, body = st.reportpub.post("/reports/bulk", {"count": count, "rate": rate,
                                                       "places": []})
    check(status == 202, "bulk answered %s %r" % (status, body))


def bulk_done(st, timeout=120):
    def idle():
        status, body = st.reportpub.get("/reports/bulk")
        return status == 200 and body["remaining"] == 0 and body["in_flight"] == 0
    wait_for(idle, timeout, "reports to be written", interval=0.25)


def assert_all_delivered(st, timeout=120):
    n = int(psql1("SELECT count(*) FROM reportpub.reports"))
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.task_reports")) >= n, timeout,
             "%d reports to reach the notifier" % n, interval=0.25)
    wait_for(lambda: psql1("SELECT count(*) FROM notifier.deliveries WHERE status <> 'delivered'")
             == "0", timeout, "every delivery to be delivered", interval=0.25)
    time.sleep(1.0)
    # Every report exactly once, in exactly one task; one task per cell here.
    row = psql("SELECT count(*), count(DISTINCT report_id) FROM notifier.task_reports")[0]
    check(row[0] == row[1] == str(n), "task_reports %r for %d reports" % (row, n))
    lost = psql1("SELECT count(*) FROM reportpub.reports r LEFT JOIN notifier.task_reports t"
                 " USING (report_id) WHERE t.report_id IS NULL")
    check(lost == "0", "%s reports have no task" % lost)
    in_tasks = int(psql1("SELECT coalesce(sum(cardinality(report_ids)), 0) FROM notifier.tasks"))
    check(in_tasks == n, "tasks list %d reports for %d" % (in_tasks, n))
    opened = int(psql1("SELECT count(*) FROM reportpub.task_events WHERE event_type = 'TaskOpened'"))
    tasks = int(psql1("SELECT count(*) FROM notifier.tasks"))
    wait_for(lambda: int(psql1("SELECT count(*) FROM reportpub.task_events"
                               " WHERE event_type = 'TaskOpened'")) >= tasks, 30, "TaskOpened events")
    opened = int(psql1("SELECT count(*) FROM reportpub.task_events WHERE event_type = 'TaskOpened'"))
    check(opened == tasks, "%d TaskOpened events for %d tasks" % (opened, tasks))
    # Every delivery arrived at the receiver at least once, under its id.
    ids = set(r[0] for r in psql("SELECT id FROM notifier.deliveries"))
    seen = set(d["delivery_id"] for d in st.received() if d["signature_ok"]
               and not d["failed_on_purpose"])
    missing = ids - seen
    check(not missing, "%d deliveries never arrived, e.g. %s" % (len(missing), sorted(missing)[:3]))
    bad = [d for d in st.received() if not d["signature_ok"]]
    check(not bad, "%d deliveries failed verification" % len(bad))
    return n


def test_notifier_sigkill_under_load():
    st = Stack()
    bulk(st, 1500, 300)
    for _ in range(3):
        time.sleep(1.2)
        st.notifier.kill9()
        time.sleep(0.3)
        st.notifier.start()
    bulk_done(st)
    n = assert_all_delivered(st)
    check(n == 1500, "wrote %d reports" % n)
    dups = len(st.received()) - len(set(d["delivery_id"] for d in st.received()))
    print("  (%d redeliveries after kills, receivers dedupe by Trygg-Delivery)" % dups)


def test_receiver_down_then_back():
    st = Stack()
    st.crew.kill9()
    bulk(st, 200, 200)
    bulk_done(st)
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.deliveries WHERE attempts >= 2")) > 0,
             20, "retries while the receiver is down")
    time.sleep(3)
    pending = int(psql1("SELECT count(*) FROM notifier.deliveries WHERE status = 'pending'"))
    check(pending == 200, "%d pending while the receiver is down" % pending)
    check(psql1("SELECT count(*) FROM notifier.deliveries WHERE status = 'dead'") == "0",
          "dead letters while retries remain")
    st.crew.start()
    assert_all_delivered(st, timeout=60)
    retried = int(psql1("SELECT count(*) FROM notifier.deliveries WHERE attempts > 1"))
    check(retried > 0, "nothing was retried")
    # A retried delivery arrives with the same id it always had.
    ids = set(r[0] for r in psql("SELECT id FROM notifier.deliveries WHERE attempts > 1"))
    seen = set(d["delivery_id"] for d in st.received())
    check(ids <= seen, "retried deliveries arrived under other ids")


def test_receiver_failing_does_not_delay_others():
    # One unit's endpoint hangs (a port that accepts and never answers) with
    # more rows queued for it than any claim window; the other crews'
    # deliveries keep flowing meanwhile.
    import socket
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1000)
    port = hang.getsockname()[1]
    url = "http://127.0.0.1:%d/slow" % port
    try:
        st = Stack(notifier_env={"TRYGG_WEBHOOK_TIMEOUT": "3s", "TRYGG_ENDPOINT_CONCURRENCY": "2"})
        psql("UPDATE notifier.units SET webhook_url = '%s' WHERE name = 'graffiti-removal'" % url)
        time.sleep(0.3)
        task = st.task_for(st.report(category="graffiti", places=[], lat=59.33, lon=18.05,
                                     report_id="slow-0"))
        # 500 more queued for the hanging endpoint, all older than what follows.
        psql("INSERT INTO notifier.deliveries (task_id, unit, kind, channel, target,"
             " next_attempt_at) SELECT '%s', 'graffiti-removal', 'reminder', 'webhook', '%s',"
             " now() - interval '1 minute' FROM generate_series(1, 500)" % (task, url))
        wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.deliveries WHERE target = '%s'"
                                   " AND lease_until > now()" % url)) >= 2, 10,
                 "the hanging endpoint to be busy")
        t0 = time.time()
        rid = st.report(category="litter", places=["hotorget"], report_id="fast-1")
        st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [rid], 5,
                         "the litter task despite the hanging endpoint")
        took = time.time() - t0
        check(took < 5.0, "delayed by %.2fs" % took)
        # The hanging endpoint never has more than its cap in flight.
        check(int(psql1("SELECT count(*) FROM notifier.deliveries WHERE target = '%s'"
                        " AND lease_until > now()" % url)) <= 2, "cap per endpoint exceeded")
    finally:
        hang.close()


def _postgres_log_from(offset):
    path = os.path.join(PGDIR, "postgres.log")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def test_acks_while_timers_fire_never_deadlock():
    # Reminders and escalations fire for hundreds of tasks while their crews
    # acknowledge them: one lock order means no deadlock in Postgres, no
    # error answer, no event set aside.
    check(PGDIR, "needs the test's own cluster (its log)")
    log_start = os.path.getsize(os.path.join(PGDIR, "postgres.log"))
    st = Stack(notifier_env={"TRYGG_TIMER_INTERVAL": "20ms"})
    n = 300
    bulk(st, n, 300)
    bulk_done(st)
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.tasks")) >= n, 60, "the tasks")
    # The middle of each task's grid cell, so a report there joins it.
    rows = [(tid, (int(row) + 0.5) * 0.001, (int(col) + 0.5) * 0.002) for tid, row, col in
            (r[:1] + r[1].split(":")[1:] for r in psql("SELECT id, task_key FROM notifier.tasks"))]
    tasks = [r[0] for r in rows]
    random.shuffle(tasks)
    random.shuffle(rows)
    # Every timer falls due at once, while the acknowledgements come in and
    # repeat reports join the same tasks (inbox batches lock them in event
    # order).
    psql("UPDATE notifier.timers SET due_at = now() + interval '500 milliseconds'")
    time.sleep(0.45)
    answers = []
    lock = threading.Lock()

    def joiner(part):
        for i, (tid, lat, lon) in enumerate(part):
            st.report(places=[], lat=lat, lon=lon,
                      report_id="join-%s-%d" % (tid[:8], i))
    joiners = [threading.Thread(target=joiner, args=(rows[i::4],)) for i in range(4)]
    for t in joiners:
        t.start()

    def worker(part):
        for tid in part:
            status, _ = st.api("POST", "/v1/tasks/%s/ack" % tid, unit="operators")
            with lock:
                answers.append(status)
    threads = [threading.Thread(target=worker, args=(tasks[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads + joiners:
        t.join(120)
    check(len(answers) == len(tasks), "%d of %d acks answered" % (len(answers), len(tasks)))
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.task_reports")) >= 2 * n, 60,
             "the repeat reports to join")
    check(int(psql1("SELECT count(*) FROM notifier.tasks")) == n, "a repeat report opened a task")
    bad = [a for a in answers if a != 200]
    check(not bad, "%d acks failed: %r" % (len(bad), sorted(set(bad))))
    wait_for(lambda: psql1("SELECT count(*) FROM notifier.timers WHERE due_at <= now()"
                           " AND kind = 'completion_escalation'") == "0", 30, "the timers to fire")
    deadlocks = _postgres_log_from(log_start).count("deadlock detected")
    check(deadlocks == 0, "Postgres logged %d deadlocks" % deadlocks)
    check(psql1("SELECT count(*) FROM notifier.inbox_failed") == "0", "an event was set aside")
    check(psql1("SELECT count(*) FROM notifier.tasks WHERE status <> 'acknowledged'") == "0",
          "not every task is acknowledged")


def test_postgres_restart_under_load():
    st = Stack()
    bulk(st, 600, 200)
    time.sleep(1.0)
    pg_stop()
    time.sleep(3)
    pg_start()
    bulk_done(st)
    for svc in (st.notifier, st.reportpub):
        check(svc.alive(), "%s died with Postgres" % svc.name)
    n = assert_all_delivered(st)
    check(n >= 300, "only %d reports written" % n)


def test_queued_deliveries_flow_without_the_poll():
    # A finished send claims again only when the last claim was cut short by
    # a cap. With the fallback poll a minute away and two slots for the
    # crew's endpoint, 40 due deliveries must all go out on those refills
    # alone: a claim that took the last free slot must count as cut short
    # even if another send finished while it ran.
    st = Stack(notifier_env={"TRYGG_DELIVERY_POLL": "60s", "TRYGG_ENDPOINT_CONCURRENCY": "2"})
    time.sleep(1.5)  # the start's first poll has passed
    task = st.task_for(st.report(category="graffiti", places=[], lat=59.33, lon=18.05,
                                 report_id="refill-0"))
    ids = [r[0] for r in psql(
        "INSERT INTO notifier.deliveries (task_id, unit, kind, channel, target, next_attempt_at)"
        " SELECT '%s', 'graffiti-removal', 'reminder', 'webhook', '%s',"
        " now() - interval '1 minute' FROM generate_series(1, 40) RETURNING id"
        % (task, st.receiver_url))]
    st.report(category="litter", places=["hotorget"], report_id="refill-1")  # a kick
    t0 = time.time()
    wait_for(lambda: set(ids) <= set(d.get("delivery_id") for d in st.received()), 20,
             "all 40 queued deliveries without the poll")
    took = time.time() - t0
    check(took < 20, "took %.1fs" % took)
