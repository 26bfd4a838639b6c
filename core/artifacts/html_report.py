"""The study's report as one self-contained HTML file a supervisor can read offline.

Sections: date and data, the audit's verdict, the configurations and single runs with
their intervals (and the leak-free scores where the test split leaks), per-class results
and the most-confused pairs, calibration, deployment (table and Pareto chart), the planned
significance tests, and the methods with the command behind each run. Charts are Altair
charts rendered to inline SVG by ``vl-convert``; nothing is loaded from elsewhere.
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import altair as alt
import pandas as pd
import vl_convert

from core.artifacts import charts, deployment_view, naming, ranking, record_view, report
from core.artifacts.records import RecordError

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1em}td,th{border:1px solid #ccc;"
         "padding:3px 6px;text-align:left}th{background:#f3f3f3}code,pre{background:#f6f6f6;padding:2px 4px;"
         "white-space:pre-wrap;word-break:break-all}p.note{color:#555;font-size:13px}svg{max-width:100%;height:auto}")
CHART_WIDTH = 640
MAX_CLASSES_LISTED = 30
CALIBRATION_CURVES = 4  # reliability curves drawn (the best runs): more are unreadable in one chart


def _esc(text) -> str:
    return html.escape(str(text))


def _p(text: str, cls: str | None = None) -> str:
    """A paragraph of plain text, with the Markdown of the shared captions (**bold**, `code`) kept."""
    body = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _esc(text))
    body = re.sub(r"`(.+?)`", r"<code>\1</code>", body)
    return f"<p class='{cls}'>{body}</p>" if cls else f"<p>{body}</p>"


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, na_rep="", border=0)


def svg(chart: alt.TopLevelMixin) -> str:
    """An Altair chart as inline SVG (no scripts, no external resources)."""
    return vl_convert.vegalite_to_svg(chart.to_json())


def _header(dataset: str, df: pd.DataFrame, root: Path | None) -> list[str]:
    """Title, date and what the data is: classes and images per split."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>Transfer-learning study: {_esc(dataset)}</h1>", _p(f"Report generated {now} from the stored "
                                                                      "results; every number below is read from them.")]
    if df.empty:
        return parts
    prov = record_view.provenance(df.iloc[0]["path"])
    data = prov.get("dataset") or {}
    classes = list(data.get("classes") or [])
    listed = ", ".join(classes[:MAX_CLASSES_LISTED]) + (" ..." if len(classes) > MAX_CLASSES_LISTED else "")
    counts = data.get("counts") or {}
    splits = ", ".join(f"{split} {n}" for split, n in counts.items())
    parts.append("<h2>Data</h2>")
    parts.append(_p(f"{len(classes)} classes ({listed}). Images per split: {splits or 'unknown'}"
                    f"{' (split file ' + str(data.get('split_file')) + ')' if data.get('split_file') else ''}. "
                    f"{report.test_split_caption(df)}."))
    return parts


def _audit(dataset: str, root: Path | None) -> list[str]:
    parts = ["<h2>Data audit</h2>"]
    try:
        audit = record_view.audit(dataset, root)
    except RecordError as exc:
        return parts + [_p(f"The stored audit could not be read: {exc}")]
    if not audit:
        return parts + [_p("No audit: duplicates, leakage between splits and conflicting labels were not checked "
                           "(`python -m core audit` checks them).")]
    verdict = audit["verdict"]
    messages = verdict.get("messages") or []
    parts.append(_p("Verdict: " + ("clean: no leakage, conflicting labels or corrupt files found."
                                   if verdict.get("clean") else "; ".join(messages) + ".")))
    rows = [("Test or val images with a near-copy in train (leakage pairs)", verdict.get("leakage_pairs")),
            ("Near-copies with conflicting labels", verdict.get("conflicting_label_pairs")),
            ("Near-copies within one split", verdict.get("within_split_pairs")),
            ("Corrupt files", verdict.get("corrupt_files")),
            ("Largest / smallest class", verdict.get("imbalance_ratio"))]
    return parts + [_table(pd.DataFrame([(check, "" if n is None else str(n)) for check, n in rows],
                                        columns=["Check", "Found"]))]


def _interval_chart(top: pd.DataFrame, metric: str) -> str:
    """Dot and 95% interval of each configuration."""
    data = top.dropna(subset=[metric])[["label", metric, f"{metric}_low", f"{metric}_high"]].copy()
    if data.empty:
        return ""
    data["low"] = data[f"{metric}_low"].fillna(data[metric])
    data["high"] = data[f"{metric}_high"].fillna(data[metric])
    lo, hi = float(data["low"].min()), float(data["high"].max())
    pad = max((hi - lo) * 0.08, 0.01)
    order = list(data.sort_values(metric, ascending=False)["label"])
    x = alt.X("low:Q", title=naming.metric_label(metric), scale=alt.Scale(domain=[lo - pad, hi + pad], nice=False))
    y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=360))
    base = alt.Chart(data)
    chart = base.mark_rule().encode(x=x, x2="high:Q", y=y) + base.mark_point(filled=True, size=60).encode(
        x=f"{metric}:Q", y=alt.Y("label:N", sort=order))
    return svg(chart.properties(width=CHART_WIDTH - 300, height=24 * len(data)))


def _results(df: pd.DataFrame, comparison: dict | None) -> list[str]:
    metric = report.DEFAULT_METRIC
    configs = ranking.configurations(df)
    top = ranking.ranked(configs, metric)
    _, note = ranking.ranking_preset(configs)
    parts = ["<h2>Configurations</h2>",
             _p(f"Runs that differ only by seed, ranked by mean {naming.metric_label(metric).lower()}: "
                f"{ranking.interval_caption(top)}.{' ' + note if note else ''}"),
             _table(report.configurations_table(top, metric))]
    caption = report.leak_free_caption(df)
    if caption:
        parts.append(_p(caption, "note"))
    rec = ranking.recommend(configs, metric=metric, comparison=comparison)
    parts.append(_p("Recommendation: " + report.recommendation_paragraph(rec)))
    parts.append(f"<h3>{_esc(naming.metric_label(metric))} of each configuration with its 95% interval</h3>")
    parts.append(_interval_chart(top, metric))
    parts.append("<h2>Single runs</h2>")
    parts.append(_p(f"Metrics: value [95% bootstrap CI, {ranking.bootstrap_unit(df)}]."))
    parts.append(_table(report.leaderboard(df)))
    return parts


def _by_score(df: pd.DataFrame) -> pd.DataFrame:
    """Runs on the largest test sample (a quick run's subsample is not comparable), best headline metric first."""
    whole = df[df["n_test"] == df["n_test"].max()]
    return whole.sort_values(report.DEFAULT_METRIC, ascending=False, na_position="last")


def _best_run(df: pd.DataFrame) -> pd.Series:
    """The run the per-class and deployment sections describe."""
    return _by_score(df).iloc[0]


def _per_class(df: pd.DataFrame) -> list[str]:
    run = _best_run(df)
    metrics = record_view.metrics(run["path"])
    table = record_view.per_class_with_leak_free(metrics, record_view.leakage(run["path"]))
    for column in table.columns:
        if column not in ("class", "support", "leak-free support"):
            table[column] = table[column].map(lambda v: "" if v is None or v != v else f"{v:.3f}")
    confused = charts.most_confused_pairs(metrics, top=10)
    confused["share of true class"] = confused["share of true class"].map(lambda v: f"{v:.1%}")
    parts = ["<h2>Per-class results</h2>",
             _p(f"Of the run with the best {naming.metric_label(report.DEFAULT_METRIC).lower()}: {run['label']}.")]
    parts.append(_table(table))
    parts.append("<h3>Most-confused pairs</h3>")
    parts.append(_table(confused.rename(columns=str.capitalize)) if not confused.empty
                 else _p("No test image was misclassified."))
    return parts


def _calibration(df: pd.DataFrame) -> list[str]:
    rows, bins = [], []
    drawn = set(_by_score(df)["label"][:CALIBRATION_CURVES])
    for _, run in df.iterrows():
        cal = record_view.metrics(run["path"])["calibration"]
        rows.append({"Run": run["label"], "ECE": f"{cal['ece']:.3f}", "MCE": f"{cal['mce']:.3f}",
                     "Mean confidence": f"{cal['mean_confidence']:.3f}", "Accuracy": f"{run['accuracy']:.3f}"})
        if run["label"] in drawn:
            bins += [{"run": run["label"], "confidence": b["mean_confidence"], "accuracy": b["accuracy"],
                      "images": b["count"]} for b in cal["bins"] if b["count"]]
    parts = ["<h2>Calibration</h2>",
             _p("ECE: the gap between confidence and accuracy, averaged over confidence bins weighted by their "
                "images; MCE: the largest gap of any bin (one small bin can set it). In the chart (the "
                f"{len(drawn)} best runs), points on the diagonal are calibrated; point size is the bin's images."),
             _table(pd.DataFrame(rows))]
    if bins:
        data = pd.DataFrame(bins)
        diagonal = alt.Chart(pd.DataFrame({"confidence": [0, 1], "accuracy": [0, 1]})).mark_line(
            color="#999", strokeDash=[4, 4]).encode(x="confidence:Q", y="accuracy:Q")
        curves = alt.Chart(data).mark_line(point=True).encode(
            x=alt.X("confidence:Q", title="mean confidence in the bin", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("accuracy:Q", title="accuracy in the bin", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("run:N", legend=alt.Legend(labelLimit=400, orient="bottom", columns=1)))
        sizes = alt.Chart(data).mark_point(filled=True).encode(
            x="confidence:Q", y="accuracy:Q", color="run:N", size=alt.Size("images:Q", title="images"))
        parts.append(svg((diagonal + curves + sizes).properties(width=CHART_WIDTH - 200, height=360)))
    return parts


def _deployment(df: pd.DataFrame) -> list[str]:
    rows = deployment_view.variant_rows([(r["label"], record_view.deployment(r["path"])) for _, r in df.iterrows()])
    parts = ["<h2>Deployment</h2>"]
    if rows.empty:
        return parts + [_p("No run has deployment measurements (`python -m core deploy RUN_DIR` makes them).")]
    run = _best_run(df[df["label"].isin(rows["run"])])
    shown = rows[rows["run"] == run["label"]]
    parts.append(_p(f"Every variant of {run['label']}: size, test accuracy through LiteRT and batch-1 latency."))
    parts.append(_table(deployment_view.variant_table(shown)))
    parts.append(_p(deployment_view.change_caption(shown), "note"))
    x, title = deployment_view.PARETO_AXES[0]
    chart = deployment_view.pareto_chart(rows, x, title)
    if chart is not None:
        parts.append("<h3>Accuracy against size, all runs and variants</h3>")
        parts.append(_p("Up and to the left is better; the dashed line joins the points no other point beats on "
                        "both axes.", "note"))
        parts.append(svg(chart.properties(width=CHART_WIDTH)))
    return parts


def _significance(dataset: str, df: pd.DataFrame, root: Path | None) -> list[str]:
    parts = ["<h2>Significance</h2>"]
    if len(df) < 2:
        return parts + [_p("A comparison needs two runs; this report has one.")]
    try:
        comparison = record_view.mcnemar(dataset, root)
    except RecordError as exc:
        return parts + [_p(f"The stored comparison could not be read: {exc}")]
    if comparison is None:
        return parts + [_p(f"No comparison stored: `python -m core compare {dataset}` makes it.")]
    family = ranking.planned_family(df, comparison)
    if family.empty:
        return parts + [_p("No planned comparison among these runs: it needs two configurations of the same preset.")]
    table = pd.DataFrame({
        "Comparison": family["comparison"], "A": family["a"], "B": family["b"],
        "A − B accuracy (pp) [95% paired CI]": [deployment_view.fmt_pp_interval(d, lo, hi) for d, lo, hi in zip(
            family["difference"], family["difference_low"], family["difference_high"])],
        "McNemar p (Holm)": family["p_holm"].map(lambda v: "" if v is None or v != v else f"{v:.3g}"),
        "Significant": family["significant"].map(lambda v: "" if v is None or v != v else "yes" if v else "no"),
        "Note": family["reason"].fillna("")})
    parts.append(_p("McNemar's test on the same test images, Holm-corrected within the planned family (every "
                    "configuration against the recommended one, transfer against each baseline); next to it the "
                    "accuracy difference with a paired bootstrap interval."))
    return parts + [_table(table)]


def _methods(df: pd.DataFrame, reproduce: Callable[[dict], str] | None) -> list[str]:
    parts = ["<h2>Methods and reproduction</h2>",
             _p("Each run is reproduced by its command, from the repository root at the commit shown, with the "
                "pinned requirements; the run id hashes every setting, so the command lands in the same folder.")]
    rows = []
    for _, run in df.iterrows():
        config = record_view.config(run["path"])
        if run.get("kind") == ranking.ENSEMBLE:
            command = report.ensemble_command(config)
        else:
            command = reproduce(config) if reproduce else "(not given)"
        seconds = run.get("wall_time_s")
        rows.append({"Run": run["label"], "Commit": run.get("git_commit") or "unknown",
                     "Wall time": "" if seconds is None or seconds != seconds else f"{seconds / 60:.1f} min",
                     "Command": command})
    return parts + [_table(pd.DataFrame(rows))]


def static_html(dataset: str, root: Path | None = None, runs: pd.DataFrame | None = None,
                reproduce: Callable[[dict], str] | None = None) -> str:
    """The dataset's report as one self-contained HTML page.

    ``runs``: the rows of :func:`report.runs_table` to include (default: every complete run).
    ``reproduce``: the function that turns a run's config into its command
    (``core.train.config.reproduce_command``, a layer above this one).
    """
    df = report.runs_table(dataset, root) if runs is None else runs
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_esc(dataset)}: transfer-learning "
             f"study</title><style>{STYLE}</style></head><body>"]
    parts += _header(dataset, df, root)
    parts += _audit(dataset, root)
    if df.empty:
        parts.append(_p("No complete runs: nothing was trained on this dataset yet."))
    else:
        comparison = (record_view.mcnemar(dataset, root) or {}).get("configurations")
        for section in (_results(df, comparison), _per_class(df), _calibration(df), _deployment(df),
                        _significance(dataset, df, root), _methods(df, reproduce)):
            parts += section
    parts.append("</body></html>")
    return "".join(parts)
