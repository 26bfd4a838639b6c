"""Pareto fronts of the Deployment page (core.artifacts.pareto)."""

import numpy as np
import pandas as pd
import pytest

from core.artifacts.pareto import pareto_optimal

pytestmark = pytest.mark.unit


def _brute_force(cost, value):
    """The definition, checked pair by pair; duplicates: the first of each group."""
    n = len(cost)
    out = []
    for i in range(n):
        if np.isnan(cost[i]) or np.isnan(value[i]):
            out.append(False)
            continue
        dominated = any(cost[j] <= cost[i] and value[j] >= value[i] and (cost[j] < cost[i] or value[j] > value[i])
                        for j in range(n) if j != i)
        earlier_duplicate = any(cost[j] == cost[i] and value[j] == value[i] for j in range(i))
        out.append(not dominated and not earlier_duplicate)
    return out


def test_equal_accuracy_at_a_larger_cost_is_not_optimal():
    assert pareto_optimal([1.0, 2.0, 3.0], [0.9, 0.9, 0.95]).tolist() == [True, False, True]


def test_equal_cost_with_lower_accuracy_is_not_optimal():
    assert pareto_optimal([1.0, 1.0, 2.0], [0.8, 0.9, 0.95]).tolist() == [False, True, True]


def test_exact_duplicates_keep_the_first_one_marked():
    assert pareto_optimal([2.0, 1.0, 1.0, 1.0], [0.95, 0.9, 0.9, 0.9]).tolist() == [True, True, False, False]
    assert pareto_optimal([1.0, 1.0], [0.5, 0.5]).tolist() == [True, False]


def test_nan_is_never_optimal_and_beats_nothing():
    nan = float("nan")
    assert pareto_optimal([1.0, nan, 2.0, 3.0], [0.9, 0.99, nan, 0.95]).tolist() == [True, False, False, True]
    assert pareto_optimal([nan], [0.5]).tolist() == [False]
    assert pareto_optimal([1.0], [nan]).tolist() == [False]


def test_a_single_point_and_no_points():
    assert pareto_optimal([3.0], [0.1]).tolist() == [True]
    assert pareto_optimal([], []).tolist() == []
    assert pareto_optimal([1.0], [-np.inf]).tolist() == [True]


def test_what_the_old_running_maximum_rule_got_wrong():
    # The page used to sort by cost and mark accuracy >= running maximum: a tie on accuracy
    # at a larger cost stayed on the front, and so did every copy of a duplicate.
    data = pd.DataFrame({"gzip MB": [1.0, 2.0, 4.0, 4.0, 0.5], "accuracy": [0.9, 0.9, 0.93, 0.93, 0.8]})
    data = data.sort_values("gzip MB")
    old = (data["accuracy"] >= data["accuracy"].cummax()).tolist()
    new = pareto_optimal(data["gzip MB"], data["accuracy"]).tolist()
    assert old == [True, True, True, True, True]
    assert new == [True, True, False, True, False]  # 0.5, 1.0 (not 2.0), 4.0 once


def test_order_of_the_input_does_not_matter_and_matches_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        cost = rng.integers(0, 4, n).astype(float)
        value = rng.integers(0, 4, n).astype(float)
        cost[rng.random(n) < 0.1] = np.nan
        value[rng.random(n) < 0.1] = np.nan
        got = pareto_optimal(cost, value)
        assert got.tolist() == _brute_force(cost, value), (cost, value)
        perm = rng.permutation(n)
        shuffled = pareto_optimal(cost[perm], value[perm])
        # The same positions are on the front whatever the order (which copy of a duplicate may differ).
        front = {(c, v) for c, v, k in zip(cost, value, got) if k}
        assert {(c, v) for c, v, k in zip(cost[perm], value[perm], shuffled) if k} == front


def test_front_is_strictly_increasing_in_both_axes():
    cost, value = [3, 1, 2, 2, 5, 4], [0.7, 0.6, 0.7, 0.65, 0.9, 0.9]
    mask = pareto_optimal(cost, value)
    assert sorted((c, v) for c, v, k in zip(cost, value, mask) if k) == [(1, 0.6), (2, 0.7), (4, 0.9)]


def test_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        pareto_optimal([1.0, 2.0], [0.5])
