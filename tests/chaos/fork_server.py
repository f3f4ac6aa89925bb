"""A fork server for the chaos suite: one process imports the library once (pandas, pyarrow, SQLAlchemy, Great
Expectations, shopflow), then forks a fresh child for every run the suite asks for.

Each case of the chaos suite runs shopflow two or three times; a fresh interpreter spends most of such a short run
importing (about 4 s of CPU here), so the suite's children are forked from this server instead. A forked child is
still a real process of its own: it gets the case's environment and its own stdout/stderr files, runs
`python -m shopflow ...` or tests/chaos/chaos_child.py as `__main__` (runpy), opens its own database connections and
dies by its own SIGKILL. The server itself never opens a connection or a file of the library and starts no Python
thread (its only other threads are the idle native pools of numpy's BLAS and Arrow's allocator, which are fork-safe),
so children share nothing but imported code.

Protocol, one JSON object per line on stdin, one answer per line on stdout:
  {"op": "start", "argv": [...], "env": {...}, "stdout": path, "stderr": path}  ->  {"pid": n}
      argv[0] is "shopflow" (the CLI) or the path of a script to run as __main__
  {"op": "wait", "pid": n, "timeout": seconds}  ->  {"returncode": n}   (-signal if killed; the child is killed on
      timeout and answers {"returncode": ..., "timed_out": true})
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PRELOAD = ("pandas", "pyarrow.parquet", "sqlalchemy", "psycopg2", "great_expectations", "shopflow.cli",
           "shopflow.steps.partition", "shopflow.validation.suites", "shopflow.store.repository")


def _run_child(request: dict) -> int:
    """In the forked child: become the requested process, then exit without returning to the server loop."""
    import runpy

    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    argv = request["argv"]
    code = 0
    try:
        if argv[0] == "shopflow":
            sys.argv = ["shopflow", *argv[1:]]
            runpy.run_module("shopflow", run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path.insert(0, str(Path(argv[0]).parent))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like an interpreter would, then the child ends
        import traceback

        traceback.print_exc()
        code = 1
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": True}
        time.sleep(0.02)


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    replies = sys.stdout
    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os._exit(_run_child(request))
            answer = {"pid": pid}
        else:
            answer = _wait(request["pid"], request["timeout"])
        print(json.dumps(answer), file=replies, flush=True)


class ForkServer:
    """The test side: start() and wait() a child, or run() one to its end (a subprocess.CompletedProcess)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert json.loads(self.process.stdout.readline()) == {"ready": True}, "the fork server did not start"

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the fork server exited ({self.process.poll()})")
        return json.loads(answer)

    def start(self, argv: list[str], env: dict[str, str]) -> tuple[int, Path, Path]:
        self.count += 1
        out, err = self.folder / f"{self.count}.out", self.folder / f"{self.count}.err"
        pid = self._ask({"op": "start", "argv": argv, "env": env, "stdout": str(out), "stderr": str(err)})["pid"]
        return pid, out, err

    def wait(self, started: tuple[int, Path, Path], argv: list[str], timeout: float = 300) -> \
            subprocess.CompletedProcess:
        pid, out, err = started
        answer = self._ask({"op": "wait", "pid": pid, "timeout": timeout})
        if answer.get("timed_out"):
            raise subprocess.TimeoutExpired(argv, timeout, out.read_text(errors="replace"),
                                            err.read_text(errors="replace"))
        return subprocess.CompletedProcess(argv, answer["returncode"], out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
        return self.wait(self.start(argv, env), argv, timeout)

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


if __name__ == "__main__":
    serve()
