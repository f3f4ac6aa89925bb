"""Parent side of training: write the job, spawn `python -m shopflow.model.worker` in a fresh interpreter (the
caller -- an Airflow worker -- never initialises CUDA), relay its progress lines, and return its result.

When the models folder is on an object store, the worker writes into a local staging folder that is uploaded to
`output_dir` afterwards (shopflow.common.storage.staged_dir); the result's `artifact_path` is then the object store URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable

import pandas as pd

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.model.training.config import TrainingConfig


class TrainingFailed(RuntimeError):
    pass


def run_training(examples: pd.DataFrame, output_dir: StoragePath, config: TrainingConfig,
                 log: Callable[[str], None] = print, *, warm_start: str | None = None, champion: dict | None = None,
                 embedding_cache_dir: Path | None = None) -> dict:
    """Train every candidate (shopflow.model.worker) into `output_dir`. `warm_start`: an earlier fine-tune
    directory to start from; `champion`: {"version", "path"} of the current champion, for the paired comparison;
    `embedding_cache_dir`: where frozen-encoder embeddings are cached between trainings."""
    extra = {"warm_start": warm_start, "champion": champion,
             "embedding_cache_dir": str(embedding_cache_dir) if embedding_cache_dir else None}
    with storage.staged_dir(output_dir) as local_dir:
        result = _run_worker(examples, local_dir, config, log, extra)
        if local_dir != output_dir:  # staged: record where the directory is uploaded to, in result.json too
            result["artifact_path"] = str(output_dir)
            (local_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _run_worker(examples: pd.DataFrame, output_dir: Path, config: TrainingConfig,
                log: Callable[[str], None], extra: dict) -> dict:
    examples_path = output_dir / "examples.parquet"
    examples.to_parquet(examples_path, index=False)
    job_path = output_dir / "job.json"
    job_path.write_text(json.dumps({"examples": str(examples_path), "output_dir": str(output_dir),
                                    "config": config.as_dict(), **extra}, indent=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "shopflow.model.worker", str(job_path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=40)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        tail.append(line)
        log(line)
    if process.wait() != 0:
        raise TrainingFailed(f"training worker exited with {process.returncode}:\n" + "\n".join(tail))
    return json.loads((output_dir / "result.json").read_text())
