"""Class-balanced sampling of ``(id, label)`` pairs: the one way the product subsamples a split."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def balanced_sample(pairs: Sequence[tuple[str, Hashable]], seed: int, per_class: int | None = None,
                    total: int | None = None) -> list:
    """A seeded, class-balanced subset of ``pairs`` (``(id, label)``), sorted.

    Each class's pairs (in id order) are put in a random order drawn with ``seed``, one
    class after the other in label order. ``per_class`` keeps the first ``per_class`` of
    each class (the quick preset's caps); ``total`` then lets the classes take turns until
    ``total`` pairs are picked (deployment's calibration and fine-tune images), so a small
    class is used up and the others fill in. Either or both may be given.
    """
    rng = np.random.default_rng(seed)
    by_class: dict = {}
    for pair in sorted(pairs):
        by_class.setdefault(pair[1], []).append(pair)
    queues = []
    for _, items in sorted(by_class.items()):
        # choice() and permutation() draw differently; each is kept where committed runs used it.
        order = (rng.choice(len(items), size=min(per_class, len(items)), replace=False) if per_class is not None
                 else rng.permutation(len(items)))
        queues.append([items[i] for i in order])
    if total is None:
        return sorted(p for q in queues for p in q)
    picked: list = []
    while len(picked) < total and any(queues):
        for q in queues:
            if q and len(picked) < total:
                picked.append(q.pop(0))
    return sorted(picked)
