"""YouTube Live chat through the Data API v3: `liveChatMessages.list` polled with an API key or OAuth.

The streamer enters the live video's id (or the chat's liveChatId) and either a Google API key or
OAuth credentials: an access token, and/or a refresh token with its OAuth client's id and secret
(then a new access token is fetched from Google's token endpoint whenever the old one is refused).
A video id is turned into its `activeLiveChatId` once (`videos.list`, 1 quota unit); then every poll
is one `liveChatMessages.list` call (5 units) asking for `snippet,authorDetails`, waiting the
`pollingIntervalMillis` the previous answer gave and passing its `nextPageToken`. The page token
survives reconnects, so a failed poll is simply retried: nothing is read twice or missed. Messages
published before the connector started (the backlog the first page holds) are remembered, not read.
A rate limit is retried after a pause; a used-up daily quota is retried when it resets (midnight
Pacific time), so a connector outlives a quota that ran out mid-stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx2

from voxroom.agent.connectors.base import Connector, FatalError, MalformedFrame, RetryableError
from voxroom.agent.connectors.value import YOUTUBE_MEMBERSHIP_USD, to_usd
from voxroom.agent.events import ChatEvent, EventError

YOUTUBE_API_URL = "https://www.googleapis.com/youtube/v3"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
LIST_COST_UNITS = 5  # quota cost of one liveChatMessages.list call
RATE_LIMIT_PAUSE_S = 30.0  # after rateLimitExceeded / userRateLimitExceeded (the API gives no Retry-After)
RATE_LIMITED = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
FATAL_REASONS = {
    "liveChatEnded": "the live chat has ended",
    "liveChatNotFound": "no such live chat",
    "liveChatDisabled": "the live chat is disabled",
    "forbidden": "the API key may not read this chat",
    "keyInvalid": "the API key is not valid",
    "badRequest": "YouTube refused the request",
}


def seconds_until_quota_reset(now: float) -> float:
    """Seconds from `now` (Unix time) to the next midnight Pacific time, when daily quotas reset."""
    try:
        pacific: Any = ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no time zone database: Pacific standard time is close enough
        pacific = timezone(timedelta(hours=-8))
    local = datetime.fromtimestamp(now, pacific)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=pacific)
    return max(1.0, midnight.timestamp() - now)


def _author(item: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    author = item.get("authorDetails") or {}
    badges = set()
    if author.get("isChatModerator") or author.get("isChatOwner"):
        badges.add("moderator")
    if author.get("isChatSponsor"):
        badges.add("subscriber")
    return str(author.get("displayName") or ""), frozenset(badges)


def map_item(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(event dict, extra ChatEvent fields) for one liveChatMessage resource, None if not chat.

    Raises KeyError/TypeError/ValueError on a resource without the fields its type needs.
    """
    snippet = item["snippet"]
    kind = snippet["type"]
    user, badges = _author(item)
    base: dict[str, Any] = {"id": f"youtube:{item['id']}", "user": user}
    extra: dict[str, Any] = {"badges": badges}
    if kind == "textMessageEvent":
        text = (snippet.get("textMessageDetails") or {}).get("messageText") or snippet.get("displayMessage", "")
        return {**base, "type": "message", "text": text}, extra
    if kind in ("superChatEvent", "superStickerEvent"):
        sticker = kind == "superStickerEvent"
        details = snippet["superStickerDetails" if sticker else "superChatDetails"]
        amount = int(details["amountMicros"]) / 1e6
        currency = str(details["currency"])
        name = "superchat"
        if sticker:
            name = "Super Sticker " + str((details.get("superStickerMetadata") or {}).get("altText", "")).strip()
        return ({**base, "type": "gift", "gift": name.strip(), "amount": amount, "currency": currency,
                 "text": str(details.get("userComment", ""))},
                {**extra, "tier": str(details.get("tier", "")), "value_usd": to_usd(amount, currency)})
    if kind == "newSponsorEvent":
        details = snippet.get("newSponsorDetails") or {}
        return ({**base, "type": "gift", "gift": "membership"},
                {**extra, "tier": str(details.get("memberLevelName", "")), "value_usd": YOUTUBE_MEMBERSHIP_USD})
    if kind == "memberMilestoneChatEvent":
        details = snippet["memberMilestoneChatDetails"]
        return ({**base, "type": "gift", "gift": "membership milestone", "amount": float(details["memberMonth"]),
                 "currency": "months", "text": str(details.get("userComment", ""))},
                {**extra, "tier": str(details.get("memberLevelName", ""))})
    if kind == "membershipGiftingEvent":
        details = snippet["membershipGiftingDetails"]
        count = int(details["giftMembershipsCount"])
        return ({**base, "type": "gift", "gift": "gift memberships", "amount": float(count), "currency": "memberships"},
                {**extra, "tier": str(details.get("giftMembershipsLevelName", "")), "count": count,
                 "value_usd": round(count * YOUTUBE_MEMBERSHIP_USD, 2)})
    return None  # giftMembershipReceivedEvent (counted with the gift), deletions, bans, polls...


def _published(item: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(item["snippet"]["publishedAt"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


class YouTubeConnector(Connector):
    platform = "youtube"

    def __init__(self, submit: Any, *, channel: str, api_key: str = "", access_token: str = "",
                 refresh_token: str = "", client_id: str = "", client_secret: str = "",
                 url: str = YOUTUBE_API_URL, token_url: str = GOOGLE_TOKEN_URL,
                 skip_older_than_s: float | None = 60.0, min_poll_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(submit, name=channel, **kwargs)
        can_refresh = bool(refresh_token and client_id and client_secret)
        if not (api_key or access_token or can_refresh):
            raise ValueError("YouTube needs an API key (Google Cloud console, YouTube Data API v3) or OAuth "
                             "credentials (an access token, or a refresh token with its client id and secret)")
        self.channel = channel
        self.api_key = api_key
        self.access_token = access_token
        self.refresh_token = refresh_token if can_refresh else ""
        self.client_id = client_id
        self.client_secret = client_secret
        self.url = url.rstrip("/")
        self.token_url = token_url
        self.live_chat_id = "" if len(channel) == 11 else channel  # video ids are 11 characters
        self.page_token = ""
        self.skip_older_than_s = skip_older_than_s
        self.min_poll_s = min_poll_s
        self.started_at = time.time()
        self.quota_units = 0  # units this connector has spent
        self.token_refreshes = 0

    @property
    def uses_oauth(self) -> bool:
        return bool(self.access_token or self.refresh_token)

    async def _refresh_access_token(self, http: httpx2.AsyncClient) -> None:
        """A new access token from the refresh token (OAuth 2.0 refresh_token grant)."""
        response = await http.post(self.token_url, data={
            "grant_type": "refresh_token", "refresh_token": self.refresh_token,
            "client_id": self.client_id, "client_secret": self.client_secret})
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"Google's token endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code >= 400 or not isinstance(token, str) or not token:
            error = body.get("error", "") if isinstance(body, dict) else ""
            raise FatalError(f"Google refused to renew the OAuth access token ({response.status_code} "
                             f"{error}); authorise voxroom again")
        self.access_token = token
        self.token_refreshes += 1

    async def _get(self, http: httpx2.AsyncClient, path: str, params: dict[str, Any], cost: int) -> dict[str, Any]:
        if self.refresh_token and not self.access_token:
            await self._refresh_access_token(http)
        response = await self._send(http, path, params, cost)
        if response.status_code == 401 and self.refresh_token:  # the access token expired (they last an hour)
            await self._refresh_access_token(http)
            response = await self._send(http, path, params, cost)
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"YouTube answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise MalformedFrame(f"a {response.status_code} answer that is not JSON") from None
        if not isinstance(body, dict):
            raise MalformedFrame("an answer that is not a JSON object")
        if response.status_code >= 400:
            errors = (body.get("error") or {}).get("errors") or [{}]
            reason = str(errors[0].get("reason", ""))
            if reason in RATE_LIMITED:
                raise RetryableError(f"YouTube's rate limit ({reason})", retry_after=RATE_LIMIT_PAUSE_S)
            if reason == "quotaExceeded":
                raise RetryableError("the daily quota is used up (each poll costs 5 units); trying again when "
                                     "it resets at midnight Pacific time",
                                     retry_after=seconds_until_quota_reset(time.time()))
            if response.status_code == 401 and self.uses_oauth:
                raise FatalError("the OAuth access token expired or was revoked; authorise voxroom again "
                                 f"(401 {reason})")
            raise FatalError(f"{FATAL_REASONS.get(reason, 'YouTube refused the request')} "
                             f"({response.status_code} {reason})")
        return body

    async def _send(self, http: httpx2.AsyncClient, path: str, params: dict[str, Any], cost: int) -> httpx2.Response:
        self.quota_units += cost
        if self.uses_oauth:
            return await http.get(f"{self.url}/{path}", params=params,
                                  headers={"Authorization": f"Bearer {self.access_token}"})
        return await http.get(f"{self.url}/{path}", params={**params, "key": self.api_key})

    async def _resolve_chat(self, http: httpx2.AsyncClient) -> None:
        body = await self._get(http, "videos", {"part": "liveStreamingDetails", "id": self.channel}, 1)
        items = body.get("items") or []
        chat_id = items[0].get("liveStreamingDetails", {}).get("activeLiveChatId") if items else None
        if not chat_id:
            raise FatalError(f"video {self.channel} is not live (no active live chat)")
        self.live_chat_id = str(chat_id)

    async def session(self) -> None:
        async with httpx2.AsyncClient(timeout=20) as http:
            if not self.live_chat_id:
                await self._resolve_chat(http)
            while True:
                params = {"liveChatId": self.live_chat_id, "part": "snippet,authorDetails", "maxResults": 2000}
                if self.page_token:
                    params["pageToken"] = self.page_token
                try:
                    page = await self._get(http, "liveChat/messages", params, LIST_COST_UNITS)
                except MalformedFrame as exc:
                    self.malformed(str(exc))
                    await asyncio.sleep(max(self.min_poll_s, 1.0))
                    continue
                self.mark_live(f"reading live chat {self.live_chat_id}")
                await self.read_page(page)
                if page.get("offlineAt"):
                    raise FatalError("the stream has ended")
                if page.get("nextPageToken"):
                    self.page_token = str(page["nextPageToken"])
                wait_ms = page.get("pollingIntervalMillis")
                wait = wait_ms / 1000.0 if isinstance(wait_ms, int | float) else 5.0
                await self.clock.sleep(max(self.min_poll_s, wait))

    async def read_page(self, page: Mapping[str, Any]) -> None:
        items = page.get("items")
        if not isinstance(items, list):
            self.malformed("a page without a list of items")
            return
        for item in items:
            await self.pause()
            event = self._event(item)
            if event is None:
                continue
            published = _published(item)
            if (self.skip_older_than_s is not None and published is not None
                    and published < self.started_at - self.skip_older_than_s):
                self.recent.add(event.id)  # the backlog: known, not read aloud
                continue
            self.emit(event)

    def _event(self, item: Any) -> ChatEvent | None:
        try:
            if not isinstance(item, dict):
                raise TypeError("an item that is not an object")
            if item.get("snippet", {}).get("type") == "chatEndedEvent":
                raise FatalError("the live chat has ended")
            mapped = map_item(item)
            if mapped is None:
                return None
            data, extra = mapped
            return self.make_event(data, **extra)
        except (KeyError, TypeError, ValueError, AttributeError, EventError) as exc:
            self.malformed(f"{type(exc).__name__}: {exc}", str(item))
            return None
