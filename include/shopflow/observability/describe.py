"""What `python -m shopflow sources list|check` prints: each source as the sources file resolves it (landing files
with their resolved format and options, the clean schema, dedup key, pseudonymised columns, expectations)."""

from __future__ import annotations

from shopflow.sources.spec import LandingFileSpec, SourceSpec


def list_line(spec: SourceSpec) -> str:
    files = ", ".join(f"{f.name} ({f.resolved_format})" for f in spec.files)
    return f"{spec.name:12s} {spec.load_kind:18s} {spec.timezone:16s} {spec.owner:32s} {files}"


def _file_line(file: LandingFileSpec) -> str:
    options = [file.resolved_format]
    if file.resolved_format in ("csv", "tsv"):
        options += [f"header={'yes' if file.header else 'no'}", f"delimiter={file.resolved_delimiter!r}",
                    f"quotechar={file.quotechar!r}"]
    options.append(f"encoding={file.encoding}")
    if file.optional:
        options.append("optional")
    if file.resolved_format == "jsonl":
        options.append(f"records={file.records or '(each line)'}")
    line = f"    {file.name}: {', '.join(options)}\n      columns: {', '.join(file.columns)}"
    if file.resolved_format == "jsonl":
        line += "\n      field paths: " + ", ".join(f"{c}={file.field_path(c)}" for c in file.columns)
    return line


def describe(spec: SourceSpec) -> str:
    """A source resolved: raises what importing its cleaner or looking up its suite raises."""
    from shopflow.validation.suites import suite_of

    lines = [f"{spec.name}: {spec.description}",
             f"  owner {spec.owner}; tags {', '.join(spec.tags) or '-'}; time zone {spec.timezone}"
             + (f"; currency {spec.currency}" if spec.currency else "")
             + f"; cadence {spec.cadence}; load {spec.load_kind}" + ("; required" if spec.required else "")
             + ("; GENERATED data" if spec.generated else ""),
             "  landing files:", *(_file_line(f) for f in spec.files)]
    if spec.sidecar_files:
        lines.append(f"  sidecar files (kept, never read): {', '.join(spec.sidecar_files)}")
    if spec.window:
        lines.append(f"  collection window: {spec.window.get('start')} .. {spec.window.get('end')}")
    lines.append(f"  pseudonymised: {', '.join(f'{a} -> {b}' for a, b in spec.pseudonymise.items()) or '-'}")
    if spec.cleaner:
        lines.append(f"  cleaner hook (Python): {spec.cleaner}")
        lines.append("  clean schema: " + ", ".join(f"{c} {t}" for c, t in spec.clean_schema.items()))
    else:
        lines.append("  cleaning: declared")
        for join in spec.joins:
            lines.append(f"    lookup {join.file} joined on {', '.join(join.left_keys)}"
                         + (f" = {', '.join(join.right_keys)}" if join.right_keys != join.left_keys else ""))
        for column in spec.schema_:
            extras = [f"from {column.raw}"] if column.source else []
            extras += [f"format {column.format}"] if column.format else []
            extras += [f"unit {column.unit}"] if column.unit else []
            extras += [f"values {column.values}"] if column.values else []
            extras += [f"{k} {getattr(column, k)}" for k in ("min", "max") if getattr(column, k) is not None]
            extras += ["required -> " + (column.missing_reason or f"missing_{column.name}")] if column.required else []
            if column.type != "string":
                extras.append("invalid -> " + (column.invalid_reason or f"invalid_{column.name}"))
            lines.append(f"    {column.name} {column.type} ({column.dtype})" + (f": {'; '.join(extras)}" if extras else ""))
        for rule in spec.rules:
            details = {k: v for k, v in rule.model_dump(exclude_none=True).items() if k not in ("rule", "reason")
                       and v is not False}
            lines.append(f"    rule {rule.rule} {details} -> {rule.reason}")
    lines.append(f"  dedup key: {', '.join(spec.dedup_key)}")
    if spec.role:
        lines.append(f"  role {spec.role.name}: " + ", ".join(f"{k} = {v}" for k, v in spec.role.fields.items()))
        problems = spec.role_problems()
        if problems:
            raise ValueError("; ".join(problems))
    lines.append("  expectations:")
    for expectation in suite_of(spec):
        arguments = ", ".join(f"{k}={v!r}" for k, v in expectation.kwargs.items())
        lines.append(f"    {expectation.severity:8s} {expectation.expectation}({arguments})")
    return "\n".join(lines)
