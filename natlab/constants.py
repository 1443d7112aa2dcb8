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
SWITCHES = ("s1", "s2", "s3")
INFRA_NODES = ("r1", "r2", CORE, STUN_NODE, "pbx1", "pbx2", ATTACKER_NODE)

READY_TIMEOUT_S = 10.0  # a daemon or agent must be ready within this
CALLEE_GRACE_S = 1.0  # after its caller is done, a callee gets this long to finish by itself
CALL_SLACK_S = 8.0  # an agent waits this long beyond the call's media time for the far end
ROUND_SLACK_S = 20.0  # a round's deadline beyond the media time
