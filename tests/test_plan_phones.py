"""A new user's own address plan (extensions 3xxx/4xxx, other LAN and public addresses): every
text a student reads names the plan's phones and addresses, never the default plan's
1002 -> 2005 (no root: scenarios, ladder columns, drawings, answer-key template)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from analysis.evidence import Labels
from analysis.ladder import columns
from natlab.cli import banner
from report import labkey
from report.topology import diagram
from scenarios.model import select
from topology.plan import ConfigError, Plan, load_plan

DEFAULT_PHONES = re.compile(r"\b(1002|1005|2001|2005)\b")
SWAPS = [('"2001"', '"4001"'), ('"2005"', '"4005"'), ('"1002"', '"3002"'), ('"1005"', '"3005"'),
         ('prefix = "2"', 'prefix = "4"'), ('prefix = "1"', 'prefix = "3"'),
         ("192.168.1.", "10.20.30."), ("172.16.10.", "10.99.0."),
         ('wan_ip = "203.0.113.2"', 'wan_ip = "203.0.113.20"'),
         ('wan_ip = "198.51.100.2"', 'wan_ip = "198.51.100.30"'),
         ('stun = "192.0.2.10"', 'stun = "192.0.2.50"'),
         ('stun2 = "192.0.2.11"', 'stun2 = "192.0.2.51"')]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    text = (ROOT / "config" / "default.toml").read_text()
    text = "\n".join(line.split("#")[0] for line in text.splitlines())  # comments name 1002
    for old, new in SWAPS:
        assert old in text, old
        text = text.replace(old, new)
    # the phones for concurrent calls: 2010.. -> 4010.., 1010.. -> 3010..
    text = re.sub(r'"([12])(01[0-9])"', lambda m: f'"{int(m.group(1)) + 2}{m.group(2)}"', text)
    path = tmp_path_factory.mktemp("plan") / "plan34.toml"
    path.write_text(text)
    return load_plan(path)


def test_default_set_describes_the_plans_phones(plan: Plan) -> None:
    scenarios = select(plan, "default")
    assert len(scenarios) == 6
    for sc in scenarios:
        assert sc.description.startswith("3002 -> 4005, "), sc.description
        assert (sc.caller, sc.callee) == ("3002", "4005")
        assert not DEFAULT_PHONES.search(sc.description)


def test_ladder_columns_name_the_plans_phones_and_addresses(plan: Plan) -> None:
    cols = dict(columns(plan, "3002", ["4005"], server=True))
    assert cols["p3002"] == "3002\n10.99.0.12" and cols["p4005"] == "4005\n10.20.30.25"
    assert cols["r2-wan"] == "r2 WAN\n198.51.100.30" and cols["r1-lan"] == "r1 LAN\n10.20.30.1"
    assert cols["server"].endswith("192.0.2.50")
    labels = Labels(plan)
    assert labels("10.20.30.25") == "10.20.30.25 (4005)" and "r2" in labels("198.51.100.30")


def test_pictures_and_banner_name_the_plan(plan: Plan) -> None:
    for text in (diagram(plan), banner(plan, "python3", Path("/tmp/run"), {})):
        assert "3002" in text and "4005" in text and "10.20.30." in text
        assert not DEFAULT_PHONES.search(text), text
    assert "198.51.100.30" in diagram(plan) and "192.0.2.50" in diagram(plan)


def test_answer_key_asks_for_the_plans_phones(plan: Plan) -> None:
    text = labkey.PLAN.sub(lambda m: {"caller": "3002", "callee": "4005"}[m[1]],
                           labkey.TEMPLATE.read_text())
    mine = text.split("## 10.")[0]  # exercise 10 belongs to the security set
    assert "^RTP 3002 -> 4005" in mine and "^RTP 4005 -> 3002" in mine
    assert not DEFAULT_PHONES.search(mine), DEFAULT_PHONES.findall(mine)


def test_a_scenario_naming_a_missing_phone_names_its_file(plan: Plan) -> None:
    with pytest.raises(ConfigError, match=r"^101_qos_voice_clean\.toml: extension 1002 .*plan"):
        select(plan, "paper-qos")


@pytest.fixture(scope="module")
def own_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run (root, 2026-12-03) with the 3xxx/4xxx plan, stored without logs."""
    from natlab import pipeline

    rundir = tmp_path_factory.mktemp("own") / "run"
    shutil.copytree(ROOT / "tests" / "data" / "run-plan34", rundir)
    pipeline.report(rundir, pipeline.analyse(rundir))
    labkey.write(rundir)
    return rundir


def test_a_run_with_the_own_plan_names_its_phones_everywhere(own_run: Path) -> None:
    texts = {p.name if p.parent == own_run else p.relative_to(own_run).as_posix(): p.read_text()
             for p in [own_run / "report.md", own_run / "report.html", own_run / "summary.json",
                       own_run / "lab-answers.md", *own_run.glob("*/ladders/*.txt"),
                       *own_run.glob("*/ladders/*.svg")]}
    assert len(texts) == 8
    for name, text in texts.items():
        assert not DEFAULT_PHONES.search(text), (name, DEFAULT_PHONES.findall(text)[:3])
        assert "3002" in text and "4005" in text, name
    md = texts["report.md"]
    assert "4005 never got the ACK: the ACK left toward 10.20.30.10 (PBX1)" in md
    assert "| r2 | out | 3002 | 10.99.0.12:4000 | 198.51.100.30:4000 | 203.0.113.20:4000 |" in md


def test_the_answer_key_of_the_own_run(own_run: Path) -> None:
    key = (own_run / "lab-answers.md").read_text()
    for exercise in ("## 2.", "## 4."):
        body = key.split(exercise, 1)[1].split("\n## ", 1)[0]
        assert "(not in this run" not in body, exercise
    assert "ACK: r2-wan -> nowhere, 198.51.100.30:5060 > 10.20.30.10:5060" in key
    assert "STUN Binding response: mapped 198.51.100.30:4000: r2-lan -> p3002" in key
    assert "RTP 3002 -> 4005: sent 201, received 200" in key
