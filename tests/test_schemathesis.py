"""A bounded schemathesis run against /openapi.json on a real server on 127.0.0.1: generated requests
for every operation (a few per operation, a few hundred in all), and no answer may be a 5xx or break
the response schema the document gives (status, content type, body).

Left out: the WebSocket routes (documented as a 101 upgrade, which plain HTTP cannot exercise; the bot
protocol has its own fuzz test in test_fuzz_server.py), routes that would reach hosts outside the
machine (chat connectors, SFU egress, the LLM endpoint and its test), and voice upload (an enrollment
analysis per case; test_upload_corpus.py feeds it hostile files)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import RunningServer, start_server
from test_compat_openai import add_voice
from voxroom.streaming.openapi import openapi_document

LEFT_OUT = {"room_events", "enroll_live", "bot_socket", "create_connector", "put_sfu", "put_llm", "test_llm",
            "create_voice"}
CASES_PER_OPERATION = int(os.environ.get("VOXROOM_SCHEMATHESIS_CASES", "6"))


@schemathesis.serializer("application/sdp")
def sdp_body(ctx: Any, value: Any) -> bytes:
    """WHIP and WHEP take an SDP offer as text: whatever string was generated, as UTF-8."""
    return str(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory, stock_engine: Any) -> Iterator[RunningServer]:
    """A server of its own (what the run creates stays there); fair-use rates raised so that the run
    exercises the routes, not the 429."""
    yield from start_server(tmp_path_factory.mktemp("schemathesis"), stock_engine, api_requests_per_min=100_000)


def _operations() -> list[tuple[str, Any]]:
    """(operation id, generation mode): every operation with valid requests, and those whose schema
    says something that can be broken (a body, a typed or required parameter) with invalid ones too."""
    out = []
    for path in openapi_document()["paths"].values():
        for method, op in path.items():
            if method == "parameters" or op["operationId"] in LEFT_OUT:
                continue
            out.append((op["operationId"], GenerationMode.POSITIVE))
            breakable = "requestBody" in op or any(
                p["schema"] != {"type": "string"} or (p["required"] and p["in"] == "query")
                for p in op.get("parameters", []))
            if breakable:
                out.append((op["operationId"], GenerationMode.NEGATIVE))
    return sorted(out, key=str)


@pytest.fixture(scope="module")
def fuzzed_room(fuzzed_server: RunningServer) -> str:
    status, room = fuzzed_server.json("POST", "/api/rooms", {"name": "fuzzed"})
    assert status == 201
    return str(room["id"])


@pytest.fixture(scope="module")
def fuzzed_voice(fuzzed_server: RunningServer) -> str:
    return add_voice(fuzzed_server, "fuzzed voice")


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: RunningServer) -> Any:
    schema = schemathesis.openapi.from_dict(openapi_document())
    schema.config.update(base_url=fuzzed_server.base)
    return schema


@pytest.mark.parametrize(("operation_id", "mode"), _operations(), ids=lambda v: str(v).rsplit(".", 1)[-1].lower())
def test_no_5xx_and_answers_as_documented(api_schema: Any, fuzzed_server: RunningServer, fuzzed_room: str,
                                          fuzzed_voice: str, operation_id: str, mode: GenerationMode) -> None:
    """Requests the document allows (positive) and requests it does not (negative: wrong types,
    missing fields, out-of-range values)."""
    operation = api_schema.find_operation_by_id(operation_id)
    headers = {"Authorization": f"Bearer {fuzzed_server.token}"}
    strategy = operation.as_strategy(mode)
    real = {name: value for name, value in (("room", fuzzed_room), ("voice", fuzzed_voice))
            if "{" + name + "}" in operation.path and operation_id != f"delete_{name}"}
    if real:  # half the cases about a room and a voice that exist (deleting them is left to the other half)
        strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=real))

    @given(case=strategy)
    @settings(max_examples=CASES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, timeout=60, checks=[
            not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])

    check()
