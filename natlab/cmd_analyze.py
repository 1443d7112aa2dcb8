"""`natlab analyze PCAP`: the RTP streams of a capture, with Wireshark's figures.

The streams and figures are those of `tshark -q --enable-heuristic rtp_udp -z rtp,streams`
(Wireshark 4.0): packets, lost (expected - received; negative with duplicates), sequence
errors, min/mean/max delta between packets and RFC 3550 jitter, in ms. An SDP in the capture
(SIP over UDP) makes its m= address and port an RTP conversation, and its a=rtpmap lines give
dynamic payload types (96-127) their name and clock rate, as in tshark; a dynamic payload
type no SDP names has no clock, so it gets no jitter. --sdp-only: only SDP-announced
conversations, as tshark without the rtp_udp heuristic. The QoS table uses the same code.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.pcap import PcapError
from analysis.rtp import analyze_pcap, format_streams, streams_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="RTP streams of a pcap (tshark -z rtp,streams figures)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pcap", help="capture file (classic pcap; pcapng must be converted first)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--sdp-only", action="store_true",
                   help="only streams an SDP in the capture set up (no rtp_udp heuristic)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.pcap)
    if not path.is_file():
        raise PcapError(f"no such capture file: {path}")
    streams = analyze_pcap(path, heuristic=not args.sdp_only)  # PcapError: one line
    if args.json:
        print(json.dumps(streams_json(streams), indent=2))
    elif streams:
        print(format_streams(streams))
    else:
        print(f"no RTP streams in {path}")
    return 0
