"""The malformed-landing-file corpus (tests/support/malformed_corpus.py): one test per case, each its own partition.

Bad input gets a clear error that names the file (and the line and field where there is one), recorded as the
partition's failure without the pseudonymisation key; or the ledger balances: every data row written is clean,
quarantined with the named reason (and field, and its line), or counted as a duplicate, and the store records the
same counts. Only ingest and clean run (validation is another test's business); one store serves every case.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from malformed_corpus import (
    CASES,
    FORMATS,
    SOURCES,
    Balanced,
    Case,
    Ctx,
    Fails,
    Folder,
    Link,
    Table,
    load_samples,
    sources_file,
    summary,
)
from shopflow.common.landing_file import SOURCE_LINE, LandingFileError
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.sources.cleaning import FIELD, REASON
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

KEY = secrets.token_hex(32)


@dataclass
class Corpus:
    settings: Settings
    store: MetadataStore
    samples: dict[str, Table]
    outside: Path  # beside the landing zone: where symbolic links point


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, source_data) -> Corpus:
    home = tmp_path_factory.mktemp("malformed-corpus")
    sources = home / "sources.yaml"
    sources.write_text(sources_file(CASES), encoding="utf-8")
    env = {"SHOPFLOW_HOME": str(home / "home"), "SHOPFLOW_PSEUDONYM_KEY": KEY, "SHOPFLOW_SOURCES": str(sources)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():  # the steps look the sources file up in the environment, as deployed
            patch.setenv(name, value)
        settings = Settings.from_env(env)
        settings.home.mkdir(parents=True)
        migrate.upgrade(settings.store_url)
        outside = home / "outside"
        outside.mkdir()
        yield Corpus(settings, MetadataStore(settings.store_url), load_samples(source_data), outside)


def _land(corpus: Corpus, case: Case, files: dict) -> None:
    folder = lake.landing_dir(corpus.settings, case.source_name, case.day)
    folder.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, Folder):
            (folder / name).mkdir()
            (folder / name / "part.csv").write_bytes(b"x\n")
        elif isinstance(content, Link):
            target = corpus.outside / f"{case.source_name}-{name}"
            target.write_bytes(content.content)
            os.symlink(target, folder / name)
        else:
            (folder / name).write_bytes(content)


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", _params())
def test_malformed_landing_file(corpus, case):
    ctx = Ctx(case, corpus.samples, secret=KEY)
    _land(corpus, case, case.build(ctx))
    if isinstance(case.expect, Fails):
        _check_failure(corpus, case, ctx, case.expect)
    else:
        _check_ledger(corpus, case, ctx, case.expect)


def _check_failure(corpus: Corpus, case: Case, ctx: Ctx, expect: Fails) -> None:
    settings, source, day = corpus.settings, case.source_name, case.day
    with pytest.raises(expect.error) as caught:
        pipeline.ingest(settings, source, day)
        if expect.step == "clean":
            pipeline.clean(settings, source, day)
    message = str(caught.value)
    named = ([ctx.name] if expect.names_file else []) + list(expect.names)
    for text in named:
        assert text in message, f"{text!r} not in the error: {message}"
    line = expect.line if expect.row is None else ctx.line(expect.row)
    if line is not None:
        assert f", line {line}:" in message, message
        if isinstance(caught.value, LandingFileError):
            assert caught.value.line == line
    assert KEY[:12] not in message, "the error echoes the pseudonymisation key"

    [partition] = corpus.store.partitions(source, day)
    assert partition.status == "failed"
    assert partition.error.startswith(f"{expect.step}: "), partition.error
    for text in named:
        assert text in partition.error, f"{text!r} not in the recorded error: {partition.error}"
    assert KEY[:12] not in partition.error


def _check_ledger(corpus: Corpus, case: Case, ctx: Ctx, expect: Balanced) -> None:
    settings, source, day = corpus.settings, case.source_name, case.day
    ingested = pipeline.ingest(settings, source, day)
    result = pipeline.clean(settings, source, day)
    ledger = (result["rows_in"], result["rows_clean"], result["rows_quarantined"], result["rows_duplicate"])
    assert ledger[0] == ledger[1] + ledger[2] + ledger[3], ledger
    assert result["quarantined_by_reason"] == expect.reasons
    assert ledger == (expect.rows_in, expect.rows_clean, sum(expect.reasons.values()), expect.duplicate)
    assert ingested["rows_in"] == expect.rows_in
    if expect.rows_reference is not None:
        assert ingested["rows_reference"] == expect.rows_reference

    quarantine = read_parquet(result["quarantine_path"])
    assert quarantine[REASON].value_counts().to_dict() == expect.reasons
    for reason, field_name in expect.fields.items():
        assert set(quarantine.loc[quarantine[REASON] == reason, FIELD]) == {field_name}, reason
    for reason, rows in expect.rows.items():
        lines = sorted(quarantine.loc[quarantine[REASON] == reason, SOURCE_LINE].tolist())
        assert lines == [ctx.line(row) for row in rows], reason
    assert len(read_parquet(result["clean_path"])) == expect.rows_clean

    [partition] = corpus.store.partitions(source, day)  # the counts are recorded as returned
    assert partition.status == "cleaned" and partition.error is None
    assert (partition.rows_in, partition.rows_clean, partition.rows_quarantined, partition.rows_duplicate) == ledger
    assert (partition.quarantined_by_reason or {}) == expect.reasons


def test_corpus_covers_every_source_format_and_outcome():
    counts = summary(CASES)
    print(counts)
    assert counts["cases"] >= 80
    assert len({c.id for c in CASES}) == len(CASES), "case ids are unique"
    assert set(counts["by_source"]) == set(SOURCES) and min(counts["by_source"].values()) >= 10
    assert set(counts["by_format"]) == set(FORMATS)
    for source in SOURCES:  # every source in every format
        assert {c.fmt for c in CASES if c.source == source} == set(FORMATS), source
    assert {"gz", "zst"} <= set(counts["by_compression"])
    assert set(counts["by_outcome"]) == {"error", "ledger"} and min(counts["by_outcome"].values()) >= 30
    assert all(c.number == n for n, c in enumerate(CASES))
