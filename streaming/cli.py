"""`voxroom`: the one console script. `voxroom serve` runs the server on its embedded defaults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from voxroom.streaming.config import ConfigError, load_config
from voxroom.streaming.native_memory import limit_malloc_arenas


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    flags: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "ice_addresses": args.ice_address,
        "ice_servers": args.ice_servers,
        "ice_transport_policy": args.ice_transport_policy,
        "models_dir": args.models,
        "precision": args.precision,
        "device": args.device,
        "max_batch": args.max_batch,
        "max_queue": args.max_queue,
        "api_v2_reference_dir": args.api_v2_reference_dir,
        "config_file": args.config,
        "log_level": args.log_level,
    }
    try:
        config = load_config(flags)
    except ConfigError as exc:
        print(f"voxroom: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.models_dir is not None:
        # Checked before torch or any model loads, so a wrong directory is refused at once.
        from voxroom.models.weights import WeightsError, best_installed

        try:
            best_installed(config.models_dir)
        except WeightsError as exc:
            print(f"voxroom: cannot use --models {config.models_dir}: {exc}", file=sys.stderr)
            return 2

    from voxroom.models.engine import EngineRouter
    from voxroom.models.piper_voice import PiperVoiceEngine
    from voxroom.streaming.app import VoxroomServer
    from voxroom.streaming.embedded import uvicorn_config

    engine: PiperVoiceEngine | EngineRouter = PiperVoiceEngine()
    if config.models_dir is not None:
        from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions
        from voxroom.models.weights import WeightsError

        print(f"Loading GPT-SoVITS from {config.models_dir} …", flush=True)
        try:
            cloning = GPTSoVITSEngine.from_models_dir(
                config.models_dir, precision=config.precision, device=config.device,
                options=SynthesisOptions(max_batch=config.max_batch, max_queue=config.max_queue))
        except (WeightsError, ValueError, OSError) as exc:
            print(f"voxroom: cannot use --models {config.models_dir}: {exc}", file=sys.stderr)
            return 2
        cloning.warm_up()
        print(f"GPT-SoVITS {cloning.version} ready ({cloning.precision}).", flush=True)
        engine = EngineRouter(engine, cloning)
    limit_malloc_arenas()
    try:
        sock = listening_socket(config.host, config.port)
    except OSError as exc:
        print(f"voxroom: {exc}", file=sys.stderr)
        return 2
    server = VoxroomServer(config, engine)
    uv_server = GracefulServer(uvicorn_config(server, config, log_level=config.log_level,
                                              timeout_graceful_shutdown=1))

    async def run() -> None:
        serve_task = asyncio.create_task(uv_server.serve(sockets=[sock]))
        while not uv_server.started and not serve_task.done():
            await asyncio.sleep(0.05)
        if uv_server.started:
            config.port = sock.getsockname()[1]
            print(f"voxroom is serving. Open the host console:\n    {server.console_url()}", flush=True)
            print(server.replies_banner(), flush=True)
            if not engine.can_clone:
                print("Voice: the stock voice (cannot clone). For GPT-SoVITS: `voxroom models pull v2pro`, "
                      "then `voxroom serve --models DIR`.", flush=True)
        await serve_task

    try:
        uvloop.run(run())
    finally:
        engine.close()  # the rooms are closed by now: stop the synthesis threads before the interpreter ends
    print("voxroom stopped.", flush=True)
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind the server's port before anything starts, so a port in use is one clear line (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is already in use; choose another with --port") from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port") from None
    sock.set_inheritable(True)
    return sock


class GracefulServer(uvicorn.Server):
    """uvicorn's server with voxroom's signal handling: the first SIGINT/SIGTERM shuts down cleanly
    (speech fades out, peers and sockets close, the database is flushed) and the process exits within
    `SHUTDOWN_DEADLINE` seconds whatever hangs; a second signal exits at once. No signal is re-raised
    afterwards, so an ordinary Ctrl+C prints no traceback."""

    SHUTDOWN_DEADLINE = 2.5

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit:
            print("voxroom: second signal, exiting now.", file=sys.stderr, flush=True)
            os._exit(1)
        print("voxroom: shutting down…", file=sys.stderr, flush=True)
        self.should_exit = True
        loop = asyncio.get_running_loop()
        loop.call_later(self.SHUTDOWN_DEADLINE, self._deadline)

    def _deadline(self) -> None:
        logging.getLogger(__name__).warning("shutdown took longer than %.1f s; exiting", self.SHUTDOWN_DEADLINE)
        sys.stdout.flush()
        os._exit(0)


def _models_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir).expanduser()
    return load_config({}).data_dir / "models"


def _models_pull(args: argparse.Namespace) -> int:
    from voxroom.models.weights import WeightsError, pull

    target = _models_dir(args)
    asr = args.version == "asr"
    what = "the speech recognizer for zh/ja/ko/yue enrollment (faster-whisper-small)" if asr \
        else f"GPT-SoVITS {args.version}"
    print(f"Pulling {what} into {target}", flush=True)
    try:
        manifest = pull(args.version, target)
    except WeightsError as exc:
        print(f"voxroom: {exc}", file=sys.stderr)
        return 1
    if asr:
        print(f"Done ({manifest}). Enrollment uses it with the faster-whisper package (pip install 'voxroom[asr]') "
              f"when the server's models directory is {target}")
    else:
        print(f"Done ({manifest}). Start with: voxroom serve --models {target}")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from voxroom.models.weights import installed, verify

    target = _models_dir(args)
    sets = installed(target)
    if not sets:
        print(f"No GPT-SoVITS models in {target}. Get them with: voxroom models pull v2pro --dir {target}")
        return 0
    for s in sets:
        state = "complete" if s.complete else f"incomplete, missing {', '.join(s.missing)}"
        print(f"{s.version}: {state}")
    if args.verify:
        bad = verify(target)
        print("checksums ok" if not bad else f"checksum mismatch: {', '.join(bad)}")
        return 1 if bad else 0
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voxroom")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxroom", description="AI voice co-host for live rooms")
    parser.add_argument("--version", action="version", version=f"voxroom {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (defaults: 127.0.0.1:8080, stock voice)")
    serve.add_argument("--host", help="address to listen on (VOXROOM_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (VOXROOM_PORT; default 8080; 0 picks a free one)")
    serve.add_argument("--data-dir", help="where the database and voices live (VOXROOM_DATA_DIR)")
    serve.add_argument("--ice-address", action="append", help="offer this address in WebRTC ICE; repeat for "
                       "several (VOXROOM_ICE_ADDRESSES, comma-separated). 127.0.0.1 for same-machine use")
    serve.add_argument("--ice-servers", help="STUN/TURN servers for voxroom's peers and the listener pages, as JSON: "
                       "[{\"urls\": \"turn:HOST:3478\", \"secret\": \"coturn static-auth-secret\"}] or with "
                       "username and credential (VOXROOM_ICE_SERVERS; docs/scaling.md)")
    serve.add_argument("--ice-transport-policy", choices=["all", "relay"],
                       help="relay: listener pages use TURN relays only (VOXROOM_ICE_TRANSPORT_POLICY; default all)")
    serve.add_argument("--models", help="GPT-SoVITS models directory (VOXROOM_MODELS)")
    serve.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8", "auto"],
                       help="GPT-SoVITS numerics (VOXROOM_PRECISION; default fp32; bf16 only on CPUs with AVX512-BF16/AMX; "
                       "auto: time each network's options at start-up and take the fastest)")
    serve.add_argument("--device", help="where GPT-SoVITS runs: auto, cpu, cuda or cuda:N (VOXROOM_DEVICE; default auto)")
    serve.add_argument("--max-batch", type=int, help="GPT-SoVITS streams decoded together (VOXROOM_MAX_BATCH; "
                       "default 8)")
    serve.add_argument("--max-queue", type=int, help="GPT-SoVITS streams that may wait for a place; more are refused "
                       "as busy (VOXROOM_MAX_QUEUE; default 8)")
    serve.add_argument("--api-v2-reference-dir", help="let GPT-SoVITS api_v2 callers name reference clips in this "
                       "directory as ref_audio_path (VOXROOM_API_V2_REFERENCE_DIR; default: off)")
    serve.add_argument("--config", help="TOML config file with the same settings (VOXROOM_CONFIG)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="GPT-SoVITS weights: pull (the only command that downloads), list")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    pull = models_sub.add_parser("pull", help="download one version's official files from the Hugging Face hub "
                                 "(honours HF_ENDPOINT)")
    pull.add_argument("version", choices=["v2", "v2pro", "v2proplus", "asr"],
                      help="a GPT-SoVITS version, or asr: the speech recognizer that checks zh/ja/ko/yue takes")
    pull.add_argument("--dir", help="target directory (default: DATA_DIR/models)")
    pull.set_defaults(func=_models_pull)
    listing = models_sub.add_parser("list", help="show which versions a models directory holds")
    listing.add_argument("--dir", help="models directory (default: DATA_DIR/models)")
    listing.add_argument("--verify", action="store_true", help="recompute every file's SHA-256")
    listing.set_defaults(func=_models_list)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
