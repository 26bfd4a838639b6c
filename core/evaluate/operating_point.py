"""Operating points: a run read as a binary screen, its threshold chosen on validation, scored on test.

The user names the *positive* classes (e.g. every stage of dementia against NonDemented);
an image's score is the summed probability of those classes and the screen calls it
positive when ``score >= threshold``. The threshold is chosen on the validation split only,
never on test:

- a target sensitivity ``s`` in (0, 1]: the largest threshold whose validation sensitivity
  is at least ``s`` (the ``ceil(s * P)``-th highest score of the ``P`` validation positives);
- a cost ratio ``r`` > 0 (a missed positive costs ``r`` false alarms): the threshold that
  minimises ``r * FN + FP`` on validation among the distinct validation scores and one just
  above the highest (nothing positive); on a tie the larger threshold (fewer false alarms
  for the same cost).

Validation may share groups of near-copies with train (:class:`~core.artifacts.records.LeakageRecord`
counts them): a threshold chosen on those images is chosen on near-copies of training images,
on which the model is over-confident. So the threshold is chosen on the *leak-free*
validation images (group without a training image) when they hold at least
:data:`MIN_LEAK_FREE` positives and as many negatives, else on the whole validation split,
and the record says which (both thresholds are kept). On the test split: the 2x2 matrix,
sensitivity, specificity, PPV and NPV, each with a bootstrap interval that resamples whole
groups (:func:`core.evaluate.metrics.resampled_sums`).

Stored in the run's ``operating_points.json`` (:class:`~core.artifacts.records.OperatingPointsRecord`),
one entry per positive classes and target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from core.artifacts.layout import (
    ENSEMBLES_DIR,
    OPERATING_POINTS_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    VAL_PREDICTIONS_FILE,
)
from core.artifacts.records import (
    OperatingPointsRecord,
    Predictions,
    ProvenanceRecord,
    RecordError,
    SplitRecord,
)
from core.data.groups import Grouping
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.evaluate.compare import split_groups
from core.evaluate.metrics import binary_roc, bootstrap_units, percentile_interval, resampled_sums

MIN_LEAK_FREE = 20  # leak-free validation positives (and negatives) needed to choose the threshold there
N_BOOTSTRAP = 1000
CELLS = ("tp", "fn", "fp", "tn")
FIGURES = ("sensitivity", "specificity", "ppv", "npv")
TARGETS = ("sensitivity", "cost_ratio")
RULE = ("positive when the summed probability of the positive classes >= threshold; threshold chosen on validation "
        "only: for a target sensitivity the largest one reaching it, for a cost ratio the one minimising "
        "ratio * FN + FP (ties: the larger threshold)")


@dataclass(frozen=True)
class Target:
    """What the threshold must achieve on validation: a ``sensitivity`` or a ``cost_ratio`` (FN cost / FP cost)."""

    kind: str
    value: float

    def label(self) -> str:
        """``sensitivity 0.95`` or ``cost ratio 5``."""
        return f"{self.kind.replace('_', ' ')} {self.value:g}"


def make_target(sensitivity: float | None = None, cost_ratio: float | None = None) -> Target:
    """The one target given, checked: a sensitivity in (0, 1] or a finite cost ratio above 0."""
    if (sensitivity is None) == (cost_ratio is None):
        raise UserError("give either a target sensitivity or a cost ratio (FN cost / FP cost), not both or neither")
    if sensitivity is not None:
        if not (isinstance(sensitivity, (int, float)) and 0 < sensitivity <= 1):
            raise UserError(f"target sensitivity must lie in (0, 1], got {sensitivity}")
        return Target("sensitivity", float(sensitivity))
    if not (isinstance(cost_ratio, (int, float)) and math.isfinite(cost_ratio) and cost_ratio > 0):
        raise UserError(f"cost ratio (FN cost / FP cost) must be a number above 0, got {cost_ratio}")
    return Target("cost_ratio", float(cost_ratio))


def positive_columns(classes: Sequence[str], positives: Sequence[str]) -> list[str]:
    """The positive classes in the run's class order, checked: known, at least one, not all."""
    wanted = [str(p).strip() for p in positives if str(p).strip()]
    unknown = [p for p in wanted if p not in classes]
    if unknown:
        raise UserError(f"unknown class {', '.join(repr(u) for u in unknown)}; the run's classes: {', '.join(classes)}")
    chosen = [c for c in classes if c in wanted]
    if not chosen:
        raise UserError(f"name at least one positive class (the run's classes: {', '.join(classes)})")
    if len(chosen) == len(classes):
        raise UserError("every class is positive: leave at least one class as the negative side of the screen")
    return chosen


def screen_key(positives: Sequence[str], target: Target) -> str:
    """How a stored operating point is named: its positive classes and its target."""
    return f"{' + '.join(positives)} | {target.label()}"


# --- choosing the threshold -------------------------------------------------------------------

def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The largest threshold whose sensitivity (share of positives with ``score >= threshold``) is >= ``target``."""
    pos = np.sort(np.asarray(scores, dtype=float)[np.asarray(positive, dtype=bool)])[::-1]
    if pos.size == 0:
        raise UserError("no positive image to reach a sensitivity on")
    needed = max(1, math.ceil(round(target * pos.size, 9)))  # 0.57 * 100 is 56.99999999999999: 57 images
    return float(pos[needed - 1])


def threshold_for_cost(scores: np.ndarray, positive: np.ndarray, ratio: float) -> float:
    """The threshold minimising ``ratio * FN + FP`` over the distinct scores and one above them all (ties: the
    larger threshold)."""
    s, p = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    candidates = np.append(np.unique(s), np.nextafter(s.max(), np.inf))  # ascending; the last: nothing positive
    # Images with score >= each candidate, positives and negatives (searchsorted over the sorted scores).
    tp = p.sum() - np.searchsorted(np.sort(s[p]), candidates, side="left")
    fp = (~p).sum() - np.searchsorted(np.sort(s[~p]), candidates, side="left")
    cost = ratio * (p.sum() - tp) + fp
    best = np.flatnonzero(cost == cost.min())[-1]  # the largest threshold among the cheapest
    return float(candidates[best])


def choose_threshold(scores: np.ndarray, positive: np.ndarray, target: Target) -> float:
    """The threshold ``target`` asks for on these (validation) scores."""
    if target.kind == "sensitivity":
        return threshold_for_sensitivity(scores, positive, target.value)
    return threshold_for_cost(scores, positive, target.value)


# --- figures at a threshold -------------------------------------------------------------------

def cells(scores: np.ndarray, positive: np.ndarray, threshold: float) -> np.ndarray:
    """One row per image, one column per 2x2 cell (tp, fn, fp, tn): 1 where the image falls."""
    called = np.asarray(scores, dtype=float) >= threshold
    p = np.asarray(positive, dtype=bool)
    return np.column_stack([called & p, ~called & p, called & ~p, ~called & ~p]).astype(np.float64)


def figures_of(counts: np.ndarray) -> np.ndarray:
    """Sensitivity, specificity, PPV and NPV of 2x2 counts (last axis tp, fn, fp, tn); NaN where undefined."""
    tp, fn, fp, tn = np.moveaxis(np.asarray(counts, dtype=float), -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([tp / (tp + fn), tn / (tn + fp), tp / (tp + fp), tn / (tn + fn)], axis=-1)


def _number(value: float) -> float | None:
    return None if value != value else float(value)


def point_figures(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    """The 2x2 counts and the four figures at ``threshold`` (None where undefined), no intervals."""
    counts = cells(scores, positive, threshold).sum(axis=0)
    return {"images": int(counts.sum()), **{c: int(v) for c, v in zip(CELLS, counts)},
            **{f: _number(v) for f, v in zip(FIGURES, figures_of(counts))}}


def figures_with_intervals(scores: np.ndarray, positive: np.ndarray, threshold: float, groups=None,
                           n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """Counts and figures at ``threshold``, each ``{estimate, low, high, n_used}`` (a bootstrap over ``groups``)."""
    per_image = cells(scores, positive, threshold)
    counts = per_image.sum(axis=0)
    resampled = resampled_sums(per_image, groups, n_bootstrap, seed)
    unit, units = bootstrap_units(groups, per_image.shape[0])
    return {"images": int(per_image.shape[0]), "positives": int(counts[0] + counts[1]),
            "negatives": int(counts[2] + counts[3]),
            "bootstrap": {"n_resamples": int(n_bootstrap), "seed": int(seed), "unit": unit, "units": units},
            "matrix": {c: percentile_interval(float(counts[i]), resampled[:, i]) for i, c in enumerate(CELLS)},
            "figures": {f: percentile_interval(_number(figures_of(counts)[i]), figures_of(resampled)[:, i])
                        for i, f in enumerate(FIGURES)}}


# --- a stored run -------------------------------------------------------------------------------

@dataclass
class Split:
    """One split of a run read as a screen input: image ids, true class names and probabilities."""

    ids: list[str]
    true: list[str]
    probs: np.ndarray

    def positive(self, positives: Sequence[str]) -> np.ndarray:
        """Whether each image's true class is a positive one."""
        return np.isin(np.asarray(self.true, dtype=object), list(positives))


@dataclass
class ScreenInputs:
    """What a run's operating points are computed from (:func:`load_run`)."""

    run: Path
    classes: list[str]
    val: Split
    test: Split
    grouping: Grouping | None  # None: the run's split records no groups and the dataset has no matching audit
    grouping_note: str
    split_items: list[tuple[str, str, str]]

    def scores(self, split: Split, positives: Sequence[str]) -> np.ndarray:
        """Each image's summed probability of the positive classes."""
        return split.probs[:, [self.classes.index(c) for c in positives]].sum(axis=1)

    def val_leaking(self) -> np.ndarray | None:
        """For each validation image: is its group also in train? None without groups."""
        if self.grouping is None:
            return None
        return self.grouping.leaking(self.split_items, self.val.ids, ("train",))

    def test_groups(self) -> np.ndarray | None:
        """Group codes of the test images (None: each image its own group)."""
        return None if self.grouping is None else self.grouping.codes(self.test.ids)


def val_predictions_missing(run: Path) -> str:
    """The one line for a run without validation probabilities, with the command that makes them."""
    if run.parent.name == ENSEMBLES_DIR:
        return (f"{run.name}: this ensemble has no validation probabilities (a stacked ensemble is fitted on them, "
                "or a member stored none), and a threshold is never chosen on test")
    return (f"{run / VAL_PREDICTIONS_FILE} not found: the run stored no validation probabilities, and a threshold "
            f"is never chosen on test; make them with: python -m core val-predictions {run}")


def load_run(run: str | Path) -> ScreenInputs:
    """A complete run's validation and test probabilities, its split and its groups; one line if one is missing."""
    run = Path(run)
    if not (run / PROVENANCE_FILE).is_file():
        raise UserError(f"{run} is not a complete run folder (no {PROVENANCE_FILE})")
    if not (run / VAL_PREDICTIONS_FILE).is_file():
        raise UserError(val_predictions_missing(run))
    prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
    test = Predictions.load(run / PREDICTIONS_FILE)
    val = Predictions.load(run / VAL_PREDICTIONS_FILE)
    if val.classes != test.classes:
        raise RecordError(f"{run / VAL_PREDICTIONS_FILE}: its classes ({', '.join(val.classes)}) are not those of "
                          f"{PREDICTIONS_FILE} ({', '.join(test.classes)})")
    for name, table in ((VAL_PREDICTIONS_FILE, val), (PREDICTIONS_FILE, test)):
        unknown = sorted(set(table.true) - set(table.classes))
        if unknown:
            raise RecordError(f"{run / name}: true label(s) {', '.join(unknown)} have no probability column")
        if not table.ids:
            raise RecordError(f"{run / name}: no images")
    split, grouping, note = _split_and_groups(run, prov)
    return ScreenInputs(run, list(test.classes), Split(val.ids, val.true, val.probs),
                        Split(test.ids, test.true, test.probs), grouping, note, split)


def _split_and_groups(run: Path, prov: ProvenanceRecord) -> tuple[list, Grouping | None, str]:
    """The run's split items and its groups: the split's own, else the dataset audit's, else none."""
    if not prov.split_file:
        return [], None, "the run records no split file: intervals resample images, validation leakage unknown"
    split = SplitAssignment.from_dict(SplitRecord.load((run / prov.split_file).resolve()).to_dict())
    grouping, why = split_groups(split, run.parent.parent, prov.fingerprint)
    return split.items, grouping, why


# --- one operating point ------------------------------------------------------------------------

def operating_point(inputs: ScreenInputs, positives: Sequence[str], target: Target,
                    n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """The screen ``positives`` vs the rest at ``target``: threshold chosen on validation, figures on test.

    Returns the stored entry (plain JSON data; see docs/ARTIFACTS.md ``operating_points.json``).
    """
    positives = positive_columns(inputs.classes, positives)
    negatives = [c for c in inputs.classes if c not in positives]
    val_scores, val_pos = inputs.scores(inputs.val, positives), inputs.val.positive(positives)
    if not val_pos.any():
        raise UserError(f"the validation split has no image of {', '.join(positives)}: no threshold can be chosen")
    leaking = inputs.val_leaking()
    free = None if leaking is None else ~leaking
    thresholds = {"validation": choose_threshold(val_scores, val_pos, target), "leak_free_validation": None}
    free_pos = int((val_pos & free).sum()) if free is not None else 0
    free_neg = int((~val_pos & free).sum()) if free is not None else 0
    if free is None:
        reason = "validation leakage unknown (no groups)"
    elif not leaking.any():
        reason = "no validation image leaks: the whole validation split is leak-free"
    elif min(free_pos, free_neg) < MIN_LEAK_FREE:
        reason = (f"too few leak-free validation images ({free_pos} positive, {free_neg} negative; "
                  f"{MIN_LEAK_FREE} of each needed)")
    else:
        reason = None
        thresholds["leak_free_validation"] = choose_threshold(val_scores[free], val_pos[free], target)
    chosen_on = "leak_free_validation" if reason is None else "validation"
    threshold = thresholds[chosen_on]
    chosen = free if chosen_on == "leak_free_validation" else np.ones(val_pos.size, bool)
    test_scores, test_pos = inputs.scores(inputs.test, positives), inputs.test.positive(positives)
    return {
        "key": screen_key(positives, target),
        "positives": positives,
        "negatives": negatives,
        "target": {"kind": target.kind, "value": target.value},
        "rule": RULE,
        "threshold": threshold,
        "chosen_on": chosen_on,
        "thresholds": thresholds,
        "validation": {
            "images": int(val_pos.size), "positives": int(val_pos.sum()), "negatives": int((~val_pos).sum()),
            "leaking": None if leaking is None else int(leaking.sum()),
            "leak_free_positives": None if free is None else free_pos,
            "leak_free_negatives": None if free is None else free_neg,
            "min_leak_free": MIN_LEAK_FREE, "leak_free_note": reason,
            # On the images the threshold was chosen on (what the target holds for), and on the whole split.
            "at_threshold": point_figures(val_scores[chosen], val_pos[chosen], threshold),
            "all_at_threshold": point_figures(val_scores, val_pos, threshold),
        },
        "test": figures_with_intervals(test_scores, test_pos, threshold, inputs.test_groups(), n_bootstrap, seed),
        "grouping": inputs.grouping_note,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def roc_curves(inputs: ScreenInputs, positives: Sequence[str]) -> dict[str, dict]:
    """The screen's ROC curve on the validation and the test split (:func:`core.evaluate.metrics.binary_roc`)."""
    positives = positive_columns(inputs.classes, positives)
    return {name: binary_roc(split.positive(positives), inputs.scores(split, positives), name)
            for name, split in (("validation", inputs.val), ("test", inputs.test))}


def store(run: str | Path, point: dict) -> Path:
    """Add ``point`` to the run's ``operating_points.json``, replacing a stored one of the same key."""
    path = Path(run) / OPERATING_POINTS_FILE
    record = OperatingPointsRecord.load(path) if path.is_file() else OperatingPointsRecord(points=[])
    record.points = [p for p in record.points if p.get("key") != point["key"]] + [point]
    return record.save(path)


def stored(run: str | Path) -> list[dict]:
    """The run's stored operating points (none when it has no ``operating_points.json``)."""
    path = Path(run) / OPERATING_POINTS_FILE
    return OperatingPointsRecord.load(path).points if path.is_file() else []
