"""Bounds the tests assert against, derived from what was configured and the sample size.

Loss: a Bernoulli drop with probability p on n packets loses Binomial(n, p) of them;
`binomial_interval` is the exact equal-tailed interval of that count.

Jitter: the shaper delays packet k by d + e_k, e_k ~ N(0, sigma^2) independent (FIFO order is
kept: a packet is released no earlier than the one before it, which changes nothing while the
spacing is many times the sd of e_k - e_{k-1}, sqrt(2) sigma, and lowers the jitter otherwise;
delays are clamped at 0, which changes nothing while d is many sigma). RFC 3550's D_k for
consecutive packets k-1, k is then
    D_k = A_k + (e_k - e_{k-1}),   e_k - e_{k-1} ~ N(0, 2 sigma^2),
with A_k what the sender adds (its departure k minus k-1, minus the RTP timestamp step; 0 for
a perfect sender). E|D_k| is the folded-normal mean; with A_k = 0 it is 2 sigma / sqrt(pi).
J_k = J_{k-1} + (|D_k| - J_{k-1}) / 16 from J_0 = 0, and Wireshark's "mean jitter" is the plain
mean of J_1..J_{n-1} (see analysis/rtpstats.py), so it is linear in the |D_k|:
    mean jitter = sum_k w_k |D_k|,   w_k = (1 - (15/16)^(n-k)) / (n - 1),   k = 1..n-1.
|D_k| and |D_j| are independent for |k - j| > 1; adjacent ones are functions of a bivariate
normal pair with correlation -1/2, so their correlation is at most 1/2 in size (Gebelein's
maximal correlation), exactly (sqrt(3)/2 + pi/12 - 1) / (pi/2 - 1) = 0.224 when A = 0. The
variance bound uses 1/2; the interval is the normal one on that variance (a sum of hundreds
of 1-dependent terms).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

LEVEL = 0.999  # two-sided level of every interval the tests assert
FIFO_SIGMAS = 4.0  # P(a packet is held back by FIFO) < 3e-5 beyond this


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard normal quantile: 3.29 for 99.9 %."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def binomial_interval(n: int, p: float, level: float = LEVEL) -> tuple[int, int]:
    """Smallest lo and largest hi with P(X < lo) <= a and P(X > hi) <= a, a = (1 - level) / 2,
    for X ~ Binomial(n, p): lo <= X <= hi with probability at least `level`."""
    if n < 0 or not 0 <= p <= 1:
        raise ValueError(f"binomial_interval needs n >= 0 and 0 <= p <= 1, got {n}, {p}")
    if p in (0.0, 1.0):
        k = round(n * p)
        return k, k
    tail = (1 - level) / 2

    def pmf(k: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                        + k * math.log(p) + (n - k) * math.log1p(-p))

    probs = [pmf(k) for k in range(n + 1)]
    lo, below = 0, 0.0
    while lo < n and below + probs[lo] <= tail:
        below += probs[lo]
        lo += 1
    hi, above = n, 0.0
    while hi > 0 and above + probs[hi] <= tail:
        above += probs[hi]
        hi -= 1
    return lo, hi


def folded_normal_mean(mu: float, s: float) -> float:
    """E|mu + N(0, s^2)|."""
    if s == 0:
        return abs(mu)
    return (s * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s))
            + mu * math.erf(mu / (s * math.sqrt(2))))


def folded_normal_var(mu: float, s: float) -> float:
    """Var|mu + N(0, s^2)|."""
    return max(0.0, mu * mu + s * s - folded_normal_mean(mu, s) ** 2)


def mean_jitter_weights(n: int) -> list[float]:
    """w_k of |D_k|, k = 1..n-1, in Wireshark's mean jitter over n packets."""
    if n < 2:
        raise ValueError(f"mean jitter needs at least 2 packets, got {n}")
    return [(1 - (15 / 16) ** (n - k)) / (n - 1) for k in range(1, n)]


@dataclass(frozen=True)
class Expected:
    """An expected value with its standard deviation and a two-sided interval."""

    mean: float
    sd: float
    lo: float
    hi: float

    def holds(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def mean_jitter(sigma_ms: float, n: int, spacing_ms: float,
                sender_ms: Sequence[float] | None = None, level: float = LEVEL) -> Expected:
    """Wireshark's mean RFC 3550 jitter (ms) over n packets sent spacing_ms apart when each
    packet's delay gets N(0, sigma_ms^2) added; sender_ms: the n-1 sender terms A_k (ms),
    None = a perfect sender. ValueError where the shaper's FIFO order would hold packets back
    (spacing under FIFO_SIGMAS standard deviations of e_k - e_k-1): there this is wrong."""
    if spacing_ms < FIFO_SIGMAS * math.sqrt(2) * sigma_ms:
        raise ValueError(f"jitter {sigma_ms} ms at {spacing_ms} ms spacing: the FIFO clamp "
                         "is not negligible, no closed form")
    weights = mean_jitter_weights(n)
    terms = [0.0] * (n - 1) if sender_ms is None else list(sender_ms)
    if len(terms) != n - 1:
        raise ValueError(f"need {n - 1} sender terms for {n} packets, got {len(terms)}")
    s = math.sqrt(2) * sigma_ms
    mean = sum(w * folded_normal_mean(a, s) for w, a in zip(weights, terms, strict=True))
    var_k = [folded_normal_var(a, s) for a in terms]
    var = sum(w * w * v for w, v in zip(weights, var_k, strict=True))
    var += sum(weights[k] * weights[k + 1] * math.sqrt(var_k[k] * var_k[k + 1])
               for k in range(n - 2))  # 2 * (1/2) * sd_k * sd_k+1: Gebelein's bound
    sd = math.sqrt(var)
    z = z_value(level)
    return Expected(mean, sd, mean - z * sd, mean + z * sd)


def mean_of_normal(mu: float, sigma: float, n: int, level: float = LEVEL) -> Expected:
    """The sample mean of n independent N(mu, sigma^2) draws."""
    sd = sigma / math.sqrt(n)
    z = z_value(level)
    return Expected(mu, sd, mu - z * sd, mu + z * sd)
