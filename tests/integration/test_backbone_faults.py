"""Reliable events under database faults (issue 8, the subscriber side).

The real trygg-testpub and trygg-testsub against real Postgres. The
subscriber's effect of each event is its `applied` row plus, through
TRYGG_APPLY_SQL, a call to testsub_gate(n), a function this file creates:
it bumps two rows of testsub.gate (so the test can hold those row locks,
provoke a deadlock or a lock timeout), raises for any n listed in
testsub.poison (a poison event the test can "fix"), and inserts into
testsub.deferred, whose foreign key is only checked at commit.

Each test ends by proving every event had its effect exactly once and in
order: one applied row per event, seq strictly consecutive in insertion
order, the gate counters at exactly two per event, the cursor at the last
event, and nothing set aside in inbox_failed (unless the test put a poison
event there on purpose).
"""
import os
import signal
import subprocess
import time

from harness import (PGBIN, SUPER_URL, Service, check, free_port, fresh_schemas, psql, psql1,
                     role_url, wait_for)

PUB, SUB = "testpub", "testsub"

GATE_SQL = """
CREATE TABLE testsub.gate (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);
INSERT INTO testsub.gate (id) VALUES (1), (2);
CREATE TABLE testsub.poison (n bigint PRIMARY KEY);
CREATE TABLE testsub.parent (id bigint PRIMARY KEY);
INSERT INTO testsub.parent VALUES (1);
CREATE TABLE testsub.deferred (
    n bigint NOT NULL,
    parent bigint NOT NULL REFERENCES testsub.parent (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE testsub.deferred_bad (n bigint PRIMARY KEY);
CREATE FUNCTION testsub.testsub_gate(n bigint) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    UPDATE testsub.gate SET hits = hits + 1 WHERE id = 1;
    UPDATE testsub.gate SET hits = hits + 1 WHERE id = 2;
    IF EXISTS (SELECT 1 FROM testsub.poison p WHERE p.n = testsub_gate.n) THEN
        RAISE EXCEPTION 'event % is poison', n;
    END IF;
    INSERT INTO testsub.deferred VALUES (n, CASE WHEN EXISTS
        (SELECT 1 FROM testsub.deferred_bad b WHERE b.n = testsub_gate.n) THEN -1 ELSE 1 END);
END $f$;
ALTER TABLE testsub.gate OWNER TO testsub;
ALTER TABLE testsub.poison OWNER TO testsub;
ALTER TABLE testsub.parent OWNER TO testsub;
ALTER TABLE testsub.deferred OWNER TO testsub;
ALTER TABLE testsub.deferred_bad OWNER TO testsub;
ALTER FUNCTION testsub.testsub_gate(bigint) OWNER TO testsub;
"""


def make_pair(sub_env=None, poison=(), deferred_bad=()):
    fresh_schemas(PUB, SUB)
    psql(GATE_SQL)
    for n in poison:
        psql("INSERT INTO testsub.poison VALUES (%d)" % n)
    for n in deferred_bad:
        psql("INSERT INTO testsub.deferred_bad VALUES (%d)" % n)
    pub_url = "tcp://127.0.0.1:%d" % free_port()
    rep_url = "tcp://127.0.0.1:%d" % free_port()
    pub = Service("testpub", "trygg-testpub", {
        "DATABASE_URL": role_url(PUB), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_BUS_PUB_URL": pub_url, "TRYGG_BUS_REP_URL": rep_url})
    env = {"DATABASE_URL": role_url(SUB), "TRYGG_HTTP_PORT": free_port(),
           "TRYGG_BUS_TESTPUB_SUB_URL": pub_url, "TRYGG_BUS_TESTPUB_REQ_URL": rep_url,
           "TRYGG_APPLY_SQL": "SELECT testsub_gate($1::bigint)"}
    env.update(sub_env or {})
    return pub, Service("testsub", "trygg-testsub", env)


def produce(pub, count, concurrency=4, rate=0):
    status, body = pub.post("/produce", {"count": count, "concurrency": concurrency, "rate": rate})
    check(status == 202, "produce answered %s %r" % (status, body))


def wait_produced(pub, count, timeout=120):
    def idle():
        status, body = pub.get("/produce")
        return status == 200 and not body["running"]
    wait_for(idle, timeout, "producer to finish", interval=0.25)
    n = int(psql1("SELECT count(*) FROM testpub.produced"))
    check(n == count, "produced %d, expected %d" % (n, count))


def applied_count():
    return int(psql1("SELECT count(*) FROM testsub.applied"))


def cursor():
    return int(psql1("SELECT coalesce((SELECT last_seq FROM testsub.inbox_cursor"
                     " WHERE publisher = 'testpub'), 0)"))


def failed_rows():
    return psql("SELECT seq, attempts, retry_requested_at IS NOT NULL, error"
                " FROM testsub.inbox_failed ORDER BY seq")


def assert_exactly_once(total, set_aside=(), out_of_order=(), timeout=60):
    """Every event 1..total had its effect exactly once and in seq order,
    except the events set aside (no effect) and those re-applied later
    (once, but after their successors)."""
    expect = total - len(set_aside)
    wait_for(lambda: cursor() == total, timeout, "the cursor at %d" % total, interval=0.2)
    time.sleep(1.0)  # anything applied twice would show up now
    rows = psql("SELECT count(*), count(DISTINCT n), count(DISTINCT seq) FROM testsub.applied")[0]
    n_rows, distinct_n, distinct_seq = (int(x) for x in rows)
    check(n_rows == expect, "%d effects for %d events; set aside: %r" % (
        n_rows, expect, psql("SELECT seq, error FROM testsub.inbox_failed ORDER BY seq")[:5]))
    check(distinct_n == n_rows and distinct_seq == n_rows,
          "duplicate effects: %d rows, %d distinct n, %d distinct seq"
          % (n_rows, distinct_n, distinct_seq))
    seqs = [int(r[0]) for r in psql("SELECT seq FROM testsub.applied ORDER BY id")]
    skip = set(set_aside) | set(out_of_order)
    in_order = [s for s in seqs if s not in skip]
    check(in_order == [s for s in range(1, total + 1) if s not in skip],
          "effects not in sequence order (first rows %r)" % in_order[:20])
    for s in set_aside:
        check(s not in seqs, "set-aside event %d has an effect" % s)
    for s in out_of_order:
        check(seqs.count(s) == 1, "re-applied event %d has %d effects" % (s, seqs.count(s)))
    hits = [int(r[0]) for r in psql("SELECT hits FROM testsub.gate ORDER BY id")]
    check(hits == [n_rows, n_rows], "gate hits %r for %d effects" % (hits, n_rows))
    deferred = int(psql1("SELECT count(*) FROM testsub.deferred"))
    check(deferred == n_rows, "%d deferred rows for %d effects" % (deferred, n_rows))
    failed = [int(r[0]) for r in psql("SELECT seq FROM testsub.inbox_failed ORDER BY seq")]
    check(failed == sorted(set_aside), "inbox_failed holds %r, expected %r"
          % (failed, sorted(set_aside)))


def sub_log(sub, msg):
    return [l for l in sub.log_lines() if l.get("msg") == msg]


def stop_all(*services):
    for s in services:
        if s.alive():
            rc = s.stop()
            check(rc == 0, "%s exited %s on SIGTERM; log:\n%s" % (s.name, rc, s.tail()))


class Session:
    """An interactive psql session as the superuser, fed line by line, so
    a test can hold locks across steps."""

    def __init__(self, name="trygg-test-holder"):
        env = dict(os.environ, PGAPPNAME=name)
        self.name = name
        self.proc = subprocess.Popen(
            [os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", SUPER_URL],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def send(self, sql):
        self.proc.stdin.write((sql + "\n").encode())
        self.proc.stdin.flush()

    def wait_state(self, state, timeout=10):
        wait_for(lambda: psql1("SELECT count(*) FROM pg_stat_activity WHERE application_name"
                               " = '%s' AND state = '%s'" % (self.name, state)) == "1",
                 timeout, "holder session %s" % state, interval=0.05)

    def close(self):
        try:
            self.send("\\q")
            self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


def sub_waiting_on_lock():
    return psql1("SELECT count(*) FROM pg_stat_activity WHERE usename = 'testsub'"
                 " AND wait_event_type = 'Lock'") != "0"


def sub_backends(fn):
    return int(psql1("SELECT count(%s(pid)) FROM pg_stat_activity WHERE usename = 'testsub'"
                     " AND backend_type = 'client backend'" % fn))


# ---------------------------------------------------------------------------
# 1. A late replay reply after an inbox reset.

N_BACKLOG = 8000


def outbox_backlog(count):
    """Writes `count` TestEvent{n} rows straight into testpub's outbox (much
    faster than producing them one transaction each) and waits until the
    relay has sequenced them all; n == seq. The payload is the protobuf by
    hand: field 1 (n) as a varint of one or two bytes."""
    check(count < 16384, "two varint bytes at most")
    psql("INSERT INTO testpub.outbox (event_type, payload)"
         " SELECT 'trygg.testing.TestEvent', CASE WHEN g < 128"
         " THEN decode('08' || lpad(to_hex(g), 2, '0'), 'hex')"
         " ELSE decode('08' || lpad(to_hex((g & 127) | 128), 2, '0')"
         " || lpad(to_hex(g >> 7), 2, '0'), 'hex') END"
         " FROM generate_series(1, %d) g ORDER BY g" % count)
    wait_for(lambda: psql1("SELECT last_seq FROM testpub.outbox_state") == str(count), 60,
             "the relay to sequence the backlog", interval=0.2)

def test_late_replay_reply_after_reset_skips_nothing():
    """The publisher stops (SIGSTOP) while a replay request is outstanding;
    the subscriber's backends are killed, so the inbox resets and reloads
    its cursor; then the publisher wakes and answers the old request. That
    reply starts at the old queue end, past the reloaded cursor: it must be
    discarded and asked again, not taken as a purged range."""
    # A queue smaller than the backlog: it stays full, and each committed
    # batch makes room for a request, so one is nearly always outstanding.
    # Each effect sleeps 0.2 ms, so the backlog lasts for the three rounds
    # however fast the machine is.
    pub, sub = make_pair({"TRYGG_BATCH_MAX": "20", "TRYGG_QUEUE_MAX": "2000",
                          "TRYGG_APPLY_SQL": "SELECT pg_sleep(0.0002) WHERE $1::bigint > 0"})
    pub.start()
    outbox_backlog(N_BACKLOG)
    sub.start()
    for _ in range(3):
        before = applied_count()
        if before > N_BACKLOG - 1500:
            break
        wait_for(lambda: applied_count() > before + 300, 30, "the backlog to flow")
        os.kill(pub.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.05)
            sub_backends("pg_terminate_backend")
            time.sleep(1.0)
        finally:
            os.kill(pub.proc.pid, signal.SIGCONT)
        time.sleep(0.3)
        purged = sub_log(sub, "inbox_events_purged")
        check(not purged, "the inbox skipped ranges the outbox still holds: %r" % purged[:3])
    wait_for(lambda: cursor() == N_BACKLOG, 60, "the cursor at the last event", interval=0.25)
    rows = [int(x) for x in psql("SELECT count(*), count(DISTINCT seq), count(DISTINCT n),"
                                 " min(seq), max(seq) FROM testsub.applied")[0]]
    check(rows == [N_BACKLOG, N_BACKLOG, N_BACKLOG, 1, N_BACKLOG],
          "applied (rows, seqs, ns, min, max) %r of %d" % (rows, N_BACKLOG))
    seqs_ok = psql1("SELECT count(*) FROM (SELECT seq, lag(seq) OVER (ORDER BY id) AS prev"
                    " FROM testsub.applied) x WHERE prev IS NOT NULL AND seq <> prev + 1")
    check(seqs_ok == "0", "%s effects out of order" % seqs_ok)
    st = sub_log(sub, "inbox_replay_stale")
    check(st, "no stale reply was seen: the test did not provoke the race")
    stop_all(sub, pub)


# ---------------------------------------------------------------------------
# 2. Transient errors are retried, never set aside.

def signal_while_lock_held(fn, times, count):
    """The inbox's effect waits for a row lock the test holds; meanwhile
    its backend gets `fn` (pg_cancel_backend, pg_terminate_backend)
    `times` times. Then the lock goes and every event must apply once."""
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 10, concurrency=1)
    wait_for(lambda: cursor() == 10, 30, "first events")
    holder = Session()
    try:
        holder.send("BEGIN; SELECT * FROM testsub.gate WHERE id = 1 FOR UPDATE;")
        holder.wait_state("idle in transaction")
        produce(pub, count - 10, concurrency=2)
        for _ in range(times):  # each cancel used to set one event aside
            wait_for(sub_waiting_on_lock, 20, "the inbox to wait for the lock", interval=0.05)
            check(sub_backends(fn) >= 1, "no backend for %s" % fn)
            time.sleep(0.3)
        holder.send("COMMIT;")
    finally:
        holder.close()
    wait_produced(pub, count)
    assert_exactly_once(count)
    check(sub_log(sub, "inbox_transient_error"), "no transient error was logged")
    stop_all(sub, pub)


def test_query_cancel_while_lock_held_is_retried():
    signal_while_lock_held("pg_cancel_backend", 4, 70)


def test_deadlock_is_retried():
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 5, concurrency=1)
    wait_for(lambda: cursor() == 5, 30, "first events")
    holder = Session()
    try:
        # The holder waits 30 s before it checks for a deadlock, the inbox
        # the default 1 s: the inbox's transaction is the one aborted.
        holder.send("SET deadlock_timeout = '30s';")
        holder.send("BEGIN; UPDATE testsub.gate SET hits = hits WHERE id = 2;")
        holder.wait_state("idle in transaction")
        produce(pub, 40, concurrency=2)
        wait_for(sub_waiting_on_lock, 20, "the inbox to hold row 1 and wait for row 2",
                 interval=0.05)
        holder.send("UPDATE testsub.gate SET hits = hits WHERE id = 1;")
        wait_for(lambda: any("deadlock" in (l.get("error") or "") + (l.get("reason") or "")
                             for l in sub.log_lines()), 20, "a deadlock to be detected")
        holder.send("COMMIT;")
    finally:
        holder.close()
    wait_produced(pub, 45)
    assert_exactly_once(45)
    stop_all(sub, pub)


def test_lock_timeout_is_retried():
    psql("ALTER ROLE testsub SET lock_timeout = '200ms'")
    try:
        pub, sub = make_pair()
        pub.start()
        sub.start()
        produce(pub, 5, concurrency=1)
        wait_for(lambda: cursor() == 5, 30, "first events")
        holder = Session()
        try:
            holder.send("BEGIN; SELECT * FROM testsub.gate WHERE id = 2 FOR UPDATE;")
            holder.wait_state("idle in transaction")
            produce(pub, 40, concurrency=2)
            wait_for(lambda: len([l for l in sub.log_lines()
                                  if "lock timeout" in (l.get("error") or "")]) >= 3,
                     20, "lock timeouts")
            holder.send("COMMIT;")
        finally:
            holder.close()
        wait_produced(pub, 45)
        assert_exactly_once(45)
        stop_all(sub, pub)
    finally:
        psql("ALTER ROLE testsub RESET lock_timeout")


def test_backend_terminated_while_lock_held_is_retried():
    signal_while_lock_held("pg_terminate_backend", 3, 45)


def test_database_read_only_is_retried():
    """The database turns read-only under live sessions (as during a
    failover or maintenance): the subscriber's transactions fail with 25006
    until it is writable again, and no event may be set aside."""
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 5, concurrency=1)
    wait_for(lambda: cursor() == 5, 30, "first events")
    os.kill(sub.proc.pid, signal.SIGSTOP)
    try:
        produce(pub, 40, concurrency=2)
        wait_produced(pub, 45)
        wait_for(lambda: psql1("SELECT last_seq FROM testpub.outbox_state") == "45", 20,
                 "the relay to sequence every event")
        psql("ALTER SYSTEM SET default_transaction_read_only = on")
        psql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        os.kill(sub.proc.pid, signal.SIGCONT)
        wait_for(lambda: any("read-only" in (l.get("error") or "")
                             for l in sub.log_lines()), 20, "read-only errors")
        time.sleep(1.0)
    finally:
        os.kill(sub.proc.pid, signal.SIGCONT)
        psql("ALTER SYSTEM RESET default_transaction_read_only")
        psql("SELECT pg_reload_conf()")
    assert_exactly_once(45)
    stop_all(sub, pub)


# ---------------------------------------------------------------------------
# 3. Set-aside events are re-applied on an operator's request.

def request_retry(seq):
    psql("UPDATE testsub.inbox_failed SET retry_requested_at = now()"
         " WHERE publisher = 'testpub' AND seq = %d" % seq)
    psql("NOTIFY testsub_inbox")


def test_poison_event_retried_on_request():
    pub, sub = make_pair(poison=[20])
    pub.start()
    sub.start()
    produce(pub, 40, concurrency=1)
    wait_produced(pub, 40)
    assert_exactly_once(40, set_aside=[20])
    check(sub.metric("trygg_inbox_failed_pending") == 1, "failed_pending is not 1")
    row = failed_rows()[0]
    check(row[1:3] == ["1", "f"] and "poison" in row[3], "set-aside row %r" % row)
    # Asked for while still broken: fails again, stays, counted.
    request_retry(20)
    wait_for(lambda: failed_rows()[0][1:3] == ["2", "f"], 10, "the second attempt recorded")
    check(int(psql1("SELECT count(*) FROM testsub.applied WHERE n = 20")) == 0,
          "a failed re-apply left an effect")
    # Fixed, then asked for: applied exactly once, its row gone. The
    # NOTIFY wakes the inbox well before its poll would.
    psql("DELETE FROM testsub.poison")
    t0 = time.time()
    request_retry(20)
    wait_for(lambda: not failed_rows(), 10, "the set-aside row to go")
    check(time.time() - t0 < 2.5, "the re-apply waited for the poll, not the NOTIFY")
    assert_exactly_once(40, out_of_order=[20])
    check(sub.metric("trygg_inbox_retried_total") == 1, "retried is not 1")
    check(sub.metric("trygg_inbox_failed_pending") == 0, "failed_pending is not 0")
    # The stream goes on as before.
    produce(pub, 10, concurrency=1)
    wait_produced(pub, 50)
    assert_exactly_once(50, out_of_order=[20])
    stop_all(sub, pub)


def test_retry_requested_while_stopped_is_picked_up_by_the_poll():
    pub, sub = make_pair(poison=[3, 7])
    pub.start()
    sub.start()
    produce(pub, 10, concurrency=1)
    wait_produced(pub, 10)
    assert_exactly_once(10, set_aside=[3, 7])
    stop_all(sub)
    psql("DELETE FROM testsub.poison")
    psql("UPDATE testsub.inbox_failed SET retry_requested_at = now()")  # no NOTIFY
    sub.start()
    wait_for(lambda: not failed_rows(), 15, "both set-aside rows to go")
    assert_exactly_once(10, out_of_order=[3, 7])
    stop_all(sub, pub)


# ---------------------------------------------------------------------------
# 4. An error at commit is a failure, not a success.

def test_deferred_constraint_at_commit_sets_aside_only_its_event():
    """Event 30's effect violates a deferred foreign key, checked at commit,
    in a batch with the others. The batch must not count as applied (the
    cursor and the effects rolled back together); the inbox must find the
    one event that fails and set it aside, and apply every other."""
    pub, sub = make_pair({"TRYGG_BATCH_MAX": "100"}, deferred_bad=[30])
    sub.start()
    pub.start()
    # Produced before the subscriber catches up, so they share a batch.
    os.kill(sub.proc.pid, signal.SIGSTOP)
    try:
        produce(pub, 60, concurrency=1)  # so n == seq
        wait_produced(pub, 60)
    finally:
        os.kill(sub.proc.pid, signal.SIGCONT)
    assert_exactly_once(60, set_aside=[30])
    row = failed_rows()[0]
    check("foreign key" in row[3], "recorded error %r" % row[3])
    check(psql1("SELECT sqlstate FROM testsub.inbox_failed") == "23503", "sqlstate not kept")
    check(sub_log(sub, "inbox_commit_failed"), "the commit failure was not seen as one")
    stop_all(sub, pub)
