"""Load stored results into tables for the report app and the README (no TensorFlow).

Everything here reads files under ``artifacts/`` written by the rest of ``core`` and
returns plain pandas DataFrames or dicts: the pages only draw what this module gives.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
from pathlib import Path

import pandas as pd

from core.artifacts import config as config_mod
from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    ARCHITECTURES_DIR,
    AUDIT_FILE,
    COMPLETE_MARKER,
    CONFIG_FILE,
    DEPLOYMENT_FILE,
    DIAGNOSTICS_DIR,
    EXPERIMENT_LOG,
    MCNEMAR_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    SPLITS_DIR,
    UNAVAILABLE_FILE,
    artifacts_dir,
    complete_runs,
    dataset_of_run,
    deployment_file,
)
from core.artifacts.records import (
    AuditRecord,
    BatchNormDiagnosis,
    ComparisonRecord,
    DeploymentRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    RecordError,
    SplitRecord,
    UnavailableRecord,
    read_experiment_log,
)
from core.artifacts.runs import HISTORY_COLUMNS, RunFolder
from core.errors import UserError

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
METRIC_LABELS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro-F1",
                 "macro_auc": "Macro AUC"}


def datasets(root: Path | None = None) -> list[str]:
    """Dataset folders under artifacts/ that hold a complete run, an audit or runs waiting for weights."""
    root = Path(root or artifacts_dir())
    if not root.is_dir():
        return []
    found = {r.parent.parent.name for r in complete_runs(root)}
    found |= {p.parent.name for p in root.glob(f"*/{AUDIT_FILE}")}
    found |= {p.parent.name for p in root.glob(f"*/{UNAVAILABLE_FILE}")}
    return sorted(found)


def run_kind(method: str, weights: str) -> str:
    """'transfer', 'scratch', or the baseline's name."""
    return method if method != "finetune" else ("scratch" if weights == "none" else "transfer")


def run_labels(configs: list[dict]) -> list[str]:
    """Short human labels (backbone · kind · preset · seed), one per run config, unique among them.

    Runs that would share a label (same backbone, kind, preset and seed, other settings
    different) get the settings that tell them apart appended, e.g. ``scratch.epochs=40``.
    """
    labels = [f"{c['backbone']} · {run_kind(c.get('method', 'finetune'), c['weights'])} · {c['preset']} · seed {c['seed']}"
              for c in configs]
    flat = [config_mod.flatten({k: v for k, v in c.items() if k != "dataset"}) for c in configs]
    for label in set(labels):
        members = [i for i, lab in enumerate(labels) if lab == label]
        if len(members) < 2:
            continue
        keys = sorted({k for i in members for k in flat[i]})
        differing = [k for k in keys if len({json.dumps(flat[i].get(k)) for i in members}) > 1]
        for i in members:
            extra = ", ".join(f"{k}={_setting_text(flat[i].get(k))}" for k in differing)
            labels[i] = f"{label} · {extra}" if extra else labels[i]
    # Identical settings (the same run made twice): number them so no two rows share a label.
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} · #{seen[label]}"
    return labels


def _setting_text(value) -> str:
    """A setting's value in a label; unset (null, or missing from an older run's config) is 'default'."""
    return "default" if value is None else str(value)


def dataset_runs(dataset: str, root: Path | None = None,
                 problems: list[str] | None = None) -> list[tuple[Path, dict]]:
    """(folder, stored config) of every complete run of ``dataset``.

    With ``problems``, a run whose config cannot be read is left out and its one-line
    reason appended there; without, the :class:`~core.artifacts.records.RecordError` is raised.
    """
    out = []
    for run in complete_runs(Path(root or artifacts_dir())):
        if dataset_of_run(run) != dataset:
            continue
        try:
            out.append((run, RunConfig.load(run / CONFIG_FILE).to_dict()))
        except RecordError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return out


def unreadable(df: pd.DataFrame) -> list[str]:
    """The runs :func:`runs_table` left out because a stored file could not be read, one line each."""
    return list(df.attrs.get("unreadable", []))


def runs_table(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """One row per complete run of a dataset: settings, headline metrics with CIs, costs.

    A run with a stored file that cannot be read is left out, and the reason is listed in
    :func:`unreadable` of the table: one bad file never hides the other runs.
    """
    rows, configs, problems = [], [], []
    for run, cfg in dataset_runs(dataset, root, problems):
        try:
            row = _run_row(dataset, run, cfg)
        except RecordError as exc:
            problems.append(str(exc))
            continue
        configs.append(cfg)
        rows.append(row)
    for row, label in zip(rows, run_labels(configs)):
        row["label"] = label
    df = pd.DataFrame(rows)
    if not df.empty:
        # Runs on the whole test split first: a subsampled (quick) run's score is not comparable.
        df = df.sort_values(["n_test", "accuracy", "macro_f1"], ascending=False, ignore_index=True)
    df.attrs["unreadable"] = problems
    return df


def _run_row(dataset: str, run: Path, cfg: dict) -> dict:
    """The leaderboard row of one run (raises RecordError if one of its files cannot be read)."""
    metrics = MetricsRecord.load(run / METRICS_FILE)
    prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
    row = {
        "dataset": dataset, "backbone": cfg["backbone"], "run_id": run.name, "path": str(run),
        "weights": cfg["weights"], "method": cfg.get("method", "finetune"), "preset": cfg["preset"],
        "seed": cfg["seed"], "n_test": metrics.n, "ece": metrics.calibration["ece"],
        "settings_key": _settings_key(cfg),
        "wall_time_s": prov.wall_time_s or sum(prov.timings_s.values()) or None,
        "test_split": _test_split_size(run, prov),
        "git_commit": (prov.code or {}).get("git_commit"),
    }
    boot = metrics.bootstrap["metrics"]
    for m in METRICS:
        value = metrics.roc["macro_auc"] if m == "macro_auc" else getattr(metrics, m)
        row[m] = value
        row[f"{m}_low"] = boot.get(m, {}).get("low")
        row[f"{m}_high"] = boot.get(m, {}).get("high")
    row.update(_deployment_summary(run))
    row["kind"] = run_kind(row["method"], row["weights"])
    return row


def _test_split_size(run: Path, prov: ProvenanceRecord) -> int | None:
    """Images in the whole test split the run drew from (a quick run evaluates a subsample of it)."""
    split_file = prov.split_file
    path = (run / split_file).resolve() if split_file else None
    if path is None or not path.is_file():
        return None
    return _count_test_items(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _count_test_items(path: str, mtime_ns: int) -> int:
    return SplitRecord.load(path).test_size()


def _settings_key(cfg: dict) -> str:
    """Identifies a run's settings apart from its seed: runs sharing it differ only by seed."""
    rest = config_mod.identity_settings(cfg, ["seed", "dataset"])
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]


def _deployment_summary(run: Path) -> dict:
    """Sizes and latency from deploy/deployment.json when the run was deployed."""
    path = deployment_file(run)
    variants = {v["name"]: v for v in DeploymentRecord.load(path).variants} if path.is_file() else {}
    return {"deployed": path.is_file(), **_variant_summary(variants)}


def _variant_summary(variants: dict[str, dict]) -> dict:
    def mb(name):
        v = variants.get(name)
        return v["bytes"] / 1e6 if v and v.get("status") == "ok" and v.get("bytes") else None

    def latency(name):
        v = variants.get(name) or {}
        return ((v.get("latency") or {}).get("threads_1") or {}).get("median_ms")

    return {"keras_mb": mb("keras"), "tflite_f32_mb": mb("tflite_float32"), "f16_mb": mb("tflite_float16"),
            "int8_mb": mb("tflite_int8_full"), "latency_ms": latency("tflite_float32"),
            "int8_latency_ms": latency("tflite_int8_full"),
            "int8_accuracy": ((variants.get("tflite_int8_full") or {}).get("metrics") or {}).get("accuracy")}


def architectures(root: Path | None = None) -> pd.DataFrame:
    """Backbones measured without a run (random weights): sizes, FLOPs and latency per backbone."""
    root = Path(root or artifacts_dir())
    rows = []
    for path in sorted(root.glob(f"{ARCHITECTURES_DIR}/*/{DEPLOYMENT_FILE}")):
        doc = DeploymentRecord.load(path)
        summary = _variant_summary({v["name"]: v for v in doc.variants})
        rows.append({"backbone": doc.backbone, "input_size": doc.input_size,
                     "classes": len(doc.classes or []) or None,
                     "gflops": (doc.flops or {}).get("gflops"),
                     "accuracy_reason": (doc.parent or {}).get("metrics_reason"),
                     "measured_at": doc.updated_at, "path": str(path.parent), **summary})
    return pd.DataFrame(rows)


def waiting_runs(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """Runs of a dataset the study could not train here (no ImageNet weights), with their architecture costs.

    From ``<dataset>/unavailable.json`` (written by ``python -m core experiment``); a run
    completed since then is left out.
    """
    root = Path(root or artifacts_dir())
    path = root / dataset / UNAVAILABLE_FILE
    if not path.is_file():
        return pd.DataFrame()
    arch = architectures(root)
    costs = {r["backbone"]: r for r in arch.to_dict("records")} if not arch.empty else {}
    rows = []
    for entry in UnavailableRecord.load(path).runs:
        if (root / entry["run_dir"] / COMPLETE_MARKER).is_file():
            continue
        cost = costs.get(entry["backbone"], {})
        rows.append({**entry, **{k: cost.get(k) for k in ("tflite_f32_mb", "int8_mb", "latency_ms", "int8_latency_ms",
                                                          "gflops")}})
    return pd.DataFrame(rows)


def waiting_table(waiting: pd.DataFrame) -> pd.DataFrame:
    """The rows readers see for runs waiting for weights: what is known, and the command that fills them in."""
    if waiting.empty:
        return waiting
    return pd.DataFrame({
        "Backbone": waiting["backbone"],
        "Accuracy": [f"not measured: ImageNet weights were not available when these artifacts were made "
                     f"({str(t)[:10]})" for t in waiting["recorded_at"]],
        "Size (MB, TFLite f32)": waiting["tflite_f32_mb"].map(_fmt_num),
        "int8 size (MB)": waiting["int8_mb"].map(_fmt_num),
        "Latency (ms, 1 thread)": waiting["latency_ms"].map(_fmt_num),
        "Fill in with": waiting["command"],
    })


def seed_spread(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Seed-to-seed spread of every backbone/method with two or more seeds (same preset), next to the CI width.

    The bootstrap CI is about the test sample; the seed spread is about training
    randomness (head init, augmentation, batch order): both belong in a comparison.
    """
    if df.empty:
        return pd.DataFrame()
    rows = []
    for (backbone, method, weights, preset, _), group in df.groupby(
            ["backbone", "method", "weights", "preset", "settings_key"]):
        if group["seed"].nunique() < 2:
            continue
        values = group[metric].astype(float)
        widths = (group[f"{metric}_high"] - group[f"{metric}_low"]).astype(float)
        rows.append({"Backbone": backbone, "Kind": run_kind(method, weights), "Preset": preset,
                     "Seeds": ", ".join(str(s) for s in sorted(group["seed"])),
                     f"Mean {METRIC_LABELS[metric].lower()}": f"{values.mean():.3f}",
                     "SD across seeds": f"{values.std(ddof=1):.3f}",
                     "Range": f"{values.min():.3f} to {values.max():.3f}",
                     "Mean 95% CI width": f"{widths.mean():.3f}"})
    return pd.DataFrame(rows)


def test_split_caption(df: pd.DataFrame) -> str:
    """How many runs and test images: from the splits the runs recorded, not from the runs' own counts."""
    sizes = sorted({int(v) for v in df["test_split"].dropna()}) if "test_split" in df else []
    split = (f"the test split has {sizes[0]} images" if len(sizes) == 1 else
             f"the runs used test splits of {', '.join(map(str, sizes))} images" if sizes else "test split size unknown")
    fewer = int((df["n_test"] < df["test_split"].fillna(0)).sum()) if "test_split" in df else 0
    sub = f"; {fewer} run(s) were evaluated on a subsample of it (quick preset): compare like with like" if fewer else ""
    return f"{len(df)} complete runs; {split}{sub}"


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard shown to readers: metrics as 'value [low, high]' strings plus costs."""
    if df.empty:
        return df
    out = pd.DataFrame({"Run": df["label"], "Test images": df["n_test"].astype(int)})
    for m in METRICS:
        out[METRIC_LABELS[m]] = [format_ci(v, lo, hi) for v, lo, hi in zip(df[m], df[f"{m}_low"], df[f"{m}_high"])]
    out["ECE"] = df["ece"].map(lambda v: "" if v is None else f"{v:.3f}")
    out["Size (MB, TFLite f32)"] = df["tflite_f32_mb"].map(_fmt_num)
    out["int8 size (MB)"] = df["int8_mb"].map(_fmt_num)
    out["Latency (ms, 1 thread)"] = df["latency_ms"].map(_fmt_num)
    out["int8 latency (ms)"] = df["int8_latency_ms"].map(_fmt_num)
    return out


def format_ci(value, low, high) -> str:
    """``0.938 [0.918, 0.956]``; empty when undefined."""
    if value is None or value != value:
        return ""
    if low is None or high is None or low != low:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _fmt_num(v) -> str:
    return "" if v is None or v != v else f"{v:.2f}"


def no_recommendation_reason(df: pd.DataFrame) -> str:
    """Why :func:`recommend` found nothing: no deployment yet, no working int8 model, or the limits."""
    if "deployed" not in df or not df["deployed"].any():
        return "No run has deployment measurements yet (`python -m core deploy RUN_DIR`)."
    if df["int8_mb"].isna().all():
        return ("No deployed run has a working full-int8 model (its conversion or measurement failed: the "
                "Deployment page gives the reason), so size and latency limits cannot be checked.")
    smallest, fastest = df["int8_mb"].min(), df["int8_latency_ms"].min()
    speed = (f" and the fastest takes {fastest:.1f} ms" if pd.notna(fastest)
             else "; no int8 latency was measured, so a latency limit excludes every run")
    return f"No deployed run fits these limits: the smallest full-int8 model is {smallest:.2f} MB{speed}."


def recommend(df: pd.DataFrame, max_mb: float | None, max_ms: float | None,
              metric: str = "balanced_accuracy") -> pd.Series | None:
    """The best run by ``metric`` whose int8 size and latency fit the limits (None if none fits)."""
    if df.empty:
        return None
    ok = pd.Series(True, index=df.index)
    if max_mb is not None:
        ok &= df["int8_mb"].notna() & (df["int8_mb"] <= max_mb)
    if max_ms is not None:
        ok &= df["int8_latency_ms"].notna() & (df["int8_latency_ms"] <= max_ms)
    fitting = df[ok]
    return None if fitting.empty else fitting.sort_values(metric, ascending=False).iloc[0]


def history(run_path: str | Path) -> pd.DataFrame:
    """Epoch history with a global epoch counter across stages."""
    rows = RunFolder(Path(run_path)).read_history()
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    for column in HISTORY_COLUMNS[1:]:  # every column but the stage's name is a number (empty: missing)
        df[column] = pd.to_numeric(df[column], errors="coerce")
    df["step"] = range(1, len(df) + 1)
    return df


def metrics(run_path: str | Path) -> dict:
    """A run's test metrics (metrics.json) as plain data."""
    return MetricsRecord.load(Path(run_path) / METRICS_FILE).to_dict()


def config(run_path: str | Path) -> dict:
    """A run's stored settings (config.json) as plain data."""
    return RunConfig.load(Path(run_path) / CONFIG_FILE).to_dict()


def provenance(run_path: str | Path) -> dict:
    """A run's provenance (provenance.json) as plain data."""
    return ProvenanceRecord.load(Path(run_path) / PROVENANCE_FILE).to_dict()


def predictions(run_path: str | Path) -> pd.DataFrame:
    """Per-image predictions; class names stay strings (a class called 'None' or 'NA' is not missing)."""
    table = Predictions.load(Path(run_path) / PREDICTIONS_FILE)
    df = pd.DataFrame({"id": table.ids, "true": table.true, "pred": table.pred})
    for i, name in enumerate(table.classes):
        df[f"p_{name}"] = table.probs[:, i]
    return df


def confusion_cells(metrics: dict, normalised: bool) -> pd.DataFrame:
    """The confusion matrix of a run's metrics as one row per (true, predicted) class name.

    ``value`` is the row-normalised share (recall per true class) or the count; a class
    with no test images has no normalised row, so its cells are empty, not zero.
    """
    cm, names = metrics["confusion_matrix"], metrics["classes"]
    rows = []
    for i, true in enumerate(names):
        for j, pred in enumerate(names):
            count = cm["counts"][i][j]
            share = cm["normalized"][i][j] if cm["normalized"][i] is not None else None
            rows.append({"true": true, "predicted": pred, "count": count,
                         "value": share if normalised else count})
    return pd.DataFrame(rows)


def deployment(run_path: str | Path) -> dict | None:
    path = deployment_file(Path(run_path))
    return DeploymentRecord.load(path).to_dict() if path.is_file() else None


def audit(dataset: str, root: Path | None = None) -> dict | None:
    path = Path(root or artifacts_dir()) / dataset / AUDIT_FILE
    return AuditRecord.load(path).to_dict() if path.is_file() else None


def mcnemar(dataset: str, root: Path | None = None) -> dict | None:
    path = Path(root or artifacts_dir()) / dataset / MCNEMAR_FILE
    return ComparisonRecord.load(path).to_dict() if path.is_file() else None


def batchnorm_diagnoses(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """One row per stored BatchNorm diagnosis (scripts/diagnose_batchnorm.py) of a dataset's runs."""
    rows = []
    for path in sorted((Path(root or artifacts_dir()) / dataset / DIAGNOSTICS_DIR).glob("batchnorm-*.json")):
        doc = BatchNormDiagnosis.load(path)
        res = doc.results
        rows.append({"run_id": doc.run, "backbone": doc.backbone, "val_images": doc.val_images,
                     "inference": res["inference"]["accuracy"],
                     "batch_statistics": res["batch_statistics"]["accuracy"],
                     "reestimated": res["reestimated"]["accuracy"],
                     "train_images": res["reestimated"]["train_images"], "command": doc.command})
    return pd.DataFrame(rows, columns=["run_id", "backbone", "val_images", "inference", "batch_statistics",
                                       "reestimated", "train_images", "command"])


def split_counts(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """Images per split and class of every stored split of the dataset (long format, one ``split_file`` each).

    A dataset split with several seeds, or whose files changed, has several split files.
    """
    files = sorted((Path(root or artifacts_dir()) / dataset / SPLITS_DIR).glob("split-*.json"))
    frames = []
    for path in files:
        items = pd.DataFrame(SplitRecord.load(path).items)
        counts = items.groupby(["split", "label"]).size().rename("images").reset_index()
        frames.append(counts.assign(split_file=path.stem))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ci_svg(df: pd.DataFrame, metric: str = "balanced_accuracy", width: int = 720) -> str:
    """A self-contained SVG dot-and-interval chart of one metric for every run."""
    rows = df.dropna(subset=[metric]).sort_values(metric)
    if rows.empty:
        return ""
    lows = rows[f"{metric}_low"].fillna(rows[metric])
    highs = rows[f"{metric}_high"].fillna(rows[metric])
    lo, hi = float(lows.min()), float(highs.max())
    pad = max((hi - lo) * 0.05, 0.005)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    left, row_h = 330, 22
    height = row_h * len(rows) + 40

    def x(v: float) -> float:
        return left + (width - left - 20) * (v - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">']
    for i, (_, r) in enumerate(rows.iterrows()):
        y = 20 + i * row_h
        low = r[f"{metric}_low"] if r[f"{metric}_low"] == r[f"{metric}_low"] and r[f"{metric}_low"] is not None else r[metric]
        high = r[f"{metric}_high"] if r[f"{metric}_high"] == r[f"{metric}_high"] and r[f"{metric}_high"] is not None else r[metric]
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{_esc(r["label"])}</text>')
        parts.append(f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y}" y2="{y}" stroke="#555"/>')
        parts.append(f'<circle cx="{x(r[metric]):.1f}" cy="{y}" r="4" fill="#1f77b4"/>')
    axis_y = height - 12
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{x(v):.1f}" y="{axis_y}" text-anchor="middle">{v:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _esc(text: str) -> str:
    return html.escape(str(text))


def static_html(dataset: str, root: Path | None = None, runs: pd.DataFrame | None = None) -> str:
    """A self-contained HTML report of a dataset: leaderboard, CI chart, audit verdict, provenance.

    ``runs``: the rows of :func:`runs_table` to include (default: every complete run).
    """
    df = runs_table(dataset, root) if runs is None else runs
    try:
        audit_report, audit_problem = audit(dataset, root), None
    except RecordError as exc:
        audit_report, audit_problem = None, str(exc)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(dataset)}: transfer-learning study</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:4px 6px}th{background:#f3f3f3}</style></head><body>",
             f"<h1>Transfer-learning study: {html.escape(dataset)}</h1>"]
    if df.empty:
        parts.append("<p>No complete runs.</p>")
    else:
        parts.append(f"<p>{len(df)} complete runs, test split of {int(df['n_test'].max())} images. "
                     "Metrics: value [95% bootstrap CI].</p>")
        parts.append(leaderboard(df).to_html(index=False, escape=True))
        parts.append("<h2>Balanced accuracy with 95% CI</h2>")
        parts.append(ci_svg(df, "balanced_accuracy"))
    if audit_report:
        v = audit_report["verdict"]
        parts.append("<h2>Data audit</h2><ul>")
        for key in ("leakage_pairs", "conflicting_label_pairs", "within_split_pairs", "corrupt_files", "imbalance_ratio"):
            parts.append(f"<li>{key.replace('_', ' ')}: {html.escape(str(v.get(key)))}</li>")
        parts.append("</ul>")
    if audit_problem:
        parts.append(f"<h2>Data audit</h2><p>Not shown: {html.escape(audit_problem)}</p>")
    if not df.empty:
        parts.append("<h2>Provenance</h2>")
        parts.append(df[["label", "run_id", "git_commit", "wall_time_s"]].to_html(index=False, escape=True))
    parts.append("</body></html>")
    return "".join(parts)


def all_metrics(dataset: str, root: Path | None = None, runs: pd.DataFrame | None = None) -> dict:
    """Config and metrics of a dataset's complete runs (or of the given ``runs`` rows), for a JSON download."""
    df = runs_table(dataset, root) if runs is None else runs
    return {"dataset": dataset, "runs": [{"run": f"{r['backbone']}/{r['run_id']}", "config": config(r["path"]),
                                          "metrics": metrics(r["path"])} for _, r in df.iterrows()]}


def estimate_seconds(backbone: str, preset: str, weights: str, n_images: int, root: Path | None = None) -> float | None:
    """Wall time of a run estimated from complete runs of the same kind stored here (None if none).

    Scales the median seconds per image of earlier runs of this backbone, preset and
    weights (all their recorded stage timings) by the new dataset's image count.
    """
    per_image = []
    for run in complete_runs(Path(root or artifacts_dir())):
        try:
            cfg = RunConfig.load(run / CONFIG_FILE).to_dict()
            prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
        except RecordError:
            continue  # the leaderboard lists it as unreadable; an estimate does without it
        if (cfg["backbone"], cfg["preset"], cfg["weights"], cfg.get("method")) != (backbone, preset, weights, "finetune"):
            continue
        images = sum((prov.dataset or {}).get("counts", {}).values())
        seconds = sum(prov.timings_s.values())
        if images and seconds:
            per_image.append(seconds / images)
    if not per_image:
        return None
    per_image.sort()
    return per_image[len(per_image) // 2] * n_images


def architecture_table(arch: pd.DataFrame) -> pd.DataFrame:
    """Readers' table of the architecture measurements (random weights: no accuracy)."""
    if arch.empty:
        return arch
    return pd.DataFrame({
        "Backbone": arch["backbone"], "Input": arch["input_size"].map(lambda v: f"{v}x{v}"),
        "GFLOPs": arch["gflops"].map(_fmt_num),
        "Keras (MB)": arch["keras_mb"].map(_fmt_num), "TFLite f32 (MB)": arch["tflite_f32_mb"].map(_fmt_num),
        "f16 (MB)": arch["f16_mb"].map(_fmt_num), "int8 (MB)": arch["int8_mb"].map(_fmt_num),
        "f32 latency (ms, 1 thread)": arch["latency_ms"].map(_fmt_num),
        "int8 latency (ms, 1 thread)": arch["int8_latency_ms"].map(_fmt_num),
    })


def machine_time(root: Path | None = None) -> dict:
    """Machine time on record, in seconds: training stages, deployment measurements, experiment sittings."""
    root = Path(root or artifacts_dir())
    training = sum(sum(_readable(ProvenanceRecord, run / PROVENANCE_FILE, ProvenanceRecord(
        code={}, libraries={}, machine={}, dataset={})).timings_s.values()) for run in complete_runs(root))
    deployment = 0.0
    for path in [deployment_file(run) for run in complete_runs(root)] + list(root.glob(f"{ARCHITECTURES_DIR}/*/{DEPLOYMENT_FILE}")):
        if not path.is_file():
            continue
        for v in _readable(DeploymentRecord, path, DeploymentRecord(kind="unreadable")).variants:
            timings = v.get("timings_s") or {}
            deployment += timings.get("total", sum(timings.values()))
    sittings: dict[str, float] = {}
    for n, entry in enumerate(read_experiment_log(root / EXPERIMENT_LOG)):
        # One entry per run finished in a sitting: its last (largest) wall time counts.
        key = entry.get("sitting") or f"line-{n}"
        sittings[key] = max(sittings.get(key, 0.0), entry.get("wall_time_s", 0.0))
    return {"training_s": training, "deployment_s": deployment, "experiment_sittings_s": sum(sittings.values()),
            "sittings": len(sittings)}


def _readable(kind, path: Path, default):
    """A record, or ``default`` when its file cannot be read (for totals that do without it)."""
    try:
        return kind.load(path)
    except RecordError:
        return default


def _markdown_table(df: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row.values) + " |")
    return lines + [""]


def markdown_results(root: Path | None = None) -> str:
    """The README "Results" tables for every dataset, generated from the stored runs."""
    root = Path(root or artifacts_dir())
    lines = []
    for dataset in datasets(root):
        df = runs_table(dataset, root)
        waiting = waiting_runs(dataset, root)
        if df.empty and waiting.empty and not unreadable(df):
            continue
        lines.append(f"### {dataset}\n")
        if not df.empty:
            lines.append(f"{test_split_caption(df)}; value [95% bootstrap CI].\n")
            lines += _markdown_table(leaderboard(df))
        if unreadable(df):
            lines.append(f"{len(unreadable(df))} run(s) could not be read and are left out: "
                         + "; ".join(unreadable(df)) + "\n")
        spread = seed_spread(df)
        if not spread.empty:
            lines.append("Seed-to-seed spread (training randomness), next to the bootstrap CI width (test-sample "
                         "randomness):\n")
            lines += _markdown_table(spread)
        if not waiting.empty:
            lines.append("Not trained here: the backbone's ImageNet weights were not on this machine. Sizes and "
                         "latency come from the architecture with random weights; the command fills in the row "
                         "on a machine that has the weights.\n")
            lines += _markdown_table(waiting_table(waiting))
    arch = architectures(root)
    if not arch.empty:
        lines.append("### Architectures measured without trained weights\n")
        lines.append("Backbone + classification head with random weights (`python -m core deploy --architecture "
                     "NAME`): sizes, FLOPs and median batch-1 latency on this machine; no accuracy.\n")
        lines += _markdown_table(architecture_table(arch))
    t = machine_time(root)
    lines.append(f"Machine time on record: training {t['training_s'] / 3600:.1f} h (stage timings of the complete "
                 f"runs), deployment measurements {t['deployment_s'] / 3600:.1f} h (per-variant timings); the experiment "
                 "sittings logged "
                 f"in experiment_log.jsonl ({t['sittings']}) add up to {t['experiment_sittings_s'] / 3600:.1f} h (each "
                 "sitting logs after every run; time after a sitting's last logged run is missing).\n")
    return "\n".join(lines)


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
