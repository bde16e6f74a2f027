-- Issue 9: no plan that an estimate can turn into a scan per call.
--
-- At 500 reports a second the notifier's Postgres spent much of its time in
-- sequential scans (auto_explain in tests/bench/notifier-bench.sh's
-- cluster): the tables grow faster than autovacuum analyzes them, and from
-- statistics taken when they were small the planner chose
--   * a hash anti join over all of task_reports for each of
--     ingest_reports()' four "not yet in a task" checks (NOT EXISTS is
--     pulled up into a join whose method follows the estimates), and
--   * a hash join over all of deliveries to find the claimed rows'
--     channels in claim_deliveries().
-- plpgsql keeps a statement's plan for the session, so a plan made while a
-- table was small stays in use as it grows, until the next analyze. Both
-- functions only ever touch rows by key:
--   * the "not yet in a task" checks are scalar subqueries (a per-row
--     lookup of task_reports' key; a NOT EXISTS is pulled up into a join
--     whose method follows the estimates), the claimed rows' channels are
--     per-row subqueries in RETURNING, and rows are fetched by
--     `= ANY (ARRAY(...))` of their keys;
--   * and both run with enable_seqscan off (restored when they return), so
--     a key lookup is never planned as a scan of a table believed small.
-- The results are the same as 004's.

CREATE OR REPLACE FUNCTION ingest_reports(p_reports jsonb, email_enabled boolean) RETURNS int
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
           AND (SELECT 1 FROM task_reports tr WHERE tr.report_id = b.report_id) IS NULL
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

    -- Every report in a task now (at a steady rate each report opens its
    -- own): steps 2 and 3 would find nothing, so skip their statements.
    IF NOT EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::ingest_row, p_reports) x
                    WHERE (SELECT 1 FROM task_reports tr
                            WHERE tr.report_id = x.report_id) IS NULL) THEN
        RETURN created;
    END IF;

    -- 2. Every other fresh report joins its key's open task. The tasks are
    -- locked first, in id order (as fire_timers takes them).
    -- (Each key's task found by a LATERAL probe of tasks_one_open, for the
    -- reason given in step 1.)
    PERFORM 1 FROM tasks t
      WHERE t.id = ANY (ARRAY(
                SELECT o.id
                  FROM jsonb_populate_recordset(NULL::ingest_row, p_reports) x
                 CROSS JOIN LATERAL (
                       SELECT t2.id FROM tasks t2
                        WHERE t2.task_key = x.task_key AND t2.category = x.category
                          AND t2.status IN ('open', 'dispatched', 'acknowledged')
                        LIMIT 1) o
                 WHERE (SELECT 1 FROM task_reports tr WHERE tr.report_id = x.report_id) IS NULL))
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
           AND (SELECT 1 FROM task_reports tr WHERE tr.report_id = b.report_id) IS NULL
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
         WHERE t.id = ANY (ARRAY(SELECT s.task_id FROM steps s)) AND t.id = g.task_id
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
              WHERE (SELECT 1 FROM task_reports tr WHERE tr.report_id = x.report_id) IS NULL
              ORDER BY x.ord LOOP
        IF ingest_report(r.report_id, r.category, r.task_key, r.place, r.sensitive, r.severity,
               r.lat, r.lon, r.address, r.unit, r.copies, r.unmatched, r.ack_target_s,
               r.completion_target_s, r.task_id, email_enabled) = 'created' THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
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
    )
    UPDATE deliveries d
       SET attempts = d.attempts + 1,
           lease_until = now() + make_interval(secs => lease_ms / 1000.0)
     WHERE d.id = ANY (ARRAY(SELECT pick.id FROM pick))
    RETURNING d.id, d.attempts, d.kind, d.channel, d.target, d.unit,
           (SELECT CASE WHEN d.to_supervisor THEN u.supervisor_webhook_secret
                        ELSE u.webhook_secret END
              FROM units u WHERE u.name = d.unit),
           -- A task's delivery carries the task; a mail's (no task) the mail.
           CASE WHEN d.task_id IS NOT NULL
                THEN (SELECT task_json(t) FROM tasks t WHERE t.id = d.task_id)
                ELSE (SELECT mail_json(m) FROM mails m WHERE m.mail_id = d.mail_id) END;
END $$;

ALTER FUNCTION ingest_reports(jsonb, boolean) SET enable_seqscan = off;
ALTER FUNCTION claim_deliveries(int, int, text[], int[], int) SET enable_seqscan = off;

------------------------------------------------------------------------
-- The outcomes of a batch of sends in one statement. The delivery worker
-- writes the outcomes that finished while its last write ran in one
-- transaction (delivery.c); with one delivery_result() call per outcome,
-- Postgres parsed, bound and ran seven statements per webhook, most of its
-- CPU per report at 500 reports a second. Now the usual outcome, a success
-- of a pending task delivery, is written set-based: each delivery
-- delivered, its history, and each open task dispatched by its first
-- owner's delivery in the batch, with its history and TaskDispatched, each
-- task's rows in the batch's order, as delivery_result() would write them
-- one after the other (rows of different tasks may interleave otherwise).
-- Everything else (a failure, a mail, a stale outcome, and every outcome of
-- a task that has one of those in the batch) goes through delivery_result()
-- or mail_delivery_result() as before, in the batch's order. Rows are
-- locked as delivery_result() locks them: the deliveries, then their tasks
-- in id order (as every transaction that locks several tasks takes them).
-- Returns each outcome's result ('delivered', 'stale', 'dead', 'retry') in
-- the order of p_outcomes.
CREATE TYPE outcome_row AS (id uuid, attempt int, ok boolean, permanent boolean, status int,
    error text, retry_ms int, mail boolean);

CREATE FUNCTION delivery_results(p_outcomes jsonb, max_attempts int, email_enabled boolean)
RETURNS text[] LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    results text[];
    ids uuid[];     -- the successes written set-based, in the batch's order
    ords int[];     -- their places in p_outcomes
    codes int[];    -- their HTTP (or SMTP) statuses
    pending uuid[]; -- those still pending (locked)
    owners uuid[];  -- the tasks of their owners' deliveries
    opened uuid[];  -- those still open (locked): each is dispatched
    written int[];  -- the places of the successes written set-based
    did uuid;
    tid uuid;
    st text;
    k text;
    r record;
    i int;
BEGIN
    results := array_fill(NULL::text, ARRAY[jsonb_array_length(p_outcomes)]);
    -- Set-based: the successes of task deliveries whose task has no other
    -- kind of outcome in the batch (so each task's rows keep the order one
    -- call per outcome gives them). Every row is found by its key (see
    -- the top of this file).
    WITH x AS (
        SELECT x.id, x.status, x.ord::int AS ord, x.ok AND NOT coalesce(x.mail, false) AS plain,
               (SELECT d.task_id FROM deliveries d WHERE d.id = x.id) AS task_id
          FROM jsonb_populate_recordset(NULL::outcome_row, p_outcomes) WITH ORDINALITY
               AS x (id, attempt, ok, permanent, status, error, retry_ms, mail, ord)
    )
    SELECT coalesce(array_agg(x.id ORDER BY x.ord), '{}'),
           coalesce(array_agg(x.ord ORDER BY x.ord), '{}'),
           coalesce(array_agg(x.status ORDER BY x.ord), '{}')
      INTO ids, ords, codes
      FROM x
     WHERE x.plain AND x.task_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM x y WHERE y.task_id = x.task_id AND NOT y.plain);
    -- Lock them one by one by key, in id order, keeping the pending ones,
    -- then their open tasks likewise. (A status condition in a set
    -- statement would let the planner read a partial index of every
    -- pending delivery or open task, which statistics taken while the
    -- table was small make look cheapest.)
    pending := '{}';
    owners := '{}';
    FOREACH did IN ARRAY ARRAY(SELECT u FROM unnest(ids) u ORDER BY u) LOOP
        SELECT d.status, d.kind, d.task_id INTO st, k, tid
          FROM deliveries d WHERE d.id = did FOR UPDATE;
        IF st = 'pending' THEN
            pending := pending || did;
            IF k = 'task' THEN
                owners := owners || tid;
            END IF;
        END IF;
    END LOOP;
    opened := '{}';
    FOREACH tid IN ARRAY ARRAY(SELECT DISTINCT u FROM unnest(owners) u ORDER BY u) LOOP
        SELECT t.status INTO st FROM tasks t WHERE t.id = tid FOR UPDATE;
        IF st = 'open' THEN
            opened := opened || tid;
        END IF;
    END LOOP;
    WITH d AS (
        UPDATE deliveries d
           SET status = 'delivered', delivered_at = now(),
               last_status = codes[array_position(ids, d.id)], last_error = NULL,
               lease_until = NULL
         WHERE d.id = ANY (pending)
        RETURNING d.id, d.task_id, d.unit, d.kind, d.channel, d.attempts,
                  ords[array_position(ids, d.id)] AS ord
    ), first_owner AS (
        -- The task's first owner's delivery in the batch dispatches it.
        SELECT DISTINCT ON (d.task_id) d.task_id, d.unit, d.ord
          FROM d WHERE d.kind = 'task' ORDER BY d.task_id, d.ord
    ), t AS (
        UPDATE tasks t SET status = 'dispatched', dispatched_at = now(), updated_at = now()
         WHERE t.id = ANY (opened)
        RETURNING t.id
    ), dispatched AS (
        SELECT f.task_id, f.unit, f.ord FROM first_owner f JOIN t ON t.id = f.task_id
    ), h AS (
        INSERT INTO task_history (task_id, event, detail)
        SELECT x.task_id, x.event, x.detail FROM (
            SELECT d.ord, 1 AS i, d.task_id, 'delivered' AS event,
                   jsonb_build_object('delivery_id', d.id, 'unit', d.unit, 'kind', d.kind,
                       'channel', d.channel, 'attempts', d.attempts) AS detail
              FROM d
            UNION ALL
            SELECT g.ord, 2, g.task_id, 'dispatched', jsonb_build_object('unit', g.unit)
              FROM dispatched g) x
         ORDER BY x.ord, x.i
        RETURNING 1
    ), e AS (
        INSERT INTO outbox (event_type, payload)
        SELECT 'trygg.events.TaskDispatched',
               pb_str(1, g.task_id::text) || pb_str(3, g.unit) || pb_int(4, now_us())
          FROM dispatched g ORDER BY g.ord
        RETURNING 1
    )
    SELECT coalesce(array_agg(d.ord), '{}') INTO written FROM d;
    FOREACH i IN ARRAY written LOOP
        results[i] := 'delivered';
    END LOOP;

    -- The rest one by one, in the batch's order.
    FOR r IN SELECT x.*
               FROM jsonb_populate_recordset(NULL::outcome_row, p_outcomes) WITH ORDINALITY
                    AS x (id, attempt, ok, permanent, status, error, retry_ms, mail, ord)
              ORDER BY x.ord LOOP
        CONTINUE WHEN results[r.ord::int] IS NOT NULL;
        IF coalesce(r.mail, false) THEN
            results[r.ord::int] := mail_delivery_result(r.id, r.attempt, r.ok, r.permanent,
                r.status, r.error, r.retry_ms, max_attempts, email_enabled);
        ELSE
            results[r.ord::int] := delivery_result(r.id, r.attempt, r.ok, r.permanent, r.status,
                r.error, r.retry_ms, max_attempts, email_enabled);
        END IF;
    END LOOP;
    RETURN results;
END $$;

------------------------------------------------------------------------
-- tasks.report_ids had a GIN index for GET /v1/tasks?report_id=, updated
-- on every task insert and on every change of a task's status (those
-- updates are not HOT: status is in tasks_one_open's predicate). The
-- report's task is task_reports' key lookup (api.c), so the index goes.
DROP INDEX tasks_reports;
