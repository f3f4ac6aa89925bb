"""`python -m shopflow land --source NAME --from PATH [--by COLUMN]`: a shop's own export as daily landing partitions.

- `--from FILE --by COLUMN`: the export is read as the source's declared landing file (any format the sources file
  allows) and split by the day of COLUMN in the source's time zone: ISO dates and timestamps (a naive one is local
  time in the source's zone; one with an offset is converted), `YYYY-MM-DD HH:MM:SS`, or epoch seconds/milliseconds
  (UTC instants). Each day's records are written to `landing/<source>/ds=DAY/<declared name>`: CSV/TSV rows are
  re-written with the declared delimiter (and header, if declared), JSON lines as described below, Parquet rows are
  written as Parquet.
- JSON lines (COLUMN is a column or a field path): where COLUMN is outside the declared `records` list (a field of
  the line, `session_id`, `device.os`), each line goes whole, bytes unchanged, to its day. Where it is inside
  (`events[].ts`, or a column read from each record), every record goes to its own day: a line whose records all
  fall on one day is copied unchanged; a line whose records span days is split into one line per day, each holding
  the line's other fields unchanged and only that day's records, in their order (compact JSON, numbers as written).
  A path into any other list (`tags[].ts`, or a list inside each record, `events[].items[].ts`) cannot be split and
  is refused before the export is read (a path that meets such a list unmarked, on some line, when that line is
  read). A line with no records has no day (an error unless --undated-day).
  Lines are written in export order, so every partition file keeps the export's line order; an error names the
  export's line (and the record's position in it), and the log names, per day, the export lines that were split.
  The records per day add up to the export's records: none lost, none repeated.
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
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from shopflow.common import storage
from shopflow.config.options import value
from shopflow.config.settings import Settings
from shopflow.ingest.bounded_read import check_content, read_checked_raw, read_content
# The reader's own JSON decoding (numbers keep their literal text), so that a split line writes its values as read.
from shopflow.ingest.readers import JSON_DECODER, json_kind, is_line_based, json_text, read_landing
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


def _day_or_fail(value: str, line: int, export: Path, column: str, zone: ZoneInfo, undated: date | None, *,
                 record: int | None = None, why: str | None = None) -> date:
    """The day of `value`, else `undated`, else an error naming the export's line (and the record's position in
    that line's records list, counted from 0), the column and the value."""
    day = day_of(value, zone)
    if day is not None:
        return day
    if undated is not None:
        return undated
    where = f"line {line}" if record is None else f"line {line}, record {record}"
    raise ExportError(f"{export}, {where}: {column}={value!r} is not a date or timestamp{f' ({why})' if why else ''} "
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
    """JSON lines by the day of `by`: a line goes whole to its day, or, where `by` is inside the declared records
    and the line's records fall on several days, is split into one line per day (see the module docstring).
    Returns the records per day (the lines per day where no records list is declared)."""
    where = _by_path(spec, file_spec, export, by)
    declared_records = _records_keys(file_spec)
    lines_by_day: dict[date, list[bytes]] = defaultdict(list)
    records_by_day: dict[date, int] = defaultdict(int)
    split_lines_by_day: dict[date, list[int]] = defaultdict(list)  # export line numbers of the lines split
    _, content = read_content(export, lines=True)
    for number, raw in enumerate(content.split(b"\n"), 1):
        if not raw.strip(_JSON_WHITESPACE):
            continue
        line = raw + b"\n"
        record = _json_object(export, number, raw, file_spec.encoding)
        if where.records is None:
            value = _value_at(export, number, by, record, where.keys, ())
            day = _day_or_fail(json_text(value), number, export, by, zone, undated)
            lines_by_day[day].append(line)
            records_by_day[day] += _record_count(record, declared_records) if declared_records else 1
            continue
        items = _records_at(export, number, by, record, where.records)
        if not items:
            day = _day_or_fail("", number, export, by, zone, undated,
                               why=f"no records in {file_spec.records!r}, so nothing gives the line a day")
            lines_by_day[day].append(line)
            records_by_day[day] += 0  # the day is landed: it holds this line, with no record
            continue
        label = ".".join(where.records)
        days = [_day_or_fail(json_text(_value_at(export, number, by, item, where.keys, (f"{label}[{position}]",))),
                             number, export, by, zone, undated, record=position)
                for position, item in enumerate(items)]
        distinct_days = list(dict.fromkeys(days))
        if len(distinct_days) == 1:
            lines_by_day[days[0]].append(line)  # bytes unchanged
            records_by_day[days[0]] += len(items)
            continue
        for day in distinct_days:
            own = [item for item, item_day in zip(items, days) if item_day == day]
            lines_by_day[day].append(_json_line(_with_records(record, where.records, own), file_spec.encoding))
            records_by_day[day] += len(own)
            split_lines_by_day[day].append(number)
    _check_day_count(export, by, len(lines_by_day), max_days)
    for day, lines in sorted(lines_by_day.items()):
        target = lake.landing_dir(settings, spec.name, day) / file_spec.name
        _write_if_changed(target, b"".join(lines))
        _remove_replaced(spec, file_spec, [target])
        split = split_lines_by_day.get(day, [])
        if split:
            shown = ", ".join(map(str, split[:10])) + (", ..." if len(split) > 10 else "")
            log.info("%s %s: %d lines, %d records; %d lines hold this day's part of an export line split by day "
                     "(export lines %s)", spec.name, day, len(lines), records_by_day[day], len(split), shown)
        else:
            log.info("%s %s: %d lines, %d records, none split", spec.name, day, len(lines), records_by_day[day])
    return dict(sorted(records_by_day.items()))


_JSON_WHITESPACE = b" \t\r"  # what the JSON-lines reader skips as a blank line


@dataclass(frozen=True)
class _ByPath:
    """Where the value of `--by` is in a JSON line: `keys` from the line's object or, when `records` names the
    declared records list, `keys` from each of its records (no keys: the record itself)."""

    records: tuple[str, ...] | None
    keys: tuple[str, ...]


def _records_keys(file_spec: LandingFileSpec) -> tuple[str, ...] | None:
    return tuple(file_spec.records.removesuffix("[]").split(".")) if file_spec.records else None


def _by_path(spec: SourceSpec, file_spec: LandingFileSpec, export: Path, by: str) -> _ByPath:
    """The path of `by` (a column, or a field path), checked before anything is read: a path into a list other than
    the declared records list, or into a list inside a record, cannot be split by day and is refused."""
    path = file_spec.field_path(by) if by in file_spec.columns else by
    parts = path.split(".")
    keys = tuple(part.removesuffix("[]") for part in parts)
    lists = [position for position, part in enumerate(parts) if part.endswith("[]")]
    records = _records_keys(file_spec)
    named = by if path == by else f"{by} ({path})"
    if records and keys[: len(records)] == records:
        inside = [position for position in lists if position >= len(records)]
        before = [position for position in lists if position < len(records) - 1]
        if inside:
            listed = ".".join(parts[: inside[0] + 1])
            raise ExportError(
                f"{export}: --by {named} goes into the list {listed!r} inside each record of the records list "
                f"{file_spec.records!r}: one record would have a day for each item of that list, and a record is "
                "never split; nothing was landed. Split by a field with one value per record")
        if not before:
            return _ByPath(records, keys[len(records):])
        lists = before
    if lists:
        listed = ".".join(parts[: lists[0] + 1])
        declared = f"its records list is {file_spec.records!r}" if file_spec.records else "it declares no records list"
        raise ExportError(
            f"{export}: --by {named} goes into the list {listed!r}, which is not the records list of "
            f"{spec.name}'s {file_spec.name} ({declared}): the items of that list may fall on different days and a "
            "line is split only by the days of its records; nothing was landed. Declare that list as `records`, or "
            "split by a field outside it")
    return _ByPath(None, keys)


def _json_object(export: Path, number: int, raw: bytes, encoding: str) -> dict:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ExportError(f"{export}, line {number}: not valid {encoding} (byte {raw[exc.start]:#04x})") from exc
    try:
        record = JSON_DECODER.decode(text.removeprefix("\ufeff") if number == 1 else text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ExportError(f"{export}, line {number}: not valid JSON ({exc})") from exc
    if type(record) is not dict:
        raise ExportError(f"{export}, line {number}: expected a JSON object, found {json_kind(record)}")
    return record


def _value_at(export: Path, number: int, by: str, node, keys: tuple[str, ...], crossed: tuple[str, ...]):
    """The value at `keys` below `node` (None through a missing key or null). A value on the way that is not an
    object fails, naming the line: an array there is a list whose items would give the line several days."""
    for depth, key in enumerate(keys):
        if node is None:
            return None
        if type(node) is not dict:
            what = ".".join((*crossed, *keys[:depth]))
            hint = (": only the declared records list is split by the days of its items; nothing was landed"
                    if type(node) is list else "")
            raise ExportError(f"{export}, line {number}: --by {by} crosses {what!r}, which is {json_kind(node)}, "
                              f"not an object{hint}")
        node = node.get(key)
    return node


def _records_at(export: Path, number: int, by: str, record: dict, keys: tuple[str, ...]) -> list:
    items = _value_at(export, number, by, record, keys, ())
    if items is None or type(items) is list:
        return items or []
    raise ExportError(f"{export}, line {number}: the records list {'.'.join(keys)!r} is {json_kind(items)}, "
                      "not an array")


def _record_count(record: dict, keys: tuple[str, ...]) -> int:
    """The records of a line that goes whole to one day (what ingest reads of it; a line it cannot read counts 0)."""
    node = record
    for key in keys:
        node = node.get(key) if type(node) is dict else None
    return len(node) if type(node) is list else 0


def _with_records(record: dict, keys: tuple[str, ...], items: list) -> dict:
    """The line's object with `items` as its records list: every other field, at every level, is the same value in
    the same place."""
    copy = dict(record)
    node = copy
    for key in keys[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    node[keys[-1]] = items
    return copy


def _json_line(value: dict, encoding: str) -> bytes:
    """Compact JSON (numbers as written in the export) and a newline, in the declared encoding; a character the
    encoding cannot hold (or a lone surrogate from a `\\u` escape) is written as a JSON escape, as it was read."""
    text = json_text(value) + "\n"
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return "".join(char if _encodable(char, encoding) else json.dumps(char)[1:-1] for char in text).encode(encoding)


def _encodable(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


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
