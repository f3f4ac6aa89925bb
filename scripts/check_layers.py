"""`make lint`'s second half of the architecture contract: every package of include/shopflow sits in a layer of the
import-linter layers contract (pyproject.toml), and no module sits outside a package but __init__, __main__ and
cli. import-linter checks the imports between the layers it is given; this checks that it is given all of them, so
removing a package's layer (or adding a package without one) fails the lint."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "cli.py"}


def problems(repo: Path = REPO) -> list[str]:
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {part.strip() for layer in layers for part in layer.split("|")}
    library = repo / "include" / "shopflow"
    packages = {f"shopflow.{p.name}" for p in library.iterdir() if (p / "__init__.py").is_file()}
    found = [f"{package}: a package in no layer of [tool.importlinter] (pyproject.toml)"
             for package in sorted(packages - named)]
    found += [f"{name}: a layer naming no package of include/shopflow" for name in sorted(named - packages)
              if name != "shopflow.cli"]
    found += [f"include/shopflow/{p.name}: a module outside every concern package"
              for p in sorted(library.glob("*.py")) if p.name not in TOP_LEVEL_MODULES]
    return found


if __name__ == "__main__":
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    print("layers: every package of include/shopflow sits in a layer" if not found else f"layers: {len(found)} problems")
    sys.exit(1 if found else 0)
