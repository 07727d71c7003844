-- The scheduler (tag@deployment) that submitted each pilot: where deployments share one database, each counts its
-- own pilots against its share of a queue's jobs (ceil(activated / instances)), as Harvester's instances do.
ALTER TABLE pilots ADD COLUMN IF NOT EXISTS scheduler text;
