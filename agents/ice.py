"""ICE facts for the report: candidates from the SDP, the selected pair from pjsua's call dump."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from agents.runmain import UsageError, host_port

# a=candidate:<foundation> <component> <transport> <priority> <addr> <port> typ <type> ...
_CANDIDATE = re.compile(
    r"^a=candidate:\S+ (?P<comp>\d+) (?P<proto>\S+) \d+ (?P<addr>\S+) (?P<port>\d+) "
    r"typ (?P<type>\w+)", re.MULTILINE)
# pjsua_call_dump, ICE transport: "ICE role: controlling, state: Negotiation Success, ..."
# then per component "[0]: L:10.0.0.1:4000 (srflx) --> R:10.0.0.2:4002 (host)"
_STATE = re.compile(r"ICE role: (?P<role>[\w-]+), state: (?P<state>[^,\n]+)")
_PAIR = re.compile(r"\[0\]: L:(?P<laddr>[\d.]+):(?P<lport>\d+) \((?P<ltype>\w+)\) --> "
                   r"R:(?P<raddr>[\d.]+):(?P<rport>\d+) \((?P<rtype>\w+)\)")


@dataclass(frozen=True)
class TurnServer:
    """A TURN server over UDP with long-term credentials."""

    addr: str  # IP:PORT
    user: str
    password: str


def sdp_candidates(sdp: str) -> list[dict[str, Any]]:
    """The RTP (component 1) candidates of an SDP: [{type, addr, port}] in SDP order."""
    if "\r\n\r\n" in sdp:  # a whole SIP message
        sdp = sdp.split("\r\n\r\n", 1)[1]
    return [{"type": m["type"], "addr": m["addr"], "port": int(m["port"])}
            for m in _CANDIDATE.finditer(sdp.replace("\r\n", "\n"))
            if m["comp"] == "1" and m["proto"].upper() == "UDP"]


# the call dump abbreviates candidate types to one letter
_TYPES = {"h": "host", "s": "srflx", "p": "prflx", "r": "relay"}


def parse_dump(text: str) -> dict[str, Any]:
    """ICE role, state and the RTP component's selected pair from a pjsua call dump."""
    out: dict[str, Any] = {"role": None, "state": None, "selected": None}
    if m := _STATE.search(text):
        out["role"], out["state"] = m["role"], m["state"].strip()
    if p := _PAIR.search(text):
        out["selected"] = {
            "local": {"type": _TYPES.get(p["ltype"], p["ltype"]), "addr": p["laddr"],
                      "port": int(p["lport"])},
            "remote": {"type": _TYPES.get(p["rtype"], p["rtype"]), "addr": p["raddr"],
                       "port": int(p["rport"])},
        }
    return out


def add_nat_options(p: argparse.ArgumentParser) -> None:
    """--ice, --turn/--turn-user/--turn-pass, --relay-only, --keepalive (both phone agents)."""
    p.add_argument("--ice", action="store_true",
                   help="ICE (RFC 8445) for media; with --stun its server gives the srflx "
                        "candidate (instead of the agent's own STUN rewrite)")
    p.add_argument("--turn", type=host_port(True), metavar="IP:PORT",
                   help="TURN server over UDP: ICE with a relay candidate (implies --ice)")
    p.add_argument("--turn-user", metavar="USER", help="TURN long-term credential user")
    p.add_argument("--turn-pass", metavar="PASS", help="TURN long-term credential password")
    p.add_argument("--relay-only", action="store_true",
                   help="ICE without host candidates (forces srflx/relay pairs)")
    p.add_argument("--keepalive", type=int, default=0, metavar="S",
                   help="seconds between keep-alives toward the registrar (0: off)")


def check_nat_args(args: argparse.Namespace) -> argparse.Namespace:
    """Post-parse checks of the NAT options; fills args.turn_server (TurnServer or None)."""
    args.turn_server = None
    if args.turn:
        if not args.turn_user or not args.turn_pass:
            raise UsageError("--turn needs --turn-user and --turn-pass")
        args.turn_server = TurnServer(args.turn, args.turn_user, args.turn_pass)
    elif args.turn_user or args.turn_pass:
        raise UsageError("--turn-user/--turn-pass need --turn")
    if args.relay_only and not (args.ice or args.turn):
        raise UsageError("--relay-only needs --ice or --turn")
    if args.keepalive < 0:
        raise UsageError("--keepalive must be >= 0")
    return args
