"""Tone generation and detection (agents/tones.py)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from agents.tones import contains_tone, tone_levels, write_tone


def test_write_tone_format(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    write_tone(path, 440, 1.5)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() == 12000


def test_detects_its_tone_and_rejects_other(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    write_tone(path, 440, 2.0)
    levels = tone_levels(path, [440, 1000])
    assert levels[440] > -1.0
    assert levels[1000] < -40.0
    assert contains_tone(path, 440)
    assert not contains_tone(path, 1000)


def test_tone_in_noise_still_found(tmp_path: Path) -> None:
    path = tmp_path / "noisy.wav"
    t = np.arange(16000) / 8000
    noisy = 0.3 * np.sin(2 * np.pi * 1000 * t) + np.random.default_rng(7).normal(0, 0.1, t.size)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.clip(noisy, -1, 1) * 32767).astype("<i2").tobytes())
    assert contains_tone(path, 1000)
    assert not contains_tone(path, 440)


def test_silence_empty_and_missing_are_false(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    write_tone(silent, 440, 2.0, amplitude=0.0)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    header_only = tmp_path / "header.wav"
    write_tone(header_only, 440, 0.0)
    for path in (silent, empty, header_only, tmp_path / "missing.wav"):
        assert not contains_tone(path, 440), path
