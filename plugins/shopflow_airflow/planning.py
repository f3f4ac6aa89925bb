"""The day's plan: one cheap task that looks at every source's landing folder and lets only the sources with
something landed run their task group.

Without it, every source's ingest task starts a worker process (seconds of interpreter start and imports) only to
find an empty folder and skip. `PlanDayOperator` is a branch: the ingest tasks of absent sources are marked
skipped by the scheduler without ever starting, their clean/validate follow by trigger rule, and the library
records those partitions as missing (`shopflow.steps.partition.plan_day`), as their ingest would have.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Sequence

from airflow.sdk import BaseBranchOperator

from shopflow_airflow.connections import task_settings


class PlanDayOperator(BaseBranchOperator):
    """Branch to `<source>.ingest` for every source with landing files on the run's day (and every required one),
    and to the model steps that may have work given those sources (`model_branch.plan_model_steps`); the others
    are skipped without starting."""

    template_fields: Sequence[str] = ("partition_ds",)
    ui_color = "#eeeeee"

    def __init__(self, *, sources: list[str], partition_ds: str = "{{ ds }}", **kwargs: Any):
        super().__init__(**kwargs)
        self.sources = sources
        self.partition_ds = partition_ds

    def choose_branch(self, context) -> list[str]:
        from shopflow.steps import partition as pipeline
        from shopflow.steps.model_branch import MODEL_STEPS, plan_model_steps

        plan = pipeline.plan_day(task_settings(), date.fromisoformat(self.partition_ds), context["run_id"],
                                 sources=self.sources)
        self.log.info("sources with landing files on %s: %s; skipped without starting: %s", plan["ds"],
                      plan["present"] or "none", plan["missing"] or "none")
        model_steps = plan_model_steps(plan["present"])
        self.log.info("model steps that may have work: %s; skipped without starting: %s", model_steps or "none",
                      [step for step in MODEL_STEPS if step not in model_steps] or "none")
        return [f"{name}.ingest" for name in plan["present"]] + [f"model.{step}" for step in model_steps]


def plan_day_enabled() -> bool:
    """SHOPFLOW_PLAN_DAY (default true): whether the DAG starts with the plan task. Read when the DAG is parsed; a
    value that is not a boolean is a ConfigurationError naming the variable (a DAG import error)."""
    from shopflow.config.options import value

    return value("SHOPFLOW_PLAN_DAY")
