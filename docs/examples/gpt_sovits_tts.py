"""GPT-SoVITS api_v2 as Open-LLM-VTuber (GET with a query) and AI-Vtuber/Luna (POST with JSON) call it,
and a per-caller default voice with /set_refer_audio. `ref_audio_path` names one of your voices.

    VOXROOM_URL=http://127.0.0.1:8080 VOXROOM_TOKEN=vxr_… python docs/examples/gpt_sovits_tts.py [VOICE]
"""

import json
import os
import sys
import urllib.parse
import urllib.request

base = os.environ.get("VOXROOM_URL", "http://127.0.0.1:8080")
token = os.environ["VOXROOM_TOKEN"]
voice = sys.argv[1] if len(sys.argv) > 1 else "stock"

# Open-LLM-VTuber: api_url = f"{base}/tts?token={token}", then its own parameters
query = urllib.parse.urlencode({"text": "Hello chat!", "text_lang": "en", "ref_audio_path": f"{voice}.wav",
                                "prompt_lang": "en", "prompt_text": "", "text_split_method": "cut5",
                                "batch_size": "1", "media_type": "wav", "streaming_mode": "false"})
with urllib.request.urlopen(f"{base}/tts?token={token}&{query}") as res:
    print("GET /tts:", res.headers["Content-Type"], len(res.read()), "bytes")

# AI-Vtuber / Luna: the whole api_v2 body as JSON
body = {"text": "Thanks for the gift!", "text_lang": "英文", "ref_audio_path": voice, "prompt_text": "",
        "prompt_lang": "英文", "top_k": 5, "top_p": 0.8, "temperature": 0.8, "text_split_method": "cut5",
        "batch_size": 1, "speed_factor": 1.0, "media_type": "raw", "streaming_mode": True}
req = urllib.request.Request(f"{base}/tts?token={token}", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
with urllib.request.urlopen(req) as res:
    print("POST /tts:", res.headers["Content-Type"], len(res.read()), "bytes")

# This caller's default voice: later calls may leave ref_audio_path out
refer = urllib.parse.urlencode({"refer_audio_path": voice, "token": token})
with urllib.request.urlopen(f"{base}/set_refer_audio?{refer}") as res:
    print("set_refer_audio:", json.loads(res.read())["message"])
