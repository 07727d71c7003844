-- What a submission's pilots are (the prodSourceLabel they ask PanDA for, the bundle they run, the scheduler that
-- submitted them), written with its key before the back end is called, so that pilots found after a crash are
-- recorded as the submission meant them, and count for their scheduler.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS prod_source_label text;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS pilot_version text;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS scheduler text;
