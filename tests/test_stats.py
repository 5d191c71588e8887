"""Student t quantiles and Welch intervals against printed tables and hand-computed examples."""

from __future__ import annotations

import math

import pytest

from dynconv_bench.reporting.stats import betainc, t_cdf, t_quantile, welch_interval


@pytest.mark.parametrize("df, t975", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_t_quantile_matches_the_printed_table(df: int, t975: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(t975, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-t975, abs=1e-4)
    assert t_cdf(t975, df) == pytest.approx(0.975, abs=1e-5)


def test_t_distribution_closed_forms() -> None:
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi; df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-3.0, -0.4, 0.0, 0.7, 5.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - 4(0.6^3) + 3(0.6^4) by hand
    with pytest.raises(ValueError, match="p must be in"):
        t_quantile(1.0, 3)


def test_welch_interval_hand_computed() -> None:
    # a = 10, 11, 12; b = 1, 2, 3: diff 9, var 1 each, se^2 = 1/3 + 1/3, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4
    d = welch_interval([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    half = 2.7764451 * math.sqrt(2 / 3)
    assert d.diff == 9.0 and d.df == pytest.approx(4.0)
    assert (d.low, d.high) == (pytest.approx(9 - half, abs=1e-6), pytest.approx(9 + half, abs=1e-6))
    assert d.significant
    # unequal variances: a = 4, 6, 8 (var 4), b = 1, 2, 3 (var 1): df = (5/3)^2 / ((4/3)^2/2 + (1/3)^2/2) = 50/17
    d = welch_interval([4.0, 6.0, 8.0], [1.0, 2.0, 3.0])
    assert d.df == pytest.approx(50 / 17)
    assert d.low < 0 < d.high and not d.significant


def test_welch_interval_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    a, b = [97.2, 95.8, 98.1, 96.4], [93.0, 96.9, 91.5]
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = welch_interval(a, b)
    assert (d.low, d.high) == (pytest.approx(ref.low, abs=1e-9), pytest.approx(ref.high, abs=1e-9))


def test_no_interval_without_spread_or_replicates() -> None:
    one = welch_interval([95.0], [93.0, 94.0])
    assert one.diff == pytest.approx(1.5) and one.low is None and not one.significant
    flat = welch_interval([2.0, 2.0], [1.0, 1.0])
    assert flat.diff == 1.0 and flat.low is None and flat.df is None
