"""Reliable events: publisher epochs, retention and a relay that never
stalls nor writes while idle (issue 8, the publisher side).

The real trygg-testpub and trygg-testsub run against real Postgres, as in
test_backbone.py. The publisher's history is rewritten the way an operator's
mistake or a disaster would: its schema dropped and recreated, its outbox
"restored" to an older state, rows backdated past the retention. The
subscriber must then stop and say so, never silently drop or skip events,
and go on exactly once when the operator says how.
"""
import os
import subprocess
import time

from harness import PGBIN, PGDIR, check, http, psql, psql1, wait_for
from test_backbone import (PUB, SUB, applied_count, make_pair, produce, stop_all,
                           wait_producer_idle)


def cursor():
    """The subscriber's cursor row as a dict (None for NULL columns)."""
    rows = psql("SELECT last_seq, coalesce(epoch::text, ''), coalesce(halted, ''),"
                " coalesce(halted_detail, ''), coalesce(pending_epoch::text, ''),"
                " coalesce(pending_base_seq::text, '')"
                " FROM testsub.inbox_cursor WHERE publisher = 'testpub'")
    if not rows:
        return None
    r = rows[0]
    return {"last_seq": int(r[0]), "epoch": r[1] or None, "halted": r[2] or None,
            "detail": r[3], "pending_epoch": r[4] or None,
            "pending_base_seq": int(r[5]) if r[5] else None}


def pub_epoch():
    return psql1("SELECT epoch::text FROM testpub.outbox_state")


def wait_applied(n, timeout=30):
    wait_for(lambda: applied_count() == n, timeout, "%d events applied" % n, interval=0.2)


def wait_halted(reason, timeout=20):
    return wait_for(lambda: (cursor() or {}).get("halted") == reason and cursor(), timeout,
                    "subscriber halted with %s" % reason, interval=0.2)


def error_lines(svc, msg):
    return [l for l in svc.log_lines() if l.get("msg") == msg]


def notify_inbox():
    psql("NOTIFY testsub_inbox")


def accept_epoch(from_seq=None):
    """The operator's accept-epoch step, exactly as `admin events accept-epoch` runs it."""
    psql("UPDATE testsub.inbox_cursor SET epoch = pending_epoch,"
         " last_seq = coalesce(%s, pending_base_seq), halted = NULL, halted_detail = NULL,"
         " pending_epoch = NULL, pending_base_seq = NULL"
         " WHERE publisher = 'testpub' AND halted IS NOT NULL"
         % ("NULL::bigint" if from_seq is None else "%d::bigint" % from_seq))
    notify_inbox()


def applied_seqs_after(id_floor):
    return [int(r[0]) for r in psql("SELECT seq FROM testsub.applied WHERE id > %d ORDER BY id"
                                    % id_floor)]


def max_applied_id():
    return int(psql1("SELECT coalesce(max(id), 0) FROM testsub.applied"))


def pair_with_100_applied():
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 100, concurrency=4)
    wait_producer_idle(pub)
    wait_applied(100)
    return pub, sub


def test_new_epoch_halts_until_accepted():
    """The publisher's schema is recreated while the subscriber runs: its
    sequence numbers restart in a new epoch. Nothing of the new stream is
    applied until the operator accepts it; then all of it, exactly once."""
    pub, sub = pair_with_100_applied()
    old_epoch = pub_epoch()
    check(old_epoch, "outbox_state has no epoch")
    wait_for(lambda: cursor()["epoch"] == old_epoch, 10, "cursor to adopt the epoch")

    stop_all(pub)
    psql('DROP SCHEMA "testpub" CASCADE')
    psql('CREATE SCHEMA "testpub" AUTHORIZATION "testpub"')
    pub.start()
    new_epoch = pub_epoch()
    check(new_epoch and new_epoch != old_epoch, "recreated schema kept epoch %s" % new_epoch)
    produce(pub, 30, concurrency=2)
    wait_producer_idle(pub)

    c = wait_halted("epoch_changed")
    check(c["pending_epoch"] == new_epoch, "pending epoch %r" % c["pending_epoch"])
    check(c["pending_base_seq"] == 0, "pending base %r" % c["pending_base_seq"])
    check(c["epoch"] == old_epoch and c["last_seq"] == 100, "cursor moved: %r" % c)
    lines = error_lines(sub, "inbox_halted")
    check(lines, "no inbox_halted error line")
    check(lines[-1].get("level") == "error" and lines[-1].get("epoch") == old_epoch
          and lines[-1].get("new_epoch") == new_epoch, "halt log lacks the epochs: %r" % lines[-1])
    check(sub.metric("trygg_inbox_halted") == 1, "halted metric not 1")
    time.sleep(2)  # more heartbeats and replays: still nothing applied
    check(applied_count() == 100, "applied %d events of the new epoch" % (applied_count() - 100))
    check(cursor()["halted"] == "epoch_changed", "halt lifted by itself")
    # /readyz says why the stream is not applying.
    code, _, body = http("GET", sub.base + "/readyz")
    body = body.decode()
    check(code == 503 and '"halted":"epoch_changed"' in body.replace(" ", ""),
          "readyz while halted: %s %s" % (code, body))
    # A restart remembers the halt.
    stop_all(sub)
    sub.start(wait_ready=False)
    sub.wait_alive()
    wait_for(lambda: any(l.get("since_before_start") for l in error_lines(sub, "inbox_halted")),
             10, "the restarted subscriber to say it is halted")
    time.sleep(1.5)
    check(applied_count() == 100, "the restarted subscriber applied the new epoch")

    floor = max_applied_id()
    accept_epoch()
    wait_applied(130)
    time.sleep(1.5)  # anything applied twice would show up now
    check(applied_seqs_after(floor) == list(range(1, 31)),
          "new epoch applied as %r" % applied_seqs_after(floor))
    c = cursor()
    check(c["halted"] is None and c["epoch"] == new_epoch and c["last_seq"] == 30,
          "cursor after accept: %r" % c)
    check(sub.metric("trygg_inbox_halted") == 0, "halted metric still set")
    stop_all(sub, pub)


def test_seq_went_back_halts_until_accepted():
    """The publisher is restored from an older backup without a new epoch:
    its last_seq goes back below the subscriber's cursor and it reissues
    numbers the subscriber has already applied. The subscriber halts; the
    operator accepts from where the restored stream diverged."""
    pub, sub = pair_with_100_applied()
    stop_all(pub)
    psql("DELETE FROM testpub.outbox WHERE pub_seq > 60")
    psql("UPDATE testpub.outbox_state SET last_seq = 60")
    pub.start()
    produce(pub, 10, concurrency=1)
    wait_producer_idle(pub)
    c = wait_halted("seq_went_back")
    check(c["last_seq"] == 100, "cursor moved: %r" % c)
    check(error_lines(sub, "inbox_halted"), "no inbox_halted error line")
    check(applied_count() == 100, "applied events of the restored stream")
    floor = max_applied_id()
    accept_epoch(from_seq=60)
    wait_applied(110)
    time.sleep(1.5)
    check(applied_seqs_after(floor) == list(range(61, 71)),
          "restored stream applied as %r" % applied_seqs_after(floor))
    check(cursor()["halted"] is None and cursor()["last_seq"] == 70, "cursor %r" % cursor())
    stop_all(sub, pub)


def test_outbox_new_epoch_after_restore():
    """The publisher-side operator step after a restore: outbox_new_epoch()
    while both run. The subscriber halts at once, and after accepting
    continues right after the base with no event lost or doubled."""
    pub, sub = make_pair()
    pub.start()
    sub.start()
    produce(pub, 40, concurrency=2)
    wait_producer_idle(pub)
    wait_applied(40)
    old_epoch = pub_epoch()
    new_epoch = psql1("SELECT testpub.outbox_new_epoch()::text")
    check(new_epoch != old_epoch, "outbox_new_epoch kept the epoch")
    base = int(psql1("SELECT epoch_base_seq FROM testpub.outbox_state"))
    check(base == 40, "epoch_base_seq %d, expected 40" % base)
    produce(pub, 10, concurrency=1)
    wait_producer_idle(pub)
    c = wait_halted("epoch_changed")
    check(c["pending_epoch"] == new_epoch and c["pending_base_seq"] == 40, "cursor %r" % c)
    check(applied_count() == 40, "applied events of the new epoch before accepting")
    floor = max_applied_id()
    accept_epoch()
    wait_applied(50)
    time.sleep(1.0)
    check(applied_seqs_after(floor) == list(range(41, 51)),
          "new epoch applied as %r" % applied_seqs_after(floor))
    check(cursor()["epoch"] == new_epoch and cursor()["last_seq"] == 50, "cursor %r" % cursor())
    stop_all(sub, pub)


def purged_setup(sub_env=None):
    """20 events applied; the subscriber goes away; 30 more; then 1..40 and
    45 are older than the retention and the publisher restarts (it purges
    at start)."""
    pub, sub = make_pair(sub_env)
    pub.start()
    sub.start()
    produce(pub, 20, concurrency=1)
    wait_producer_idle(pub)
    wait_applied(20)
    stop_all(sub)
    produce(pub, 30, concurrency=1)
    wait_producer_idle(pub)
    wait_for(lambda: int(psql1("SELECT last_seq FROM testpub.outbox_state")) == 50, 10,
             "all sequenced")
    stop_all(pub)
    psql("UPDATE testpub.outbox SET occurred_at = now() - interval '40 days'"
         " WHERE pub_seq <= 40 OR pub_seq = 45")
    pub.start()
    wait_for(lambda: int(psql1("SELECT min(pub_seq) FROM testpub.outbox")) == 41, 20,
             "the publisher to purge 1..40")
    n45 = int(psql1("SELECT count(*) FROM testpub.outbox WHERE pub_seq = 45"))
    check(n45 == 1, "purge made a hole: event 45 (old, but after a younger one) deleted")
    return pub, sub


def test_purged_range_halts_until_continue():
    pub, sub = purged_setup()
    sub.start(wait_ready=False)
    sub.wait_alive()
    c = wait_halted("purged")
    check("21" in c["detail"] and "40" in c["detail"], "detail %r" % c["detail"])
    check(c["last_seq"] == 20 and applied_count() == 20, "went past a purged range: %r" % c)
    check(error_lines(sub, "inbox_halted"), "no inbox_halted error line")
    check(sub.metric("trygg_inbox_halted") == 1, "halted metric not 1")
    skipped = int(psql1("SELECT count(*) FROM testsub.inbox_skipped"))
    check(skipped == 0, "range recorded as skipped before the operator said so")
    # The operator's `continue`.
    psql("UPDATE testsub.inbox_cursor SET halted = NULL, halted_detail = NULL"
         " WHERE publisher = 'testpub'")
    notify_inbox()
    wait_applied(30)
    rows = psql("SELECT from_seq, to_seq, reason, epoch::text FROM testsub.inbox_skipped")
    check(len(rows) == 1 and rows[0][:3] == ["21", "40", "purged"], "inbox_skipped %r" % rows)
    check(rows[0][3] == pub_epoch(), "skipped range without the epoch: %r" % rows)
    check(cursor()["last_seq"] == 50 and cursor()["halted"] is None, "cursor %r" % cursor())
    check(sub.metric("trygg_inbox_skipped_ranges_total") == 1, "skipped_ranges metric")
    stop_all(sub, pub)


def test_purged_range_skipped_when_configured():
    pub, sub = purged_setup({"TRYGG_INBOX_SKIP_PURGED": "true"})
    sub.start()
    wait_applied(30)
    rows = psql("SELECT from_seq, to_seq, reason FROM testsub.inbox_skipped")
    check(rows == [["21", "40", "purged"]], "inbox_skipped %r" % rows)
    check(cursor()["last_seq"] == 50 and cursor()["halted"] is None, "cursor %r" % cursor())
    check(sub.metric("trygg_inbox_skipped_ranges_total") == 1, "skipped_ranges metric")
    stop_all(sub, pub)


def wal_records_for(tables, lsn0, lsn1):
    """WAL records between two LSNs that touch the given tables (read with
    pg_waldump from the test's cluster), or None if the WAL is not ours to
    read (a TRYGG_TEST_DATABASE_URL elsewhere)."""
    if not PGDIR or lsn0 == lsn1:
        return [] if lsn0 == lsn1 else None
    rels = []
    for t in tables:
        path = psql1("SELECT pg_relation_filepath('%s')" % t)  # base/<db>/<rel>
        _, dboid, rel = path.split("/")
        rels.append("rel 1663/%s/%s " % (dboid, rel))
    out = subprocess.run([os.path.join(PGBIN, "pg_waldump"), "-p",
                          os.path.join(PGDIR, "data", "pg_wal"), "-s", lsn0, "-e", lsn1],
                         capture_output=True, text=True, timeout=30)
    return [line for line in out.stdout.splitlines() if any(r in line for r in rels)]


def test_idle_relay_does_not_write():
    """While nothing is produced, the relay's rounds write nothing: the
    state row keeps its version and no WAL record touches the outbox."""
    pub, _ = make_pair()
    pub.start()
    produce(pub, 10, concurrency=1)
    wait_producer_idle(pub)
    wait_for(lambda: int(psql1("SELECT last_seq FROM testpub.outbox_state")) == 10, 10,
             "all sequenced")
    time.sleep(1.0)
    xmin0 = psql1("SELECT xmin::text FROM testpub.outbox_state")
    lsn0 = psql1("SELECT pg_current_wal_insert_lsn()::text")
    time.sleep(3.0)  # 15 poll rounds
    xmin1 = psql1("SELECT xmin::text FROM testpub.outbox_state")
    lsn1 = psql1("SELECT pg_current_wal_insert_lsn()::text")
    check(xmin1 == xmin0, "idle relay rewrote outbox_state (xmin %s -> %s)" % (xmin0, xmin1))
    # The WAL may still move (a checkpoint, a standby snapshot, autovacuum
    # elsewhere), but nothing in it may be ours.
    ours = wal_records_for(["testpub.outbox_state", "testpub.outbox"], lsn0, lsn1)
    check(not ours, "idle relay wrote WAL: %r" % (ours or [])[:3])
    stop_all(pub)


def rejected(sql):
    """True if Postgres refuses the statement."""
    try:
        psql(sql)
    except Exception:
        return True
    return False


def test_invalid_outbox_rows_rejected_and_never_stall():
    """An event the bus cannot carry cannot be inserted; one inserted before
    the constraint existed is published as a placeholder, recorded in
    outbox_invalid and logged, and the stream goes on past it."""
    pub, sub = make_pair()
    pub.start()
    sub.start()
    check(rejected("INSERT INTO testpub.outbox (event_type, payload) VALUES ('', '\\x00')"),
          "outbox accepted an empty event_type")
    check(rejected("INSERT INTO testpub.outbox (event_type, payload)"
                   " VALUES (repeat('x', 129), '\\x00')"),
          "outbox accepted a 129-byte event_type")
    check(rejected("INSERT INTO testpub.outbox (event_type, payload)"
                   " VALUES ('t', convert_to(repeat('x', 262145), 'UTF8'))"),
          "outbox accepted a payload over 256 KiB")
    check(psql1("SELECT count(*) FROM testpub.outbox") == "0", "an invalid row was inserted")
    produce(pub, 5, concurrency=1)
    wait_producer_idle(pub)
    wait_applied(5)
    stop_all(sub)
    # A row from before the constraint existed.
    psql("ALTER TABLE testpub.outbox DROP CONSTRAINT outbox_event_type_ok;"
         " INSERT INTO testpub.outbox (event_type, payload) VALUES ('', '\\x00')")
    produce(pub, 5, concurrency=1)
    wait_producer_idle(pub)
    sub.start()  # replays 6..11, 6 being the invalid one
    wait_applied(10)
    wait_for(lambda: cursor()["last_seq"] == 11, 20, "cursor past the invalid event")
    rows = psql("SELECT pub_seq, reason FROM testpub.outbox_invalid")
    check(len(rows) == 1 and rows[0][0] == "6", "outbox_invalid %r" % rows)
    check(error_lines(pub, "outbox_event_invalid"), "no outbox_event_invalid line")
    stop_all(sub, pub)


def test_largest_events_flow_live_and_by_replay():
    """Events at the payload limit travel live and in replay replies."""
    pub, sub = make_pair()
    pub.start()
    produce_big = {"count": 12, "concurrency": 2, "payload_bytes": 256 * 1024 - 64}
    status, body = pub.post("/produce", produce_big)
    check(status == 202, "produce answered %s %r" % (status, body))
    wait_producer_idle(pub)
    sub.start()  # late: all of it by replay
    wait_applied(12, timeout=40)
    status, body = pub.post("/produce", produce_big)
    check(status == 202, "produce answered %s %r" % (status, body))
    wait_producer_idle(pub)
    wait_applied(24, timeout=40)
    seqs = [int(r[0]) for r in psql("SELECT seq FROM testsub.applied ORDER BY id")]
    check(seqs == list(range(1, 25)), "applied %r" % seqs)
    stop_all(sub, pub)
