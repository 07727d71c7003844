"""Airflow operators: one scheduling cycle per back-end kind, the pilot monitor, the cleanup and the sync."""
