-- Publisher epochs, bounded events and retention (DESIGN.md section 2,
-- issue 8).
--
-- Epochs. A publisher's sequence numbers are only meaningful together with
-- the outbox_state row that handed them out. If that row is recreated (the
-- schema dropped and migrated again) or restored from an older backup, the
-- numbers restart or go back, and subscribers would take the new events for
-- duplicates. So the row carries an epoch, made when it is created; every
-- event, heartbeat and replay reply carries it, and a subscriber keeps it
-- with its cursor and halts when it changes or the sequence goes back.
ALTER TABLE outbox_state
    ADD COLUMN epoch uuid NOT NULL DEFAULT gen_random_uuid(),
    -- last_seq when this epoch began: 0 for a new schema; subscribers that
    -- accept the epoch continue after it unless the operator says otherwise.
    ADD COLUMN epoch_base_seq bigint NOT NULL DEFAULT 0;

-- The publisher-side operator step after restoring this schema from a
-- backup: the stream continues in a new epoch from the restored last_seq,
-- so every subscriber halts (rather than silently dropping the reissued
-- numbers as duplicates) until its operator accepts the new epoch. Returns
-- the new epoch. Takes the relay's advisory lock so no sequencing round
-- straddles the change; a running relay picks it up on its next round.
-- Bound to this schema (SET search_path), so it may be called qualified
-- from any session: SELECT intake.outbox_new_epoch();
CREATE FUNCTION outbox_new_epoch() RETURNS uuid LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    e uuid;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('trygg_outbox:' || current_schema()));
    UPDATE outbox_state SET epoch = gen_random_uuid(), epoch_base_seq = last_seq
        RETURNING epoch INTO e;
    RETURN e;
END $$;

-- Bounded events. An event the bus cannot carry must fail the producer's
-- transaction, not the relay later: the limits match envelope.c's
-- validation (type 1..128 bytes) and leave a frame of the largest event far
-- below the subscribers' receive limit (outbox.h: OUTBOX_PAYLOAD_MAX).
-- NOT VALID: rows from before this migration are not checked here (the
-- migration must not fail on them); the relay publishes such a row as a
-- placeholder and records it in outbox_invalid instead of stalling.
ALTER TABLE outbox
    ADD CONSTRAINT outbox_event_type_ok
        CHECK (octet_length(event_type) BETWEEN 1 AND 128) NOT VALID,
    ADD CONSTRAINT outbox_payload_size_ok
        CHECK (octet_length(payload) <= 262144) NOT VALID;

-- Sequenced rows the relay could not publish as they are (they broke the
-- limits above): each went out as an event of type trygg.bus.InvalidEvent
-- with an empty payload, so subscribers go past it; the original stays here.
CREATE TABLE outbox_invalid (
    pub_seq     bigint PRIMARY KEY,
    event_id    uuid NOT NULL,
    event_type  text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Retention purges by sequence: everything below the first row younger
-- than the retention, so no hole opens mid-range (occurred_at is the
-- producer transaction's start, not sequence order). pub_seq is UNIQUE, so
-- the walk from the oldest row is an index scan; no index on occurred_at is
-- needed since only the purgeable prefix is visited.

-- Subscriber side: the epoch with the cursor, and why it stopped.
ALTER TABLE inbox_cursor
    ADD COLUMN epoch uuid,              -- NULL: adopt the first epoch seen
    ADD COLUMN halted text              -- NULL while applying
        CHECK (halted IN ('epoch_changed', 'seq_went_back', 'purged')),
    ADD COLUMN halted_detail text,
    ADD COLUMN pending_epoch uuid,      -- what the operator would accept
    ADD COLUMN pending_base_seq bigint;

-- Purged ranges a subscriber went past (by operator's `continue` or with
-- skip_purged configured): the durable record of events it never applied.
CREATE TABLE inbox_skipped (
    publisher   text NOT NULL,
    from_seq    bigint NOT NULL,
    to_seq      bigint NOT NULL,
    epoch       uuid,
    reason      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (publisher, from_seq)
);
