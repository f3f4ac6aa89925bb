"""The demo: land the real sample data, backfill shopflow_daily over real days of every source with a real
scheduler, and print what the metadata store recorded. Run by `make demo` (which prepares the virtualenv).

Days (override with SHOPFLOW_DEMO_WINDOWS="2010-12-01:2010-12-05,2017-11-25:2017-11-27"):
- orders    2010-12-01 .. 2010-12-05 (2010-12-04 is a Saturday: no trading, recorded as missing)
- catalog   2015-12-03 (full snapshot) .. 2015-12-07, with changed rows on 2015-12-04; search (GENERATED) all 5 days
- behavior  2017-11-25 .. 2017-11-27 (the stray out-of-window rows are quarantined on 2017-11-25)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_airflow import REPO, airflow, airflow_env, backfill, free_port, running_airflow  # noqa: E402
from run_watch import Stalled  # noqa: E402
from shopflow.config.options import check_environment, given, value  # noqa: E402


def shopflow(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "shopflow", *args], env=env, check=True)


def main() -> int:
    # Turn SIGTERM into an exception so the Airflow services started below are always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    check_environment()  # a bad SHOPFLOW_* value stops the demo here, named, not minutes later in a task
    # The demo's folders default to the repository's, wherever it is started from.
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", REPO / ".airflow")).resolve()
    shopflow_home = Path(given("SHOPFLOW_HOME") or REPO / ".shopflow").resolve()
    port = given("SHOPFLOW_DEMO_PORT") or free_port()
    env = airflow_env(airflow_home, shopflow_home, port=port, parallelism=4)
    env["SHOPFLOW_SOURCE_DATA"] = given("SHOPFLOW_SOURCE_DATA") or str(REPO.parent / "shared" / "data")
    # The sample's sources lie years apart: without this the 2017 behaviour days would retrain the catalogue model
    # only because it is two years "old".
    env.setdefault("SHOPFLOW_TRAIN_MAX_AGE_DAYS", "3650")
    windows = [tuple(window) for window in value("SHOPFLOW_DEMO_WINDOWS")]

    print(f"== shopflow demo: Airflow home {airflow_home}, shopflow home {shopflow_home}")
    shopflow(env, "init-key")
    shopflow(env, "db", "upgrade")
    airflow(env, "db", "migrate", timeout=600)
    print("== landing the sample data as daily files")
    shopflow(env, "land")
    print(f"== starting Airflow (api-server :{port}, scheduler, dag-processor) and backfilling {windows}")
    stall_seconds = value("SHOPFLOW_DEMO_STALL_SECONDS")
    print(f"   (no deadline: the demo stops only if nothing progresses for {stall_seconds:.0f}s, "
          "SHOPFLOW_DEMO_STALL_SECONDS)")
    service_logs = airflow_home / "demo-logs"
    try:
        with running_airflow(env, service_logs):
            runs = backfill(env, windows, stall_seconds=stall_seconds, service_logs=service_logs,
                            progress=lambda line: print(line, flush=True))
    except Stalled as stalled:
        print(f"\n== the demo stalled: {stalled}", file=sys.stderr)
        return 2
    failed = sorted(r["logical_date"][:10] for r in runs if r["state"] != "success")
    print("\n== what the metadata store recorded (python -m shopflow status)")
    shopflow(env, "status")
    print("\n== models, repairs and search intents (python -m shopflow models)")
    shopflow(env, "models")
    print(f"\nDAG runs: {len(runs)} ({len(runs) - len(failed)} succeeded" + (f", failed: {failed}" if failed else "") + ")")
    reports = sorted((shopflow_home / "reports").glob("ds=*/report.html"))
    print(f"Daily reports ({len(reports)}): {shopflow_home / 'reports'}/ds=*/report.html, e.g. "
          f"{reports[0] if reports else '(none)'}; in the UI (`make ui`): the 'shopflow' menu entry")
    print(f"Clean / quarantine Parquet: {shopflow_home / 'lake'}")
    print(f"Task logs: {airflow_home / 'logs'}; browse them with `make ui` (user/password: see README)")
    print(f"Demo took {time.monotonic() - started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
