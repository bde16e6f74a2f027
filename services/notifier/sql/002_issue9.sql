-- Issue 9: lock order, fair delivery claims, the sensitive default, the
-- supervisor's own webhook secret, bounded task events, SQLSTATE codes.
--
-- Lock order, everywhere: a task row first, then rows that belong to it
-- (its timers). A transaction never holds a timer or a delivery row while
-- it waits for a task, except delivery_result, which holds only its own
-- delivery row (that nobody else locks while holding a task). fire_timers
-- takes its tasks in task id order and never waits for one: a task that
-- another transaction holds (an acknowledgement, an inbox batch) is left
-- for the next tick (SKIP LOCKED), so it cannot deadlock with either.
--
-- task_action refuses with SQLSTATEs of its own (TN...; listed at the
-- function), which api.c maps to HTTP statuses; C never reads a message.

------------------------------------------------------------------------
-- 3. Only a unit that handles sensitive reports may be their default. A
-- database that already has such a default loses it (sensitive reports
-- without a rule are then set aside in inbox_failed, never given to a
-- crew) and says so.
DO $$
DECLARE
    bad text;
BEGIN
    FOR bad IN SELECT name FROM units WHERE default_for = 'sensitive' AND NOT handles_sensitive
    LOOP
        RAISE WARNING 'unit % was the default for sensitive reports but does not handle them;'
            ' it is no longer the default', bad;
        UPDATE units SET default_for = NULL WHERE name = bad;
    END LOOP;
END $$;
ALTER TABLE units ADD CONSTRAINT units_sensitive_default_handles
    CHECK (default_for IS DISTINCT FROM 'sensitive' OR handles_sensitive);

------------------------------------------------------------------------
-- 4. The supervisor's webhook has its own secret: a crew can no longer
-- forge what its supervisor receives, and a unit without a webhook of its
-- own can still escalate to its supervisor's. Existing supervisor
-- webhooks keep working with the crew's secret until an operator gives a
-- new one (`unit set NAME --supervisor URL` generates it); one without
-- any secret gets a generated one.
ALTER TABLE units ADD COLUMN supervisor_webhook_secret text;
UPDATE units SET supervisor_webhook_secret = coalesce(webhook_secret,
        encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')),
            'hex'))
 WHERE supervisor_webhook_url IS NOT NULL;
ALTER TABLE units ADD CONSTRAINT units_supervisor_webhook_signed
    CHECK (supervisor_webhook_url IS NULL OR supervisor_webhook_secret IS NOT NULL);

-- Whether a delivery goes to the unit's supervisor (and is signed with the
-- supervisor's secret).
ALTER TABLE deliveries ADD COLUMN to_supervisor boolean NOT NULL DEFAULT false;
UPDATE deliveries SET to_supervisor = true WHERE kind = 'escalation';

CREATE OR REPLACE FUNCTION schedule_deliveries(t tasks, u text, kind text, to_supervisor boolean,
    email_enabled boolean) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    r units;
    n int := 0;
    hook text;
    secret text;
    mail text;
BEGIN
    SELECT * INTO r FROM units WHERE name = u;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    hook := CASE WHEN to_supervisor THEN r.supervisor_webhook_url ELSE r.webhook_url END;
    secret := CASE WHEN to_supervisor THEN r.supervisor_webhook_secret ELSE r.webhook_secret END;
    mail := CASE WHEN to_supervisor THEN r.supervisor_email ELSE r.email END;
    IF hook IS NOT NULL AND secret IS NOT NULL THEN
        INSERT INTO deliveries (task_id, unit, kind, channel, target, to_supervisor)
        VALUES (t.id, u, kind, 'webhook', hook, to_supervisor);
        n := n + 1;
    END IF;
    IF mail IS NOT NULL AND email_enabled THEN
        INSERT INTO deliveries (task_id, unit, kind, channel, target, to_supervisor)
        VALUES (t.id, u, kind, 'email', mail, to_supervisor);
        n := n + 1;
    END IF;
    RETURN n;
END $$;

------------------------------------------------------------------------
-- 2. Fair claims. Each endpoint (target) with due work gets up to its free
-- slots (p_per_target minus what the worker has in flight there), oldest
-- first, however many rows other endpoints have queued; then the oldest
-- p_limit of those are taken. A hanging endpoint with thousands of queued
-- rows no longer hides a healthy one's single row.
CREATE INDEX deliveries_target_due ON deliveries (target, next_attempt_at)
    WHERE status = 'pending';

DROP FUNCTION claim_deliveries(int, int, text[], int[], int);
CREATE FUNCTION claim_deliveries(p_limit int, p_per_target int, busy_targets text[],
    busy_counts int[], lease_ms int)
RETURNS TABLE (id uuid, attempts int, kind text, channel text, target text, unit text,
    secret text, task jsonb)
LANGUAGE sql AS $$
    WITH busy AS (
        SELECT b.t, b.c FROM unnest(busy_targets, busy_counts) AS b (t, c)
    ), targets AS (
        SELECT DISTINCT d.target FROM deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until < now())
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
      FROM pick, tasks t, units u
     WHERE d.id = pick.id AND t.id = d.task_id AND u.name = d.unit
    RETURNING d.id, d.attempts, d.kind, d.channel, d.target, d.unit,
        CASE WHEN d.to_supervisor THEN u.supervisor_webhook_secret ELSE u.webhook_secret END,
        task_json(t)
$$;

------------------------------------------------------------------------
-- 5. Task events carry what changed, bounded in size: the task id, and
-- only TaskOpened (its first report) and TaskJoined (the joining report)
-- name a report. report_ids (field 2) is deprecated in every other event;
-- intake keeps the task of each report and applies the rest by task id.
CREATE OR REPLACE FUNCTION emit_task_event(msg text, t tasks, rest bytea) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (event_type, payload)
    VALUES ('trygg.events.' || msg, pb_str(1, t.id::text) || rest)
$$;

CREATE OR REPLACE FUNCTION ingest_report(p_report_id text, p_category text, p_task_key text,
    p_place text, p_sensitive boolean, p_severity int, p_lat double precision,
    p_lon double precision, p_address text, p_unit text, p_copies text[], p_unmatched boolean,
    p_ack_target_s int, p_completion_target_s int, p_new_task_id uuid, email_enabled boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t tasks;
    c text;
    n int;
BEGIN
    PERFORM 1 FROM task_reports WHERE report_id = p_report_id;
    IF FOUND THEN
        RETURN 'duplicate';
    END IF;
    SELECT * INTO t FROM tasks WHERE task_key = p_task_key AND category = p_category
       AND status IN ('open', 'dispatched', 'acknowledged') FOR UPDATE;
    IF FOUND THEN
        -- A repeat report joins the open task and raises its priority;
        -- nobody is paged again.
        UPDATE tasks SET report_ids = report_ids || p_report_id,
               severity = greatest(severity, p_severity),
               priority = least(greatest(priority, p_severity) + 1, 10), updated_at = now()
         WHERE id = t.id RETURNING * INTO t;
        INSERT INTO task_reports (report_id, task_id) VALUES (p_report_id, t.id);
        INSERT INTO task_history (task_id, event, detail)
        VALUES (t.id, 'report_joined', jsonb_build_object('report_id', p_report_id,
            'priority', t.priority, 'report_count', cardinality(t.report_ids)));
        PERFORM emit_task_event('TaskJoined', t, pb_str(3, p_report_id) || pb_int(4, t.priority)
            || pb_str(5, t.status) || pb_int(6, now_us()) || pb_str(7, t.unit));
        RETURN 'joined';
    END IF;
    INSERT INTO tasks (id, task_key, place, category, sensitive, unit, copies, priority, severity,
        report_ids, lat, lon, address, unmatched, ack_target_s, completion_target_s)
    VALUES (p_new_task_id, p_task_key, p_place, p_category, p_sensitive, p_unit,
        coalesce(p_copies, '{}'), greatest(p_severity, 1), greatest(p_severity, 1),
        ARRAY[p_report_id], p_lat, p_lon, nullif(p_address, ''), p_unmatched, p_ack_target_s,
        p_completion_target_s)
    RETURNING * INTO t;
    INSERT INTO task_reports (report_id, task_id) VALUES (p_report_id, t.id);
    INSERT INTO task_history (task_id, event, detail)
    VALUES (t.id, 'opened', jsonb_build_object('report_id', p_report_id, 'unit', p_unit,
        'copies', to_jsonb(t.copies), 'unmatched', p_unmatched));
    PERFORM emit_task_event('TaskOpened', t, pb_strs(2, ARRAY[p_report_id])
        || pb_str(3, t.category) || pb_str(4, t.task_key) || pb_int(5, now_us()));
    n := schedule_deliveries(t, p_unit, 'task', false, email_enabled);
    IF n = 0 THEN
        INSERT INTO task_history (task_id, event, detail)
        VALUES (t.id, 'no_channel', jsonb_build_object('unit', p_unit));
    END IF;
    IF NOT t.sensitive THEN
        FOREACH c IN ARRAY t.copies LOOP
            PERFORM schedule_deliveries(t, c, 'copy', false, email_enabled);
        END LOOP;
    END IF;
    INSERT INTO timers (task_id, kind, due_at) VALUES
        (t.id, 'ack_reminder', now() + make_interval(secs => p_ack_target_s)),
        (t.id, 'completion_escalation', now() + make_interval(secs => p_completion_target_s));
    RETURN 'created';
END $$;

------------------------------------------------------------------------
-- 1. Timers: task first (in task id order, skipping a task another
-- transaction holds), then its due timers.
CREATE OR REPLACE FUNCTION fire_timers(p_limit int, email_enabled boolean) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    tid uuid;
    r timers;
    t tasks;
    n int := 0;
BEGIN
    FOR tid IN SELECT DISTINCT x.task_id FROM (
                   SELECT timers.task_id FROM timers WHERE due_at <= now()
                    ORDER BY due_at LIMIT p_limit) x
                ORDER BY x.task_id LOOP
        SELECT * INTO t FROM tasks WHERE id = tid FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            CONTINUE; -- held by an acknowledgement or a batch: the next tick
        END IF;
        FOR r IN SELECT * FROM timers WHERE task_id = tid AND due_at <= now()
                  ORDER BY due_at, kind FOR UPDATE LOOP
            DELETE FROM timers WHERE task_id = r.task_id AND kind = r.kind;
            n := n + 1;
            IF r.kind = 'ack_reminder' AND t.status IN ('open', 'dispatched') THEN
                PERFORM schedule_deliveries(t, t.unit, 'reminder', false, email_enabled);
                INSERT INTO task_history (task_id, event, detail)
                VALUES (t.id, 'ack_reminder', jsonb_build_object('unit', t.unit));
                INSERT INTO timers (task_id, kind, due_at)
                VALUES (t.id, 'ack_escalation', now() + make_interval(secs => t.ack_target_s))
                ON CONFLICT DO NOTHING;
            ELSIF r.kind = 'ack_escalation' AND t.status IN ('open', 'dispatched') THEN
                PERFORM escalate(t, format('not acknowledged within %s s', t.ack_target_s * 2),
                    email_enabled);
            ELSIF r.kind = 'completion_escalation'
                  AND t.status IN ('open', 'dispatched', 'acknowledged') THEN
                PERFORM escalate(t, format('not done within %s s', t.completion_target_s),
                    email_enabled);
            END IF;
        END LOOP;
    END LOOP;
    RETURN n;
END $$;

------------------------------------------------------------------------
-- 6. A dead letter escalates once, and only for the task's own message: a
-- dead copy is the copy recipient's matter, a dead reminder is followed by
-- the timer's escalation anyway, and a dead escalation is not escalated
-- again. The delivery row is locked first, the task after it; nobody
-- locks a delivery while holding a task.
CREATE OR REPLACE FUNCTION delivery_result(p_id uuid, p_attempt int, p_ok boolean,
    p_permanent boolean, p_status int, p_error text, retry_ms int, max_attempts int,
    email_enabled boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d deliveries;
    t tasks;
BEGIN
    SELECT * INTO d FROM deliveries WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR d.status <> 'pending' THEN
        RETURN 'stale';
    END IF;
    IF p_ok THEN
        UPDATE deliveries SET status = 'delivered', delivered_at = now(), last_status = p_status,
               last_error = NULL, lease_until = NULL WHERE id = p_id;
        INSERT INTO task_history (task_id, event, detail)
        VALUES (d.task_id, 'delivered', jsonb_build_object('delivery_id', d.id, 'unit', d.unit,
            'kind', d.kind, 'channel', d.channel, 'attempts', d.attempts));
        IF d.kind = 'task' THEN
            UPDATE tasks SET status = 'dispatched', dispatched_at = now(), updated_at = now()
             WHERE id = d.task_id AND status = 'open' RETURNING * INTO t;
            IF FOUND THEN
                INSERT INTO task_history (task_id, event, detail)
                VALUES (t.id, 'dispatched', jsonb_build_object('unit', d.unit));
                PERFORM emit_task_event('TaskDispatched', t, pb_str(3, d.unit) || pb_int(4, now_us()));
            END IF;
        END IF;
        RETURN 'delivered';
    END IF;
    IF d.attempts <> p_attempt THEN
        RETURN 'stale'; -- a later attempt is in flight: it decides
    END IF;
    IF p_permanent OR d.attempts >= max_attempts THEN
        UPDATE deliveries SET status = 'dead', dead_at = now(), last_status = p_status,
               last_error = p_error, lease_until = NULL WHERE id = p_id;
        INSERT INTO task_history (task_id, event, detail)
        VALUES (d.task_id, 'dead_letter', jsonb_build_object('delivery_id', d.id, 'unit', d.unit,
            'kind', d.kind, 'channel', d.channel, 'attempts', d.attempts, 'error', p_error));
        IF d.kind = 'task' THEN
            SELECT * INTO t FROM tasks WHERE id = d.task_id FOR UPDATE;
            PERFORM escalate(t, format('delivery to %s by %s failed after %s attempts: %s',
                d.unit, d.channel, d.attempts, p_error), email_enabled);
        END IF;
        RETURN 'dead';
    END IF;
    UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => retry_ms / 1000.0),
           last_status = p_status, last_error = p_error, lease_until = NULL WHERE id = p_id;
    RETURN 'retry';
END $$;

------------------------------------------------------------------------
-- task_action: one task row, then its timers (as fire_timers). It returns
-- the task as JSON; a refusal is an error with one of these SQLSTATEs
-- (api.c maps them to HTTP statuses; it never reads message texts):
--   TNKEY  unknown or revoked key                        401
--   TNNOT  no such task, or not this unit's               404
--   TNACT  unknown action                                 400
--   TNDON  the task is done: cannot be acknowledged/declined    409
--   TNDEC  the task was declined: cannot be acknowledged/done   409
-- Repeating an action that already happened returns the task without a
-- second event, so a retried request is harmless.
DROP FUNCTION task_action(uuid, text, text, text, text, text, text);
CREATE FUNCTION task_action(p_task uuid, p_action text, p_key_hash text, p_actor text,
    p_note text, p_reason text, p_owner text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    me units;
    t tasks;
    actor text;
    reason_num int;
BEGIN
    IF p_key_hash IS NOT NULL THEN
        me := key_unit(p_key_hash);
        IF me.name IS NULL THEN
            RAISE EXCEPTION 'unknown or revoked key' USING ERRCODE = 'TNKEY';
        END IF;
        actor := me.name;
    ELSE
        actor := coalesce(p_actor, 'signed link');
    END IF;
    IF p_action NOT IN ('ack', 'done', 'decline') THEN
        RAISE EXCEPTION 'unknown action' USING ERRCODE = 'TNACT';
    END IF;
    SELECT * INTO t FROM tasks WHERE id = p_task FOR UPDATE;
    IF NOT FOUND OR (me.name IS NOT NULL AND me.kind <> 'operator' AND t.unit <> me.name) THEN
        RAISE EXCEPTION 'no such task for this unit' USING ERRCODE = 'TNNOT';
    END IF;
    -- The action's own end state repeats harmlessly; the other end states
    -- refuse it.
    IF t.status = 'done' AND p_action <> 'done' THEN
        RAISE EXCEPTION 'task is done' USING ERRCODE = 'TNDON';
    ELSIF t.status = 'declined' AND p_action <> 'decline' THEN
        RAISE EXCEPTION 'task is declined' USING ERRCODE = 'TNDEC';
    END IF;
    IF p_action = 'ack' THEN
        IF t.status IN ('open', 'dispatched') THEN
            UPDATE tasks SET status = 'acknowledged', acknowledged_at = now(), updated_at = now(),
                   note = coalesce(nullif(p_note, ''), note)
             WHERE id = t.id RETURNING * INTO t;
            DELETE FROM timers WHERE task_id = t.id AND kind IN ('ack_reminder', 'ack_escalation');
            INSERT INTO task_history (task_id, event, actor, detail)
            VALUES (t.id, 'acknowledged', actor, jsonb_build_object('note', p_note));
            PERFORM emit_task_event('TaskAcknowledged', t, pb_str(3, t.unit) || pb_str(4, p_note)
                || pb_int(5, now_us()));
        END IF;
    ELSIF p_action = 'done' THEN
        IF t.status IN ('open', 'dispatched', 'acknowledged') THEN
            UPDATE tasks SET status = 'done', done_at = now(), updated_at = now(),
                   acknowledged_at = coalesce(acknowledged_at, now()),
                   note = coalesce(nullif(p_note, ''), note)
             WHERE id = t.id RETURNING * INTO t;
            DELETE FROM timers WHERE task_id = t.id;
            INSERT INTO task_history (task_id, event, actor, detail)
            VALUES (t.id, 'done', actor, jsonb_build_object('note', p_note));
            PERFORM emit_task_event('TaskCompleted', t, pb_str(3, p_note) || pb_int(4, now_us()));
        END IF;
    ELSE
        IF t.status IN ('open', 'dispatched', 'acknowledged') THEN
            reason_num := CASE p_reason WHEN 'not_ours' THEN 1 WHEN 'duplicate' THEN 2
                          WHEN 'no_action' THEN 3 END;
            UPDATE tasks SET status = 'declined', declined_at = now(), updated_at = now(),
                   decline_reason = p_reason, decline_owner = nullif(p_owner, ''),
                   note = coalesce(nullif(p_note, ''), note)
             WHERE id = t.id RETURNING * INTO t;
            DELETE FROM timers WHERE task_id = t.id;
            INSERT INTO task_history (task_id, event, actor, detail)
            VALUES (t.id, 'declined', actor, jsonb_build_object('reason', p_reason,
                'owner', p_owner, 'note', p_note));
            PERFORM emit_task_event('TaskDeclined', t, pb_int(3, reason_num) || pb_str(4, p_note)
                || pb_int(5, now_us()) || pb_str(6, p_owner));
        END IF;
    END IF;
    RETURN task_json(t);
END $$;
