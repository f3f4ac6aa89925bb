"""The shopflow AirflowPlugin (Airflow 3.1+ interface): the reports app and two external views.

- `fastapi_apps`: `shopflow_ui.app` mounted by the api-server under /shopflow;
- external view "shopflow" (destination `nav`): a navigation entry that shows /shopflow/ in the UI's iframe;
- external view "shopflow report" (destination `dag_run`): a tab on each DAG run page that shows that run's report.
  The UI replaces `{DAG_ID}` and `{RUN_ID}` in the href (URL-encoded) before it loads the iframe.

The hrefs are relative (no leading slash): the UI page has `<base href="{api base path}">`, so they resolve to
/shopflow/… and keep working when Airflow is served under a sub-path. `url_route` (no leading slash either) is the
UI route of the embedded view: /plugin/shopflow, /dags/<dag>/runs/<run>/plugin/shopflow-report.

This module is light: every Airflow component loads plugins, only the api-server reads `fastapi_apps` and so
imports the app (FastAPI, Airflow's API security, the metadata store).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/shopflow"


class ShopflowReportsPlugin(AirflowPlugin):
    name = "shopflow"
    external_views = [
        {
            "name": "shopflow",
            "href": "shopflow/",
            "destination": "nav",
            "url_route": "shopflow",
            "nav_top_level": True,
        },
        {
            "name": "shopflow report",
            "href": "shopflow/runs/{RUN_ID}?dag_id={DAG_ID}",
            "destination": "dag_run",
            "url_route": "shopflow-report",
        },
    ]

    @property
    def fastapi_apps(self) -> list[dict]:
        from shopflow_ui.app import app

        return [{"app": app, "url_prefix": URL_PREFIX, "name": "shopflow reports"}]
