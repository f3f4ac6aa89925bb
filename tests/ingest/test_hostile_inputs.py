"""The hostile-input corpus (tests/support/hostile_inputs.py) against `land --from` and `run`, and every landing-file
reader refusing what is not a regular file.

Each case is refused with one line (no traceback) that names the file and what is wrong with it (what it is, or the
limit it passes and the setting that raises it), and writes nothing: the landing zone keeps every entry as it was,
no raw Parquet is written and the partition is recorded `failed` with that error. A last test runs the worst cases
in a child process and checks its peak memory (a generous bound: the point is that it does not grow with the input).
"""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
import sys
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_inputs import (
    CASES,
    LAND,
    MIB,
    RUN,
    Ctx,
    cases,
    concatenated_gzip_bomb,
    snapshot,
)
from orders_days import real_orders_lines
from shopflow.cli import main
from shopflow.common.landing_file import LandingFileError, file_facts
from shopflow.config.settings import Settings
from shopflow.ingest.bounded_read import ReadLimits, read_content
from shopflow.ingest.readers import read_landing
from shopflow.lake import zones as lake
from shopflow.landing.export import land_export
from shopflow.sources import get_source
from shopflow.sources.spec import LandingFileSpec
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

KEY = secrets.token_hex(32)
FIRST_DAY = date(2011, 1, 3)  # run cases: one partition each from here (inside the orders window)


@pytest.fixture(scope="module")
def lines(source_data) -> list[str]:
    return real_orders_lines(source_data)


@pytest.fixture(scope="module")
def home(tmp_path_factory, lines) -> Settings:
    """One home for the module: a store, and the landing zone holding a real day landed before any hostile input."""
    root = tmp_path_factory.mktemp("hostile")
    env = {"SHOPFLOW_HOME": str(root / "home"), "SHOPFLOW_PSEUDONYM_KEY": KEY}
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SHOPFLOW_") and n != "SHOPFLOW_SOURCE_DATA"]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
        settings.home.mkdir(parents=True)
        migrate.upgrade(settings.store_url)
        export = root / "good-export.csv"
        export.write_text("".join(lines))
        land_export(settings, get_source("orders"), export, by="InvoiceDate")
        yield settings


def _ids(found):
    return [case.id for case in found]


def _refusal(capsys, code: int, expected_code: int = 1) -> str:
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("mode", ["by", "day"])
@pytest.mark.parametrize("case", cases(LAND), ids=_ids(cases(LAND)))
def test_land_refuses_a_hostile_export_and_lands_nothing(home, lines, tmp_path, monkeypatch, capsys, case, mode):
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "outside").mkdir()
    path = case.build(tmp_path / f"export.csv{case.suffix}", Ctx(lines, tmp_path / "outside"))
    before = snapshot(home.landing_dir)
    how = ["--by", "InvoiceDate"] if mode == "by" else ["--day", "2010-12-02"]
    err = _refusal(capsys, main(["land", "--source", "orders", "--from", str(path), *how]))
    [message] = [line for line in err.splitlines() if str(path) in line]
    for text in case.expected(LAND):
        assert text in message, f"{text!r} not in {message!r}"
    assert snapshot(home.landing_dir) == before


@pytest.mark.parametrize("case", cases(RUN), ids=_ids(cases(RUN)))
def test_run_refuses_a_hostile_landing_file_and_records_the_failure(home, lines, tmp_path, monkeypatch, capsys, case):
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    day = FIRST_DAY + timedelta(days=CASES.index(case))
    folder = lake.landing_dir(home, "orders", day)
    folder.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    path = case.build(folder / f"orders.csv{case.suffix}", Ctx(lines, tmp_path / "outside"))
    before = snapshot(home.landing_dir)
    err = _refusal(capsys, main(["run", day.isoformat(), "--source", "orders"]))
    [message] = [line for line in err.splitlines() if line.startswith(f"orders {day}: ")]
    for text in (path.name, *case.expected(RUN)):
        assert text in message, f"{text!r} not in {message!r}"
    assert snapshot(home.landing_dir) == before
    assert not lake.lake_file(home, "raw", "orders", day).exists()
    [partition] = MetadataStore(home.store_url).partitions("orders", day)
    assert partition.status == "failed" and partition.error.startswith("ingest: ")
    for text in case.expected(RUN):
        assert text in partition.error


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "dev-zero", "dev-urandom", "link-to-dev-zero"])
def test_every_reader_refuses_what_is_not_a_regular_file(tmp_path, lines, kind):
    """The readers check again what the landing folder's listing checked: a path can change between the two."""
    case = next(c for c in CASES if c.id == kind)
    (tmp_path / "outside").mkdir()
    path = case.build(tmp_path / "orders.csv", Ctx(lines, tmp_path / "outside"))
    spec = get_source("orders").files[0]
    for read in (lambda: read_landing(path, spec), lambda: file_facts(path),
                 lambda: read_landing(path, LandingFileSpec(name="orders.parquet", columns=spec.columns))):
        with pytest.raises(LandingFileError, match="not a regular file but") as caught:
            read()
        assert str(caught.value).startswith(f"{path}: ")


def test_the_ceilings_are_the_settings_and_a_file_within_them_reads_whole(tmp_path, lines, monkeypatch):
    text = "".join(lines).encode()
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(gzip.compress(text))
    facts, content = read_content(path, lines=True)
    assert bytes(content) == text and facts.size_bytes == path.stat().st_size
    longest = max(len(line.encode()) for line in lines)
    assert read_content(path, lines=True, limits=ReadLimits(len(text), longest))[1] == text  # exactly at: fine
    with pytest.raises(LandingFileError, match=rf"expands to more than {len(text) - 1:,} bytes"):
        read_content(path, lines=True, limits=ReadLimits(len(text) - 1, longest))
    with pytest.raises(LandingFileError, match=rf"line \d+: a line longer than {longest - 2:,} bytes"):
        read_content(path, lines=True, limits=ReadLimits(len(text), longest - 2))
    monkeypatch.setenv("SHOPFLOW_MAX_LINE_BYTES", str(longest - 2))
    with pytest.raises(LandingFileError, match="SHOPFLOW_MAX_LINE_BYTES="):
        read_landing(path, get_source("orders").files[0])


def test_the_long_line_is_named_by_its_number_across_chunks(tmp_path):
    """A line that starts in one chunk and ends in a later one, after short lines, is found and numbered."""
    path = tmp_path / "lines.csv"
    path.write_bytes(b"a\r\n" * 5 + b"b" * (3 * MIB) + b"\nc\n")
    with pytest.raises(LandingFileError, match=r"lines.csv, line 6: a line longer than 2,097,152 bytes"):
        read_content(path, lines=True, limits=ReadLimits(16 * MIB, 2 * MIB))
    assert len(read_content(path, lines=False, limits=ReadLimits(16 * MIB, 2 * MIB))[1]) == path.stat().st_size


def test_a_parquet_whose_pages_expand_past_the_ceiling_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.table({"InvoiceNo": ["536365" * 200_000] * 8}), path, compression="zstd")
    assert path.stat().st_size < 64 * 1024  # a small file ...
    spec = LandingFileSpec(name="orders.parquet", columns=["InvoiceNo"])
    with pytest.raises(LandingFileError, match=r"declared columns expand to [\d,]+ bytes, more than 1,048,576 "
                                               r"\(SHOPFLOW_MAX_EXPANDED_BYTES=1048576"):
        read_landing(path, spec, ReadLimits(MIB, MIB))  # ... whose pages hold about 9.6 MB
    assert len(read_landing(path, spec, ReadLimits(16 * MIB, MIB))[1]) == 8


# The child reports its own peak resident memory after the command returns: VmHWM of its address space (not
# ru_maxrss, which also keeps the forking parent's resident size from before the exec: a pytest worker's GB).
_MEASURED = ("import sys\nfrom shopflow.cli import main\ncode = main(sys.argv[1:])\n"
             "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]\n"
             "print('peak_kib', hwm, file=sys.stderr)\nsys.exit(code)")
PEAK_BOUND_KIB = 1024 * 1024  # 1 GiB, half the 2 GB the probe saw each of these pass; the child needs ~300 MB


def _measured(args: list[str], env: dict[str, str]) -> tuple[int, str, int]:
    done = subprocess.run([sys.executable, "-c", _MEASURED, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    peak = int(done.stderr.rsplit("peak_kib", 1)[1].split()[0])
    return done.returncode, done.stderr, peak


def test_the_worst_inputs_fail_within_bounded_memory(home, lines, tmp_path):
    """A gzip bomb of about 15 MB expanding to 4 GiB (the probe's was 18.7 MB) in `land --from` and in `run`, and a
    200 MiB line, in a child process each."""
    bomb = tmp_path / "export.csv.gz"
    concatenated_gzip_bomb(bomb, lines[1].encode(), 4096 * MIB)
    assert bomb.stat().st_size < 20 * MIB
    long_line = tmp_path / "export.csv"
    long_line.write_text("".join(lines))
    os.truncate(long_line, 200 * MIB)
    day = FIRST_DAY - timedelta(days=1)
    landed = lake.landing_dir(home, "orders", day)
    landed.mkdir(parents=True)
    concatenated_gzip_bomb(landed / "orders.csv.gz", lines[1].encode(), 4096 * MIB, header=lines[0].encode())

    # `run` streams the bomb (bigger than a chunk) a chunk at a time, rows and all, until the streamed ceiling.
    env = {**os.environ, "SHOPFLOW_MAX_EXPANDED_BYTES": str(64 * MIB), "SHOPFLOW_MAX_STREAMED_BYTES": str(64 * MIB),
           "SHOPFLOW_CHUNK_BYTES": str(8 * MIB)}
    for args, run_env, expected in [
        (["land", "--source", "orders", "--from", str(bomb), "--by", "InvoiceDate"], env, "expands to more than"),
        (["run", day.isoformat(), "--source", "orders"], env, "expands to more than"),
        (["land", "--source", "orders", "--from", str(long_line), "--by", "InvoiceDate"], dict(os.environ),
         "a line longer than"),
    ]:
        before = snapshot(home.landing_dir)
        code, err, peak = _measured(args, run_env)
        assert code == 1 and expected in err and "Traceback" not in err, err[-3000:]
        assert peak < PEAK_BOUND_KIB, f"{args[0]}: peak {peak / 1024:.0f} MiB"
        assert snapshot(home.landing_dir) == before
