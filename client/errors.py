"""The one error the client raises: what the server refused, with its stable code."""

from __future__ import annotations

import json


class VoxroomError(Exception):
    """A refusal from the server: HTTP status (0 for the bot protocol), stable code, message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def http_error(status: int, raw: bytes) -> VoxroomError:
    """A refused HTTP call's body in any of the server's shapes: voxroom's `{"error", "code"}`,
    OpenAI's `{"error": {"message", "code"}}` (/v1) or api_v2's `{"message"}`."""
    try:
        body = json.loads(raw)
    except ValueError:
        return VoxroomError(status, "error", raw.decode(errors="replace")[:200])
    if not isinstance(body, dict):
        return VoxroomError(status, "error", str(body)[:200])
    error = body.get("error")
    if isinstance(error, dict):
        return VoxroomError(status, str(error.get("code") or error.get("type")), str(error.get("message")))
    return VoxroomError(status, str(body.get("code", "error")), str(error or body.get("message")))
