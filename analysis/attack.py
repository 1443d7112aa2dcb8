"""What an attacker obtained: pure functions of the attacker's capture (atk.pcap), the tool's
recorded run (agents/attacker.json: command, exit, stdout) and PBX1's log.

Obtained = anything beyond a refusal: a 200 OK to a REGISTER, a phone ringing (18x) or
answering (200, 486) for a stranger, a password guessed or not needed, extensions found, a
request the PBX routed (404 for an unknown user is an answer from behind the door), and during
a flood a legitimate call that lost quality. Refused = every final answer was 401, 403 or 407,
or no answer at all.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.evidence import where
from analysis.expect import FLOOD_MIN_MOS
from analysis.packets import SipMessage
from analysis.qos import Direction
from analysis.verdict import Subject, Verdict
from topology.plan import Plan

ATTACKS = ("scan", "enumerate", "crack", "hijack", "invite", "flood")
TOOLS = {"scan": "svmap", "enumerate": "svwar", "crack": "svcrack", "hijack": "sipsak",
         "invite": "sipsak", "flood": "sipsak"}
REFUSALS = (401, 403, 407)
PBX_LOG = "pbx1.log"
NO_AUTH = "[no password]"  # svcrack's table entry when the PBX asked for none
ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*(.*?)\s*\|\s*$", re.M)  # a sipvicious table row
HEADERS = ("SIP Device", "Extension")


@dataclass
class Outcome:
    attack: str
    insecure: bool
    variant: str  # insecure | protected | protected, weak password
    obtained: list[str] = field(default_factory=list)  # one sentence per thing obtained
    refused: list[str] = field(default_factory=list)  # sentences about what was refused
    found: list[str] = field(default_factory=list)  # the tool's own findings
    sent: int = 0  # requests the attacker sent (atk.pcap; ACKs, which get no answer, left out)
    answers: dict[str, int] = field(default_factory=dict)  # "403" -> count, to the attacker
    call: dict[str, Any] = field(default_factory=dict)  # flood: the legitimate call
    tool: dict[str, Any] = field(default_factory=dict)  # command, exit, seconds
    short: str = ""  # the table cell

    @property
    def name(self) -> str:
        return "obtained" if self.obtained else "refused"

    def checks(self) -> dict[str, bool]:
        out = {"attacker_obtained_nothing": not self.obtained,
               "every_request_refused": all(int(s) in REFUSALS for s in self.answers
                                            if int(s) >= 200)}
        if self.call:
            out.update(legit_call_works=self.call["works"], legit_mos_ok=self.call["mos_ok"],
                       legit_no_loss=self.call["loss_pct"] == 0.0)
        return out

    def verdict(self, subject: Subject, call: Verdict | None = None) -> Verdict:
        lead = (f"Obtained: {self.short}." if self.obtained else
                f"Refused: the attacker obtained nothing ({self.short}).")
        evidence = [*self.obtained, *self.refused]
        if call is not None:
            evidence.append(f"The legitimate call {call.verdict}: {call.explanation}")
        rx = call.rtp_received if call else {"caller": 0, "callee": 0}
        tx = call.rtp_sent if call else {"caller": 0, "callee": 0}
        return Verdict.of(subject, verdict=self.name, rtp_received=rx, rtp_sent=tx,
                          checks=self.checks(), explanation=" ".join([lead, *evidence]),
                          evidence=evidence, attack=self.as_dict(),
                          rtp_agent=call.rtp_agent if call else {})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.name}


def _table(tool: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the result table a sipvicious tool prints (header row left out)."""
    return [(a, b) for a, b in ROW.findall(str(tool.get("stdout", ""))) if a not in HEADERS]


def _answers(msgs: list[SipMessage], me: str) -> list[SipMessage]:
    return [m for m in msgs if not m.is_request and m.pkt.dst == me]


def _server(m: SipMessage) -> str:
    return m.header("server") or m.header("user-agent") or "no Server header"


def _to_user(m: SipMessage) -> str:
    hit = re.search(r"sip:([^@>;]+)@", m.header("to"))
    return hit[1] if hit else "?"


def _frame(m: SipMessage) -> str:
    return str(where("atk", m))


def _first(msgs: list[SipMessage], method: str, codes: tuple[int, ...]) -> SipMessage | None:
    return next((m for m in msgs if m.method == method and m.status in codes), None)


def _log_lines(log: str, me: str) -> list[str]:
    """PBX1's script lines about requests from the attacker, without the process prefix."""
    out = []
    for line in log.splitlines():
        if f" from {me}:" in line and "<script>: " in line and not line.split(
                "<script>: ", 1)[1].startswith("reply "):
            out.append(line.split("<script>: ", 1)[1].strip())
    return out


def _log_sentence(lines: list[str]) -> str | None:
    if not lines:
        return None
    kinds = Counter(line.split(" -> ", 1)[-1].split(" sip:")[0].split(" from ")[0]
                    for line in lines)
    top = ", ".join(f"'{k}' x{n}" for k, n in kinds.most_common(4))
    return f"{PBX_LOG} has {len(lines)} line(s) about the attacker's requests: {top}; first: " \
           f"'{lines[0]}'."


def _scan(o: Outcome, answers: list[SipMessage], tool: dict[str, Any], plan: Plan) -> None:
    rows = _table(tool)
    o.found = [f"{dev} ({ua})" for dev, ua in rows]
    seen = {f"{m.pkt.src}:{m.pkt.sport}" for m in answers}
    for m in answers:
        if (m.status or 0) >= 200 and m.status not in REFUSALS:
            o.short = f"answers from {', '.join(sorted(seen))}"
            o.obtained.append(f"{m.pkt.src}:{m.pkt.sport} answered '{m.first_line[8:]}' to "
                              f"{m.method}, so the request reached the PBX's routing "
                              f"({_server(m)}; {_frame(m)}).")
        elif m.status in REFUSALS:
            o.refused.append(f"{m.pkt.src}:{m.pkt.sport} refused with '{m.first_line[8:]}' "
                             f"({_frame(m)}); the refusal still names the server: "
                             f"{_server(m)}.")
    silent = [f"{lan.wan_ip}:{p}" for lan in plan.lans for p in (5060, 5080)
              if f"{lan.wan_ip}:{p}" not in seen]
    if silent:
        o.refused.append(f"No answer from {', '.join(silent)}: the routers drop unsolicited "
                         "packets to ports they do not forward.")
    o.refused.append(f"svmap listed {len(rows)} SIP device(s)"
                     + (f": {'; '.join(o.found)}." if rows else "."))


def _enumerate(o: Outcome, answers: list[SipMessage], tool: dict[str, Any]) -> None:
    rows = _table(tool)
    exts = sorted(e for e, _ in rows)
    o.found = [f"{e} ({auth})" for e, auth in rows]
    ok = [m for m in answers if m.method == "OPTIONS" and m.status == 200]
    if exts:
        o.short = f"extension(s) {', '.join(exts)} found"
    for ext in exts:
        hit = next((m for m in ok if _to_user(m) == ext), None)
        o.obtained.append(f"svwar found extension {ext} ({dict(rows)[ext]})" + (
            f": its phone answered OPTIONS with 200 OK ({_server(hit)}; {_frame(hit)})."
            if hit else "."))
    if not exts:
        o.refused.append(f"svwar found no extension (exit {tool.get('exit')}).")


def _crack(o: Outcome, answers: list[SipMessage], requests: list[SipMessage],
           tool: dict[str, Any]) -> None:
    table = dict(_table(tool))
    ok = _first(answers, "REGISTER", (200,))
    tries = sum(1 for m in requests if m.method == "REGISTER" and m.header("authorization"))
    where_ok = f" ({_frame(ok)})" if ok else ""
    cracked = [(e, p) for e, p in table.items() if p != NO_AUTH]
    if cracked:
        ext, word = cracked[0]
        o.found = [f"{ext}:{word}"]
        o.short = f"password of {ext} guessed"
        o.obtained.append(f"svcrack guessed the password of {ext} after {tries} "
                          f"digest attempt(s): '{word}', a word of its list; the PBX "
                          f"accepted it with 200 OK{where_ok}.")
    elif NO_AUTH in table.values() or ok is not None:
        o.found = ["[no password]"]
        o.short = "registered with no password at all"
        o.obtained.append("svcrack needed no password: the first REGISTER, without "
                          f"credentials, got 200 OK{where_ok} (svcrack: '{NO_AUTH}').")
    else:
        o.refused.append(f"svcrack found no password in {tries} digest attempt(s) "
                         f"(exit {tool.get('exit')}).")


def _hijack(o: Outcome, answers: list[SipMessage]) -> None:
    ok = _first(answers, "REGISTER", (200,))
    if ok is not None:
        o.short = f"200 OK to REGISTER {_to_user(ok)}"
        contacts = ", ".join(ok.headers.get("contact", [])) or "none listed"
        o.obtained.append(f"The PBX accepted the attacker's REGISTER for {_to_user(ok)}: 200 OK "
                          f"({_frame(ok)}); bindings now: {contacts}. Calls to "
                          f"{_to_user(ok)} can now ring the attacker.")


def _invite(o: Outcome, answers: list[SipMessage]) -> None:
    ring = _first(answers, "INVITE", (180, 183))
    ans = _first(answers, "INVITE", (200, 486, 480, 603))
    first = ring or ans
    if first is not None:
        o.short = f"{first.status} {first.first_line[12:]} from 2005's phone"
    if ring is not None:
        o.obtained.append(f"{_to_user(ring)}'s phone rang for the stranger: "
                          f"'{ring.first_line[8:]}' ({_frame(ring)}).")
    if ans is not None:
        what = "answered it" if ans.status == 200 else "ended it itself with"
        o.obtained.append(f"The phone {what} '{ans.first_line[8:]}' ({_frame(ans)}): the "
                          "INVITE reached the phone, not just the PBX.")
    n404 = _first(answers, "INVITE", (404,))
    if n404 is not None and not o.obtained:
        o.short = "404 from the PBX's routing"
        o.obtained.append(f"The PBX routed the stranger's INVITE: '{n404.first_line[8:]}' "
                          f"({_frame(n404)}).")


def _flood(o: Outcome, answers: list[SipMessage], call: Verdict | None,
           qos: list[Direction], died: dict[str, str]) -> None:
    beyond = [m for m in answers if m.status not in REFUSALS and (m.status or 0) != 100]
    by = Counter(f"{m.status} to {m.method}" for m in beyond)
    if beyond:
        detail = ", ".join(f"{k} x{n}" for k, n in by.most_common())
        o.short = f"{len(beyond)} answers from behind the door"
        o.obtained.append(f"The flood reached past the door: {detail} (first "
                          f"{_frame(beyond[0])}: '{beyond[0].first_line[8:]}', "
                          f"{_server(beyond[0])}).")
    for ext, last in sorted(died.items()):
        o.obtained.append(f"{ext}'s phone agent died during the flood: it wrote no report, "
                          f"its log ends with '{last}'.")
        o.short = f"{ext}'s phone crashed"
    audio = [d for d in qos if d.media == "audio"]
    mos = min((d.mos_g107 for d in audio if d.mos_g107 is not None), default=None)
    loss = max((d.loss_pct for d in audio), default=100.0)
    works = call is not None and call.verdict == "works"
    o.call = {"works": works, "mos_g107": None if mos is None else round(mos, 3),
              "loss_pct": round(loss, 3), "mos_ok": mos is not None and mos >= FLOOD_MIN_MOS,
              "directions": [{"from": d.sender, "to": d.receiver, "mos_g107": d.mos_g107,
                              "loss_pct": d.loss_pct, "packets": d.packets} for d in audio]}
    quality = (f"G.107 MOS {mos:.2f} (worst direction), loss {loss:.2f} %"
               if mos is not None else "no audio stream measured")
    if not works or not o.call["mos_ok"] or loss > 0:
        lost = "call failed" if not works else f"call quality lost (MOS {mos or 0:.2f})"
        o.short = f"{o.short}; {lost}" if o.short else lost
        o.obtained.append(f"The legitimate call lost quality during the flood: "
                          f"{'works' if works else 'fails'}, {quality} (at least "
                          f"{FLOOD_MIN_MOS} and 0 % loss expected).")
    else:
        o.refused.append(f"The legitimate call 1002 -> 2005 was unharmed: it works, {quality}.")


def judge_attack(plan: Plan, attack: str, insecure: bool, tool: dict[str, Any],
                 msgs: list[SipMessage], pbx_log: str, call: Verdict | None = None,
                 qos: list[Direction] | None = None,
                 died: dict[str, str] | None = None) -> Outcome:
    """The outcome of one attack from the attacker's SIP messages (atk.pcap), the tool's
    record and PBX1's log; a flood also judges the legitimate call's verdict and QoS, and
    `died` names the phones whose agent left no report (extension -> its log's last line)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r} (known: {', '.join(ATTACKS)})")
    me = str(tool.get("attacker") or plan.servers.attacker)
    variant = str(tool.get("variant") or ("insecure" if insecure else "protected"))
    o = Outcome(attack, insecure, variant,
                tool={k: tool.get(k) for k in ("command", "exit", "seconds", "target_port")})
    requests = [m for m in msgs if m.is_request and m.pkt.src == me and m.method != "ACK"]
    answers = _answers(msgs, me)
    o.sent = len(requests)
    o.answers = dict(sorted(Counter(str(m.status) for m in answers).items()))
    if not tool:
        o.refused.append("The tool left no record (agents/attacker.json): it did not run.")
    if attack == "scan":
        _scan(o, answers, tool, plan)
    elif attack == "enumerate":
        _enumerate(o, answers, tool)
    elif attack == "crack":
        _crack(o, answers, requests, tool)
    elif attack == "hijack":
        _hijack(o, answers)
    elif attack == "invite":
        _invite(o, answers)
    else:
        _flood(o, answers, call, qos or [], died or {})
    refusals = [m for m in answers if m.status in REFUSALS]
    finals = sum(1 for m in answers if (m.status or 0) >= 200)
    unanswered = max(0, o.sent - finals)
    tally = ", ".join(f"{s} x{n}" for s, n in o.answers.items()) or "no answer"
    o.refused.append(f"{TOOLS[attack]} sent {o.sent} request(s) from {me} (atk.pcap); answers: "
                     f"{tally}; {unanswered} got no final answer"
                     + (f"; first refusal '{refusals[0].first_line[8:]}' ({_frame(refusals[0])})"
                        if refusals else "") + ".")
    log = _log_sentence(_log_lines(pbx_log, me))
    if log:
        o.refused.append(log)
    o.short = _short(o, refusals, unanswered)
    return o


def _short(o: Outcome, refusals: list[SipMessage], unanswered: int) -> str:
    if o.obtained:
        return o.short or o.obtained[0].split(" (")[0]
    codes = Counter(m.status for m in refusals if m.status is not None)
    parts = [f"{c} x{n}" for c, n in sorted(codes.items())]
    if unanswered:
        parts.append(f"{unanswered} unanswered")
    return f"{o.sent} request(s): {', '.join(parts) or 'no answer'}"
