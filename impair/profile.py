"""What a WAN path does to packets: delay, jitter, random or bursty loss, a rate limit."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Impairment:
    """One direction of a path. All defaults mean "no impairment".

    delay_ms   mean one-way delay added
    jitter_ms  standard deviation of the added delay (normal, clamped at 0)
    loss_pct   mean loss in percent
    loss_burst mean length of a loss burst in packets: 1 = independent (Bernoulli) loss,
               > 1 = simple Gilbert model (2 states, every packet lost in the bad state)
               with that mean burst length and the same mean loss
    rate_kbit  rate limit in kbit/s (link-layer bytes), None = unlimited
    """

    delay_ms: float = 0
    jitter_ms: float = 0
    loss_pct: float = 0
    loss_burst: float = 1.0
    rate_kbit: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "rate_kbit":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"impairment {f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"impairment {f.name} must be finite, got {value!r}")
        if self.delay_ms < 0:
            raise ValueError(f"impairment delay_ms must be >= 0, got {self.delay_ms}")
        if self.jitter_ms < 0:
            raise ValueError(f"impairment jitter_ms must be >= 0, got {self.jitter_ms}")
        if not 0 <= self.loss_pct <= 100:
            raise ValueError(f"impairment loss_pct must be within 0..100, got {self.loss_pct}")
        if self.loss_burst < 1:
            raise ValueError(f"impairment loss_burst must be >= 1 packet, got {self.loss_burst}")
        if self.rate_kbit is not None and self.rate_kbit <= 0:
            raise ValueError(f"impairment rate_kbit must be > 0 or None, got {self.rate_kbit}")
        if self.bursty and self.gilbert()[0] > 1:
            top = 100 * self.loss_burst / (1 + self.loss_burst)
            raise ValueError(f"impairment loss_pct {self.loss_pct} is too high for bursts of "
                             f"{self.loss_burst} packets (at most {top:.4g})")

    @property
    def bursty(self) -> bool:
        """Loss follows the Gilbert model (correlated) rather than Bernoulli."""
        return self.loss_pct > 0 and self.loss_burst > 1

    def gilbert(self) -> tuple[float, float]:
        """(p, r) of the simple Gilbert model: P(good→bad), P(bad→good) per packet.

        Mean burst = 1/r; stationary loss = p / (p + r) = loss_pct / 100.
        """
        loss = self.loss_pct / 100
        r = 1 / self.loss_burst
        if loss >= 1:
            return 1.0, 0.0
        return loss * r / (1 - loss), r

    def is_none(self) -> bool:
        return (self.delay_ms == 0 and self.jitter_ms == 0 and self.loss_pct == 0
                and self.rate_kbit is None)

    def summary(self) -> str:
        """Short human text, e.g. 'delay 40±10 ms, loss 5 % (bursts of 4), rate 256 kbit/s'."""
        parts = []
        if self.delay_ms or self.jitter_ms:
            jitter = f"±{self.jitter_ms:g}" if self.jitter_ms else ""
            parts.append(f"delay {self.delay_ms:g}{jitter} ms")
        if self.loss_pct:
            kind = f"bursts of {self.loss_burst:g}" if self.bursty else "random"
            parts.append(f"loss {self.loss_pct:g} % ({kind})")
        if self.rate_kbit is not None:
            parts.append(f"rate {self.rate_kbit:g} kbit/s")
        return ", ".join(parts) or "no impairment"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Impairment:
        """From scenario data (e.g. a TOML table); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown impairment key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(known))}")
        return cls(**dict(d))
