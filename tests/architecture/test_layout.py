"""The library's layout as its users meet it: every library name the plugins and DAGs import (most of them lazily,
inside `execute`, where a stale path would only fail when a task runs) resolves; the layers contract has teeth; and
the paths users and saved artifacts named before the regrouping still work (a hook module written against
`shopflow.ledger`, a sources file naming `cleaner: shopflow.sources.orders`, a model directory whose joblib files
pickle `shopflow.training.candidates.LinearCandidate`)."""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from conftest import REPO
from orders_days import KEY, land_orders_day, real_orders_lines

OLD_MODEL = REPO / "tests" / "data" / "model_saved_before_regroup"


def _library_imports(folder: Path) -> list[tuple[str, str, int, str, str | None]]:
    """(file, line, module, name) of every `from shopflow... import name` and `import shopflow...` under folder."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "shopflow":
                found += [(str(path.relative_to(REPO)), node.lineno, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(REPO)), node.lineno, alias.name, None) for alias in node.names
                          if alias.name.split(".")[0] == "shopflow"]
    return found


@pytest.mark.parametrize("folder", ["plugins", "dags", "scripts", "bench"])
def test_every_library_name_the_glue_imports_resolves(folder):
    imports = _library_imports(REPO / folder)
    assert folder in ("scripts", "bench") or imports, f"{folder}/ imports nothing from shopflow?"
    for path, line, module, name in imports:
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            pytest.fail(f"{path}:{line}: import {module}: {exc}")
        if name is not None and not hasattr(loaded, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                pytest.fail(f"{path}:{line}: {module} has no {name}")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                          cwd=root, env={"PYTHONPATH": str(root / "include"), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def library_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(REPO / "include", root / "include", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contract_holds_and_an_upward_import_breaks_it(library_copy):
    kept = _lint_imports(library_copy)
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-3000:]
    text_module = library_copy / "include" / "shopflow" / "common" / "text.py"
    original = text_module.read_text()
    try:
        text_module.write_text(original + "\n\ndef _upward():\n    from shopflow.steps import partition  # noqa: F401\n")
        broken = _lint_imports(library_copy)
    finally:
        text_module.write_text(original)
    assert broken.returncode != 0 and "shopflow.common.text -> shopflow.steps.partition" in broken.stdout, broken.stdout[-3000:]


def test_every_package_of_the_library_sits_in_a_layer(tmp_path):
    """`make lint` runs scripts/check_layers.py: removing a package's layer (or adding a package without one) fails."""
    import check_layers

    assert check_layers.problems() == []
    shutil.copytree(REPO / "include", tmp_path / "include", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pyproject = (REPO / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('    "shopflow.steps",\n', "", 1))
    assert check_layers.problems(tmp_path) == ["shopflow.steps: a package in no layer of [tool.importlinter] (pyproject.toml)"]
    (tmp_path / "include" / "shopflow" / "helpers.py").write_text("")
    assert "include/shopflow/helpers.py: a module outside every concern package" in check_layers.problems(tmp_path)


def test_old_module_paths_are_the_new_modules():
    import shopflow.ledger
    import shopflow.model.training.candidates
    import shopflow.sources.ledger
    import shopflow.training.candidates

    assert shopflow.ledger is shopflow.sources.ledger
    assert shopflow.training.candidates is shopflow.model.training.candidates
    assert shopflow.training.candidates.LinearCandidate.__module__ == "shopflow.model.training.candidates"
    assert shopflow.sources.ledger.__spec__.name == "shopflow.sources.ledger"  # the alias leaves the real spec


def test_a_model_directory_saved_before_the_move_loads_and_predicts():
    from shopflow.model.inference import Predictor

    examples = json.loads((OLD_MODEL / "examples.json").read_text())
    predicted = Predictor(OLD_MODEL, device="cpu").predict(examples["texts"])
    agree = (predicted["label"].tolist() == examples["labels_top"]) or \
        sum(a == b for a, b in zip(predicted["label"], examples["labels_top"])) >= 0.9 * len(examples["texts"])
    assert agree, predicted.to_string()


def test_a_hook_and_sources_file_written_before_the_move_clean_a_real_day(tmp_path, source_data, monkeypatch):
    """A cleaner hook written against the old paths (`shopflow.ledger.RowVerdicts`, as the docs gave hook authors)
    and a sources file naming it and `cleaner: shopflow.sources.orders` run a real orders day to validated."""
    from shopflow.config.settings import Settings
    from shopflow.sources import load_sources
    from shopflow.steps import partition
    from shopflow.store import migrate
    from shopflow.store.repository import MetadataStore

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "old_style_orders_hook.py").write_text(textwrap.dedent('''
        from shopflow.ledger import RowVerdicts
        from shopflow.sources import orders

        CLEAN_SCHEMA = orders.CLEAN_SCHEMA
        DEDUP_KEY = orders.DEDUP_KEY


        def clean(raw, ds, spec):
            typed, verdicts = orders.clean(raw, ds, spec)
            assert isinstance(verdicts, RowVerdicts)
            return typed, verdicts
    '''))
    monkeypatch.syspath_prepend(str(hooks))
    shipped = (REPO / "include" / "shopflow" / "sources.yaml").read_text()
    assert "cleaner: shopflow.sources.orders" in shipped
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(shipped.replace("cleaner: shopflow.sources.orders", "cleaner: old_style_orders_hook", 1))
    env = {"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
           "SHOPFLOW_PSEUDONYM_KEY": KEY, "SHOPFLOW_SOURCES": str(sources_file),
           "SHOPFLOW_CLEANER_MODULES": "shopflow.sources,old_style_orders_hook"}  # the deployment allows its hook
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_sources(REPO / "include" / "shopflow" / "sources.yaml")["orders"].cleaner == "shopflow.sources.orders"
    assert load_sources()["orders"].cleaner == "old_style_orders_hook"
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    day = date(2010, 12, 1)
    land_orders_day(settings, day, real_orders_lines(source_data))
    for step in (partition.ingest, partition.clean, partition.validate):
        step(settings, "orders", day, "run-1")
    [stored] = MetadataStore(settings.store_url).partitions("orders", day)
    assert stored.status == "validated" and stored.rows_in == 60
    assert stored.rows_in == stored.rows_clean + stored.rows_quarantined + stored.rows_duplicate
