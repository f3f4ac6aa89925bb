"""shopflow Settings for a task: environment variables, overridden by Airflow connections when they exist.

- connection `shopflow_store` (e.g. AIRFLOW_CONN_SHOPFLOW_STORE='postgresql://…'): the metadata store URL;
- connection `shopflow_pseudonym` (its password): the HMAC pseudonymisation key.
"""

from __future__ import annotations

import dataclasses

from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException
from shopflow.config.settings import Settings


def _connection(conn_id: str) -> Connection | None:
    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def sqlalchemy_url(connection: Connection) -> str:
    uri = connection.get_uri()
    for airflow_scheme, sqlalchemy_scheme in (("postgres://", "postgresql+psycopg2://"), ("postgresql://", "postgresql+psycopg2://")):
        if uri.startswith(airflow_scheme):
            return sqlalchemy_scheme + uri[len(airflow_scheme):]
    return uri


def task_settings() -> Settings:
    settings = Settings.from_env()
    store = _connection("shopflow_store")
    if store is not None:
        settings = dataclasses.replace(settings, store_url=sqlalchemy_url(store))
    pseudonym = _connection("shopflow_pseudonym")
    if pseudonym is not None and pseudonym.password:
        settings = dataclasses.replace(settings, pseudonym_key=pseudonym.password)
    return settings
