-- Issue 9: the task of each report in a table of its own, not a column of
-- reports. Setting reports.task_id rewrote the whole report row with an
-- entry in each of its indexes (task_id was indexed, so never a HOT update)
-- for every TaskOpened and TaskJoined: a large part of intake's database
-- work while the notifier catches up. An insert here touches one small
-- index. (004 is the list indexes.)
CREATE TABLE report_tasks (
    task_id   text NOT NULL CHECK (length(task_id) <= 64),
    report_id uuid NOT NULL,
    PRIMARY KEY (task_id, report_id)
);
INSERT INTO report_tasks (task_id, report_id)
SELECT task_id, id FROM reports WHERE task_id IS NOT NULL;
DROP INDEX reports_task;
ALTER TABLE reports DROP COLUMN task_id;
