"""cosim.study.stats: Wilson, exact McNemar, Newcombe's paired interval, stop at chance, packed outcomes."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.study import stats

pairs = st.integers(1, 300).flatmap(
    lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n)))


def test_wilson_is_the_reports():
    from cosim.study import report
    assert report.wilson is stats.wilson


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (1, 0), (3, 12), (12, 3), (7, 7), (0, 25), (40, 61), (500, 560)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    from scipy.stats import binomtest
    want = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert stats.mcnemar_exact_counts(b, c) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_mcnemar_known_value_and_vectors():
    # 0 vs 6 discordant pairs: p = 2 * 0.5**6
    assert stats.mcnemar_exact_counts(0, 6) == pytest.approx(2 / 64)
    a = np.array([1, 1, 0, 0, 1, 1, 1, 1])
    b = np.array([1, 0, 0, 1, 0, 0, 0, 1])
    assert stats.discordant(a, b) == (2, 4, 1, 1)
    assert stats.mcnemar_exact(a, b) == pytest.approx(stats.mcnemar_exact_counts(4, 1))
    with pytest.raises(ValueError):
        stats.mcnemar_exact([1, 0], [1])
    with pytest.raises(ValueError):
        stats.mcnemar_exact([1, 2], [1, 0])


@settings(max_examples=150, deadline=None)
@given(pairs)
def test_paired_properties(ab):
    a, b = (np.array(v) for v in ab)
    p_ab, p_ba = stats.mcnemar_exact(a, b), stats.mcnemar_exact(b, a)
    assert p_ab == p_ba and 0.0 < p_ab <= 1.0
    d, lo, hi = stats.paired_difference(a, b)
    assert d == pytest.approx(a.mean() - b.mean())
    assert -1.0 <= lo <= d <= hi <= 1.0
    d2, lo2, hi2 = stats.paired_difference(b, a)            # antisymmetric
    assert d2 == pytest.approx(-d) and lo2 == pytest.approx(-hi) and hi2 == pytest.approx(-lo)
    c = stats.compare(a, b)
    assert c.verdict == {"better": "worse", "worse": "better"}.get(stats.compare(b, a).verdict,
                                                                   "no significant difference")
    same = stats.compare(a, a)
    assert same.diff == 0.0 and same.p == 1.0 and same.verdict == "no significant difference"
    assert same.low <= 0.0 <= same.high


def test_newcombe_agrees_with_wald_on_large_samples():
    # for large n away from the bounds the score interval approaches the Wald interval of paired proportions
    a, b, c, d = 8000, 300, 200, 1500
    n = a + b + c + d
    diff, lo, hi = stats.newcombe_paired(a, b, c, d)
    se = math.sqrt((b + c) / n ** 2 - (b - c) ** 2 / n ** 3)
    assert diff == pytest.approx(0.01)
    assert lo == pytest.approx(diff - stats.Z95 * se, abs=5e-4) and hi == pytest.approx(diff + stats.Z95 * se, abs=5e-4)
    # small samples: the interval stays inside [-1, 1] where Wald's would not
    d0, lo0, hi0 = stats.newcombe_paired(0, 5, 0, 0)
    assert d0 == 1.0 and hi0 == 1.0 and 0.0 < lo0 < 1.0


def test_newcombe_matches_the_published_intervals():
    """Newcombe (1998) Table II, example (a), method 10, and the Cavo et al. (2012) and Bentur et al. (2009) tables
    of Fagerland, Lydersen & Laake (ch. 8): the continuity-corrected phi, which the uncorrected one misses where
    AD - BC > 0."""
    for counts, (lo, hi) in (((36, 12, 2, 0), (0.0569, 0.3404)), ((59, 6, 16, 80), (-0.1186, -0.0046)),
                             ((1, 1, 7, 12), (-0.5069, -0.0256))):
        d, lo_, hi_ = stats.newcombe_paired(*counts)
        assert (round(lo_, 4), round(hi_, 4)) == (lo, hi), counts
    # two networks that agree on every image: a nonzero interval at any accuracy (zero width without the correction)
    for right in (50, 250, 450):
        d, lo_, hi_ = stats.newcombe_paired(right, 0, 0, 500 - right)
        assert d == 0.0 and lo_ < -0.003 and hi_ > 0.003


def test_verdicts():
    n = 1000
    rng = np.random.default_rng(0)
    base = rng.random(n) < 0.5
    better = base.copy()
    better[np.flatnonzero(~base)[:60]] = True                  # 60 more right, none lost
    c = stats.compare(better, base)
    assert c.verdict == "better" and c.significant and c.low > 0 and c.only_a == 60 and c.only_b == 0
    assert stats.compare(base, better).verdict == "worse"
    assert "points" in c.text() and "n = 1000 paired" in c.text()
    noisy = base.copy()
    noisy[:4] = ~noisy[:4]
    assert stats.compare(noisy, base).verdict == "no significant difference"


def test_at_chance_rule():
    assert not stats.at_chance(20, 199)                        # fewer than 200 images: never
    assert stats.at_chance(20, 200)                            # 10 %: upper bound ~14.8 %
    assert stats.wilson(20, 200)[1] < 0.2
    assert not stats.at_chance(30, 200)                        # 15 %: upper bound ~20.6 %
    assert stats.wilson(30, 200)[1] > 0.2
    assert stats.at_chance(0, 1000)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=80))
def test_pack_roundtrip(v):
    a = np.array(v, dtype=bool)
    assert np.array_equal(stats.unpack_bits(stats.pack_bits(a), len(a)), a)


def test_pack_size_and_bad_length():
    a = np.ones(10000, dtype=bool)
    assert len(stats.pack_bits(a)) <= math.ceil(1250 / 3) * 4
    with pytest.raises(ValueError):
        stats.unpack_bits(stats.pack_bits(a), 9000)


def test_balanced_indices():
    interleaved = np.tile(np.arange(10), 5)
    assert np.array_equal(stats.balanced_indices(interleaved, 30), np.arange(30))
    blocked = np.repeat(np.arange(10), 5)                       # the official batches' order is not balanced
    idx = stats.balanced_indices(blocked, 20)
    assert np.array_equal(np.bincount(blocked[idx], minlength=10), [2] * 10)
    assert list(idx[:3]) == [0, 5, 10]
    with pytest.raises(ValueError):
        stats.balanced_indices(blocked, 51)
    assert stats.describe_images(1000) == "the first 100 test images of each CIFAR-10 class (1000 images)"
    assert stats.describe_images(10000) == "all 10000 CIFAR-10 test images"


def test_unpaired_fallback():
    c = stats.compare_unpaired(86, 100, 40, 100)
    assert not c.paired and c.verdict == "better" and c.low < c.diff < c.high and "unpaired" in c.text()
    assert stats.compare_unpaired(50, 100, 52, 100).verdict == "no significant difference"
    assert stats.compare_unpaired(40, 100, 86, 100).verdict == "worse"
