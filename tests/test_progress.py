"""What the terminal shows while a scenario runs: one line redrawn in place on a terminal (a
real pseudo-terminal here), plain lines when stdout is a file or a pipe."""
from __future__ import annotations

import io
import os
import pty
import time

from natlab.progress import TICK_S, Progress


def render(elapsed: float) -> str:
    return (f"natlab: 102_qos: round 2 of 10, 1 call(s) up, "
            f"media {max(0.0, 16 - elapsed):.0f} s left")


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out)
    assert not progress.tty
    with progress.status(render):
        time.sleep(3 * TICK_S)
    progress.line("natlab: 102_qos: ran 10 call(s) in 190.0 s")
    assert out.getvalue() == ("natlab: 102_qos: round 2 of 10, 1 call(s) up, media 16 s left\n"
                              "natlab: 102_qos: ran 10 call(s) in 190.0 s\n")


def test_one_updating_line_on_a_terminal() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            progress = Progress(stream)
            assert progress.tty
            with progress.status(render):
                time.sleep(4.5 * TICK_S)
            progress.line("done")
        seen = b""
        while not seen.endswith(b"done\r\n"):
            seen += os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    text = seen.decode()
    redraws = text.split("\r\x1b[K")
    assert len(redraws) >= 4  # redrawn in place, never a new line per tick
    assert "\n" not in "".join(redraws[:-1])
    assert "round 2 of 10, 1 call(s) up, media 16 s left" in text
    assert "media 14 s left" in text or "media 15 s left" in text  # the count goes down
    assert redraws[-1] == "done\r\n"  # the status line is wiped before the next plain line
