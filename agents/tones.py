"""Test tones: write a sine WAV (detection lives in analysis.tones)."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from analysis.tones import contains_tone, tone_levels

__all__ = ["contains_tone", "tone_levels", "write_tone"]


def write_tone(
    path: str | Path, hz: float, seconds: float, rate: int = 8000, amplitude: float = 0.3
) -> None:
    """Write a 16-bit mono PCM WAV holding a sine of `hz` for `seconds`."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    samples = np.round(amplitude * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
