-- Pilots at a real site: pinned pilot versions, credentials, job types.

-- The pilot bundle a queue's pilots run: a version AutoPilot serves, or 'current'; so a site can try a new pilot
-- on one queue first. The version each pilot ran is kept with it.
ALTER TABLE schedconfig ADD COLUMN IF NOT EXISTS pilot_version text NOT NULL DEFAULT 'current';
ALTER TABLE pilots ADD COLUMN IF NOT EXISTS pilot_version text;

-- The credentials a queue's pilots carry, per job type ('*' for any): a PanDA token file (with its origin) or an
-- X.509 proxy; paths only, never a secret's value. Below min_credential_lifetime seconds left (NULL: the queue's
-- maxtime, at least 1 h) the queue submits nothing.
ALTER TABLE schedconfig ADD COLUMN IF NOT EXISTS credentials jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE schedconfig ADD COLUMN IF NOT EXISTS min_credential_lifetime integer
    CHECK (min_credential_lifetime IS NULL OR min_credential_lifetime >= 0);

-- The job type (prodSourceLabel) a pilot was submitted for and asks PanDA for.
ALTER TABLE pilots ADD COLUMN IF NOT EXISTS prod_source_label text;
