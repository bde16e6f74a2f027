-- outbox_reserve (006) with the epoch its numbers belong to, for a producer
-- that publishes its own events once they commit (outbox_relay_committed in
-- outbox.h) instead of leaving the relay a round that reads them back. The
-- epoch comes from the row version the UPDATE locked, so it is the one the
-- numbers were taken in even when outbox_new_epoch() committed just before:
-- a statement's own snapshot could still show the old epoch, and events
-- with new numbers under an old epoch would be taken for duplicates.
-- n <= 0 or NULL reserves nothing, takes no lock and returns NULLs.
CREATE FUNCTION outbox_reserve_epoch(n bigint, OUT first bigint, OUT epoch text)
LANGUAGE plpgsql AS $$
BEGIN
    IF n IS NULL OR n <= 0 THEN
        RETURN;
    END IF;
    UPDATE outbox_state SET last_seq = last_seq + n
        RETURNING last_seq - n + 1, outbox_state.epoch::text INTO first, epoch;
END
$$;

-- One implementation: outbox_reserve keeps its signature for its callers.
CREATE OR REPLACE FUNCTION outbox_reserve(n bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT first FROM outbox_reserve_epoch(n)
$$;
