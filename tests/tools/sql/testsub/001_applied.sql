-- The test subscriber's effects: one row per applied event. Deliberately no
-- unique constraint: a duplicate effect must show up in the tests, not be
-- hidden by an error.
CREATE TABLE applied (
    id          bigserial PRIMARY KEY,
    publisher   text NOT NULL,
    seq         bigint NOT NULL,
    event_id    text NOT NULL,
    n           bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
