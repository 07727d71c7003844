-- AutoPilot as a pilot factory of PanDA (the harvester API of pandaserver/api/v1/harvester_api.py).

-- The ids a submission reserved for its pilots: pilot i of it gets id first_pilot_id + i, its PanDA worker id,
-- which it knows from its environment before the back end has told its batch id.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS first_pilot_id bigint;

-- What PanDA last accepted of a pilot as a worker: only changes are sent, a final state once, and changes not
-- yet accepted wait here through a PanDA outage.
ALTER TABLE pilots ADD COLUMN IF NOT EXISTS worker_reported_state text;
ALTER TABLE pilots ADD COLUMN IF NOT EXISTS worker_reported_at timestamptz;
CREATE INDEX IF NOT EXISTS pilots_worker_unreported_idx ON pilots (id)
    WHERE worker_reported_state IS DISTINCT FROM state;

-- Whether PanDA's SET_N_WORKERS_JOBTYPE number is the queue's number of new pilots ('target', Harvester's
-- slave mode), at most that ('cap'), or not applied ('ignore').
ALTER TABLE schedconfig ADD COLUMN IF NOT EXISTS panda_workers text NOT NULL DEFAULT 'target'
    CHECK (panda_workers IN ('target', 'cap', 'ignore'));

-- Commands PanDA gave a factory (acquire_commands), and what became of each; acknowledged once applied.
CREATE TABLE IF NOT EXISTS panda_commands (
    harvester_id    text NOT NULL,
    command_id      bigint NOT NULL,
    command         text NOT NULL,
    params          jsonb,
    created_at      text,                 -- PanDA's creation_date, as sent
    received_at     timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz,
    acknowledged_at timestamptz,
    outcome         text,
    PRIMARY KEY (harvester_id, command_id)
);
CREATE INDEX IF NOT EXISTS panda_commands_unacknowledged_idx ON panda_commands (harvester_id)
    WHERE acknowledged_at IS NULL;

-- PanDA's numbers of new workers per queue, job type and resource type (SET_N_WORKERS_JOBTYPE:<queue>); a new
-- command for a queue replaces all of the queue's rows, as Harvester's set_queue_limit resets them.
CREATE TABLE IF NOT EXISTS panda_worker_targets (
    queue          text NOT NULL,
    job_type       text NOT NULL,
    resource_type  text NOT NULL,
    n_workers      integer NOT NULL CHECK (n_workers >= 0),
    command_id     bigint NOT NULL,
    received_at    timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (queue, job_type, resource_type)
);

-- When a factory last sent its heartbeat and each queue's worker statistics.
CREATE TABLE IF NOT EXISTS factory_reports (
    harvester_id  text NOT NULL,
    report        text NOT NULL,          -- 'heartbeat', or 'statistics:<queue>'
    sent_at       timestamptz NOT NULL,
    PRIMARY KEY (harvester_id, report)
);
