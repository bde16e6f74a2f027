-- Issues 10 and 11: imported history, and walk-planner's mail and tasks.

-- Reports imported from a district's earlier systems (ReportReceived with
-- imported = true): recorded as closed history, never a task, delivery or
-- timer, so they page nobody. Kept so the notifier can answer how much
-- history it has seen (and replays stay idempotent by report_id).
CREATE TABLE history_reports (
    report_id   text PRIMARY KEY CHECK (length(report_id) <= 64),
    category    text NOT NULL,
    places      text[] NOT NULL DEFAULT '{}',
    lat         double precision,
    lon         double precision,
    reported_at timestamptz NOT NULL,
    closed_at   timestamptz,
    night       boolean NOT NULL,
    source      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- E-mails walk-planner asks for (MailRequested), once per mail_id. Each
-- becomes one delivery (channel email, kind mail) through the same worker,
-- retries, backoff and dead letters as task e-mails.
CREATE TABLE mails (
    mail_id         text PRIMARY KEY CHECK (length(mail_id) <= 64),
    to_address      text NOT NULL,
    to_name         text NOT NULL DEFAULT '',
    subject         text NOT NULL,
    body_text       text NOT NULL,
    attachment_name text NOT NULL DEFAULT '',
    attachment_type text NOT NULL DEFAULT '',
    attachment      bytea,
    kind            text NOT NULL DEFAULT '',
    walk_id         text NOT NULL DEFAULT '',
    requested_at    timestamptz NOT NULL DEFAULT now()
);

-- Where a task's first report came from: "partner" (intake) or "walk"
-- (a walk-planner finding, FindingTaskRequested).
ALTER TABLE tasks ADD COLUMN source text NOT NULL DEFAULT 'partner';

-- A mail's delivery: no task; the mail's row says what to send.
ALTER TABLE deliveries ALTER COLUMN task_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN mail_id text REFERENCES mails (mail_id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('task', 'copy', 'reminder', 'escalation', 'mail'));
ALTER TABLE deliveries ADD CONSTRAINT deliveries_task_or_mail
    CHECK ((task_id IS NULL) <> (mail_id IS NULL));

-- What the delivery worker reads for a mail (the attachment in base64).
CREATE FUNCTION mail_json(m mails) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('mail_id', m.mail_id, 'to_address', m.to_address,
        'to_name', m.to_name, 'subject', m.subject, 'body_text', m.body_text,
        'attachment_name', m.attachment_name, 'attachment_type', m.attachment_type,
        'attachment', encode(coalesce(m.attachment, ''), 'base64'), 'kind', m.kind,
        'walk_id', m.walk_id)
$$;

-- MailRequested: recorded once per mail_id, with one e-mail delivery.
-- Returns 'created' or 'duplicate'.
CREATE FUNCTION request_mail(p_mail_id text, p_to text, p_to_name text, p_subject text,
    p_body text, p_att_name text, p_att_type text, p_att bytea, p_kind text, p_walk text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mails (mail_id, to_address, to_name, subject, body_text, attachment_name,
        attachment_type, attachment, kind, walk_id)
    VALUES (p_mail_id, p_to, p_to_name, p_subject, p_body, p_att_name, p_att_type, p_att,
        p_kind, p_walk)
    ON CONFLICT (mail_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;
    INSERT INTO deliveries (mail_id, unit, kind, channel, target)
    VALUES (p_mail_id, 'walk-planner', 'mail', 'email', p_to);
    RETURN 'created';
END $$;

CREATE OR REPLACE FUNCTION claim_deliveries(p_limit int, p_per_target int, busy_targets text[],
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
    RETURNING d.id, d.attempts, d.kind, d.channel, d.target, d.unit, what.secret, what.body
$$;

-- The outcome of one attempt at a mail delivery (delivery_result's
-- contract, without a task: no history row, no dispatch, no escalation).
CREATE FUNCTION mail_delivery_result(p_id uuid, p_attempt int, p_ok boolean,
    p_permanent boolean, p_status int, p_error text, retry_ms int, max_attempts int,
    email_enabled boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d deliveries;
BEGIN
    SELECT * INTO d FROM deliveries WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR d.status <> 'pending' THEN
        RETURN 'stale';
    ELSIF p_ok THEN
        UPDATE deliveries SET status = 'delivered', delivered_at = now(),
               last_status = p_status, last_error = NULL, lease_until = NULL WHERE id = p_id;
        RETURN 'delivered';
    ELSIF d.attempts <> p_attempt THEN
        RETURN 'stale'; -- a later attempt is in flight: it decides
    ELSIF p_permanent OR d.attempts >= max_attempts THEN
        UPDATE deliveries SET status = 'dead', dead_at = now(), last_status = p_status,
               last_error = p_error, lease_until = NULL WHERE id = p_id;
        RETURN 'dead';
    END IF;
    UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => retry_ms / 1000.0),
           last_status = p_status, last_error = p_error, lease_until = NULL WHERE id = p_id;
    RETURN 'retry';
END $$;

-- A walk finding's task: the description, shown to the crew.
ALTER TABLE tasks ADD COLUMN description text CHECK (length(description) <= 4000);
CREATE OR REPLACE FUNCTION task_json(t tasks) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
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
        'source', t.source, 'description', t.description)
$$;

-- FindingTaskRequested: a walk finding routed like a report whose id is
-- the finding id (ingest_report), its unit named by walk-planner when that
-- is a known active unit; marked source 'walk' with its description.
CREATE FUNCTION ingest_finding(p_finding_id text, p_category text, p_task_key text,
    p_place text, p_severity int, p_lat double precision, p_lon double precision,
    p_unit text, p_named_unit text, p_copies text[], p_unmatched boolean, p_ack_target_s int,
    p_completion_target_s int, p_new_task_id uuid, email_enabled boolean, p_description text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    unit text := p_unit;
    res text;
BEGIN
    IF p_named_unit <> '' AND EXISTS (SELECT 1 FROM units WHERE name = p_named_unit AND active) THEN
        unit := p_named_unit;
    END IF;
    res := ingest_report(p_finding_id, p_category, p_task_key, p_place, false, p_severity, p_lat,
        p_lon, '', unit, p_copies, p_unmatched AND unit = p_unit, p_ack_target_s,
        p_completion_target_s, p_new_task_id, email_enabled);
    IF res = 'created' THEN
        UPDATE tasks SET source = 'walk', description = nullif(p_description, '')
         WHERE id = p_new_task_id;
    END IF;
    RETURN res;
END $$;
