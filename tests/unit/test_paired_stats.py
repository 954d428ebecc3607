"""utils.paired_stats: the exact McNemar test against scipy's binomial test, and verdicts that follow the test."""

import itertools

import pytest

from utils.paired_stats import PairedComparison, by_kind, sign_test_p


def test_sign_test_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for gained, lost in itertools.product(range(0, 13), repeat=2):
        if gained + lost:
            expected = scipy_stats.binomtest(gained, gained + lost, 0.5, alternative="two-sided").pvalue
            assert sign_test_p(gained, lost) == pytest.approx(expected, rel=1e-12, abs=1e-15), (gained, lost)
    assert sign_test_p(0, 0) == 1.0


def test_counts_flips_not_totals():
    # the same totals (5/10 -> 6/10) from one gained pair, or from 6 gained and 5 lost: neither is evidence
    one = PairedComparison.of([1] * 5 + [0] * 5, [1] * 6 + [0] * 4)
    churn = PairedComparison.of([1] * 5 + [0] * 5, [0] * 5 + [1] * 5)
    assert (one.gained, one.lost) == (1, 0) and (churn.gained, churn.lost) == (5, 5)
    assert "no significant change" in one.verdict() and "rose" not in one.verdict()
    assert churn.p_value == 1.0


def test_verdict_says_rose_only_when_the_test_does():
    strong = PairedComparison.of([0] * 10 + [1] * 10, [1] * 20)
    assert strong.gained == 10 and strong.p_value < 0.01
    assert strong.verdict().endswith("rose (significant at 0.05).")
    worse = PairedComparison.of([1] * 20, [0] * 10 + [1] * 10)
    assert "fell" in worse.verdict()
    assert "no item changed" in PairedComparison.of([1, 0], [1, 0]).verdict()
    with pytest.raises(ValueError, match="same items"):
        PairedComparison.of([1], [1, 0])


def test_by_kind_splits_the_items():
    parts = by_kind(["fact", "format", "fact", "format"], [0, 0, 1, 1], [1, 0, 1, 0])
    assert (parts["fact"].gained, parts["fact"].lost) == (1, 0)
    assert (parts["format"].gained, parts["format"].lost) == (0, 1)
