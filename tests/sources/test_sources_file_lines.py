"""Issue 19: every problem of a sources file names the line of the YAML node it points at (`line 14: orders...`),
the deepest node the file has for its key path (a missing key: the entry's line)."""

from __future__ import annotations

import re

import pytest

from shopflow.sources import SourcesFileError, load_sources
from shopflow.sources.spec import parse_sources
from shopflow.sources.yaml_limits import load_bounded_yaml_with_lines

GOOD = """\
# a sources file for the tests
shop:
  description: a shop
  owner: data@shop.example
  files:
    - name: rows.csv
      columns: [a, b]
  schema:
    - {name: a}
    - name: b
      type: int
    - name: has_a
      type: bool
      expression: a.notna()
  key: [a]
"""


def _problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(SourcesFileError) as error:
        load_sources(path)
    message = str(error.value)
    assert message.startswith(f"sources file {path} is not a valid sources file:"), message
    return [line.strip() for line in message.splitlines()[1:]]


def _the_problem(tmp_path, text: str) -> str:
    problems = _problems(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


def test_the_good_file_loads(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD)
    assert load_sources(path)["shop"].schema_[-1].expression == "a.notna()"


def test_a_misspelt_key_names_its_line(tmp_path):
    problem = _the_problem(tmp_path, GOOD.replace("      type: int\n", "      typ: int\n"))
    assert problem.startswith("line 11: shop.schema.1.typ: Extra inputs are not permitted"), problem
    assert "did you mean 'type'?" in problem


def test_a_misspelt_key_of_a_source_names_its_line(tmp_path):
    problems = _problems(tmp_path, GOOD.replace("  owner:", "  ownr:"))
    assert "line 4: shop.ownr: Extra inputs are not permitted: unknown key 'ownr'; did you mean 'owner'?" in problems
    assert "line 2: shop.owner: Field required" in problems  # missing: the entry's line


def test_a_bad_expression_names_its_line(tmp_path):
    problem = _the_problem(tmp_path, GOOD.replace("expression: a.notna()", "expression: \"open('/etc/passwd')\""))
    assert problem.startswith("line 12: shop.schema.2: derived column 'has_a'"), problem  # the column's line
    assert "is not allowed" in problem


def test_a_bad_file_name_names_its_line(tmp_path):
    problem = _the_problem(tmp_path, GOOD.replace("name: rows.csv", "name: '../rows.csv'"))
    assert problem.startswith("line 6: shop.files.0.name:"), problem
    assert "holds a path separator" in problem


def test_a_bad_source_name_names_its_line(tmp_path):
    problem = _the_problem(tmp_path, GOOD.replace("shop:", "Shop:"))
    assert problem.startswith("line 2: 'Shop': a source name is lower-case"), problem


def test_a_missing_required_key_names_the_entry_line(tmp_path):
    problem = _the_problem(tmp_path, GOOD.replace("    - name: rows.csv\n      columns: [a, b]\n",
                                                  "    - columns: [a, b]\n"))
    assert problem.startswith("line 6: shop.files.0.name: Field required"), problem


def test_a_missing_key_of_a_source_names_the_source_line(tmp_path):
    problem = _the_problem(tmp_path, GOOD.replace("  owner: data@shop.example\n", ""))
    assert problem.startswith("line 2: shop.owner: Field required"), problem


def test_every_problem_names_its_own_line(tmp_path):
    text = GOOD.replace("  owner:", "  ownr:").replace("      type: int\n", "      typ: int\n") + \
        "other: [not, a, mapping]\n"
    problems = _problems(tmp_path, text)
    assert all(re.match(r"line \d+: ", problem) for problem in problems), problems
    assert "line 16: other: expected a mapping of keys, got list" in problems, problems
    assert any(problem.startswith("line 4: shop.ownr:") for problem in problems), problems
    assert any(problem.startswith("line 11: shop.schema.1.typ:") for problem in problems), problems


def test_a_node_repeated_by_an_alias_names_the_line_it_is_written_on(tmp_path):
    text = GOOD + "copy:\n  description: d\n  owner: o\n  files: *files\n  schema: [{name: a}]\n  key: [a]\n"
    text = text.replace("  files:\n    - name", "  files: &files\n    - name", 1)
    text = text.replace("columns: [a, b]", "columns: [a, a]")
    problems = _problems(tmp_path, text)
    assert problems == ["line 6: shop.files.0: columns are not unique: ['a', 'a']",
                        "line 6: copy.files.0: columns are not unique: ['a', 'a']"], problems


def test_the_line_map_names_keys_and_list_items():
    data, lines = load_bounded_yaml_with_lines(GOOD)
    assert data["shop"]["files"][0]["name"] == "rows.csv"
    assert lines[("shop",)] == 2
    assert lines[("shop", "files")] == 5
    assert lines[("shop", "files", 0)] == 6
    assert lines[("shop", "files", 0, "name")] == 6
    assert lines[("shop", "files", 0, "columns")] == 7
    assert lines[("shop", "schema", 0, "name")] == 9
    assert lines[("shop", "schema", 2, "expression")] == 14


def test_a_plain_dict_still_parses_without_lines():
    with pytest.raises(SourcesFileError) as error:
        parse_sources({"shop": {"description": "d", "owner": "o", "files": [{"columns": ["a"]}]}}, "test")
    assert "\n  shop.files.0.name: Field required" in str(error.value)


def test_a_problem_outside_the_map_keeps_the_deepest_known_line():
    raw = {"shop": {"description": "d", "owner": "o", "files": [{"columns": ["a"]}]}}
    lines = {(): 1, ("shop",): 3, ("shop", "files"): 7}
    with pytest.raises(SourcesFileError) as error:
        parse_sources(raw, "test", lines)
    assert "\n  line 7: shop.files.0.name: Field required" in str(error.value)
