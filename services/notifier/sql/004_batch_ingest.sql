-- Issue 9: the notifier's ingest at catch-up speed.
--
-- 1. One statement per inbox batch. intake_events.c collects the routed
--    reports of a run of events and its flush hook (inbox.h) adds one
--    `SELECT ingest_reports($1::jsonb, $2)` before the cursor advance:
--    Postgres parses, binds and starts one statement per batch instead of
--    one per report. ingest_reports() takes the reports in the order of
--    their events and gives each exactly ingest_report()'s effect (dedup,
--    join or create, deliveries, timers, history, the task event), so the
--    semantics and the events' bytes and order are those of one call per
--    report.
--
-- 2. No per-call planning. A LANGUAGE sql function that Postgres cannot
--    inline is parsed and planned again each time a plpgsql statement
--    calls it (its plan lives only as long as the calling statement's
--    executor state); plpgsql caches the plans of its own statements for
--    the session. So the protobuf helpers and emit_task_event become
--    plpgsql, with the same signatures and the same bytes out; every
--    transition that writes a task event (task_action, delivery_result,
--    escalate, fire_timers) gains from it too.

CREATE OR REPLACE FUNCTION pb_str(field int, s text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    b bytea;
BEGIN
    IF s IS NULL OR s = '' THEN
        RETURN ''::bytea;
    END IF;
    b := convert_to(s, 'UTF8');
    RETURN pb_varint(field * 8 + 2) || pb_varint(octet_length(b)) || b;
END $$;

CREATE OR REPLACE FUNCTION pb_strs(field int, a text[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    out bytea := ''::bytea;
    x text;
    b bytea;
BEGIN
    -- Every element is written, an empty one too (a repeated field); a
    -- NULL one is left out, as string_agg did.
    FOREACH x IN ARRAY coalesce(a, '{}') LOOP
        CONTINUE WHEN x IS NULL;
        b := convert_to(x, 'UTF8');
        out := out || pb_varint(field * 8 + 2) || pb_varint(octet_length(b)) || b;
    END LOOP;
    RETURN out;
END $$;

CREATE OR REPLACE FUNCTION pb_int(field int, v bigint) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF v IS NULL OR v = 0 THEN
        RETURN ''::bytea;
    END IF;
    RETURN pb_varint(field * 8) || pb_varint(v);
END $$;

CREATE OR REPLACE FUNCTION emit_task_event(msg text, t tasks, rest bytea) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_type, payload)
    VALUES ('trygg.events.' || msg, pb_str(1, t.id::text) || rest);
END $$;

-- One report of an inbox batch: ingest_report()'s parameters (task_id is
-- p_new_task_id), as intake_events.c writes them in JSON.
CREATE TYPE ingest_row AS (report_id text, category text, task_key text, place text,
    sensitive boolean, severity int, lat double precision, lon double precision, address text,
    unit text, copies text[], unmatched boolean, ack_target_s int, completion_target_s int,
    task_id uuid);

-- The reports of one inbox batch, in event order: a JSON array of
-- ingest_row objects. Returns how many tasks were created.
--
-- Each report gets exactly the effect ingest_report() would give it, one
-- report after the other in event order, but set-based, in three steps of
-- one statement per table each (Postgres then starts an executor per table
-- and batch instead of per report and table):
--   1. A report is *fresh* if its id is in no task yet and it is the first
--      of its id in the batch (a later one, or one already ingested, is a
--      duplicate: no effect). The first fresh report of each task key and
--      category that has no open task opens one: the task, task_reports,
--      history (opened, and no_channel when its unit has no channel),
--      TaskOpened, deliveries as schedule_deliveries() makes them (the
--      owner's, then each copy's unless sensitive) and both timers.
--   2. Every other fresh report joins its key's open task (one that was
--      open before, or opened in step 1), in event order: the task rows
--      are locked in id order, then each task is updated once for all its
--      joining reports, with the severity, priority and report count each
--      join would have left (priority_k = least(greatest(priority_0 + k,
--      max over j <= k of (severity_j - j) + k + 1), 10), the closed form
--      of ingest_report()'s step); task_reports, report_joined history
--      and TaskJoined events per report, in event order.
--   3. A fresh report still in no task (none is expected) goes through
--      ingest_report() itself.
-- A task's events keep their order (TaskOpened, then its TaskJoined in
-- event order); events of different tasks may come out in another order
-- than their reports (all TaskOpened of the batch first).
--
-- An error in any report fails the statement: the inbox then applies the
-- batch's events one per transaction and sets aside the one that fails
-- alone.
CREATE FUNCTION ingest_reports(p_reports jsonb, email_enabled boolean) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    created int;
BEGIN
    -- 1. Tasks opened by the first fresh report of their key.
    WITH batch AS (
        SELECT x.*, row_number() OVER (PARTITION BY x.report_id ORDER BY x.ord) AS nth_id
          FROM jsonb_populate_recordset(NULL::ingest_row, p_reports) WITH ORDINALITY
               AS x (report_id, category, task_key, place, sensitive, severity, lat, lon,
                     address, unit, copies, unmatched, ack_target_s, completion_target_s,
                     task_id, ord)
    ), first_ids AS (
        SELECT b.*, row_number() OVER (PARTITION BY b.task_key, b.category ORDER BY b.ord)
                   AS nth_key
          FROM batch b
         WHERE b.nth_id = 1
           AND NOT EXISTS (SELECT 1 FROM task_reports tr WHERE tr.report_id = b.report_id)
    ), fresh AS (
        SELECT w.ord, w.report_id, w.category, w.task_key, w.place, w.sensitive,
               greatest(w.severity, 1) AS severity, w.lat, w.lon,
               nullif(w.address, '') AS address, w.unit, coalesce(w.copies, '{}') AS copies,
               w.unmatched, w.ack_target_s, w.completion_target_s, w.task_id
          FROM first_ids w
         WHERE w.nth_key = 1
           -- A scalar subquery, not NOT EXISTS: an anti join is planned
           -- from the table's statistics, and while tasks grows faster than
           -- autovacuum analyzes it, that plan scanned every open task
           -- once per report (1.5 s for 500 reports at 6,500 open tasks);
           -- a subquery always probes tasks_one_open by key.
           AND (SELECT t.id FROM tasks t WHERE t.task_key = w.task_key
                   AND t.category = w.category
                   AND t.status IN ('open', 'dispatched', 'acknowledged')) IS NULL
    ), chan AS (
        -- Every channel of every recipient, as schedule_deliveries: the
        -- owner ('task'), then the copies ('copy', not for sensitive).
        SELECT x.task_id, x.ord, x.unit, x.kind, x.pos, u.webhook_url, u.webhook_secret,
               u.email
          FROM (SELECT w.task_id, w.ord, w.unit, 'task' AS kind, 0::bigint AS pos FROM fresh w
                UNION ALL
                SELECT w.task_id, w.ord, c.unit, 'copy', c.pos
                  FROM fresh w, unnest(w.copies) WITH ORDINALITY AS c (unit, pos)
                 WHERE NOT w.sensitive) x
          JOIN units u ON u.name = x.unit
    ), ins_tasks AS (
        INSERT INTO tasks (id, task_key, place, category, sensitive, unit, copies, priority,
            severity, report_ids, lat, lon, address, unmatched, ack_target_s,
            completion_target_s)
        SELECT w.task_id, w.task_key, w.place, w.category, w.sensitive, w.unit, w.copies,
               w.severity, w.severity, ARRAY[w.report_id], w.lat, w.lon, w.address,
               w.unmatched, w.ack_target_s, w.completion_target_s
          FROM fresh w ORDER BY w.ord
        RETURNING 1
    ), ins_reports AS (
        INSERT INTO task_reports (report_id, task_id)
        SELECT w.report_id, w.task_id FROM fresh w ORDER BY w.ord
        RETURNING 1
    ), ins_history AS (
        -- Per task: opened, then no_channel when its unit has none.
        INSERT INTO task_history (task_id, event, detail)
        SELECT h.task_id, h.event, h.detail FROM (
            SELECT w.ord, 1 AS i, w.task_id, 'opened' AS event,
                   jsonb_build_object('report_id', w.report_id, 'unit', w.unit,
                       'copies', to_jsonb(w.copies), 'unmatched', w.unmatched) AS detail
              FROM fresh w
            UNION ALL
            SELECT w.ord, 2, w.task_id, 'no_channel', jsonb_build_object('unit', w.unit)
              FROM fresh w
             WHERE NOT EXISTS (SELECT 1 FROM chan c
                                WHERE c.task_id = w.task_id AND c.kind = 'task'
                                  AND ((c.webhook_url IS NOT NULL AND c.webhook_secret IS NOT NULL)
                                       OR (c.email IS NOT NULL AND email_enabled)))) h
         ORDER BY h.ord, h.i
        RETURNING 1
    ), ins_events AS (
        INSERT INTO outbox (event_type, payload)
        SELECT 'trygg.events.TaskOpened', pb_str(1, w.task_id::text)
               || pb_strs(2, ARRAY[w.report_id]) || pb_str(3, w.category)
               || pb_str(4, w.task_key) || pb_int(5, now_us())
          FROM fresh w ORDER BY w.ord
        RETURNING 1
    ), ins_deliveries AS (
        INSERT INTO deliveries (task_id, unit, kind, channel, target, to_supervisor)
        SELECT d.task_id, d.unit, d.kind, d.channel, d.target, false FROM (
            SELECT c.ord, c.pos, 1 AS i, c.task_id, c.unit, c.kind, 'webhook' AS channel,
                   c.webhook_url AS target
              FROM chan c WHERE c.webhook_url IS NOT NULL AND c.webhook_secret IS NOT NULL
            UNION ALL
            SELECT c.ord, c.pos, 2, c.task_id, c.unit, c.kind, 'email', c.email
              FROM chan c WHERE c.email IS NOT NULL AND email_enabled) d
         ORDER BY d.ord, d.pos, d.i
        RETURNING 1
    ), ins_timers AS (
        INSERT INTO timers (task_id, kind, due_at)
        SELECT w.task_id, k.kind, now() + make_interval(secs => k.secs)
          FROM fresh w, LATERAL (VALUES ('ack_reminder', w.ack_target_s),
                                        ('completion_escalation', w.completion_target_s))
                        AS k (kind, secs)
        RETURNING 1
    )
    SELECT count(*) INTO created FROM fresh;

    -- 2. Every other fresh report joins its key's open task. The tasks are
    -- locked first, in id order (as fire_timers takes them).
    -- (Each key's task found by a LATERAL probe of tasks_one_open, for the
    -- reason given in step 1.)
    PERFORM 1 FROM tasks t
      WHERE t.id IN (SELECT o.id
                       FROM jsonb_populate_recordset(NULL::ingest_row, p_reports) x
                      CROSS JOIN LATERAL (
                            SELECT t2.id FROM tasks t2
                             WHERE t2.task_key = x.task_key AND t2.category = x.category
                               AND t2.status IN ('open', 'dispatched', 'acknowledged')
                             LIMIT 1) o
                      WHERE NOT EXISTS (SELECT 1 FROM task_reports tr
                                         WHERE tr.report_id = x.report_id))
      ORDER BY t.id FOR UPDATE OF t;
    WITH batch AS (
        SELECT x.*, row_number() OVER (PARTITION BY x.report_id ORDER BY x.ord) AS nth_id
          FROM jsonb_populate_recordset(NULL::ingest_row, p_reports) WITH ORDINALITY
               AS x (report_id, category, task_key, place, sensitive, severity, lat, lon,
                     address, unit, copies, unmatched, ack_target_s, completion_target_s,
                     task_id, ord)
    ), joins AS (
        SELECT b.ord, b.report_id, b.severity, t.id AS task_id, t.status, t.unit,
               t.priority AS p0, cardinality(t.report_ids) AS count0,
               row_number() OVER (PARTITION BY t.id ORDER BY b.ord) AS k
          FROM batch b
         CROSS JOIN LATERAL (  -- a probe of tasks_one_open per report (step 1)
               SELECT t2.id, t2.status, t2.unit, t2.priority, t2.report_ids FROM tasks t2
                WHERE t2.task_key = b.task_key AND t2.category = b.category
                  AND t2.status IN ('open', 'dispatched', 'acknowledged')
                LIMIT 1) t
         WHERE b.nth_id = 1
           AND NOT EXISTS (SELECT 1 FROM task_reports tr WHERE tr.report_id = b.report_id)
    ), steps AS (
        SELECT j.*, least(greatest(j.p0 + j.k,
                   max(j.severity - j.k) OVER (PARTITION BY j.task_id ORDER BY j.k) + j.k + 1),
                   10) AS priority
          FROM joins j
    ), upd AS (
        UPDATE tasks t
           SET report_ids = t.report_ids || g.ids,
               severity = greatest(t.severity, g.max_severity),
               priority = g.priority, updated_at = now()
          FROM (SELECT s.task_id, array_agg(s.report_id ORDER BY s.k) AS ids,
                       max(s.severity) AS max_severity,
                       (array_agg(s.priority ORDER BY s.k DESC))[1] AS priority
                  FROM steps s GROUP BY s.task_id) g
         WHERE t.id = g.task_id
        RETURNING 1
    ), ins_reports AS (
        INSERT INTO task_reports (report_id, task_id)
        SELECT s.report_id, s.task_id FROM steps s ORDER BY s.ord
        RETURNING 1
    ), ins_history AS (
        INSERT INTO task_history (task_id, event, detail)
        SELECT s.task_id, 'report_joined', jsonb_build_object('report_id', s.report_id,
                   'priority', s.priority, 'report_count', s.count0 + s.k)
          FROM steps s ORDER BY s.ord
        RETURNING 1
    )
    INSERT INTO outbox (event_type, payload)
    SELECT 'trygg.events.TaskJoined', pb_str(1, s.task_id::text) || pb_str(3, s.report_id)
           || pb_int(4, s.priority) || pb_str(5, s.status) || pb_int(6, now_us())
           || pb_str(7, s.unit)
      FROM steps s ORDER BY s.ord;

    -- 3. Anything fresh left (not expected) the long way, in order.
    FOR r IN SELECT x.* FROM jsonb_populate_recordset(NULL::ingest_row, p_reports)
                 WITH ORDINALITY AS x (report_id, category, task_key, place, sensitive,
                     severity, lat, lon, address, unit, copies, unmatched, ack_target_s,
                     completion_target_s, task_id, ord)
              WHERE NOT EXISTS (SELECT 1 FROM task_reports tr WHERE tr.report_id = x.report_id)
              ORDER BY x.ord LOOP
        IF ingest_report(r.report_id, r.category, r.task_key, r.place, r.sensitive, r.severity,
               r.lat, r.lon, r.address, r.unit, r.copies, r.unmatched, r.ack_target_s,
               r.completion_target_s, r.task_id, email_enabled) = 'created' THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

-- 3. The delivery worker claims after every recorded outcome, so
--    claim_deliveries ran hundreds of times a second during a catch-up, and
--    as a LANGUAGE sql function its query was planned on every call (a
--    quarter of Postgres's time then). The same query as a plpgsql RETURN
--    QUERY is planned once per connection. task_json, which it returns per
--    row, is plpgsql for the same reason (the same object as 003's). And
--    the endpoints with pending rows are found by one probe of
--    deliveries_target_due per endpoint (a loose index scan) instead of
--    reading every pending row: behind a backlog of thousands, every claim
--    read them all. The claim itself is unchanged (fair per endpoint).
CREATE OR REPLACE FUNCTION task_json(t tasks) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', t.id, 'status', t.status, 'category', t.category, 'place', t.place,
        'task_key', t.task_key, 'sensitive', t.sensitive, 'unit', t.unit, 'copies', to_jsonb(t.copies),
        'priority', t.priority, 'severity', t.severity, 'report_ids', to_jsonb(t.report_ids),
        'report_count', cardinality(t.report_ids), 'lat', t.lat, 'long', t.lon,
        'address', t.address, 'unmatched', t.unmatched, 'escalations', t.escalations,
        'ack_by', t.created_at + make_interval(secs => t.ack_target_s),
        'complete_by', t.created_at + make_interval(secs => t.completion_target_s),
        'decline_reason', t.decline_reason, 'decline_owner', t.decline_owner, 'note', t.note,
        'created_at', t.created_at, 'dispatched_at', t.dispatched_at,
        'acknowledged_at', t.acknowledged_at, 'done_at', t.done_at,
        'declined_at', t.declined_at, 'updated_at', t.updated_at,
        'source', t.source, 'description', t.description);
END $$;

CREATE OR REPLACE FUNCTION claim_deliveries(p_limit int, p_per_target int, busy_targets text[],
    busy_counts int[], lease_ms int)
RETURNS TABLE (id uuid, attempts int, kind text, channel text, target text, unit text,
    secret text, task jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- A claim is a lease, not a fact: if a crash loses it, the row is due
    -- again and is sent again under the same delivery id, which receivers
    -- already deduplicate (the outcome, delivery_result, stays a synchronous
    -- commit). So the claim's commit does not wait for the WAL flush: at
    -- hundreds of reports a second, one flush per claim was what held the
    -- webhooks back.
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH RECURSIVE busy AS (
        SELECT b.t, b.c FROM unnest(busy_targets, busy_counts) AS b (t, c)
    ), tg (target) AS (
        -- Endpoints with pending rows (due or not: the lateral below
        -- takes only due ones), in order, one index probe each.
        SELECT (SELECT min(d.target) FROM deliveries d WHERE d.status = 'pending')
        UNION ALL
        SELECT (SELECT min(d.target) FROM deliveries d
                 WHERE d.status = 'pending' AND d.target > tg.target)
          FROM tg WHERE tg.target IS NOT NULL
    ), targets AS (
        SELECT tg.target FROM tg WHERE tg.target IS NOT NULL
    ), slots AS (
        SELECT x.target, p_per_target - coalesce((SELECT sum(busy.c) FROM busy
                                                  WHERE busy.t = x.target), 0)::int AS free
          FROM targets x
    ), cand AS (
        SELECT c.id, c.next_attempt_at FROM slots s
         CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at FROM deliveries d
             WHERE d.target = s.target AND d.status = 'pending' AND d.next_attempt_at <= now()
               AND (d.lease_until IS NULL OR d.lease_until < now())
             ORDER BY d.next_attempt_at
             LIMIT greatest(s.free, 0)
             FOR UPDATE SKIP LOCKED) c
         WHERE s.free > 0
    ), pick AS (
        SELECT cand.id FROM cand ORDER BY cand.next_attempt_at LIMIT p_limit
    ), what AS (
        -- A task's delivery carries the task; a mail's (no task) the mail.
        SELECT pick.id,
               CASE WHEN t.id IS NOT NULL THEN task_json(t) ELSE mail_json(m) END AS body,
               CASE WHEN dd.to_supervisor THEN u.supervisor_webhook_secret
                    ELSE u.webhook_secret END AS secret
          FROM pick JOIN deliveries dd ON dd.id = pick.id
          LEFT JOIN tasks t ON t.id = dd.task_id
          LEFT JOIN mails m ON m.mail_id = dd.mail_id
          LEFT JOIN units u ON u.name = dd.unit
    )
    UPDATE deliveries d
       SET attempts = d.attempts + 1,
           lease_until = now() + make_interval(secs => lease_ms / 1000.0)
      FROM what
     WHERE d.id = what.id
    RETURNING d.id, d.attempts, d.kind, d.channel, d.target, d.unit, what.secret, what.body;
END $$;
