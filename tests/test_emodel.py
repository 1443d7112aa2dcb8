"""E-model (ITU-T G.107) against the reference values in facts.md, the paper's formula, the
jitter-buffer and burst-ratio helpers, and the `emodel` subcommand."""
from __future__ import annotations

import argparse
import json
from itertools import pairwise

import pytest

from analysis.emodel import (
    CODECS,
    EModelInput,
    burst_ratio,
    compute,
    from_measurement,
    idd,
    ie_eff,
    jitter_buffer_loss,
    mos_from_r,
    paper_formula,
)
from natlab import cmd_emodel


def r_at(delay_ms: float, **kw: float) -> float:
    return compute(EModelInput(T=delay_ms, Ta=delay_ms, Tr=2 * delay_ms, **kw)).R


def test_defaults() -> None:
    res = compute()
    assert res.R == pytest.approx(93.2062, abs=1e-4)
    assert res.MOS == pytest.approx(4.409, abs=1e-3)
    assert res.Ro - res.Is - res.Id - res.Ie_eff + res.A == pytest.approx(res.R)
    assert res.Idte == 0 and res.Idd == 0 and res.Ie_eff == 0


@pytest.mark.parametrize(("bpl", "loss", "expected"), [
    (25.1, 2, 86.20), (25.1, 5, 77.43), (4.3, 2, 63.05), (4.3, 5, 42.13)])
def test_g711_random_loss(bpl: float, loss: float, expected: float) -> None:
    assert compute(EModelInput(Bpl=bpl, Ppl=loss)).R == pytest.approx(expected, abs=0.01)


def test_codec_table_matches_loss_values() -> None:
    for name, loss, expected in (("g711", 2, 86.20), ("g711-noplc", 5, 42.13)):
        inp = from_measurement(name, 0, loss, coding_delay_ms=0)
        assert compute(inp).R == pytest.approx(expected, abs=0.01)
    assert (CODECS["g729a"].Ie, CODECS["g729a"].Bpl) == (11, 19.0)
    assert (CODECS["g723.1"].Ie, CODECS["g723.1"].Bpl) == (15, 16.1)


def test_mos_mapping() -> None:
    assert mos_from_r(-5) == 1.0
    assert mos_from_r(120) == 4.5
    assert mos_from_r(0) == pytest.approx(1.0)
    assert mos_from_r(100) == pytest.approx(4.5)


def test_idd_knee_at_100_ms() -> None:
    assert idd(50) == 0 and idd(100) == 0
    assert 0 < idd(101) < 0.01
    assert idd(200) == pytest.approx(3.04, abs=0.01)  # X = 1
    assert idd(400) == pytest.approx(24.07, abs=0.01)  # X = 2
    assert idd(150, m_t=150) == 0  # the 2015 minimum perceivable delay moves the knee


def test_delay_lowers_r() -> None:
    delays = [0, 50, 100, 150, 177.3, 200, 300, 400]
    rs = [r_at(d) for d in delays]
    assert all(a > b for a, b in pairwise(rs))
    # past the knees the slope steepens: more R lost per ms above 177 ms than below 100 ms
    assert (rs[5] - rs[7]) / 200 > 3 * (rs[0] - rs[2]) / 100
    below, above = compute(EModelInput(Ta=100)), compute(EModelInput(Ta=200))
    assert below.Idd == 0 and above.Idd > 3


def test_burst_increases_impairment() -> None:
    values = [ie_eff(0, 5, 25.1, b) for b in (1, 1.5, 2, 4)]
    assert all(a < b for a, b in pairwise(values))
    assert compute(EModelInput(Bpl=25.1, Ppl=5, BurstR=2)).R < 77.43


def test_from_measurement_delay_and_late_loss() -> None:
    inp = from_measurement("g729a", 40, 1.0, burst_ratio=1.5, jitter_buffer_ms=60,
                           late_loss_pct=2.0)
    assert inp.T == inp.Ta == 40 + 25 + 60 and inp.Tr == 2 * inp.T
    assert inp.Ppl == pytest.approx(1 + 99 * 0.02)
    assert (inp.Ie, inp.Bpl, inp.BurstR) == (11, 19.0, 1.5)
    with pytest.raises(ValueError, match="unknown codec"):
        from_measurement("opus", 0, 0)
    with pytest.raises(ValueError, match="loss"):
        from_measurement("g711", 0, 101)


def test_paper_formula() -> None:
    voice = paper_formula(19.97)
    assert (voice.R_printed, voice.MOS_printed) == (93.83, 4.4)
    assert voice.R == pytest.approx(93.8207, abs=1e-4) and voice.MOS == pytest.approx(4.421, 1e-3)
    video = paper_formula(19.97, ie=10)
    assert (video.R_printed, video.MOS_printed) == (83.83, 4.1)
    assert video.MOS == pytest.approx(4.160, abs=1e-3)
    assert paper_formula(200).Id == pytest.approx(0.024 * 200 + 0.11 * 22.7)
    assert paper_formula(0, 0.02, k=30).Ie_eff == pytest.approx(30 * 0.2623643, abs=1e-5)


def test_jitter_buffer_loss() -> None:
    delays = [20.0, 25.0, 30.0, 45.0, 60.0, 20.5, 21.0, 80.0, 22.0, 40.0]
    # min 20 ms + 20 ms buffer: deadline 40 ms; 45, 60 and 80 are late, 40 itself is in time
    assert jitter_buffer_loss(delays, 20) == pytest.approx(30.0)
    assert jitter_buffer_loss(delays, 100) == 0
    assert jitter_buffer_loss(delays, 0) == pytest.approx(90.0)  # only the fastest one plays
    with pytest.raises(ValueError):
        jitter_buffer_loss([], 20)


def test_burst_ratio() -> None:
    assert burst_ratio([False] * 10) == 1.0
    # 4 isolated losses in 20: mean burst 1, random expectation 1/(1-0.2) -> BurstR 0.8
    spread = ([True] + [False] * 4) * 4
    assert burst_ratio(spread) == pytest.approx(0.8)
    # the same 4 losses in one burst: mean burst 4 -> BurstR 4 * 0.8 = 3.2
    assert burst_ratio([True] * 4 + [False] * 16) == pytest.approx(3.2)
    # 2-state Markov chain: BurstR = 1/(p+q); a long periodic pattern with p = 1/9, q = 1/3
    pattern = ([True] * 3 + [False] * 9) * 1000
    assert burst_ratio(pattern) == pytest.approx(1 / (1 / 9 + 1 / 3), rel=1e-3)
    with pytest.raises(ValueError):
        burst_ratio([True, True])


def parse(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="natlab")
    cmd_emodel.register(ap.add_subparsers())
    return ap.parse_args(["emodel", *argv])


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--codec", "g711", "--loss-pct", "5", "--json")
    assert args.func is cmd_emodel.run
    assert args.func(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"R", "MOS", "Ro", "Is", "Id", "Ie_eff", "formula", "codec", "inputs"} <= d.keys()
    assert d["formula"] == "g107" and d["codec"] == "g711"
    assert d["R"] == pytest.approx(77.43, abs=0.01)
    assert d["inputs"]["loss_pct"] == 5 and d["inputs"]["Bpl"] == 25.1


def test_cli_defaults_and_paper(capsys: pytest.CaptureFixture[str]) -> None:
    cmd_emodel.run(parse("--json"))
    d = json.loads(capsys.readouterr().out)
    assert d["R"] == pytest.approx(93.2062, abs=1e-4) and d["MOS"] == pytest.approx(4.409, 1e-3)
    cmd_emodel.run(parse("--formula", "paper", "--delay-ms", "19.97", "--json"))
    d = json.loads(capsys.readouterr().out)
    assert d["formula"] == "paper" and d["R_printed"] == 93.83 and d["MOS_printed"] == 4.4
    assert cmd_emodel.run(parse("--codec", "g729a", "--delay-ms", "150")) == 0
    out = capsys.readouterr().out
    assert "R " in out and "Ie_eff" in out and "talker echo" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--delay-ms", "-1"], "--delay-ms"),
    (["--loss-pct", "101"], "--loss-pct"),
    (["--burst-ratio", "0"], "--burst-ratio"),
    (["--formula", "paper", "--burst-ratio", "2"], "paper"),
])
def test_cli_bad_input(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cmd_emodel.run(parse(*argv))


def test_cli_unknown_codec() -> None:
    args = parse()
    args.codec = "opus"
    with pytest.raises(ValueError, match="unknown codec 'opus'"):
        cmd_emodel.run(args)
    with pytest.raises(SystemExit):
        parse("--codec", "opus")  # argparse's choices reject it first on the command line
