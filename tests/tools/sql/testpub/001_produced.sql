-- The test publisher's "business" rows: one per event it produced, written
-- in the same transaction as the outbox row.
CREATE TABLE produced (
    n          bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
