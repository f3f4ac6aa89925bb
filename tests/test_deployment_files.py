"""Parse-based checks of the container deployment: Dockerfile, docker-compose.yaml, .env.example, Postgres init.

There is no Docker engine here, so nothing is built or started: the files are read as YAML/text and checked
against what the deployment needs (services, health checks, start order, volumes, secrets only from the
environment, a complete .env.example, a non-root image that contains the project).
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
POSTGRES_INIT = ROOT / "docker" / "postgres-init" / "10-shopflow-db.sql"

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
LONG_RUNNING = {"postgres"} | (AIRFLOW_SERVICES - {"airflow-init"})
SHOPFLOW_HOME = "/opt/airflow/shopflow-data"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$${…}` is an escaped literal `$`.
VAR_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>[^:/@\s]+):(?P<password>[^@\s]*)@", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)  # SafeLoader resolves the `<<: *anchor` merge keys


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def strings(node) -> list[str]:
    """Every string value in a parsed YAML document (compose interpolates values, not comments or keys)."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def references(document) -> dict[str, bool]:
    """Variable name -> True if some reference to it has no default (compose needs it from the environment)."""
    found: dict[str, bool] = {}
    for name, operator, _ in VAR_REFERENCE.findall("\n".join(strings(document))):
        required = operator not in ("-", ":-")
        found[name] = found.get(name, False) or required
    return found


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


# --- docker-compose.yaml -------------------------------------------------------------------------------------


def test_required_services_exist(services):
    assert {"postgres"} | AIRFLOW_SERVICES <= set(services)
    assert not {"redis", "airflow-worker", "flower"} & set(services), "this version uses the LocalExecutor only"


def test_postgres_16_with_the_shopflow_database_init_script(services):
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    mounts = [v for v in postgres["volumes"] if isinstance(v, str)]
    assert any(v.split(":")[:2] == ["./docker/postgres-init", "/docker-entrypoint-initdb.d"] for v in mounts)
    sql = re.sub(r"--[^\n]*", "", POSTGRES_INIT.read_text())  # without comments
    assert re.search(r"CREATE DATABASE shopflow\b", sql)
    assert "\\getenv shopflow_db_password SHOPFLOW_DB_PASSWORD" in sql
    assert re.search(r"CREATE ROLE :\"shopflow_db_user\" LOGIN PASSWORD :'shopflow_db_password';", sql)
    assert not re.search(r"PASSWORD\s+'", sql), "the shopflow role's password must come from the environment"
    env = environment(postgres)
    assert {"POSTGRES_PASSWORD", "SHOPFLOW_DB_USER", "SHOPFLOW_DB_PASSWORD"} <= set(env)


def test_airflow_services_build_the_airflow_target_and_share_one_image(services):
    images = set()
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"] == {"context": ".", "target": "airflow"}, name
        images.add(service["image"])
    assert len(images) == 1


def test_airflow_settings(services):
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
            assert VAR_REFERENCE.fullmatch(env[key]), (name, key)
        assert env["SHOPFLOW_HOME"] == SHOPFLOW_HOME, name
    # every component signs/validates JWTs with the same secret
    jwt = {environment(services[name])["AIRFLOW__API_AUTH__JWT_SECRET"] for name in AIRFLOW_SERVICES}
    assert len(jwt) == 1


def test_store_connection_and_url_point_at_the_shopflow_database(services):
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        conn, url = env["AIRFLOW_CONN_SHOPFLOW_STORE"], env["SHOPFLOW_STORE_URL"]
        assert conn.startswith("postgresql://") and conn.endswith("@postgres:5432/shopflow"), name
        # what plugins/shopflow_airflow/connections.py makes of the connection is the same URL
        assert url == "postgresql+psycopg2://" + conn[len("postgresql://"):], name


def test_init_runs_both_migrations_and_writes_the_admin_password(services):
    script = "\n".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in script
    assert "python -m shopflow db upgrade" in script
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    env = environment(services["airflow-init"])
    assert VAR_REFERENCE.fullmatch(env["AIRFLOW_ADMIN_PASSWORD"])
    # the API server reads the password file that airflow-init writes
    auth_dir = str(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).parent)
    for name in ("airflow-init", "airflow-apiserver"):
        assert any(isinstance(v, str) and v.endswith(":" + auth_dir) for v in services[name]["volumes"]), name


def test_healthchecks_on_long_running_services(services):
    for name in LONG_RUNNING:
        healthcheck = services[name].get("healthcheck")
        assert healthcheck and healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), name
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "airflow-init" not in LONG_RUNNING and services["airflow-init"].get("restart") == "no"


def test_start_order_uses_health_and_completion_conditions(services):
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a bare list"
        for dependency, spec in depends_on.items():
            assert dependency in services, (name, dependency)
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dependency)
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), (name, dependency)
    assert services["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"] == {"condition": "service_healthy"}, name
        assert depends_on["airflow-init"] == {"condition": "service_completed_successfully"}, name
    # tasks (scheduler, LocalExecutor) and triggers need the execution API up
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}, name


def test_named_shopflow_volume_and_read_only_sample_data(compose, services):
    assert "shopflow-data" in compose["volumes"]
    for name in AIRFLOW_SERVICES:
        volumes = services[name]["volumes"]
        assert f"shopflow-data:{SHOPFLOW_HOME}" in volumes, name
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        env = environment(services[name])
        binds = [v for v in services[name]["volumes"] if isinstance(v, dict) and v.get("type") == "bind"]
        assert binds == [{"type": "bind", "source": "${SHOPFLOW_SOURCE_DATA_HOST:-../shared/data}",
                          "target": env["SHOPFLOW_SOURCE_DATA"], "read_only": True}], name


def test_no_literal_secrets(compose, services):
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                match = VAR_REFERENCE.fullmatch(value)
                assert match, f"{name}: {key} is not a ${{VAR}} reference"
                assert match.group(2) not in ("-", ":-"), f"{name}: {key} has a default, i.e. a literal secret"
            # user:password@ inside a URL: the password must be exactly one reference without a default
            tokens: list[re.Match] = []

            def token(match: re.Match) -> str:
                tokens.append(match)
                return f"__ref{len(tokens) - 1}__"

            for credentials in URL_CREDENTIALS.finditer(VAR_REFERENCE.sub(token, value)):
                ref = re.fullmatch(r"__ref(\d+)__", credentials.group("password"))
                assert ref, f"{name}: {key} embeds a literal password"
                assert tokens[int(ref.group(1))].group(2) not in ("-", ":-"), f"{name}: {key}: password has a default"
    for name, required in references(compose).items():
        if SECRET_NAME.search(name):
            assert required, f"${{{name}}} must not have a default value"


def test_env_example_defines_every_variable_compose_needs(compose):
    defined = env_example()
    referenced = references(compose)
    missing = sorted(name for name, required in referenced.items() if required and not defined.get(name))
    assert not missing, f".env.example lacks {missing}"
    undocumented = sorted(set(referenced) - set(defined))
    assert not undocumented, f".env.example does not mention {undocumented}"


def test_env_example_holds_only_placeholders_and_env_is_ignored():
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert value == "change-me", f".env.example: {name} must be the placeholder change-me"
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
        example_ignored = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT).returncode == 0
    except FileNotFoundError:  # no git: read .gitignore
        lines = (ROOT / ".gitignore").read_text().split()
        ignored, example_ignored = ".env" in lines, False
    assert ignored, ".env must be git-ignored"
    assert not example_ignored, ".env.example must be committed"


# --- Dockerfile ----------------------------------------------------------------------------------------------


def test_dockerfile_airflow_target_on_pinned_base_image(dockerfile):
    stages = [re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE) for kw, args in dockerfile if kw == "FROM"]
    assert stages and all(stages)
    targets = {m.group(2): m.group(1) for m in stages if m.group(2)}
    assert "airflow" in targets
    assert targets["airflow"] == "apache/airflow:3.3.2-python3.11"
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", requirements, re.MULTILINE), "image and requirements disagree"


def test_dockerfile_runs_as_non_root_user_last(dockerfile):
    users = [args for kw, args in dockerfile if kw == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert [kw for kw, _ in dockerfile][-1] == "USER", "USER must be the last instruction"


def test_dockerfile_installs_requirements_and_project_and_copies_code(dockerfile):
    copies = [args for kw, args in dockerfile if kw in ("COPY", "ADD")]
    sources = {word.rstrip("/") for args in copies for word in args.split()[:-1] if not word.startswith("--")}
    assert {"requirements.txt", "pyproject.toml", "include", "dags", "plugins"} <= sources
    destinations = {args.split()[-1].rstrip("/") for args in copies}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins"} <= destinations
    runs = " ".join(args for kw, args in dockerfile if kw == "RUN")
    assert re.search(r"pip install --no-cache-dir -r \S*requirements\.txt", runs)
    assert re.search(r"pip install --no-cache-dir .*/opt/airflow/shopflow-src", runs)
    env = " ".join(args for kw, args in dockerfile if kw == "ENV")
    assert f"SHOPFLOW_HOME={SHOPFLOW_HOME}" in env


def test_dockerignore_keeps_secrets_and_the_venv_out_of_the_build_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "*.key", ".git"} <= set(ignored)


def test_package_data_ships_every_non_python_file_of_the_library():
    """`pip install .` in the image must carry sources.yaml & co., or the DAG fails to import there."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["shopflow"]
    package = ROOT / "include" / "shopflow"
    data_files = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    missing = [f for f in data_files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
