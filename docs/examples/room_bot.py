"""A bot that joins a room with a join grant: it says a line, forwards a chat event, and reads the
room's events until its line has been said.

    VOXROOM_URL=http://127.0.0.1:8080 VOXROOM_TOKEN=vxr_… python docs/examples/room_bot.py
"""

import asyncio
import os

from voxroom.client import RoomBot, Voxroom


async def main() -> None:
    owner = Voxroom(os.environ.get("VOXROOM_URL", "http://127.0.0.1:8080"), os.environ["VOXROOM_TOKEN"])
    room = await owner.create_room("example: room bot")
    try:
        grant = await owner.grant(room.id, role="bot")  # what the room's owner hands to the bot

        bot = RoomBot(owner.base_url, room.id, grant)  # all the bot needs: the URL, the room, the grant
        events = bot.events()
        print("joined", (await anext(events))["id"])
        line = await bot.say("Welcome to the stream, everyone!")
        print("chat:", await bot.chat("viewer42", "what game is this?", kind="question", platform="discord"))
        async for event in events:
            if event.get("id") == line:
                print(event["type"])
            if event["type"] == "speech.ended" and event["id"] == line:
                break
        await events.aclose()
    finally:
        await owner.delete_room(room.id)


asyncio.run(main())
