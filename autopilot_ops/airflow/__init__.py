"""Airflow integration: hooks, operators, triggers and the DAG factory."""
