"""Pareto fronts: which variants are not beaten on both cost (size, latency) and accuracy."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_optimal(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Which points are Pareto-optimal when lower ``cost`` and higher ``value`` are better.

    A point is optimal iff no other point has ``cost <=`` and ``value >=`` with at least
    one of the two strict. Exact duplicates (same cost and same value) do not dominate
    each other; of each such group only the first (lowest index) is marked, so a front
    drawn through the marked points has one point per position. A point with a NaN cost
    or value is never optimal and does not dominate any other.

    Returns a boolean array aligned with the inputs. O(n log n).
    """
    cost = np.asarray(cost, dtype=float).ravel()
    value = np.asarray(value, dtype=float).ravel()
    if cost.shape != value.shape:
        raise ValueError(f"cost and value differ in length: {cost.size} and {value.size}")
    optimal = np.zeros(cost.size, dtype=bool)
    valid = np.flatnonzero(~(np.isnan(cost) | np.isnan(value)))
    if not valid.size:
        return optimal
    # Cheapest first; at equal cost the best value first; exact duplicates in index order
    # (np.lexsort is stable). Every point that could dominate a point comes before it.
    order = valid[np.lexsort((valid, -value[valid], cost[valid]))]
    ordered = value[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(ordered)[:-1]))
    keep = ordered > best_before
    keep[0] = True  # the cheapest point with the best value at that cost (even a value of -inf)
    optimal[order[keep]] = True
    return optimal
