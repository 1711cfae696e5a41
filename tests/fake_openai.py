"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks the Chat Completions streaming protocol (server-sent events of `chat.completion.chunk`
objects, then `data: [DONE]`) over plain asyncio streams, replays scripted replies with scripted
delays and failures, and records every request body so tests can check exactly what was sent.

    async with FakeOpenAIServer() as server:
        server.script.append(ScriptedReply("Hi there!", first_token_delay=0.3))
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")

Run it alone for manual tries or benchmarks:  python tests/fake_openai.py --port 8765 --ttft 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class ScriptedReply:
    text: str = "Hello from the fake model."
    chunks: list[str] | None = None  # the deltas; default: the text cut into words
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    mode: str = "stream"  # stream | hang | garbage | wrong_schema | error | cut

    def deltas(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\S+\s*|\s+", self.text) or [self.text]


class FakeOpenAIServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, default: ScriptedReply | None = None,
                 api_key: str | None = None, models: list[str] | None = None) -> None:
        """`api_key`: when set, a request without `Authorization: Bearer <api_key>` gets 401, as OpenAI
        answers a wrong key; `models`: what GET /models lists."""
        self.host = host
        self.port = port
        self.api_key = api_key
        self.models = models or ["fake"]
        self.default = default or ScriptedReply()
        self.script: deque[ScriptedReply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> FakeOpenAIServer:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
                await self._json(writer, 401, {"error": {"message": "Incorrect API key provided.",
                                                         "type": "invalid_request_error", "param": None,
                                                         "code": "invalid_api_key"}})
            elif method == "GET" and path.endswith("/models"):
                await self._json(writer, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})
            elif method == "POST" and path.endswith("/chat/completions"):
                request = json.loads(body or b"{}")
                self.requests.append(request)
                self.request_headers.append(headers)
                reply = self.script.popleft() if self.script else self.default
                await self._complete(writer, request, reply)
            else:
                await self._json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode() + data
        )
        await writer.drain()

    def _chunk(self, request: dict[str, Any], completion_id: str, delta: dict[str, Any],
               finish: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def _complete(self, writer: asyncio.StreamWriter, request: dict[str, Any], reply: ScriptedReply) -> None:
        if reply.mode == "hang":
            await asyncio.sleep(3600)
        await asyncio.sleep(reply.first_token_delay)
        if reply.mode == "error" or reply.status >= 400:
            status = reply.status if reply.status >= 400 else 500
            await self._json(writer, status, {"error": {"message": "scripted failure", "type": "server_error"}})
            return
        completion_id = f"chatcmpl-fake{next(self._ids)}"
        if not request.get("stream"):
            await self._json(writer, 200, {
                "id": completion_id, "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "finish_reason": "stop"}],
            })
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")

        async def send(event: str) -> None:
            data = f"data: {event}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        if reply.mode == "garbage":
            await send("{this is not json")
            await send("[DONE]")
        elif reply.mode == "wrong_schema":
            await send(json.dumps({"unexpected": True, "choices": "nope"}))
            await send("[DONE]")
        else:
            await send(json.dumps(self._chunk(request, completion_id, {"role": "assistant", "content": ""})))
            deltas = reply.deltas()
            for i, delta in enumerate(deltas):
                if i and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                await send(json.dumps(self._chunk(request, completion_id, {"content": delta})))
                if reply.mode == "cut" and i == len(deltas) // 2:
                    return  # the connection drops mid-reply
            await send(json.dumps(self._chunk(request, completion_id, {}, "stop")))
            await send("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _serve(port: int, ttft: float, text: str, chunk_delay: float) -> None:
    server = FakeOpenAIServer(port=port, default=ScriptedReply(text, first_token_delay=ttft,
                                                               chunk_delay=chunk_delay))
    await server.start()
    print(f"fake OpenAI endpoint at {server.base_url} (time to first token {ttft * 1000:.0f} ms)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds before the first token")
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between deltas")
    parser.add_argument("--text", default="Thanks for asking, that's a great question. I think so too!")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.ttft, args.text, args.chunk_delay))
