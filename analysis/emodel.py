"""The E-model of ITU-T G.107 (06/2015), its G.113 codec values, and the paper's short formula.

R = Ro - Is - Id - Ie,eff + A (G.107 clause 7), every input and default from G.107 Table 1,
including the two delay-sensitivity parameters sT and mT that the 2015 edition added (their
defaults, which carrier/enterprise telephony must use, give the Idd of earlier editions).
With all defaults R = 93.2062, MOS 4.409. R -> MOS follows G.107 Annex B.

Measured figures map onto the inputs the usual way (`from_measurement`): one mouth-to-ear delay
T = Ta = Tr/2, and Ppl = network loss + packets a fixed jitter buffer discards as late.

`paper_formula` is NOT G.107: it is the simplified formula of the paper this testbed follows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

EDITION = "ITU-T G.107 (06/2015)"
CODEC_SOURCE = "ITU-T G.113 (11/2007) Appendix I: Ie from Table I.1, Bpl from Table I.3"


@dataclass(frozen=True)
class EModelInput:
    """G.107 Table 1 parameters and their defaults (units as in the Recommendation)."""

    SLR: float = 8.0  # send loudness rating, dB
    RLR: float = 2.0  # receive loudness rating, dB
    STMR: float = 15.0  # sidetone masking rating, dB
    LSTR: float = 18.0  # listener sidetone rating, dB (= STMR + Dr)
    Ds: float = 3.0  # D-value of the telephone, send side
    Dr: float = 3.0  # D-value, receive side (enters the model only through LSTR)
    TELR: float = 65.0  # talker echo loudness rating, dB
    WEPL: float = 110.0  # weighted echo path loss, dB
    T: float = 0.0  # mean one-way delay of the echo path, ms
    Ta: float = 0.0  # absolute (mouth-to-ear) one-way delay, ms
    Tr: float = 0.0  # round-trip delay in a 4-wire loop, ms
    Ps: float = 35.0  # room noise at the send side, dB(A)
    Pr: float = 35.0  # room noise at the receive side, dB(A)
    Nc: float = -70.0  # circuit noise referred to the 0 dBr point, dBm0p
    Nfor: float = -64.0  # noise floor at the receive side, dBmp
    Qdu: float = 1.0  # number of quantizing distortion units
    Ie: float = 0.0  # equipment impairment factor (codec)
    Bpl: float = 4.3  # packet-loss robustness factor (G.711 without PLC)
    Ppl: float = 0.0  # packet-loss probability, %
    BurstR: float = 1.0  # burst ratio (1 = random loss)
    A: float = 0.0  # advantage factor
    sT: float = 1.0  # delay sensitivity (G.107 06/2015; 1 = default class)
    mT: float = 100.0  # minimum perceivable delay, ms (G.107 06/2015)

    def check(self) -> None:
        """Reject values for which the formulas are meaningless (not G.107's planning ranges)."""
        for name in ("T", "Ta", "Tr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 ms, got {getattr(self, name)}")
        if not 0 <= self.Ppl <= 100:
            raise ValueError(f"Ppl must be a percentage 0..100, got {self.Ppl}")
        for name in ("Bpl", "BurstR", "Qdu", "sT", "mT"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class EModelResult:
    R: float
    MOS: float
    Ro: float  # basic signal-to-noise ratio
    Is: float  # simultaneous impairments = Iolr + Ist + Iq
    Id: float  # delay impairments = Idte + Idle + Idd
    Ie_eff: float  # effective equipment impairment (codec + packet loss)
    A: float
    No: float  # total noise power, dBm0p
    Iolr: float  # too-low overall loudness
    Ist: float  # non-optimum sidetone
    Iq: float  # quantizing distortion
    Idte: float  # talker echo
    Idle: float  # listener echo
    Idd: float  # absolute delay


def _db_sum(*levels: float) -> float:
    return 10 * math.log10(sum(math.pow(10, v / 10) for v in levels))


def _root(x: float, n: float) -> float:
    """(1 + x^n)^(1/n), the soft-threshold shape G.107 uses throughout."""
    return math.pow(1 + math.pow(x, n), 1 / n)


def mos_from_r(r: float) -> float:
    """G.107 Annex B. Note the formula dips just below 1 for 0 < R < 6.5; kept as specified."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def ie_eff(ie: float, ppl: float, bpl: float, burst_r: float = 1.0) -> float:
    """G.107 7.5: Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl/BurstR + Bpl), Ppl in %."""
    return ie + (95 - ie) * ppl / (ppl / burst_r + bpl)


def idd(ta: float, s_t: float = 1.0, m_t: float = 100.0) -> float:
    """Impairment of absolute delay Ta (ms): 0 up to mT, then the G.107 knee curve."""
    if ta <= m_t:
        return 0.0
    x = math.log10(ta / m_t) / math.log10(2)
    n = 6 * s_t
    return 25 * (_root(x, n) - 3 * _root(x / 3, n) + 2)


def compute(p: EModelInput | None = None) -> EModelResult:
    """The full G.107 computation; every intermediate term is returned."""
    p = p or EModelInput()
    p.check()
    olr = p.SLR + p.RLR
    # 7.2 Basic signal-to-noise ratio: four noise sources added in power.
    nos = p.Ps - p.SLR - p.Ds - 100 + 0.004 * (p.Ps - olr - p.Ds - 14) ** 2
    pre = p.Pr + 10 * math.log10(1 + math.pow(10, (10 - p.LSTR) / 10))
    nor = p.RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = p.Nfor + p.RLR
    no = _db_sum(p.Nc, nos, nor, nfo)
    ro = 15 - 1.5 * (p.SLR + no)
    # 7.3 Simultaneous impairments.
    xolr = olr + 0.2 * (64 + no - p.RLR)
    iolr = 20 * (_root(xolr / 8, 8) - xolr / 8)
    stmro = -10 * math.log10(
        math.pow(10, -p.STMR / 10) + math.exp(-p.T / 4) * math.pow(10, -p.TELR / 10))
    ist = (12 * _root((stmro - 13) / 6, 8) - 28 * _root((stmro + 1) / 19.4, 35)
           - 13 * _root((stmro - 3) / 33, 13) + 29)
    q = 37 - 15 * math.log10(p.Qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * math.log10(1 + math.pow(10, y) + math.pow(10, z))
    is_ = iolr + ist + iq
    # 7.4 Delay impairments: talker echo, listener echo, absolute delay.
    terv = (p.TELR - 40 * math.log10((1 + p.T / 10) / (1 + p.T / 150))
            + 6 * math.exp(-0.3 * p.T * p.T))
    if p.STMR < 9:
        terv += ist / 2  # TERVs: low sidetone masks less of the echo
    roe = -1.5 * (no - p.RLR)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-p.T))
    if p.STMR > 20:
        idte = math.sqrt(idte * idte + ist * ist)  # Idtes
    if p.T < 1:
        idte = 0.0  # echo this early is heard as sidetone, already in Ist
    rle = 10.5 * (p.WEPL + 7) * math.pow(p.Tr + 1, -0.25)
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    idd_ = idd(p.Ta, p.sT, p.mT)
    id_ = idte + idle + idd_
    ie_e = ie_eff(p.Ie, p.Ppl, p.Bpl, p.BurstR)
    r = ro - is_ - id_ - ie_e + p.A
    return EModelResult(R=r, MOS=mos_from_r(r), Ro=ro, Is=is_, Id=id_, Ie_eff=ie_e, A=p.A,
                        No=no, Iolr=iolr, Ist=ist, Iq=iq, Idte=idte, Idle=idle, Idd=idd_)


@dataclass(frozen=True)
class Codec:
    name: str
    description: str
    Ie: float  # G.113 Table I.1
    Bpl: float  # G.113 Table I.3, measured with packets of packet_ms
    packet_ms: float  # packet size of the G.113 Bpl condition
    lookahead_ms: float  # algorithmic look-ahead of the coder

    @property
    def coding_delay_ms(self) -> float:
        """Send-side delay the codec adds: one packet of speech plus look-ahead."""
        return self.packet_ms + self.lookahead_ms


# Only entries with values in G.113 (11/2007) Appendix I. iLBC, AMR and wideband codecs are left
# out: their values could not be checked here (wideband ones belong to G.107.1 anyway).
CODECS: dict[str, Codec] = {c.name: c for c in (
    Codec("g711", "G.711 64 kbit/s, PLC of G.711 Appendix I, 10 ms packets", 0.0, 25.1, 10, 0),
    Codec("g711-noplc", "G.711 64 kbit/s, no PLC, 10 ms packets", 0.0, 4.3, 10, 0),
    Codec("g729a", "G.729A+VAD 8 kbit/s, 2 frames (20 ms) per packet", 11.0, 19.0, 20, 5),
    Codec("g723.1", "G.723.1+VAD 6.3 kbit/s, 30 ms packets", 15.0, 16.1, 30, 7.5),
    Codec("gsm-efr", "GSM-EFR 12.2 kbit/s, 20 ms packets", 5.0, 10.0, 20, 0),
)}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None


def jitter_buffer_loss(delays_ms: list[float], buffer_ms: float) -> float:
    """% of packets a fixed jitter buffer discards: one-way delay > min delay + buffer.

    The buffer plays the first packet buffer_ms after it arrives, so any packet later than
    that relative to the fastest one misses its playout time (G.1020 7.2, fixed buffer).
    """
    if not delays_ms:
        raise ValueError("jitter_buffer_loss needs at least one delay")
    if buffer_ms < 0:
        raise ValueError(f"jitter buffer must be >= 0 ms, got {buffer_ms}")
    deadline = min(delays_ms) + buffer_ms
    return 100.0 * sum(d > deadline for d in delays_ms) / len(delays_ms)


def burst_ratio(lost_flags: list[bool]) -> float:
    """BurstR of G.107 7.5 / G.113: mean observed burst length / mean burst length under random
    loss of the same rate, i.e. mean_burst * (1 - loss). For a 2-state Markov chain (p: found ->
    lost, q: lost -> found) this equals 1/(p + q). No loss at all gives 1 (random).
    """
    n = len(lost_flags)
    if n == 0:
        raise ValueError("burst_ratio needs at least one packet")
    lost = sum(lost_flags)
    if lost == 0:
        return 1.0
    if lost == n:
        raise ValueError("burst ratio is undefined when every packet is lost")
    bursts = sum(1 for i, f in enumerate(lost_flags) if f and (i == 0 or not lost_flags[i - 1]))
    return (lost / bursts) * (1 - lost / n)


def from_measurement(codec: str, one_way_delay_ms: float, loss_pct: float,
                     burst_ratio: float = 1.0, jitter_buffer_ms: float | None = None,
                     late_loss_pct: float = 0.0,
                     coding_delay_ms: float | None = None) -> EModelInput:
    """E-model inputs from measured network figures, G.107 defaults for everything else.

    Mouth-to-ear delay = network one-way delay + codec delay (packet + look-ahead, or
    coding_delay_ms if given) + jitter buffer; it is used as T = Ta and Tr = 2 T.
    late_loss_pct is the share of *arrived* packets the buffer discarded (what
    jitter_buffer_loss returns), so Ppl = loss + (100 - loss) * late / 100.
    """
    c = get_codec(codec)
    for label, v in (("one-way delay", one_way_delay_ms), ("jitter buffer", jitter_buffer_ms),
                     ("coding delay", coding_delay_ms)):
        if v is not None and v < 0:
            raise ValueError(f"{label} must be >= 0 ms, got {v}")
    for label, v in (("loss", loss_pct), ("late loss", late_loss_pct)):
        if not 0 <= v <= 100:
            raise ValueError(f"{label} must be a percentage 0..100, got {v}")
    if burst_ratio <= 0:
        raise ValueError(f"burst ratio must be > 0, got {burst_ratio}")
    coding = c.coding_delay_ms if coding_delay_ms is None else coding_delay_ms
    t = one_way_delay_ms + coding + (jitter_buffer_ms or 0.0)
    ppl = loss_pct + (100 - loss_pct) * late_loss_pct / 100
    return replace(EModelInput(), T=t, Ta=t, Tr=2 * t, Ie=c.Ie, Bpl=c.Bpl, Ppl=ppl,
                   BurstR=burst_ratio)


# --- The paper's simplified formula (not G.107) ---------------------------------------------
PAPER_RO = 94.3
# The paper used k = 30 and k = 25.21 (facts.md gives both without saying which stream each
# belongs to; 30 is taken as the voice value). With no loss (e = 0) k has no effect, so the
# paper's printed figures (voice 93.83 / 4.4, video 83.83 / 4.1) do not depend on it.
PAPER_K = 30.0


@dataclass(frozen=True)
class PaperResult:
    R: float  # exact
    MOS: float  # exact, G.107 Annex B mapping
    Id: float
    Ie_eff: float
    R_printed: float  # as the paper prints it
    MOS_printed: float  # as the paper prints it, 1 decimal


def _trunc(x: float, digits: int) -> float:
    f = 10**digits
    return math.floor(x * f + 1e-9) / f


def paper_formula(delay_ms: float, loss_fraction: float = 0.0, ie: float = 0.0,
                  k: float = PAPER_K) -> PaperResult:
    """The paper's R = 94.3 - Id - Ie_eff, Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3),
    Ie_eff = Ie + k ln(1 + 15 e), d one-way delay in ms, e loss as a fraction.

    The paper's printed numbers are reproduced when its terms are truncated, not rounded:
    voice d = 19.97 gives Id = 0.479 (printed R 93.83 = 94.3 - 0.47; exact 93.8207) and
    video R 83.83 maps to MOS 4.16, which the paper prints as 4.1.
    """
    if delay_ms < 0:
        raise ValueError(f"delay must be >= 0 ms, got {delay_ms}")
    if not 0 <= loss_fraction <= 1:
        raise ValueError(f"loss must be a fraction 0..1, got {loss_fraction}")
    id_ = 0.024 * delay_ms + 0.11 * max(delay_ms - 177.3, 0.0)
    ie_e = ie + k * math.log(1 + 15 * loss_fraction)
    r = PAPER_RO - id_ - ie_e
    r_printed = round(PAPER_RO - _trunc(id_, 2) - _trunc(ie_e, 2), 2)
    return PaperResult(R=r, MOS=mos_from_r(r), Id=id_, Ie_eff=ie_e, R_printed=r_printed,
                       MOS_printed=_trunc(mos_from_r(r_printed), 1))
