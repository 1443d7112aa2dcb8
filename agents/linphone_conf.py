"""linphonec 5.1 plumbing for agents.linphone_agent: the rc file, the commands, log parsing.

Pure functions over text, except `LogTail` (reads a growing file). Parsers read what
`linphonec -d 6 -l LOG` writes: every entry starts with a "YYYY-MM-DD HH:MM:SS:mmm " stamp, a
SIP message follows "message sent to [UDP://IP:PORT]" or "received [N] new bytes from
[UDP://IP:PORT]:" up to the next stamp, and each audio stream prints "AUDIO SESSION'S RTP
STATISTICS" (sent / received packets) when it ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from agents.baresip_conf import SipMsg, parse_sdp

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} ", re.M)
SENT = re.compile(r"message sent to \[(?:UDP|TCP|TLS)://([^\]]+)\], size: \[\d+\] bytes$")
RECEIVED = re.compile(r"received \[\d+\] new bytes from \[(?:UDP|TCP|TLS)://([^\]]+)\]:$")
CALL_STATE = re.compile(r"CallSession \[(0x[0-9a-f]+)\] moving from state LinphoneCall(\w+) "
                        r"to LinphoneCall(\w+)")
REG_STATE = re.compile(r"Account \[0x[0-9a-f]+\] for identity \[[^\]]*\] moving from state "
                       r"\[LinphoneRegistration\w+\] to \[LinphoneRegistration(\w+)\]")
REG_CODE = re.compile(r"Register refresher \[(\d+)\] reason \[([^\]]*)\]")
LISTENING = re.compile(r"Creating listening point \[0x[0-9a-f]+\] on \[sip:([^;\]]+);"
                       r"transport=UDP\]")
BIND_FAILED = re.compile(r"(udp bind\(\) failed for .*)$")
STUN_BIND_FAILED = re.compile(r"liblinphone-error-(Bind socket to \S+ failed: .*)$", re.M)
VERSION = re.compile(r"Initializing LinphoneCore (\S+)")
RTP_STATS = re.compile(r"AUDIO SESSION'S RTP STATISTICS.*?-sent\s+(\d+) packets.*?"
                       r"-received\s+(\d+) packets", re.S)
CANDIDATE = re.compile(r"^a=candidate:\S+ (\d) UDP \d+ (\S+) (\d+) typ srflx", re.M)


class NatPolicy(Enum):
    """What `[nat_policy_0] protocols=` holds: nothing, plain STUN (broken in 5.1), STUN + ICE."""

    NONE = "none"
    STUN = "stun"
    STUN_ICE = "stun-ice"


# Codecs linphone 5.1 knows and would add, enabled, to an rc that does not name them.
OTHER_CODECS = ("opus/48000/2", "speex/16000/1", "speex/8000/1", "speex/32000/1", "PCMA/8000/1",
                "GSM/8000/1", "G722/8000/1", "G729/8000/1", "SILK/16000/1", "red/1000/1",
                "t140/1000/1", "L16/44100/1", "L16/44100/2")  # fmt: skip

RC = """\
[sip]
sip_port={o.sip_port}
sip_tcp_port=0
sip_tls_port=0
bind_address={o.bind}
use_ipv6=0
ipv6_migration_done=1
inc_timeout=3600
auto_send_ringing=1
register_only_when_network_is_up=0
media_encryption=none
supported=replaces, outbound

[rtp]
audio_rtp_port={o.rtp_port}
rtcp_mux=0

[sound]
echocancellation=0

[video]
display=0
capture=0
automatically_initiate=0
automatically_accept=0
{nat}
{codecs}"""


@dataclass(frozen=True)
class Options:
    """Everything an rc file depends on."""

    bind: str
    sip_port: int
    rtp_port: int
    nat_policy: NatPolicy
    stun: str | None  # IP:PORT, needed unless nat_policy is NONE


def render_rc(o: Options) -> str:
    """SIP on bind:sip_port (UDP only), audio on rtp_port, PCMU alone, the NAT policy.

    `supported` drops linphone's default "gruu": kamailio's registrar then hands out a
    pub-GRUU that linphone puts in its dialog Contact, and in-dialog requests to it (ACK, BYE
    from the far end) come back 404 from a PBX that routes them without a location lookup."""
    nat = ""
    if o.nat_policy is not NatPolicy.NONE:
        protocols = "stun" if o.nat_policy is NatPolicy.STUN else "stun,ice"
        nat = (f"\n[net]\nnat_policy_ref=np0\n\n[nat_policy_0]\nref=np0\nstun_server={o.stun}\n"
               f"protocols={protocols}\n")
    codecs = ["[audio_codec_0]\nmime=PCMU\nrate=8000\nchannels=1\nenabled=1\n"]
    for i, codec in enumerate(OTHER_CODECS, start=1):
        mime, rate, channels = codec.split("/")
        codecs.append(f"[audio_codec_{i}]\nmime={mime}\nrate={rate}\nchannels={channels}\n"
                      "enabled=0\n")
    return RC.format(o=o, nat=nat, codecs="\n".join(codecs))


def setup_commands(tone: Path, heard: Path) -> list[str]:
    """Files instead of a sound card (not kept in the rc: send them every start), then a
    command whose answer ("hook=...") says all of them were taken."""
    for p in (tone, heard):
        if any(c.isspace() for c in str(p)):
            raise ValueError(f"linphonec cannot take a path with blanks: {p}")
    return ["soundcard use files", f"play {tone}", f"record {heard}", "status hook"]


def register_command(ext: str, pbx: str, password: str | None) -> str:
    """`register sip:EXT@HOST sip:HOST:PORT [PASSWORD]`: the AOR has no port, the proxy has."""
    host = pbx.partition(":")[0]
    cmd = f"register sip:{ext}@{host} sip:{pbx}"
    return cmd + (f" {password}" if password else "")


def entries(log: str) -> list[str]:
    """The log split into entries (a stamped line plus the unstamped lines after it)."""
    starts = [m.start() for m in STAMP.finditer(log)]
    return [log[a:b] for a, b in zip(starts, starts[1:] + [len(log)], strict=True)]


def parse_trace(log: str) -> list[SipMsg]:
    """SIP messages linphonec sent and received, in log order."""
    msgs = []
    for entry in entries(log):
        head, _, text = entry.partition("\n")
        head = head.rstrip()
        sent, received = SENT.search(head), RECEIVED.search(head)
        if not (sent or received) or not text.strip():
            continue
        headers, _, body = text.replace("\r\n", "\n").partition("\n\n")
        lines = headers.strip("\n").split("\n")
        cseq = next((h.split() for h in lines if h.lower().startswith("cseq:")), [""])
        first = lines[0].split()
        status = int(first[1]) if first[:1] == ["SIP/2.0"] and first[1].isdigit() else None
        msgs.append(SipMsg(sent is not None, cseq[-1], status, body.strip()))
    return msgs


def session_addr(sdp: str) -> str | None:
    """The session-level c= address (before the first m=), if any."""
    for line in sdp.splitlines():
        if line.startswith("m="):
            return None
        if line.startswith("c="):
            return line.split()[-1].split("/")[0]
    return None


def origin_addr(sdp: str) -> str | None:
    """The o= line's address, if any."""
    line = next((x for x in sdp.splitlines() if x.startswith("o=")), None)
    return line.split()[-1] if line else None


def sdp_summary(sdp: str | None) -> dict[str, Any] | None:
    """{addr, port, session_addr} of an SDP's audio: addr is the media-level c= when there is
    one (RFC 4566), else the session-level one; session_addr is the session-level c=."""
    audio = parse_sdp(sdp).get("audio") if sdp else None
    if sdp is None or audio is None or audio.addr is None:
        return None
    return {"addr": audio.addr, "port": audio.port, "session_addr": session_addr(sdp)}


def srflx(sdp: str) -> dict[str, int | str] | None:
    """The server-reflexive ICE candidates of an SDP: {addr, rtp, rtcp} (None without one)."""
    found = {int(c): (addr, int(port)) for c, addr, port in CANDIDATE.findall(sdp)}
    if 1 not in found:
        return None
    addr, rtp = found[1]
    return {"addr": addr, "rtp": rtp, "rtcp": found.get(2, (addr, rtp + 1))[1]}


def rtp_stats(log: str) -> dict[str, int] | None:
    """{tx, rx} packets of the last audio stream, as oRTP counted them."""
    found = RTP_STATS.findall(log)
    return {"tx": int(found[-1][0]), "rx": int(found[-1][1])} if found else None


def stun_error(log: str) -> str | None:
    """Why plain STUN (protocols=stun) sent nothing: 5.1 binds a second socket to the RTP port."""
    m = STUN_BIND_FAILED.search(log)
    return m.group(1).strip() if m else None


def version(log: str) -> str | None:
    m = VERSION.search(log)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Event:
    """One thing the live log says: kind is call, register, code, listening or fatal."""

    kind: str
    value: str
    ref: str = ""  # the CallSession pointer, for call states


def events(lines: list[str]) -> list[Event]:
    """Events in log lines (stamped ones; the rest is ignored)."""
    out = []
    for line in lines:
        if (m := CALL_STATE.search(line)) is not None:
            out.append(Event("call", m.group(3), m.group(1)))
        elif (m := REG_STATE.search(line)) is not None:
            out.append(Event("register", m.group(1)))
        elif (m := REG_CODE.search(line)) is not None:
            out.append(Event("code", m.group(1), m.group(2)))
        elif (m := LISTENING.search(line)) is not None:
            out.append(Event("listening", m.group(1)))
        elif (m := BIND_FAILED.search(line)) is not None:
            out.append(Event("fatal", m.group(1).strip()))
    return out


class LogTail:
    """New complete lines of a growing file."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.rest + data
        *done, self.rest = data.split(b"\n")
        return [d.decode("utf-8", "replace") for d in done]

    def text(self) -> str:
        try:
            return self.path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""
