"""Bilibili live danmaku (弹幕) over its WebSocket, with our own packet code.

Every packet starts with a 16-byte big-endian header: packet length (u32, header included), header
length (u16, 16), protocol version (u16: 0/1 plain JSON or a number, 2 zlib, 3 brotli; a compressed
body holds several whole packets), operation (u32: 2 heartbeat, 3 heartbeat reply carrying the
popularity, 5 command, 7 auth, 8 auth reply) and a sequence number (u32). We send the auth packet
first (JSON: uid, roomid, protover, platform, type, and key/buvid when known), then a heartbeat every
30 s. Commands read: DANMU_MSG, SEND_GIFT (steps of one combo are summed into one event: when
COMBO_SEND names it, or when it has been quiet for `combo_quiet_s`), SUPER_CHAT_MESSAGE (price in
CNY), GUARD_BUY (levels 1 总督, 2 提督, 3 舰长) and INTERACT_WORD (entered, followed).

The room-init HTTP step (short id → room id, then the token and host list from getDanmuInfo) runs
against `api_url`; it is skipped when a WebSocket `url` is given (tests, relays). Without a token
the platform still sends chat, with masked user names.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import brotli
import websockets

from voxroom.agent.connectors.base import Connector, FatalError, MalformedFrame
from voxroom.agent.connectors.value import BILIBILI_GUARD_CNY, to_usd
from voxroom.agent.events import EventError

HEADER = struct.Struct(">IHHII")
HEADER_SIZE = HEADER.size  # 16
OP_HEARTBEAT, OP_HEARTBEAT_REPLY, OP_COMMAND, OP_AUTH, OP_AUTH_REPLY = 2, 3, 5, 7, 8
VER_PLAIN, VER_INT, VER_ZLIB, VER_BROTLI = 0, 1, 2, 3
MAX_BODY = 8 * 2**20  # decompressed bytes accepted from one frame
DEFAULT_WS_URL = "wss://broadcastlv.chat.bilibili.com:443/sub"
DEFAULT_API_URL = "https://api.live.bilibili.com"
GUARD_NAMES = {1: "总督", 2: "提督", 3: "舰长"}


@dataclass(frozen=True)
class Packet:
    version: int
    operation: int
    body: bytes
    sequence: int = 1


def encode_packet(operation: int, body: bytes, *, version: int = VER_INT, sequence: int = 1) -> bytes:
    return HEADER.pack(HEADER_SIZE + len(body), HEADER_SIZE, version, operation, sequence) + body


def _decompress(version: int, body: bytes) -> bytes:
    try:
        if version == VER_ZLIB:
            inflater = zlib.decompressobj()
            out = inflater.decompress(body, MAX_BODY)
            if inflater.unconsumed_tail:
                raise MalformedFrame("a zlib body larger than 8 MiB")
            return out
        decoder = brotli.Decompressor()
        out = decoder.process(body, output_buffer_limit=MAX_BODY)
        if not decoder.is_finished():
            raise MalformedFrame("a brotli body larger than 8 MiB, or cut short")
        return out
    except (zlib.error, brotli.error) as exc:
        raise MalformedFrame(f"cannot decompress a version {version} body: {exc}") from None


def decode_packets(data: bytes, *, depth: int = 0) -> Iterator[Packet]:
    """Every packet in one WebSocket frame, compressed bodies opened; raises `MalformedFrame`."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER_SIZE:
            raise MalformedFrame(f"{len(data) - offset} bytes left, less than a header")
        length, header_length, version, operation, sequence = HEADER.unpack_from(data, offset)
        if header_length < HEADER_SIZE or length < header_length or offset + length > len(data):
            raise MalformedFrame(f"packet length {length} / header length {header_length} do not fit")
        body = data[offset + header_length:offset + length]
        offset += length
        if version in (VER_ZLIB, VER_BROTLI) and operation == OP_COMMAND:
            if depth >= 2:
                raise MalformedFrame("compressed packets nested too deep")
            yield from decode_packets(_decompress(version, body), depth=depth + 1)
        elif version in (VER_PLAIN, VER_INT, VER_ZLIB, VER_BROTLI):
            yield Packet(version, operation, body, sequence)
        else:
            raise MalformedFrame(f"unknown protocol version {version}")


def auth_body(room_id: int, *, uid: int = 0, key: str = "", buvid: str = "", protover: int = VER_BROTLI) -> bytes:
    body: dict[str, Any] = {"uid": uid, "roomid": room_id, "protover": protover, "platform": "web", "type": 2}
    if key:
        body["key"] = key
    if buvid:
        body["buvid"] = buvid
    return json.dumps(body, separators=(",", ":")).encode()


def _cookie_value(cookie: str, name: str) -> str:
    for part in cookie.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


@dataclass
class _Combo:
    user: str
    gift: str
    count: int
    gold: int  # gold seeds (金瓜子) in total; 0 for free (silver) gifts
    due: float
    badges: frozenset[str] = field(default_factory=frozenset)


class BilibiliConnector(Connector):
    platform = "bilibili"
    HEARTBEAT_S = 30.0

    def __init__(self, submit: Any, *, channel: str, url: str = "", api_url: str = DEFAULT_API_URL,
                 cookie: str = "", uid: int = 0, combo_quiet_s: float = 3.0, **kwargs: Any) -> None:
        super().__init__(submit, name=channel, **kwargs)
        try:
            self.room_id = int(channel)
        except ValueError:
            raise ValueError("a Bilibili channel is the live room's number (live.bilibili.com/NUMBER)") from None
        self.url = url
        self.api_url = api_url.rstrip("/")
        self.cookie = cookie
        self.uid = uid
        self.combo_quiet_s = combo_quiet_s
        self.popularity = 0
        self._combos: dict[str, _Combo] = {}

    async def room_init(self) -> tuple[int, str, str]:
        """(room id, WebSocket URL, key) from Bilibili's HTTP API, or the overrides."""
        if self.url:
            return self.room_id, self.url, ""
        import httpx2

        headers = {"User-Agent": "Mozilla/5.0 voxroom", "Referer": "https://live.bilibili.com/"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        async with httpx2.AsyncClient(timeout=10, headers=headers) as http:
            reply = (await http.get(f"{self.api_url}/room/v1/Room/room_init", params={"id": self.room_id})).json()
            if reply.get("code") != 0:
                raise FatalError(f"Bilibili has no live room {self.room_id}: {reply.get('msg', '')}")
            room_id = int(reply["data"]["room_id"])
            info = (await http.get(f"{self.api_url}/xlive/web-room/v1/index/getDanmuInfo",
                                   params={"id": room_id, "type": 0})).json()
        if info.get("code") != 0 or not info.get("data", {}).get("host_list"):
            return room_id, DEFAULT_WS_URL, ""  # anonymous: chat still arrives, names masked
        host = info["data"]["host_list"][0]
        if self.api_url.startswith("https://"):
            url = f"wss://{host['host']}:{host.get('wss_port', 443)}/sub"
        else:  # a plain-HTTP API (a local relay or test server) hands out plain WebSocket hosts
            url = f"ws://{host['host']}:{host.get('ws_port', 2244)}/sub"
        return room_id, url, str(info["data"].get("token", ""))

    async def session(self) -> None:
        room_id, url, key = await self.room_init()
        loop = asyncio.get_running_loop()
        async with websockets.connect(url, open_timeout=15, max_size=2**22, ping_interval=None) as ws:
            buvid = _cookie_value(self.cookie, "buvid3")
            await ws.send(encode_packet(OP_AUTH, auth_body(room_id, uid=self.uid, key=key, buvid=buvid)))
            next_beat = loop.time()
            try:
                while True:
                    now = loop.time()
                    if now >= next_beat:
                        await ws.send(encode_packet(OP_HEARTBEAT, b"[object Object]"))
                        next_beat = now + self.HEARTBEAT_S
                    self._flush_combos(now)
                    due = min([next_beat, *(c.due for c in self._combos.values())])
                    try:
                        frame = await asyncio.wait_for(ws.recv(), max(0.0, due - loop.time()))
                    except TimeoutError:
                        continue
                    await self.handle_frame(frame)
            finally:
                self._flush_combos(None)

    async def handle_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            self.malformed("text frame", frame)
            return
        try:
            packets = list(decode_packets(frame))
        except MalformedFrame as exc:
            self.malformed(str(exc), frame)
            return
        for packet in packets:
            await self.pause()
            if packet.operation == OP_AUTH_REPLY:
                self._auth_reply(packet.body)
            elif packet.operation == OP_HEARTBEAT_REPLY and len(packet.body) >= 4:
                self.popularity = int.from_bytes(packet.body[:4], "big")
            elif packet.operation == OP_COMMAND:
                self._command(packet.body)

    def _auth_reply(self, body: bytes) -> None:
        try:
            code = json.loads(body).get("code", -1)
        except (ValueError, AttributeError):
            code = -1
        if code != 0:
            raise FatalError(f"Bilibili refused to join room {self.room_id} (code {code})")
        self.mark_live(f"joined room {self.room_id}")

    def _command(self, body: bytes) -> None:
        try:
            message = json.loads(body)
            cmd = str(message.get("cmd", "")).split(":", 1)[0]
            handler = self._HANDLERS.get(cmd)
            if handler is not None:
                handler(self, message)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, EventError) as exc:
            self.malformed(f"{type(exc).__name__}: {exc}", body)

    # -- commands ------------------------------------------------------------------------------
    def _danmu(self, message: Mapping[str, Any]) -> None:
        info = message["info"]
        meta, text, user = info[0], str(info[1]), info[2]
        uid, name, is_admin = int(user[0]), str(user[1]), bool(user[2])
        extra = meta[15].get("extra", "{}") if len(meta) > 15 and isinstance(meta[15], dict) else "{}"
        id_str = (json.loads(extra) if isinstance(extra, str) else extra).get("id_str", "")
        event_id = id_str or f"{uid}:{meta[4]}:{meta[5]}"
        guard = int(info[7]) if len(info) > 7 and info[7] else 0
        badges = {"moderator"} if is_admin else set()
        if guard:
            badges.add("subscriber")
        self.emit(self.make_event({"type": "message", "user": name, "text": text, "id": f"bilibili:{event_id}",
                                   "timestamp": int(meta[4]) / 1000.0},
                                  badges=frozenset(badges), tier=GUARD_NAMES.get(guard, "")))

    def _gift(self, message: Mapping[str, Any]) -> None:
        data = message["data"]
        gold = int(data["total_coin"]) if data.get("coin_type") == "gold" else 0
        num = int(data["num"])
        combo_id = str(data.get("batch_combo_id") or "")
        badges = frozenset({"subscriber"}) if data.get("guard_level") else frozenset()
        if not combo_id:
            self._emit_gift(f"{data['uid']}:{data.get('tid') or data.get('rnd')}",
                            _Combo(str(data["uname"]), str(data["giftName"]), num, gold, 0.0, badges))
            return
        combo = self._combos.get(combo_id)
        due = asyncio.get_running_loop().time() + self.combo_quiet_s
        if combo is None:
            self._combos[combo_id] = _Combo(str(data["uname"]), str(data["giftName"]), num, gold, due, badges)
        else:
            combo.count += num
            combo.gold += gold
            combo.due = due

    def _combo_end(self, message: Mapping[str, Any]) -> None:
        combo_id = str(message["data"].get("batch_combo_id") or "")
        combo = self._combos.pop(combo_id, None)
        if combo is not None:
            self._emit_gift(combo_id, combo)

    def _flush_combos(self, now: float | None) -> None:
        for combo_id, combo in list(self._combos.items()):
            if now is None or combo.due <= now:
                del self._combos[combo_id]
                self._emit_gift(combo_id, combo)

    def _emit_gift(self, key: str, combo: _Combo) -> None:
        self.emit(self.make_event(
            {"type": "gift", "user": combo.user, "gift": combo.gift, "amount": float(combo.count),
             "currency": combo.gift, "id": f"bilibili:gift:{key}"},
            value_usd=to_usd(combo.gold, "gold"), count=combo.count, badges=combo.badges))

    def _super_chat(self, message: Mapping[str, Any]) -> None:
        data = message["data"]
        price = float(data["price"])
        self.emit(self.make_event(
            {"type": "gift", "user": str(data["user_info"]["uname"]), "text": str(data.get("message", "")),
             "gift": "superchat", "amount": price, "currency": "CNY", "id": f"bilibili:sc:{data['id']}"},
            value_usd=to_usd(price, "CNY"), tier=f"{price:g}"))

    def _guard(self, message: Mapping[str, Any]) -> None:
        data = message["data"]
        level, num = int(data["guard_level"]), int(data.get("num", 1))
        cny = float(data.get("price", 0)) / 1000.0 * num or BILIBILI_GUARD_CNY.get(level, 0.0) * num
        self.emit(self.make_event(
            {"type": "gift", "user": str(data["username"]), "gift": str(data.get("gift_name") or GUARD_NAMES[level]),
             "amount": float(num), "currency": "months",
             "id": f"bilibili:guard:{data['uid']}:{data.get('start_time', '')}:{level}"},
            value_usd=to_usd(cny, "CNY"), tier=GUARD_NAMES[level], count=num, badges=frozenset({"subscriber"})))

    def _interact(self, message: Mapping[str, Any]) -> None:
        data = message["data"]
        kind = {1: "join", 2: "follow", 4: "follow", 5: "follow"}.get(int(data["msg_type"]))
        if kind is None:
            return  # 3: shared the room
        self.emit(self.make_event(
            {"type": kind, "user": str(data["uname"]),
             "id": f"bilibili:{kind}:{data['uid']}:{data.get('trigger_time') or data.get('timestamp')}"}))

    _HANDLERS: Mapping[str, Any] = {
        "DANMU_MSG": _danmu, "SEND_GIFT": _gift, "COMBO_SEND": _combo_end,
        "SUPER_CHAT_MESSAGE": _super_chat, "GUARD_BUY": _guard, "INTERACT_WORD": _interact,
    }


def command_packet(message: Mapping[str, Any], *, version: int = VER_PLAIN) -> bytes:
    """One op-5 packet (tests and the bench build server frames with it)."""
    return encode_packet(OP_COMMAND, json.dumps(message, ensure_ascii=False).encode(), version=version)


def compressed(packets: bytes, version: int) -> bytes:
    """Several packets wrapped in one compressed op-5 packet, as the server batches them."""
    body = zlib.compress(packets) if version == VER_ZLIB else brotli.compress(packets, quality=5)
    return encode_packet(OP_COMMAND, body, version=version)

