-- AutoPilot schema, version 1 (the baseline). Later versions are the numbered files in sql/migrations/.
-- Applied by `autopilot db init` / `db upgrade`, which record each version in `schema_version`.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL
);

-- Registry of submission back ends. `kind` names a class in the `autopilot.backends` entry-point group.
CREATE TABLE IF NOT EXISTS backends (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
    kind        text NOT NULL CHECK (kind <> ''),
    submit_host text,
    parameters  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(parameters) = 'object'),
    enabled     boolean NOT NULL DEFAULT true,
    owner       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per PanDA queue. Field names follow PanDA's schedconfig/CRIC where they exist.
CREATE TABLE IF NOT EXISTS schedconfig (
    panda_queue        text PRIMARY KEY CHECK (panda_queue <> ''),
    nickname           text,
    site               text NOT NULL,
    panda_site         text,
    cloud              text,
    status             text NOT NULL DEFAULT 'online'
                       CHECK (status IN ('online', 'offline', 'test', 'brokeroff')),
    tags               text[] NOT NULL DEFAULT '{}',
    corecount          integer CHECK (corecount >= 0),       -- 0: any (dynamic)
    maxrss             integer CHECK (maxrss >= 0),          -- MB
    maxtime            integer CHECK (maxtime >= 0),         -- seconds
    maxwdir            integer CHECK (maxwdir >= 0),         -- MB
    prod_source_labels text[] NOT NULL DEFAULT '{managed}',
    pilot_type         text,
    -- scheduler limits (see autopilot_ops.policy)
    queue_limit        integer CHECK (queue_limit >= 0),     -- max queued pilots when no ratio is set
    queue_ratio        double precision CHECK (queue_ratio >= 0),        -- target queued = ratio * running
    min_queued         integer NOT NULL DEFAULT 0 CHECK (min_queued >= 0),
    max_queued         integer CHECK (max_queued >= 0),
    max_pilots         integer CHECK (max_pilots >= 0),      -- queued + running, in all
    max_per_cycle      integer CHECK (max_per_cycle >= 0),
    jobs_per_pilot     integer NOT NULL DEFAULT 1 CHECK (jobs_per_pilot > 0),
    cycle_period       integer NOT NULL DEFAULT 300 CHECK (cycle_period > 0),   -- seconds
    -- policy knobs (see autopilot_ops.policy.snapshot.QueueConfig)
    test_pilots        integer NOT NULL DEFAULT 1 CHECK (test_pilots >= 0),
    keep_one_pilot     boolean NOT NULL DEFAULT false,
    missed_rate_limit  double precision DEFAULT 0.5 CHECK (missed_rate_limit BETWEEN 0 AND 1),
    empty_share_limit  double precision DEFAULT 0.5 CHECK (empty_share_limit BETWEEN 0 AND 1),
    throttle_min_count integer NOT NULL DEFAULT 5 CHECK (throttle_min_count >= 1),
    stale_polls        integer NOT NULL DEFAULT 3 CHECK (stale_polls >= 1),
    empty_runtime      integer NOT NULL DEFAULT 60 CHECK (empty_runtime >= 0),  -- a pilot ending sooner ran empty
    -- pilot lifecycle timeouts, seconds (see autopilot_ops.scheduler.lifecycle)
    queued_timeout     integer NOT NULL DEFAULT 172800 CHECK (queued_timeout > 0),
    held_timeout       integer NOT NULL DEFAULT 3600 CHECK (held_timeout > 0),
    unknown_timeout    integer NOT NULL DEFAULT 3600 CHECK (unknown_timeout > 0),
    backend            text REFERENCES backends (name) ON UPDATE CASCADE ON DELETE RESTRICT,
    backend_parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,   -- CRIC attributes with no column of their own
    source             text,                                 -- file or URL the definition came from
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS schedconfig_site_idx ON schedconfig (site);
CREATE INDEX IF NOT EXISTS schedconfig_tags_idx ON schedconfig USING gin (tags);

-- Scheduler instances: one per tag (or site) and host.
CREATE TABLE IF NOT EXISTS schedulers (
    id          text PRIMARY KEY,
    tag         text NOT NULL,
    owner       text,
    host        text,
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused', 'stopped')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_cycle  timestamptz
);

-- One row per queue per scheduling cycle.
CREATE TABLE IF NOT EXISTS cycles (
    id          bigserial PRIMARY KEY,
    cycle_id    text NOT NULL,
    queue       text NOT NULL,
    scheduler   text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    inputs      jsonb NOT NULL DEFAULT '{}'::jsonb,
    decided     integer NOT NULL DEFAULT 0 CHECK (decided >= 0),
    reason      text[] NOT NULL DEFAULT '{}',
    submitted   integer NOT NULL DEFAULT 0 CHECK (submitted >= 0),
    failed      integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    UNIQUE (queue, cycle_id)
);
CREATE INDEX IF NOT EXISTS cycles_queue_time_idx ON cycles (queue, started_at DESC);

-- Idempotent submission: the key (queue, cycle_id) is written before the back end is called.
CREATE TABLE IF NOT EXISTS submissions (
    queue        text NOT NULL,
    cycle_id     text NOT NULL,
    backend      text NOT NULL,
    requested    integer NOT NULL CHECK (requested >= 0),
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed', 'reconciled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    detail       text,
    PRIMARY KEY (queue, cycle_id)
);

-- One row per submitted pilot.
CREATE TABLE IF NOT EXISTS pilots (
    id              bigserial PRIMARY KEY,
    queue           text NOT NULL,
    backend         text NOT NULL,
    batch_id        text NOT NULL,
    cycle_id        text,
    state           text NOT NULL DEFAULT 'submitted'
                    CHECK (state IN ('submitted', 'queued', 'running', 'held', 'finished', 'failed',
                                     'cancelled', 'missed')),
    state_reason    text,
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    ended_at        timestamptz,
    exit_code       integer,
    panda_ids       bigint[] NOT NULL DEFAULT '{}',
    log_url         text,
    stdout_path     text,
    stderr_path     text,
    last_heartbeat  timestamptz,
    last_seen       timestamptz,   -- last time the back end reported on this pilot
    UNIQUE (backend, batch_id)
);
CREATE INDEX IF NOT EXISTS pilots_queue_state_idx ON pilots (queue, state);
CREATE INDEX IF NOT EXISTS pilots_live_idx ON pilots (backend)
    WHERE state IN ('submitted', 'queued', 'running', 'held');

-- Append-only log of pilot and scheduler activity.
CREATE TABLE IF NOT EXISTS pilot_events (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    who       text NOT NULL,
    what      text NOT NULL,
    queue     text,
    pilot_id  bigint,
    details   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS pilot_events_at_idx ON pilot_events (at);
CREATE INDEX IF NOT EXISTS pilot_events_queue_idx ON pilot_events (queue, at DESC);

-- Remote-control settings, per queue or per tag.
CREATE TABLE IF NOT EXISTS controls (
    scope          text NOT NULL CHECK (scope IN ('queue', 'tag')),
    target         text NOT NULL,
    paused         boolean NOT NULL DEFAULT false,
    drain          boolean NOT NULL DEFAULT false,
    fixed_number   integer CHECK (fixed_number >= 0),
    max_per_cycle  integer CHECK (max_per_cycle >= 0),
    expires_at     timestamptz,
    set_by         text NOT NULL,
    set_at         timestamptz NOT NULL DEFAULT now(),
    reason         text,
    PRIMARY KEY (scope, target)
);

INSERT INTO schema_version (version, description)
VALUES (1, 'schedconfig, backends, schedulers, cycles, submissions, pilots, pilot_events, controls')
ON CONFLICT (version) DO NOTHING;
