"""A room's rules for paid events: which are read in full, which are thanked together, how often.

Paid events (Super Chats, bits, gifts, subs, memberships) carry `value_usd`
(agent/connectors/value.py). Those worth at least `read_in_full_usd` go to the paid lane above
questions and are read with their message. Smaller ones are held for `batch_window_s` and thanked
together per gift ("Thank you A, B and 3 others for the gift subs!"). A flood of small gifts cannot
starve chat: after `max_thanks_in_row` batch thanks, a waiting question or message is answered
before the next thanks. `tier_templates` (language → tier → template) give each tier its own words.

The rules are plain data with validation (`from_dict` / `as_dict`) so the server can store them and
the console can edit them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voxroom.agent.events import ChatEvent, EventKind

TIER_TEMPLATE_FIELDS = frozenset({"user", "text", "gift", "amount", "currency", "platform", "tier", "count"})
LANGUAGES = ("en", "zh", "ja", "ko")

DEFAULT_TIER_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "2000": "A tier 2 sub from {user}! Thank you so much!",
        "3000": "Wow, a tier 3 sub from {user}! Thank you so, so much!",
        "舰长": "Welcome aboard, captain {user}!",
        "提督": "{user} is our new admiral! Thank you!",
        "总督": "{user} is our new governor! Incredible, thank you!",
    },
    "zh": {
        "2000": "感谢{user}的二级订阅！",
        "3000": "哇，{user}送了三级订阅，太感谢了！",
        "舰长": "欢迎新舰长{user}上船！",
        "提督": "感谢{user}开通提督！",
        "总督": "感谢{user}开通总督，太厉害了！",
    },
}


@dataclass
class PaidEventRules:
    read_in_full_usd: float = 5.0  # paid events worth at least this are read in full, in the paid lane
    batch_window_s: float = 15.0  # smaller ones wait this long to be thanked together
    batch_names: int = 2  # names said before "and N others"
    max_thanks_in_row: int = 2  # batch thanks in a row before a waiting question or message goes first
    tier_templates: dict[str, dict[str, str]] = field(
        default_factory=lambda: {lang: dict(t) for lang, t in DEFAULT_TIER_TEMPLATES.items()})

    def reads_in_full(self, event: ChatEvent) -> bool:
        return event.kind is EventKind.GIFT and event.value_usd >= self.read_in_full_usd

    def batches(self, event: ChatEvent) -> bool:
        """Small paid events are thanked in batches; a batch window of 0 turns batching off."""
        return event.kind is EventKind.GIFT and self.batch_window_s > 0 and not self.reads_in_full(event) \
            and not event.others

    def as_dict(self) -> dict[str, Any]:
        return {"read_in_full_usd": self.read_in_full_usd, "batch_window_s": self.batch_window_s,
                "batch_names": self.batch_names, "max_thanks_in_row": self.max_thanks_in_row,
                "tier_templates": {lang: dict(t) for lang, t in self.tier_templates.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: PaidEventRules | None = None) -> PaidEventRules:
        """Rules from JSON; fields left out keep `base`'s value (the defaults when None).

        Raises ValueError naming the field and the allowed range.
        """
        if not isinstance(data, Mapping):
            raise ValueError("paid-event rules must be a JSON object")
        rules = cls(**(base or cls()).as_dict())
        unknown = set(data) - set(rules.as_dict())
        if unknown:
            raise ValueError(f"unknown paid-event rule(s): {', '.join(sorted(unknown))}")
        ranges: dict[str, tuple[float, float, type]] = {
            "read_in_full_usd": (0.0, 100_000.0, float), "batch_window_s": (0.0, 600.0, float),
            "batch_names": (0, 10, int), "max_thanks_in_row": (1, 20, int),
        }
        for name, (low, high, kind) in ranges.items():
            if name not in data:
                continue
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or (kind is int and value != int(value)) or not low <= value <= high:
                raise ValueError(f"{name!r} must be a{'n integer' if kind is int else ' number'} "
                                 f"from {low:g} to {high:g}")
            setattr(rules, name, kind(value))
        if "tier_templates" in data:
            rules.tier_templates = _tier_templates(data["tier_templates"])
        return rules


def _tier_templates(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, Mapping):
        raise ValueError("'tier_templates' must map a language to {tier: template}")
    result: dict[str, dict[str, str]] = {}
    for lang, table in value.items():
        if lang not in LANGUAGES or not isinstance(table, Mapping):
            raise ValueError(f"'tier_templates' languages are {', '.join(LANGUAGES)}, each mapping tier → template")
        for tier, template in table.items():
            if not isinstance(tier, str) or not 0 < len(tier) <= 40:
                raise ValueError("a tier name is text of 1 to 40 characters")
            if not isinstance(template, str) or not 0 < len(template) <= 500:
                raise ValueError("a tier template is text of 1 to 500 characters")
            fields = set(re.findall(r"{([^{}]*)}", template))
            if not fields <= TIER_TEMPLATE_FIELDS:
                raise ValueError(f"tier templates may use only {sorted(TIER_TEMPLATE_FIELDS)} in braces")
            result.setdefault(lang, {})[tier] = template
    return result
