-- Columns nothing ever wrote. A pilot's PanDA job ids and log URL: the monitor finds a pilot's logs through its
-- back end, and pilots are linked to jobs by the pilot-factory protocol (issue 11) when that lands. A
-- scheduler's state: a scheduler is paused in Airflow, and instances are counted by their last cycle.
ALTER TABLE pilots DROP COLUMN IF EXISTS panda_ids, DROP COLUMN IF EXISTS log_url;
ALTER TABLE schedulers DROP COLUMN IF EXISTS state;
