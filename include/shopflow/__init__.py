"""shopflow: turns an online shop's raw landing files into governed, validated data assets.

The package knows nothing of Airflow; `plugins/` wraps it in operators and `dags/` wires those into DAGs.
"""

__version__ = "0.1.0"
