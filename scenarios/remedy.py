"""The remedies a scenario can apply against NAT, one name each (scenario key `remedy`).

Every remedy keeps the NAT-aware trunk unless it says otherwise, so a matrix cell is about
media traversal: what reaches the other phone's RTP port.
"""
from __future__ import annotations

from dataclasses import dataclass

from natlab.constants import STUN_PORT


@dataclass(frozen=True)
class Remedy:
    name: str
    stun: bool  # phones learn their public mapping by STUN and put it in SDP
    trunk: str  # the PBXs' trunk mode
    ice: bool = False  # ICE on the phones (host + server-reflexive candidates)
    turn: bool = False  # ICE with a TURN relay (coturn, long-term credentials)
    anchor: bool = False  # media anchored by rtpengine on the public side (kamailio)
    alg: bool = False  # the routers' SIP ALG (nf_conntrack_sip / nf_nat_sip)
    summary: str = ""

    def agent_args(self, stun_ip: str, turn_user: str, turn_pass: str) -> list[str]:
        """The phone agent's options for this remedy."""
        if self.turn:  # relay candidates only: the media goes through TURN whatever the NAT
            return ["--ice", "--turn", f"{stun_ip}:{STUN_PORT}", "--turn-user", turn_user,
                    "--turn-pass", turn_pass, "--relay-only"]
        return ["--ice"] if self.ice else []


REMEDIES = {r.name: r for r in (
    Remedy("none", stun=False, trunk="nat-aware", summary="no STUN, NAT-aware trunk"),
    Remedy("stun", stun=True, trunk="nat-aware",
           summary="STUN on the phones + NAT-aware trunk (the paper's fix)"),
    Remedy("ice", stun=True, trunk="nat-aware", ice=True, summary="ICE with STUN"),
    # no STUN: pjnath will not pair a server-reflexive candidate without its host candidate
    Remedy("ice-turn", stun=False, trunk="nat-aware", ice=True, turn=True,
           summary="ICE with relay candidates only (TURN)"),
    Remedy("anchor", stun=False, trunk="nat-aware", anchor=True,
           summary="media anchored by rtpengine (kamailio rtpengine + nathelper)"),
    Remedy("alg", stun=False, trunk="nat-aware", alg=True,
           summary="the routers' SIP ALG, no STUN"),
    Remedy("alg-naive", stun=False, trunk="naive", alg=True,
           summary="the routers' SIP ALG on the naive trunk"),
    Remedy("alg-stun", stun=True, trunk="nat-aware", alg=True,
           summary="the routers' SIP ALG together with STUN"),
)}
