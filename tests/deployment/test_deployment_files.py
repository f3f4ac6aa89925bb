"""Parse-based checks of the container deployment: Dockerfile, docker-compose.yaml, .env.example, Postgres init.

There is no Docker engine here, so nothing is built or started: the files are read as YAML/text and checked
against what the deployment needs (services, images and build targets, the queue of each Celery worker, the GPU
reservation on the gpu worker only, health checks, start order, volumes, secrets only from the environment, a
complete .env.example, two pinned non-root images that contain the project). tests/deployment/test_distributed_celery.py runs
the same distributed mode (PostgreSQL, Redis, CeleryExecutor, a worker per queue) as local processes.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
POSTGRES_INIT = ROOT / "docker" / "postgres-init" / "10-shopflow-db.sql"

# Celery worker service -> the one queue it serves.
WORKERS = {"airflow-worker": "default", "airflow-worker-gpu": "gpu"}
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"} | set(WORKERS)
LONG_RUNNING = {"postgres", "redis"} | (AIRFLOW_SERVICES - {"airflow-init"})
SHOPFLOW_HOME = "/opt/airflow/shopflow-data"
GPU_RESERVATION = {"resources": {"reservations": {"devices": [
    {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$${…}` is an escaped literal `$`.
VAR_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|_AUTH$", re.IGNORECASE)
# user:password@ in a URL; the user may be empty (redis://:password@host).
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.IGNORECASE)


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


@pytest.fixture(scope="module")
def stages(dockerfile) -> dict[str, dict]:
    """Build stage name -> {"base": image or stage (ARG defaults substituted), "instructions": [...]}."""
    args: dict[str, str] = {}
    found: dict[str, dict] = {}
    current = None
    for keyword, rest in dockerfile:
        if keyword == "ARG" and current is None and "=" in rest:  # global ARG with a default
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
        elif keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage needs a name: FROM {rest}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            current = found[match.group(2)] = {"base": base, "instructions": []}
        elif current is not None:
            current["instructions"].append((keyword, rest))
    return found


def stage_chain(stages: dict[str, dict], target: str) -> list[str]:
    """The target and every stage it is built from or copies from (COPY --from=stage)."""
    chain, todo = [], [target]
    while todo:
        name = todo.pop()
        if name in chain or name not in stages:
            continue
        chain.append(name)
        todo.append(stages[name]["base"])
        todo += [m.group(1) for kw, rest in stages[name]["instructions"] if kw == "COPY"
                 for m in [re.match(r"--from=(\S+)", rest)] if m]
    return chain


def requirement_pin(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert match, f"requirements.txt does not pin {name}"
    return match.group(1)


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
    assert set(services) == {"postgres", "redis"} | AIRFLOW_SERVICES


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


def test_redis_broker_with_a_password_from_the_environment(services):
    redis = services["redis"]
    assert re.fullmatch(r"redis:7\.2(\.\d+)?-\w+", redis["image"]), "a pinned Redis 7.2 image"
    command = redis["command"]
    assert command[0] == "redis-server"
    password = command[command.index("--requirepass") + 1]
    assert VAR_REFERENCE.fullmatch(password).group(1) == "REDIS_PASSWORD"
    # the healthcheck's redis-cli authenticates with the same password
    assert environment(redis)["REDISCLI_AUTH"] == password
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_images_and_build_targets(services):
    """Every Airflow service runs the `airflow` target's image, except the gpu worker: the `airflow-gpu` target."""
    images = set()
    for name in AIRFLOW_SERVICES - {"airflow-worker-gpu"}:
        service = services[name]
        assert service["build"] == {"context": ".", "target": "airflow"}, name
        images.add(service["image"])
    assert len(images) == 1
    gpu = services["airflow-worker-gpu"]
    assert gpu["build"] == {"context": ".", "target": "airflow-gpu"}
    assert gpu["image"] not in images


def test_airflow_settings(services):
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        # Celery: Redis as the broker, Airflow's own database as the result backend
        broker = env["AIRFLOW__CELERY__BROKER_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/\d+", broker), name
        backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
        assert backend.startswith("db+postgresql://"), name
        assert backend.split("@", 1)[1] == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("@", 1)[1], name
        assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "default", name
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
            assert VAR_REFERENCE.fullmatch(env[key]), (name, key)
        assert env["SHOPFLOW_HOME"] == SHOPFLOW_HOME, name
    # every component signs/validates JWTs with the same secret and uses the same broker
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({environment(services[name])[key] for name in AIRFLOW_SERVICES}) == 1, key


def _queues(command: list[str]) -> list[str]:
    for flag in ("--queues", "-q"):
        if flag in command:
            return command[command.index(flag) + 1].split(",")
    return []


def _train_queue() -> str:
    """queue= of the DAG's train task, read from dags/shopflow_daily.py."""
    for node in ast.walk(ast.parse((ROOT / "dags" / "shopflow_daily.py").read_text())):
        if isinstance(node, ast.Call):
            kwargs = {k.arg: k.value for k in node.keywords if k.arg}
            task_id = kwargs.get("task_id")
            if isinstance(task_id, ast.Constant) and task_id.value == "train":
                return ast.literal_eval(kwargs["queue"])
    raise AssertionError("no task_id='train' in dags/shopflow_daily.py")


def test_each_celery_worker_serves_one_queue(services):
    assert _train_queue() == "gpu"
    for name, queue in WORKERS.items():
        command = services[name]["command"]
        assert isinstance(command, list), name
        assert command[command.index("celery"):command.index("celery") + 2] == ["celery", "worker"], name
        assert _queues(command) == [queue], name
        assert environment(services[name]).get("DUMB_INIT_SETSID") == "0", f"{name}: Celery warm shutdown"
    # the airflow image's entrypoint prefixes `airflow`; the CUDA image's (dumb-init) does not
    assert services["airflow-worker"]["command"][0] == "celery"
    gpu_command = services["airflow-worker-gpu"]["command"]
    assert gpu_command[:3] == ["airflow", "celery", "worker"]
    assert gpu_command[gpu_command.index("--concurrency") + 1] == "1", "one training at a time per GPU"
    assert environment(services["airflow-worker-gpu"])["SHOPFLOW_TRAIN_DEVICE"] == "cuda"
    for name, service in services.items():
        command = service.get("command") or ""
        if name not in WORKERS:
            assert "celery worker" not in (" ".join(command) if isinstance(command, list) else command), name


def test_gpu_reservation_on_the_gpu_worker_only(services):
    assert services["airflow-worker-gpu"]["deploy"] == GPU_RESERVATION
    for name, service in services.items():
        if name != "airflow-worker-gpu":
            assert "devices" not in str(service.get("deploy", "")), name
            assert not {"runtime", "gpus", "devices"} & set(service), name


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
        assert services[name].get("restart") == "always", name
    assert "airflow-init" not in LONG_RUNNING and services["airflow-init"].get("restart") == "no"

    def test(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"][1:])

    assert "pg_isready" in test("postgres")
    assert "curl --fail http://localhost:8080/api/v2/monitor/health" in test("airflow-apiserver")
    assert "http://localhost:8974/health" in test("airflow-scheduler")
    assert environment(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "airflow jobs check --job-type DagProcessorJob" in test("airflow-dag-processor")
    assert "airflow jobs check --job-type TriggererJob" in test("airflow-triggerer")
    for name in WORKERS:  # the worker answers a Celery ping under its own node name
        assert ("celery --app airflow.providers.celery.executors.celery_executor.app inspect ping "
                '-d "celery@$${HOSTNAME}"') in test(name), name


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
        assert depends_on["redis"] == {"condition": "service_healthy"}, name
    # tasks (on the workers) and triggers need the execution API up
    for name in {"airflow-triggerer"} | set(WORKERS):
        assert services[name]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}, name


def test_named_shopflow_volume_and_read_only_sample_data(compose, services):
    assert "shopflow-data" in compose["volumes"]
    for name in AIRFLOW_SERVICES:
        volumes = services[name]["volumes"]
        assert f"shopflow-data:{SHOPFLOW_HOME}" in volumes, name
        # task logs: written by the workers, read by the API server
        assert "airflow-logs:/opt/airflow/logs" in volumes, name
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", *WORKERS):
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
    # user:password@ inside a URL anywhere (environment, commands): the password must be exactly one reference
    # without a default
    for value in strings(compose):
        tokens: list[re.Match] = []

        def token(match: re.Match, tokens: list[re.Match] = tokens) -> str:
            tokens.append(match)
            return f"__ref{len(tokens) - 1}__"

        for credentials in URL_CREDENTIALS.finditer(VAR_REFERENCE.sub(token, value)):
            ref = re.fullmatch(r"__ref(\d+)__", credentials.group("password"))
            assert ref, f"a literal password in {value!r}"
            assert tokens[int(ref.group(1))].group(2) not in ("-", ":-"), f"a password with a default in {value!r}"
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


TARGETS = ("airflow", "airflow-gpu")


def runs(stages: dict[str, dict], *names: str) -> str:
    return "\n".join(rest for name in names for kw, rest in stages[name]["instructions"] if kw == "RUN")


def test_dockerfile_has_both_targets_on_pinned_base_images(stages):
    assert set(TARGETS) <= set(stages)
    assert stages["airflow"]["base"] == "apache/airflow:3.3.2-python3.11"
    assert requirement_pin("apache-airflow") == "3.3.2", "image and requirements disagree"
    # the gpu target: an NVIDIA CUDA runtime image (no compiler, no headers), fully versioned
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", stages["airflow-gpu"]["base"])
    for name, stage in stages.items():
        base = stage["base"]
        if base in stages:  # built on an earlier stage
            continue
        image, _, tag = base.rpartition(":")
        assert image and re.search(r"\d", tag) and tag != "latest", f"stage {name}: unpinned base image {base}"


def test_dockerfile_pins_python_and_torch(stages, dockerfile):
    args = dict(rest.split("=", 1) for kw, rest in dockerfile if kw == "ARG" and "=" in rest)
    assert args["TORCH_VERSION"] == requirement_pin("torch")
    assert re.fullmatch(r"3\.11\.\d+", args["PYTHON_VERSION"]), "the CUDA image's Python: 3.11, pinned"
    assert re.search(r"python install \"\$\{PYTHON_VERSION\}\"", runs(stages, *stage_chain(stages, "airflow-gpu")))
    # airflow: the CPU build from PyTorch's CPU index; airflow-gpu: the CUDA build (PyPI's), checked at build time
    cpu = runs(stages, *stage_chain(stages, "airflow"))
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu \"torch==\$\{TORCH_VERSION\}\+cpu\"", cpu)
    gpu = runs(stages, *stage_chain(stages, "airflow-gpu"))
    assert '"torch==${TORCH_VERSION}"' in gpu and "+cpu" not in gpu and "whl/cpu" not in gpu
    assert "assert torch.version.cuda" in gpu
    for text in (cpu, gpu):  # every package installed by name is pinned
        for spec in re.findall(r'"([A-Za-z][\w.-]*(?:[=<>!~][^"]*)?)"', text):
            if not spec.startswith("$"):
                assert "==" in spec, f"unpinned package {spec}"


def test_dockerfile_targets_run_as_non_root_user(stages, dockerfile):
    for target in TARGETS:
        users = [rest for kw, rest in stages[target]["instructions"] if kw == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), target
        assert stages[target]["instructions"][-1][0] == "USER", f"{target}: USER must be its last instruction"
    assert dockerfile[-1][0] == "USER", "USER must be the last instruction"
    # the CUDA image's user matches the official image's (uid 50000, gid 0): both write the same volumes
    assert re.search(r"useradd --uid 50000 --gid 0 .*\bairflow\b", runs(stages, "airflow-gpu"))


def test_no_build_tools_in_the_final_images(stages):
    for target in TARGETS:
        text = runs(stages, target)
        assert not re.search(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|-dev)\b", text), target
        assert not re.search(r"\buv\b", text), target
        for command in re.findall(r"pip install[^&;]*", text):  # no pip cache left behind
            assert "--no-cache-dir" in command, (target, command)
    # the CUDA image takes Python and the virtualenv from its build stage; uv stays behind
    copies = [rest for kw, rest in stages["airflow-gpu"]["instructions"] if kw == "COPY" and "--from=" in rest]
    assert copies and all(re.match(r"--from=airflow-gpu-build /opt/(python|venv) ", c) for c in copies)
    assert "ENTRYPOINT" in {kw for kw, _ in stages["airflow-gpu"]["instructions"]}


def test_dockerfile_installs_requirements_and_project_and_copies_code(stages):
    for target in TARGETS:
        chain = stage_chain(stages, target)
        copies = [rest for name in chain for kw, rest in stages[name]["instructions"] if kw in ("COPY", "ADD")]
        sources = {word.rstrip("/") for args in copies for word in args.split()[:-1] if not word.startswith("--")}
        assert {"requirements.txt", "pyproject.toml", "include", "dags", "plugins"} <= sources, target
        destinations = {args.split()[-1].rstrip("/") for args in copies}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins"} <= destinations, target
        text = runs(stages, *chain)
        assert re.search(r"pip install .*-r \S*requirements\.txt", text), target
        assert re.search(r"pip install .*--no-deps /opt/\S*shopflow-src", text), target
        env = " ".join(rest for name in chain for kw, rest in stages[name]["instructions"] if kw == "ENV")
        assert f"SHOPFLOW_HOME={SHOPFLOW_HOME}" in env, target
    assert re.search(r"pip install --no-cache-dir -r \S*requirements\.txt", runs(stages, "airflow"))


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
