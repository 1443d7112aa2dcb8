"""What the terminal shows while a run goes on: plain lines, and one updating status line
where stdout is a terminal (round k of n, calls, media time) — plain lines otherwise."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

TICK_S = 0.5


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.quiet = quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def status(self, render: Callable[[float], str]) -> Iterator[None]:
        """While the block runs: on a terminal, redraw render(elapsed) in place every tick;
        otherwise print it once, as a plain line."""
        if self.quiet:
            yield
            return
        if not self.tty:
            self.line(render(0.0))
            yield
            return
        stop = threading.Event()
        t0 = time.monotonic()

        def draw() -> None:
            self.stream.write("\r\x1b[K" + render(time.monotonic() - t0))
            self.stream.flush()

        def tick() -> None:
            while not stop.wait(TICK_S):
                draw()

        draw()  # at once, then every tick

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()
