"""The README's "Results" section, generated from the stored runs (``python -m core report --readme README.md``).

A test checks that the committed README's section equals what this module makes of the
committed artifacts, so the README never quotes a number the artifacts do not hold.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts import classical, lesson, model_selection, naming, ranking, record_view, report, screens, timing
from core.artifacts.layout import OPERATING_POINTS_FILE, artifacts_dir
from core.artifacts.records import OperatingPointsRecord
from core.errors import UserError

# The README's example of a deployment budget, a small edge device: a model file of at most 1 MB running in at most
# 5 ms on one thread (a configuration fits when one of its deployable variants does; the largest that fits ships).
EDGE_BUDGET = (1.0, 5.0)


def _markdown_table(df: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row.values) + " |")
    return lines + [""]


def _configurations_markdown(configs: pd.DataFrame, runs: pd.DataFrame, comparison: dict | None) -> list[str]:
    """The README's configuration ranking of one dataset, its recommendation and what to read it with;
    ``comparison``: mcnemar.json's ``configurations`` (the paired differences the recommendation is read with)."""
    metric = report.DEFAULT_METRIC
    top = ranking.ranked(configs, metric)
    lines = [f"Configurations (runs that differ only by seed), ranked by mean {naming.metric_label(metric).lower()}: "
             f"{ranking.interval_caption(top)}.\n"]
    lines += _markdown_table(report.configurations_table(top, metric))
    rec = ranking.recommend(configs, metric=metric, comparison=comparison)
    paragraph = report.recommendation_paragraph(rec)
    lines.append(f"{paragraph}\n" if rec.chosen is None else f"Recommendation: {paragraph}\n")
    max_mb, max_ms = EDGE_BUDGET
    edge = ranking.recommend(configs, max_mb, max_ms, metric=metric, comparison=comparison)
    lines.append(f"On a small edge device (the README's example budget; the Overview page takes any limits): "
                 f"{report.recommendation_paragraph(edge, max_mb, max_ms)}\n")
    lines += [f"{line}\n" for line in report.transfer_gain_text(ranking.transfer_gains(configs, metric, comparison))]
    scratch = report.convergence_table(runs[runs["kind"] == "scratch"]) if "kind" in runs else pd.DataFrame()
    if not scratch.empty:
        lines.append("From-scratch runs, read from their history and predictions (converged: every stage stopped "
                     "early or had stopped improving; collapsed: one predicted class for most test images):\n")
        lines += _markdown_table(scratch)
    leak = report.validation_leak_note(runs)
    if leak:
        lines.append(f"{leak}\n")
    return lines


def markdown_results(root: Path | None = None) -> str:
    """The README "Results" tables for every dataset, generated from the stored runs."""
    root = Path(root or artifacts_dir())
    lines = []
    for dataset in report.datasets(root):
        df = report.runs_table(dataset, root)
        waiting = report.waiting_runs(dataset, root)
        if df.empty and waiting.empty and not report.unreadable(df):
            continue
        lines.append(f"### {dataset}\n")
        if not df.empty:
            lines.append(f"{report.test_split_caption(df)}.\n")
            comparison = (record_view.mcnemar(dataset, root) or {}).get("configurations")
            lines += _configurations_markdown(ranking.configurations(df), df, comparison)
            lines.append(f"Single runs: value [95% bootstrap CI, {ranking.bootstrap_unit(df)}].\n")
            if report.leak_free_differs(df):
                lines.append(f"{report.leak_free_caption(df)}\n")
            lines += _markdown_table(report.leaderboard(df))
        if report.unreadable(df):
            lines.append(f"{len(report.unreadable(df))} run(s) could not be read and are left out: "
                         + "; ".join(report.unreadable(df)) + "\n")
        spread = report.seed_spread(df)
        if not spread.empty:
            lines.append(f"{report.SEED_SPREAD_NOTE}:\n")
            lines += _markdown_table(spread)
        if not df.empty:
            lines += _further_analyses(dataset, df, root)
        if not waiting.empty:
            lines.append("Not trained here: the backbone's ImageNet weights were not on this machine. Sizes and "
                         "latency come from the architecture with random weights; the command fills in the row "
                         "on a machine that has the weights.\n")
            lines += _markdown_table(report.waiting_table(waiting))
    arch = report.architectures(root)
    if not arch.empty:
        lines.append("### Architectures measured without trained weights\n")
        lines.append("Backbone + classification head with random weights (`python -m core deploy --architecture "
                     "NAME`): sizes, FLOPs and median batch-1 latency on this machine; no accuracy.\n")
        lines += _markdown_table(report.architecture_table(arch))
    record = lesson.load_lesson(root)
    if record is not None:
        lines.append("### The leakage lesson: results\n")
        lines.append("EfficientNet-Lite0 on a pre-augmented copy of the Alzheimer MRI training images "
                     "(`experiments/leakage_lesson.toml`), one run per way of carving validation, each scored on "
                     "validation and on the untouched test split (95% bootstrap intervals: validation resamples "
                     "source scans, test the audit's near-duplicate groups):\n")
        lines += _markdown_table(lesson.table(record).drop(columns=["How validation was carved"]))
        lines.append(f"{lesson.explanation(record)}\n")
    t = timing.machine_time(root)
    lines.append(f"Machine time on record: training {t['training_s'] / 3600:.1f} h (stage timings of the complete "
                 f"runs), deployment measurements {t['deployment_s'] / 3600:.1f} h (per-variant timings); the experiment "
                 "sittings logged "
                 f"in experiment_log.jsonl ({t['sittings']}, of any grid, including those whose runs were since retired) "
                 f"add up to {t['experiment_sittings_s'] / 3600:.1f} h (each "
                 "sitting logs after every run; time after a sitting's last logged run is missing).\n")
    return "\n".join(lines)


def _further_analyses(dataset: str, df: pd.DataFrame, root: Path) -> list[str]:
    """Classical baselines, ensembles, operating points and model selection of one dataset, where stored."""
    lines = []
    for title, methods, what in (("Multi-class reduction strategies", classical.REDUCTIONS, "Strategy"),
                                 ("k-NN tie rules, decision trees and a random forest", classical.CLASSICAL, "Rule")):
        rows = classical.baseline_rows(df, methods)
        if not rows.empty:
            lines.append(f"{title} on frozen ImageNet embeddings (hyperparameter chosen on validation; fit: the "
                         "chosen model's fit time on this machine):\n")
            lines += _markdown_table(classical.display_table(rows, what))
    comparison = record_view.mcnemar(dataset, root) or {}
    entries = comparison.get("ensembles") or []
    if entries:
        labels = {f"{r['backbone']}/{r['run_id']}": r["label"] for _, r in df.iterrows()}
        lines.append("Ensembles (soft votes of stored runs' probabilities) against their best member, the one with "
                     "the highest test accuracy (so the comparison leans towards the member): McNemar, Holm over the "
                     "ensembles, and the accuracy difference with a 95% paired bootstrap interval "
                     f"({ranking.bootstrap_unit(df)}):\n")
        lines += _markdown_table(report.ensemble_comparison(entries, labels))
    for _, run in df.iterrows():
        path = Path(run["path"]) / OPERATING_POINTS_FILE
        if run.get("kind") != "ensemble" and path.is_file():
            lines.append(f"Operating points of {run['label']} read as a binary screen (threshold chosen on "
                         "validation, figures on test with 95% group-bootstrap intervals; "
                         "`python -m core operating-point`):\n")
            lines += _markdown_table(screens.stored_table(OperatingPointsRecord.load(path).points))
    records, _ = model_selection.load_records(dataset, root)
    if records["cv"]:
        lines.append("Cross-validation over the non-test images (`python -m core cv`; the test split untouched), "
                     "mean across folds with its 95% t-interval:\n")
        lines += _markdown_table(model_selection.cv_table(records["cv"]).round(4))
    for study in records["fold_study"]:
        points = model_selection.fold_study_points(study)
        if not points.empty:
            lines.append(f"How many folds: {study.method} on {study.backbone}, {study.metric.replace('_', ' ')} "
                         "estimated with each fold count, its spread across repeated fold assignments, its bias "
                         "against the held-out test score and the fit time:\n")
            shown = points[["folds", "folds are", "repeats", "estimate", "spread_sd", "bias", "seconds"]].round(4)
            lines += _markdown_table(shown.astype(object).where(shown.notna(), ""))
    for tuning in records["tuning"]:
        done = sum(t["state"] == "COMPLETE" for t in tuning.trials)
        best = tuning.best
        if best:
            lines.append(f"Tuning (`python -m core tune`, study `{tuning.study}`): {done} complete trials; objective "
                         f"{tuning.objective['metric']} on {tuning.objective['source']}; best trial "
                         f"{best['number']} scored {best['value']:.4f}:\n")
            lines += _markdown_table(model_selection.best_settings(tuning))
    versus = model_selection.tuned_vs_default(ranking.configurations(df))
    if not versus.empty:
        lines.append("Tuned against default configurations (mean over seeds, 95% interval, on the same test split):\n")
        lines += _markdown_table(versus.round(4))
    return lines


README_BEGIN = "<!-- results:begin (python -m core report --readme README.md) -->"
README_END = "<!-- results:end -->"


def update_readme(readme: Path, root: Path | None = None) -> bool:
    """Replace the text between the results markers of ``readme``; True if it changed."""
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise UserError(f"{readme} has no results markers ({README_BEGIN} ... {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_BEGIN}\n{markdown_results(root)}\n{README_END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
        return True
    return False
