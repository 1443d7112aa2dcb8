"""One SDP parser (RFC 4566) for the analysis and the phone agents.

Per m= line: media, port, protocol, payload types, its connection address (a media-level
c= line first, else the session-level one), `a=rtpmap` (payload type -> encoding name,
clock rate, channels) and `a=rtcp`. `Sdp.addr`/`audio_port`/`video_port` are the facts
most callers want: the first audio m-line's address and port, the first video port.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# static payload types (RFC 3551) an SDP may use without an a=rtpmap line
STATIC_RTPMAP: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000),
    9: ("G722", 8000), 18: ("G729", 8000), 34: ("H263", 90000)}


class RtpMap(NamedTuple):
    """One a=rtpmap line: `<pt> <name>/<clock>[/<channels>]`."""

    name: str
    clock: int
    params: str = ""  # channels, if given

    def __str__(self) -> str:
        return "/".join(x for x in (self.name, str(self.clock), self.params) if x)


@dataclass
class Media:
    """One m= section."""

    kind: str  # audio, video, application, ...
    port: int
    proto: str  # RTP/AVP, RTP/AVPF, ...
    pts: list[int]
    addr: str | None  # media-level c= if any, else the session-level one
    rtpmap: dict[int, RtpMap] = field(default_factory=dict)
    rtcp: int | None = None  # a=rtcp port
    rtcp_addr: str | None = None  # a=rtcp address, if given

    def codec(self, pt: int) -> str | None:
        """"NAME/clock" of a payload type (from a=rtpmap, else the static table)."""
        m = self.rtpmap.get(pt)
        if m is not None:
            return f"{m.name}/{m.clock}"
        static = STATIC_RTPMAP.get(pt)
        return f"{static[0]}/{static[1]}" if static else None

    def pt_of(self, name: str) -> int | None:
        """The first payload type mapped to an encoding name (case-insensitive)."""
        low = name.lower()
        return next((pt for pt, m in self.rtpmap.items() if m.name.lower() == low), None)

    @property
    def is_rtp(self) -> bool:
        return "RTP" in self.proto.upper()


@dataclass
class Sdp:
    """A parsed session description."""

    session_addr: str | None = None
    media: list[Media] = field(default_factory=list)

    def first(self, kind: str) -> Media | None:
        return next((m for m in self.media if m.kind == kind), None)

    @property
    def addr(self) -> str | None:
        """Connection address of the first audio m-line (media-level first), else the
        session-level one."""
        audio = self.first("audio")
        return audio.addr if audio is not None else self.session_addr

    @property
    def audio_port(self) -> int | None:
        audio = self.first("audio")
        return audio.port if audio is not None else None

    @property
    def video_port(self) -> int | None:
        video = self.first("video")
        return video.port if video is not None else None


def _conn_addr(value: str) -> str | None:
    """The address of `IN IP4 a.b.c.d[/ttl]`, or None for a malformed line."""
    parts = value.split()
    return parts[2].split("/")[0] if len(parts) >= 3 else None


def parse_sdp(text: str) -> Sdp:
    """Parse an SDP body (a SIP message's headers before a blank line are skipped)."""
    if "\r\n\r\n" in text and not text.lstrip().startswith("v="):
        text = text.split("\r\n\r\n", 1)[1]
    sdp = Sdp()
    cur: Media | None = None
    seen_m = False
    for raw in text.splitlines():
        key, sep, value = raw.strip().partition("=")
        if not sep:
            continue
        if key == "m":
            seen_m = True
            parts = value.split()
            if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
                cur = None
                continue
            cur = Media(parts[0], int(parts[1].split("/")[0]), parts[2],
                        [int(f) for f in parts[3:] if f.isdigit()], sdp.session_addr)
            sdp.media.append(cur)
        elif key == "c":
            if not seen_m:
                sdp.session_addr = _conn_addr(value)
            elif cur is not None:
                cur.addr = _conn_addr(value)
        elif key == "a" and cur is not None:
            _attribute(cur, value)
    return sdp


def _attribute(m: Media, value: str) -> None:
    name, _, rest = value.partition(":")
    first, _, tail = rest.strip().partition(" ")
    if not first.isdigit():
        return
    if name == "rtpmap":
        enc, _, rate = tail.strip().partition("/")
        clock, _, params = rate.partition("/")
        m.rtpmap[int(first)] = RtpMap(enc, int(clock) if clock.isdigit() else 0, params)
    elif name == "rtcp":
        m.rtcp = int(first)
        m.rtcp_addr = _conn_addr(tail) if tail else None
