"""The two SDP facts an agent needs (c= address, audio port) and the STUN rewrite."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def parse_sdp(text: str) -> dict[str, Any] | None:
    """Connection address and audio port of an SDP (or of a SIP message carrying one)."""
    if "\r\n\r\n" in text:
        text = text.split("\r\n\r\n", 1)[1]
    session_addr = media_addr = None
    port: int | None = None
    seen_m = in_audio = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("m="):
            seen_m, in_audio = True, line.startswith("m=audio ")
            if in_audio and port is None:
                port = int(line.split()[1])
        elif line.startswith("c=") and (in_audio or not seen_m):
            if in_audio:
                media_addr = line.split()[-1]
            else:
                session_addr = line.split()[-1]
    addr = media_addr or session_addr
    if addr is None or port is None:
        return None
    return {"addr": addr.split("/")[0], "port": port}


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
