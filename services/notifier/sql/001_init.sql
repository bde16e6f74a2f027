-- The notifier's schema (issue 5): units and their delivery channels,
-- routing rules, tasks with their reports, deliveries, timers and history.
--
-- Every task transition is a function here, so the state change, its
-- history line and its bus event (an outbox row) commit in one transaction,
-- under the task's row lock, whichever path caused it (an inbox batch, an
-- API call, a delivery result, a timer). The events are encoded as
-- protobuf right here (the pb_* helpers below): the messages are flat
-- (strings, repeated strings, integers), so their wire format is a few
-- lines of SQL, and a C round trip between reading a task and writing its
-- event would open a race that a single statement does not have.

-- Units: crews and other receivers of work. A unit's webhook secret signs
-- every webhook to it (and to its supervisor's webhook).
CREATE TABLE units (
    name                 text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    display_name         text NOT NULL,
    kind                 text NOT NULL DEFAULT 'crew'
                         CHECK (kind IN ('crew', 'unit', 'police', 'operator')),
    handles_sensitive    boolean NOT NULL DEFAULT false,
    -- At most one unit is the default for unmatched reports, and one for
    -- unmatched sensitive ones (which must never fall to an ordinary crew).
    default_for          text UNIQUE CHECK (default_for IN ('all', 'sensitive')),
    webhook_url          text CHECK (webhook_url ~ '^https?://'),
    webhook_secret       text,
    email                text CHECK (email LIKE '%_@_%'),
    supervisor_name      text,
    supervisor_email     text CHECK (supervisor_email LIKE '%_@_%'),
    supervisor_webhook_url text CHECK (supervisor_webhook_url ~ '^https?://'),
    ack_target_s         integer NOT NULL DEFAULT 1800 CHECK (ack_target_s > 0),
    completion_target_s  integer NOT NULL DEFAULT 86400 CHECK (completion_target_s > 0),
    active               boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (webhook_url IS NULL OR webhook_secret IS NOT NULL)
);

-- API keys of units (and operators), stored as SHA-256 hex of the key.
CREATE TABLE unit_keys (
    key_hash   text PRIMARY KEY CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    unit       text NOT NULL REFERENCES units (name) ON DELETE CASCADE,
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Routing: category ('*' = any), place (NULL = any), a window of the week
-- in local time (days: bit 0 Monday .. bit 6 Sunday; minutes of the day
-- [from_min, to_min), wrapping midnight when from_min > to_min). Among the
-- matching 'owner' rules the highest priority wins (then a named place
-- over any place, then the lowest id); every matching 'copy' rule adds its
-- unit as a copy recipient (the cleaning crew beside the outreach unit).
CREATE TABLE routing_rules (
    id                  serial PRIMARY KEY,
    category            text NOT NULL,
    place               text,
    days                smallint NOT NULL DEFAULT 127 CHECK (days BETWEEN 1 AND 127),
    from_min            smallint NOT NULL DEFAULT 0 CHECK (from_min BETWEEN 0 AND 1439),
    to_min              smallint NOT NULL DEFAULT 1440 CHECK (to_min BETWEEN 1 AND 1440),
    unit                text NOT NULL REFERENCES units (name) ON DELETE CASCADE,
    role                text NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'copy')),
    priority            integer NOT NULL DEFAULT 100,
    ack_target_s        integer CHECK (ack_target_s > 0),        -- NULL: the unit's
    completion_target_s integer CHECK (completion_target_s > 0), -- NULL: the report's
    note                text NOT NULL DEFAULT ''
);

-- Settings the service keeps in its own schema: the secret that signs the
-- acknowledge/done links in e-mails (generated once, here).
CREATE TABLE settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO settings VALUES ('link_secret',
    encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
        || clock_timestamp()::text, 'UTF8')), 'hex'));

CREATE TABLE tasks (
    id                  uuid PRIMARY KEY,
    task_key            text NOT NULL,   -- place slug, 'cell:<lat>:<lon>' or 'addr:...'
    place               text,            -- the place slug when the key is one
    category            text NOT NULL,
    sensitive           boolean NOT NULL DEFAULT false,
    unit                text NOT NULL REFERENCES units (name),
    copies              text[] NOT NULL DEFAULT '{}',
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'dispatched', 'acknowledged', 'done', 'declined')),
    priority            integer NOT NULL,
    severity            integer NOT NULL,
    report_ids          text[] NOT NULL,
    lat                 double precision,
    lon                 double precision,
    address             text,
    unmatched           boolean NOT NULL DEFAULT false,
    escalations         integer NOT NULL DEFAULT 0,
    ack_target_s        integer NOT NULL,
    completion_target_s integer NOT NULL,
    decline_reason      text CHECK (decline_reason IN ('not_ours', 'duplicate', 'no_action')),
    decline_owner       text,
    note                text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    dispatched_at       timestamptz,
    acknowledged_at     timestamptz,
    done_at             timestamptz,
    declined_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- One open task per place (or cell) and category: repeat reports join it.
CREATE UNIQUE INDEX tasks_one_open ON tasks (task_key, category)
    WHERE status IN ('open', 'dispatched', 'acknowledged');
CREATE INDEX tasks_unit ON tasks (unit, created_at DESC);
CREATE INDEX tasks_created ON tasks (created_at DESC);
CREATE INDEX tasks_reports ON tasks USING gin (report_ids);

-- Each report belongs to exactly one task: a second ingest of a report is
-- a no-op whatever path redelivered it.
CREATE TABLE task_reports (
    report_id text PRIMARY KEY,
    task_id   uuid NOT NULL REFERENCES tasks (id),
    added_at  timestamptz NOT NULL DEFAULT now()
);

-- Deliveries: one row per message to one channel of one unit. The id is
-- the delivery id receivers see (stable across retries). A 'dead' row is a
-- dead letter: out of attempts, visible at GET /v1/deliveries?status=dead.
CREATE TABLE deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id         uuid NOT NULL REFERENCES tasks (id),
    unit            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('task', 'copy', 'reminder', 'escalation')),
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email')),
    target          text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_task ON deliveries (task_id);
CREATE INDEX deliveries_dead ON deliveries (dead_at DESC) WHERE status = 'dead';

-- Timers live here, not in memory, so they survive restarts.
CREATE TABLE timers (
    task_id uuid NOT NULL REFERENCES tasks (id),
    kind    text NOT NULL CHECK (kind IN ('ack_reminder', 'ack_escalation', 'completion_escalation')),
    due_at  timestamptz NOT NULL,
    PRIMARY KEY (task_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE task_history (
    id      bigserial PRIMARY KEY,
    task_id uuid NOT NULL REFERENCES tasks (id),
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    event   text NOT NULL,
    actor   text NOT NULL DEFAULT 'notifier',
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX task_history_task ON task_history (task_id, id);

-- Rule or unit changes wake the service's routing cache (rare writes, so a
-- NOTIFY trigger costs nothing here, unlike on the outbox).
CREATE FUNCTION routing_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notifier_routing', '');
    RETURN NULL;
END $$;
CREATE TRIGGER routing_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON routing_rules FOR EACH STATEMENT EXECUTE FUNCTION routing_changed();
CREATE TRIGGER units_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON units FOR EACH STATEMENT EXECUTE FUNCTION routing_changed();

------------------------------------------------------------------------
-- Protobuf wire format for the task events (proto/trygg/events.proto).

CREATE FUNCTION pb_varint(v bigint) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    out bytea := ''::bytea;
BEGIN
    IF v < 0 THEN
        RAISE EXCEPTION 'pb_varint: negative value %', v;
    END IF;
    LOOP
        IF v < 128 THEN
            RETURN out || set_byte('\x00'::bytea, 0, v::int);
        END IF;
        out := out || set_byte('\x00'::bytea, 0, ((v & 127) | 128)::int);
        v := v >> 7;
    END LOOP;
END $$;

-- A string field (proto3: an empty string is not written).
CREATE FUNCTION pb_str(field int, s text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN s IS NULL OR s = '' THEN ''::bytea
           ELSE pb_varint(field * 8 + 2) || pb_varint(octet_length(convert_to(s, 'UTF8')))
                || convert_to(s, 'UTF8') END
$$;

-- A repeated string field: one record per element, in order.
CREATE FUNCTION pb_strs(field int, a text[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(pb_varint(field * 8 + 2)
                || pb_varint(octet_length(convert_to(x, 'UTF8'))) || convert_to(x, 'UTF8'),
                ''::bytea ORDER BY i), ''::bytea)
      FROM unnest(a) WITH ORDINALITY AS u (x, i)
$$;

-- An integer field (uint32, int64 >= 0, enum).
CREATE FUNCTION pb_int(field int, v bigint) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL OR v = 0 THEN ''::bytea
           ELSE pb_varint(field * 8) || pb_varint(v) END
$$;

CREATE FUNCTION now_us() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (extract(epoch FROM now()) * 1000000)::bigint
$$;

-- Writes one task event into the outbox. Every task event starts with
-- task_id = 1 and report_ids = 2; `rest` holds its other fields.
CREATE FUNCTION emit_task_event(msg text, t tasks, rest bytea) RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox (event_type, payload)
    VALUES ('trygg.events.' || msg, pb_str(1, t.id::text) || pb_strs(2, t.report_ids) || rest)
$$;

------------------------------------------------------------------------
-- Tasks as JSON: one shape for the API, webhooks and e-mails.

CREATE FUNCTION task_json(t tasks) RETURNS jsonb LANGUAGE sql STABLE AS $$
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
        'declined_at', t.declined_at, 'updated_at', t.updated_at)
$$;

CREATE FUNCTION delivery_json(d deliveries) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', d.id, 'task_id', d.task_id, 'unit', d.unit, 'kind', d.kind,
        'channel', d.channel, 'target', d.target, 'status', d.status, 'attempts', d.attempts,
        'next_attempt_at', CASE WHEN d.status = 'pending' THEN d.next_attempt_at END,
        'last_status', d.last_status, 'last_error', d.last_error, 'created_at', d.created_at,
        'delivered_at', d.delivered_at, 'dead_at', d.dead_at)
$$;

------------------------------------------------------------------------
-- Deliveries.

-- Queues a message of `kind` about task t to every channel of unit u (its
-- own channels, or with to_supervisor its supervisor's). Returns how many.
CREATE FUNCTION schedule_deliveries(t tasks, u text, kind text, to_supervisor boolean,
    email_enabled boolean) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    r units;
    n int := 0;
    hook text;
    mail text;
BEGIN
    SELECT * INTO r FROM units WHERE name = u;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    hook := CASE WHEN to_supervisor THEN r.supervisor_webhook_url ELSE r.webhook_url END;
    mail := CASE WHEN to_supervisor THEN r.supervisor_email ELSE r.email END;
    IF hook IS NOT NULL AND r.webhook_secret IS NOT NULL THEN
        INSERT INTO deliveries (task_id, unit, kind, channel, target)
        VALUES (t.id, u, kind, 'webhook', hook);
        n := n + 1;
    END IF;
    IF mail IS NOT NULL AND email_enabled THEN
        INSERT INTO deliveries (task_id, unit, kind, channel, target)
        VALUES (t.id, u, kind, 'email', mail);
        n := n + 1;
    END IF;
    -- No NOTIFY: every caller is the notifier itself, which wakes its
    -- delivery worker after the commit (notifier_after_commit); the admin
    -- command NOTIFYs notifier_deliveries itself.
    RETURN n;
END $$;

-- Escalates task t (already locked): history, counter, event, and a
-- message to the owner unit's supervisor.
CREATE FUNCTION escalate(t tasks, reason text, email_enabled boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    UPDATE tasks SET escalations = escalations + 1, updated_at = now() WHERE id = t.id;
    n := schedule_deliveries(t, t.unit, 'escalation', true, email_enabled);
    INSERT INTO task_history (task_id, event, detail)
    VALUES (t.id, 'escalated', jsonb_build_object('reason', reason, 'deliveries', n));
    PERFORM emit_task_event('TaskEscalated', t, pb_str(3, reason) || pb_int(4, now_us()));
END $$;

-- Claims due deliveries for sending: at most p_limit, at most p_per_target
-- per target counting the ones already in flight (busy_targets/counts),
-- leased for lease_ms so a crashed sender's work is picked up again. Each
-- claim counts as an attempt. Returns what a sender needs.
CREATE FUNCTION claim_deliveries(p_limit int, p_per_target int, busy_targets text[],
    busy_counts int[], lease_ms int)
RETURNS TABLE (id uuid, attempts int, kind text, channel text, target text, unit text,
    secret text, task jsonb)
LANGUAGE sql AS $$
    WITH busy AS (
        SELECT b.t, b.c FROM unnest(busy_targets, busy_counts) AS b (t, c)
    ), cand AS (
        SELECT d.id, d.target, d.next_attempt_at FROM deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until < now())
         ORDER BY d.next_attempt_at
         LIMIT greatest(p_limit * 4, 64)
         FOR UPDATE SKIP LOCKED
    ), ranked AS (
        SELECT c.id, c.next_attempt_at,
               row_number() OVER (PARTITION BY c.target ORDER BY c.next_attempt_at)
                   + coalesce((SELECT busy.c FROM busy WHERE busy.t = c.target), 0) AS n
          FROM cand c
    ), pick AS (
        SELECT r.id FROM ranked r WHERE r.n <= p_per_target
         ORDER BY r.next_attempt_at LIMIT p_limit
    )
    UPDATE deliveries d
       SET attempts = d.attempts + 1,
           lease_until = now() + make_interval(secs => lease_ms / 1000.0)
      FROM pick, tasks t, units u
     WHERE d.id = pick.id AND t.id = d.task_id AND u.name = d.unit
    RETURNING d.id, d.attempts, d.kind, d.channel, d.target, d.unit, u.webhook_secret, task_json(t)
$$;

-- Records the outcome of one attempt. A success marks the delivery (and,
-- for the first message of a task, the task dispatched); a failure is
-- retried after retry_ms, or after max_attempts (or when permanent)
-- becomes a dead letter and the task is escalated. Returns 'delivered',
-- 'retry', 'dead' or 'stale' (the delivery had moved on).
CREATE FUNCTION delivery_result(p_id uuid, p_attempt int, p_ok boolean, p_permanent boolean,
    p_status int, p_error text, retry_ms int, max_attempts int, email_enabled boolean)
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
            'channel', d.channel, 'attempts', d.attempts, 'error', p_error));
        SELECT * INTO t FROM tasks WHERE id = d.task_id FOR UPDATE;
        -- An escalation that cannot be delivered is not escalated again.
        IF d.kind <> 'escalation' THEN
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
-- Tasks.

-- The effect of one ReportReceived (called from the inbox batch, so in the
-- same transaction as the inbox cursor). Routing was decided by the caller
-- (p_unit, p_copies). Returns 'created', 'joined' or 'duplicate'.
CREATE FUNCTION ingest_report(p_report_id text, p_category text, p_task_key text,
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
    PERFORM emit_task_event('TaskOpened', t, pb_str(3, t.category) || pb_str(4, t.task_key)
        || pb_int(5, now_us()));
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

-- Fires due timers (at most p_limit): a reminder to the unit, then an
-- escalation to its supervisor; an escalation when not done in time.
-- Returns how many fired.
CREATE FUNCTION fire_timers(p_limit int, email_enabled boolean) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r timers;
    t tasks;
    n int := 0;
BEGIN
    FOR r IN SELECT * FROM timers WHERE due_at <= now() ORDER BY due_at LIMIT p_limit
             FOR UPDATE SKIP LOCKED LOOP
        DELETE FROM timers WHERE task_id = r.task_id AND kind = r.kind;
        SELECT * INTO t FROM tasks WHERE id = r.task_id FOR UPDATE;
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
    RETURN n;
END $$;

-- The unit behind an API key (hex SHA-256), or NULL.
CREATE FUNCTION key_unit(p_key_hash text) RETURNS units LANGUAGE sql STABLE AS $$
    SELECT u.* FROM unit_keys k JOIN units u ON u.name = k.unit
     WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL AND u.active
$$;

-- ack, done or decline by a unit's key (p_key_hash) or through a signed
-- link (p_key_hash NULL: the caller has verified the signature). Returns
-- an HTTP status, an error code and message, and the task on success.
-- Repeating an action that already happened answers 200 without a second
-- event, so a retried request is harmless.
CREATE FUNCTION task_action(p_task uuid, p_action text, p_key_hash text, p_actor text,
    p_note text, p_reason text, p_owner text)
RETURNS TABLE (status int, code text, message text, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    me units;
    t tasks;
    actor text;
    reason_num int;
BEGIN
    IF p_key_hash IS NOT NULL THEN
        me := key_unit(p_key_hash);
        IF me.name IS NULL THEN
            RETURN QUERY SELECT 401, 'unauthorized', 'unknown or revoked key', NULL::jsonb;
            RETURN;
        END IF;
        actor := me.name;
    ELSE
        actor := coalesce(p_actor, 'signed link');
    END IF;
    SELECT * INTO t FROM tasks WHERE id = p_task FOR UPDATE;
    IF NOT FOUND OR (me.name IS NOT NULL AND me.kind <> 'operator' AND t.unit <> me.name) THEN
        RETURN QUERY SELECT 404, 'not_found', 'no such task for this unit', NULL::jsonb;
        RETURN;
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
        ELSIF t.status <> 'acknowledged' THEN
            RETURN QUERY SELECT 409, 'conflict', format('task is %s', t.status), task_json(t);
            RETURN;
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
        ELSIF t.status <> 'done' THEN
            RETURN QUERY SELECT 409, 'conflict', format('task is %s', t.status), task_json(t);
            RETURN;
        END IF;
    ELSIF p_action = 'decline' THEN
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
        ELSIF t.status <> 'declined' THEN
            RETURN QUERY SELECT 409, 'conflict', format('task is %s', t.status), task_json(t);
            RETURN;
        END IF;
    ELSE
        RETURN QUERY SELECT 400, 'invalid_action', 'unknown action', NULL::jsonb;
        RETURN;
    END IF;
    RETURN QUERY SELECT 200, NULL::text, NULL::text, task_json(t);
END $$;
