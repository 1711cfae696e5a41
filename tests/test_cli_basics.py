"""The `voxroom` command's edges: --version, `models pull` with no network (one line, exit 1, no
traceback), and `serve --models DIR` refusing a directory without the weights before torch loads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

CLI = [sys.executable, "-m", "voxroom.streaming.cli"]


def test_version() -> None:
    result = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"voxroom {version('voxroom')}"


def test_models_pull_without_network_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused, as with no network
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "HF_ENDPOINT": closed, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([*CLI, "models", "pull", "v2pro", "--dir", str(tmp_path / "m")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"voxroom: cannot reach {closed}") and "HF_ENDPOINT" in line


def test_serve_refuses_a_models_dir_without_weights_before_loading_torch(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    (empty / "README.txt").write_text("not weights")
    # In-process, so the test can see what was imported: the refusal comes before torch (which takes
    # seconds to import) and before the stock voice loads.
    probe = ("import sys; from voxroom.streaming.cli import main; "
             f"rc = main(['serve', '--models', {str(empty)!r}, '--port', '0', '--data-dir', {str(tmp_path / 'd')!r}]); "
             "print('torch' in sys.modules, 'onnxruntime' in sys.modules, rc)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False False 2"
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"voxroom: cannot use --models {empty}") and "voxroom models pull" in line
