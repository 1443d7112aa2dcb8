"""A video call (the paper's Table 4.2): audio + VP8 between baresip phones. Runs like a call;
its verdict adds video RTP both ways on the payload type the SDP negotiated."""
from __future__ import annotations

from typing import Any

from analysis.evidence import Labels, where
from analysis.expect import VIDEO_RX_RATIO
from analysis.qos import Direction, call_qos
from analysis.verdict import Verdict, rtp_count, with_checks
from scenarios.kinds.base import CallInput
from scenarios.kinds.call import CallKind
from scenarios.model import Scenario
from topology.plan import ConfigError, phone_name


def video_pt(report: dict[str, Any]) -> int | None:
    """The video payload type an agent's SDP negotiated (its report's video section)."""
    pt = (report.get("video") or {}).get("payload_type")
    return int(pt) if pt is not None else None


class VideoKind(CallKind):
    name = "video"

    def validate(self, sc: Scenario) -> None:
        phones = {e for c in sc.call_list() for e in (c.caller, c.callee)}
        if any(sc.agent_of(e) != "baresip" for e in phones):
            raise ConfigError(f"{sc.name}: video needs baresip on every phone "
                              "(the pjsua2 wheel has no video)")

    def agent_args(self, sc: Scenario, ext: str) -> list[str]:
        return ["--video"]

    def judge(self, inp: CallInput) -> Verdict:
        checks: dict[str, bool] = {}
        lines = []
        c = inp.call
        for s_role, r_role, key, s_ext, r_ext in (
                ("caller", "callee", "video_to_callee", c.caller, c.callee),
                ("callee", "caller", "video_to_caller", c.callee, c.caller)):
            snd, rcv = inp.reports.get(s_role, {}), inp.reports.get(r_role, {})
            tx, rx = rtp_count(snd, "tx", "video"), rtp_count(rcv, "rx", "video")
            pt = video_pt(rcv)
            r_cap, r_ip = phone_name(r_ext), inp.ip(r_ext)
            on_wire = [p for p in inp.caps.packets(r_cap)
                       if p.kind == "rtp" and p.dst == r_ip and pt is not None
                       and (p.payload[1] & 0x7F) == pt]
            checks[key] = tx > 0 and rx >= VIDEO_RX_RATIO * tx and len(on_wire) > 0
            first = f", first {where(r_cap, on_wire[0])}" if on_wire else ""
            s_wan = f"{inp.plan.lan_of(s_ext).router_name}-wan"
            lost = [p for p in inp.caps.packets(s_wan) if p.kind == "rtp" and pt is not None
                    and (p.payload[1] & 0x7F) == pt and Labels(inp.plan).is_private(p.dst)]
            nowhere = (f"; {s_wan}.pcap has {len(lost)} VP8 packets leaving toward the private "
                       f"address {lost[0].dst} (first {where(s_wan, lost[0])})" if lost else "")
            lines.append(f"Video {s_ext} -> {r_ext}: sent {tx}, received {rx}; "
                         f"{r_cap}.pcap shows {len(on_wire)} RTP packets with the "
                         f"negotiated VP8 payload type {pt}{first}{nowhere}.")
        return with_checks(super().judge(inp), checks, lines)

    def qos(self, inp: CallInput) -> list[Direction]:
        c = inp.call
        pt = video_pt(inp.reports.get("callee", {}))
        return call_qos(c.label, c.caller, c.callee, inp.ip(c.caller), inp.ip(c.callee),
                        inp.caps.packets(phone_name(c.caller)),
                        inp.caps.packets(phone_name(c.callee)), pt)


KIND = VideoKind()
