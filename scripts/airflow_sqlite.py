"""Connect args for an embedded Airflow on SQLite: wait for locks instead of failing after sqlite3's default 5 s.

Referenced by AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=airflow_sqlite.CONNECT_ARGS (scripts/ on PYTHONPATH).
"""

CONNECT_ARGS = {"timeout": 60}
