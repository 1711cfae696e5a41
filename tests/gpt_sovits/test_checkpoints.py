"""Reading official SoVITS (s2) `.pth` files: version detection, weight-norm fusion, clear errors.

The golden checkpoints were written by the official exporter (`process_ckpt.savee`): a plain
"PK" zip for v2 and a "05"-headed one for v2Pro, each holding fp16 weights without enc_q.
Fused weights must equal torch's own weight_norm to fp32 rounding (atol 1e-6).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from voxroom.models.gpt_sovits import checkpoints
from voxroom.models.gpt_sovits.checkpoints import (
    CheckpointError,
    HParams,
    detect_version_from_header,
    fuse_weight_norm,
    read_sovits_checkpoint,
)
from voxroom.models.gpt_sovits.sovits import SoVITSConfig, SoVITSModel, load_sovits

GOLDEN = Path(os.environ.get("VOXROOM_GOLDEN", Path(__file__).resolve().parents[3] / "shared" / "golden"))
LISTINGS = GOLDEN.parent / "gpt-sovits" / "listings" / "out_s2.txt"
TINY_V2 = GOLDEN / "models" / "s2_tiny_v2.pth"
TINY_V2PRO = GOLDEN / "models" / "s2_tiny_v2pro.pth"
TINY_S1 = GOLDEN / "models" / "s1_tiny_v2.ckpt"

needs_golden = pytest.mark.skipif(not TINY_V2.is_file(), reason=f"golden data not found at {GOLDEN}")


# -- version detection --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (b"00", ("v1", "v1", False)),
        (b"01", ("v2", "v2", False)),
        (b"02", ("v2", "v3", False)),
        (b"03", ("v2", "v3", True)),
        (b"04", ("v2", "v4", True)),
        (b"05", ("v2", "v2Pro", False)),
        (b"06", ("v2", "v2ProPlus", False)),
    ],
)
def test_header_markers(marker: bytes, expected: tuple[str, str, bool]) -> None:
    assert detect_version_from_header(marker + b"\x03\x04" + bytes(100), 10_000) == expected


def test_plain_zip_versions_follow_the_official_size_rule() -> None:
    head = b"PK\x03\x04" + bytes(100)
    assert detect_version_from_header(head, 82977 * 1024)[1] == "v1"
    assert detect_version_from_header(head, 82978 * 1024)[1] == "v2"
    assert detect_version_from_header(head, 700 * 1024 * 1024 - 1)[1] == "v2"
    assert detect_version_from_header(head, 700 * 1024 * 1024)[1] == "v3"


def test_md5_of_known_pretrained_file_wins_over_header(monkeypatch: pytest.MonkeyPatch) -> None:
    head = b"PK\x03\x04" + bytes(range(200))
    digest = hashlib.md5(head[:8192]).hexdigest()
    monkeypatch.setitem(checkpoints.PRETRAINED_MD5, digest, ("v2", "v2ProPlus", False))
    assert detect_version_from_header(head, 1000) == ("v2", "v2ProPlus", False)


def test_unknown_marker_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="header"):
        detect_version_from_header(b"ZZ" + bytes(10), 1000)


@needs_golden
def test_tiny_v2_plain_zip_is_v2_after_the_weight_check() -> None:
    model, info = load_sovits(TINY_V2)
    # The size rule alone says v1 (a tiny file); 732 text-embedding rows make it v2, as officially.
    assert info.header_version == ("v1", "v1", False)
    assert info.model_version == "v2" and info.symbol_version == "v2"
    assert info.info == "1epoch_10iteration"
    assert not model.config.is_pro
    assert model.config.gin_channels == 512 and model.config.inter_channels == 32
    # Only training-side codebook statistics are left over; enc_q was never saved.
    assert info.ignored_keys == [
        "quantizer.vq.layers.0._codebook.cluster_size",
        "quantizer.vq.layers.0._codebook.embed_avg",
        "quantizer.vq.layers.0._codebook.inited",
    ]


@needs_golden
def test_tiny_v2pro_header_05() -> None:
    assert TINY_V2PRO.read_bytes()[:2] == b"05"
    model, info = load_sovits(TINY_V2PRO)
    assert info.header_version == ("v2", "v2Pro", False)
    assert info.model_version == "v2Pro"
    assert model.config.is_pro and model.config.gin_channels == 32
    assert model.sv_emb.weight.shape == (32, 20480)


@needs_golden
def test_config_is_read_as_hparams_with_item_and_attribute_access() -> None:
    ckpt = read_sovits_checkpoint(TINY_V2)
    assert isinstance(ckpt.config, HParams)
    assert ckpt.config.data.hop_length == 640
    assert ckpt.config["model"]["upsample_rates"] == [10, 8, 2, 2, 2]
    assert ckpt.config.to_dict()["train"]["segment_size"] == 20480


@needs_golden
def test_weights_are_fp32_and_fused() -> None:
    ckpt = read_sovits_checkpoint(TINY_V2)
    assert not any(k.endswith(("weight_g", "weight_v")) for k in ckpt.weights)
    assert all(t.dtype == torch.float32 for t in ckpt.weights.values() if t.is_floating_point())
    assert ckpt.weights["dec.ups.0.weight"].shape == (64, 32, 16)  # ConvTranspose: (in, out, k)


@needs_golden
def test_pro_file_without_header_is_recognised_by_its_weights(tmp_path: Path) -> None:
    data = bytearray(TINY_V2PRO.read_bytes())
    data[:2] = b"PK"
    plain = tmp_path / "renamed_pro.pth"
    plain.write_bytes(bytes(data))
    _, info = load_sovits(plain)
    assert info.model_version == "v2Pro"
    assert info.notes and "sv_emb" in info.notes[0]


# -- weight norm ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("transpose", [False, True])
def test_weight_norm_fusion_matches_torch(transpose: bool) -> None:
    torch.manual_seed(0)
    conv = nn.ConvTranspose1d(6, 4, 5, 2) if transpose else nn.Conv1d(6, 4, 5)
    conv = torch.nn.utils.weight_norm(conv)
    with torch.no_grad():
        conv.weight_g.mul_(torch.rand_like(conv.weight_g) + 0.5)
    state = {f"m.{k}": v.detach().half() for k, v in conv.state_dict().items()}
    fused = fuse_weight_norm(state)
    assert set(fused) == {"m.weight", "m.bias"}
    # Reference: torch's weight norm applied to the exactly upcast fp16 values.
    ref = nn.ConvTranspose1d(6, 4, 5, 2) if transpose else nn.Conv1d(6, 4, 5)
    ref = torch.nn.utils.weight_norm(ref)
    ref.load_state_dict({k[2:]: v.float() for k, v in state.items()})
    ref(torch.zeros(1, 6, 8))  # the forward pre-hook recomputes .weight
    assert fused["m.weight"].dtype == torch.float32
    torch.testing.assert_close(fused["m.weight"], ref.weight.detach(), atol=1e-6, rtol=0)
    assert torch.equal(fused["m.bias"], state["m.bias"].float())


def test_weight_norm_without_magnitude_is_an_error() -> None:
    with pytest.raises(CheckpointError, match="weight_g"):
        fuse_weight_norm({"x.weight_v": torch.ones(2, 2, 1)})


# -- module names match the official state_dict ----------------------------------------------


def _official_listing(version: str) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    current = None
    for line in LISTINGS.read_text().splitlines():
        if line.startswith("====="):
            current = line.split()[2]
            continue
        if current != version or "\t" not in line:
            continue
        name, shape = line.split("\t")
        keys[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return keys


@pytest.mark.skipif(not LISTINGS.is_file(), reason="official state_dict listing not found")
@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
def test_full_size_model_has_the_official_tensors(version: str) -> None:
    official = _official_listing(version)
    expected: dict[str, tuple[int, ...]] = {}
    for name, shape in official.items():
        if name.startswith("enc_q.") or name.endswith(("weight_g", "inited", "cluster_size", "embed_avg")):
            continue
        if name.endswith(".weight_v"):
            name = name[: -len("_v")]
        if name == "quantizer.vq.layers.0._codebook.embed":
            name = "codebook"
        expected[name] = shape
    model = SoVITSModel(SoVITSConfig.official(version))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected


# -- files that are not (supported) SoVITS checkpoints ------------------------------------------


def test_random_bytes_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        load_sovits(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        load_sovits(tmp_path / "absent.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_sovits(tmp_path / "empty.pth")


def test_zip_that_is_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_sovits(path)


def test_torch_file_with_other_content(tmp_path: Path) -> None:
    path = tmp_path / "state.pth"
    torch.save({"conv.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="'weight' and 'config'"):
        load_sovits(path)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickle code ran",))


def test_pickle_with_foreign_globals_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hostile.pth"
    buffer = io.BytesIO()
    torch.save({"weight": {}, "config": _Payload()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError):
        load_sovits(path)
    assert "pickle code ran" not in capsys.readouterr().out


@needs_golden
def test_gpt_checkpoint_is_named_as_such() -> None:
    with pytest.raises(CheckpointError, match="GPT"):
        load_sovits(TINY_S1)


@needs_golden
@pytest.mark.parametrize("marker", [b"02", b"03", b"04"])
def test_v3_v4_headers_are_unsupported(tmp_path: Path, marker: bytes) -> None:
    data = bytearray(TINY_V2.read_bytes())
    data[:2] = marker
    path = tmp_path / "v3.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not supported"):
        load_sovits(path)


@needs_golden
def test_pro_header_on_weights_without_sv_emb(tmp_path: Path) -> None:
    data = bytearray(TINY_V2.read_bytes())
    data[:2] = b"06"
    path = tmp_path / "fake_proplus.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sv_emb"):
        load_sovits(path)


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)
