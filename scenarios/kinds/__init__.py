"""The scenario kinds, one module each; adding a kind = one module + one line here."""
from __future__ import annotations

from scenarios.kinds import attack, call, conference, fault, load, ring_group, video
from scenarios.kinds.base import Kind

KINDS: dict[str, Kind] = {k.name: k for k in (call.KIND, video.KIND, ring_group.KIND,
                                               conference.KIND, fault.KIND, attack.KIND,
                                               load.KIND)}
