"""GPT-SoVITS weights on disk: what each version needs, `voxroom models pull`, and `models list`.
`models pull asr` fetches the multilingual speech recognizer enrollment uses the same way.

The official pretrained files live in the Hugging Face model repo lj1995/GPT-SoVITS under the
same relative paths the official code uses (FACTS.md, "Download locations"). `pull` fetches one
version's set with huggingface_hub (which honours HF_ENDPOINT, e.g. a mirror), verifies every
file against the hub's SHA-256 (the LFS ETag), and writes `voxroom-models.json` beside them.
Nothing else in voxroom downloads: `voxroom serve --models DIR` only reads what is here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HF_REPO = "lj1995/GPT-SoVITS"
ASR = "asr"  # `models pull asr`: the speech recognizer for zh/ja/ko/yue enrollment takes (speech_recognition.py)
MANIFEST = "voxroom-models.json"

_HUBERT = ["chinese-hubert-base/config.json", "chinese-hubert-base/preprocessor_config.json",
           "chinese-hubert-base/pytorch_model.bin"]
_ROBERTA = ["chinese-roberta-wwm-ext-large/config.json", "chinese-roberta-wwm-ext-large/pytorch_model.bin",
            "chinese-roberta-wwm-ext-large/tokenizer.json"]
_SV = "sv/pretrained_eres2netv2w24s4ep4.ckpt"


@dataclass(frozen=True)
class ModelSet:
    version: str
    gpt: str  # s1 .ckpt
    sovits: str  # s2 .pth
    speaker: str | None = None  # ERes2NetV2, v2Pro family only

    @property
    def files(self) -> list[str]:
        return [self.gpt, self.sovits, *([self.speaker] if self.speaker else []), *_HUBERT, *_ROBERTA]


MODEL_SETS = {
    "v2": ModelSet("v2", "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
                   "gsv-v2final-pretrained/s2G2333k.pth"),
    "v2pro": ModelSet("v2pro", "s1v3.ckpt", "v2Pro/s2Gv2Pro.pth", _SV),
    "v2proplus": ModelSet("v2proplus", "s1v3.ckpt", "v2Pro/s2Gv2ProPlus.pth", _SV),
}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsError(RuntimeError):
    """Weights missing, corrupt or unreachable; the message says what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' transport errors: huggingface_hub 2 speaks httpx2; httpx is caught too in case a
    version of it is the one in use. Each is optional."""
    errors: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def pull(
    version: str,
    target: Path,
    *,
    endpoint: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Download one version's files (or, for "asr", the multilingual speech recognizer that checks what
    was said in enrollment takes) into `target` and verify them; returns the manifest path."""
    if version != ASR and version not in MODEL_SETS:
        raise WeightsError(f"unknown version {version!r}; choose one of {', '.join([*MODEL_SETS, ASR])}")
    endpoint = endpoint or os.environ.get("HF_ENDPOINT")
    target.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(target)
    if not progress:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if version == ASR:
        from voxroom.models.speech_recognition import ASR_DIR, ASR_FILES, ASR_REPO

        for name in ASR_FILES:
            manifest["files"][f"{ASR_DIR}/{name}"] = _fetch(ASR_REPO, name, target / ASR_DIR, endpoint, log)
    else:
        for name in MODEL_SETS[version].files:
            manifest["files"][name] = _fetch(HF_REPO, name, target, endpoint, log)
    if version not in manifest["versions"]:
        manifest["versions"].append(version)
    manifest["updated"] = time.time()
    path = target / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


def _fetch(repo: str, name: str, local_dir: Path, endpoint: str | None, log: Callable[[str], None]) -> dict:
    """Download `name` of `repo` into `local_dir`, check it against the hub's SHA-256; its manifest entry."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    url = hf_hub_url(repo, name, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url)
        expected = (meta.etag or "").strip('"').lower()
        local = Path(hf_hub_download(repo, name, local_dir=local_dir, endpoint=endpoint))
    except (HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"could not download {name} from {endpoint or 'the Hugging Face hub'}: "
                           f"{_first_line(exc)}; check HF_ENDPOINT (a mirror must carry {repo}) or copy the "
                           f"files into {local_dir} by hand") from None
    except _network_errors() as exc:  # no network, refused, DNS, TLS, timeouts: one plain line
        raise WeightsError(f"cannot reach {endpoint or 'the Hugging Face hub'} ({_first_line(exc)}); check the "
                           "network or set HF_ENDPOINT to a mirror") from None
    actual = sha256_of(local)
    if _SHA256.match(expected) and actual != expected:
        local.unlink(missing_ok=True)
        raise WeightsError(f"{name}: checksum mismatch (expected {expected[:12]}…, got {actual[:12]}…); "
                           "the download was removed, run the pull again")
    log(f"  {name}: {local.stat().st_size / 1e6:.1f} MB, sha256 {actual[:12]}…"
        f"{'' if _SHA256.match(expected) else ' (the hub gave no checksum)'}")
    return {"sha256": actual, "size": local.stat().st_size, "verified": bool(_SHA256.match(expected))}


def _read_manifest(target: Path) -> dict:
    try:
        manifest = json.loads((target / MANIFEST).read_text())
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
            manifest.setdefault("versions", [])
            return manifest
    except (OSError, ValueError):
        pass
    return {"repo": HF_REPO, "versions": [], "files": {}}


@dataclass(frozen=True)
class InstalledSet:
    version: str
    complete: bool
    missing: list[str]
    root: Path

    @property
    def model_set(self) -> ModelSet:
        return MODEL_SETS[self.version]

    def path(self, name: str) -> Path:
        return self.root / name


def installed(models_dir: Path) -> list[InstalledSet]:
    """Which versions `models_dir` holds, complete or not (missing files listed)."""
    result = []
    for version, model_set in MODEL_SETS.items():
        present = [n for n in model_set.files if (models_dir / n).is_file()]
        if present:
            missing = [n for n in model_set.files if n not in present]
            result.append(InstalledSet(version, not missing, missing, models_dir))
    return result


def best_installed(models_dir: Path) -> InstalledSet:
    """The newest complete set in `models_dir`, or a WeightsError saying how to get one."""
    complete = [s for s in installed(models_dir) if s.complete]
    if not complete:
        raise WeightsError(f"no complete GPT-SoVITS model set in {models_dir}; run "
                           f"`voxroom models pull v2pro --dir {models_dir}`")
    order = ["v2proplus", "v2pro", "v2"]
    return sorted(complete, key=lambda s: order.index(s.version))[0]


def verify(models_dir: Path) -> list[str]:
    """Files whose bytes no longer match the checksum recorded when they were pulled."""
    manifest = _read_manifest(models_dir)
    return [name for name, info in manifest["files"].items()
            if not (models_dir / name).is_file() or sha256_of(models_dir / name) != info.get("sha256")]
