"""Platform chat connectors: Twitch, YouTube Live, Bilibili and TikTok LIVE chat as `ChatEvent`s.

Each connector runs as one asyncio task (`base.Connector`) and hands every event to a
`submit(event) -> str` callback, which is a room co-host's `CoHost.submit`. Nothing here knows
the server; `streaming/connectors_api.py` stores connectors and starts them for rooms.
"""
