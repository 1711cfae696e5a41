"""The OpenAPI document names exactly the mounted routes, and is a well-formed OpenAPI 3.1 document."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from conftest import RunningServer
from voxroom.streaming.openapi import openapi_document

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    from voxroom.streaming.app import VoxroomServer
    from voxroom.streaming.config import ServerConfig

    class NoEngine:
        name, sample_rate, can_clone = "none", 22050, False

    data: Path = tmp_path_factory.mktemp("openapi")
    server = VoxroomServer(ServerConfig(host="127.0.0.1", port=0, data_dir=data, ice_addresses=["127.0.0.1"]),
                           NoEngine())  # type: ignore[arg-type]
    mounted: set[tuple[str, str]] = set()
    for route in server.app.routes:
        if isinstance(route, Route):
            mounted |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, WebSocketRoute):
            mounted.add((route.path, "get"))  # documented as a GET answered with 101
        elif isinstance(route, Mount):
            mounted.add((route.path + "/{path}", "get"))
        else:
            raise AssertionError(f"a route of a kind the test does not know: {route!r}")
    server.db.close()
    return mounted


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_every_route_is_documented_and_every_documented_route_exists(app_routes: set[tuple[str, str]]) -> None:
    doc = openapi_document()
    assert app_routes - documented(doc) == set(), "mounted but not in the OpenAPI document"
    assert documented(doc) - app_routes == set(), "in the OpenAPI document but not mounted"


def test_the_compat_and_core_routes_are_there(app_routes: set[tuple[str, str]]) -> None:
    for needed in [("/v1/audio/speech", "post"), ("/v1/models", "get"), ("/tts", "get"), ("/tts", "post"),
                   ("/speakers", "get"), ("/", "post"), ("/api/rooms/{room}/say", "post"), ("/rooms/{room}/whep", "post"),
                   ("/api/rooms/{room}/host-speaking", "post"), ("/api/voices", "get"), ("/openapi.json", "get")]:
        assert needed in documented(openapi_document())


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_structure() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    json.dumps(doc)  # plain JSON data
    operation_ids: list[str] = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert method in METHODS, (path, method)
            assert op.get("responses"), f"{method.upper()} {path} has no responses"
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d|default", status), (path, status)
                assert response.get("description"), (path, method, status)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, f"{method.upper()} {path}: path parameters {declared} != {templated}"
            for p in op.get("parameters", []):
                assert p["in"] in ("path", "query", "header", "cookie") and "schema" in p
                if p["in"] == "path":
                    assert p["required"] is True
            operation_ids.append(op["operationId"])
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for requirement in doc["security"]:
        assert set(requirement) <= set(doc["components"]["securitySchemes"])


def test_valid_by_openapi_spec_validator() -> None:
    from openapi_spec_validator import validate

    validate(openapi_document())  # type: ignore[arg-type]


def test_served_without_a_token(live_server: RunningServer) -> None:
    status, headers, raw = live_server.request("GET", "/openapi.json", token="")
    assert status == 200 and json.loads(raw) == openapi_document()


def test_the_stream_deck_page_names_only_documented_routes() -> None:
    """docs/stream-deck.md lists the console's actions as HTTP calls: each must be a route that exists."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "stream-deck.md").read_text(encoding="utf-8")
    calls = set(re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/api/[^` ]+)", text))
    assert len(calls) >= 6, calls
    paths = documented(openapi_document())
    for method, path in calls:
        pattern = re.sub(r"\b(ROOM|ID)\b", "{x}", path)
        assert any(re.sub(r"\{[^}]+\}", "{x}", p) == pattern and m == method.lower() for p, m in paths), (method, path)
