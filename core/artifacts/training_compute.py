"""The Training page's "against the machine's limit" table: each network stage's FLOPs per epoch over its
median epoch time, against the machine's matmul peak (from provenance ``details[stage]["compute"]``, written
by :func:`core.models.compute.stage_compute`; reads stored records only, no TensorFlow)."""

from __future__ import annotations

import pandas as pd

from core.formatting import finite_number

STAGES = {"stage1": "stage 1 (head)", "stage2": "stage 2 (fine-tuning)", "scratch": "from scratch"}
NOT_RECORDED = "not recorded"
COLUMNS = ("run", "stage", "GFLOPs per epoch", "median epoch (s)", "achieved GFLOP/s", "peak GFLOP/s",
           "fraction of peak", "note")
HOW_TO_READ = ("Training FLOPs per epoch (forward plus backward, counted from the layer shapes; validation "
               "forward only) over the median epoch time, against the machine's float32 matmul peak with the "
               "threads TensorFlow uses. Well below peak, the stage is starved: input-bound or overhead-bound "
               "(reading cached rows, tf.data, Python per batch, small layers); near peak, it is compute-bound "
               "and only fewer FLOPs (a smaller model, fewer samples per epoch) make it faster. Runs trained "
               "before this was measured show \"not recorded\".")


def compute_table(runs: list[tuple[str, dict | None]]) -> pd.DataFrame:
    """One row per run and network stage from ``(label, provenance)`` pairs; a stage (or a run, provenance
    None) without a stored ``compute`` block is one row marked "not recorded"."""
    rows = []
    for label, prov in runs:
        details = (prov or {}).get("details") or {}
        stages = [s for s in STAGES if isinstance(details.get(s), dict)]
        if not stages:
            rows.append(_row(label, "", None))
        rows.extend(_row(label, STAGES[s], details[s].get("compute")) for s in stages)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(label: str, stage: str, block: dict | None) -> dict:
    if not isinstance(block, dict):
        return {**dict.fromkeys(COLUMNS, ""), "run": label, "stage": stage, "note": NOT_RECORDED}
    fraction = finite_number(block.get("fraction_of_peak"))
    return {"run": label, "stage": stage,
            "GFLOPs per epoch": _amount(block.get("gflops_per_epoch")),
            "median epoch (s)": _amount(block.get("median_epoch_seconds")),
            "achieved GFLOP/s": _amount(block.get("achieved_gflops_per_s")),
            "peak GFLOP/s": _amount(block.get("peak_gflops_per_s")),
            "fraction of peak": "" if fraction is None else f"{fraction:.1%}",
            "note": f"peak with {block['peak_threads']} thread(s)" if block.get("peak_threads") else ""}


def _amount(value) -> str:
    """Whole numbers from 100 up, 2 decimals from 1, 3 significant digits below; empty when missing."""
    value = finite_number(value)
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
