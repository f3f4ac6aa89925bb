"""`python -m shopflow land --source NAME --from PATH [--by COLUMN]`: a shop's own export as daily landing partitions.

- `--from FILE --by COLUMN`: the export is read as the source's declared landing file (any format the sources file
  allows) and split by the day of COLUMN in the source's time zone: ISO dates and timestamps (a naive one is local
  time in the source's zone; one with an offset is converted), `YYYY-MM-DD HH:MM:SS`, or epoch seconds/milliseconds
  (UTC instants). Each day's records are written to `landing/<source>/ds=DAY/<declared name>`: CSV/TSV rows are
  re-written with the declared delimiter (and header, if declared), JSON lines are copied unchanged (COLUMN is a
  field path; a nested line goes by its first record), Parquet rows are written as Parquet.
- `--from FILE --day DAY`: the whole export is DAY's partition file, copied unchanged (a snapshot, a lookup file).
- `--from FOLDER`: per-day files as they are: every file whose name holds a date (`orders-2010-12-01.csv.gz`) is
  copied, bytes unchanged, to that day's partition under the declared name (compression suffix kept).

Nothing is dropped: a record whose COLUMN is not a date fails the command naming the file, line and value, unless
`--undated-day DAY` says where such records go (cleaning then quarantines them with their reason). Landing is
idempotent: an unchanged partition file is not rewritten. The export itself is never modified.

Landing replaces: once a partition's new file is written (atomically), the other files of that partition folder that
match the same declared landing file (`orders.csv.gz` beside a new `orders.csv`, another match of a glob
declaration) are removed, and each removal is logged, so that ingest never finds two files for one declared name.
Files of other declared names, the source's sidecar files and writers' temporary files are never removed.

Every read is bounded (shopflow.ingest.bounded_read): only regular files (a FIFO, a device, a socket is refused,
and so is anything but a regular file inside a folder of per-day files), content within SHOPFLOW_MAX_EXPANDED_BYTES
once decompressed, lines of a text format within SHOPFLOW_MAX_LINE_BYTES. `--by` lands at most
SHOPFLOW_LAND_MAX_DAYS distinct days (`--max-days N` for more). Every check runs before the first partition file is
written: a refused export lands nothing.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
import os
import re
import stat
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from shopflow.common import storage
from shopflow.config.options import value
from shopflow.config.settings import Settings
from shopflow.ingest.bounded_read import check_content, read_checked_raw, read_content
from shopflow.ingest.readers import is_line_based, read_landing
from shopflow.lake import zones as lake
from shopflow.sources.spec import COMPRESSION_SUFFIXES, LandingFileSpec, SourceSpec

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
LAND_MAX_DAYS = "SHOPFLOW_LAND_MAX_DAYS"
log = logging.getLogger("shopflow.landing.export")


class ExportError(ValueError):
    """The export cannot be split into landing partitions; names the file, line and value."""


def day_of(value: str, zone: ZoneInfo) -> date | None:
    """The business day of a date/timestamp text in the source's time zone, or None when it is not one."""
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        seconds = float(text)
        if abs(seconds) > 1e11:  # milliseconds since the epoch
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc).astimezone(zone).date()
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.date()  # local time of the source: its date is the business day
    return parsed.astimezone(zone).date()


def land_export(settings: Settings, spec: SourceSpec, export: Path, *, by: str | None, file_name: str | None = None,
                undated_day: date | None = None, day: date | None = None,
                max_days: int | None = None) -> dict[date, int]:
    """Land one export (a file, or a folder of per-day files) of `spec`; returns records (or files) per day.
    With `day`, the whole file is that day's partition file (a snapshot, or a lookup file), copied unchanged.
    With `by`, at most `max_days` distinct days (default: SHOPFLOW_LAND_MAX_DAYS) are landed."""
    file_spec = _declared_file(spec, file_name)
    if export.is_dir():
        return _copy_daily_files(settings, spec, file_spec, export)
    if day is not None:
        if by is not None:
            raise ExportError("--day lands the whole export on one day; --by splits it: give one of them")
        suffix = next((s for s in COMPRESSION_SUFFIXES if export.name.endswith(s)), "")
        if file_spec.is_pattern and not file_spec.matches(export.name):
            raise ExportError(f"{spec.name}: the declared file {file_spec.name!r} is a pattern that {export.name!r} "
                              "does not match; give the export a name the pattern matches")
        landed = read_checked_raw(export, lines=is_line_based(file_spec))
        # A pattern's file keeps the export's own (matching) name; a plain declaration's file is named as declared.
        name = export.name if file_spec.is_pattern else file_spec.name + suffix
        target = lake.landing_dir(settings, spec.name, day) / name
        _write_if_changed(target, landed)
        _remove_replaced(spec, file_spec, [target])
        return {day: 1}
    if by is None:
        raise ExportError(f"{export}: --by COLUMN is needed to split a file into days (or --day DAY for the whole "
                          "file, or a folder of per-day files)")
    if file_spec.is_pattern:
        raise ExportError(f"{spec.name}: the declared file {file_spec.name!r} is a pattern; pass --file with a plain name")
    zone = ZoneInfo(spec.timezone)
    max_days = value(LAND_MAX_DAYS) if max_days is None else max_days
    if file_spec.resolved_format == "jsonl":
        return _split_json_lines(settings, spec, file_spec, export, by, zone, undated_day, max_days)
    if by not in file_spec.columns:
        raise ExportError(f"--by {by!r} is not a column of {spec.name}'s {file_spec.name} ({file_spec.columns})")
    _, frame = read_landing(export, file_spec)
    days = [_day_or_fail(text, line, export, by, zone, undated_day) for text, line in
            zip(frame[by].tolist(), frame["_source_line"].tolist())]
    _check_day_count(export, by, len(set(days)), max_days)
    frame = frame.drop(columns=["_source_file", "_source_line"])
    counts = {}
    for day, rows in frame.groupby(pd.Series(days, index=frame.index), sort=True):
        target = lake.landing_dir(settings, spec.name, day) / file_spec.name
        _write_if_changed(target, _encode(rows, file_spec))
        _remove_replaced(spec, file_spec, [target])
        counts[day] = len(rows)
    return counts


def _check_day_count(export: Path, by: str, days: int, max_days: int) -> None:
    """Refuse, before anything is written, an export whose records fall on more distinct days than allowed: most
    often the wrong --by column (an id, an amount, a timestamp read as epoch seconds), and a partition each."""
    if days > max_days:
        raise ExportError(f"{export}: its records fall on {days:,} distinct days of --by {by}, more than the "
                          f"{max_days:,} one land may write ({LAND_MAX_DAYS}={max_days}); nothing was landed. If "
                          f"{by} is the right column, pass --max-days {days} (or set {LAND_MAX_DAYS})")


def _declared_file(spec: SourceSpec, file_name: str | None) -> LandingFileSpec:
    if file_name is None:
        if len(spec.files) > 1:
            raise ExportError(f"{spec.name} declares {len(spec.files)} landing files; choose one with --file "
                              f"({[f.name for f in spec.files]})")
        return spec.files[0]
    for file_spec in spec.files:
        if file_spec.name == file_name:
            return file_spec
    raise ExportError(f"{spec.name} declares no landing file {file_name!r} ({[f.name for f in spec.files]})")


def _day_or_fail(value: str, line: int, export: Path, column: str, zone: ZoneInfo, undated: date | None) -> date:
    day = day_of(value, zone)
    if day is not None:
        return day
    if undated is not None:
        return undated
    raise ExportError(f"{export}, line {line}: {column}={value!r} is not a date or timestamp "
                      "(pass --undated-day DAY to land such records on one day, where cleaning quarantines them)")


def _encode(rows: pd.DataFrame, file_spec: LandingFileSpec) -> bytes:
    if file_spec.resolved_format == "parquet":
        buffer = io.BytesIO()
        rows.reset_index(drop=True).to_parquet(buffer, index=False)
        return buffer.getvalue()
    text = io.StringIO()
    writer = csv.writer(text, delimiter=file_spec.resolved_delimiter, lineterminator="\n",
                        quotechar=file_spec.quotechar or '"',
                        quoting=csv.QUOTE_MINIMAL if file_spec.quotechar else csv.QUOTE_NONE)
    if file_spec.header:
        writer.writerow(file_spec.columns)
    writer.writerows(rows[file_spec.columns].itertuples(index=False, name=None))
    return text.getvalue().encode(file_spec.encoding)


def _split_json_lines(settings: Settings, spec: SourceSpec, file_spec: LandingFileSpec, export: Path, by: str,
                      zone: ZoneInfo, undated: date | None, max_days: int) -> dict[date, int]:
    path = file_spec.field_path(by) if by in file_spec.columns else by
    keys = [part.removesuffix("[]") for part in path.split(".")]
    by_day: dict[date, list[bytes]] = defaultdict(list)
    _, content = read_content(export, lines=True)
    for number, line in enumerate(content.splitlines(keepends=True), 1):
        if not line.strip():
            continue
        try:
            value = _first_value(json.loads(line), keys)
        except ValueError as exc:
            raise ExportError(f"{export}, line {number}: not valid JSON ({exc})") from exc
        day = _day_or_fail("" if value is None else str(value), number, export, by, zone, undated)
        by_day[day].append(line if line.endswith(b"\n") else line + b"\n")
    _check_day_count(export, by, len(by_day), max_days)
    for day, lines in by_day.items():
        target = lake.landing_dir(settings, spec.name, day) / file_spec.name
        _write_if_changed(target, b"".join(lines))
        _remove_replaced(spec, file_spec, [target])
    return {day: len(lines) for day, lines in sorted(by_day.items())}


def _first_value(node, keys: list[str]):
    for key in keys:
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node[0] if isinstance(node, list) and node else node


def _copy_daily_files(settings: Settings, spec: SourceSpec, file_spec: LandingFileSpec, folder: Path) -> dict[date, int]:
    """Every file of the folder, checked first (names, days, regular files, content within the limits), then
    copied: a folder with one bad file lands nothing."""
    entries = sorted(folder.iterdir())
    not_regular = [path.name for path in entries if not stat.S_ISREG(os.stat(path).st_mode)]
    if not_regular:
        raise ExportError(f"{folder}: not regular files (folders, FIFOs, devices and sockets are never read): "
                          f"{not_regular!r}")
    counts: dict[date, int] = defaultdict(int)
    copies: list[tuple[Path, Path]] = []
    for path in entries:
        found = _DATE_IN_NAME.search(path.name)
        if not found:
            raise ExportError(f"{path}: no YYYY-MM-DD in its name, so its day is unknown")
        day = date.fromisoformat(found.group(1))
        suffix = next((s for s in COMPRESSION_SUFFIXES if path.name.endswith(s)), "")
        if file_spec.is_pattern:
            name = path.name
        elif counts[day]:
            raise ExportError(f"{path}: a second file for {day}, and {spec.name} declares the one file "
                              f"{file_spec.name!r} a day")
        else:
            name = file_spec.name + suffix
        check_content(path, lines=is_line_based(file_spec))
        copies.append((path, lake.landing_dir(settings, spec.name, day) / name))
        counts[day] += 1
    landed: dict[str, list] = defaultdict(list)  # per partition folder: the files this command wrote there
    for path, target in copies:
        _write_if_changed(target, read_checked_raw(path, lines=is_line_based(file_spec)))
        landed[str(target.parent)].append(target)
    for targets in landed.values():
        _remove_replaced(spec, file_spec, targets)
    return dict(sorted(counts.items()))


def _write_if_changed(path, data: bytes | bytearray) -> None:
    if storage.is_file(path) and path.stat().st_size == len(data) and storage.read_bytes(path) == data:
        return
    storage.write_bytes(path, data)


def _remove_replaced(spec: SourceSpec, file_spec: LandingFileSpec, written: list) -> list[str]:
    """Remove, from the partition folder of the just-written files `written`, every other regular file that is the
    declared file `file_spec` (its name or glob, with or without a compression suffix): what the new files replace.
    Never a file of another declared name, a sidecar file, a writer's temporary file or anything not a regular file.
    Logs and returns the names removed."""
    folder = written[0].parent
    keep = {target.name for target in written}
    removed = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        name = entry.name
        if (name in keep or storage.writer_pid(name) is not None
                or any(fnmatch.fnmatchcase(name, pattern) for pattern in spec.sidecar_files)
                or spec.file_for(name) is not file_spec or not _regular(entry)):
            continue
        try:
            entry.unlink()
        except FileNotFoundError:  # removed by someone else meanwhile
            continue
        removed.append(name)
    if removed:
        log.warning("%s %s: replaced by %s, removed %s", spec.name, folder, sorted(keep), removed)
    return removed


def _regular(path) -> bool:
    """A plain file (not a link, folder, FIFO, device or socket); on object storage, an object."""
    if storage.is_remote(path):
        return path.is_file()
    return stat.S_ISREG(os.lstat(path).st_mode)
