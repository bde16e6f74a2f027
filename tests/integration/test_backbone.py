"""Reliable events, end to end (issue: foundation, part 5).

A real test publisher (trygg-testpub: a producer writing business rows and
outbox rows in one transaction, plus the outbox relay) and a real test
subscriber (trygg-testsub: an inbox that records each event's effect in its
own schema) run against real Postgres over nng on tcp loopback. Processes
are killed with SIGKILL, started late, restarted, and Postgres is stopped;
afterwards every produced event must have had its effect exactly once, in
sequence order.
"""
import random
import time

from harness import (Service, TestFailure, check, free_port, fresh_schemas, pg_start, pg_stop,
                     psql, psql1, role_url, wait_for)

PUB, SUB = "testpub", "testsub"


def make_pair(sub_env=None):
    fresh_schemas(PUB, SUB)
    pub_url = "tcp://127.0.0.1:%d" % free_port()
    rep_url = "tcp://127.0.0.1:%d" % free_port()
    pub = Service("testpub", "trygg-testpub", {
        "DATABASE_URL": role_url(PUB), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_BUS_PUB_URL": pub_url, "TRYGG_BUS_REP_URL": rep_url,
        "TRYGG_ALLOW_INJECT": "true"})
    env = {"DATABASE_URL": role_url(SUB), "TRYGG_HTTP_PORT": free_port(),
           "TRYGG_BUS_TESTPUB_SUB_URL": pub_url, "TRYGG_BUS_TESTPUB_REQ_URL": rep_url}
    env.update(sub_env or {})
    sub = Service("testsub", "trygg-testsub", env)
    return pub, sub


def produce(pub, count, concurrency=16, rate=0):
    status, body = pub.post("/produce", {"count": count, "concurrency": concurrency, "rate": rate})
    check(status == 202, "produce answered %s %r" % (status, body))


def produced_count():
    return int(psql1("SELECT count(*) FROM testpub.produced"))


def applied_count():
    return int(psql1("SELECT count(*) FROM testsub.applied"))


def wait_producer_idle(pub, timeout=180):
    def idle():
        status, body = pub.get("/produce")
        return status == 200 and not body["running"]
    wait_for(idle, timeout, "producer to finish", interval=0.25)


def stream_state(*services):
    """Where each side of the stream stands, and the services' last log
    lines: what a timed-out wait needs to be understood."""
    state = psql1(
        "SELECT format('outbox last_seq %s, unnumbered %s; applied %s, max seq %s;"
        " cursor %s, halted %s',"
        " (SELECT last_seq FROM testpub.outbox_state),"
        " (SELECT count(*) FROM testpub.outbox WHERE pub_seq IS NULL),"
        " (SELECT count(*) FROM testsub.applied), (SELECT max(seq) FROM testsub.applied),"
        " (SELECT last_seq FROM testsub.inbox_cursor WHERE publisher = 'testpub'),"
        " (SELECT halted FROM testsub.inbox_cursor WHERE publisher = 'testpub'))")
    logs = "".join("\n--- %s:\n%s" % (s.name, s.tail()) for s in services if s is not None)
    return state + logs


def assert_exactly_once(expected=None, services=()):
    """Every produced event applied exactly once, in sequence order."""
    n_produced = produced_count()
    if expected is not None:
        check(n_produced == expected, "produced %d, expected %d" % (n_produced, expected))
    try:
        wait_for(lambda: applied_count() >= n_produced, 120,
                 "subscriber to apply %d events" % n_produced, interval=0.25)
    except TestFailure as e:
        raise TestFailure("%s\n%s" % (e, stream_state(*services))) from None
    time.sleep(1.5)  # anything applied twice would show up now
    row = psql("SELECT count(*), count(DISTINCT seq), min(seq), max(seq), count(DISTINCT n)"
               " FROM testsub.applied")[0]
    total, distinct_seq, lo, hi, distinct_n = (int(x) for x in row)
    check(total == n_produced, "applied %d rows for %d produced" % (total, n_produced))
    check(distinct_seq == total, "%d duplicate effects" % (total - distinct_seq))
    check(lo == 1 and hi == total, "seq range %d..%d for %d events" % (lo, hi, total))
    check(distinct_n == total, "duplicate payloads")
    missing = int(psql1("SELECT count(*) FROM testpub.produced p"
                        " LEFT JOIN testsub.applied a ON a.n = p.n WHERE a.n IS NULL"))
    check(missing == 0, "%d produced events never applied" % missing)
    out_of_order = int(psql1(
        "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (ORDER BY id) AS prev"
        " FROM testsub.applied) x WHERE prev IS NOT NULL AND seq <> prev + 1"))
    check(out_of_order == 0, "%d effects applied out of order" % out_of_order)
    cursor = int(psql1("SELECT last_seq FROM testsub.inbox_cursor WHERE publisher = 'testpub'"))
    check(cursor == total, "cursor at %d, expected %d" % (cursor, total))


def stop_all(*services):
    for s in services:
        if s.alive():
            rc = s.stop()
            check(rc == 0, "%s exited %s on SIGTERM; log:\n%s" % (s.name, rc, s.tail()))


def test_subscriber_killed_and_started_late_100k():
    pub, sub = make_pair()
    pub.start()
    produce(pub, 100000, concurrency=16)
    time.sleep(2.0)  # the subscriber starts late: it must replay the backlog
    sub.start()
    rnd = random.Random(3)
    for _ in range(4):
        time.sleep(rnd.uniform(1.0, 3.0))
        sub.kill9()
        time.sleep(rnd.uniform(0.1, 1.0))
        sub.start()
    wait_producer_idle(pub)
    assert_exactly_once(expected=100000, services=(pub, sub))
    check(sub.starts == 5, "subscriber started %d times" % sub.starts)
    stop_all(sub, pub)


def test_publisher_killed_mid_stream():
    pub, sub = make_pair()
    sub.start()
    pub.start()
    produce(pub, 40000, concurrency=8)
    for _ in range(2):
        wait_for(lambda: produced_count() > 5000, 30, "production to start")
        time.sleep(random.uniform(0.5, 1.5))
        pub.kill9()
        time.sleep(0.5)
        pub.start()
        produce(pub, 5000, concurrency=8)
    wait_producer_idle(pub)
    assert_exactly_once(services=(pub, sub))
    stop_all(sub, pub)


def test_postgres_restart_both_sides_recover():
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 15000, concurrency=4, rate=3000)
    wait_for(lambda: applied_count() > 2000, 30, "events to flow")
    pg_stop()
    time.sleep(4)
    check(pub.alive() and sub.alive(), "a service died while Postgres was down")
    check(pub.get("/readyz")[0] == 503, "publisher claims ready without Postgres")
    pg_start()
    wait_for(lambda: pub.get("/readyz")[0] == 200 and sub.get("/readyz")[0] == 200, 30,
             "both ready again")
    wait_producer_idle(pub)
    assert_exactly_once(services=(pub, sub))
    stop_all(sub, pub)


def test_malformed_and_oversized_messages_are_dropped():
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 100, concurrency=2)
    wait_for(lambda: applied_count() == 100, 30, "first events")
    kinds = ("garbage", "no_kind", "zero_seq", "wrong_publisher", "empty")
    for kind in kinds:
        status, body = pub.post("/debug/inject", {"kind": kind})
        check(status == 200, "inject %s answered %s %r" % (kind, status, body))
    produce(pub, 100, concurrency=2)
    wait_producer_idle(pub)
    assert_exactly_once(expected=200, services=(pub, sub))
    wait_for(lambda: len([l for l in sub.log_lines() if l.get("msg") == "bus_frame_invalid"])
             == len(kinds), 10, "one log line per malformed frame")
    # Over NNG_OPT_RECVMAXSZ: nng drops it and the connection with it; the
    # subscriber reconnects and replays whatever it missed meanwhile.
    status, body = pub.post("/debug/inject", {"kind": "oversized"})
    check(status == 200, "inject oversized answered %s %r" % (status, body))
    produce(pub, 100, concurrency=2)
    wait_producer_idle(pub)
    assert_exactly_once(expected=300, services=(pub, sub))
    check(sub.alive(), "subscriber died on bad input")
    check(sub.get("/readyz")[0] == 200, "subscriber not ready after bad input")
    stop_all(sub, pub)


def test_poison_event_is_recorded_and_skipped():
    pub, sub = make_pair({"TRYGG_FAIL_ON_N": "50"})
    pub.start()
    sub.start()
    produce(pub, 120, concurrency=1)
    wait_producer_idle(pub)
    wait_for(lambda: int(psql1("SELECT last_seq FROM testsub.inbox_cursor")) == 120, 30,
             "cursor past the poison event")
    failed = psql("SELECT seq, error FROM testsub.inbox_failed")
    check(len(failed) == 1, "expected one failed event, got %r" % failed)
    check(applied_count() == 119, "applied %d, expected 119" % applied_count())
    n50 = int(psql1("SELECT count(*) FROM testsub.applied WHERE n = 50"))
    check(n50 == 0, "the poison event's partial effect was committed")
    stop_all(sub, pub)


def test_sigterm_drains_and_exits_cleanly():
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 3000, concurrency=8)
    time.sleep(0.3)
    t0 = time.time()
    stop_all(pub)
    check(time.time() - t0 < 10, "publisher drain took too long")
    pub.start()
    wait_producer_idle(pub)
    produce(pub, 10, concurrency=1)
    wait_producer_idle(pub)
    assert_exactly_once(services=(pub, sub))
    stop_all(sub, pub)
