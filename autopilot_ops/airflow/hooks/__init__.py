"""Airflow hooks: the PanDA server, the Slurm and HTCondor back ends, and the AutoPilot store."""
