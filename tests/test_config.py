"""Config layers (defaults < TOML < environment < flags), accounts and grants, and `voxroom serve` itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from voxroom.streaming.accounts import Accounts, AuthError, open_database
from voxroom.streaming.config import ConfigError, ServerConfig, load_config


def test_defaults_need_no_configuration() -> None:
    config = load_config({}, environ={"HOME": "/home/u"})
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.data_dir == Path("/home/u/.local/share/voxroom")
    assert config.models_dir is None and config.openai_base_url is None and config.ice_addresses == []
    assert config.precision is None  # the engine picks: fp16 on CUDA, fp32 on the CPU
    assert config.device == "auto"
    assert (config.max_batch, config.max_queue) == (8, 8)


def test_layers_override_in_order(tmp_path: Path) -> None:
    file = tmp_path / "voxroom.toml"
    file.write_text('port = 9000\nhost = "0.0.0.0"\nice_addresses = ["10.0.0.5"]\nllm_model = "file-model"\n'
                    'precision = "int8"\n')
    env = {"VOXROOM_CONFIG": str(file), "VOXROOM_PORT": "9100", "VOXROOM_ICE_ADDRESSES": "127.0.0.1, ::1",
           "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "HOME": str(tmp_path)}
    config = load_config({"port": 9200}, environ=env)
    assert config.port == 9200  # flag beats env beats file
    assert config.host == "0.0.0.0"  # only in the file
    assert config.ice_addresses == ["127.0.0.1", "::1"]  # env beats file
    assert config.llm_model == "file-model" and config.openai_base_url == "http://127.0.0.1:1/v1"
    assert config.config_file == file
    assert config.precision == "int8"
    assert load_config({"precision": "fp16"}, environ=env).precision == "fp16"


@pytest.mark.parametrize("content, message", [
    ("port = ", "not valid TOML"),
    ("colour = 'red'", "unknown settings"),
    ("port = 'eighty'", "bad value for 'port'"),
    ("port = 70000", "bad value for 'port'"),
    ("ice_addresses = [1, 2]", "bad value for 'ice_addresses'"),
    ("precision = 'fp64'", "'precision' must be one of fp32, fp16, bf16, int8, auto"),
    ("device = 'gpu'", "'device' must be auto, cpu, cuda or cuda:N, not 'gpu'"),
    ("device = 'cuda:'", "'device' must be auto, cpu, cuda or cuda:N"),
    ("device = 0", "'device' must be auto, cpu, cuda or cuda:N"),
    ("max_batch = 0", "bad value for 'max_batch'"),
    ("max_queue = -1", "bad value for 'max_queue'"),
    ("max_batch = 'many'", "bad value for 'max_batch'"),
])
def test_bad_config_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config({"config_file": str(file)}, environ={})


def test_batch_limits_come_from_every_layer(tmp_path: Path) -> None:
    file = tmp_path / "voxroom.toml"
    file.write_text("max_batch = 4\nmax_queue = 0\n")
    config = load_config({"config_file": str(file)}, environ={})
    assert (config.max_batch, config.max_queue) == (4, 0)
    env = {"VOXROOM_CONFIG": str(file), "VOXROOM_MAX_BATCH": "16"}
    assert load_config({}, environ=env).max_batch == 16  # env beats file
    assert load_config({"max_queue": 3}, environ=env).max_queue == 3  # flag beats file


def test_api_fair_use_limits_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "voxroom.toml"
    file.write_text("api_requests_per_min = 30\napi_speeches_per_account = 2\n")
    config = load_config({"config_file": str(file)}, environ={})
    assert (config.api_requests_per_min, config.api_speeches_per_account) == (30, 2)
    env = {"VOXROOM_CONFIG": str(file), "VOXROOM_API_SPEECHES_PER_ACCOUNT": "6"}
    assert load_config({}, environ=env).api_speeches_per_account == 6
    for bad in ({"VOXROOM_API_REQUESTS_PER_MIN": "0"}, {"VOXROOM_API_SPEECHES_PER_ACCOUNT": "many"}):
        with pytest.raises(ConfigError):
            load_config({}, environ=bad)


def test_device_comes_from_every_layer(tmp_path: Path) -> None:
    file = tmp_path / "voxroom.toml"
    file.write_text('device = "cpu"\n')
    assert load_config({"config_file": str(file)}, environ={}).device == "cpu"
    env = {"VOXROOM_CONFIG": str(file), "VOXROOM_DEVICE": "auto"}
    assert load_config({}, environ=env).device == "auto"  # env beats file
    assert load_config({"device": "cpu"}, environ={"VOXROOM_DEVICE": "auto"}).device == "cpu"  # flag beats env


def test_cuda_on_a_machine_without_cuda_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for setting in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"'device' is {setting}, but torch .* finds no CUDA device"):
            load_config({"device": setting}, environ={})
    assert load_config({"device": "auto"}, environ={}).device == "auto"  # resolved by the engine, never an error


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config({"config_file": str(tmp_path / "nope.toml")}, environ={})


def test_tokens_are_stored_hashed_and_grants_are_scoped(tmp_path: Path) -> None:
    db = open_database(tmp_path / "db.sqlite3")
    accounts = Accounts(db)
    account, token = accounts.create("alice")
    assert accounts.by_token(token) == account
    raw = (tmp_path / "db.sqlite3").read_bytes() + (tmp_path / "db.sqlite3-wal").read_bytes()
    assert token.encode() not in raw
    with pytest.raises(AuthError):
        accounts.by_token(token + "x")
    grant = accounts.mint_grant(account, "room1", "listener", ttl=60, now=1000)
    checked = accounts.check_grant(grant, now=1030)
    assert (checked.room, checked.role, checked.account) == ("room1", "listener", account.id)
    with pytest.raises(AuthError, match="expired"):
        accounts.check_grant(grant, now=1061)
    body, sig = grant.split(".")
    with pytest.raises(AuthError, match="signature"):
        accounts.check_grant(body[:-2] + "xx." + sig, now=1000)
    with pytest.raises(AuthError, match="malformed"):
        accounts.check_grant("vxg_nonsense", now=1000)
    with pytest.raises(ValueError):
        accounts.mint_grant(account, "room1", "admin")
    # another server (another key) does not accept this server's grants
    other = Accounts(open_database(tmp_path / "other" / "db.sqlite3"))  # another data dir, another key
    with pytest.raises(AuthError):
        other.check_grant(grant, now=1000)


def test_voxroom_serve_first_run_prints_the_console_url(tmp_path: Path) -> None:
    """What a new user does: run the console script with no configuration but a data dir."""
    env = {**os.environ, "VOXROOM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = None
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/console#token=(vxr_\S+)", line)
            if match:
                url, token = match.group(1), match.group(2)
        assert url, "no console URL printed"
        assert (tmp_path / "data" / "voxroom.sqlite3").exists()
        assert oct((tmp_path / "data" / "owner-token").stat().st_mode & 0o777) == "0o600"
        req = urllib.request.Request(url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as res:
            assert b'"owner"' in res.read()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_refuses_a_bad_config_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'x'")
    result = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "bad value for 'port'" in result.stderr


def test_serve_refuses_cuda_without_cuda_in_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--device", "cuda"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"voxroom: 'device' is cuda, but torch {torch.__version__} finds no CUDA device on this machine; use cpu or auto"
    ]


def test_server_config_dataclass_defaults_are_independent() -> None:
    a, b = ServerConfig(), ServerConfig()
    a.ice_addresses.append("1.2.3.4")
    assert b.ice_addresses == []


def test_bad_sfu_endpoints_in_a_config_file_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "voxroom.toml"
    path.write_text('[[sfu_endpoints]]\nurl = "ftp://sfu.example.net/whip"\n')
    with pytest.raises(ConfigError, match="'sfu_endpoints': 'url' must be an http:// or https:// address"):
        load_config({"config_file": str(path)}, environ={})
    path.write_text('[[sfu_endpoints]]\nurl = "https://sfu.example.net/whip/{room}"\nsecret = "x"\n')
    with pytest.raises(ConfigError, match="'sfu_endpoints': each endpoint is an object with 'url'"):
        load_config({"config_file": str(path)}, environ={})
    path.write_text('[[sfu_endpoints]]\nurl = "https://sfu.example.net/whip/{room}"\ntoken = "t"\n'
                    'playback = { janus = "https://sfu.example.net/janus", room = 4242 }\n')
    assert load_config({"config_file": str(path)}, environ={}).sfu_endpoints == [{
        "url": "https://sfu.example.net/whip/{room}", "token": "t",
        "playback": {"janus": "https://sfu.example.net/janus", "room": 4242}}]


def test_new_rooms_publish_to_the_config_files_sfu_endpoints(tmp_path: Path) -> None:
    """`voxroom serve --config` with a default WHIP endpoint: a new room publishes to it at once, its id
    in the URL and the token as bearer; the endpoint refuses, and the room says so in its SFU state."""
    import http.server
    import json
    import threading

    seen: list[tuple[str, str | None]] = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            seen.append((self.path, self.headers.get("Authorization")))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(401)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"bad token")

        def log_message(self, *args: object) -> None:
            pass

    whip = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=whip.serve_forever, daemon=True).start()
    config = tmp_path / "voxroom.toml"
    config.write_text(f'[[sfu_endpoints]]\nurl = "http://127.0.0.1:{whip.server_port}/whip/endpoint/{{room}}"\n'
                      'token = "from-the-config"\n')
    env = {**os.environ, "VOXROOM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--port", "0",
                             "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        match = None
        deadline = time.monotonic() + 60
        while match is None and time.monotonic() < deadline:
            match = re.search(r"(http://127\.0\.0\.1:\d+)/console#token=(vxr_\S+)", proc.stdout.readline())
        assert match, "no console URL printed"
        base, token = match.group(1), match.group(2)

        def call(method: str, path: str, body: object = None) -> dict[str, object]:
            req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as res:
                answer: dict[str, object] = json.loads(res.read())
            return answer

        room = call("POST", "/api/rooms", {"name": "published by default"})
        deadline = time.monotonic() + 30
        while (view := call("GET", f"/api/rooms/{room['id']}/sfu"))["endpoints"][0]["state"] != "error":  # type: ignore[index]
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        endpoint = view["endpoints"][0]  # type: ignore[index]
        assert endpoint["url"] == f"http://127.0.0.1:{whip.server_port}/whip/endpoint/{room['id']}"
        assert "401" in endpoint["error"] and "token" not in endpoint
        assert seen[0] == (f"/whip/endpoint/{room['id']}", "Bearer from-the-config")
        call("DELETE", f"/api/rooms/{room['id']}")
    finally:
        proc.terminate()
        proc.wait(10)
        whip.shutdown()


def test_ice_servers_come_from_toml_or_the_environment_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "voxroom.toml"
    path.write_text('ice_transport_policy = "relay"\n[[ice_servers]]\nurls = "turn:turn.example.net:3478"\n'
                    'secret = "s"\n[[ice_servers]]\nurls = ["stun:stun.example.net:3478"]\n')
    config = load_config({"config_file": str(path)}, environ={})
    assert config.ice_transport_policy == "relay" and len(config.ice_servers) == 2
    env = {"VOXROOM_ICE_SERVERS": '[{"urls": "turn:t.example.net", "username": "u", "credential": "c"}]'}
    assert load_config({}, environ=env).ice_servers == [{"urls": "turn:t.example.net", "username": "u", "credential": "c"}]
    for bad, message in [('[{"urls": "turn:t.example.net"}]', "needs 'username' and 'credential', or 'secret'"),
                         ('[{"urls": "http://t.example.net"}]', "stun:, stuns:, turn: or turns:"),
                         ("[{", "'ice_servers': Expecting")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config({}, environ={"VOXROOM_ICE_SERVERS": bad})
    with pytest.raises(ConfigError, match="must be one of all, relay"):
        load_config({}, environ={"VOXROOM_ICE_TRANSPORT_POLICY": "turn"})
    with pytest.raises(ConfigError, match="relay needs a TURN server"):
        load_config({}, environ={"VOXROOM_ICE_TRANSPORT_POLICY": "relay",
                                 "VOXROOM_ICE_SERVERS": '[{"urls": "stun:s.example.net"}]'})


def test_serve_refuses_a_turn_server_without_credentials_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--ice-servers",
                             '[{"urls": "turn:turn.example.net:3478"}]'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("voxroom: 'ice_servers': TURN server turn:turn.example.net:3478 needs "
                                     "'username' and 'credential', or 'secret'")


def test_the_api_v2_reference_directory_is_off_unless_set(tmp_path: Path, stock_engine: object) -> None:
    import asyncio

    from voxroom.streaming.reference_files import ReferenceFileError, ReferenceFiles

    assert load_config({}, environ={}).api_v2_reference_dir is None
    set_by_env = load_config({}, environ={"VOXROOM_API_V2_REFERENCE_DIR": str(tmp_path)})
    assert set_by_env.api_v2_reference_dir == tmp_path
    assert load_config({"api_v2_reference_dir": "~/refs"}, environ={"HOME": "/home/x"}).api_v2_reference_dir \
        == Path("~/refs").expanduser()
    (tmp_path / "clip.wav").write_bytes(b"RIFF")
    stock_only = ReferenceFiles(tmp_path, stock_engine)  # type: ignore[arg-type]
    with pytest.raises(ReferenceFileError, match="need GPT-SoVITS"):
        asyncio.run(stock_only.voice("clip.wav", "hello", "en"))
