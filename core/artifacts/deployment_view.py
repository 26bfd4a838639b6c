"""The Deployment page's tables and charts, shared with the HTML report (reads stored records; no TensorFlow).

Numbers are formatted for readers: sizes in MB with 2 decimals, latency in ms with 1,
accuracy changes in percentage points with 1 and their paired interval, an empty cell
where nothing was measured. Every chart colours a variant with the same colour
(:func:`variant_colors`), whatever subset of variants it draws.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.artifacts.pareto import pareto_optimal
from core.formatting import finite_number

# The variants core.deploy makes, in its plan's order: each keeps its colour in every chart.
VARIANT_ORDER = ("keras", "tflite_float32", "tflite_float16", "tflite_int8_dynamic", "tflite_int8_full",
                 "tflite_int8_per_tensor", "pruned_50", "pruned_80", "clustered_16", "clustered_32", "qat_int8")
# Vega's tableau20: the first 11 for the known variants, the rest for any other name (in name order).
PALETTE = ("#4c78a8", "#9ecae9", "#f58518", "#ffbf79", "#54a24b", "#88d27a", "#b79a20", "#f2cf5b", "#439894",
           "#83bcb6", "#e45756", "#ff9d98", "#79706e", "#bab0ac", "#d67195", "#fcbfd2", "#b279a2", "#d6a5c9",
           "#9e765f", "#d8b5a5")
# The Pareto charts: (column, axis title).
PARETO_AXES = (("gzip_mb", "gzip size (MB, log scale)"), ("latency_1_ms", "median latency, 1 thread (ms, log scale)"))
PARENT = "keras"  # the variant every change is measured against
CHANGE_COLUMN = "Δ accuracy vs Keras (pp, 95% CI)"


def variant_colors(names) -> dict[str, str]:
    """A fixed colour per variant name: the known variants always get theirs, others the next free ones."""
    known = [n for n in VARIANT_ORDER]
    extra = sorted({str(n) for n in names} - set(known))
    colors = {name: PALETTE[i] for i, name in enumerate(known)}
    colors.update({name: PALETTE[(len(known) + i) % len(PALETTE)] for i, name in enumerate(extra)})
    return colors


def variant_scale(names) -> alt.Scale:
    """The colour scale of every chart that colours by variant (the same domain and range everywhere)."""
    colors = variant_colors(names)
    return alt.Scale(domain=list(colors), range=list(colors.values()))


def _megabytes(n_bytes) -> float | None:
    value = finite_number(n_bytes)
    return value / 1e6 if value else None


def fmt_mb(megabytes) -> str:
    """Megabytes with 2 decimals ('' when unknown)."""
    value = finite_number(megabytes)
    return "" if not value else f"{value:.2f}"


def fmt_ms(ms) -> str:
    """Milliseconds with 1 decimal ('' when unknown)."""
    value = finite_number(ms)
    return "" if value is None else f"{value:.1f}"


def fmt_pp(fraction) -> str:
    """A change of a fraction in signed percentage points with 1 decimal, e.g. ``+2.7`` ('' when unknown)."""
    value = finite_number(fraction)
    if value is None:
        return ""
    text = f"{value * 100:+.1f}"
    return "±0.0" if text in ("+0.0", "-0.0") else text


def fmt_pp_interval(difference, low, high) -> str:
    """``+2.7 [-1.1, +5.4]`` in percentage points; the bare change when there is no interval."""
    head = fmt_pp(difference)
    if not head or finite_number(low) is None or finite_number(high) is None:
        return head
    return f"{head} [{fmt_pp(low)}, {fmt_pp(high)}]"


def fmt_share(fraction, decimals: int = 1) -> str:
    """A share as a percentage ('' when unknown)."""
    value = finite_number(fraction)
    return "" if value is None else f"{value * 100:.{decimals}f}%"


def variant_rows(deployments: list[tuple[str, dict | None]]) -> pd.DataFrame:
    """One row of raw numbers per (run label, variant) of the given ``deployment.json`` contents.

    ``change``/``change_low``/``change_high`` are the variant's accuracy minus the Keras
    model's with the paired interval (``accuracy_change_vs_parent``); a record made before the
    interval existed gives the change without one.
    """
    rows = []
    for label, dep in deployments:
        for v in (dep or {}).get("variants", []):
            latency = v.get("latency") or {}
            change = v.get("accuracy_change_vs_parent") or {}
            rows.append({
                "run": label, "variant": v["name"], "status": v.get("status"), "reason": v.get("reason") or "",
                "size_mb": _megabytes(v.get("bytes")), "gzip_mb": _megabytes(v.get("gzip_bytes")),
                "accuracy": finite_number((v.get("metrics") or {}).get("accuracy")),
                "change": finite_number(change.get("difference", (v.get("delta_vs_parent") or {}).get("accuracy"))),
                "change_low": finite_number(change.get("low")), "change_high": finite_number(change.get("high")),
                "change_unit": change.get("unit"), "agreement": finite_number(v.get("agreement_with_parent")),
                "latency_1_ms": finite_number((latency.get("threads_1") or {}).get("median_ms")),
                "latency_all_ms": finite_number((latency.get("threads_all") or {}).get("median_ms")),
                "fraction_of_peak": finite_number(v.get("fraction_of_peak")),
            })
    columns = ["run", "variant", "status", "reason", "size_mb", "gzip_mb", "accuracy", "change", "change_low",
               "change_high", "change_unit", "agreement", "latency_1_ms", "latency_all_ms", "fraction_of_peak"]
    return pd.DataFrame(rows, columns=columns)


def variant_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The readers' table of :func:`variant_rows`: every cell a formatted string, empty where not measured."""
    return pd.DataFrame({
        "Variant": rows["variant"],
        "Status": [s if s == "ok" else f"{s}: {r}" if r else str(s or "") for s, r in zip(rows["status"],
                                                                                          rows["reason"])],
        "Size (MB)": rows["size_mb"].map(fmt_mb),
        "gzip (MB)": rows["gzip_mb"].map(fmt_mb),
        "Accuracy": rows["accuracy"].map(lambda v: "" if finite_number(v) is None else f"{v:.3f}"),
        CHANGE_COLUMN: ["reference" if name == PARENT else fmt_pp_interval(d, lo, hi) for name, d, lo, hi in
                        zip(rows["variant"], rows["change"], rows["change_low"], rows["change_high"])],
        "Agrees with Keras": rows["agreement"].map(fmt_share),
        "Latency, 1 thread (ms)": rows["latency_1_ms"].map(fmt_ms),
        "Latency, all cores (ms)": rows["latency_all_ms"].map(fmt_ms),
        "Share of matmul peak": rows["fraction_of_peak"].map(lambda v: fmt_share(v, 0)),
    }).reset_index(drop=True)


def change_caption(rows: pd.DataFrame) -> str:
    """What the change and agreement columns mean, with the resampling unit the intervals used."""
    units = set(rows["change_unit"].dropna()) if "change_unit" in rows else set()
    how = ("groups of near-copies from the dataset's audit" if units == {"group"} else
           "test images" if units == {"image"} else "test images or groups of near-copies" if units else None)
    interval = (f"with its 95% paired bootstrap interval (the variant and the Keras model scored on the same "
                f"resampled {how})" if how else "no interval stored: `python -m core deploy --paired-only RUN_DIR` "
                "adds it from the stored predictions")
    return (f"Δ accuracy: the variant's test accuracy minus the Keras model's, in percentage points, {interval}. "
            "Agrees with Keras: the share of test images on which the two predict the same class.")


def _padded(values: pd.Series, log: bool) -> list[float]:
    """An axis domain around ``values`` with room at both ends, so no point sits on the chart's edge."""
    lo, hi = float(values.min()), float(values.max())
    if log:
        return [lo / 1.3, hi * 1.3]
    pad = max((hi - lo) * 0.08, 0.01)
    return [lo - pad, hi + pad]


def pareto_chart(rows: pd.DataFrame, x: str, title: str, names=None) -> alt.LayerChart | None:
    """Accuracy against ``x`` (log scale) for every measured variant, with the Pareto front (None: no points).

    ``names``: every variant name the page or report shows, so that each keeps its colour.
    """
    data = rows[(rows["status"] == "ok") & rows["accuracy"].notna() & rows[x].notna()].copy()
    data = data[data[x] > 0]
    if data.empty:
        return None
    data["pareto"] = pareto_optimal(data[x], data["accuracy"])
    data["size"] = data["gzip_mb"].map(fmt_mb)
    data["latency"] = data["latency_1_ms"].map(fmt_ms)
    data["Δ accuracy"] = [fmt_pp_interval(d, lo, hi) for d, lo, hi in
                          zip(data["change"], data["change_low"], data["change_high"])]
    scale = variant_scale(names if names is not None else rows["variant"])
    x_enc = alt.X(f"{x}:Q", title=title, scale=alt.Scale(type="log", domain=_padded(data[x], True), nice=False))
    y_enc = alt.Y("accuracy:Q", title="test accuracy", axis=alt.Axis(format=".0%"),
                  scale=alt.Scale(domain=_padded(data["accuracy"], False), nice=False, zero=False))
    points = alt.Chart(data).mark_point(filled=True, size=70, clip=False).encode(
        x=x_enc, y=y_enc, color=alt.Color("variant:N", scale=scale, title="variant"),
        shape=alt.Shape("run:N", title="run", legend=alt.Legend(labelLimit=400)),
        tooltip=["run", "variant", alt.Tooltip("accuracy:Q", format=".3f"), "Δ accuracy",
                 alt.Tooltip("size:N", title="gzip MB"), alt.Tooltip("latency:N", title="ms, 1 thread")])
    front = alt.Chart(data[data["pareto"]].sort_values(x)).mark_line(color="black", strokeDash=[3, 3]).encode(
        x=alt.X(f"{x}:Q"), y=alt.Y("accuracy:Q"), order=f"{x}:Q")
    return (points + front).properties(height=360)
