"""Per-reply timings of the co-host and their Prometheus text exposition for /metrics.

`AgentMetrics` is a subscriber of the room's event stream (`agent.lifecycle`): it counts accepted,
dropped and moderated events and records each finished reply: how long its event waited in the
queue, the LLM's time to first token, the time to its first audio frame on air and the total; `render_prometheus` writes counters and histograms
(with # HELP and # TYPE lines) for one room or many, labelled by room.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voxroom.agent.lifecycle import EventAccepted, EventDropped, LifecycleEvent, Moderated, ReplyFinished

# Refusals at intake are counted once, as the intake's outcome (EventAccepted), not again as drops.
_COUNTED_AT_INTAKE = frozenset({"duplicate", "rate_limited", "full"})
BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


@dataclass
class ReplyMetrics:
    event_id: str
    kind: str
    source: str  # "llm", "read_aloud", "fallback", "host"
    queue_wait: float = 0.0
    llm_first_token: float | None = None  # from the reply's start; None without an LLM
    first_audio: float | None = None  # from the reply's start to its first frame on air
    total: float = 0.0
    outcome: str = "spoken"  # spoken, interrupted, skipped, moderated, silent, error
    text: str = ""  # what was actually played
    audio_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


HISTOGRAMS = {
    "queue_wait": "Seconds a chat event waited in the speech queue before its reply started.",
    "llm_first_token": "Seconds from the reply's start to the LLM's first text token.",
    "first_audio": "Seconds from the reply's start to its first audio frame on air.",
    "total": "Seconds from the reply's start to its end (its last frame on air).",
}


class AgentMetrics:
    """Counters and histograms of one room's co-host; `recent` keeps the last replies for the console."""

    def __init__(self, recent: int = 50) -> None:
        self.replies: Counter[tuple[str, str, str]] = Counter()  # (kind, source, outcome)
        self.events: Counter[tuple[str, str]] = Counter()  # (kind, outcome of queueing)
        self.moderated: Counter[str] = Counter()  # direction
        self.histograms = {name: Histogram() for name in HISTOGRAMS}
        self.audio_seconds = 0.0
        self.recent: deque[ReplyMetrics] = deque(maxlen=recent)

    def observe_reply(self, reply: ReplyMetrics) -> None:
        self.replies[(reply.kind, reply.source, reply.outcome)] += 1
        self.recent.append(reply)
        self.audio_seconds += reply.audio_seconds
        for name in HISTOGRAMS:
            value = getattr(reply, name)
            if value is not None:
                self.histograms[name].observe(value)

    def observe(self, event: LifecycleEvent) -> None:
        """The event-stream subscriber: every count and timing comes from here."""
        if isinstance(event, EventAccepted):
            self.count_event(event.kind, event.outcome)
        elif isinstance(event, EventDropped) and event.reason not in _COUNTED_AT_INTAKE:
            self.count_event(event.kind, event.reason)  # a queued event that left without a reply
        elif isinstance(event, Moderated):
            self.count_moderated(str(event.entry.get("direction", "")))
        elif isinstance(event, ReplyFinished):
            self.observe_reply(ReplyMetrics(
                event_id=event.id, kind=event.kind, source=event.source, queue_wait=event.queue_wait,
                llm_first_token=event.llm_first_token, first_audio=event.first_audio, total=event.total,
                outcome=event.outcome, text=event.text, audio_seconds=event.audio_seconds, extra=dict(event.extra)))

    def count_event(self, kind: str, outcome: str) -> None:
        self.events[(kind, outcome)] += 1

    def count_moderated(self, direction: str) -> None:
        self.moderated[direction] += 1

    def render(self) -> str:
        return render_prometheus({"": self})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Mapping[str, str]) -> str:
    # A room named "" is the single-room case: no room label at all.
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items() if not (k == "room" and v == ""))
    return "{" + body + "}" if body else ""


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{int(value)}"


def render_prometheus(rooms: Mapping[str, AgentMetrics], prefix: str = "voxroom_agent") -> str:
    """Prometheus text format (version 0.0.4) for every room; a room named '' gets no room label."""
    lines: list[str] = []

    def header(name: str, kind: str, text: str) -> None:
        lines.append(f"# HELP {prefix}_{name} {text}")
        lines.append(f"# TYPE {prefix}_{name} {kind}")

    header("events_total", "counter", "Chat events offered to the co-host, by kind and queueing outcome.")
    for room, m in rooms.items():
        for (kind, outcome), n in sorted(m.events.items()):
            lines.append(f"{prefix}_events_total{_labels({'room': room, 'kind': kind, 'outcome': outcome})} {n}")
    header("replies_total", "counter", "Co-host replies, by event kind, reply source and outcome.")
    for room, m in rooms.items():
        for (kind, source, outcome), n in sorted(m.replies.items()):
            labels = _labels({"room": room, "kind": kind, "source": source, "outcome": outcome})
            lines.append(f"{prefix}_replies_total{labels} {n}")
    header("moderated_total", "counter", "Chat events and reply pieces stopped by moderation.")
    for room, m in rooms.items():
        for direction, n in sorted(m.moderated.items()):
            lines.append(f"{prefix}_moderated_total{_labels({'room': room, 'direction': direction})} {n}")
    header("audio_seconds_total", "counter", "Seconds of co-host reply audio played on air.")
    for room, m in rooms.items():
        lines.append(f"{prefix}_audio_seconds_total{_labels({'room': room})} {_number(round(m.audio_seconds, 6))}")
    for name, text in HISTOGRAMS.items():
        metric = f"{prefix}_{name}_seconds"
        lines.append(f"# HELP {metric} {text}")
        lines.append(f"# TYPE {metric} histogram")
        for room, m in rooms.items():
            hist = m.histograms[name]
            cumulative = 0
            for bound, count in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                lines.append(f"{metric}_bucket{_labels({'room': room, 'le': le})} {cumulative}")
            lines.append(f"{metric}_sum{_labels({'room': room})} {_number(round(hist.total, 6))}")
            lines.append(f"{metric}_count{_labels({'room': room})} {hist.count}")
    return "\n".join(lines) + "\n"
