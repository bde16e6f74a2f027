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
