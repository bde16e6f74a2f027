-- The stand-in intake's rows: reports it published (in the same
-- transaction as their ReportReceived outbox row) and the task events it
-- received back from the notifier (in the same transaction as its inbox
-- cursor), decoded with protobuf-c.
CREATE TABLE reports (
    report_id  text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE task_events (
    id          bigserial PRIMARY KEY,
    seq         bigint NOT NULL,
    event_type  text NOT NULL,
    task_id     text NOT NULL,
    report_ids  text[] NOT NULL,
    detail      text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
