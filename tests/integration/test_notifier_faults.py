"""The notifier's fault tests (issue 5, part 6): the notifier killed with
SIGKILL and restarted under load, the crews' webhook receiver down for a
while and back, Postgres restarted. Afterwards every report has exactly
one task, every task was delivered at least once with a stable delivery
id, and nothing is left undelivered.
"""
import time

from harness import check, pg_start, pg_stop, psql, psql1, wait_for
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
    # One unit's endpoint hangs (a port that accepts and never answers);
    # the other crews' deliveries keep flowing meanwhile.
    import socket
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1000)
    port = hang.getsockname()[1]
    try:
        st = Stack(notifier_env={"TRYGG_WEBHOOK_TIMEOUT": "3s", "TRYGG_ENDPOINT_CONCURRENCY": "2"})
        psql("UPDATE notifier.units SET webhook_url = 'http://127.0.0.1:%d/slow'"
             " WHERE name = 'graffiti-removal'" % port)
        time.sleep(0.3)
        for i in range(30):
            st.report(category="graffiti", places=[], lat=59.33 + i * 0.002, lon=18.05,
                      report_id="slow-%d" % i)
        t0 = time.time()
        rid = st.report(category="litter", places=["hotorget"], report_id="fast-1")
        st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [rid], 2,
                         "the litter task despite the hanging endpoint")
        check(time.time() - t0 < 1.0, "delayed by %.2fs" % (time.time() - t0))
    finally:
        hang.close()


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
