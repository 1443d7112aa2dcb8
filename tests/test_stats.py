"""The bounds in stats.py against exact sums and simulation (no root)."""
from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from stats import (
    binomial_interval,
    folded_normal_mean,
    folded_normal_var,
    mean_jitter,
    mean_jitter_weights,
    z_value,
)

from analysis.rtpstats import analyse


def _binomial_cdf(n: int, p: float, k: int) -> float:
    """Exact in rationals, then rounded: independent of stats.py's log-space sum."""
    q = Fraction(p).limit_denominator(10_000)
    return float(sum(math.comb(n, i) * q ** i * (1 - q) ** (n - i) for i in range(k + 1)))


@pytest.mark.parametrize("n, p", [(10, 0.5), (300, 0.1), (2000, 0.1), (598, 0.1), (50, 0.02)])
def test_binomial_interval_is_the_tightest_equal_tailed_one(n: int, p: float) -> None:
    lo, hi = binomial_interval(n, p)
    tail = 0.0005
    below = _binomial_cdf(n, p, lo - 1) if lo > 0 else 0.0
    above = 1 - _binomial_cdf(n, p, hi)
    assert below <= tail and above <= tail + 1e-12
    assert _binomial_cdf(n, p, lo) > tail  # one more excluded would break the tail
    assert 1 - _binomial_cdf(n, p, hi - 1) > tail


def test_binomial_interval_edges() -> None:
    assert binomial_interval(100, 0.0) == (0, 0) and binomial_interval(100, 1.0) == (100, 100)
    lo, hi = binomial_interval(2000, 0.1)
    assert lo < 200 < hi and hi - lo < 2 * 3.3 * math.sqrt(2000 * 0.09) + 2
    with pytest.raises(ValueError):
        binomial_interval(10, 1.5)


def test_z_value() -> None:
    assert z_value(0.999) == pytest.approx(3.2905, abs=1e-4)
    assert z_value(0.95) == pytest.approx(1.96, abs=1e-3)


def test_folded_normal_against_sampling() -> None:
    rng = np.random.default_rng(3)
    for mu, s in ((0.0, 2.0), (1.5, 2.0), (-4.0, 1.0)):
        x = np.abs(mu + rng.normal(0, s, 400_000))
        assert folded_normal_mean(mu, s) == pytest.approx(x.mean(), abs=0.01)
        assert folded_normal_var(mu, s) == pytest.approx(x.var(), rel=0.02)
    assert folded_normal_mean(0, 1) == pytest.approx(math.sqrt(2 / math.pi))
    assert folded_normal_mean(3, 0) == 3


def test_weights_reproduce_the_analysed_mean_jitter() -> None:
    """The mean jitter of analysis.rtpstats (Wireshark's) is exactly sum w_k |D_k|."""
    rng = random.Random(5)
    n = 120
    stamps = [160 * i for i in range(n)]  # PCMU, 20 ms
    arrivals = [20.0 * i + rng.gauss(40, 2) for i in range(n)]
    st = analyse(arrivals, list(range(n)), stamps, [0] * n, [False] * n)
    d = [abs((arrivals[k] - arrivals[k - 1]) - 20.0) for k in range(1, n)]
    w = mean_jitter_weights(n)
    assert sum(w) == pytest.approx(1 - 15 * (1 - (15 / 16) ** (n - 1)) / (n - 1))
    assert sum(wk * dk for wk, dk in zip(w, d, strict=True)) == pytest.approx(st.mean_jitter)


@pytest.mark.parametrize("sigma, n, sender_sd", [(2.0, 300, 0.0), (2.0, 300, 1.0),
                                                 (3.0, 600, 0.0)])
def test_mean_jitter_against_simulation(sigma: float, n: int, sender_sd: float) -> None:
    """Simulated streams: delay N(40, sigma^2) per packet, FIFO, 20 ms spacing."""
    rng = np.random.default_rng(11)
    reps = 4000
    send = 20.0 * np.arange(n) + rng.normal(0, sender_sd, n)  # one sender, many network draws
    sender_terms = np.diff(send) - 20.0
    delay = rng.normal(40.0, sigma, (reps, n))
    arrive = np.maximum.accumulate(send + delay, axis=1)  # the shaper's FIFO clamp
    d = np.abs(np.diff(arrive, axis=1) - 20.0)
    sims = d @ np.array(mean_jitter_weights(n))
    exp = mean_jitter(sigma, n, 20.0, sender_terms.tolist())
    assert exp.mean == pytest.approx(sims.mean(), abs=4 * sims.std() / math.sqrt(reps))
    assert 0.95 * sims.std() <= exp.sd <= 1.4 * sims.std()  # the Gebelein bound is safe
    inside = np.mean((sims >= exp.lo) & (sims <= exp.hi))
    assert inside >= 0.998
    if sender_sd == 0:
        steady = 2 * sigma / math.sqrt(math.pi)  # E|D| for a perfect sender
        assert exp.mean == pytest.approx(steady * sum(mean_jitter_weights(n)))


def test_mean_jitter_refuses_where_the_fifo_clamp_matters() -> None:
    """sigma 10 ms at 20 ms spacing: FIFO holds many packets back and the formula is wrong."""
    with pytest.raises(ValueError, match="FIFO"):
        mean_jitter(10.0, 600, 20.0)
