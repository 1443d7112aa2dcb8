"""`natlab emodel`: speech quality (R, MOS) of a codec at a given delay and loss.

Two formulas: the full ITU-T G.107 E-model (default) and the paper's simplified one. The delay
is the one-way mouth-to-ear delay used as-is (T = Ta = Tr/2 for G.107, d for the paper); to go
from measured network figures use analysis.emodel.from_measurement, which adds codec and
jitter-buffer delay.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from analysis.emodel import (
    CODEC_SOURCE,
    CODECS,
    EDITION,
    PAPER_K,
    PAPER_RO,
    compute,
    from_measurement,
    get_codec,
    paper_formula,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emodel", help="R factor and MOS of a codec at a delay and loss (G.107)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default="g711", choices=sorted(CODECS),
                   help="codec (Ie, Bpl from G.113 Appendix I); default g711 (with PLC)")
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="one-way mouth-to-ear delay in ms (default 0)")
    p.add_argument("--loss-pct", type=float, default=0.0, help="packet loss in %% (default 0)")
    p.add_argument("--burst-ratio", type=float, default=1.0,
                   help="BurstR, 1 = random loss (default 1; G.107 only)")
    p.add_argument("--formula", choices=("g107", "paper"), default="g107",
                   help="g107: full E-model; paper: the paper's simplified formula")
    p.add_argument("--paper-k", type=float, default=PAPER_K,
                   help=f"loss coefficient k of the paper's formula (default {PAPER_K:g})")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    get_codec(args.codec)  # ValueError names the known codecs
    if args.delay_ms < 0:
        raise ValueError(f"--delay-ms must be >= 0, got {args.delay_ms:g}")
    if not 0 <= args.loss_pct <= 100:
        raise ValueError(f"--loss-pct must be 0..100, got {args.loss_pct:g}")
    if args.burst_ratio <= 0:
        raise ValueError(f"--burst-ratio must be > 0, got {args.burst_ratio:g}")
    if args.formula == "paper" and args.burst_ratio != 1:
        raise ValueError("--burst-ratio is not part of the paper's formula (use --formula g107)")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """The figures `run` prints, as a JSON-ready dict."""
    _check(args)
    c = get_codec(args.codec)
    inputs: dict[str, Any] = {"delay_ms": args.delay_ms, "loss_pct": args.loss_pct,
                              "burst_ratio": args.burst_ratio, "Ie": c.Ie, "Bpl": c.Bpl}
    if args.formula == "paper":
        k = getattr(args, "paper_k", PAPER_K)
        pr = paper_formula(args.delay_ms, args.loss_pct / 100, c.Ie, k)
        inputs["k"] = k
        return {"formula": "paper", "codec": c.name, "inputs": inputs,
                "R": round(pr.R, 4), "MOS": round(pr.MOS, 4), "Ro": PAPER_RO, "Is": 0.0,
                "Id": round(pr.Id, 4), "Ie_eff": round(pr.Ie_eff, 4),
                "R_printed": pr.R_printed, "MOS_printed": pr.MOS_printed}
    e = from_measurement(c.name, args.delay_ms, args.loss_pct, args.burst_ratio,
                         coding_delay_ms=0.0)
    res = compute(e)
    inputs.update(T=e.T, Ta=e.Ta, Tr=e.Tr, Ppl=e.Ppl, BurstR=e.BurstR)
    terms = {k: round(getattr(res, k), 4) for k in ("Iolr", "Ist", "Iq", "Idte", "Idle", "Idd")}
    return {"formula": "g107", "edition": EDITION, "codec": c.name, "inputs": inputs,
            "R": round(res.R, 4), "MOS": round(res.MOS, 4), "Ro": round(res.Ro, 4),
            "Is": round(res.Is, 4), "Id": round(res.Id, 4), "Ie_eff": round(res.Ie_eff, 4),
            "A": res.A, "terms": terms}


def _text(d: dict[str, Any]) -> str:
    i, c = d["inputs"], CODECS[d["codec"]]
    head = (f"codec {c.name}: {c.description} (Ie {c.Ie:g}, Bpl {c.Bpl:g}; {CODEC_SOURCE})\n"
            f"one-way delay {i['delay_ms']:g} ms, loss {i['loss_pct']:g} %")
    if d["formula"] == "paper":
        return "\n".join([
            "The paper's simplified formula (not G.107): R = 94.3 - Id - Ie_eff", head,
            f"  R      {d['R']:7.2f}  rating 0..100 (paper prints {d['R_printed']:.2f})",
            f"  MOS    {d['MOS']:7.3f}  mean opinion score 1..4.5 via G.107 Annex B"
            f" (paper prints {d['MOS_printed']:.1f})",
            f"  Ro     {d['Ro']:7.2f}  constant: best rating, simultaneous impairments included",
            f"  Id     {d['Id']:7.2f}  delay: 0.024 d + 0.11 (d - 177.3) beyond 177.3 ms",
            f"  Ie_eff {d['Ie_eff']:7.2f}  codec + loss: Ie + k ln(1 + 15 e), k = {i['k']:g}"])
    t = d["terms"]
    return "\n".join([
        f"{d['edition']} E-model: R = Ro - Is - Id - Ie_eff + A",
        head + f", BurstR {i['burst_ratio']:g}  (T = Ta = {i['T']:g} ms, Tr = {i['Tr']:g} ms)",
        f"  R      {d['R']:7.2f}  transmission rating 0..100 (93.2 = all G.107 defaults)",
        f"  MOS    {d['MOS']:7.3f}  estimated mean opinion score 1..4.5 (G.107 Annex B)",
        f"  Ro     {d['Ro']:7.2f}  basic signal-to-noise ratio: circuit and room noise",
        f"  Is     {d['Is']:7.2f}  simultaneous: loudness {t['Iolr']:.2f}, sidetone {t['Ist']:.2f},"
        f" quantizing {t['Iq']:.2f}",
        f"  Id     {d['Id']:7.2f}  delay: talker echo {t['Idte']:.2f}, listener echo"
        f" {t['Idle']:.2f}, absolute delay {t['Idd']:.2f}",
        f"  Ie_eff {d['Ie_eff']:7.2f}  equipment: codec Ie plus packet loss via Bpl and BurstR",
        f"  A      {d['A']:7.2f}  advantage factor (access convenience)"])


def run(args: argparse.Namespace) -> int:
    d = evaluate(args)
    print(json.dumps(d, indent=2) if args.json else _text(d))
    return 0
