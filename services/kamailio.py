"""A kamailio PBX: registrar + stateful proxy, with an optional trunk to the other PBX."""

from __future__ import annotations

import os
import re
import string
import subprocess
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from natlab.constants import SIP_PORT, TRUNK_PORT
from services.credentials import check_password
from services.daemon import Daemon, DaemonError, last_line
from services.host import Host
from services.probe import run_in_host

TEMPLATE = Path(__file__).parent / "templates" / "kamailio.cfg.tmpl"
MODULE_PATH = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


RING_STRATEGIES = ("parallel", "sequential")
FLOOD_WINDOW_S = 2  # pike's sampling unit
FLOOD_LIMIT = 100  # requests per source per window before pike blocks it (10 calls: ~40)
# rtpengine_manage() flags: rtpengine's address in c=/o=, no ICE candidates past the anchor
ANCHOR_FLAGS = "replace-origin replace-session-connection ICE=remove"
_NG_SOCKET = re.compile(r"^udp:\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}$")


class TrunkMode(Enum):
    NONE = "none"  # the PBX knows nothing of the other side
    NAIVE = "naive"  # one socket, private address in Via/Record-Route
    NAT_AWARE = "nat-aware"  # a second socket advertising the public address


@dataclass(frozen=True)
class RingGroup:
    """An extension that rings its members' registered phones (unregistered ones are skipped).

    parallel: all members at once, the first 200 OK wins, tm CANCELs the others.
    sequential: hunt in order, each member rings ring_s seconds before the next is tried.
    """

    ext: str
    members: tuple[str, ...]
    strategy: str = "parallel"
    ring_s: int = 5

    def __post_init__(self) -> None:
        if not self.ext.isdigit():
            raise ValueError(f"ring group {self.ext!r}: extension is not digits")
        if not self.members or not all(m.isdigit() for m in self.members):
            raise ValueError(f"ring group {self.ext}: members must be digit extensions")
        if self.ext in self.members or len(set(self.members)) != len(self.members):
            raise ValueError(f"ring group {self.ext}: a member repeats or is the group itself")
        if self.strategy not in RING_STRATEGIES:
            raise ValueError(f"ring group {self.ext}: strategy must be one of {RING_STRATEGIES}")
        if self.ring_s <= 0:
            raise ValueError(f"ring group {self.ext}: ring_s must be > 0")


@dataclass(frozen=True)
class PbxOptions:
    name: str  # "pbx1"
    lan_ip: str  # the PBX's private address
    public_ip: str  # its NAT router's public address
    local_prefix: str  # extensions <prefix>xxx register here
    peer_prefix: str  # extensions <prefix>xxx live behind the other PBX
    peer_public_ip: str  # the other router's public address
    trunk: TrunkMode
    sip_port: int = SIP_PORT
    trunk_port: int = TRUNK_PORT
    ring_groups: tuple[RingGroup, ...] = ()
    # Protection (default on): digest auth of phones' REGISTER (401) and INVITE (407) with
    # these per-extension passwords, the trunk socket open to the peer PBX only, no REGISTER
    # on it, and a flood guard. insecure=True switches all of it off (the attack lesson).
    insecure: bool = False
    passwords: dict[str, str] = field(default_factory=dict, repr=False, hash=False)
    peer_port: int | None = None  # the peer's trunk source port; None: forwarded_port(), 0: any
    flood_limit: int = FLOOD_LIMIT
    # NAT remedies. media_anchor: rtpengine's ng socket "udp:IP:PORT" (None: media end to end).
    # natping_interval: seconds between OPTIONS pings to NATed contacts (0: none). Either one
    # also switches on nathelper's signalling fixes (force_rport, fix_nated_register, alias).
    media_anchor: str | None = None
    anchor_flags: str = ANCHOR_FLAGS
    natping_interval: int = 0
    # OPTIONS to the peer's trunk from our trunk socket every N s (0: none): keeps our router's
    # mapping for the trunk alive when it has no port forward (the mapping-lifetime lesson)
    trunk_keepalive_s: int = 0

    @property
    def nathelper(self) -> bool:
        return self.media_anchor is not None or self.natping_interval > 0

    def __post_init__(self) -> None:
        if self.media_anchor is not None and not _NG_SOCKET.match(self.media_anchor):
            raise ValueError(f"{self.name}: media_anchor must be udp:IP:PORT, "
                             f"got {self.media_anchor!r}")
        if self.trunk_keepalive_s < 0 or (self.trunk_keepalive_s
                                           and self.trunk is not TrunkMode.NAT_AWARE):
            raise ValueError(f"{self.name}: trunk_keepalive_s needs the nat-aware trunk, >= 0")
        if self.natping_interval < 0:
            raise ValueError(f"{self.name}: natping_interval must be >= 0")
        if '"' in self.anchor_flags:
            raise ValueError(f"{self.name}: anchor_flags must not contain a double quote")
        for prefix in (self.local_prefix, self.peer_prefix):
            if not prefix.isdigit():
                raise ValueError(f"{self.name}: extension prefix {prefix!r} is not digits")
        if self.local_prefix == self.peer_prefix:
            raise ValueError(f"{self.name}: local and peer prefix are both {self.local_prefix!r}")
        if self.sip_port == self.trunk_port:
            raise ValueError(f"{self.name}: sip_port and trunk_port are both {self.sip_port}")
        exts = [g.ext for g in self.ring_groups]
        if len(set(exts)) != len(exts):
            raise ValueError(f"{self.name}: a ring group extension repeats: {exts}")
        for ext, password in self.passwords.items():
            if not ext.isdigit():
                raise ValueError(f"{self.name}: password for {ext!r}: not a digit extension")
            check_password(ext, password)
        if self.peer_port is not None and not 0 <= self.peer_port < 65536:
            raise ValueError(f"{self.name}: peer_port {self.peer_port} is not a port (0 = any)")
        if self.flood_limit <= 0:
            raise ValueError(f"{self.name}: flood_limit must be > 0")

    def forwarded_port(self) -> int | None:
        """The port the NAT router must forward to this PBX (None: no forward)."""
        return {TrunkMode.NONE: None, TrunkMode.NAIVE: self.sip_port,
                TrunkMode.NAT_AWARE: self.trunk_port}[self.trunk]


    def peer_source_port(self) -> int:
        """The source port the peer PBX's trunk requests come from (0: any)."""
        if self.peer_port is not None:
            return self.peer_port
        return self.forwarded_port() or self.sip_port


class _CfgTemplate(string.Template):
    delimiter = "%%"  # kamailio's own variables use $


def _user_re(prefix: str) -> str:
    return f"^{prefix}[0-9]{{3}}$"


def _peer_action(o: PbxOptions) -> str:
    """The body of route[PEER] for the trunk mode."""
    if o.trunk is TrunkMode.NONE:
        return "\n    ".join([
            'xlog("L_NOTICE", "$rm $ru from $si:$sp -> 404 no trunk\\n");',
            f'sl_send_reply("404", "No route to {o.peer_prefix}xxx");',
            "exit;",
        ])
    port = o.sip_port if o.trunk is TrunkMode.NAIVE else o.trunk_port
    lines = [f'$rd = "{o.peer_public_ip}";', f"$rp = {port};"]
    if o.trunk is TrunkMode.NAT_AWARE:
        lines.append(f"force_send_socket(udp:{o.lan_ip}:{o.trunk_port});")
    lines += [f'xlog("L_NOTICE", "$rm $ou from $si:$sp -> trunk ({o.trunk.value}) $ru\\n");',
              "route(RELAY);"]
    return "\n    ".join(lines)


def _ring_group_dispatch(o: PbxOptions) -> str:
    """request_route lines that hand each group extension to route[RG_<STRATEGY>]."""
    blocks = []
    for g in o.ring_groups:
        blocks.append("\n".join([
            f'if ($rU == "{g.ext}") {{',
            f'        $avp(rg_ext) = "{g.ext}";',
            f'        $avp(rg_members) = "{" ".join(g.members)}";',
            f"        $avp(rg_count) = {len(g.members)};",
            f"        $avp(rg_ring_ms) = {g.ring_s * 1000};",
            f"        route(RG_{g.strategy.upper()});",
            "    }",
        ]))
    return "\n    ".join(blocks) or "# no ring groups"


def _listen(o: PbxOptions) -> str:
    lines = [f"listen=udp:{o.lan_ip}:{o.sip_port}"]
    if o.trunk is TrunkMode.NAT_AWARE:
        lines.append(f"listen=udp:{o.lan_ip}:{o.trunk_port} advertise {o.public_ip}:{o.trunk_port}")
    return "\n".join(lines)


def _defines(o: PbxOptions) -> str:
    """Preprocessor switches of the template."""
    names = [] if o.insecure else ["PROTECTED"]
    if not o.insecure and o.trunk is TrunkMode.NAT_AWARE:
        names.append("TRUNK_SOCKET")
    return "\n".join(f"#!define {n}" for n in names) or "# insecure: no #!define"


def _peer_match(o: PbxOptions) -> str:
    """The condition that a request comes from the peer PBX (its public address and port)."""
    port = o.peer_source_port()
    cond = f'$si == "{o.peer_public_ip}"'
    return cond + (f" && $sp == {port}" if port else "")


def password_file(workdir: Path, name: str) -> Path:
    """Where the PBX's passwords are rendered (mode 0600, in its run dir)."""
    return workdir / f"{name}.run" / "passwords.cfg"


def render_passwords(passwords: dict[str, str]) -> str:
    """The included file that fills the htable "pw" at start-up."""
    lines = ["# Digest passwords, one per extension. Generated by natlab; secret.",
             "event_route[htable:mod-init] {"]
    lines += [f'    $sht(pw=>{ext}) = "{pw}";' for ext, pw in sorted(passwords.items())]
    return "\n".join(lines + ["}", ""])


def _nat_defines(o: PbxOptions) -> str:
    """Preprocessor switches for the NAT remedy blocks of the template."""
    lines = []
    if o.nathelper:
        lines.append("#!define WITH_NATHELPER")
    if o.media_anchor is not None:
        lines.append("#!define WITH_MEDIA_ANCHOR")
    if o.trunk_keepalive_s:
        lines.append("#!define WITH_TRUNK_KEEPALIVE")
    return "\n".join(lines) or "# NAT remedies: off (no nathelper, no media anchor)"


def render_config(o: PbxOptions, passwords_path: Path | None = None) -> str:
    """The kamailio.cfg text for these options (passwords_path: the rendered password file)."""
    return _CfgTemplate(TEMPLATE.read_text()).substitute(
        name=o.name,
        protection="insecure (no auth, open trunk)" if o.insecure else "protected",
        defines=_defines(o),
        password_file=str(passwords_path or "/dev/null"),
        flood_window=FLOOD_WINDOW_S,
        flood_limit=o.flood_limit,
        realm=o.name,
        peer_match=_peer_match(o),
        peer=f"{o.peer_public_ip}:{o.peer_source_port() or 'any port'}",
        trunk_port=o.trunk_port,
        trunk_mode=o.trunk.value,
        listen=_listen(o),
        module_path=MODULE_PATH,
        local_user_re=_user_re(o.local_prefix),
        peer_user_re=_user_re(o.peer_prefix),
        lan_socket=f"udp:{o.lan_ip}:{o.sip_port}",
        lan_ip=o.lan_ip,
        ring_groups=_ring_group_dispatch(o),
        peer_action=_peer_action(o),
        nat_defines=_nat_defines(o),
        natping_interval=o.natping_interval,
        media_anchor=o.media_anchor or "",
        anchor_flags=o.anchor_flags,
        trunk_keepalive_s=o.trunk_keepalive_s,
        public_ip=o.public_ip,
        peer_public_ip=o.peer_public_ip,
    )


_LOG_LINE = re.compile(r"(?:ERROR|CRITICAL): .*?\]: (?:\w+\(\): )?(?P<msg>.*)")
_CFG_LINE = re.compile(r"parse error in config file .*?, line (?P<line>\d+)")


def first_error(output: str) -> str:
    """The first ERROR/CRITICAL message of kamailio's output (+ the config line), else the
    last line."""
    errors = [m.group("msg").strip() for m in _LOG_LINE.finditer(output)]
    if not errors:
        return last_line(output)
    where = _CFG_LINE.search(output)
    return errors[0] + (f" (config line {where.group('line')})" if where else "")


class Kamailio(Daemon):
    """kamailio in the foreground, all its files under workdir."""

    check_timeout = 10.0  # seconds for `kamailio -c`
    probe_timeout = 0.5  # seconds per readiness attempt

    def __init__(self, host: Host, workdir: Path, options: PbxOptions) -> None:
        super().__init__(host, workdir)
        self.options = options
        self.name = options.name

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.cfg"

    def render(self) -> None:
        """The config, and (protected) the password file, readable by root only."""
        o = self.options
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / f"{self.name}.run").mkdir(exist_ok=True)
        path = None
        if not o.insecure:
            if not o.passwords:
                raise DaemonError(f"{self.name}: protected but no passwords "
                                  "(give PbxOptions.passwords, or insecure=True)")
            path = password_file(self.workdir, self.name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(render_passwords(o.passwords))
        # Relative to the config's folder: kamailio refuses include names of 128+ characters.
        rel = path.relative_to(self.workdir) if path else None
        self.config_path.write_text(render_config(o, rel))

    def _base_args(self) -> list[str]:
        return ["kamailio", "-f", str(self.config_path), "-m", "32", "-M", "8"]

    def command(self) -> list[str]:
        return self._base_args() + [
            "-DD", "-E",
            "-P", str(self.workdir / f"{self.name}.pid"),
            "-Y", str(self.workdir / f"{self.name}.run"),
            "-w", str(self.workdir),
        ]

    def check(self) -> None:
        """`kamailio -c` inside the host (so listen addresses exist)."""
        proc = self.host.popen(self._base_args() + ["-c"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=self.check_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DaemonError(f"{self.name}: config check timed out") from None
        if proc.returncode != 0:
            text = out.decode(errors="replace")
            raise DaemonError(f"{self.name}: config check failed: {first_error(text)}")

    def failure_line(self, log: str) -> str:
        return first_error(log)

    def probe(self) -> bool:
        o = self.options
        result = run_in_host(self.host, "sip-options", o.lan_ip, o.sip_port, self.probe_timeout)
        return result is not None and result.get("status") == 200
