-- Routing of cycle tasks to Airflow workers (Celery or Edge): the worker queue a queue's cycle task runs on,
-- set on the queue or on its back end (the queue's wins); NULL on both: Airflow's 'default' worker queue. A
-- Slurm or HTCondor back end names its submit host's worker queue, so its submissions run on that host.
ALTER TABLE schedconfig ADD COLUMN IF NOT EXISTS worker_queue text;
ALTER TABLE backends ADD COLUMN IF NOT EXISTS worker_queue text;
