"""The layout DESIGN.md fixes: dependencies point one way, and every package is installed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"agent": "voxroom.agent", "streaming": "voxroom.streaming", "models": "voxroom.models", "web": "voxroom.web"}
FORBIDDEN = {
    "models": ("voxroom.agent", "voxroom.streaming", "voxroom.web"),  # speech knows no server
    "agent": ("voxroom.streaming", "voxroom.web"),  # the brain speaks into a sink it is handed
    "web": ("voxroom.agent", "voxroom.streaming", "voxroom.models"),
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
