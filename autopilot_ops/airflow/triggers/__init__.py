"""Deferrable triggers: long waits run in Airflow's triggerer, not in a worker slot."""
