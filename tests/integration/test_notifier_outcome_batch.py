"""The delivery worker's outcomes written in one statement (issue 9): one
delivery_results() call for a batch of sends must leave exactly what
delivery_result() called once per send, in the same order, leaves: every
delivery's status, each open task dispatched once (by its first owner's
delivery), nothing for a stale outcome, a dead letter escalated, a failure
scheduled again, each task's history rows and events the same and in the
same order (rows of different tasks may interleave differently, as in the
set-based ingest). Both are run on the same rows in transactions that are rolled
back, and what they leave is compared (times as facts, not values)."""
import json

from harness import check, psql, psql1, wait_for
from notifier_support import Stack

TASKS = {"a": "00000000-0000-4000-8000-00000000000a",
         "b": "00000000-0000-4000-8000-00000000000b",
         "c": "00000000-0000-4000-8000-00000000000c",
         "d": "00000000-0000-4000-8000-00000000000d"}


def did(n):
    return "00000000-0000-4000-8000-0000000001%02d" % n


# (delivery, task, kind, channel, status before, attempts)
DELIVERIES = [
    (1, "a", "task", "webhook", "pending", 1),
    (2, "a", "copy", "webhook", "pending", 1),
    (3, "a", "task", "webhook", "delivered", 1),  # its outcome is stale
    (4, "b", "task", "email", "pending", 1),      # two owner channels:
    (5, "b", "task", "webhook", "pending", 2),    # one dispatch
    (6, "c", "task", "webhook", "pending", 3),    # refused: dead letter
    (7, "c", "copy", "webhook", "pending", 1),    # fails: tried again
    (8, "d", "task", "webhook", "pending", 1),    # its task was dispatched
    (9, "c", "copy", "email", "pending", 1),      # delivered after the dead
]

# (delivery, attempt, ok, permanent, status, error), in the worker's order
# (by task, then delivery id)
OUTCOMES = [
    (1, 1, True, False, 200, None),
    (2, 1, True, False, 202, None),
    (3, 1, True, False, 200, None),
    (4, 1, True, False, 250, None),
    (5, 2, True, False, 200, None),
    (6, 3, False, True, 410, "HTTP 410"),
    (7, 1, False, False, 503, "HTTP 503"),
    (9, 1, True, False, 250, None),
    (8, 1, True, False, 200, None),
]

# What both leave, read in the same transaction (before the rollback).
CAPTURE = """
SELECT json_build_object(
  'results', (SELECT json_agg(r ORDER BY ord) FROM res),
  'deliveries', (SELECT json_agg(json_build_object('id', id, 'status', status,
      'attempts', attempts, 'last_status', last_status, 'last_error', last_error,
      'leased', lease_until IS NOT NULL, 'delivered', delivered_at IS NOT NULL,
      'dead', dead_at IS NOT NULL, 'later', next_attempt_at > now()) ORDER BY id)
      FROM deliveries WHERE id::text LIKE '00000000-0000-4000-8000-0000000001%'),
  'new_deliveries', (SELECT json_agg(json_build_object('task', task_id, 'unit', unit,
      'kind', kind, 'channel', channel, 'target', target, 'to_supervisor', to_supervisor)
      ORDER BY task_id, kind, channel, target)
      FROM deliveries WHERE id::text NOT LIKE '00000000-0000-4000-8000-0000000001%'),
  'tasks', (SELECT json_agg(json_build_object('id', id, 'status', status,
      'dispatched', dispatched_at IS NOT NULL, 'escalations', escalations) ORDER BY id)
      FROM tasks),
  'history', (SELECT json_object_agg(task_id, h) FROM (SELECT task_id,
      json_agg(json_build_object('event', event, 'detail', detail) ORDER BY id) AS h
      FROM task_history GROUP BY task_id) x),
  'events', (SELECT json_object_agg(task, e) FROM (SELECT
      convert_from(substring(payload FROM 3 FOR 36), 'UTF8') AS task,
      json_agg(json_build_object('type', event_type,
        'payload', replace(encode(payload, 'hex'), encode(pb_int(4, now_us()), 'hex'), ''))
        ORDER BY id) AS e
      FROM outbox GROUP BY 1) x))
"""


def literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return "'%s'" % v.replace("'", "''")


def run(calls):
    out = psql("BEGIN; SET LOCAL search_path = notifier;"
               " CREATE TEMP TABLE res (ord int, r text) ON COMMIT DROP; %s %s; ROLLBACK;"
               % (calls, CAPTURE))
    return json.loads(out[-1][0])


def test_outcomes_in_one_statement_as_one_at_a_time():
    st = Stack()
    st.notifier.stop()  # nothing else claims or writes while we compare
    owner = psql1("SELECT name FROM notifier.units WHERE webhook_url IS NOT NULL"
                  " AND supervisor_webhook_url IS NOT NULL ORDER BY name LIMIT 1")
    check(owner is not None, "no unit with a supervisor webhook in the demo data")
    for k, tid in TASKS.items():
        psql("INSERT INTO notifier.tasks (id, task_key, category, unit, status, priority,"
             " severity, report_ids, ack_target_s, completion_target_s, dispatched_at)"
             " VALUES ('%s', 'key-%s', 'litter', '%s', '%s', 3, 3, ARRAY['report-%s'],"
             " 3600, 86400, %s)"
             % (tid, k, owner, "dispatched" if k == "d" else "open", k,
                "now()" if k == "d" else "NULL"))
    for n, t, kind, channel, status, attempts in DELIVERIES:
        psql("INSERT INTO notifier.deliveries (id, task_id, unit, kind, channel, target,"
             " status, attempts, lease_until) VALUES ('%s', '%s', '%s', '%s', '%s',"
             " 'http://crew.invalid/%d', '%s', %d, now() + interval '1 minute')"
             % (did(n), TASKS[t], owner, kind, channel, n, status, attempts))

    one_by_one = " ".join(
        "INSERT INTO res SELECT %d, delivery_result('%s', %d, %s, %s, %s, %s, 1000, 3, false);"
        % (i + 1, did(n), att, literal(ok), literal(perm), literal(status), literal(err))
        for i, (n, att, ok, perm, status, err) in enumerate(OUTCOMES))
    batch = json.dumps([{"id": did(n), "attempt": att, "ok": ok, "permanent": perm,
                         "status": status, "error": err, "retry_ms": 1000, "mail": False}
                        for n, att, ok, perm, status, err in OUTCOMES])
    together = ("INSERT INTO res SELECT ord, r FROM unnest(delivery_results(%s::jsonb, 3, false))"
                " WITH ORDINALITY AS u (r, ord);" % literal(batch))

    want = run(one_by_one)
    got = run(together)
    check(want["results"] == ["delivered", "delivered", "stale", "delivered", "delivered",
                              "dead", "retry", "delivered", "delivered"],
          "delivery_result() itself changed: %r" % want["results"])
    events = [e["type"].rsplit(".", 1)[-1] for es in want["events"].values() for e in es]
    check(sorted(events) == ["TaskDispatched", "TaskDispatched", "TaskEscalated"],
          "the scenario no longer dispatches two tasks and escalates one: %r" % events)
    for part in ("results", "deliveries", "new_deliveries", "tasks", "history", "events"):
        check(got[part] == want[part], "%s differ:\n batch:      %s\n one by one: %s"
              % (part, json.dumps(got[part]), json.dumps(want[part])))
    st.crew.stop()
    st.reportpub.stop()


def test_a_failing_outcome_is_written_alone_and_the_others_land():
    # Outcomes that finish while a write is in flight share the next write.
    # When that statement fails for one of them, the others must not wait
    # with it: the worker writes each on its own, so they are recorded and
    # only the failing one is left to its lease (and sent again later).
    st = Stack()
    psql("""CREATE FUNCTION notifier.test_outcome_trap() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE t notifier.tasks;
        BEGIN
          SELECT * INTO t FROM notifier.tasks WHERE id = NEW.task_id;
          IF NEW.event = 'delivered' AND t.category = 'graffiti' THEN
            RAISE EXCEPTION 'trapped outcome';
          END IF;
          IF NEW.event = 'delivered' AND t.report_ids[1] = 'split-slow' THEN
            PERFORM pg_sleep(3);  -- the next outcomes queue behind this write
          END IF;
          RETURN NEW;
        END $$""")
    psql("CREATE TRIGGER test_outcome_trap BEFORE INSERT ON notifier.task_history"
         " FOR EACH ROW EXECUTE FUNCTION notifier.test_outcome_trap()")
    try:
        slow = st.report(category="litter", places=["hotorget"], report_id="split-slow")
        st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [slow], 10,
                         "the first delivery")
        others = [st.report(category="litter", places=[p], report_id="split-%d" % i)
                  for i, p in enumerate(["odenplan", "vasaparken", "sergels-torg"])]
        bad = st.report(category="graffiti", places=[], lat=59.3402, lon=18.0491,
                        report_id="split-bad")
        for r in others + [bad]:
            st.wait_delivery(lambda d, r=r: d.get("task", {}).get("report_ids") == [r], 10,
                             "the delivery for %s" % r)
        wait_for(lambda: psql1(
            "SELECT count(*) FROM notifier.deliveries d JOIN notifier.task_reports tr"
            " ON tr.task_id = d.task_id WHERE tr.report_id IN ('split-0', 'split-1', 'split-2')"
            " AND d.kind = 'task' AND d.status = 'delivered'") == "3", 15,
            "the three litter outcomes recorded despite the trapped one")
        split = [l for l in st.notifier.log_lines() if l.get("msg") == "delivery_results_split"]
        check(split and split[0]["count"] >= 2, "no shared write was split: %r" % split)
        check(psql1("SELECT d.status FROM notifier.deliveries d JOIN notifier.task_reports tr"
                    " ON tr.task_id = d.task_id WHERE tr.report_id = 'split-bad'"
                    " AND d.kind = 'task'") == "pending",
              "the trapped outcome was recorded")
    finally:
        psql("DROP TRIGGER IF EXISTS test_outcome_trap ON notifier.task_history")
