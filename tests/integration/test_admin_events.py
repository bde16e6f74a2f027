"""The operator's command for events, `trygg-<svc> admin events ...` and
`admin outbox new-epoch` (services/common/admin_events.c; docs/ARCHITECTURE.md,
"What can go wrong and what an operator sees").

Real set-aside events: a notifier whose units are all inactive (so no rule
and no default unit) cannot route a report, so it sets the ReportReceived aside in
notifier.inbox_failed (intake_events.c). `events failed` lists them, `events retry`
asks the running service to re-apply them (retry_requested_at and NOTIFY
notifier_inbox, which a LISTEN session sees). Where 003_inbox_retry (the
inbox's side of retry) is applied, the retried events also become tasks.
Halted streams: `events accept-epoch` and `events continue` act only on a
stream halted for their reason and say what they did. Bad arguments exit 2.
"""
import os
import subprocess
import time

from harness import (BIN, PGBIN, SUPER_URL, check, fresh_schemas, psql, psql1, role_url,
                     wait_for)
from intake_support import admin as intake_admin
from notifier_support import Stack


def admin(*args):
    """`trygg-notifier admin ARGS` as the notifier's role: (rc, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["DATABASE_URL"] = role_url("notifier")
    p = subprocess.run([os.path.join(BIN, "trygg-notifier"), "admin"] + list(args), env=env,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def ok(*args):
    rc, out, err = admin(*args)
    check(rc == 0, "admin %s exited %s: %s%s" % (args, rc, out, err))
    return out


def failed_rows():
    return psql("SELECT seq, event_type, attempts, retry_requested_at IS NOT NULL"
                " FROM notifier.inbox_failed WHERE publisher = 'intake' ORDER BY seq")


def set_units_active(st, active):
    psql("UPDATE notifier.units SET active = %s" % ("true" if active else "false"))
    want = 0 if not active else int(psql1("SELECT count(*) FROM notifier.units"))
    wait_for(lambda: [l for l in st.notifier.log_lines() if l.get("msg") == "routing_loaded"]
             [-1].get("units") == want, 15, "routing reload with %d units" % want)


def test_events_failed_and_retry():
    st = Stack()
    set_units_active(st, False)  # no unit, no default: nothing routes
    ids = [st.report() for _ in range(3)]
    wait_for(lambda: len(failed_rows()) == 3, 30, "3 set-aside events")
    # Listed, with their publisher, seq, type, event id, attempts and error.
    out = ok("events", "failed")
    for seq in ("1", "2", "3"):
        check(any(l.split()[:2] == ["intake", seq] for l in out.splitlines()),
              "seq %s missing from:\n%s" % (seq, out))
    check(out.count("trygg.events.ReportReceived") == 3, out)
    event_ids = [r[0] for r in psql("SELECT event_id FROM notifier.inbox_failed ORDER BY seq")]
    check(all(e in out for e in event_ids), "event ids missing:\n%s" % out)
    check("3 events set aside" in out, out)
    check("no events set aside for reportpub" in ok("events", "failed", "--publisher",
                                                    "reportpub"), "filter")
    # streams shows the cursor past them and the count set aside.
    out = ok("events", "streams")
    line = [l for l in out.splitlines() if l.startswith("intake")]
    check(line and line[0].split()[1] == "3" and "applying" in line[0]
          and line[0].split()[4] == "3", "streams:\n%s" % out)
    # /readyz shows the stream, ready, with its detail.
    status, body = st.notifier.get("/readyz")
    check(status == 200 and body["checks"].get("inbox_intake") is True, "readyz %r" % body)
    check(body["detail"]["inbox_intake"]["applied_seq"] == 3, "readyz detail %r" % body)

    # Fix the cause (units and a default), then retry one, then all. A
    # LISTEN session sees the NOTIFY that wakes the running service.
    set_units_active(st, True)
    listener = subprocess.Popen(
        [os.path.join(PGBIN, "psql"), "-X", "-q", SUPER_URL, "-c", "LISTEN notifier_inbox",
         "-c", "SELECT pg_sleep(4)", "-c", "SELECT 1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    out = ok("events", "retry", "2")
    check("asked the running service to re-apply intake seq 2" in out, out)
    heard = listener.communicate(timeout=30)[0]
    check('notification "notifier_inbox"' in heard, "no NOTIFY seen: %r" % heard)
    migrated = psql1("SELECT count(*) FROM notifier.schema_migrations"
                     " WHERE name LIKE '%003_inbox_retry%'") == "1"
    if not migrated:
        rows = failed_rows()
        check([r[3] for r in rows] == ["f", "t", "f"], "retry_requested_at: %r" % rows)
    out = ok("events", "retry", "--all", "--publisher", "intake")
    check("re-apply" in out, out)
    if migrated:
        # The inbox re-applies them: each report becomes a task, the rows go.
        wait_for(lambda: failed_rows() == [], 30, "retried events applied")
        for rid in ids:
            st.task_for(rid, timeout=20)
    else:
        check(all(r[3] == "t" for r in failed_rows()), "retry --all: %r" % failed_rows())
    # Retrying what is not there fails plainly (exit 1), naming it.
    rc, _, err = admin("events", "retry", "99")
    check(rc == 1 and "no set-aside event with seq 99" in err, "rc %s %s" % (rc, err))


def test_events_accept_epoch_and_continue():
    st = Stack()
    rid = st.report()
    st.task_for(rid, timeout=20)
    st.notifier.stop()
    # Not halted: nothing to accept or continue (exit 1, plainly).
    rc, _, err = admin("events", "accept-epoch", "intake")
    check(rc == 1 and "not halted" in err, "%s %s" % (rc, err))
    rc, _, err = admin("events", "continue", "intake")
    check(rc == 1 and "not halted" in err, "%s %s" % (rc, err))
    rc, _, err = admin("events", "accept-epoch", "walks")
    check(rc == 1 and "no stream from 'walks'" in err, "%s %s" % (rc, err))
    # Halted for a new epoch, as the inbox records it.
    psql("UPDATE notifier.inbox_cursor SET halted = 'epoch_changed',"
         " halted_detail = 'epoch a -> b', pending_epoch = '00000000-0000-4000-8000-00000000000b',"
         " pending_base_seq = 0 WHERE publisher = 'intake'")
    out = ok("events", "streams")
    check("epoch_changed" in out and "events accept-epoch intake" in out, out)
    rc, _, err = admin("events", "continue", "intake")
    check(rc == 1 and "accept-epoch" in err, "continue on an epoch halt: %s %s" % (rc, err))
    out = ok("events", "accept-epoch", "intake")
    check(out.strip() == "accepted epoch 00000000-0000-4000-8000-00000000000b for intake:"
          " the next event applied will be seq 1", out)
    row = psql("SELECT epoch, last_seq, halted IS NULL, pending_epoch IS NULL"
               " FROM notifier.inbox_cursor WHERE publisher = 'intake'")[0]
    check(row == ["00000000-0000-4000-8000-00000000000b", "0", "t", "t"], "%r" % row)
    # --from moves the cursor where the operator says.
    psql("UPDATE notifier.inbox_cursor SET halted = 'seq_went_back',"
         " pending_epoch = '00000000-0000-4000-8000-00000000000c', pending_base_seq = 0"
         " WHERE publisher = 'intake'")
    out = ok("events", "accept-epoch", "intake", "--from", "1")
    check("the next event applied will be seq 2" in out, out)
    check(psql1("SELECT last_seq FROM notifier.inbox_cursor WHERE publisher = 'intake'") == "1",
          "from")
    # Halted at a purged range: continue, not accept-epoch.
    psql("UPDATE notifier.inbox_cursor SET halted = 'purged', halted_detail = 'seq 2..9 purged'"
         " WHERE publisher = 'intake'")
    rc, _, err = admin("events", "accept-epoch", "intake")
    check(rc == 1 and "events continue intake" in err, "%s %s" % (rc, err))
    out = ok("events", "continue", "intake")
    check(out.startswith("intake's stream continues after seq 1"), out)
    check(psql1("SELECT halted IS NULL FROM notifier.inbox_cursor WHERE publisher = 'intake'")
          == "t", "still halted")
    psql("INSERT INTO notifier.inbox_skipped (publisher, from_seq, to_seq, reason)"
         " VALUES ('intake', 2, 9, 'purged')")
    out = ok("events", "skipped")
    check(any(l.split()[:3] == ["intake", "2", "9"] for l in out.splitlines()), out)


def test_events_bad_arguments_exit_2():
    Stack().notifier.stop()
    before = psql("SELECT publisher, seq, retry_requested_at FROM notifier.inbox_failed")
    for args in (["events"], ["events", "bogus"], ["events", "retry"],
                 ["events", "retry", "0"], ["events", "retry", "abc"],
                 ["events", "retry", "--all", "5"], ["events", "retry", "5", "6"],
                 ["events", "failed", "--publisher"], ["events", "failed", "--seq", "1"],
                 ["events", "streams", "extra"], ["events", "accept-epoch"],
                 ["events", "accept-epoch", "intake", "--from", "x"],
                 ["events", "continue"], ["outbox"], ["outbox", "old-epoch"]):
        rc, out, err = admin(*args)
        check(rc == 2, "admin %s exited %s (want 2): %s%s" % (args, rc, out, err))
        check("usage" in err, "no usage for %s: %r" % (args, err))
    check(psql("SELECT publisher, seq, retry_requested_at FROM notifier.inbox_failed") == before,
          "a usage error wrote something")
    # The same command in intake, on intake's schema.
    fresh_schemas("intake")
    rc, out, _ = intake_admin("events", "streams")
    check(rc == 0 and "no streams" in out, out)
    rc, _, err = intake_admin("events", "retry", check_rc=False)
    check(rc == 2 and "--all or one SEQ" in err, err)
