"""`natlab analyze PCAP`: the RTP streams of a capture, with Wireshark's figures.

The streams and figures are those of `tshark -q --enable-heuristic rtp_udp -z rtp,streams`
(Wireshark 4.0): packets, lost (expected - received; negative with duplicates), sequence
errors, min/mean/max delta between packets and RFC 3550 jitter, in ms. Dynamic payload types
(96-127) get no jitter, as tshark has no clock rate for them without SDP.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.rtp import analyze_pcap, format_streams, streams_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="RTP streams of a pcap (tshark -z rtp,streams figures)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pcap", help="capture file (pcap; pcapng must be converted first)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.pcap)
    if not path.is_file():
        raise ValueError(f"no such capture file: {path}")
    streams = analyze_pcap(path)  # ValueError with one line on a bad file
    if args.json:
        print(json.dumps(streams_json(streams), indent=2))
    elif streams:
        print(format_streams(streams))
    else:
        print(f"no RTP streams in {path}")
    return 0
