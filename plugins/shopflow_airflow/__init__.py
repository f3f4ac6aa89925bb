"""Airflow glue for shopflow: operators, Asset names and settings from Airflow connections. All work is in `shopflow`."""
