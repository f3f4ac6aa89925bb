"""Old import paths that users and saved artifacts already name, kept working after the library was regrouped.

- `shopflow.ledger` (hook authors build `shopflow.ledger.RowVerdicts`; now `shopflow.sources.ledger`);
- `shopflow.training.*` (saved model directories pickle `shopflow.training.candidates.LinearCandidate`; now
  `shopflow.model.training.*`).

An old name resolves to the very module object of the new one (never a second copy), so classes compare equal and
pickles load. Only these paths are kept; the other modules moved without an alias (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

MOVED = {"shopflow.ledger": "shopflow.sources.ledger", "shopflow.training": "shopflow.model.training"}


def new_name(old: str) -> str | None:
    """Where an old module path lives now (a moved package's submodules included), else None."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target
        self.real_spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.real_spec  # the import system just set the alias's spec on the shared module


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        after = new_name(fullname)
        if after is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(after))


def install() -> None:
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
