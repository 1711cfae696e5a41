"""The `openai` client against voxroom, as pipecat's OpenAITTSService and LiveKit Agents' openai.TTS call
it: streamed raw PCM (24 kHz, 16-bit mono) in one of your voices, or the stock voice.

    VOXROOM_URL=http://127.0.0.1:8080 VOXROOM_TOKEN=vxr_… python docs/examples/openai_speech.py [VOICE]
"""

import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("VOXROOM_URL", "http://127.0.0.1:8080") + "/v1",
                api_key=os.environ["VOXROOM_TOKEN"])
voice = sys.argv[1] if len(sys.argv) > 1 else "alloy"  # OpenAI's names mean the stock voice
received = 0
with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice, input="Thanks for the follow!", response_format="pcm") as response:
    for chunk in response.iter_bytes():
        received += len(chunk)  # play or forward each chunk as it comes
print(f"{received / 2 / 24000:.1f} s of 24 kHz audio")
