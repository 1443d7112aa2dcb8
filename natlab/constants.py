"""Names and numbers shared by every stage: ports, node names, timeouts.

One source: a port or a deadline written anywhere else is a bug.
"""
from __future__ import annotations

SIP_PORT = 5060  # PBX LAN socket and every phone
TRUNK_PORT = 5080  # PBX trunk socket (nat-aware trunk), forwarded by its router
STUN_PORT = 3478  # coturn
BRIDGE_SIP_PORT = 5070  # the conference bridge, beside kamailio in the PBX namespace
BRIDGE_RTP_PORT = 4100

CORE = "core"  # the public core router
STUN_NODE = "stun"  # the public server host
ATTACKER_NODE = "atk"  # the attacker on the public side (when the plan gives its address)
SLOTS = 8  # networks that may run side by side (natlab run --jobs); slot 0 is the usual one


def switch_name(n: int, slot: int = 0) -> str:
    """Bridge n (1, 2: the LANs, 3: the servers) of the network in `slot`: s1 or s<slot><n>
    (bridges live in the root namespace, so networks side by side need their own names)."""
    return f"s{n}" if slot == 0 else f"s{slot}{n}"


SWITCHES = tuple(switch_name(n, k) for k in range(SLOTS + 1) for n in (1, 2, 3))
INFRA_NODES = ("r1", "r2", CORE, STUN_NODE, "pbx1", "pbx2", ATTACKER_NODE)

READY_TIMEOUT_S = 10.0  # a daemon or agent must be ready within this
CALLEE_GRACE_S = 1.0  # after its caller is done, a callee gets this long to finish by itself
CALL_SLACK_S = 8.0  # an agent waits this long beyond the call's media time for the far end
ROUND_SLACK_S = 20.0  # a round's deadline beyond the media time
