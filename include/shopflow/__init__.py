"""shopflow: turns an online shop's raw landing files into governed, validated data assets.

The package knows nothing of Airflow; `plugins/` wraps it in operators and `dags/` wires those into DAGs.
"""

from shopflow.common import moved

__version__ = "0.1.0"

moved.install()  # old module paths named by users' hooks and saved models (shopflow.common.moved)
