"""A sources file is data and never code: the hostile probe of issue 18 as a corpus.

Each case is a sources file (or a location) that once ran code, escaped the landing zone or exhausted memory or
time; each must now be refused when the file is loaded, with a SourcesFileError (or, for the setting, a
ConfigurationError) whose message names the forbidden part. `sources check` exits non-zero and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass

import pytest
from shopflow.common.errors import ConfigurationError
from shopflow.config.settings import Settings
from shopflow.sources import SourcesFileError, load_sources

SOURCE = """\
shop:
  description: d
  owner: o
  files:
    - {{name: {name}, columns: [a, b, c]}}
  sidecar_files: [{sidecar}]
  schema:
    - {{name: a}}
    - {{name: b, type: int}}
    - {{name: x, type: {type}, expression: {expression}}}
  key: [a]
  rules:
    - {{rule: regex, column: a, pattern: {pattern}, reason: bad_a}}
  expectations:
    - {{expect: ExpectColumnValuesToBeInSet, column: a, value_set: {value_set}}}
"""
HARMLESS = {"name": "rows.csv", "sidecar": "README.txt", "type": "bool", "expression": "a.notna()",
            "pattern": "'[a-z]+'", "value_set": "[x, y]"}


def sources_file(**changes: str) -> str:
    return SOURCE.format(**{**HARMLESS, **changes})


def _alias_bomb() -> str:
    levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    # the expectation's value set refers to the last level: 10**10 values once expanded
    return "anchors:\n" + "".join(f"  {line}\n" for line in levels) + sources_file(value_set="*l9")


def _deep_expression() -> str:
    return "'" + "-(" * 60 + "b" + ")" * 60 + "'"


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    expected: str  # a fragment of the error message


CORPUS = [
    # expressions that ran code under pandas eval
    Case("at_name_shell", sources_file(expression="\"@pd.io.common.os.system('id')\""), "'@pd' is not allowed"),
    Case("at_name_key_file", sources_file(expression="\"@pd.io.common.Path('/root/pseudonym.key').read_text()\""),
         "'@pd' is not allowed"),
    Case("attribute_chain_to_os", sources_file(expression="\"pd.io.common.os.system('id')\""),
         "'pd.io.common.os.system' is not allowed"),
    Case("environment", sources_file(expression="\"a.str.os.environ.get('HOME')\""), "is not allowed"),
    Case("dunder_attribute", sources_file(expression="a.__class__.__mro__"), "a dunder attribute"),
    Case("dunder_name", sources_file(expression="\"__import__('os').system('id')\""),
         "'__import__' is not allowed"),
    Case("format_string_escape", sources_file(expression="\"'{0.__class__}'.format(a)\""), "attribute .format"),
    Case("eval_call", sources_file(expression="\"eval('1')\""), "'eval' is not allowed (not a function"),
    Case("open_call", sources_file(expression="\"open('/etc/passwd').read()\""), "is not allowed"),
    Case("getattr_call", sources_file(expression="\"getattr(a, 'upper')\""), "'getattr' is not allowed"),
    Case("lambda", sources_file(expression="'(lambda: 1)()'"), "'lambda: 1' is not allowed (a lambda"),
    Case("comprehension", sources_file(expression="'[c for c in a]'"), "a comprehension"),
    Case("generator", sources_file(expression="'any(c for c in a)'"), "'any' is not allowed"),
    Case("walrus", sources_file(expression="'(y := 1)'"), "an assignment"),
    Case("subscript", sources_file(expression="'a[0]'"), "indexing"),
    Case("f_string", sources_file(expression="'f\"{a}\"'"), "an f-string"),
    Case("power", sources_file(expression="'b ** 99999999'"), "the operator **"),
    Case("text_repetition", sources_file(expression="\"'a' * 1000000000\""), "is number, not text"),
    Case("huge_expression", sources_file(expression="'" + " + ".join(["b"] * 600) + "'"),
         "longer than 1000 characters"),
    Case("deep_expression", sources_file(expression=_deep_expression()), "nested more than 50 levels"),
    Case("later_column", sources_file(expression="'x'"), "'x' is not a clean column declared before this one"),
    Case("unknown_name", sources_file(expression="'os'"), "'os' is not a clean column"),
    Case("wrong_kind_for_column", sources_file(expression="'lower(a)'"), "is bool but its expression"),
    # regular expressions that backtrack
    Case("catastrophic_regex", sources_file(pattern="'(?=a)(a+)+b'"),
         "pattern '(?=a)(a+)+b' is not a regular expression the linear-time engine (RE2) accepts"),
    Case("backreference", sources_file(pattern="'(a)\\1'"), "pattern '(a)\\\\1' is not a regular expression"),
    Case("lookbehind_in_expectation", sources_file().replace(
        "value_set: [x, y]", "value_set: [x], regex: '(?<=a)b'"), "pattern '(?<=a)b'"),
    Case("nested_repetition_in_expectation", sources_file().replace(
        "value_set: [x, y]", "value_set: [x], regex: '^(a+)+b$'"), "repeats a repetition"),
    Case("repeated_alternation_in_expectation", sources_file().replace(
        "value_set: [x, y]", "value_set: [x], regex: '^(a|aa)*$'"), "repeats an alternation"),
    # a cleaner hook is code: only from the packages the deployment allows (SHOPFLOW_CLEANER_MODULES)
    Case("cleaner_outside_allowed_packages", "shop:\n  description: d\n  owner: o\n  cleaner: os\n"
         "  files:\n    - {name: rows.csv, columns: [a]}\n", "cleaner 'os' is outside the packages"),
    Case("cleaner_not_a_module_path", "shop:\n  description: d\n  owner: o\n  cleaner: 'shopflow.sources/../x'\n"
         "  files:\n    - {name: rows.csv, columns: [a]}\n", "is not a module path"),
    Case("cleaner_dunder", "shop:\n  description: d\n  owner: o\n  cleaner: shopflow.sources.__init__\n"
         "  files:\n    - {name: rows.csv, columns: [a]}\n", "is not a module path"),
    # YAML that is not plain data, or too much of it
    Case("alias_bomb", _alias_bomb(), "expands to more than 100,000 values"),
    Case("recursive_alias", sources_file(value_set="&loop [*loop]"), "refers to a node that contains it"),
    Case("python_tag", "shop: !!python/object/apply:os.system ['id']\n", "not valid YAML"),
    Case("oversized_file", sources_file() + "# padding\n" * 120_000, "larger than SHOPFLOW_SOURCES_MAX_BYTES"),
    # landing file names that leave the partition folder
    Case("parent_traversal", sources_file(name="'../../../../../x.csv'"), "holds a path separator"),
    Case("absolute_name", sources_file(name="/tmp/x.csv"), "holds a path separator"),
    Case("backslash", sources_file(name="'..\\\\x.csv'"), "holds a path separator"),
    Case("dot_dot", sources_file(name="'..'"), "names a folder"),
    Case("empty_name", sources_file(name="''"), "is empty"),
    Case("nul_in_name", sources_file(name='"x\\0.csv"'), "holds a control character"),
    Case("sidecar_traversal", sources_file(sidecar="'../notes.txt'"), "holds a path separator"),
]


def test_the_harmless_file_loads(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(sources_file())
    assert load_sources(path)["shop"].schema_[-1].expression == "a.notna()"


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_a_hostile_sources_file_is_refused_on_load_naming_the_problem(tmp_path, case):
    path = tmp_path / "sources.yaml"
    path.write_text(case.text)
    with pytest.raises(SourcesFileError) as error:
        load_sources(path)
    assert case.expected in str(error.value), str(error.value)
    assert str(path) in str(error.value)


def test_the_alias_bomb_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(_alias_bomb())
    tracemalloc.start()
    try:
        with pytest.raises(SourcesFileError, match="alias bomb"):
            load_sources(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 10**10 values expanded would be gigabytes; refused, it is a few kilobytes of parser state (memory, not time, is
    # asserted: it does not depend on the machine's speed).
    assert peak < 5_000_000, peak


def test_a_sources_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "sources.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SourcesFileError, match="not a regular file"):
        load_sources(fifo)
    with pytest.raises(SourcesFileError, match="/dev/zero: not a regular file"):
        load_sources("/dev/zero")


@pytest.mark.parametrize("location", ["http://example.invalid/sources.yaml", "https://example.invalid/s.yaml",
                                      "ftp://example.invalid/s.yaml", "simplecache::https://example.invalid/s.yaml"])
def test_a_web_address_is_refused_as_the_setting_and_as_a_file(location):
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"SHOPFLOW_SOURCES": location})
    assert str(error.value).startswith("SHOPFLOW_SOURCES: ") and "never a web address" in str(error.value)
    with pytest.raises(SourcesFileError, match="never a web address"):
        load_sources(location)


def test_local_paths_and_storage_urls_are_accepted(tmp_path):
    for location in (str(tmp_path / "s.yaml"), "s3://bucket/sources.yaml", f"file://{tmp_path}/s.yaml"):
        assert Settings.from_env({"SHOPFLOW_SOURCES": location}).sources_file == location
    (tmp_path / "s.yaml").write_text(sources_file())
    assert list(load_sources(f"file://{tmp_path}/s.yaml")) == ["shop"]


def test_the_size_limit_is_a_setting(tmp_path, monkeypatch):
    path = tmp_path / "sources.yaml"
    path.write_text(sources_file() + "# padding\n" * 200)
    monkeypatch.setenv("SHOPFLOW_SOURCES_MAX_BYTES", "1024")
    with pytest.raises(SourcesFileError, match=r"larger than SHOPFLOW_SOURCES_MAX_BYTES \(1,024 bytes\)"):
        load_sources(path)


# ---- sources check ---------------------------------------------------------------------------------------------------
def _check(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SHOPFLOW_HOME": str(tmp_path / "home"), **env}
    return subprocess.run([sys.executable, "-m", "shopflow", "sources", "check", *args], env=environment,
                          capture_output=True, text=True, timeout=120)


def test_sources_check_names_the_forbidden_expression_and_exits_non_zero(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(sources_file(expression="\"@pd.io.common.os.system('touch pwned')\""))
    checked = _check(tmp_path, "--file", str(path))
    assert checked.returncode == 1
    assert "derived column 'x': expression" in checked.stderr and "'@pd' is not allowed" in checked.stderr
    assert "Traceback" not in checked.stderr
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


def test_sources_check_refuses_a_web_address_in_the_setting(tmp_path):
    checked = _check(tmp_path, SHOPFLOW_SOURCES="http://example.invalid/sources.yaml")
    assert checked.returncode == 2 and "SHOPFLOW_SOURCES: 'http://' is not allowed" in checked.stderr
    assert "Traceback" not in checked.stderr
