-- Set-aside events can be re-applied on an operator's request (issue 8).
-- The operator asks with
--   UPDATE inbox_failed SET retry_requested_at = now() WHERE ...;
--   NOTIFY <schema>_inbox;
-- and the running inbox (which LISTENs on that channel and also polls)
-- applies each such event through the service's apply callback in a
-- transaction that deletes its row here. If it fails again, the row stays
-- with retry_requested_at cleared, attempts bumped and the new error.
ALTER TABLE inbox_failed
    ADD COLUMN retry_requested_at timestamptz,      -- NULL: not asked
    ADD COLUMN attempts int NOT NULL DEFAULT 1,     -- tries so far
    ADD COLUMN sqlstate text,                       -- of the last error, if Postgres gave one
    ADD COLUMN occurred_at_us bigint;               -- the envelope's, for the re-apply

CREATE INDEX inbox_failed_retry ON inbox_failed (publisher, seq)
    WHERE retry_requested_at IS NOT NULL;

-- Takes a set-aside event out for its re-apply, in the re-apply's own
-- transaction; fails (SQLSTATE TR002) when the row is gone or no longer
-- asked for (another replica took it), so the effect is never doubled.
CREATE FUNCTION inbox_failed_take(p text, s bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM inbox_failed
     WHERE publisher = p AND seq = s AND retry_requested_at IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set-aside event % of % is not waiting for a retry', s, p
            USING ERRCODE = 'TR002';
    END IF;
END $$;
