"""Shared fixtures: where the real sample data is, a throwaway PostgreSQL 15 cluster, and embedded Airflow sandboxes."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# One Airflow home per pytest-xdist worker (`make test` runs two): in-process Airflow imports write its config there.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ.setdefault("AIRFLOW_HOME", str(Path(tempfile.gettempdir()) / f"shopflow-pytest-airflow-home-{_WORKER}"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from hypothesis import settings as hypothesis_settings  # noqa: E402
from local_airflow import airflow, airflow_env, free_port  # noqa: E402

# Property tests draw the same examples on every run (CI must not turn red on a newly drawn example nobody saw);
# HYPOTHESIS_PROFILE=explore draws new ones, for looking for bugs on purpose.
hypothesis_settings.register_profile("shopflow", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "shopflow"))

TEST_KEY = "test-pseudonym-key-not-a-secret-32bytes+"
pytest_plugins = [
    "model_fixtures",  # the session's small trained model (tests/support/model_fixtures.py)
    "ui_client",  # the reports app's test client, JWTs and fake reports (tests/support/ui_client.py)
]


# Session fixtures that cost minutes, and the test modules that use them. Under pytest-xdist (`make test` runs two
# workers) each group below runs on one worker, so each fixture is built once per run, not once per worker; every
# other module is a unit of its own (its module-scoped fixtures are built once). pytest_collection_modifyitems checks
# that the table names every module that uses one of these fixtures.
SHARED_SESSION_FIXTURES = {"trained_model": "trained-model", "model_predictor": "trained-model",
                           "sqlite_sandbox": "sqlite-sandbox"}
SHARED_FIXTURE_MODULES = {
    "trained-model": ("tests/model/test_training.py", "tests/model/test_search_intent.py",
                      "tests/model/test_predict_cli.py", "tests/governance/test_repair.py",
                      "tests/governance/test_field_repair.py", "tests/governance/test_review.py",
                      "tests/common/test_object_storage.py"),
    "sqlite-sandbox": ("tests/dags/test_dag_e2e.py", "tests/report/test_report.py"),
}
GROUP_OF_MODULE = {module: group for group, modules in SHARED_FIXTURE_MODULES.items() for module in modules}


def _module(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_xdist_make_scheduler(config, log):
    """xdist's scheduler by scope, with a module's scope being its shared fixture's group (or the module itself).
    (xdist's own `loadgroup` marks node ids in a way pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return GROUP_OF_MODULE.get(module, module)

    return SharedFixtureScheduling(config, log)


# The units that take minutes (measured on 2 cores with two workers), started first so that none of them is the last
# to start while the other worker idles. A scheduling hint only: no test depends on it.
LONG_UNITS_SECONDS = {"sqlite-sandbox": 330, "tests/chaos/test_chaos.py": 260, "trained-model": 250,
                      "tests/observability/test_openlineage.py": 110, "tests/deployment/test_distributed_celery.py": 110,
                      "tests/report/test_weekly_digest.py": 95, "tests/dags/test_backfill.py": 95,
                      "tests/zoo/test_zoo_shops.py": 120, "tests/zoo/test_zoo_dags.py": 90,
                      "tests/model/test_embeddings_shared.py": 50}


def pytest_collection_modifyitems(config, items):
    """Every module that uses a shared session fixture is in its group (else the fixture would be built twice), and
    the units that take longest go first (`make test` passes --no-loadscope-reorder so that xdist keeps this order)."""
    for item in items:
        for fixture, group in SHARED_SESSION_FIXTURES.items():
            if fixture in item.fixturenames and GROUP_OF_MODULE.get(_module(item.nodeid)) != group:
                raise pytest.UsageError(f"{_module(item.nodeid)} uses the session fixture {fixture}: add it to "
                                        f"SHARED_FIXTURE_MODULES[{group!r}] in tests/conftest.py")
    seconds: dict[str, float] = {}
    for item in items:
        unit = GROUP_OF_MODULE.get(_module(item.nodeid), _module(item.nodeid))
        guess = 30 if item.get_closest_marker("airflow") else 5 if item.get_closest_marker("slow") else 0.5
        seconds[unit] = seconds.get(unit, 0) + guess
    seconds.update({unit: cost for unit, cost in LONG_UNITS_SECONDS.items() if unit in seconds})
    items.sort(key=lambda item: -seconds[GROUP_OF_MODULE.get(_module(item.nodeid), _module(item.nodeid))])


def source_data_dir() -> Path:
    return Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def source_data() -> Path:
    path = source_data_dir()
    if not (path / "SOURCES.md").is_file():
        pytest.fail(f"sample data not found at {path}: set SHOPFLOW_SOURCE_DATA")
    return path


# ---- PostgreSQL ------------------------------------------------------------------------------------------------
def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.skip(f"PostgreSQL server binary {name!r} not found: install Debian's postgresql package "
                    "(make test does where it can)")
    return found


@dataclass
class PostgresServer:
    port: int
    socket_dir: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return self.url(name)


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free loopback port (initdb'd into `base`), which a test may stop, start
    again, freeze and thaw."""

    def __init__(self, base: Path):
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.base, self.data, self.sockets = base, base / "data", base / "sock"
        self.sockets.mkdir(parents=True)
        if self.as_postgres:
            shutil.chown(base, "postgres")
            shutil.chown(self.sockets, "postgres")
        subprocess.run([*self.as_postgres, _pg_binary("initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
        self.server = PostgresServer(port=free_port(), socket_dir=str(self.sockets))

    def start(self) -> PostgresServer:
        options = (f"-p {self.server.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200")
        subprocess.run([*self.as_postgres, _pg_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                        str(self.base / "server.log"), "-w", "start"], check=True, capture_output=True)
        return self.server

    def stop(self) -> None:
        subprocess.run([*self.as_postgres, _pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster on a free loopback port for this test session, removed afterwards."""
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="shopflow-pg-")))
    try:
        yield cluster.start()
    finally:
        cluster.remove()


# ---- Airflow + shopflow sandboxes ------------------------------------------------------------------------------
@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]

    @property
    def shopflow_home(self) -> Path:
        return Path(self.env["SHOPFLOW_HOME"])

    @property
    def store_url(self) -> str:
        return self.env.get("SHOPFLOW_STORE_URL") or f"sqlite:///{self.shopflow_home / 'shopflow.db'}"

    def shopflow(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shopflow", *args], env=self.env, capture_output=True, text=True,
                              check=True)

    def dags_test(self, day: str) -> subprocess.CompletedProcess:
        return airflow(self.env, "dags", "test", "shopflow_daily", day, check=False, timeout=600)

    def settings(self):
        from shopflow.config.settings import Settings

        return Settings.from_env(self.env)


def make_sandbox(root: Path, source_data: Path, *, airflow_db_url: str | None = None,
                 store_url: str | None = None) -> Sandbox:
    """A fresh Airflow home + shopflow home with the sample data landed and both databases migrated."""
    env = airflow_env(root / "airflow", root / "shopflow", airflow_db_url=airflow_db_url, store_url=store_url,
                      port=free_port(), parallelism=2)
    env["SHOPFLOW_SOURCE_DATA"] = str(source_data)
    env["SHOPFLOW_PSEUDONYM_KEY"] = TEST_KEY
    sandbox = Sandbox(root=root, env=env)
    sandbox.shopflow("db", "upgrade")
    sandbox.shopflow("land")
    airflow(env, "db", "migrate", timeout=600)
    return sandbox


def make_postgres_sandbox(root: Path, source_data: Path, server: PostgresServer, name: str) -> Sandbox:
    """A sandbox whose Airflow database and shopflow store are both fresh databases on the test cluster."""
    return make_sandbox(root, source_data, airflow_db_url=server.create_database(f"airflow_{name}"),
                        store_url=server.create_database(f"shopflow_{name}"))


# ---- the end-to-end sandbox shared by the DAG and report tests ---------------------------------------------------
# One real day per source: orders (UK), catalogue snapshot + generated search, behaviour (China).
DAYS = ["2010-12-01", "2015-12-03", "2017-11-25"]

# The model branch on the CPU: a short training budget, a floor any model meets, a threshold that fills some.
# The sample days span years: a large maximum age keeps the 2017 behaviour day from retraining on age alone.
# Nobody answers model.review's human-in-the-loop request in a test: it must not wait (its 12 h timeout).
# No CPU time budget (0): exactly 30 steps however busy the machine is (a test never depends on its speed).
MODEL_ENV = {"SHOPFLOW_TRAIN_CPU_MAX_STEPS": "30", "SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S": "0",
             "SHOPFLOW_BLESS_MACRO_F1_FLOOR": "0.0",
             "SHOPFLOW_REPAIR_THRESHOLD": "0.3", "SHOPFLOW_TRAIN_MAX_AGE_DAYS": "100000",
             "SHOPFLOW_REVIEW_TIMEOUT_MINUTES": "0"}


def run_days(sandbox: Sandbox, days: list[str]) -> None:
    for day in days:
        result = sandbox.dags_test(day)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.fixture(scope="session")
def sqlite_sandbox(tmp_path_factory, source_data) -> Sandbox:
    """`airflow dags test shopflow_daily` on DAYS with the model branch, on SQLite: run once per session. The
    catalogue is a slice of the real one (model_fixtures.small_shop_data), every other source the whole real file."""
    from model_fixtures import small_shop_data

    root = tmp_path_factory.mktemp("e2e-sqlite")
    sandbox = make_sandbox(root, small_shop_data(source_data, root / "data"))
    sandbox.env.update(MODEL_ENV)
    run_days(sandbox, DAYS)
    return sandbox
