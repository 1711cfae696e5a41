"""YouTube Live chat polling against a local HTTP server shaped like the Data API v3."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qsl

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.connectors.wire import FIXTURES, Collected, LateTicker, fast_backoff, run_until, wait_until
from voxroom.agent.connectors.base import ConnectorState
from voxroom.agent.connectors.youtube import YouTubeConnector, map_item, seconds_until_quota_reset
from voxroom.agent.events import EventKind
from voxroom.streaming.connectors_api import ConnectorRecord, make_connector

PAGE: dict[str, Any] = json.loads((FIXTURES / "youtube_live_chat_messages.json").read_text())


def text_item(i: int) -> dict[str, Any]:
    return {"kind": "youtube#liveChatMessage", "id": f"msg-{i:06d}",
            "snippet": {"type": "textMessageEvent", "publishedAt": "2026-12-02T15:00:00Z",
                        "textMessageDetails": {"messageText": f"message {i}"}},
            "authorDetails": {"displayName": f"viewer{i % 50}"}}


@dataclass
class FakeYouTube:
    """Serves `items` in pages of `page_size`; the page token is the next index. `script` holds what to
    answer instead of the next pages: an HTTP status, "garbage", "replay" (ignore the token once)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 50
    poll_ms: int = 0
    script: list[Any] = field(default_factory=list)
    offline_after: int | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    chat_id: str = "Cg0KC2xpdmVjaGF0aWQ"
    oauth: bool = False  # requests carry a bearer token instead of a key
    access_token: str = "token-1"  # the one the token endpoint issued last
    token_requests: list[dict[str, str]] = field(default_factory=list)

    async def messages(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append(params)
        assert params["part"] == "snippet,authorDetails"
        if self.oauth:
            assert "key" not in params
            if request.headers.get("authorization") != f"Bearer {self.access_token}":
                return JSONResponse({"error": {"code": 401, "errors": [{"reason": "authError"}]}}, 401)
        else:
            assert params["key"] == "test-key"
        if params["liveChatId"] != self.chat_id:
            return JSONResponse({"error": {"code": 404, "errors": [{"reason": "liveChatNotFound"}]}}, 404)
        start = int(params.get("pageToken", "0"))
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, int):
                return JSONResponse({"error": {"code": step, "errors": [{"reason": "backendError"}]}}, step)
            if step in ("rateLimitExceeded", "quotaExceeded"):
                return JSONResponse({"error": {"code": 403, "errors": [{"reason": step}]}}, 403)
            if step == "expire":  # the access token in use expires: this request is refused
                self.access_token = "expired"
                return JSONResponse({"error": {"code": 401, "errors": [{"reason": "authError"}]}}, 401)
            if step == "garbage":
                return PlainTextResponse("<html>oops</html>")
            if step == "replay":
                start = max(0, start - 10)
        end = min(len(self.items), start + self.page_size)
        body: dict[str, Any] = {"kind": "youtube#liveChatMessageListResponse", "pollingIntervalMillis": self.poll_ms,
                                "nextPageToken": str(end), "items": self.items[start:end]}
        if self.offline_after is not None and end >= self.offline_after:
            body["offlineAt"] = "2026-12-02T16:00:00Z"
        return JSONResponse(body)

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))  # application/x-www-form-urlencoded
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if (form.get("grant_type"), form.get("refresh_token"), form.get("client_secret")) != (
                "refresh_token", "1//refresh", "client-secret"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        self.access_token = f"token-{len(self.token_requests) + 1}"
        return JSONResponse({"access_token": self.access_token, "expires_in": 3599, "token_type": "Bearer"})

    async def videos(self, request: Request) -> Response:
        assert request.query_params["part"] == "liveStreamingDetails"
        if request.query_params["id"] != "dQw4w9WgXcQ":
            return JSONResponse({"items": []})
        return JSONResponse({"items": [{"id": "dQw4w9WgXcQ", "liveStreamingDetails": {"activeLiveChatId": self.chat_id}}]})


@contextlib.asynccontextmanager
async def serve(fake: FakeYouTube) -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/youtube/v3/liveChat/messages", fake.messages),
                            Route("/youtube/v3/videos", fake.videos),
                            Route("/youtube/v3/oauth2/token", fake.token, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/youtube/v3"
    finally:
        server.should_exit = True
        await task


def connector_for(url: str, got: Collected, channel: str = "Cg0KC2xpdmVjaGF0aWQ", **kw: Any) -> YouTubeConnector:
    return YouTubeConnector(got, channel=channel, api_key="test-key", url=url, skip_older_than_s=None,
                            min_poll_s=0.0, backoff=fast_backoff(), cohost_names=["cohost"], **kw)



async def test_fixture_page_maps_every_event_kind_and_a_video_id_finds_its_chat() -> None:
    fake = FakeYouTube(items=PAGE["items"])
    got = Collected()
    async with serve(fake) as url:
        connector = connector_for(url, got, channel="dQw4w9WgXcQ")
        await run_until(connector, lambda: len(got.events) >= 7)
    text, question, superchat, sticker, sponsor, milestone, gifting = got.events
    assert text.kind is EventKind.MESSAGE and text.user == "Alice" and text.badges == {"subscriber"}
    assert text.id == "youtube:LCC.text-0001"
    assert question.kind is EventKind.QUESTION and question.badges == {"moderator"}
    assert superchat.kind is EventKind.GIFT and (superchat.amount, superchat.currency) == (1000, "JPY")
    assert superchat.tier == "3" and superchat.value_usd == pytest.approx(6.7)
    assert superchat.text == "love the stream"
    assert sticker.gift == "Super Sticker dancing cat" and sticker.value_usd == 2.0
    assert sponsor.gift == "membership" and sponsor.tier == "Gold" and sponsor.value_usd == 4.99
    assert milestone.amount == 12 and milestone.text == "a year already"
    assert gifting.count == 5 and gifting.value_usd == pytest.approx(24.95)
    assert connector.counters.malformed == 0
    assert connector.quota_units >= 1 + 5  # videos.list, then at least one liveChatMessages.list
    assert fake.requests[0]["maxResults"] == "2000"


async def test_failed_polls_and_a_lost_token_neither_duplicate_nor_lose_messages() -> None:
    fake = FakeYouTube(items=[text_item(i) for i in range(100)], page_size=30,
                       script=[None, 503, "replay", "garbage", None])
    got = Collected()
    async with serve(fake) as url:
        connector = connector_for(url, got)
        await run_until(connector, lambda: len(got.events) >= 100)
    assert got.ids == [f"youtube:msg-{i:06d}" for i in range(100)]
    assert connector.counters.reconnects == 1 and connector.counters.duplicates == 10
    assert connector.counters.malformed == 1


async def test_malformed_items_are_skipped() -> None:
    items = [text_item(0), {"id": "x"}, {"id": "y", "snippet": {"type": "superChatEvent"}}, "not an object",
             {"id": "z", "snippet": {"type": "textMessageEvent", "textMessageDetails": {"messageText": "hi"}},
              "authorDetails": {}},  # no author name
             text_item(1)]
    fake = FakeYouTube(items=items)
    got = Collected()
    async with serve(fake) as url:
        connector = connector_for(url, got)
        connector.start()
        await wait_until(lambda: len(got.events) >= 2)
        assert connector.status.state is ConnectorState.LIVE
        await connector.stop()
    assert got.ids == ["youtube:msg-000000", "youtube:msg-000001"]
    assert connector.counters.malformed == 4


async def test_chat_that_ends_or_does_not_exist_stops_with_an_error() -> None:
    fake = FakeYouTube(items=[text_item(i) for i in range(5)], offline_after=5)
    async with serve(fake) as url:
        ended = connector_for(url, Collected())
        await asyncio.wait_for(ended.start(), 10)
        missing = connector_for(url, Collected(), channel="no-such-chat-id")
        await asyncio.wait_for(missing.start(), 10)
    assert ended.status.state is ConnectorState.ERROR and "ended" in ended.status.message
    assert ended.counters.received == 5
    assert missing.status.state is ConnectorState.ERROR and "no such live chat" in missing.status.message


async def test_backlog_published_before_the_start_is_not_read() -> None:
    fake = FakeYouTube(items=[text_item(0)])  # published 2026-12-02T15:00Z, long before "now" below
    got = Collected()
    async with serve(fake) as url:
        connector = YouTubeConnector(got, channel=fake.chat_id, api_key="test-key", url=url, min_poll_s=0.0,
                                     backoff=fast_backoff())
        connector.started_at = 1_900_000_000.0
        await run_until(connector, lambda: len(fake.requests) >= 2)
    assert got.events == [] and len(connector.recent) == 1


async def test_flood_of_1000_messages_a_second_loses_nothing_and_keeps_the_loop_responsive() -> None:
    total = 3000
    fake = FakeYouTube(items=[], page_size=200, poll_ms=200)
    got = Collected()

    async def produce() -> None:  # 1,000 new messages a second for 3 s
        for i in range(total // 20):
            fake.items.extend(text_item(j) for j in range(i * 20, (i + 1) * 20))
            await asyncio.sleep(0.02)

    async with serve(fake) as url:
        connector = connector_for(url, got, intake_limit=5000)
        connector.min_poll_s = 0.2
        with LateTicker() as ticker:
            producer = asyncio.create_task(produce())
            await run_until(connector, lambda: connector.counters.received >= total)
            await producer
    counters = connector.counters
    assert counters.received == total and counters.submitted + counters.shed == total
    assert got.ids == [f"youtube:msg-{i:06d}" for i in range(total)]
    assert ticker.ticks > 50 and ticker.late <= 2, (ticker.ticks, ticker.late)


async def test_oauth_renews_an_expired_access_token_and_reads_on() -> None:
    """The access token a streamer authorised with lasts an hour; with a refresh token the connector
    fetches a new one when YouTube refuses the old, and misses nothing. Built as the server builds it
    (a stored record and its credentials), so the token endpoint is found from the record's url."""
    fake = FakeYouTube(items=[text_item(i) for i in range(60)], page_size=20, oauth=True,
                       script=[None, "expire"])
    got = Collected()
    async with serve(fake) as url:
        record = ConnectorRecord("con_1", "r1", "youtube", fake.chat_id, url, 0.0)
        connector = make_connector(record, {"access_token": "token-1", "refresh_token": "1//refresh",
                                            "client_id": "id", "client_secret": "client-secret"},
                                   got, backoff=fast_backoff())
        assert isinstance(connector, YouTubeConnector)
        connector.min_poll_s, connector.skip_older_than_s = 0.0, None
        await run_until(connector, lambda: len(got.events) >= 60)
    assert got.ids == [f"youtube:msg-{i:06d}" for i in range(60)]
    assert connector.token_refreshes == 1 and fake.token_requests[0]["client_id"] == "id"
    assert connector.counters.reconnects == 0 and connector.status.state is not ConnectorState.ERROR


async def test_oauth_without_a_way_to_renew_stops_with_a_clear_error() -> None:
    fake = FakeYouTube(items=[text_item(0)], oauth=True, access_token="another")
    async with serve(fake) as url:
        connector = YouTubeConnector(Collected(), channel=fake.chat_id, access_token="token-1", url=url,
                                     min_poll_s=0.0, backoff=fast_backoff())
        await asyncio.wait_for(connector.start(), 10)
        refused = YouTubeConnector(Collected(), channel=fake.chat_id, refresh_token="1//revoked", client_id="id",
                                   client_secret="client-secret", url=url, token_url=url + "/oauth2/token",
                                   min_poll_s=0.0, backoff=fast_backoff())
        await asyncio.wait_for(refused.start(), 10)
    assert connector.status.state is ConnectorState.ERROR and "authorise voxroom again" in connector.status.message
    assert refused.status.state is ConnectorState.ERROR and "invalid_grant" in refused.status.message


async def test_a_rate_limit_pauses_and_a_used_up_quota_waits_for_its_reset() -> None:
    fake = FakeYouTube(items=[text_item(i) for i in range(40)], page_size=20, script=[None, "rateLimitExceeded"])
    got = Collected()
    async with serve(fake) as url:
        limited = connector_for(url, got)
        with patch("voxroom.agent.connectors.youtube.RATE_LIMIT_PAUSE_S", 0.05):
            await run_until(limited, lambda: len(got.events) >= 40)
        assert got.ids == [f"youtube:msg-{i:06d}" for i in range(40)] and limited.counters.reconnects == 1

        fake.script = ["quotaExceeded"]
        out_of_quota = connector_for(url, Collected())
        out_of_quota.start()
        await wait_until(lambda: out_of_quota.status.state is ConnectorState.RECONNECTING)
        retry_in = (out_of_quota.status.next_retry_at or 0) - time.time()
        expected = seconds_until_quota_reset(time.time())
        assert "quota" in out_of_quota.status.message and abs(retry_in - expected) < 5
        await out_of_quota.stop()


def test_the_daily_quota_resets_at_midnight_pacific_time() -> None:
    # 2026-12-03 07:59:00 UTC is 23:59 on Dec 2 in Los Angeles (PST, UTC-8): one minute to the reset.
    assert seconds_until_quota_reset(1_796_284_740.0) == pytest.approx(60.0)
    # 2026-07-01 07:00:00 UTC is midnight PDT (UTC-7): the next reset is a day later.
    assert seconds_until_quota_reset(1_782_889_200.0) == pytest.approx(86_400.0)


def test_unknown_item_types_are_not_chat() -> None:
    assert map_item({"id": "d", "snippet": {"type": "messageDeletedEvent"}, "authorDetails": {}}) is None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=10)
item_types = st.sampled_from(["textMessageEvent", "superChatEvent", "superStickerEvent", "newSponsorEvent",
                              "memberMilestoneChatEvent", "membershipGiftingEvent", "somethingNew"])


@given(item_types, st.dictionaries(st.sampled_from(["superChatDetails", "superStickerDetails", "textMessageDetails",
                                                    "memberMilestoneChatDetails", "membershipGiftingDetails",
                                                    "newSponsorDetails", "publishedAt"]), json_values),
       json_values)
def test_item_mapping_fails_only_in_the_ways_the_connector_catches(kind: str, details: dict[str, Any],
                                                                    author: Any) -> None:
    item = {"id": "x", "snippet": {"type": kind, **details}, "authorDetails": author}
    try:
        map_item(item)
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
