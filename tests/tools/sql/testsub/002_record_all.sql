-- record_all (testsub.c): every event's type and payload, to compare with
-- the publisher's outbox. NULL when only TestEvents are recorded.
ALTER TABLE applied ADD COLUMN event_type text, ADD COLUMN payload bytea;
