"""Which tones a recording contains (the far end's tone proves the media path)."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

# Measured: far tone via PCMU loopback -0.001 dB, own (absent) tone -69 dB, white noise -27 dB.
DEFAULT_MIN_DB = -10.0
# Recordings quieter than this RMS (full scale = 1.0) count as silence (PCMU idle ~1e-4).
SILENCE_RMS = 1e-3
# Goertzel bins are this wide (Hz) so jitter-buffer resampling drift stays inside one bin.
BIN_HZ = 10.0


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float in [-1, 1] (first channel) and the sample rate; ValueError if unusable."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM supported")
            channels, rate = w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    data = np.frombuffer(raw, dtype="<i2")[::channels].astype(np.float64) / 32768.0
    return data, rate


def _band_power(spectrum: np.ndarray, freqs: np.ndarray, hz: float) -> float:
    """Power within +-BIN_HZ/2 of `hz`."""
    mask = np.abs(freqs - hz) <= BIN_HZ / 2
    return float(spectrum[mask].sum())


def tone_levels(path: str | Path, freqs: list[float]) -> dict[float, float]:
    """Power of each frequency in dB relative to the recording's total power.

    A missing, empty or silent recording gives -inf for every frequency.
    """
    try:
        data, rate = read_wav(path)
    except ValueError:
        return {f: -math.inf for f in freqs}
    if data.size < rate // 10 or float(np.sqrt(np.mean(data**2))) < SILENCE_RMS:
        return {f: -math.inf for f in freqs}
    data = data - data.mean()
    spectrum = np.abs(np.fft.rfft(data * np.hanning(data.size))) ** 2
    bins = np.fft.rfftfreq(data.size, 1.0 / rate)
    total = float(spectrum.sum())
    levels = {}
    for f in freqs:
        p = _band_power(spectrum, bins, f)
        levels[f] = 10 * math.log10(p / total) if p > 0 else -math.inf
    return levels


def contains_tone(path: str | Path, hz: float, min_db: float = DEFAULT_MIN_DB) -> bool:
    """True if `hz` carries at least `min_db` dB of the recording's power."""
    return tone_levels(path, [hz])[hz] >= min_db
