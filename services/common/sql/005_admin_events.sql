-- The columns and table the operator command `admin events` reads and
-- writes (services/common/admin_events.c). They belong to 003_inbox_retry
-- and 004_epoch_retention (the one definition is in 003 and 004); every
-- statement here is IF NOT EXISTS, so after those migrations this one
-- changes nothing, and on its own it gives admin_events its tables.
ALTER TABLE inbox_failed ADD COLUMN IF NOT EXISTS retry_requested_at timestamptz;
ALTER TABLE inbox_failed ADD COLUMN IF NOT EXISTS attempts int NOT NULL DEFAULT 1;

ALTER TABLE outbox_state ADD COLUMN IF NOT EXISTS epoch uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE outbox_state ADD COLUMN IF NOT EXISTS epoch_base_seq bigint NOT NULL DEFAULT 0;

ALTER TABLE inbox_cursor ADD COLUMN IF NOT EXISTS epoch uuid;
ALTER TABLE inbox_cursor ADD COLUMN IF NOT EXISTS halted text;
ALTER TABLE inbox_cursor ADD COLUMN IF NOT EXISTS halted_detail text;
ALTER TABLE inbox_cursor ADD COLUMN IF NOT EXISTS pending_epoch uuid;
ALTER TABLE inbox_cursor ADD COLUMN IF NOT EXISTS pending_base_seq bigint;

CREATE TABLE IF NOT EXISTS inbox_skipped (
    publisher   text,
    from_seq    bigint,
    to_seq      bigint,
    epoch       uuid,
    reason      text,
    recorded_at timestamptz DEFAULT now(),
    PRIMARY KEY (publisher, from_seq)
);
