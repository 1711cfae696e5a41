"""The layout DESIGN.md fixes: dependencies point one way, and every package is installed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"agent": "voxroom.agent", "streaming": "voxroom.streaming", "models": "voxroom.models", "web": "voxroom.web",
           "client": "voxroom.client"}
FORBIDDEN = {
    "models": ("voxroom.agent", "voxroom.streaming", "voxroom.web"),  # speech knows no server
    "agent": ("voxroom.streaming", "voxroom.web"),  # the brain speaks into a sink it is handed
    "web": ("voxroom.agent", "voxroom.streaming", "voxroom.models"),
    "client": ("voxroom.agent", "voxroom.models", "voxroom.web"),  # and of the server only the protocol codec
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_dependencies_point_one_way(folder: str) -> None:
    offenders = []
    for path in (ROOT / folder).rglob("*.py"):
        for name in imported_modules(path):
            if name.startswith(FORBIDDEN[folder]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_every_package_folder_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_the_client_shares_only_the_protocol_codec_with_the_server() -> None:
    shared = set()
    for path in (ROOT / "client").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("voxroom.streaming"):
                shared.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                shared.update(a.name for a in node.names if a.name.startswith("voxroom.streaming"))
    assert shared == {"voxroom.streaming.protocol"}


def test_the_client_imports_without_torch_or_aiortc() -> None:
    """In a fresh interpreter where importing torch, aiortc (or anything under them) fails, as in an
    environment that never installed them: `voxroom.client` still imports, and pulled in neither."""
    import subprocess
    import sys

    script = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "aiortc", "torchaudio", "av", "onnxruntime", "starlette"):
            raise ImportError(f"{name} is not installed here")
        return None
sys.meta_path.insert(0, Refuse())
import voxroom.client
from voxroom.client import BotClient, RoomBot, Voxroom, VoxroomError
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "aiortc")]
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT.parent)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
