"""A model step's deterministic error (the catalogue cannot be used as declared: `ModelInputError`; a bad setting or
sources file) fails its task at once, without the retries a transient error gets; a transient error is raised as it
is, for the DAG's retry policy."""

from __future__ import annotations

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException
from shopflow_airflow.operators import TrainingGateOperator

from shopflow.common.errors import ConfigurationError, ModelInputError
from shopflow.sources import SourcesFileError, get_source
from shopflow.steps.model_branch import catalogue_as_declared


def _failing(exc: BaseException) -> TrainingGateOperator:
    operator = TrainingGateOperator(task_id="training_gate", partition_ds="2015-12-03")

    def run_step(settings, ds, run_id):
        raise exc

    operator.run_step = run_step
    return operator


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path))


@pytest.mark.parametrize("error", [ModelInputError("catalog: column 'x' is not in its clean partition"),
                                   ConfigurationError("SHOPFLOW_X: bad"), SourcesFileError("sources file f: bad")])
def test_a_deterministic_error_fails_without_retries(error):
    with pytest.raises(AirflowFailException, match=str(error).split(":")[0]):
        _failing(error).execute({"run_id": "manual__1"})


def test_a_transient_error_is_raised_for_a_retry():
    with pytest.raises(OSError, match="disk full"):
        _failing(OSError("disk full")).execute({"run_id": "manual__1"})


def test_a_missing_column_names_the_source_and_the_role_field():
    spec = get_source("catalog")
    frame = pd.DataFrame({"uniq_id": ["a"]})
    with pytest.raises(ModelInputError, match=r"catalog: column 'product_name' \(role field title\) is not in its clean "
                                              r"partition"):
        with catalogue_as_declared(spec):
            frame["product_name"]
