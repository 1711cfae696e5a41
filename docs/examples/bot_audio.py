"""The bot protocol: say a line, receive its audio frames (PCM16, 48 kHz mono, 20 ms) and write them
to a WAV file; start a long line and cancel it after half a second.

    VOXROOM_URL=http://127.0.0.1:8080 VOXROOM_TOKEN=vxr_… python docs/examples/bot_audio.py hello.wav
"""

import asyncio
import os
import sys
import wave

from voxroom.client import Voxroom


async def main(path: str) -> None:
    vx = Voxroom(os.environ.get("VOXROOM_URL", "http://127.0.0.1:8080"), os.environ["VOXROOM_TOKEN"])
    async with vx.bot() as bot:
        speech = await bot.say("Hello from a voxroom bot!", voice="stock")
        with wave.open(path, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(48000)
            async for frame in speech:
                wav.writeframes(frame)
        print(f"{speech.reason}: {speech.frames} frames in {path}")

        long = await bot.say("This is a very long story. " * 20)
        async for _ in long:
            if long.frames == 25:  # half a second in
                await long.cancel()
        print("long line:", long.reason)


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "hello.wav"))
