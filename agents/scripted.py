"""What the agents that drive a third-party softphone as a subprocess share (baresip,
Linphone): the call's timing state and the one loop that dials or answers, keeps the media up
for --duration and hangs up, with deadlines everywhere.

A subclass gives the softphone's words: _pump() reads its events (and sets incoming_at,
confirmed_at, closed_at, call_ref through note_state), _dial(target), _answer(), _terminate(),
_bye_answered(); _alive() where the process can die under the loop.
"""
from __future__ import annotations

import argparse
import threading
import time

from agents.report import Report

POLL = 0.05  # seconds per event-loop round
SETTLE_SECONDS = 1.0  # wait for the BYE's final response after the call ended


class ScriptedPhone:
    def __init__(self, args: argparse.Namespace, stop: threading.Event, report: Report) -> None:
        self.args, self.stop, self.report = args, stop, report
        self.t0 = time.monotonic()
        self.call_ref: str | None = None  # the softphone's id of the (first) call
        self.incoming_at: float | None = None
        self.confirmed_at: float | None = None
        self.closed_at: float | None = None
        self.hung_up = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    # the softphone's words
    def _pump(self) -> None:
        raise NotImplementedError

    def _dial(self, target: str) -> None:
        raise NotImplementedError

    def _answer(self) -> None:
        raise NotImplementedError

    def _terminate(self) -> None:
        raise NotImplementedError

    def _bye_answered(self) -> bool:
        raise NotImplementedError

    def _alive(self) -> bool:
        return True

    def note_state(self, state: str, code: int | None, event: str, incoming: bool = False,
                   confirmed: bool = False, closed: bool = False) -> None:
        """One call state for the report's timeline, and what it means for the loop."""
        now = self.now()
        self.report.states.append({"t": round(now, 3), "state": state, "code": code,
                                   "event": event})  # fmt: skip
        if incoming:
            self.incoming_at = now
        if confirmed:
            self.report.confirmed, self.confirmed_at = True, now
        if closed:
            self.closed_at = now
            self.media_ended()

    def converse(self) -> None:
        """Call or wait for a call; answer after --answer-delay; hang up after --duration of
        media (the caller) or at max-wait / a signal; then let the BYE settle."""
        a, r = self.args, self.report
        deadline = self.now() + a.max_wait
        if a.call:
            self._dial(a.call if a.call.startswith("sip:") else f"sip:{a.call}@{a.pbx}")
            r.states.append({"t": round(self.now(), 3), "state": "CALLING", "code": None})
        answered = False
        while self.closed_at is None:
            self._pump()
            now = self.now()
            ringing = self.incoming_at is not None and not answered and a.answer
            if ringing and now >= (self.incoming_at or 0.0) + a.answer_delay:
                self._answer()
                answered = True
            limit = deadline
            if a.call and self.confirmed_at is not None:
                limit = min(deadline, self.confirmed_at + a.duration)
            if (now >= limit or self.stop.is_set()) and not self.hung_up:
                if self.call_ref is None and not a.call:
                    break  # nobody called
                self._terminate()
                self.hung_up = True
                self.media_ended()
                deadline = now + SETTLE_SECONDS  # wait this long for the call's end
            elif self.hung_up and now >= deadline:
                break
        self.settle()

    def settle(self) -> None:
        """After a confirmed call, until the BYE has its final response, at most SETTLE_SECONDS."""
        end = self.now() + SETTLE_SECONDS
        while self.report.confirmed and self.now() < end and self._alive():
            if self._bye_answered():
                break
            self._pump()

    def media_ended(self) -> None:
        if self.confirmed_at is not None and self.report.media_seconds == 0.0:
            self.report.media_seconds = round(self.now() - self.confirmed_at, 3)
