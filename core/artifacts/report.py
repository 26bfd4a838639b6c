"""Load stored results into tables for the report app and the README (no TensorFlow).

Everything here reads files under ``artifacts/`` written by the rest of ``core`` and
returns plain pandas DataFrames or dicts: the pages only draw what this module gives.
Tables across a dataset's runs live here (runs, ensembles, leaderboard, configurations, the
recommendation's wording); one run's or dataset's records read one at a time are
:mod:`core.artifacts.record_view`, labels :mod:`core.artifacts.naming`, machine time
:mod:`core.artifacts.timing`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pandas as pd

from core.artifacts import config as config_mod
from core.artifacts import convergence, ranking, record_view, scoring
from core.artifacts.config import ABSENT_MEANS, RunConfig
from core.artifacts.layout import (
    ARCHITECTURES_DIR,
    AUDIT_FILE,
    COMPLETE_MARKER,
    CONFIG_FILE,
    DEPLOYMENT_FILE,
    ENSEMBLES_DIR,
    LEAKAGE_FILE,
    METRICS_FILE,
    MODEL_SELECTION_DIR,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    UNAVAILABLE_FILE,
    VAL_PREDICTIONS_FILE,
    artifacts_dir,
    complete_runs,
    dataset_of_run,
    deployment_file,
    ensemble_folders,
    run_folders,
)
from core.artifacts.naming import (
    METRIC_LABELS,
    configuration_labels,
    metric_label,
    run_kind,
    run_labels,
    short_labels,
    variant_label,
)
from core.artifacts.records import (
    DeploymentRecord,
    EnsembleRecord,
    LeakageRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    RecordError,
    SplitRecord,
    UnavailableRecord,
)
from core.artifacts.runs import RunFolder, RunStatus
from core.formatting import finite_number

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
# What the Overview ranks by unless the reader picks another metric, and what the README ranks by.
DEFAULT_METRIC = "balanced_accuracy"


def datasets(root: Path | None = None) -> list[str]:
    """Dataset folders under artifacts/ that hold a complete or failed run, an audit, runs waiting for weights or
    a cross-validation or tuning record."""
    root = Path(root or artifacts_dir())
    if not root.is_dir():
        return []
    found = {r.parent.parent.name for r in complete_runs(root)}
    found |= {dataset_of_run(r) for r, _ in _failed_run_folders(root)}
    found |= {p.parent.name for p in root.glob(f"*/{AUDIT_FILE}")}
    found |= {p.parent.name for p in root.glob(f"*/{UNAVAILABLE_FILE}")}
    found |= {p.parent.parent.name for p in root.glob(f"*/{MODEL_SELECTION_DIR}/*.json")}
    return sorted(found)


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
    for row, label, short, configuration in zip(rows, run_labels(configs), short_labels(configs),
                                                configuration_labels(configs)):
        row["label"], row["short"], row["configuration"] = label, short, configuration
    rows += _ensemble_rows(dataset, Path(root or artifacts_dir()), {r["path"]: c for r, c in zip(rows, configs)},
                           problems)
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
    Predictions.load(run / PREDICTIONS_FILE, expected_rows=metrics.n)  # the pages and McNemar read it: it must be whole
    row = {
        "dataset": dataset, "backbone": cfg["backbone"], "run_id": run.name, "path": str(run),
        "weights": cfg["weights"], "method": cfg.get("method", "finetune"), "preset": cfg["preset"],
        "seed": cfg["seed"], "n_test": metrics.n, "ece": metrics.calibration["ece"],
        "settings_key": config_mod.settings_key(cfg),
        "wall_time_s": prov.wall_time_s or sum(prov.timings_s.values()) or None,
        "test_split": _test_split_size(run, prov),
        "git_commit": (prov.code or {}).get("git_commit"),
        "split": split_name(prov), "split_grouping": cfg.get("grouping", ABSENT_MEANS["grouping"]),
    }
    boot = metrics.bootstrap["metrics"]
    for m in METRICS:
        value = metrics.roc["macro_auc"] if m == "macro_auc" else getattr(metrics, m)
        row[m] = value
        row[f"{m}_low"] = boot.get(m, {}).get("low")
        row[f"{m}_high"] = boot.get(m, {}).get("high")
    row["ci_unit"] = metrics.bootstrap.get("unit", "image")
    row.update(_leakage_columns(run, row))
    row.update(_deployment_summary(run))
    row.update(_validation_score(run, row["method"], prov.details or {}))
    row["kind"] = run_kind(row["method"], row["weights"])
    return row


def _ensemble_rows(dataset: str, root: Path, configs: dict[str, dict], problems: list[str]) -> list[dict]:
    """Leaderboard rows of the dataset's stored ensembles (kind ``ensemble``); ``configs``: the runs' configs by
    folder, for the members' preset. An ensemble with an unreadable file is listed in ``problems``."""
    rows = []
    for folder in ensemble_folders(root / dataset):
        try:
            rows.append(_ensemble_row(dataset, folder, EnsembleRecord.load(folder / CONFIG_FILE), configs))
        except RecordError as exc:
            problems.append(str(exc))
    return rows


def _ensemble_row(dataset: str, folder: Path, record: EnsembleRecord, configs: dict[str, dict]) -> dict:
    """The leaderboard row of one ensemble: scored like a run, its cost the sum of its members'."""
    metrics = MetricsRecord.load(folder / METRICS_FILE)
    prov = ProvenanceRecord.load(folder / PROVENANCE_FILE)
    Predictions.load(folder / PREDICTIONS_FILE, expected_rows=metrics.n)
    members = [configs.get(str(folder.parent.parent / m)) or {} for m in record.member_runs()]
    presets = {c.get("preset") for c in members}
    shorts = short_labels([c for c in members if c]) if all(members) else record.member_runs()
    label = f"Ensemble · {record.weights_method} · {' + '.join(shorts)}"
    row = {"dataset": dataset, "backbone": ENSEMBLES_DIR, "run_id": folder.name, "path": str(folder),
           "weights": ranking.ENSEMBLE, "method": ranking.ENSEMBLE,
           "preset": presets.pop() if len(presets) == 1 else "mixed",
           "seed": 0, "n_test": metrics.n, "ece": metrics.calibration["ece"],
           "settings_key": hashlib.sha256(folder.name.encode()).hexdigest()[:12],
           "wall_time_s": prov.wall_time_s, "test_split": _test_split_size(folder, prov),
           "split": split_name(prov), "split_grouping": (members[0] or {}).get("grouping", ABSENT_MEANS["grouping"]),
           "git_commit": (prov.code or {}).get("git_commit"), "label": label, "configuration": label,
           "short": f"Ens {record.weights_method} ({len(members)})", "members": ", ".join(record.member_runs()),
           **{f"val_{m}": None for m in METRICS}, "val_loss": None, "val_source": None, "kind": ranking.ENSEMBLE}
    boot = metrics.bootstrap["metrics"]
    for m in METRICS:
        row[m] = metrics.roc["macro_auc"] if m == "macro_auc" else getattr(metrics, m)
        row[f"{m}_low"], row[f"{m}_high"] = boot.get(m, {}).get("low"), boot.get(m, {}).get("high")
    row["ci_unit"] = metrics.bootstrap.get("unit", "image")
    row.update(_leakage_columns(folder, row))
    row.update(_ensemble_costs(record))
    return row


def split_name(prov: ProvenanceRecord) -> str | None:
    """The name of the split a run (or ensemble) was made on: its split file's stem, None when it records none."""
    return Path(prov.split_file).stem if prov.split_file else None


def _ensemble_costs(record: EnsembleRecord) -> dict:
    """The runs-table cost columns of an ensemble: its members' summed int8 and float32 TFLite sizes and
    latencies (None where a member has no measurement)."""
    cost = {name: c for name, c in (record.deployment or {}).items() if c.get("measured")}
    out = {"deployed": bool(cost) and len(cost) == len(record.deployment or {}), "keras_mb": None, "f16_mb": None,
           "int8_accuracy": None,
           "int8_mb": (cost.get("tflite_int8_full") or {}).get("mb"),
           "int8_latency_ms": (cost.get("tflite_int8_full") or {}).get("ms"),
           "tflite_f32_mb": (cost.get("tflite_float32") or {}).get("mb"),
           "latency_ms": (cost.get("tflite_float32") or {}).get("ms")}
    for name, c in cost.items():
        out[f"{ranking.VARIANT_MB}{name}"], out[f"{ranking.VARIANT_MS}{name}"] = c["mb"], c["ms"]
    return out


def ensemble_command(record: dict) -> str:
    """The ``python -m core ensemble`` command that makes a stored ensemble (its record as plain data)."""
    members = " ".join(f"'{m['run']}'" for m in record["members"])
    return (f"python -m core ensemble {record['dataset']} {members} --weights {record['weights_method']} "
            f"--name {record['name']}")


def ensemble_cost_text(record: dict) -> list[str]:
    """One line per summed variant of a stored ensemble record: its MB and ms, or why it is not measured."""
    lines = []
    for cost in (record.get("deployment") or {}).values():
        if not cost.get("measured"):
            lines.append(f"{cost['label']}: {cost['reason']}")
            continue
        ms = "latency not measured" if cost.get("ms") is None else f"{cost['ms']:.1f} ms at 1 thread"
        lines.append(f"{cost['label']}: {cost['mb']:.2f} MB, {ms} (members summed)")
    return lines


def ensemble_comparison(entries: list[dict], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Each ensemble against its best member (``mcnemar.json``'s ``ensembles``): accuracies, the paired bootstrap
    difference with its interval, McNemar's counts and Holm p-value, and the ensemble's summed cost.
    ``labels`` maps run names (``backbone/run id``) to readers' labels."""
    labels = labels or {}
    rows = []
    for e in entries:
        boot = e.get("paired_bootstrap") or {}
        rows.append({
            "Ensemble": labels.get(e["ensemble"], e["ensemble"]), "Weights": e["weights_method"],
            "Best member": labels.get(e["best_member"], e["best_member"]),
            "Accuracy": f"{e['accuracy']:.3f}", "Member accuracy": f"{e['member_accuracy']:.3f}",
            "Ensemble − member [95% CI]": "" if not boot else
            f"{boot['difference']:+.3f} [{boot['low']:+.3f}, {boot['high']:+.3f}]",
            "Ensemble wrong, member right": e["n01"], "Ensemble right, member wrong": e["n10"],
            "p (Holm)": f"{e['p_holm']:.3g}", "Significant": "yes" if e["significant"] else "no",
            "Cost (members summed)": "; ".join(ensemble_cost_text(e)) or "not measured"})
    return pd.DataFrame(rows)


LEAK_FREE_INTERVALS = ("accuracy", "balanced_accuracy")
LEAK_SUBSETS = {"leak_free": "leak_free", "leaking": "leaking", "direct_copy": "direct", "no_direct_copy": "no_direct"}


def _leakage_columns(run: Path, row: dict) -> dict:
    """Scores on the leak-free and leaking test images (``leakage.json``); the whole split's intervals
    are taken from there when they resample groups (runs made before groups resampled images)."""
    path = run / LEAKAGE_FILE
    if not path.is_file():
        return {"leak_free_n": None}
    record = LeakageRecord.load(path)
    out: dict = {"leak_groups": record.test_groups, "grouping": (record.grouping or {}).get("source"),
                 "val_n": (record.validation or {}).get("images"),
                 "val_leaking_n": (record.validation or {}).get("leaking")}
    whole = record.subset("all") or {}
    if whole.get("bootstrap", {}).get("unit") == "group" and row["ci_unit"] != "group":
        for m in METRICS:
            interval = whole["bootstrap"]["metrics"].get(m, {})
            out[f"{m}_low"], out[f"{m}_high"] = interval.get("low"), interval.get("high")
        out["ci_unit"] = "group"
    for name, prefix in LEAK_SUBSETS.items():
        sub = record.subset(name)
        out[f"{prefix}_n"] = sub["n"] if sub else 0
        for m in METRICS:
            out[f"{prefix}_{m}"] = sub.get(m) if sub else None
    for m in LEAK_FREE_INTERVALS:  # stored with intervals: pooled over seeds and shown like the headline metrics
        interval = (record.subset("leak_free") or {}).get("bootstrap", {}).get("metrics", {}).get(m, {})
        out[f"leak_free_{m}_low"], out[f"leak_free_{m}_high"] = interval.get("low"), interval.get("high")
    return out


def shown_metrics(df: pd.DataFrame) -> list[str]:
    """The interval metrics a table shows: leak-free ones only where some test split leaks (else they repeat)."""
    return [m for m in ranking.interval_metrics(df) if leak_free_differs(df) or not m.startswith("leak_free_")]


def leak_free_differs(df: pd.DataFrame) -> bool:
    """Whether any run's leak-free test subset is smaller than its test split (else one column is enough)."""
    return "leak_free_n" in df and bool((df["leak_free_n"].notna() & (df["leak_free_n"] < df["n_test"])).any())


def leak_free_caption(df: pd.DataFrame) -> str:
    """One line on what the leak-free column means, with the sizes from the stored runs."""
    if not leak_free_differs(df):
        return ""
    sizes = df.loc[df["leak_free_n"].notna()]
    first = sizes.iloc[0]
    return (f"Leak-free: scored only on the {int(first['leak_free_n'])} of {int(first['n_test'])} test images whose "
            "group of near-copies has no member in train or val (a near-copy of the others was seen in training); "
            "`python -m core leakage DATASET` re-scores stored runs.")


def leakage_effect(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: accuracy on all, leak-free, leaking and direct-copy test images (the audit's 'what it means')."""
    if df.empty or "leak_free_n" not in df or df["leak_free_n"].isna().all():
        return pd.DataFrame()
    rows = []
    for _, r in df[df["leak_free_n"].notna()].iterrows():
        def score(prefix: str) -> str:
            n, value = r.get(f"{prefix}_n"), r.get(f"{prefix}_accuracy")
            return "" if not n or value is None or value != value else f"{value:.3f} (n={int(n)})"
        rows.append({"Run": r["label"], "All test images": f"{r['accuracy']:.3f} (n={int(r['n_test'])})",
                     "Leak-free": score("leak_free"), "Leaking (group seen in training)": score("leaking"),
                     "Near-copy of a training image": score("direct"), "No near-copy": score("no_direct")})
    return pd.DataFrame(rows)


def _validation_score(run: Path, method: str, details: dict) -> dict:
    """The validation scores and loss of the model the run kept (None where its records do not say).

    ``val_<metric>`` for each of :data:`METRICS` is scored on the run's stored validation predictions
    (``val_predictions.csv``), like its test metrics on ``predictions.csv``. The loss, and the accuracy of a run
    stored without validation predictions, come from its training records: a network run (``finetune``) keeps the
    weights of the best epoch of its last stage (``best_epoch`` in provenance.details, restored by early
    stopping), its history.csv row; a baseline keeps the hyperparameter it chose on validation, that row of its grid.
    """
    if method != "finetune":
        key, chosen = details.get("hyperparameter"), details.get("chosen")
        row = next((g for g in details.get("grid") or [] if key and g.get(key) == chosen), None)
        source = f"grid {key}={chosen}"
    else:
        curves = record_view.history(run)
        stage = curves["stage"].iloc[-1] if not curves.empty else None
        best = (details.get(stage) or {}).get("best_epoch") if stage else None
        rows = curves[(curves["stage"] == stage) & (curves["epoch"] == best)] if best else curves.iloc[:0]
        row = rows.iloc[-1].to_dict() if not rows.empty else None
        source = f"{stage} epoch {best}"
    out = {f"val_{m}": None for m in METRICS} | {"val_loss": None, "val_source": None, "val_class_count": None,
                                                  "val_smallest_class_n": None}
    if row is not None:
        out.update(val_accuracy=finite_number(row.get("val_accuracy")), val_loss=finite_number(row.get("val_loss")),
                   val_source=source)
    try:
        scores = scoring.validation_scores(run / VAL_PREDICTIONS_FILE)
    except (RecordError, OSError, ValueError):  # none, or unreadable: the run keeps its test results, unchosen
        return out
    out.update({k: finite_number(v) for k, v in scores.items()})
    out["val_source"] = VAL_PREDICTIONS_FILE + (f" (loss: {source})" if row is not None else "")
    return out


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


def _deployment_summary(run: Path) -> dict:
    """Sizes and latency from deploy/deployment.json when the run was deployed, with every deployable
    (TFLite) variant's size and latency as ``mb:<variant>`` and ``ms:<variant>`` (:func:`ranking.variant_costs`)."""
    path = deployment_file(run)
    variants = {v["name"]: v for v in DeploymentRecord.load(path).variants} if path.is_file() else {}
    costs = {}
    for name, v in variants.items():
        if v.get("status") == "ok" and v.get("bytes") and str(v.get("file") or "").endswith(".tflite"):
            costs[f"{ranking.VARIANT_MB}{name}"] = v["bytes"] / 1e6
            costs[f"{ranking.VARIANT_MS}{name}"] = ((v.get("latency") or {}).get("threads_1") or {}).get("median_ms")
    return {"deployed": path.is_file(), **_variant_summary(variants), **costs}


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


def _failed_run_folders(root: Path) -> list[tuple[Path, RunStatus]]:
    """Run folders whose last invocation failed, with their status (a complete or working run is not one)."""
    out = []
    for run in run_folders(root):
        if (run / COMPLETE_MARKER).is_file():
            continue
        status = RunFolder(run).status()
        if status.state == "failed":
            out.append((run, status))
    return out


def failed_runs(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """Runs of a dataset that failed when last tried (bad data, weights that would not load, ...), with the reason.

    Such a folder holds a config and the run's events but no result; it is listed so it
    never passes for a run in progress or a stray folder. ``python -m core run`` (or the
    experiment) with the same settings tries it again.
    """
    rows = []
    for run, status in _failed_run_folders(Path(root or artifacts_dir())):
        if dataset_of_run(run) == dataset:
            rows.append({"backbone": run.parent.name, "run_id": run.name, "path": str(run), "failed_at": status.at,
                         "reason": status.reason})
    return pd.DataFrame(rows)


def failed_table(failed: pd.DataFrame) -> pd.DataFrame:
    """The rows readers see for failed runs: which run, when, and why."""
    if failed.empty:
        return failed
    return pd.DataFrame({"Backbone": failed["backbone"], "Run": failed["run_id"], "Failed at": failed["failed_at"],
                         "Reason": failed["reason"]})


# What a seed changes, said next to every seed SD: the cached augmented views are data, the same for every seed.
SEED_SPREAD_NOTE = ("Seed-to-seed spread (training randomness: a seed changes the head's initialisation, dropout and "
                    "the batch order, and with stage2_views=one which view each epoch shows; the augmented views of "
                    "each image are fixed by augment.seed and identical across seeds, so the randomness of the "
                    "augmentation itself is not in this spread), next to the bootstrap CI width (which test images "
                    "were drawn)")


def seed_spread(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Seed-to-seed spread of every backbone/method with two or more seeds (same preset and split), next to the CI
    width.

    The bootstrap CI is about the test sample; the seed spread is about training randomness
    (:data:`SEED_SPREAD_NOTE`): both belong in a comparison.
    """
    if df.empty:
        return pd.DataFrame()
    rows = []
    keys = ["backbone", "method", "weights", "preset", "settings_key"] + (["split"] if "split" in df else [])
    for (backbone, method, weights, preset, *_), group in df.groupby(keys, dropna=False):
        if group["seed"].nunique() < 2:
            continue
        values = group[metric].astype(float)
        widths = (group[f"{metric}_high"] - group[f"{metric}_low"]).astype(float)
        split = {}
        if "split" in df and df["split"].nunique(dropna=False) > 1:  # say which split a row is on
            how = group["split_grouping"].iloc[0] if "split_grouping" in group else None
            split = {"Split": "image by image" if how == "none" else f"by group ({how})" if how else "unknown"}
        rows.append({"Backbone": backbone, "Kind": run_kind(method, weights), "Preset": preset, **split,
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
    return f"{len(df)} complete run{'' if len(df) == 1 else 's'}; {split}{sub}"


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard shown to readers: metrics as 'value [low, high]' strings plus costs."""
    if df.empty:
        return df
    out = pd.DataFrame({"Run": df["label"], "Test images": df["n_test"].astype(int)})
    for m in shown_metrics(df):
        out[metric_label(m)] = [format_ci(v, lo, hi) for v, lo, hi in zip(df[m], df[f"{m}_low"], df[f"{m}_high"])]
    return _with_costs(out, df)


def _with_costs(out: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """``out`` with the calibration, size and latency columns of ``df`` (runs or configurations)."""
    out["ECE"] = df["ece"].map(lambda v: "" if v is None or v != v else f"{v:.3f}")
    out["Size (MB, TFLite f32)"] = df["tflite_f32_mb"].map(_fmt_num)
    out["int8 size (MB)"] = df["int8_mb"].map(_fmt_num)
    out["Latency (ms, 1 thread)"] = df["latency_ms"].map(_fmt_num)
    out["int8 latency (ms)"] = df["int8_latency_ms"].map(_fmt_num)
    return out


def configurations_table(configs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """The configurations shown to readers, in the order given: each metric as 'mean ± SD [low, high]', after the
    validation score of ``metric`` (what the recommendation chooses by).

    With one seed there is no SD: the cell is the run's 'value [bootstrap CI]' and the Seeds
    column says 'one seed'. :func:`core.artifacts.ranking.interval_caption` says which is which.
    """
    if configs.empty:
        return pd.DataFrame()
    out = pd.DataFrame({
        "Configuration": configs["label"],
        "Seeds": [f"{s[0]} (one seed)" if one else ", ".join(map(str, s))
                  for s, one in zip(configs["seeds"], configs["one_seed"])],
        "Test images": configs["n_test"].map(lambda v: "" if v != v else f"{v:.0f}"),
        f"{metric_label(ranking.validation_score(metric))} (mean)": configs.get(
            ranking.validation_score(metric), pd.Series(None, index=configs.index, dtype=object)).map(
            lambda v: "" if v is None or v != v else f"{v:.3f}"),
    })
    for m in shown_metrics(configs):
        out[metric_label(m)] = [format_pooled(v, sd, lo, hi) for v, sd, lo, hi in
                                zip(configs[m], configs[f"{m}_sd"], configs[f"{m}_low"], configs[f"{m}_high"])]
    return _with_costs(out, configs).reset_index(drop=True)


def format_pooled(mean, sd, low, high) -> str:
    """``0.637 ± 0.018 [0.592, 0.682]`` over several seeds; ``format_ci`` of the one run when sd is undefined."""
    cell = format_ci(mean, low, high)
    if not cell or sd is None or sd != sd:
        return cell
    head, _, interval = cell.partition(" ")
    return f"{head} ± {sd:.3f} {interval}".rstrip()


def format_ci(value, low, high) -> str:
    """``0.938 [0.918, 0.956]``; empty when undefined."""
    if value is None or value != value:
        return ""
    if low is None or high is None or low != low:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _fmt_num(v) -> str:
    return "" if v is None or v != v else f"{v:.2f}"


def recommendation_text(rec: ranking.Recommendation, max_mb: float | None = None,
                        max_ms: float | None = None) -> str:
    """The recommendation in one Markdown paragraph: what was chosen, how, and its test score with its interval."""
    if rec.chosen is None:
        return rec.reason or "No recommendation."
    best, metric = rec.chosen, rec.metric
    limits = ", ".join(filter(None, [max_mb and f"a deployable model ≤ {max_mb:g} MB",
                                     max_ms and f"latency ≤ {max_ms:g} ms"])) or "no size or latency limit"
    seeds = "one seed" if best["one_seed"] else f"{best['n_seeds']} seeds"
    interval = ("its run's bootstrap CI" if best["interval"] == ranking.INTERVAL_BOOTSTRAP
                else "mean over seeds ± SD, t-interval over the seeds")
    cost = (f"; full-int8 {best['int8_mb']:.2f} MB, {best['int8_latency_ms']:.1f} ms"
            if pd.notna(best.get("int8_mb")) and pd.notna(best.get("int8_latency_ms")) else "")
    if rec.variant is not None:
        name, mb, ms = rec.variant
        timing = "" if ms != ms else f", {ms:.1f} ms"
        cost = (f"; deploy it as **{variant_label(name)}** ({mb:.2f} MB{timing}: the least compressed variant within "
                "the limits)")
    score = format_pooled(best[metric], best.get(f"{metric}_sd"), best[f"{metric}_low"], best[f"{metric}_high"])
    return (f"**{best['label']}** ({seeds}), chosen by "
            f"{metric_label(ranking.validation_score(metric)).lower()} {best[ranking.validation_score(metric)]:.3f} "
            "(mean over seeds; "
            f"{limits}, {rec.preset} preset): test {metric_label(metric).lower()} {score or 'undefined'} "
            f"({interval}){cost}.")


def transfer_gain_text(gains: pd.DataFrame) -> list[str]:
    """One sentence per backbone trained both ways (:func:`core.artifacts.ranking.transfer_gains`)."""
    lines = []
    for g in gains.itertuples():
        label = metric_label(g.metric).lower()
        interval = (f" [95% interval {g.gain_low:+.3f}, {g.gain_high:+.3f}; {g.interval}]" if g.gain_low == g.gain_low
                    else f" (no interval: {g.interval.removeprefix('none: ')})")
        lines.append(f"Transfer learning vs from scratch, {g.backbone}: mean {label} {g.transfer_mean:.3f} "
                     f"({g.transfer}) against {g.scratch_mean:.3f} ({g.scratch}), a gain of {g.gain:+.3f}{interval}.")
    return lines


def recommendation_paragraph(rec, max_mb: float | None = None, max_ms: float | None = None) -> str:
    """The recommendation with what it cannot be told apart from and its notes, as one paragraph (README, HTML);
    ``max_mb``/``max_ms``: the limits it was made under (:func:`core.artifacts.ranking.recommend`)."""
    notes = (not_distinguishable_text(rec), better_on_test_text(rec), *rec.notes)
    return recommendation_text(rec, max_mb, max_ms) + "".join(f" {text}" for text in notes if text)


BASIS_TEXT = {
    ranking.PAIRED: "the 95% interval of the paired difference holds 0: test images resampled by group, the same "
                    "draw for both, and each configuration's seeds with replacement (mcnemar.json)",
    ranking.OVERLAP: "the intervals overlap (no paired comparison stored: `python -m core compare DATASET` makes it)",
}


def not_distinguishable_text(rec: ranking.Recommendation) -> str | None:
    """The configurations the recommended one cannot be told apart from, and by which test, in one line (None if
    none)."""
    if rec.chosen is None or rec.not_distinguishable.empty:
        return None
    metric = rec.metric
    basis = "; ".join(BASIS_TEXT[b] for b in rec.basis.split(" and ") if b in BASIS_TEXT)
    return (f"Not distinguishable from it on test {metric_label(metric).lower()} ({basis}): "
            f"{_scored_labels(rec.not_distinguishable, metric)}.")


def _scored_labels(configs: pd.DataFrame, metric: str) -> str:
    """'label 0.637 ± 0.018 [0.592, 0.682]; ...': each configuration with its pooled test ``metric``."""
    cells = (format_pooled(r[metric], r.get(f"{metric}_sd"), r[f"{metric}_low"], r[f"{metric}_high"])
             for _, r in configs.iterrows())
    return "; ".join(f"{label} {cell}" for label, cell in zip(configs["label"], cells))


def better_on_test_text(rec: ranking.Recommendation) -> str | None:
    """The configurations the test split tells apart from the recommended one and ranks higher, in one line (None
    if none): validation chose otherwise, and the report says so without choosing on test."""
    if rec.chosen is None or rec.better_on_test.empty:
        return None
    metric = rec.metric
    return (f"Higher on test {metric_label(metric).lower()}, and told apart from it: "
            f"{_scored_labels(rec.better_on_test, metric)}. "
            "Validation chose otherwise; choosing on the test split instead would make the chosen test score a biased "
            "estimate, so the choice stands and this is the disagreement to read it with.")


MINOR_VALIDATION_LEAK = 0.05  # below this share of leaking validation images the note says it is minor


def validation_leak_note(runs: pd.DataFrame) -> str | None:
    """What the runs' own splits say about the validation images the recommendation chooses on (None if clean).

    From each run's ``leakage.json``: validation images whose group of near-copies also has
    training images. The worst run is quoted.
    """
    if runs.empty or "val_leaking_n" not in runs:
        return None
    known = runs[pd.to_numeric(runs["val_leaking_n"], errors="coerce") > 0]
    if known.empty:
        return None
    worst = known.loc[(known["val_leaking_n"] / known["val_n"]).idxmax()]
    leaky, n = int(worst["val_leaking_n"]), int(worst["val_n"])
    if leaky / n < MINOR_VALIDATION_LEAK:
        return (f"Up to {leaky} of {n} validation images ({leaky / n:.1%}) are in a group of near-copies that also "
                "has training images (the runs' own splits): too few to move validation scores much.")
    return (f"Validation leaks in {len(known)} of {len(runs)} run(s): up to {leaky} of {n} validation images "
            f"({leaky / n:.1%}) are in a group of near-copies that also has training images, because those runs "
            "carved validation from the training pool image by image. Their validation scores are optimistic and "
            "can favour models that remember training images; runs split by group (the default now) do not leak.")


def convergence_table(runs: pd.DataFrame) -> pd.DataFrame:
    """For each network run of ``runs``: how each stage ended and whether its predictions collapsed onto one class
    (:mod:`core.artifacts.convergence`), read from its history, config and test predictions."""
    rows = []
    for _, run in runs.iterrows():
        if run.get("method") != "finetune" or run.get("kind") == ranking.ENSEMBLE:
            continue
        epochs = record_view.history(run["path"])
        stages = convergence.stage_checks(epochs, record_view.config(run["path"]))
        collapsed = convergence.collapse(run["path"])
        verdict, how = convergence.verdict(stages, collapsed), convergence.describe(stages, collapsed)
        if record_view.history_problems(epochs) and verdict != convergence.COLLAPSED:
            verdict, how = convergence.UNKNOWN, f"{how}; its history is incomplete: not judged"
        rows.append({"Run": run["label"], "Training": verdict, "How it ended": how})
    return pd.DataFrame(rows, columns=["Run", "Training", "How it ended"])


def all_metrics(dataset: str, root: Path | None = None, runs: pd.DataFrame | None = None) -> dict:
    """Config and metrics of a dataset's complete runs (or of the given ``runs`` rows), for a JSON download."""
    df = runs_table(dataset, root) if runs is None else runs
    return {"dataset": dataset, "runs": [{"run": f"{r['backbone']}/{r['run_id']}",
                                          "config": record_view.config(r["path"]),
                                          "metrics": record_view.metrics(r["path"])} for _, r in df.iterrows()]}


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


