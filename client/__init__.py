"""voxroom's Python client, `voxroom.client`: async and typed, without torch or aiortc.

    from voxroom.client import Voxroom, BotClient, RoomBot, VoxroomError

- `Voxroom(base_url, token)`: the REST API with an account's API token (rooms, grants, say, cancel,
  chat, room events, voices, OpenAI-compatible speech);
- `RoomBot(base_url, room_id, grant)` (or `Voxroom.join`): one room as a bot with a join grant;
- `BotClient(ws_url, token)` (or `Voxroom.bot()`): the bot protocol over a WebSocket, whose `say()`
  yields the speech's PCM16 frames.

It needs only `websockets` and numpy (through the protocol codec it shares with the server).
docs/sdk.md documents it; docs/examples/ holds examples that CI runs against a real server.
"""

from voxroom.client.bot import BotClient, BotSpeech
from voxroom.client.errors import VoxroomError
from voxroom.client.rest import Room, RoomBot, VoiceInfo, Voxroom

__all__ = ["BotClient", "BotSpeech", "Room", "RoomBot", "VoiceInfo", "Voxroom", "VoxroomError"]
