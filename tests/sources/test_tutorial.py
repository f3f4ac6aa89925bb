"""docs/sources-file.md's "Adding your own source", step by step: its YAML block appended to a copy of the shipped
sources file, then its bash commands run as written (only the interpreter, the data folder and the file's location are this
test's), on a fresh shopflow home. The new source must validate and appear in the status and the day's report."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from conftest import REPO

SECTION = "## Adding your own source"


def _tutorial() -> tuple[str, list[str]]:
    readme = (REPO / "docs" / "sources-file.md").read_text()
    section = readme[readme.index(SECTION):]
    section = section[: section.index("\n## ", len(SECTION))]
    yaml_block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    bash_block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("  #")[0].strip() for line in bash_block.splitlines() if line.strip()]
    return yaml_block, commands


def test_the_tutorial_runs_as_written(tmp_path, source_data):
    entry, commands = _tutorial()
    assert commands[0].startswith("cp include/shopflow/sources.yaml my-sources.yaml")
    env = {**os.environ, "SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data)}
    env.pop("SHOPFLOW_PSEUDONYM_KEY", None)  # the tutorial's `init-key` makes the key file
    sources_file = tmp_path / "my-sources.yaml"
    outputs = []
    for command in commands:
        words = shlex.split(command.replace("$PWD", str(tmp_path)))
        if words[0] == "cp":  # "then append the entry above"
            sources_file.write_text((REPO / words[1]).read_text() + "\n" + entry)
            continue
        if words[0] == "export":
            name, value = words[1].split("=", 1)
            env[name] = value
            continue
        assert words[0] == ".venv/bin/python", command
        words = [sys.executable, *(w.replace("../shared/data", str(source_data)) for w in words[1:])]
        done = subprocess.run(words, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    assert env["SHOPFLOW_SOURCES"] == str(sources_file)

    checked, status = outputs[0], outputs[-2]
    assert "wands_queries: Real site-search queries" in checked and "cleaning: declared" in checked
    row = next(line for line in status.splitlines() if line.startswith("wands_queries"))
    numbers = [int(n.replace(",", "")) for n in row.split()[4:8]]
    rows_in, clean, quarantined, duplicate = numbers
    assert rows_in == 384 and rows_in == clean + quarantined + duplicate and clean > 370, row
    assert " validated " in row

    report = json.loads(next((tmp_path / "home" / "reports").glob("ds=2015-12-03/report.json")).read_text())
    inventory = next(section for section in report["sections"] if section["id"] == "inventory")
    assert "wands_queries" in json.dumps(inventory)
