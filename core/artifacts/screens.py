"""Operating points as tables and lines (no computing: :mod:`core.evaluate.operating_point` makes them).

Shared by ``python -m core operating-point`` and the ROC page, from one stored entry of
``operating_points.json`` (or one just computed, the same plain data).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import VAL_PREDICTIONS_FILE
from core.artifacts.report import format_ci

FIGURE_LABELS = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV (precision)",
                 "npv": "NPV"}
CELL_LABELS = {"tp": "true positives", "fn": "false negatives (missed)", "fp": "false positives (false alarms)",
               "tn": "true negatives"}


NEGATIVE_NAMES = ("non", "normal", "healthy", "negative", "benign", "no_", "no ")


def screen_candidates(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs in the order a screen offers them: those with validation probabilities first (only those can be
    read as a screen: the threshold is never chosen on test), each group in its given order."""
    if runs.empty or "path" not in runs:
        return runs
    has_val = runs["path"].map(lambda p: (Path(p) / VAL_PREDICTIONS_FILE).is_file())
    return pd.concat([runs[has_val], runs[~has_val]])


def default_positives(classes: list[str], true: list[str]) -> list[str]:
    """The screen the ROC page opens on: every class but the one that reads as "no finding" (NonDemented,
    normal, healthy...), else but the most frequent one."""
    named = [c for c in classes if c.lower().startswith(NEGATIVE_NAMES)]
    negative = named[0] if named else max(classes, key=lambda c: (true.count(c), c))
    return [c for c in classes if c != negative]


def roc_frame(curves: dict[str, dict], point: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The screen's ROC curves (one per split, threshold order) and the chosen threshold's point on each."""
    lines = pd.concat([pd.DataFrame({"step": range(len(c.get("fpr") or [])), "fpr": c.get("fpr") or [],
                                     "tpr": c.get("tpr") or [], "split": name}) for name, c in curves.items()],
                      ignore_index=True)
    val, test = point["validation"]["all_at_threshold"], point["test"]["figures"]  # on the curves drawn
    dots = pd.DataFrame([
        {"split": "validation", "fpr": None if val["specificity"] is None else 1 - val["specificity"],
         "tpr": val["sensitivity"]},
        {"split": "test", "fpr": None if test["specificity"]["estimate"] is None else 1 - test["specificity"]["estimate"],
         "tpr": test["sensitivity"]["estimate"]}]).dropna()
    dots["threshold"] = point["threshold"]
    return lines, dots


def _plain(value) -> str:
    return "" if value is None else f"{value:.3f}"


def class_list(classes: list[str], shown: int = 4) -> str:
    """Classes joined by ' + ', the first ``shown`` and a count when there are more (a 100-class screen)."""
    if len(classes) <= shown:
        return " + ".join(classes)
    return f"{len(classes)} classes ({', '.join(classes[:shown - 1])}, ..., {classes[-1]})"


def chosen_text(point: dict) -> str:
    """One line: the screen, its threshold and where it was chosen."""
    where = "leak-free validation images" if point["chosen_on"] == "leak_free_validation" else "the validation split"
    target = point["target"]
    goal = (f"sensitivity >= {target['value']:g}" if target["kind"] == "sensitivity"
            else f"least cost with a missed positive costing {target['value']:g} false alarms")
    return (f"{class_list(point['positives'])} vs {class_list(point['negatives'])}: threshold "
            f"{point['threshold']:.4f} on the summed positive probability ({goal}, chosen on {where})")


def leak_text(point: dict) -> str:
    """One line on validation leakage and which threshold was kept."""
    val = point["validation"]
    other = point["thresholds"].get("validation")
    free = point["thresholds"].get("leak_free_validation")
    if val["leaking"] is None:
        return f"Validation leakage unknown ({point['grouping']})."
    head = (f"{val['leaking']} of {val['images']} validation images are in a group with training images; "
            f"{val['leak_free_positives']} positive and {val['leak_free_negatives']} negative ones are leak-free")
    if free is None:
        return f"{head}: {val['leak_free_note']}, so the threshold is the whole validation split's."
    return f"{head}: threshold {free:.4f} chosen on them (the whole validation split would give {other:.4f})."


def figures_table(point: dict) -> pd.DataFrame:
    """One row per figure: on the validation images the threshold was chosen on, and on test with its bootstrap
    interval."""
    val, test = point["validation"]["at_threshold"], point["test"]["figures"]
    return pd.DataFrame([{"Figure": label, "Validation": _plain(val.get(name)),
                          "Test [95% CI]": format_ci(test[name]["estimate"], test[name]["low"], test[name]["high"])}
                         for name, label in FIGURE_LABELS.items()])


def matrix_table(point: dict) -> pd.DataFrame:
    """The test split's 2x2 matrix: rows the truth, columns the screen's call, counts with intervals."""
    m = point["test"]["matrix"]

    def cell(name: str) -> str:
        c = m[name]
        return f"{c['estimate']:.0f}" if c["low"] is None else f"{c['estimate']:.0f} [{c['low']:.0f}, {c['high']:.0f}]"

    return pd.DataFrame({"Truth": ["positive", "negative"], "Called positive": [cell("tp"), cell("fp")],
                         "Called negative": [cell("fn"), cell("tn")]})


def describe(point: dict) -> list[str]:
    """The operating point as printed lines: the choice, leakage, figures and the matrix."""
    test = point["test"]
    boot = test["bootstrap"]
    lines = [chosen_text(point), leak_text(point), "",
             f"validation: the {point['validation']['at_threshold']['images']} images the threshold was chosen on",
             f"test: {test['images']} images ({test['positives']} positive, {test['negatives']} negative); "
             f"95% intervals from {boot['n_resamples']} bootstrap resamples of {boot['units']} {boot['unit']}s"]
    table = figures_table(point)
    lines += [f"  {r['Figure']:<17} validation {r['Validation']:<6}  test {r['Test [95% CI]']}" for _, r in table.iterrows()]
    lines += ["  " + ", ".join(f"{CELL_LABELS[c]} {point['test']['matrix'][c]['estimate']:.0f}"
                               for c in ("tp", "fn", "fp", "tn"))]
    return lines


def stored_table(points: list[dict]) -> pd.DataFrame:
    """The stored operating points of a run, one row each: screen, target, threshold and test figures."""
    rows = []
    for p in points:
        f = p["test"]["figures"]
        rows.append({"Positive classes": class_list(p["positives"]),
                     "Target": f"{p['target']['kind'].replace('_', ' ')} {p['target']['value']:g}",
                     "Threshold": round(p["threshold"], 4), "Chosen on": p["chosen_on"].replace("_", " "),
                     **{label: format_ci(f[name]["estimate"], f[name]["low"], f[name]["high"])
                        for name, label in FIGURE_LABELS.items()}})
    return pd.DataFrame(rows)
