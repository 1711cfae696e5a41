"""Who is calling, and what they may touch: the one place every route checks its caller.

A caller presents an API token (an account) or a join grant (one room, one role) — as
`Authorization: Bearer …`, or `?token=` where a page cannot set headers (a WebSocket, a listener
link), or as the password of HTTP Basic auth, which is what a tool sends for a base URL written
`http://any:vxr_…@host:port` (tools that join a path to their base URL drop its query, not its
user-info). Rooms answer "no such room" to anyone but their owner and the holders of their grants.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from voxroom.streaming.accounts import Account, Accounts, AuthError, Grant
from voxroom.streaming.rooms import Room, RoomError, Rooms


@dataclass
class Caller:
    account: Account | None = None
    grant: Grant | None = None


class Access:
    def __init__(self, accounts: Accounts, rooms: Rooms) -> None:
        self.accounts = accounts
        self.rooms = rooms

    @staticmethod
    def credential(request: HTTPConnection) -> str:
        """The token or grant the caller presented ('' when none)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            return basic_auth_password(value)
        return request.query_params.get("token", "")

    def caller(self, request: HTTPConnection) -> Caller:
        token = self.credential(request)
        if not token:
            raise AuthError("this call needs an API token or a join grant (Authorization: Bearer ...)")
        if token.startswith("vxg_"):
            return Caller(grant=self.accounts.check_grant(token))
        return Caller(account=self.accounts.by_token(token))

    def account(self, request: HTTPConnection) -> Account:
        caller = self.caller(request)
        if caller.account is None:
            raise AuthError("this call needs an API token, not a join grant", 403)
        return caller.account

    def room_for(self, request: HTTPConnection, room_id: str, roles: tuple[str, ...]) -> Room:
        """The room, if the caller owns it or holds a grant for it in one of `roles`."""
        caller = self.caller(request)
        if caller.account is not None:
            return self.rooms.owned(room_id, caller.account.id)
        assert caller.grant is not None
        if caller.grant.room != room_id or caller.grant.role not in roles:
            raise AuthError("this join grant is for another room or role", 403)
        room = self.rooms.get(room_id)
        if room.owner != caller.grant.account:
            raise RoomError("no such room", 404)
        if caller.grant.link is not None and caller.grant.link != room.link_key:
            raise AuthError("this link was revoked: the host rotated the room's links; ask the host for the new one",
                            403, "link_revoked")
        return room

    def link_of(self, request: HTTPConnection) -> str | None:
        """The room-link key the caller came in with (None: a token or a short-lived grant)."""
        token = self.credential(request)
        return self.accounts.check_grant(token).link if token.startswith("vxg_") else None

    def owner_of(self, room: Room) -> Account:
        owner = self.accounts.get(room.owner)
        if owner is None:
            raise RoomError("no such room", 404)
        return owner


def basic_auth_password(value: str) -> str:
    """The password of an HTTP Basic credential ('' when it cannot be read); the user name is ignored."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    _, _, password = decoded.partition(":")
    return password
