"""WAN impairments (delay, jitter, random/bursty loss, rate) on a node's egress interface.

netem where the kernel has it; otherwise an NFQUEUE user-space shaper (impair.nfq) plus TBF.
"""
from impair.apply import Applied, apply, has_netem
from impair.profile import Impairment

__all__ = ["Applied", "Impairment", "apply", "has_netem"]
