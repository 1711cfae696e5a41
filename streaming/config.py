"""The one config loader: embedded defaults < TOML file < environment < command-line flags.

`voxroom serve` needs none of it (127.0.0.1:8080, data under the user's data directory, stock
voice, read-aloud replies). Every setting has the same name in all three places: `port` in the
file, VOXROOM_PORT in the environment, --port on the command line (OpenAI's own variable names
are honoured for the LLM endpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxroom.models.gpt_sovits.devices import DEVICE_CHOICES, DEVICE_SETTING


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    environ = dict(os.environ if environ is None else environ)
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    base = environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(base) / "voxroom"


@dataclass(frozen=True)
class LLMSettings:
    """An OpenAI-compatible endpoint for the co-host's replies (the server's, or an account's own)."""

    base_url: str
    model: str
    api_key: str = ""

    def describe(self) -> str:
        return f"LLM at {self.base_url}, model {self.model}"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=default_data_dir)
    # Addresses offered as ICE host candidates. Empty: every non-loopback interface (aioice's
    # default). aioice never offers loopback by itself, so a same-machine setup lists 127.0.0.1.
    ice_addresses: list[str] = field(default_factory=list)
    # STUN/TURN servers for voxroom's peers and the pages' (streaming/ice_servers.py): TOML
    # `[[ice_servers]]` tables, VOXROOM_ICE_SERVERS as JSON. `ice_transport_policy = "relay"`: pages
    # use TURN relays only.
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    ice_transport_policy: str = "all"
    models_dir: Path | None = None  # GPT-SoVITS weights (`voxroom models pull`); None: stock voice only
    # GPT-SoVITS numerics: fp32 | fp16 | bf16 | int8 (bench/gpt_sovits.py measures each) | auto (each
    # network's fastest, timed at start-up); None: fp16 on CUDA, fp32 on the CPU.
    precision: str | None = None
    device: str = "auto"  # where GPT-SoVITS runs: auto | cpu | cuda | cuda:N (auto: cuda when torch sees one)
    # GPT-SoVITS streams decoded as one batch, and streams that may wait for a place; beyond both a
    # speech is refused as busy (HTTP 429 / protocol `busy`).
    max_batch: int = 8
    max_queue: int = 8
    # Fair use of the speech APIs (/v1/audio/speech, /tts, SillyTavern), per account: requests a
    # minute (bursts of half of it) and speeches queued or speaking at once; beyond them HTTP 429.
    api_requests_per_min: int = 120
    api_speeches_per_account: int = 4
    openai_base_url: str | None = None  # an OpenAI-compatible endpoint turns on LLM replies
    openai_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    log_level: str = "info"
    # WHIP endpoints every new room publishes to (TOML `[[sfu_endpoints]]` tables, each as the body of
    # PUT /api/rooms/ROOM/sfu takes it: url, token, playback); `{room}` in a url becomes the room's id.
    sfu_endpoints: list[dict[str, Any]] = field(default_factory=list)
    # Off unless set: a directory whose audio files GPT-SoVITS api_v2 callers may name as
    # `ref_audio_path` (streaming/reference_files.py); nothing outside it is ever opened.
    api_v2_reference_dir: Path | None = None
    config_file: Path | None = None

    def llm_settings(self) -> LLMSettings | None:
        """The server's own LLM endpoint (None: read-aloud unless an account sets one in the console)."""
        if not self.openai_base_url:
            return None
        return LLMSettings(self.openai_base_url, self.llm_model, self.openai_api_key or "")


class ConfigError(ValueError):
    pass


PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")


_ENV = {
    "host": "VOXROOM_HOST",
    "port": "VOXROOM_PORT",
    "data_dir": "VOXROOM_DATA_DIR",
    "ice_addresses": "VOXROOM_ICE_ADDRESSES",
    "ice_servers": "VOXROOM_ICE_SERVERS",
    "ice_transport_policy": "VOXROOM_ICE_TRANSPORT_POLICY",
    "models_dir": "VOXROOM_MODELS",
    "precision": "VOXROOM_PRECISION",
    "device": "VOXROOM_DEVICE",
    "max_batch": "VOXROOM_MAX_BATCH",
    "max_queue": "VOXROOM_MAX_QUEUE",
    "api_requests_per_min": "VOXROOM_API_REQUESTS_PER_MIN",
    "api_speeches_per_account": "VOXROOM_API_SPEECHES_PER_ACCOUNT",
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "llm_model": "VOXROOM_LLM_MODEL",
    "log_level": "VOXROOM_LOG_LEVEL",
    "api_v2_reference_dir": "VOXROOM_API_V2_REFERENCE_DIR",
}


_COUNTS = {"max_batch": (1, 256), "max_queue": (0, 256), "api_requests_per_min": (1, 100_000),
           "api_speeches_per_account": (1, 256)}  # whole-number settings: their bounds


def _coerce(name: str, value: Any) -> Any:
    if name == "precision" and value not in PRECISIONS:
        raise ConfigError(f"'precision' must be one of {', '.join(PRECISIONS)}, not {value!r}")
    if name == "device":
        return _checked_device(value)
    if name == "sfu_endpoints":
        return _checked_sfu_endpoints(value)
    if name in ("ice_servers", "ice_transport_policy"):
        return _checked_ice(name, value)
    try:
        if name == "port":
            port = int(value)
            if not 0 <= port <= 65535:
                raise ValueError
            return port
        if name in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            number = int(value)
            low, high = _COUNTS[name]
            if not low <= number <= high:
                raise ValueError
            return number
        if name in ("data_dir", "models_dir", "config_file", "api_v2_reference_dir"):
            return Path(value).expanduser() if value not in (None, "") else None
        if name == "ice_addresses":
            if isinstance(value, str):
                return [a.strip() for a in value.split(",") if a.strip()]
            if isinstance(value, list) and all(isinstance(a, str) for a in value):
                return value
            raise ValueError
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for {name!r}: {value!r}") from None


def _checked_sfu_endpoints(value: Any) -> list[dict[str, Any]]:
    """Checked as PUT /api/rooms/ROOM/sfu checks its body (aiortc is imported only when it is set)."""
    if value == []:
        return []
    from voxroom.streaming.whip_egress import parse_endpoints

    try:
        parse_endpoints({"endpoints": value})
    except ValueError as exc:
        raise ConfigError(f"'sfu_endpoints': {exc}") from None
    checked: list[dict[str, Any]] = value
    return checked


def _checked_ice(name: str, value: Any) -> Any:
    from voxroom.streaming.ice_servers import check_policy, parse_ice_servers

    try:
        if name == "ice_transport_policy":
            return check_policy(value)
        if isinstance(value, str):  # the environment's JSON
            value = json.loads(value)
        parse_ice_servers(value)
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ConfigError(f"{name!r}: {exc}") from None
    return value


def _checked_device(value: Any) -> str:
    """A well-formed device setting; an explicit cuda one must name a CUDA device torch can use.

    torch is imported only for cuda settings, so that a CPU server starts without it here."""
    if not isinstance(value, str) or not DEVICE_SETTING.fullmatch(value):
        raise ConfigError(f"'device' must be {DEVICE_CHOICES}, not {value!r}")
    if value.startswith("cuda"):
        from voxroom.models.gpt_sovits.devices import DeviceError, resolve_device

        try:
            resolve_device(value)
        except DeviceError as exc:
            raise ConfigError(str(exc)) from None
    return value


def load_config(flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> ServerConfig:
    """Merge the layers; `flags` holds only the options given on the command line."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = dict(os.environ if environ is None else environ)
    names = {f.name for f in dataclasses.fields(ServerConfig)}

    config_file = flags.get("config_file") or environ.get("VOXROOM_CONFIG")
    values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file).expanduser()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown settings in {path}: {sorted(unknown)}")
        values.update(data)
        values["config_file"] = path
    for name, var in _ENV.items():
        if environ.get(var):
            values[name] = environ[var]
    values.update(flags)
    config = ServerConfig(data_dir=default_data_dir(environ))
    for name, value in values.items():
        if name not in names:
            raise ConfigError(f"unknown setting {name!r}")
        setattr(config, name, _coerce(name, value) if name != "config_file" else Path(value))
    if config.ice_transport_policy == "relay" and not any(
            str(u).startswith(("turn:", "turns:")) for s in config.ice_servers
            for u in ([s["urls"]] if isinstance(s["urls"], str) else s["urls"])):
        raise ConfigError("'ice_transport_policy' relay needs a TURN server in 'ice_servers' (else no listener connects)")
    return config
