"""Trim a fault scenario's captures for tests/data/faults (a record of how they were made; not
part of natlab): every SIP and STUN frame, RTP to the phone from 0.3 s before the fault to
0.3 s after its end, RTP from the phone (and on a router's WAN side) only 0.1 s before the
fault and from its end to 0.3 s after; a PBX's SIP.

    python3 trim.py SCENARIO_DIR PCAP_DIR OUT_DIR p1002,p2005[,r1-wan|pbx1] rtp|nortp
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

IPS = {"p1002": "172.16.10.12", "p2005": "192.168.1.25"}


def first_time(pcap: Path) -> float:
    out = subprocess.run(["tshark", "-r", str(pcap), "-c", "1", "-T", "fields", "-e",
                          "frame.time_epoch"], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def main(argv: list[str]) -> None:
    folder, pdir, dst = Path(argv[0]), Path(argv[1]), Path(argv[2])
    names, rtp = argv[3].split(","), argv[4] == "rtp"
    log = json.loads((folder / "fault.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "fault.json", dst / "fault.json")
    t0 = log["start"]
    t1 = log.get("restored") or t0
    for name in names:
        pcap = pdir / f"{name}.pcap"
        first = first_time(pcap)

        def win(a: float, b: float, first: float = first) -> str:
            return (f"(frame.time_relative >= {a - first:.6f} && "
                    f"frame.time_relative <= {b - first:.6f})")

        edges = f"({win(t0 - 0.1, t0)} || {win(t1 - 0.05, t1 + 0.3)})"
        if name in IPS:
            flt = "sip || stun"
            if rtp:
                flt += (f" || (udp && ip.dst == {IPS[name]} && {win(t0 - 0.3, t1 + 0.3)})"
                        f" || (udp && {edges})")
        elif name.startswith("pbx"):
            flt = "sip"
        else:  # a router's WAN side
            flt = f"udp && !sip && {edges}"
        subprocess.run(["tshark", "-r", str(pcap), "-Y", flt, "-F", "pcap", "-w",
                        str(dst / f"{name}.pcap")], check=True, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main(sys.argv[1:])
