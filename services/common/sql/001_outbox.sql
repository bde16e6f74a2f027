-- Transactional outbox (DESIGN.md section 2). A service inserts an event
-- here in the same transaction as its state change; the relay gives it a
-- contiguous per-publisher sequence number and publishes it.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    pub_seq     bigint UNIQUE,          -- NULL until the relay sequences it
    event_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    event_type  text NOT NULL,
    payload     bytea NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
-- The relay's work list: small, since rows leave it once sequenced.
CREATE INDEX outbox_unsequenced ON outbox (id) WHERE pub_seq IS NULL;

-- The highest sequence number handed out; one row.
CREATE TABLE outbox_state (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq bigint NOT NULL DEFAULT 0
);
INSERT INTO outbox_state DEFAULT VALUES;

-- Wake the relay after commit. Notifications with the same payload within
-- one transaction are folded, so a statement-level trigger costs one per
-- transaction at most.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
