"""Did a run's training converge? Read from its stored history and predictions, never assumed.

For every network stage of a run (``stage1``, ``stage2``, ``scratch``): the epochs run against the
schedule's limit, the epoch with the lowest validation loss, and what ended it: early stopping (no
improvement for ``patience`` epochs), or the epoch limit while validation loss was still improving in the
last ``patience`` epochs (longer training may help), and how often the learning rate was cut on a plateau.
From the test predictions: whether the network collapsed onto one class (it predicts one class for every
test image, or for at least :data:`COLLAPSE_SHARE` of them, :data:`COLLAPSE_EXCESS` more than that class's
true share), as the first edition's from-scratch run on flower_photos did. A stage without a schedule on
record or with a missing validation loss, or a history with lines missing, is not judged (:data:`UNKNOWN`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import PREDICTIONS_FILE
from core.artifacts.records import Predictions

COLLAPSE_SHARE = 0.8
COLLAPSE_EXCESS = 0.3
STAGES = ("stage1", "stage2", "scratch")
CONVERGED, AT_LIMIT, COLLAPSED, UNKNOWN = "converged", "still improving at its epoch limit", "collapsed", "unknown"


def stage_checks(history: pd.DataFrame, config: dict) -> list[dict]:
    """One entry per stage in ``history`` (:func:`core.artifacts.record_view.history`): epochs run, limit, best epoch,
    and ``ended_by`` (``early stopping`` or ``epoch limit``) with ``still_improving`` at the limit."""
    out = []
    if history.empty or "stage" not in history:
        return out
    for stage in STAGES:
        rows = history[history["stage"] == stage]
        if rows.empty:
            continue
        schedule = config.get(stage) or {}
        limit, patience = schedule.get("epochs"), schedule.get("patience")
        losses = rows["val_loss"].astype(float).reset_index(drop=True)
        run = len(rows)
        best = int(losses.idxmin()) + 1 if losses.notna().all() and run else None
        if limit is None or patience is None or best is None:  # no schedule on record, or a NaN loss: not judged
            ended_by, improving = "unknown", False
        else:
            ended_by = "epoch limit" if run >= int(limit) else "early stopping"
            improving = ended_by == "epoch limit" and best > run - int(patience)
        rates = rows["learning_rate"].astype(float).tolist() if "learning_rate" in rows else []
        cuts = sum(later < earlier for earlier, later in zip(rates, rates[1:]))
        out.append({"stage": stage, "epochs_run": run, "epoch_limit": limit, "best_epoch": best,
                    "best_val_loss": None if best is None else float(losses.min()),
                    "ended_by": ended_by, "still_improving": bool(improving),
                    "learning_rate_cuts": cuts, "last_learning_rate": rates[-1] if cuts else None})
    return out


def collapse(run_path: str | Path) -> dict | None:
    """The most predicted class on the test split, its share of the predictions and its true share; ``collapsed``
    when it takes at least :data:`COLLAPSE_SHARE` of them and :data:`COLLAPSE_EXCESS` more than its true share.
    None without a readable predictions table."""
    path = Path(run_path) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    table = Predictions.load(path)
    if not table.pred:
        return None
    predicted = pd.Series(table.pred).value_counts(normalize=True)
    top, share = str(predicted.index[0]), float(predicted.iloc[0])
    true_share = float((pd.Series(table.true) == top).mean())
    only_one = len(predicted) == 1 and pd.Series(table.true).nunique() > 1  # every image one class, whatever its share
    return {"class": top, "predicted_share": share, "true_share": true_share,
            "collapsed": only_one or (share >= COLLAPSE_SHARE and share - true_share >= COLLAPSE_EXCESS)}


def verdict(stages: list[dict], collapsed: dict | None) -> str:
    """:data:`COLLAPSED`, :data:`AT_LIMIT` (a stage ran out of epochs while still improving), :data:`CONVERGED`,
    or :data:`UNKNOWN` (no history)."""
    if collapsed and collapsed["collapsed"]:
        return COLLAPSED
    if not stages or any(s["ended_by"] == "unknown" for s in stages):
        return UNKNOWN
    return AT_LIMIT if any(s["still_improving"] for s in stages) else CONVERGED


def describe(stages: list[dict], collapsed: dict | None) -> str:
    """One line: how each stage ended and whether the predictions collapsed."""
    parts = []
    for s in stages:
        limit = f" of {s['epoch_limit']}" if s["epoch_limit"] is not None else ""
        cuts = s.get("learning_rate_cuts", 0)
        rate = (f"; learning rate cut {cuts} time{'s' if cuts > 1 else ''}, to {s['last_learning_rate']:.2g}"
                if cuts else "")
        if s["ended_by"] == "unknown":
            parts.append(f"{s['stage']} ran {s['epochs_run']} epochs (no schedule or a validation loss missing: "
                         "not judged)")
        elif s["ended_by"] == "early stopping":
            parts.append(f"{s['stage']} stopped early after {s['epochs_run']}{limit} epochs (best {s['best_epoch']}"
                         f"{rate})")
        else:
            tail = ", still improving" if s["still_improving"] else ""
            parts.append(f"{s['stage']} ran all {s['epochs_run']}{limit} epochs (best {s['best_epoch']}{tail}{rate})")
    if collapsed:
        parts.append(f"{'COLLAPSED: ' if collapsed['collapsed'] else ''}predicts {collapsed['class']} for "
                     f"{collapsed['predicted_share']:.0%} of test images (true share {collapsed['true_share']:.0%})")
    return "; ".join(parts) or "no history"
