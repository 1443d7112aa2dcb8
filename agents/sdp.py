"""The two SDP facts an agent needs (c= address, audio port) and the STUN rewrite.

Parsing is the one SDP parser's (`analysis.sdp`); this module keeps the agents' report shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.sdp import parse_sdp as parse_session


def parse_sdp(text: str) -> dict[str, Any] | None:
    """{"addr", "port"} of the first audio m-line of an SDP (or of a SIP message carrying
    one): its media-level c= address, else the session-level one; None without either."""
    audio = parse_session(text).first("audio")
    if audio is None or audio.addr is None:
        return None
    return {"addr": audio.addr, "port": audio.port}


@dataclass(frozen=True)
class MediaMapping:
    """Public address of the RTP/RTCP ports as a STUN server saw them."""

    addr: str
    rtp: int
    rtcp: int


def rewrite_sdp(sdp: str, m: MediaMapping) -> str:
    """Put the public address and ports in c=, m=audio and a=rtcp lines (as pjsua's STUN does)."""
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("c=IN IP4 "):
            line = f"c=IN IP4 {m.addr}"
        elif line.startswith("m=audio "):
            _, _, rest = line[len("m=audio ") :].partition(" ")
            line = f"m=audio {m.rtp} {rest}"
        elif line.startswith("a=rtcp:"):
            line = f"a=rtcp:{m.rtcp} IN IP4 {m.addr}"
        out.append(line)
    return "\r\n".join(out)
