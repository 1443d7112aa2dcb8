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
    # NAT remedies (None when the agent ran without them):
    # ice: {enabled, role, state, local: [{type, addr, port}], remote: [...],
    #       selected: {local: {type, addr, port}, remote: {type, addr, port}} | None}
    ice: dict[str, Any] | None = None
    turn: dict[str, Any] | None = None  # {server, relay_addr: "IP:PORT" | None}
    keepalive_s: int = 0  # UDP keep-alive interval toward the registrar (0: off)

    def note_error(self, text: str) -> None:
        """Keep the first error: it explains the rest."""
        if self.error is None:
            self.error = text

    def enable_ice(self, turn_server: str | None) -> None:
        """Start the ice (and turn) sections empty; the agent fills them during the call."""
        self.ice = {"enabled": True, "role": None, "state": None, "local": [], "remote": [],
                    "selected": None}
        if turn_server is not None:
            self.turn = {"server": turn_server, "relay_addr": None}
