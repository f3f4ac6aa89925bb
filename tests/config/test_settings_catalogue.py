"""The settings catalogue (shopflow.config.options): every SHOPFLOW_* variable declared once, read through it, documented
from it (docs/settings.md, .env.example), and a bad value a clear startup error that names the variable."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given as for_all
from hypothesis import strategies as st
from shopflow.common.errors import ConfigurationError
from shopflow.config import options
from shopflow.config.options import OPTIONS, check_environment, parse_bool, value
from shopflow.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"(?<![A-Za-z0-9_])SHOPFLOW_[A-Z0-9_]*")
# Where settings are read, set or documented (tests/ is left out: it names made-up variables on purpose).
SCANNED = ("include", "plugins", "dags", "scripts", "bench", "docker", "docs", ".ci", "docker-compose.yaml", "Dockerfile",
           "Makefile", "README.md", ".env.example", "pyproject.toml")
HEAVY = ("pandas", "numpy", "pyarrow", "pydantic", "fsspec", "upath", "sqlalchemy", "yaml", "torch", "transformers",
         "airflow", "great_expectations", "jinja2")


def scanned_files(roots=SCANNED, base: Path = ROOT):
    for root in roots:
        path = base / root
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file in files:
            if "__pycache__" in file.parts or file.suffix in (".pyc", ".parquet", ".png", ".gz", ".zip"):
                continue
            try:
                yield file, file.read_text()
            except (UnicodeDecodeError, OSError):
                continue


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SHOPFLOW_* variable, plus `extra`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")} | extra


# ---- the generated documentation --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(options.GENERATED))
def test_the_generated_regions_hold_exactly_the_generated_text(name):
    begin, end, _ = options.GENERATED[name]
    found = options.generated_region((ROOT / name).read_text(), begin, end)
    assert found == options.region_body(name), f"{name} is out of date: run `python -m shopflow.config --update`"


def test_the_cli_prints_the_table_and_the_block(capsys):
    from shopflow.config.__main__ import main

    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == options.markdown()
    assert main(["--env-example"]) == 0
    assert capsys.readouterr().out == options.env_example()


def test_every_option_is_in_the_table_and_in_the_env_example_once():
    table, block = options.markdown(), options.env_example()
    for name in OPTIONS:
        assert table.count(f"| `{name}` |") == 1, name
        assignments = re.findall(rf"^(?:# )?{name}=", block, re.MULTILINE)
        assert len(assignments) == 1, name
    env_example = (ROOT / ".env.example").read_text()
    assigned = re.findall(r"^#? ?(SHOPFLOW_[A-Z0-9_]+)=", env_example, re.MULTILINE)
    assert sorted(assigned) == sorted(OPTIONS), "a SHOPFLOW_* assignment outside the generated block, or one missing"


# ---- every name in the code is declared -------------------------------------------------------------------------
def test_every_shopflow_name_in_the_code_and_deployment_files_is_declared():
    undeclared = []
    for file, text in scanned_files():
        for number, line in enumerate(text.splitlines(), 1):
            for name in NAME.findall(line):
                known = any(o.startswith(name) for o in OPTIONS) if name.endswith("_") else name in OPTIONS
                if not known:
                    undeclared.append(f"{file.relative_to(ROOT)}:{number}: {name}")
    assert not undeclared, "not declared in shopflow.config.options:\n" + "\n".join(undeclared)


def test_the_scan_finds_names_and_families(tmp_path):
    (tmp_path / "a.py").write_text('x = env["SHOPFLOW_HOME"]; y = f"SHOPFLOW_TRAIN_{name}"; AIRFLOW_CONN_SHOPFLOW_STORE\n')
    found = [NAME.findall(text) for _, text in scanned_files(["a.py"], tmp_path)]
    assert found == [["SHOPFLOW_HOME", "SHOPFLOW_TRAIN_"]]


def test_every_option_is_read_or_set_somewhere():
    generated_from_the_catalogue = {ROOT / "include/shopflow/config/options.py", ROOT / "docs/settings.md",
                                    ROOT / ".env.example"}
    text = "\n".join(content for file, content in scanned_files((*SCANNED, "tests"))
                     if file not in generated_from_the_catalogue and file != Path(__file__).resolve())
    unused = [name for name, opt in OPTIONS.items() if opt.sets is None and name not in text]
    assert not unused, f"declared but never read: {unused}"


def test_docker_compose_interpolates_exactly_the_compose_options_with_their_defaults():
    compose = "\n".join(line for line in (ROOT / "docker-compose.yaml").read_text().splitlines()
                        if not line.lstrip().startswith("#"))
    references = re.findall(r"\$\{(SHOPFLOW_[A-Z0-9_]+)(?::-([^}]*))?", compose)
    assert {name for name, _ in references} == {name for name, opt in OPTIONS.items() if opt.compose}
    for name, fallback in references:
        if fallback:
            assert options.env_text(options.default(name)) == fallback, name


# ---- one place for every default --------------------------------------------------------------------------------
def _owners():
    from shopflow.governance.duplicates import DuplicatePolicy
    from shopflow.model.registry import TrainingPolicy
    from shopflow.model.training.config import TrainingConfig
    from shopflow.observability.alerts import AlertSettings
    from shopflow.report.context import ReportContext

    # class -> fields that are not settings (or not SHOPFLOW_TRAIN_<FIELD>): None means "check only the declared ones"
    return {TrainingConfig: {"base_model"}, TrainingPolicy: set(), DuplicatePolicy: {"block_bytes"},
            AlertSettings: set(), ReportContext: None, Settings: None}


def test_dataclass_defaults_are_the_catalogues():
    for cls, not_settings in _owners().items():
        declared = options.fields_of(cls.__name__)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert declared and set(declared) <= set(fields), (cls, set(declared) - set(fields))
        if not_settings is not None:
            assert set(fields) - set(declared) == not_settings, cls
        for name, opt in declared.items():
            assert fields[name].default == opt.default, (cls.__name__, name)
    train = options.fields_of("TrainingConfig")
    assert all(opt.name == f"SHOPFLOW_TRAIN_{name.upper()}" for name, opt in train.items())
    duplicates = options.fields_of("DuplicatePolicy")
    assert all(opt.name == f"SHOPFLOW_DUPLICATES_{name.upper()}" for name, opt in duplicates.items())


def test_the_readers_return_the_documented_defaults(tmp_path, monkeypatch):
    from shopflow.governance.duplicates import DuplicatePolicy
    from shopflow.model.registry import TrainingPolicy
    from shopflow.model.training.config import TrainingConfig
    from shopflow.observability.alerts import AlertSettings

    assert TrainingPolicy.from_env({}) == TrainingPolicy(True, 500, 30, 0.5, None, 0.97)
    assert DuplicatePolicy.from_env({}) == DuplicatePolicy(0.85, 10, 1.5, 0.8, 200)
    assert AlertSettings.from_env({}) == AlertSettings((), 50)
    config = TrainingConfig.from_env({"SHOPFLOW_BASE_MODEL": "/models/base"})
    assert (config.base_model, config.cpu_time_budget_s, config.cpu_max_steps, config.device) == \
        ("/models/base", 60.0, 1000, "auto")
    home = tmp_path.resolve() / "home"
    settings = Settings.from_env({"SHOPFLOW_HOME": str(home)})
    assert (settings.lake_dir, settings.store_url, settings.pseudonym_key_file) == \
        (home / "lake", f"sqlite:///{home / 'shopflow.db'}", home / "pseudonym.key")
    assert (settings.db_connect_timeout_s, settings.db_statement_timeout_s, settings.allow_rekey) == (10.0, 30.0, False)
    from datetime import date

    from shopflow.report.context import ReportContext

    monkeypatch.setenv("SHOPFLOW_REPORT_WINDOW_DAYS", "7")
    monkeypatch.delenv("SHOPFLOW_REPORT_LOOKBACK_DAYS", raising=False)
    context = ReportContext.from_env(settings, None, date(2010, 12, 1))
    assert (context.window_days, context.lookback_days) == (7, 365)
    # An empty value is the default, as it was for most settings already.
    assert Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_LAKE_DIR": "", "SHOPFLOW_ALLOW_REKEY": ""}) == settings


def test_redaction_finds_the_key_file_where_the_catalogue_says_it_is(tmp_path, monkeypatch):
    """shopflow.common.redaction sits below the config layer and reads SHOPFLOW_HOME / SHOPFLOW_PSEUDONYM_KEY_FILE
    itself: its fallbacks must be the catalogue's."""
    from shopflow.common.redaction import known_secrets

    monkeypatch.chdir(tmp_path)
    secret = "a-key-file-secret-0123456789abcdef"
    for env in ({}, {"SHOPFLOW_HOME": str(tmp_path / "elsewhere")}):
        key_file = Path(value("SHOPFLOW_PSEUDONYM_KEY_FILE", env))
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secret + "\n")
        assert secret in known_secrets(env), env
        key_file.unlink()


def test_every_declaration_is_complete_and_its_default_reads_back():
    assert len(OPTIONS) == len(options._CATALOGUE)
    for name, opt in OPTIONS.items():
        assert name.startswith("SHOPFLOW_") and opt.kind in options.KINDS and opt.group in options.GROUPS, name
        assert opt.doc and "\n" not in opt.doc and opt.doc.endswith("."), name
        if opt.default is None or opt.derive:
            assert opt.default_text, f"{name}: say what unset means"
        elif opt.default != ():
            assert options.parse(opt, options.env_text(opt.default)) == opt.default, name
        if opt.compose and opt.kind != options.SECRET:
            assert opt.default is not None, name


def test_the_catalogue_imports_only_the_standard_library():
    code = "import sys, shopflow.config.options; print('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


# ---- bad values -------------------------------------------------------------------------------------------------
BAD = [("SHOPFLOW_TRAIN_ENABLED", "maybe", "is not a boolean"),
       ("SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S", "-5", "must be at least 0 seconds"),
       ("SHOPFLOW_DB_STATEMENT_TIMEOUT_S", "abc", "is not a number of seconds"),
       ("SHOPFLOW_ALERT_REVIEW_BACKLOG", "-1", "must be at least 0"),
       ("SHOPFLOW_TRAIN_DEVICE", "gpu", "is not one of auto, cpu, cuda"),
       ("SHOPFLOW_TRAIN_CPU_MAX_STEPS", "3.5", "is not a whole number"),
       ("SHOPFLOW_DUPLICATES_THRESHOLD", "1.5", "must be at least 0 and at most 1"),
       ("SHOPFLOW_REPAIR_THRESHOLD", "nan", "is not a finite number"),
       ("SHOPFLOW_ALERT_EMAILS", "ops@shop.example, nobody", "'nobody' is not an e-mail address"),
       ("SHOPFLOW_STORE_URL", "shopflow.db", "is not a URL"),
       ("SHOPFLOW_DEMO_WINDOWS", "2010-12-05:2010-12-01", "is not a day range"),
       ("SHOPFLOW_PLAN_DAY", "yes please", "is not a boolean"),
       ("SHOPFLOW_REVIEW_TIMEOUT_MINUTES", "-1", "must be at least 0 minutes")]


@pytest.mark.parametrize("name,text,why", BAD)
def test_a_bad_value_is_an_error_that_names_the_variable(name, text, why):
    with pytest.raises(ConfigurationError, match=re.escape(name) + ".*" + re.escape(why)):
        value(name, {name: text})
    with pytest.raises(ConfigurationError, match=re.escape(f"{name}: ")):
        check_environment({name: text})
    with pytest.raises(ConfigurationError, match=re.escape(name)):
        Settings.from_env({name: text})


def test_the_readers_refuse_bad_values_too():
    from shopflow.model.registry import TrainingPolicy
    from shopflow.model.training.config import TrainingConfig
    from shopflow.observability.alerts import AlertSettings

    with pytest.raises(ConfigurationError, match="SHOPFLOW_TRAIN_ENABLED: 'maybe' is not a boolean"):
        TrainingPolicy.from_env({"SHOPFLOW_TRAIN_ENABLED": "maybe"})
    with pytest.raises(ConfigurationError, match="SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S: '-5' must be at least 0"):
        TrainingConfig.from_env({"SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S": "-5"})
    with pytest.raises(ConfigurationError, match="SHOPFLOW_ALERT_REVIEW_BACKLOG: '-1' must be at least 0"):
        AlertSettings.from_env({"SHOPFLOW_ALERT_REVIEW_BACKLOG": "-1"})
    with pytest.raises(ConfigurationError, match="SHOPFLOW_TRAIN_LINEAR_CANDIDATES: 'sometimes'"):
        TrainingConfig.from_env({"SHOPFLOW_TRAIN_LINEAR_CANDIDATES": "sometimes"})


def test_every_bad_value_is_named_in_one_error_and_secrets_are_not_shown():
    env = {"SHOPFLOW_TRAIN_ENABLED": "maybe", "SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S": "-5",
           "SHOPFLOW_STORE_URL": "postgresql://shopflow:hunter2-secret@db/shopflow", "SHOPFLOW_PSEUDONYM_KEY": "x" * 40,
           "SHOPFLOW_DB_STATEMENT_TIMEOUT_S": "abc", "SHOPFLOW_ALERT_REVIEW_BACKLOG": "-1"}
    with pytest.raises(ConfigurationError) as err:
        check_environment(env)
    message = str(err.value)
    assert message.startswith("4 settings are not valid: ")
    for name in ("SHOPFLOW_TRAIN_ENABLED", "SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S", "SHOPFLOW_DB_STATEMENT_TIMEOUT_S",
                 "SHOPFLOW_ALERT_REVIEW_BACKLOG"):
        assert name in message
    assert "hunter2" not in message and "x" * 40 not in message
    with pytest.raises(ConfigurationError, match="SHOPFLOW_STORE_URL: 'postgresql:\\*\\*\\*@db/shopflow' is not a URL"):
        value("SHOPFLOW_STORE_URL", {"SHOPFLOW_STORE_URL": "postgresql:/shopflow:hunter2@db/shopflow"})


@pytest.mark.parametrize("name,text", [(name, text) for name, text, _ in BAD[:4]])
def test_the_cli_fails_at_startup_with_one_line_that_names_the_variable(tmp_path, name, text):
    env = clean_env(SHOPFLOW_HOME=str(tmp_path / "home"), **{name: text})
    done = subprocess.run([sys.executable, "-m", "shopflow", "status"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"shopflow: {name}: {text!r} ") and done.stdout == ""
    assert not (tmp_path / "home").exists()  # it failed before touching anything


# ---- unknown names ----------------------------------------------------------------------------------------------
def test_an_unknown_name_is_a_warning_with_a_suggestion(monkeypatch, caplog):
    monkeypatch.setattr(options, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="shopflow.config.options"):
        found = check_environment({"SHOPFLOW_TRAIN_EPOCSH": "3", "SHOPFLOW_TRAIN_GPU_EPOCHS": "2"})
        check_environment({"SHOPFLOW_TRAIN_EPOCSH": "3"})  # warned once per process
        check_environment({"SHOPFLOW_NOTHING_LIKE_ANY_SETTING": "1"})
    assert found == {"SHOPFLOW_TRAIN_GPU_EPOCHS": 2}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("SHOPFLOW_TRAIN_EPOCSH is not a shopflow setting and is ignored; "
                                  "did you mean SHOPFLOW_TRAIN_GPU_EPOCHS?")
    assert "did you mean" not in messages[1] and "docs/settings.md" in messages[1]
    assert options.suggestion("SHOPFLOW_STORE_ULR") == "SHOPFLOW_STORE_URL"
    assert options.suggestion("SHOPFLOW_TRAIN_BASE_MODEL") == "SHOPFLOW_BASE_MODEL"
    assert options.suggestion("SHOPFLOW_BLESS_TOLERANCE") is None


def test_check_from_the_command_line(tmp_path):
    env = clean_env(SHOPFLOW_TRAIN_EPOCSH="3", SHOPFLOW_PLAN_DAY="off")
    done = subprocess.run([sys.executable, "-m", "shopflow.config", "--check"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "1 SHOPFLOW_* settings set, all valid" in done.stdout
    assert "did you mean SHOPFLOW_TRAIN_GPU_EPOCHS?" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "shopflow.config", "--check"], env={**env, "SHOPFLOW_PLAN_DAY": "?"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "SHOPFLOW_PLAN_DAY: '?' is not a boolean" in bad.stderr


# ---- the one boolean parser -------------------------------------------------------------------------------------
SPELLINGS = {**{word: True for word in options.TRUE_WORDS}, **{word: False for word in options.FALSE_WORDS}}
SPACE = st.text(alphabet=" \t\n\r\x0b\x0c", max_size=3)


@st.composite
def spelled(draw):
    word = draw(st.sampled_from(sorted(SPELLINGS)))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in word)
    return draw(SPACE) + cased + draw(SPACE), SPELLINGS[word]


def test_the_documented_spellings():
    assert set(SPELLINGS) == {"true", "false", "1", "0", "yes", "no", "on", "off"}


@for_all(spelled())
def test_parse_bool_accepts_every_documented_spelling_in_any_case_and_spacing(case):
    text, expected = case
    assert parse_bool(text, "SHOPFLOW_X") is expected


@for_all(st.one_of(st.text(), st.sampled_from(["", " ", "t", "f", "y", "n", "2", "-1", "truee", "tru", "of", "nope",
                                                "enabled", "1.0", "yes please", "o n", "\u00a0"])))
def test_parse_bool_refuses_everything_else(text):
    if text.strip().lower() in SPELLINGS:
        assert parse_bool(text, "SHOPFLOW_X") is SPELLINGS[text.strip().lower()]
        return
    with pytest.raises(ConfigurationError) as err:
        parse_bool(text, "SHOPFLOW_X")
    assert str(err.value).startswith(f"SHOPFLOW_X: {text!r} is not a boolean (true or false")


# ---- DAG-parse-time and task-time readers in plugins/ -----------------------------------------------------------
def test_plan_day_and_the_review_timeout_read_through_the_catalogue(monkeypatch):
    from datetime import timedelta

    from shopflow_airflow.planning import plan_day_enabled
    from shopflow_airflow.review import ReviewGateOperator

    monkeypatch.delenv("SHOPFLOW_PLAN_DAY", raising=False)
    assert plan_day_enabled() is True
    monkeypatch.setenv("SHOPFLOW_PLAN_DAY", " OFF ")
    assert plan_day_enabled() is False
    monkeypatch.setenv("SHOPFLOW_PLAN_DAY", "maybe")
    with pytest.raises(ConfigurationError, match="SHOPFLOW_PLAN_DAY: 'maybe' is not a boolean"):
        plan_day_enabled()

    gate = ReviewGateOperator(task_id="review")
    monkeypatch.delenv("SHOPFLOW_REVIEW_TIMEOUT_MINUTES", raising=False)
    assert gate._timeout() == timedelta(hours=12)
    monkeypatch.setenv("SHOPFLOW_REVIEW_TIMEOUT_MINUTES", "")
    assert gate._timeout() == timedelta(hours=12)
    monkeypatch.setenv("SHOPFLOW_REVIEW_TIMEOUT_MINUTES", "1.5")
    assert gate._timeout() == timedelta(minutes=1.5)
    monkeypatch.setenv("SHOPFLOW_REVIEW_TIMEOUT_MINUTES", "soon")
    with pytest.raises(ConfigurationError, match="SHOPFLOW_REVIEW_TIMEOUT_MINUTES: 'soon' is not a number of minutes"):
        gate._timeout()
