"""baresip 1.0 plumbing for agents.baresip_agent: config, the process and its ctrl_tcp, log parsing.

`Baresip` runs one process and talks netstring JSON to its ctrl_tcp; the rest is pure. The parsers
read what `baresip -s` (SIP trace) prints with `rtp_stats yes`: each traced message starts with
"#" and "UDP <src> -> <dst>", and each stream prints "<media> Transmit: Receive:" and a
"packets: <tx> <rx>" line when it is torn down.
"""

from __future__ import annotations

import ctypes
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agents.ice import TurnServer
from analysis.sdp import Media
from analysis.sdp import parse_sdp as parse_session

MODULE_PATH = Path("/usr/lib/baresip/modules")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TRACE_HEAD = re.compile(r"^(UDP|TCP|TLS) (\S+) -> (\S+)$")
QUIT_TIMEOUT = 1.0  # seconds for baresip to exit after `quit` (un-REGISTER) and each signal
STATS = re.compile(r"^(audio|video)\s+Transmit:\s+Receive:\s*\npackets:\s+(\d+)\s+(\d+)", re.M)

CONFIG = """\
poll_method\tepoll
sip_listen\t{o.bind}:{o.sip_port}
net_interface\t{o.bind}
call_local_timeout\t120
call_max_calls\t1
audio_source\taufile,{o.tone_wav}
ausrc_format\ts16
auplay_format\ts16
auenc_format\ts16
audec_format\ts16
audio_buffer\t20-160
rtp_ports\t{o.rtp_port}-{rtp_max}
rtcp_mux\tno
jitter_buffer_delay\t5-10
rtp_stats\tyes
snd_path\t{o.snd_dir}
ctrl_tcp_listen\t127.0.0.1:{o.ctrl_port}
menu_bell\tno
ringback_disabled\tyes
statmode_default\toff
module_path\t{module_path}
{modules}
module_app\tmenu.so
module_app\tctrl_tcp.so
"""
VIDEO = """\
video_source\tfakevideo,nil
video_display\tfakevideo,nil
video_size\t352x288
video_bitrate\t500000
video_fps\t25.00
"""


@dataclass(frozen=True)
class Options:
    """Everything a baresip config dir depends on."""

    ext: str
    bind: str
    sip_port: int
    rtp_port: int
    ctrl_port: int
    pbx: str | None
    stun: str | None
    video: bool
    tone_wav: Path
    snd_dir: Path
    password: str | None = None  # digest password at the PBX (auth_user is the AOR's user)
    ice: bool = False  # medianat=ice (stunserver from stun or turn)
    turn: TurnServer | None = None  # medianat=turn, or ICE's relay with ice

    @property
    def medianat(self) -> str | None:
        """baresip's media NAT module: ice, turn, stun or none."""
        if self.ice:
            return "ice"
        if self.turn is not None:
            return "turn"
        return "stun" if self.stun else None

    @property
    def modules(self) -> list[str]:
        """g711 (PCMU), aufile (source), sndfile (dumps); no player: nothing is played out."""
        nat = [self.medianat] if self.medianat else []
        extra = nat + (["fakevideo", "vp8"] if self.video else [])
        return ["g711", "aufile", "sndfile", *extra]


def render_config(o: Options) -> str:
    """`net_interface` takes the address itself (and 127.0.0.1 works only that way);
    libre picks a random even RTP port in [min, max), so audio alone gets exactly rtp_port."""
    modules = "\n".join(f"module\t{m}.so" for m in o.modules)
    rtp_max = o.rtp_port + (4 if o.video else 2)
    text = CONFIG.format(o=o, rtp_max=rtp_max, module_path=MODULE_PATH, modules=modules)
    return text + (VIDEO if o.video else "")


def account_line(o: Options) -> str:
    """The UA for `uanew`: registers to the PBX (or never), answers on `accept`, PCMU only."""
    aor = f"sip:{o.ext}@{o.pbx}" if o.pbx else f"sip:{o.ext}@{o.bind}:{o.sip_port}"
    params = [f"regint={600 if o.pbx else 0}", "answermode=manual",
              "audio_codecs=PCMU/8000/1", "ptime=20"]  # fmt: skip
    if o.video:
        params.append("video_codecs=VP8")
    if o.turn is not None:  # TURN alone, or ICE with a relay candidate
        params += [f"medianat={o.medianat}", f"stunserver=turn:{o.turn.addr}",
                   f"stunuser={o.turn.user}", f"stunpass={o.turn.password}"]
    elif o.medianat is not None:  # ice or stun; ICE without a server: host candidates only
        params.append(f"medianat={o.medianat}")
        if o.stun:
            params.append(f"stunserver=stun:{o.stun}")
    if o.password is not None:
        params.append(f"auth_pass={o.password}")
    return f"<{aor}>;" + ";".join(params)


def write_config(conf_dir: Path, o: Options) -> None:
    """config, and empty accounts and contacts (the UA is created over ctrl_tcp)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "config").write_text(render_config(o))
    (conf_dir / "accounts").write_text("")
    (conf_dir / "contacts").write_text("")


def netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return b"%d:%s," % (len(data), data)


class NetstringDecoder:
    """Splits ctrl_tcp's byte stream into JSON messages; ValueError on a malformed frame."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.buf += data
        out: list[dict[str, Any]] = []
        while b":" in self.buf[:10]:
            head, _, rest = self.buf.partition(b":")
            if not head.isdigit():
                raise ValueError(f"bad netstring header {head!r}")
            n = int(head)
            if len(rest) < n + 1:
                break
            if rest[n : n + 1] != b",":
                raise ValueError("netstring without its trailing comma")
            out.append(json.loads(rest[:n]))
            self.buf = rest[n + 1 :]
        if len(self.buf) >= 10 and b":" not in self.buf[:10]:
            raise ValueError(f"bad netstring header {self.buf[:10]!r}")
        return out


@dataclass
class SipMsg:
    """One traced SIP message."""

    sent: bool
    method: str  # from CSeq
    status: int | None  # responses only
    body: str


def parse_trace(log: str, local: str) -> list[SipMsg]:
    """SIP messages of the trace; `local` is our IP:PORT (what comes from it was sent)."""
    msgs = []
    for chunk in ANSI.sub("", log).split("#\n")[1:]:
        head, _, rest = chunk.partition("\n")
        m = TRACE_HEAD.match(head.strip())
        if m is None:
            continue
        headers, _, body = rest.replace("\r\n", "\n").partition("\n\n")
        lines = headers.split("\n")
        cseq = next((h.split() for h in lines if h.lower().startswith("cseq:")), [""])
        first = lines[0].split()
        status = int(first[1]) if first[:1] == ["SIP/2.0"] and first[1].isdigit() else None
        msgs.append(SipMsg(m.group(2) == local, cseq[-1], status, body.strip()))
    return msgs


def parse_rtp_stats(log: str) -> dict[str, dict[str, int]]:
    """Per media, {tx, rx} packets counted by baresip for the stream (the last one wins)."""
    text = ANSI.sub("", log).replace("\r", "")
    return {m[1]: {"tx": int(m[2]), "rx": int(m[3])} for m in STATS.finditer(text)}


def parse_sdp(sdp: str) -> dict[str, Media]:
    """The first m= line of each media type (parsed by the one SDP parser, `analysis.sdp`)."""
    out: dict[str, Media] = {}
    for m in parse_session(sdp).media:
        out.setdefault(m.kind, m)
    return out


@dataclass
class SipFacts:
    """What the SIP trace says about the call, in the pjsua2 report's terms."""

    invite_code: int | None = None
    bye: dict[str, Any] = field(default_factory=lambda: {"direction": None, "status": None})
    local: Media | None = None  # audio of the last SDP we sent
    remote: Media | None = None  # audio of the last SDP we received
    codec: str | None = None  # first audio format of the SDP answer (in the 200 OK)
    video_pt: int | None = None  # VP8 payload type, if the answer accepted video

    def sdp(self, local: bool) -> dict[str, Any] | None:
        m = self.local if local else self.remote
        return None if m is None or m.addr is None else {"addr": m.addr, "port": m.port}


def sip_facts(msgs: list[SipMsg]) -> SipFacts:
    f = SipFacts()
    for m in msgs:
        final = m.status is not None and m.status >= 200
        challenge = m.status in (401, 407)  # the PBX asks for credentials; the call goes on
        if m.method == "INVITE" and final and not challenge and f.invite_code is None:
            f.invite_code = m.status  # received (caller) or sent (callee): the first one
        if m.method == "BYE" and m.status is None and f.bye["direction"] is None:
            f.bye["direction"] = "sent" if m.sent else "received"
        elif m.method == "BYE" and final and f.bye["direction"] and f.bye["status"] is None:
            f.bye["status"] = m.status
        if "m=" not in m.body:
            continue
        media = parse_sdp(m.body)
        audio, video = media.get("audio"), media.get("video")
        if audio is not None and m.sent:
            f.local = audio
        elif audio is not None:
            f.remote = audio
        if m.method == "INVITE" and m.status == 200 and f.codec is None:
            f.codec = audio.codec(audio.pts[0]) if audio and audio.pts else None
            f.video_pt = video.pt_of("VP8") if video and video.port else None
    return f


def concat_wavs(parts: list[Path], dest: Path) -> bool:
    """Join WAVs of one format (sndfile dumps, oldest first) into `dest`; False if none is."""
    frames, params = [], None
    for p in parts:
        try:
            with wave.open(str(p), "rb") as w:
                fmt = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                if params in (None, fmt):
                    params = fmt
                    frames.append(w.readframes(w.getnframes()))
        except (OSError, EOFError, wave.Error):
            continue
    if params is None:
        return False
    with wave.open(str(dest), "wb") as out:
        out.setnchannels(params[0])
        out.setsampwidth(params[1])
        out.setframerate(params[2])
        out.writeframes(b"".join(frames))
    return True


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM if the agent dies
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Baresip:
    """One baresip process and its ctrl_tcp connection (baresip accepts only one)."""

    def __init__(self, conf_dir: Path, log_path: Path, ctrl_port: int, life_s: float) -> None:
        """Start `baresip -f conf_dir`, output to log_path; it quits by itself after life_s."""
        self.log_path, self.ctrl_port = log_path, ctrl_port
        cmd = ["baresip", "-4", "-s", "-f", str(conf_dir), "-t", str(int(life_s))]
        if shutil.which("stdbuf"):  # line-buffered stdout: the log is readable while it runs
            cmd = ["stdbuf", "-oL", *cmd]
        self.log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)  # fmt: skip
        self.sock: socket.socket | None = None
        self.decoder = NetstringDecoder()

    def connect(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.sock is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baresip exited ({self.proc.returncode}): {self.last_line()}")
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("baresip's ctrl_tcp did not answer") from None
                time.sleep(0.05)

    def send(self, command: str, params: str | None = None) -> None:
        msg: dict[str, Any] = {"command": command}
        if params is not None:
            msg["params"] = params
        if self.sock is not None:
            try:
                self.sock.sendall(netstring(msg))
            except OSError:
                self.sock = None

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Messages (events and command responses) that arrive within `timeout`."""
        if self.sock is None:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return []
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:  # baresip went away
            self.sock.close()
            self.sock = None
            return []
        return self.decoder.feed(data)

    def stop(self) -> int | None:
        """`quit` (graceful: un-REGISTER, open transactions), SIGTERM twice (baresip exits at
        the second), then SIGKILL; the exit status (None if it had to be killed)."""
        self.send("quit")
        status: int | None = None
        steps = ((QUIT_TIMEOUT, signal.SIGTERM), (0.2, signal.SIGTERM),
                 (QUIT_TIMEOUT, signal.SIGKILL), (5.0, None))  # fmt: skip
        for seconds, sig in steps:
            try:
                status = self.proc.wait(seconds)
                break
            except subprocess.TimeoutExpired:
                if sig is not None:
                    self.proc.send_signal(sig)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.log.close()
        return status

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def last_line(self) -> str:
        lines = [s for s in ANSI.sub("", self.log_text()).splitlines() if s.strip()]
        return lines[-1].strip() if lines else "(empty log)"



ICE_CHECK = re.compile(r"ice: audio: connectivity check (?:is )?(?P<what>complete|failed)")
ICE_PATH = re.compile(r"mnat 'ice' connected: raddr (?P<addr>[\d.]+):(?P<port>\d+)")


def ice_facts(log: str) -> tuple[str | None, dict[str, Any] | None]:
    """baresip's ice module: the audio checks' outcome (completed/failed) and the remote
    address media went to once connected (None where the log says nothing)."""
    text = ANSI.sub("", log)
    check, path = ICE_CHECK.search(text), ICE_PATH.search(text)
    state = None if check is None else ("completed" if check["what"] == "complete" else "failed")
    remote = None if path is None else {"addr": path["addr"], "port": int(path["port"])}
    return state, remote
