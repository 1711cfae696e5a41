"""`voxroom`: the one console script. `voxroom serve` runs the server on its embedded defaults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from voxroom.streaming.config import ConfigError, load_config


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    import uvloop

    flags: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "ice_addresses": args.ice_address,
        "models_dir": args.models,
        "config_file": args.config,
        "log_level": args.log_level,
    }
    try:
        config = load_config(flags)
    except ConfigError as exc:
        print(f"voxroom: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from voxroom.models.piper_voice import PiperVoiceEngine
    from voxroom.streaming.app import VoxroomServer
    from voxroom.streaming.embedded import uvicorn_config

    engine = PiperVoiceEngine()
    server = VoxroomServer(config, engine)
    uv_server = uvicorn.Server(uvicorn_config(server, config, log_level=config.log_level))

    async def run() -> None:
        serve_task = asyncio.create_task(uv_server.serve())
        while not uv_server.started and not serve_task.done():
            await asyncio.sleep(0.05)
        if uv_server.started:
            port = uv_server.servers[0].sockets[0].getsockname()[1] if config.port == 0 else config.port
            config.port = port
            print(f"voxroom is serving. Open the host console:\n    {server.console_url()}", flush=True)
            if not engine.can_clone:
                print("Voice: the stock voice (cannot clone). For GPT-SoVITS: `voxroom models pull v2pro`, "
                      "then `voxroom serve --models DIR`.", flush=True)
        await serve_task

    uvloop.run(run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxroom", description="AI voice co-host for live rooms")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (defaults: 127.0.0.1:8080, stock voice)")
    serve.add_argument("--host", help="address to listen on (VOXROOM_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (VOXROOM_PORT; default 8080; 0 picks a free one)")
    serve.add_argument("--data-dir", help="where the database and voices live (VOXROOM_DATA_DIR)")
    serve.add_argument("--ice-address", action="append", help="offer this address in WebRTC ICE; repeat for "
                       "several (VOXROOM_ICE_ADDRESSES, comma-separated). 127.0.0.1 for same-machine use")
    serve.add_argument("--models", help="GPT-SoVITS models directory (VOXROOM_MODELS)")
    serve.add_argument("--config", help="TOML config file with the same settings (VOXROOM_CONFIG)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
