"""analysis.attack on stored captures of a real security run (no root): what the attacker
obtained, insecure against protected, with the frames the explanation names."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from analysis.attack import Outcome, judge_attack
from analysis.packets import read_udp, sip_messages
from analysis.qos import Direction
from analysis.verdict import Subject, Verdict
from report import attacks, labkey
from report.write import summary
from scenarios.kinds import KINDS
from scenarios.model import parse_scenario
from topology.plan import DEFAULT_PLAN, ConfigError, Plan, parse_plan, read_toml

DATA = Path(__file__).resolve().parent / "data" / "security"


def outcome(plan: Plan, name: str, **kw: object) -> Outcome:
    folder = DATA / name
    tool = json.loads((folder / "attacker.json").read_text())
    msgs = sip_messages(read_udp(folder / "atk.pcap"))
    log = (folder / "pbx1.log").read_text() if (folder / "pbx1.log").exists() else ""
    return judge_attack(plan, tool["attack"], tool["insecure"], tool, msgs, log, **kw)  # type: ignore[arg-type]


def frames(o: Outcome) -> list[int]:
    """Frame numbers the sentences name (atk.pcap frame N)."""
    text = " ".join(o.obtained + o.refused)
    return [int(w.rstrip(").;,")) for p in text.split("atk.pcap frame ")[1:]
            for w in p.split()[:1]]


def frame_line(name: str, n: int) -> str:
    """The SIP first line of frame n of a stored atk.pcap."""
    msgs = sip_messages(read_udp(DATA / name / "atk.pcap"))
    return next(m.first_line for m in msgs if m.pkt.frame == n)


def test_scan_insecure_reaches_both_pbxs_protected_only_refusals(plan: Plan) -> None:
    bad, good = outcome(plan, "501_scan_insecure"), outcome(plan, "502_scan_protected")
    assert bad.name == "obtained" and set(bad.answers) == {"404"}
    assert "203.0.113.2:5080" in bad.short and "198.51.100.2:5080" in bad.short
    assert good.name == "refused" and set(good.answers) == {"403"}
    # the refusal still shows who answers: both PBXs are visible to svmap
    assert good.found == ["203.0.113.2:5080 (natlab-pbx1)", "198.51.100.2:5080 (natlab-pbx2)"]
    assert any("No answer from 203.0.113.2:5060, 198.51.100.2:5060" in s for s in good.refused)
    for n in frames(good):
        assert frame_line("502_scan_protected", n).startswith("SIP/2.0 403")


def test_enumerate_finds_registered_phones_only_when_insecure(plan: Plan) -> None:
    bad, good = outcome(plan, "511_enumerate_insecure"), outcome(plan, "512_enumerate_protected")
    assert bad.name == "obtained" and bad.found == ["2001 (noauth)", "2005 (noauth)"]
    assert all(frame_line("511_enumerate_insecure", n).startswith("SIP/2.0 200")
               for n in frames(bad)[:2])
    assert good.name == "refused" and good.found == [] and good.answers == {"403": 1}


def test_crack_weak_password_guessed_strong_refused(plan: Plan) -> None:
    weak = outcome(plan, "522_crack_weakpassword")
    assert weak.name == "obtained" and weak.found == ["2005:welcome1"]
    assert weak.variant == "protected, weak password"
    ok = [n for n in frames(weak) if frame_line("522_crack_weakpassword", n).startswith(
        "SIP/2.0 200")]
    assert ok, weak.obtained
    none = outcome(plan, "521_crack_insecure")
    assert none.found == ["[no password]"] and none.name == "obtained"
    strong = outcome(plan, "523_crack_protected")
    assert strong.name == "refused" and strong.found == []
    assert set(strong.answers) <= {"401", "403", "407"}
    assert strong.checks()["every_request_refused"]


def test_hijack_and_invite(plan: Plan) -> None:
    hijack = outcome(plan, "531_hijack_insecure")
    assert hijack.name == "obtained" and hijack.short == "200 OK to REGISTER 2005"
    assert "192.0.2.66" in hijack.obtained[0]  # the attacker's binding is listed in the 200 OK
    refused = outcome(plan, "532_hijack_protected")
    assert refused.name == "refused" and refused.answers == {"403": 1}
    assert any("403 no REGISTER on the trunk socket" in s for s in refused.refused)
    ring = outcome(plan, "541_invite_insecure")
    assert ring.name == "obtained" and ring.short == "180 Ringing from 2005's phone"
    spam = outcome(plan, "542_invite_protected")
    assert spam.name == "refused" and set(spam.answers) == {"403"}


def _rows(mos: float, loss: float) -> list[Direction]:
    return [Direction("call-01", a, b, 350, 0, loss, 7.0, 20.0, 0.1, 0.2, 0.1, 0.2, 0.3, 0.0,
                      1.0, 92.0, mos, 93.0, 4.4) for a, b in (("1002", "2005"), ("2005", "1002"))]


def _call(verdict: str) -> Verdict:
    return Verdict.of(Subject("flood", True, "nat-aware", "refused"), verdict=verdict,
                      rtp_received={"caller": 350, "callee": 350},
                      rtp_sent={"caller": 350, "callee": 350}, checks={},
                      explanation="(the call's own explanation)")


def test_flood_protected_keeps_the_call_and_refuses_everything(plan: Plan) -> None:
    o = outcome(plan, "552_flood_protected", call=_call("works"), qos=_rows(4.38, 0.0))
    assert o.call["works"] and o.call["mos_ok"] and o.call["loss_pct"] == 0.0
    assert o.name == "refused", o.obtained
    assert set(o.answers) == {"403"}  # the stored capture (its first 80 frames): 403s only
    assert o.sent >= 25 and all(o.checks().values())
    assert any("flood guard" in s for s in o.refused)
    failed = outcome(plan, "552_flood_protected", call=_call("fails"), qos=_rows(4.38, 0.0))
    assert failed.name == "obtained" and "call failed" in failed.short


def test_flood_insecure_reaches_the_phone(plan: Plan) -> None:
    o = outcome(plan, "551_flood_insecure", call=_call("works"), qos=_rows(4.38, 0.0))
    assert o.name == "obtained" and o.short.endswith("answers from behind the door")
    assert set(o.answers) == {"200"}  # the stored first 60 frames: the phone answers OPTIONS
    assert "natlab-sipagent" in o.obtained[0]  # the phone itself, not the PBX
    checks = o.checks()
    assert not checks["every_request_refused"] and checks["legit_call_works"]
    dead = outcome(plan, "551_flood_insecure", call=_call("fails"), qos=_rows(4.38, 0.0),
                   died={"2005": "python3: ...: Assertion `rdata' failed."})
    assert dead.short.startswith("2005's phone crashed")
    assert any("died during the flood" in s for s in dead.obtained)


def test_mos_below_threshold_is_quality_lost(plan: Plan) -> None:
    o = outcome(plan, "552_flood_protected", call=_call("works"), qos=_rows(3.9, 2.0))
    assert not o.call["mos_ok"] and o.call["loss_pct"] == 2.0
    assert any("lost quality" in s for s in o.obtained)


def test_verdict_and_table(plan: Plan) -> None:
    names = ["531_hijack_insecure", "532_hijack_protected", "522_crack_weakpassword"]
    verdicts = []
    for name in names:
        o = outcome(plan, name)
        expect = "refused" if name.endswith("protected") else "obtained"
        verdicts.append(o.verdict(Subject(name, True, "nat-aware", expect)))
    assert [v.verdict for v in verdicts] == ["obtained", "refused", "obtained"]
    assert all(v.verdict == v.expect for v in verdicts)
    assert "atk.pcap frame" in verdicts[0].explanation
    rows = attacks.tables(verdicts)
    assert rows[0] == ["attack", "insecure", "protected", "protected, weak password"]
    crack = next(r for r in rows if r[0] == "crack")
    assert crack[1] == "-" and crack[3].startswith("[obtained (password of 2005 guessed)]")
    hijack = next(r for r in rows if r[0] == "hijack")
    assert hijack[1].startswith("[obtained") and hijack[2].startswith("[refused")
    assert attacks.summary(verdicts)[1]["answers"] == {"403": 1}


def test_unknown_attack(plan: Plan) -> None:
    with pytest.raises(ValueError, match="unknown attack"):
        judge_attack(plan, "smurf", False, {}, [], "")


def _plan_data() -> dict[str, Any]:
    return copy.deepcopy(read_toml(DEFAULT_PLAN, "config"))


def test_attacker_address_is_checked() -> None:
    data = _plan_data()
    assert parse_plan(data).servers.attacker == "192.0.2.66"
    data["servers"]["attacker"] = "192.0.2.10"
    with pytest.raises(ConfigError, match="servers.attacker 192.0.2.10 is taken"):
        parse_plan(data)
    data["servers"]["attacker"] = "203.0.113.66"
    with pytest.raises(ConfigError, match="not a host address of 192.0.2.0/24"):
        parse_plan(data)


def test_attack_scenarios_are_checked(tmp_path: Path) -> None:
    plan = parse_plan(_plan_data())
    path = tmp_path / "599_x.toml"
    base = {"kind": "attack", "stun": True, "trunk": "nat-aware"}
    sc = parse_scenario(path, {**base, "attack": "crack", "weak_password": "welcome1"}, plan)
    assert sc.expect == "obtained" and sc.spec.phones == ()
    assert KINDS["attack"].credentials(sc, {"2005": "x" * 24})["2005"] == "welcome1"
    bad = [({**base, "attack": "smurf"}, "attack must be one of"),
           ({**base, "attack": "scan", "weak_password": "welcome1"}, "weak_password is for"),
           ({**base, "attack": "crack", "weak_password": "short"}, "8..64 characters"),
           ({**base, "attack": "scan", "expect": "works"}, "expect must be one of obtained")]
    for data, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            parse_scenario(path, data, plan)
    no_attacker = _plan_data()
    del no_attacker["servers"]["attacker"]
    with pytest.raises(ConfigError, match="needs servers.attacker"):
        parse_scenario(path, {**base, "attack": "scan"}, parse_plan(no_attacker))
    flood = parse_scenario(path, {**base, "attack": "flood"}, plan)
    assert flood.spec.phones == ("1002", "2005")


def test_lab_key_exercise_10_from_the_stored_outcomes(plan: Plan, tmp_path: Path) -> None:
    """Every placeholder of exercise 10 resolves from the verdicts of the stored run."""
    verdicts = []
    for folder in sorted(DATA.iterdir()):
        name = folder.name
        call = _call("works") if "flood" in name else None
        flood: dict[str, object] = {"call": call, "qos": _rows(4.38, 0.0)} if call else {}
        o = outcome(plan, name, **flood)
        expect = "refused" if name.endswith("protected") else "obtained"
        verdicts.append(o.verdict(Subject(name, True, "nat-aware", expect), call))
    assert all(v.verdict == v.expect for v in verdicts), [(v.name, v.verdict) for v in verdicts]
    (tmp_path / "summary.json").write_text(json.dumps(summary(verdicts, {"run_id": "x"})))
    (tmp_path / "config.toml").write_text(Path(plan.source).read_text())  # the run's plan
    text = labkey.fill(tmp_path).split("## 10.", 1)[1]
    assert "(not in this run" not in text and "{{" not in text
    assert "password of 2005 guessed" in text and "atk.pcap frame" in text
