"""Turn-taking: the co-host yields while the host talks, and fills silence when chat is quiet.

A host-speaking signal (from the VAD on the host's microphone, the console, or a test) sets the
state here; the room's playout reads it at every 20 ms tick, so it acts on the audio within a
frame, in one place. What happens to the speech on air is a room setting: hold it and resume when
the host stops, drop it, or keep speaking with the volume ducked. Idle talk is off unless `idle_after` is set.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from voxroom.agent.clock import Clock


class HostSpeechPolicy(StrEnum):
    RESUME = "resume"  # hold the audio, continue the same speech when the host stops
    DROP = "drop"  # fade out the speech on air and abandon it; later ones wait for the host
    DUCK = "duck"  # keep talking, quieter


class TurnTaking:
    def __init__(
        self,
        clock: Clock,
        *,
        policy: HostSpeechPolicy | str = HostSpeechPolicy.RESUME,
        duck_gain: float = 0.3,
        resume_after: float = 0.3,
        idle_after: float | None = None,
    ) -> None:
        self.clock = clock
        self.policy = HostSpeechPolicy(policy)
        self.duck_gain = duck_gain
        # Wait this long after the host stops before speaking again: people pause between phrases.
        self.resume_after = resume_after
        self.idle_after = idle_after
        self.host_speaking = False
        self.host_changed_at = clock.now()
        self.interruptions = 0  # bumped each time the host starts talking
        self._quiet = asyncio.Event()
        self._quiet.set()

    def set_host_speaking(self, speaking: bool) -> None:
        if speaking == self.host_speaking:
            return
        self.host_speaking = speaking
        self.host_changed_at = self.clock.now()
        if speaking:
            self.interruptions += 1
            self._quiet.clear()
        else:
            self._quiet.set()

    def must_yield(self) -> bool:
        """True when the co-host must stop feeding audio now (not when ducking)."""
        return self.host_speaking and self.policy is not HostSpeechPolicy.DUCK

    def holds_audio(self) -> bool:
        """True while the room's audio must wait: the host talks, or stopped less than `resume_after`
        ago (under resume and drop; ducking never holds)."""
        if self.policy is HostSpeechPolicy.DUCK:
            return False
        if self.host_speaking:
            return True
        return self.interruptions > 0 and self.clock.now() - self.host_changed_at < self.resume_after

    def gain(self) -> float:
        return self.duck_gain if self.host_speaking and self.policy is HostSpeechPolicy.DUCK else 1.0

    async def wait_host_quiet(self) -> None:
        """Return once the host has been quiet for `resume_after` seconds."""
        while True:
            await self._quiet.wait()
            changed_at = self.host_changed_at
            remaining = self.resume_after - (self.clock.now() - changed_at)
            if remaining > 0:
                await self.clock.sleep(remaining)
            # Compare the change stamp, not times: float rounding must not make this spin.
            if not self.host_speaking and self.host_changed_at == changed_at:
                return
