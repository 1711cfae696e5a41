"""The OpenAPI 3.1 description of voxroom's HTTP API, as data (served at `GET /openapi.json`).

Every mounted route is listed, the pages and WebSockets too (a WebSocket as a GET answered with 101),
so a client generator or a reader sees the whole surface; `tests/test_openapi.py` checks that this
document and the app's routes name the same paths and methods. Shapes are described where a client
needs them; the error body is one schema for voxroom's own routes, OpenAI's for /v1, api_v2's for
the GPT-SoVITS routes.
"""

from __future__ import annotations

import copy
from typing import Any

from voxroom.streaming.api_speech import MAX_API_SPEECHES

VERSION = "1"

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str = "OK") -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _obj(required: list[str] | None = None, **props: Json) -> Json:
    out: Json = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


STR: Json = {"type": "string"}
BOOL: Json = {"type": "boolean"}
NUM: Json = {"type": "number"}
ANY_OBJ: Json = {"type": "object"}
ERR = _json(_ref("Error"), "refused: `error` says why in words, `code` for programs")
OPENAI_ERR = _json(_ref("OpenAIError"), "refused, in OpenAI's error shape")
SOVITS_ERR = _json(_obj(["message"], message=STR), "refused, as GPT-SoVITS api_v2 answers")
AUDIO = {"description": "audio, streamed (chunked) as it is synthesized",
         "content": {t: {"schema": {"type": "string", "contentMediaType": t}} for t in
                     ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")}}
SOVITS_OK = _json(_obj(["message"], message={"const": "success"}), "done, for this caller only")
SOVITS_FAILED = _json(_obj(["message"], message=STR, Exception=STR), "refused, as api_v2 answers (`Exception` says why)")
SOVITS_AUDIO = {"description": "32 kHz mono audio: one file, or with streaming_mode a chunked stream",
                "content": {f"audio/{t}": {"schema": {"type": "string"}} for t in ("wav", "raw", "ogg", "aac")}}
WS = {"101": {"description": "WebSocket upgrade"}, "403": {"description": "refused before the upgrade"}}
PAGE = {"200": {"description": "an HTML page", "content": {"text/html": {"schema": STR}}}}


def _params(*names: str, where: str = "path", required: bool = False) -> list[Json]:
    return [{"name": n, "in": where, "required": required or where == "path", "schema": STR} for n in names]


def _op(summary: str, responses: Json, *, tags: list[str], body: Json | None = None,
        params: list[Json] | None = None, security: list[Json] | None = None, op_id: str = "") -> Json:
    op: Json = {"summary": summary, "tags": tags, "operationId": op_id or summary.lower().replace(" ", "_")[:60],
                "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if security is not None:
        op["security"] = security
    return op


def _voxroom(code: str, payload: Json, *errors: str) -> Json:
    out: Json = {code: payload}
    for status in errors:
        out[status] = ERR
    return out


ROOM = ("room",)
PUBLIC: list[Json] = []

SAY_BODY = _obj(["text"], text={"type": "string", "maxLength": 2000}, id=STR, voice=STR,
                lang={"enum": ["auto", "en", "zh", "ja", "ko", "yue"]}, speed={"type": "number", "minimum": 0.5,
                                                                              "maximum": 2.0})
SOVITS_FIELDS: dict[str, Json] = {
    "text": STR, "text_lang": STR, "ref_audio_path": STR, "prompt_lang": STR, "prompt_text": STR,
    "text_split_method": {"enum": ["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"]}, "batch_size": {"type": "integer"},
    "media_type": {"enum": ["wav", "raw", "ogg", "aac"]}, "streaming_mode": {"type": ["boolean", "integer", "string"]},
    "speed_factor": NUM,
}
SOVITS_BODY = _obj(["text", "text_lang", "prompt_lang"], **SOVITS_FIELDS)  # ref_audio_path: or /set_refer_audio
SOVITS_QUERY = [{"name": n, "in": "query", "required": n in SOVITS_BODY["required"], "schema": s}
                for n, s in SOVITS_FIELDS.items()] + [{"name": "token", "in": "query", "required": False,
                                                       "schema": STR}]
TOKEN_PATH = _params("token")
CORS_PREFLIGHT = {"summary": "CORS preflight (browser callers such as SillyTavern)", "tags": ["compat"],
                  "responses": {"204": {"description": "allowed"}}, "security": PUBLIC}


def _paths() -> Json:
    rooms, cohost, voices, webrtc, conn, compat, pages = (["rooms"], ["cohost"], ["voices"], ["webrtc"],
                                                         ["connectors"], ["compat"], ["pages"])
    r = _params(*ROOM)
    sovits_tts = {
        "get": _op("GPT-SoVITS api_v2 synthesis (query)", {"200": SOVITS_AUDIO, "400": SOVITS_ERR, "401": SOVITS_ERR, "403": SOVITS_ERR,
                                                           "429": SOVITS_ERR}, tags=compat, params=SOVITS_QUERY,
                   op_id="sovits_tts_get"),
        "post": _op("GPT-SoVITS api_v2 synthesis (JSON)", {"200": SOVITS_AUDIO, "400": SOVITS_ERR, "401": SOVITS_ERR, "403": SOVITS_ERR,
                                                           "429": SOVITS_ERR}, tags=compat, body=SOVITS_BODY,
                    op_id="sovits_tts_post"),
        "options": {**CORS_PREFLIGHT, "operationId": "sovits_tts_preflight"},
    }
    speakers = _json({"type": "array", "items": _obj(["name", "voice_id"], name=STR, voice_id=STR, lang=STR)},
                     "the caller's voices, the stock voice first")
    paths: Json = {
        "/": {
            "get": _op("Redirect to the console", {"307": {"description": "to /console"}}, tags=pages,
                       security=PUBLIC, op_id="root"),
            "post": _op("SillyTavern GPT-SoVITS-V2 synthesis", {"200": SOVITS_AUDIO, "400": SOVITS_ERR,
                                                                "401": SOVITS_ERR, "403": SOVITS_ERR, "429": SOVITS_ERR},
                        tags=compat, body=SOVITS_BODY, op_id="sillytavern_tts"),
            "options": {**CORS_PREFLIGHT, "operationId": "sillytavern_preflight"},
        },
        "/console": {"get": _op("Host console", PAGE, tags=pages, security=PUBLIC, op_id="console")},
        "/r/{room}": {"get": _op("Listener page", PAGE, tags=pages, params=r, security=PUBLIC, op_id="listener_page")},
        "/obs/{room}": {"get": _op("OBS overlay", PAGE, tags=pages, params=r, security=PUBLIC, op_id="obs_overlay")},
        "/enroll": {"get": _op("Enrollment page", PAGE, tags=pages, security=PUBLIC, op_id="enroll_page")},
        "/static/{path}": {"get": _op("Static files of the pages", {"200": {"description": "a file"},
                                                                    "404": {"description": "no such file"}}, tags=pages,
                                      params=_params("path"), security=PUBLIC, op_id="static")},
        "/api/health": {"get": _op("Health", {"200": _json(_obj(ok=BOOL, engine=STR, can_clone=BOOL))},
                                   tags=["server"], security=PUBLIC, op_id="health")},
        "/api/me": {"get": _op("Who the token belongs to", _voxroom("200", _json(_obj(id=STR, name=STR, engine=STR,
                                                                                      can_clone=BOOL)), "401"),
                               tags=["server"], op_id="me")},
        "/metrics": {"get": _op("Prometheus metrics of the caller's rooms",
                                {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": STR}}},
                                 "401": ERR}, tags=["server"], op_id="metrics")},
        "/api/rooms": {
            "get": _op("List rooms", _voxroom("200", _json(_obj(rooms={"type": "array", "items": _ref("Room")})),
                                              "401"), tags=rooms, op_id="list_rooms"),
            "post": _op("Create a room", _voxroom("201", _json(_ref("NewRoom"), "created"), "400", "401", "429"),
                        tags=rooms, body=_obj(name={"type": "string", "maxLength": 100}), op_id="create_room"),
        },
        "/api/rooms/{room}": {
            "get": _op("Read a room", _voxroom("200", _json(_ref("Room")), "401", "404"), tags=rooms, params=r,
                       op_id="get_room"),
            "delete": _op("Delete a room", _voxroom("200", _json(_obj(deleted=STR)), "401", "404"), tags=rooms,
                          params=r, op_id="delete_room"),
        },
        "/api/rooms/{room}/say": {"post": _op(
            "Say a line in a room", _voxroom("202", _json(_obj(id=STR, state=STR), "queued"), "400", "401", "404",
                                             "413", "422", "429"), tags=rooms, params=r, body=SAY_BODY, op_id="say")},
        "/api/rooms/{room}/speeches/{speech}": {"delete": _op(
            "Cancel a speech", _voxroom("200", _json(_obj(id=STR, state=STR)), "401", "404"), tags=rooms,
            params=_params("room", "speech"), op_id="cancel_speech")},
        "/api/rooms/{room}/grants": {"post": _op(
            "Mint a join grant", _voxroom("201", _json(_obj(grant=STR, role=STR), "minted"), "400", "401", "404"),
            tags=rooms, params=r, body=_obj(role={"enum": ["listener", "host", "bot"]},
                                            ttl={"type": "number", "minimum": 60, "maximum": 2592000,
                                                 "description": "seconds: up to 30 days for a listener grant, "
                                                                "7 days for the other roles"}),
            op_id="mint_grant")},
        "/api/rooms/{room}/links": {"get": _op(
            "The room's listener and OBS overlay links (valid until rotated)", _voxroom("200", _json(_ref("Links")),
                                                                                         "401", "404"),
            tags=rooms, params=r, op_id="get_links")},
        "/api/rooms/{room}/links/rotate": {"post": _op(
            "Rotate the room's links: the old ones are refused at once (link_revoked)",
            _voxroom("200", _json(_ref("Links"), "the new links"), "401", "404"), tags=rooms, params=r,
            op_id="rotate_links")},
        "/rooms/{room}/events": {"get": _op("Caption and queue events (WebSocket)", WS, tags=rooms, params=r,
                                            op_id="room_events")},
        "/api/rooms/{room}/chat": {"post": _op(
            "Send a chat event to the co-host", _voxroom("202", _json(_obj(outcome=STR), "accepted or dropped"),
                                                         "400", "401", "404"),
            tags=cohost, params=r, body=_obj(["type", "user"], type={"enum": ["message", "question", "gift", "superchat",
                                                                         "follow", "join"]},
                                             user=STR, text=STR, platform=STR, id=STR, amount=NUM), op_id="chat")},
        "/api/rooms/{room}/cohost": {
            "get": _op("Co-host state, settings and metrics", _voxroom("200", _json(_obj(
                ["settings"], settings=_ref("CohostSettings"), metrics=STR)), "401", "404"),
                       tags=cohost, params=r, op_id="cohost_state"),
            "patch": _op("Change co-host settings", _voxroom("200", _json(_ref("CohostSettings")), "400", "401", "404"),
                         tags=cohost,
                         params=r, body=_obj(persona=STR, policy={"enum": ["resume", "drop", "duck"]},
                                             idle_after={"type": ["number", "null"]},
                                             blocked_words={"type": "array", "items": STR}, templates=ANY_OBJ,
                                             voice=STR), op_id="cohost_update"),
        },
        "/api/rooms/{room}/cohost/skip": {"post": _op("Skip what the co-host is saying", _voxroom(
            "200", _json(_obj(skipped={"type": ["string", "boolean", "null"]})), "401", "404"), tags=cohost, params=r,
            op_id="cohost_skip")},
        "/api/rooms/{room}/queue": {"delete": _op("Clear the co-host's queue", _voxroom(
            "200", _json(_obj(cleared={"type": "integer"})), "401", "404"), tags=cohost, params=r, op_id="queue_clear")},
        "/api/rooms/{room}/queue/{event}/{action}": {"post": _op(
            "Skip or pin a queued event", _voxroom("200", _json(_obj(skip=STR, pin=STR)), "400", "401", "404"),
            tags=cohost,
            params=[*_params("room", "event"), {"name": "action", "in": "path", "required": True,
                                                "schema": {"enum": ["skip", "pin"]}}], op_id="queue_action")},
        "/api/rooms/{room}/host-speaking": {"post": _op(
            "Tell the co-host the host is speaking", _voxroom("200", _json(_obj(speaking=BOOL, state=STR)), "400",
                                                              "401", "404"),
            tags=cohost, params=r, body=_obj(["speaking"], speaking=BOOL), op_id="host_speaking")},
        "/rooms/{room}/whep": {"post": {
            **_op("Listen to a room (WHEP: an SDP offer in, the answer out)", {
                "201": {"description": "the SDP answer; `Location` is the session to DELETE",
                        "content": {"application/sdp": {"schema": STR}}},
                "400": ERR, "401": ERR, "404": ERR, "415": ERR, "429": ERR, "503": ERR}, tags=webrtc, params=r,
                op_id="whep"),
            "requestBody": {"required": True, "content": {"application/sdp": {"schema": STR}}}}},
        "/rooms/{room}/whep/{session}": {"delete": _op("Leave (WHEP)", _voxroom("200", {"description": "left"}, "404"),
                                                       tags=webrtc, params=_params("room", "session"),
                                                       op_id="whep_leave")},
        "/rooms/{room}/whip": {"post": {
            **_op("Send the host's microphone (WHIP)", {
                "201": {"description": "the SDP answer", "content": {"application/sdp": {"schema": STR}}},
                "400": ERR, "401": ERR, "404": ERR, "415": ERR}, tags=webrtc, params=r, op_id="whip"),
            "requestBody": {"required": True, "content": {"application/sdp": {"schema": STR}}}}},
        "/rooms/{room}/whip/{session}": {"delete": _op("Stop the microphone (WHIP)", _voxroom(
            "200", {"description": "stopped"}, "404"), tags=webrtc, params=_params("room", "session"),
            op_id="whip_stop")},
        "/api/rooms/{room}/connectors": {
            "get": _op("List chat connectors", _voxroom("200", _json(_obj(
                ["connectors"], connectors={"type": "array", "items": ANY_OBJ})), "401", "404"), tags=conn, params=r,
                       op_id="list_connectors"),
            "post": _op("Add a chat connector (Twitch, YouTube, Bilibili, TikTok)", _voxroom(
                "201", _json(ANY_OBJ, "created"), "400", "401", "404"), tags=conn, params=r,
                body=_obj(["platform", "channel"], platform={"enum": ["twitch", "youtube", "bilibili", "tiktok"]},
                          channel=STR, url=STR), op_id="create_connector"),
        },
        "/api/rooms/{room}/connectors/{connector}": {"delete": _op(
            "Remove a chat connector", _voxroom("200", _json(ANY_OBJ), "401", "404"), tags=conn,
            params=_params("room", "connector"), op_id="delete_connector")},
        "/api/rooms/{room}/sfu": {
            "get": _op("The room's SFU endpoints and their publishing state (tokens never shown)", _voxroom(
                "200", _json(_ref("SfuState")), "401", "404"), tags=conn, params=r, op_id="get_sfu"),
            "put": _op("Publish the room into SFUs over WHIP", _voxroom("200", _json(_ref("SfuState")), "400", "401",
                                                                        "404"),
                       tags=conn, params=r, body=_obj(["endpoints"], endpoints={"type": "array", "items": _obj(
                           ["url"], url=STR, token={"type": ["string", "null"]}, playback=ANY_OBJ)}), op_id="put_sfu"),
            "delete": _op("Stop publishing into SFUs", _voxroom("200", _json(_ref("SfuState")), "401", "404"), tags=conn,
                          params=r, op_id="delete_sfu"),
        },
        "/rooms/{room}/playback": {"get": _op(
            "Where a listener plays from: a Janus VideoRoom or voxroom's WHEP", _voxroom(
                "200", _json(_obj(["kind", "url"], kind=STR, url=STR)), "401", "404"), tags=webrtc, params=r,
            op_id="playback")},
        "/api/llm": {
            "get": _op("The account's LLM endpoint for replies (the key never shown)", _voxroom(
                "200", _json(_ref("LLMSettings")), "401"), tags=conn, op_id="get_llm"),
            "put": _op("Set the account's LLM endpoint", _voxroom("200", _json(_ref("LLMSettings")), "400", "401"),
                       tags=conn,
                       body=_obj(None, base_url=STR, model=STR, api_key=STR), op_id="put_llm"),
        },
        "/api/llm/test": {"post": _op("Try the LLM endpoint (its models, time to first token) or say what failed",
                                      _voxroom("200", _json(_ref("LLMTest")), "400", "401"), tags=conn,
                                      body=_obj(None, base_url=STR, model=STR, api_key=STR), op_id="test_llm")},
        "/api/rooms/{room}/llm": {
            "get": _op("The room's LLM endpoint: its own, else the account's, else the server's; failing or not",
                       _voxroom("200", _json(ANY_OBJ), "401", "404"), tags=conn, params=r, op_id="get_room_llm"),
            "put": _op("Set the room's own LLM endpoint (base_url null: use the account's)",
                       _voxroom("200", _json(ANY_OBJ), "400", "401", "404"), tags=conn, params=r,
                       body=_obj(None, base_url=STR, model=STR, api_key=STR), op_id="put_room_llm"),
        },
        "/api/rooms/{room}/llm/test": {"post": _op(
            "Try the room's LLM endpoint (or the body's)", _voxroom("200", _json(_ref("LLMTest")), "400", "401", "404"),
            tags=conn, params=r, body=_obj(None, base_url=STR, model=STR, api_key=STR), op_id="test_room_llm")},
        "/api/rooms/{room}/llm/models": {"post": _op(
            "List the models of the room's LLM endpoint (or the body's)",
            _voxroom("200", _json(_obj(["models", "error"], models={"type": "array", "items": STR}, error=STR)),
                     "400", "401", "404"),
            tags=conn, params=r, body=_obj(None, base_url=STR, api_key=STR), op_id="list_room_llm_models")},
        "/api/voices": {
            "get": _op("List voices (the stock voice first)", _voxroom("200", _json(_obj(
                ["voices"], voices={"type": "array", "items": _obj(["id", "name", "engine"], id=STR, name=STR,
                                                                   engine=STR)},
                can_clone=BOOL, advice={"type": ["string", "null"]})),
                "401"), tags=voices, op_id="list_voices"),
            "post": {**_op("Enroll a voice from a recording", _voxroom(
                "201", _json(_obj(voice=ANY_OBJ, report=ANY_OBJ), "created"), "400", "401", "413", "422", "429"),
                tags=voices, params=[*_params("name", "lang", "consent", "transcript", "ui", where="query")],
                op_id="create_voice"),
                "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": STR}}}},
        },
        "/api/enroll/scripts": {"get": _op("The script to read", _voxroom("200", _json(_obj(
            lang=STR, title=STR, sentences={"type": "array", "items": STR})), "400", "401"), tags=voices,
            params=_params("lang", where="query"), op_id="enroll_scripts")},
        "/api/enroll/live": {"get": _op("Live recording with coaching (WebSocket)", WS, tags=voices,
                                        op_id="enroll_live")},
        "/api/voices/{voice}": {
            "patch": _op("Rename a voice", _voxroom("200", _json(_ref("Voice")), "400", "401", "404"), tags=voices,
                         params=_params("voice"), body=_obj(["name"], name=STR), op_id="rename_voice"),
            "delete": _op("Delete a voice", _voxroom("200", _json(_obj(deleted=STR)), "400", "401", "404"), tags=voices,
                          params=_params("voice"), op_id="delete_voice"),
        },
        "/api/voices/{voice}/reference.wav": {"get": _op("The reference clip", _voxroom(
            "200", {"description": "WAV", "content": {"audio/wav": {"schema": STR}}}, "400", "401", "404"),
            tags=voices, params=_params("voice"), op_id="reference_wav")},
        "/api/voices/{voice}/reference": {"put": _op("Choose another reference clip", _voxroom(
            "200", _json(_ref("Voice")), "400", "401", "404"), tags=voices, params=_params("voice"),
            body=_obj(["start", "end"], start=NUM, end=NUM, transcript=STR), op_id="replace_reference")},
        "/api/voices/{voice}/sample.wav": {"get": _op("A sample sentence in the voice", _voxroom(
            "200", {"description": "WAV", "content": {"audio/wav": {"schema": STR}}}, "400", "401", "404", "429"),
            tags=voices, params=_params("voice"), op_id="sample_wav")},
        "/ws": {"get": _op("Bot protocol v1 (WebSocket; docs/protocol.md)", WS, tags=["bots"], security=PUBLIC,
                           op_id="bot_socket")},
        "/v1/audio/speech": {"post": _op(
            "OpenAI-compatible speech", {"200": AUDIO, "400": OPENAI_ERR, "401": OPENAI_ERR, "403": OPENAI_ERR, "404": OPENAI_ERR,
                                         "429": OPENAI_ERR}, tags=compat,
            body=_obj(["model", "input", "voice"], model={"enum": ["voxroom-tts", "tts-1", "tts-1-hd",
                                                                   "gpt-4o-mini-tts"]},
                      input={"type": "string", "maxLength": 4096}, voice={"type": ["string", "object"]},
                      response_format={"enum": ["mp3", "opus", "aac", "flac", "wav", "pcm"]},
                      speed={"type": "number", "minimum": 0.25, "maximum": 4.0}, instructions=STR,
                      stream_format={"enum": ["audio"]}), op_id="openai_speech")},
        "/v1/models": {"get": _op("OpenAI-compatible model list", {"200": _json(_obj(
            object=STR, data={"type": "array", "items": _obj(id=STR, object=STR, created={"type": "integer"},
                                                             owned_by=STR)})), "401": OPENAI_ERR, "403": OPENAI_ERR},
            tags=compat, op_id="openai_models")},
        "/tts": sovits_tts,
        "/speakers": {"get": _op("SillyTavern GPT-SoVITS-V2 voice list", {"200": speakers, "401": SOVITS_ERR, "403": SOVITS_ERR},
                                 tags=compat, params=_params("token", where="query"), op_id="sillytavern_speakers")},
        "/st/{token}/speakers": {"get": _op("SillyTavern voice list, token in the path", {
            "200": speakers, "401": SOVITS_ERR, "403": SOVITS_ERR}, tags=compat, params=TOKEN_PATH, security=PUBLIC,
            op_id="sillytavern_speakers_path")},
        "/st/{token}/": {
            "post": _op("SillyTavern synthesis, token in the path", {"200": SOVITS_AUDIO, "400": SOVITS_ERR,
                                                                     "401": SOVITS_ERR, "403": SOVITS_ERR, "429": SOVITS_ERR},
                        tags=compat, params=TOKEN_PATH, body=SOVITS_BODY, security=PUBLIC,
                        op_id="sillytavern_tts_path"),
            "options": {**CORS_PREFLIGHT, "operationId": "sillytavern_path_preflight", "parameters": TOKEN_PATH},
        },
        "/set_refer_audio": {"get": _op("api_v2: this caller's default voice for /tts", {
            "200": SOVITS_OK, "400": SOVITS_FAILED, "401": SOVITS_ERR, "403": SOVITS_ERR, "429": SOVITS_ERR},
            tags=compat, params=_params("refer_audio_path", where="query", required=True), op_id="sovits_set_refer_audio")},
        "/set_gpt_weights": {"get": _op("api_v2: success for the GPT weights this server runs", {
            "200": SOVITS_OK, "400": SOVITS_FAILED, "401": SOVITS_ERR, "403": SOVITS_ERR, "429": SOVITS_ERR},
            tags=compat, params=_params("weights_path", where="query", required=True), op_id="sovits_set_gpt_weights")},
        "/set_sovits_weights": {"get": _op("api_v2: success for the SoVITS weights this server runs", {
            "200": SOVITS_OK, "400": SOVITS_FAILED, "401": SOVITS_ERR, "403": SOVITS_ERR, "429": SOVITS_ERR},
            tags=compat, params=_params("weights_path", where="query", required=True), op_id="sovits_set_sovits_weights")},
        "/openapi.json": {"get": _op("This document", {"200": _json(ANY_OBJ)}, tags=["server"], security=PUBLIC,
                                     op_id="openapi")},
        "/protocol.json": {"get": _op("The bot protocol's JSON Schema (WebSocket /ws)", {"200": {
            "description": "JSON Schema 2020-12", "content": {"application/schema+json": {"schema": ANY_OBJ}}}},
            tags=["server"], security=PUBLIC, op_id="protocol_schema")},
    }
    # Every route of a room also answers 403 to a join grant for another room or role, or from a
    # rotated link (code link_revoked).
    for path, item in paths.items():
        for operation in item.values():
            responses = operation.get("responses", {})
            if "{room}" in path and "401" in responses:
                responses.setdefault("403", ERR)
    return paths


_DOCUMENT: Json = {
    "openapi": "3.1.0",
    "info": {
        "title": "voxroom",
        "version": VERSION,
        "description": "An AI voice co-host server: rooms, the co-host, voices, WebRTC, and speech APIs "
                       "compatible with OpenAI, GPT-SoVITS api_v2 and SillyTavern. "
                       f"At most {MAX_API_SPEECHES} compatibility-API speeches are queued or speaking at once, "
                       "and per account a request rate and a share of them (429 with Retry-After beyond).",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"basic": []}, {"token": []}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (vxr_…) or a join grant"},
            "basic": {"type": "http", "scheme": "basic",
                      "description": "the same as the password (any user name), for tools given only a base URL "
                                     "such as http://any:vxr_…@host:port"},
            "token": {"type": "apiKey", "in": "query", "name": "token",
                      "description": "the same, where a client cannot set headers"},
        },
        "schemas": {
            "Error": _obj(["error", "code"], error=STR, code=STR),
            "OpenAIError": _obj(["error"], error=_obj(["message", "type", "param", "code"], message=STR, type=STR,
                                                      param={"type": ["string", "null"]},
                                                      code={"type": ["string", "null"]})),
            "Room": _obj(["id", "name"], id=STR, name=STR),
            "LLMTest": _obj(["ok", "error", "models", "model_listed", "first_token_ms"], ok=BOOL, error=STR,
                            models={"type": "array", "items": STR}, model_listed=BOOL,
                            first_token_ms={"type": ["integer", "null"]}),
            "Links": _obj(["listen_url", "overlay_url", "listener_grant"], listen_url=STR, overlay_url=STR,
                          listener_grant=STR),
            "CohostSettings": _obj(["mode", "policy", "templates"], mode=STR, persona={"type": ["string", "null"]},
                                   policy={"enum": ["resume", "drop", "duck"]},
                                   idle_after={"type": ["number", "null"]},
                                   blocked_words={"type": "array", "items": STR}, templates=ANY_OBJ),
            "SfuState": _obj(["room", "endpoints"], room=STR, endpoints={"type": "array", "items": ANY_OBJ}),
            "LLMSettings": _obj(["source", "mode", "base_url", "model", "has_api_key"], source=STR, mode=STR,
                                base_url={"type": ["string", "null"]}, model={"type": ["string", "null"]},
                                has_api_key=BOOL),
            "Voice": _obj(["id", "name", "engine", "duration", "reference", "transcript", "consent"], id=STR, name=STR,
                          engine=STR, can_clone=BOOL, duration=NUM, created_at=NUM, reference=ANY_OBJ,
                          transcript={"type": ["string", "null"]}, consent=_obj(["who"], who=STR, at=NUM,
                                                                                 statement=STR)),
            "NewRoom": _obj(["id", "listen_url", "overlay_url", "listener_grant"], id=STR, name=STR, listen_url=STR,
                            overlay_url=STR, listener_grant=STR),
        },
    },
    "paths": _paths(),
}


def openapi_document() -> Json:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
