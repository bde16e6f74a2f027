"""The notifier's set-based ingest (issue 9): one ingest_reports() statement
per inbox batch must give every report exactly the effect ingest_report()
gives it one at a time: joins in event order (priority, severity, report
count, TaskJoined), a task opened and joined within the same batch,
a duplicate (an event applied again) as a no-op, deliveries and timers
only for new tasks. And a
report that makes the set statement fail is set aside alone, the others
applied exactly once.

To get the reports into one batch the notifier is stopped while they are
published and started again: it replays them from its cursor, and a replay
reply is applied as one run."""
from harness import check, psql, psql1, wait_for
from notifier_support import Stack

PLACE = ("sergels-torg",)


def caught_up(st):
    """Waits until the notifier's cursor has reached what reportpub published."""
    def done():
        last = psql1("SELECT last_seq FROM reportpub.outbox_state")
        cur = psql1("SELECT last_seq FROM notifier.inbox_cursor WHERE publisher = 'intake'")
        return last is not None and cur == last
    wait_for(done, 30, "the notifier caught up")


def test_batch_joins_opens_and_duplicates_as_one_at_a_time():
    st = Stack()
    r0 = st.report(category="litter", places=PLACE, severity=3)
    t = st.task_for(r0)
    caught_up(st)
    st.notifier.stop()
    a1 = st.report(category="litter", places=PLACE, severity=5)
    b1 = st.report(category="graffiti_offensive", places=(), lat=59.3402, lon=18.0491,
                   severity=2)
    a2 = st.report(category="litter", places=PLACE, severity=1)
    b2 = st.report(category="graffiti_offensive", places=(), lat=59.3402, lon=18.0491,
                   severity=4)
    # r0's event once more, as after a cursor restored from a backup: the
    # batch starts with a report that already has its task.
    psql("UPDATE notifier.inbox_cursor SET last_seq = last_seq - 1 WHERE publisher = 'intake'")
    st.notifier.start()
    caught_up(st)
    batch = "'%s'" % "','".join([a1, b1, a2, b2])
    check(psql1("SELECT count(DISTINCT xmin::text) FROM notifier.task_reports"
                " WHERE report_id IN (%s)" % batch) == "1", "not applied as one batch")
    check(psql1("SELECT count(*) FROM notifier.outbox WHERE event_type = 'trygg.events.TaskOpened'"
                " AND position(convert_to('%s', 'UTF8') IN payload) > 0" % r0) == "1",
          "the duplicate opened another task")
    u = psql1("SELECT task_id FROM notifier.task_reports WHERE report_id = '%s'" % b1)
    check(psql1("SELECT task_id FROM notifier.task_reports WHERE report_id = '%s'" % a1) == t
          and psql1("SELECT task_id FROM notifier.task_reports WHERE report_id = '%s'" % a2) == t
          and psql1("SELECT task_id FROM notifier.task_reports WHERE report_id = '%s'" % b2) == u,
          "reports joined the wrong tasks")
    check(psql1("SELECT count(*) FROM notifier.task_reports WHERE report_id = '%s'" % r0) == "1",
          "the duplicate was ingested again")

    # What ingest_report() one at a time gives: priority_k = least(greatest(
    # priority_{k-1}, severity_k) + 1, 10), severity the maximum.
    row = psql("SELECT array_to_string(report_ids, ','), priority, severity, status"
               " FROM notifier.tasks WHERE id = '%s'" % t)[0]
    check(row == [",".join([r0, a1, a2]), "7", "5", row[3]], "task T %r" % row)
    row = psql("SELECT array_to_string(report_ids, ','), priority, severity"
               " FROM notifier.tasks WHERE id = '%s'" % u)[0]
    check(row == [",".join([b1, b2]), "5", "4"], "task U %r" % row)
    hist = psql("SELECT event, detail->>'report_id', detail->>'priority', detail->>'report_count'"
                " FROM notifier.task_history WHERE task_id = '%s' AND event = 'report_joined'"
                " ORDER BY id" % t)
    check(hist == [["report_joined", a1, "6", "2"], ["report_joined", a2, "7", "3"]],
          "T's history %r" % hist)
    hist = psql("SELECT event, detail->>'report_id', detail->>'priority', detail->>'report_count'"
                " FROM notifier.task_history WHERE task_id = '%s' AND event <> 'delivered'"
                " AND event <> 'dispatched' ORDER BY id" % u)
    check(hist[0][:2] == ["opened", b1] and ["report_joined", b2, "5", "2"] in hist,
          "U's history %r" % hist)

    # The events, as intake and the others see them (decoded by reportpub).
    ev = st.wait_events(t, ["TaskJoined"])
    joined = [e for e in st.events(t) if e[1].endswith("TaskJoined")]
    check([e[4] for e in joined] and len(joined) == 2, "T's TaskJoined %r" % joined)
    check(a1 in joined[0][4] and a2 in joined[1][4], "T's TaskJoined order %r" % joined)
    st.wait_events(u, ["TaskOpened", "TaskJoined"])
    types = [e[1].rsplit(".", 1)[-1] for e in st.events(u)]
    check(types.index("TaskOpened") < types.index("TaskJoined"), "U's events %r" % types)
    check(len([x for x in types if x == "TaskOpened"]) == 1, "U opened twice %r" % types)
    del ev

    # Pages: the new task's unit once per channel, nobody for the joins.
    check(psql1("SELECT count(*) FROM notifier.deliveries WHERE task_id = '%s'"
                " AND kind = 'task'" % t) == "1", "a join paged again")
    want = psql1("SELECT ((u.webhook_url IS NOT NULL AND u.webhook_secret IS NOT NULL)::int)"
                 " FROM notifier.units u JOIN notifier.tasks t ON t.unit = u.name"
                 " WHERE t.id = '%s'" % u)
    check(psql1("SELECT count(*) FROM notifier.deliveries WHERE task_id = '%s'"
                " AND kind = 'task'" % u) == want, "U's deliveries")
    check(psql1("SELECT string_agg(kind, ',' ORDER BY kind) FROM notifier.timers"
                " WHERE task_id = '%s'" % u) == "ack_reminder,completion_escalation",
          "U's timers")
    check(psql1("SELECT count(*) FROM notifier.inbox_failed") == "0", "events set aside")


def test_report_failing_the_set_statement_is_set_aside_alone():
    st = Stack()
    # A stand-in for a report Postgres refuses: the set statement fails as
    # a whole, and only the inbox's one-event-per-transaction fallback can
    # tell which report it was.
    psql("CREATE FUNCTION notifier.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$"
         " BEGIN IF NEW.address = 'poison' THEN RAISE EXCEPTION 'poison report'"
         " USING ERRCODE = '22023'; END IF; RETURN NEW; END $$")
    psql("CREATE TRIGGER refuse_poison BEFORE INSERT ON notifier.tasks"
         " FOR EACH ROW EXECUTE FUNCTION notifier.refuse_poison()")
    caught_up(st)
    st.notifier.stop()
    good = []
    for i in range(6):
        if i == 3:
            bad = st.report(category="litter", places=(), lat=59.3302 + i * 0.003,
                            lon=18.0401, address="poison")
        good.append(st.report(category="litter", places=(), lat=59.3302 + i * 0.003,
                              lon=18.0601))
    st.notifier.start()
    caught_up(st)
    failed = psql("SELECT f.seq, f.sqlstate, f.error FROM notifier.inbox_failed f")
    check(len(failed) == 1 and failed[0][1] == "22023" and "poison" in failed[0][2],
          "set aside %r" % failed)
    check(psql1("SELECT count(*) FROM notifier.task_reports WHERE report_id = '%s'" % bad) == "0",
          "the poison report has a task")
    ids = "'%s'" % "','".join(good)
    check(psql1("SELECT count(*) || '/' || count(DISTINCT task_id) FROM notifier.task_reports"
                " WHERE report_id IN (%s)" % ids) == "6/6", "the good reports' tasks")
    opened = psql1("SELECT count(*) FROM notifier.outbox WHERE event_type = 'trygg.events.TaskOpened'")
    check(opened == "6", "TaskOpened events: %s, want 6 (one per good report)" % opened)
