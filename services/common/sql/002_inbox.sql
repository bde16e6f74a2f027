-- Inbox cursors (DESIGN.md section 2): for each publisher a subscriber
-- follows, the last sequence number whose effect has been committed. The
-- cursor moves in the same transaction as the effects, and only from
-- exactly the previous value, so every event has its effect exactly once.
CREATE TABLE inbox_cursor (
    publisher  text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Advances the cursor from from_seq - 1 to to_seq, or fails (SQLSTATE
-- TR001) and so rolls back the whole batch of effects it belongs to.
CREATE FUNCTION inbox_advance(p text, from_seq bigint, to_seq bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE inbox_cursor SET last_seq = to_seq, updated_at = now()
     WHERE publisher = p AND last_seq = from_seq - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inbox cursor for % is not at %', p, from_seq - 1
            USING ERRCODE = 'TR001';
    END IF;
END $$;

-- Events whose effect failed on their own (a poison event: a bug or a bad
-- payload, not a connection problem). They are kept here, visible to
-- operators, instead of stalling the stream or vanishing.
CREATE TABLE inbox_failed (
    publisher  text NOT NULL,
    seq        bigint NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    payload    bytea NOT NULL,
    error      text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (publisher, seq)
);
