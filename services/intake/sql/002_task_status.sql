-- Issue 9: the task each report belongs to, from the notifier's TaskOpened
-- and TaskJoined events. The other task events name only the task (their
-- size no longer grows with it), so report status is applied by task_id.
-- Text, not uuid: it is the notifier's identifier, checked there.
ALTER TABLE reports ADD COLUMN task_id text CHECK (length(task_id) <= 64);
CREATE INDEX reports_task ON reports (task_id) WHERE task_id IS NOT NULL;
