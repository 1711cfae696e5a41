"""STUN and TURN servers for WebRTC peers: voxroom's own (WHEP listeners, the host's microphone, WHIP
publishing) and the pages' (handed to them in GET /rooms/ROOM/playback).

Configured as `ice_servers` (TOML `[[ice_servers]]` tables, or VOXROOM_ICE_SERVERS as JSON), each
`{"urls": "turn:host:3478" or a list, "username", "credential"}`, or `{"urls", "secret"}` for a TURN
server that takes time-limited credentials (coturn's `use-auth-secret`, the "TURN REST API"): voxroom
then mints a username `EXPIRY:voxroom` and its credential, base64(HMAC-SHA1(secret, username)), for
each peer, valid for CREDENTIAL_TTL_S, and the secret never leaves the server.
`ice_transport_policy = "relay"` makes the pages use TURN relays only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCIceServer

CREDENTIAL_TTL_S = 24 * 3600
SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
POLICIES = ("all", "relay")


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""
    secret: str = ""  # TURN REST API shared secret: credentials are minted per peer

    def for_peer(self, now: float | None = None) -> dict[str, Any]:
        """The browser's RTCIceServer form, with fresh credentials where they are minted."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.secret:
            username = f"{int((time.time() if now is None else now) + CREDENTIAL_TTL_S)}:voxroom"
            digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
            entry.update(username=username, credential=base64.b64encode(digest).decode())
        elif self.username:
            entry.update(username=self.username, credential=self.credential)
        return entry


def parse_ice_servers(value: Any) -> list[IceServer]:
    """Check the `ice_servers` setting; ValueError says what is wrong."""
    if not isinstance(value, list):
        raise ValueError("must be a list of {urls, username, credential} or {urls, secret} tables")
    servers = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) - {"urls", "username", "credential", "secret"}:
            raise ValueError("each ICE server is a table with 'urls' and either 'username' and 'credential' "
                             "or 'secret'")
        urls = entry.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u.startswith(SCHEMES) for u in urls):
            raise ValueError("'urls' must be one or more stun:, stuns:, turn: or turns: URLs")
        fields = {k: entry.get(k, "") for k in ("username", "credential", "secret")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise ValueError("'username', 'credential' and 'secret' must be text")
        turn = any(u.startswith(("turn:", "turns:")) for u in urls)
        if turn and not (fields["secret"] or (fields["username"] and fields["credential"])):
            raise ValueError(f"TURN server {urls[0]} needs 'username' and 'credential', or 'secret'")
        if fields["secret"] and fields["username"]:
            raise ValueError("give 'secret' (minted credentials) or 'username' and 'credential', not both")
        servers.append(IceServer(tuple(urls), **fields))
    return servers


def check_policy(value: Any) -> str:
    if value not in POLICIES:
        raise ValueError(f"must be one of {', '.join(POLICIES)}")
    return str(value)


def for_pages(servers: list[IceServer], policy: str) -> dict[str, Any]:
    """What the playback plan adds for a page's RTCPeerConnection (nothing when nothing is set)."""
    plan: dict[str, Any] = {}
    if servers:
        plan["ice_servers"] = [s.for_peer() for s in servers]
    if policy != "all":
        plan["ice_transport_policy"] = policy
    return plan


def for_aiortc(servers: list[IceServer]) -> list[RTCIceServer]:
    from aiortc import RTCIceServer

    return [RTCIceServer(urls=list(e["urls"]), username=e.get("username"), credential=e.get("credential"))
            for e in (s.for_peer() for s in servers)]
