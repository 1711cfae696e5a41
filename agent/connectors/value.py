"""What a paid event is worth, in US dollars, so that priorities can compare a Super Chat in yen,
a 500-bit cheer and a Bilibili gift in gold seeds.

The rates are fixed reference figures (late 2026, rounded), not live exchange rates: the co-host
only needs to know that 500 bits outrank a 1 EUR Super Chat, not the exact figure. Change
`USD_PER_UNIT` to retune; docs/connectors.md prints the table.
"""

from __future__ import annotations

from collections.abc import Mapping

# US dollars per one unit of each currency or platform token.
USD_PER_UNIT: Mapping[str, float] = {
    # ISO 4217 currencies seen in YouTube Super Chats and Bilibili prices
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "CNY": 0.14, "KRW": 0.00073,
    "TWD": 0.031, "HKD": 0.128, "CAD": 0.73, "AUD": 0.66, "NZD": 0.60, "INR": 0.012,
    "BRL": 0.18, "MXN": 0.055, "PHP": 0.017, "IDR": 0.000063, "THB": 0.028, "VND": 0.00004,
    "SGD": 0.74, "MYR": 0.21, "CHF": 1.12, "SEK": 0.095, "NOK": 0.093, "DKK": 0.145,
    "PLN": 0.25, "CZK": 0.043, "HUF": 0.0027, "RUB": 0.011, "TRY": 0.03, "ARS": 0.001,
    "CLP": 0.00105, "COP": 0.00025, "PEN": 0.27, "ZAR": 0.055, "ILS": 0.27, "SAR": 0.27,
    "AED": 0.27, "EGP": 0.02,
    # platform tokens
    "bits": 0.01,  # Twitch: a cheer of 100 bits is 1 USD to the streamer
    "diamonds": 0.005,  # TikTok: what a creator earns per diamond (a gift's diamond_count)
    "gold": 0.00014,  # Bilibili gold seeds (金瓜子): 1000 = 1 CNY
}

# Fixed prices of subscriptions and memberships, US dollars per month.
TWITCH_SUB_USD: Mapping[str, float] = {"prime": 4.99, "1000": 4.99, "2000": 9.99, "3000": 24.99}
YOUTUBE_MEMBERSHIP_USD = 4.99  # the level's price is not in the message; the most common level
BILIBILI_GUARD_CNY: Mapping[int, float] = {3: 198.0, 2: 1998.0, 1: 19998.0}  # 舰长, 提督, 总督


def to_usd(amount: float, unit: str) -> float:
    """`amount` of `unit` in US dollars; 0.0 for a unit the table does not know."""
    rate = USD_PER_UNIT.get(unit) or USD_PER_UNIT.get(unit.upper(), 0.0)
    return round(amount * rate, 4)
