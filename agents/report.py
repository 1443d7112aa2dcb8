"""An agent's JSON report: the same keys for every phone agent (pjsua2 and baresip)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    """What one agent saw; serialised as the JSON report."""

    ext: str
    role: str
    bind: str
    stun: str | None
    t0_wall: float
    tone_hz: float | None = None
    register_code: int | None = None
    invite_code: int | None = None
    states: list[dict[str, Any]] = field(default_factory=list)
    confirmed: bool = False
    cancelled: bool = False  # callee: the INVITE was CANCELled before we answered
    bye: dict[str, Any] = field(default_factory=lambda: {"direction": None, "status": None})
    local_sdp: dict[str, Any] | None = None
    remote_sdp: dict[str, Any] | None = None
    stun_mapped: dict[str, Any] | None = None
    codec: str | None = None
    rtp: dict[str, int] = field(default_factory=lambda: {"tx": 0, "rx": 0})
    media_seconds: float = 0.0
    recording: str | None = None
    error: str | None = None

    def note_error(self, text: str) -> None:
        """Keep the first error: it explains the rest."""
        if self.error is None:
            self.error = text
