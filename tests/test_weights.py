"""`voxroom models pull` against a local hub on 127.0.0.1 serving official-format (golden) files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED, needs_shared
from fake_hub import fake_hub, golden_as_official
from voxroom.models import weights

GOLDEN = SHARED / "golden"


@needs_shared("golden", "models")
def test_pull_downloads_verifies_and_lists(tmp_path: Path) -> None:
    model_set = weights.MODEL_SETS["v2pro"]
    files = golden_as_official(GOLDEN, model_set.files)
    with fake_hub(weights.HF_REPO, files) as (endpoint, requests):
        manifest = weights.pull("v2pro", tmp_path, endpoint=endpoint, progress=False, log=lambda _: None)
    assert manifest.exists()
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data
    assert any("s2Gv2Pro.pth" in r for r in requests)
    assert not any(".cache" in p.name for p in tmp_path.iterdir() if p.is_file())
    sets = {s.version: s for s in weights.installed(tmp_path)}
    assert sets["v2pro"].complete and not sets["v2pro"].missing
    assert not sets["v2proplus"].complete and sets["v2proplus"].missing == ["v2Pro/s2Gv2ProPlus.pth"]
    assert weights.best_installed(tmp_path).version == "v2pro"
    assert weights.verify(tmp_path) == []
    (tmp_path / "s1v3.ckpt").write_bytes(b"tampered")
    assert weights.verify(tmp_path) == ["s1v3.ckpt"]


@needs_shared("golden", "models")
def test_checksum_mismatch_removes_the_file_and_says_so(tmp_path: Path) -> None:
    model_set = weights.MODEL_SETS["v2"]
    files = golden_as_official(GOLDEN, model_set.files)
    with fake_hub(weights.HF_REPO, files, wrong_checksum={model_set.sovits}) as (endpoint, _):
        with pytest.raises(weights.WeightsError, match="checksum mismatch"):
            weights.pull("v2", tmp_path, endpoint=endpoint, progress=False, log=lambda _: None)
    assert not (tmp_path / model_set.sovits).exists()


def test_unreachable_hub_and_unknown_version_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(weights.WeightsError, match="unknown version"):
        weights.pull("v9", tmp_path, progress=False)
    with fake_hub(weights.HF_REPO, {}) as (endpoint, _):  # serves nothing: 404
        with pytest.raises(weights.WeightsError, match="could not download") as refused:
            weights.pull("v2", tmp_path, endpoint=endpoint, progress=False, log=lambda _: None)
    assert "HF_ENDPOINT" in str(refused.value) and weights.HF_REPO in str(refused.value)  # what to do about it
    assert "\n" not in str(refused.value)
    with pytest.raises(weights.WeightsError, match="voxroom models pull"):
        weights.best_installed(tmp_path)


@needs_shared("golden", "models")
def test_cli_pull_honours_hf_endpoint_then_lists(tmp_path: Path) -> None:
    files = golden_as_official(GOLDEN, weights.MODEL_SETS["v2"].files)
    with fake_hub(weights.HF_REPO, files) as (endpoint, requests):
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        result = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "models", "pull", "v2",
                                 "--dir", str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert requests, "HF_ENDPOINT was not used"
    listing = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "models", "list",
                              "--dir", str(tmp_path / "m"), "--verify"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "v2: complete" in listing.stdout and "checksums ok" in listing.stdout


def test_pull_asr_fetches_the_recognizer_into_its_own_folder(tmp_path: Path) -> None:
    """`voxroom models pull asr` against the local hub: files land where enrollment looks for them, checked.
    (Made-up bytes: the real model cannot be fetched here, so recognising with it is not tested.)"""
    from voxroom.models import speech_recognition as asr

    files = {name: f"not a real {name}".encode() for name in asr.ASR_FILES}
    with fake_hub(asr.ASR_REPO, files) as (endpoint, requests):
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        result = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "models", "pull", "asr",
                                 "--dir", str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "speech recognizer" in result.stdout and any("model.bin" in r for r in requests)
    folder = asr.asr_model_dir(tmp_path / "m")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == files
    assert weights.verify(tmp_path / "m") == []
    assert weights.installed(tmp_path / "m") == []  # not a GPT-SoVITS set
    with fake_hub(asr.ASR_REPO, files, wrong_checksum={"model.bin"}) as (endpoint, _):
        with pytest.raises(weights.WeightsError, match="checksum mismatch"):
            weights.pull("asr", tmp_path / "bad", endpoint=endpoint, progress=False, log=lambda _: None)
    assert not (asr.asr_model_dir(tmp_path / "bad") / "model.bin").exists()
