"""The shopflow reports in the Airflow UI: `app` (a small FastAPI app the api-server mounts under /shopflow) and
`reports_plugin` (the AirflowPlugin: the app, a "shopflow" navigation entry and a "shopflow report" tab on every
DAG run).

Airflow's plugin loader runs every .py file of the plugins folder as a top-level module; `.airflowignore` keeps it
to `reports_plugin.py`, which imports the app only in the api-server (see `ShopflowReportsPlugin.fastapi_apps`).
"""
