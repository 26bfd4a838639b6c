"""Pairwise comparison of every complete run of a dataset on its shared test set.

McNemar's test treats test images as independent; next to it, a paired bootstrap of the
accuracy difference resamples whole groups of near-copies (from the dataset's audit), so
two runs that differ only on one patient's slices are not called different with false
confidence.

Each stored ensemble is compared with its best member (the member with the highest test
accuracy: the strongest single model, so the comparison leans towards the member), by the
same two tests, Holm-corrected over the ensembles; ensembles stay out of the all-pairs family.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from statsmodels.stats.multitest import multipletests

from core.artifacts.config import RunConfig, settings_key
from core.artifacts.layout import (
    AUDIT_FILE,
    CONFIG_FILE,
    MCNEMAR_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    dataset_complete_runs,
    ensemble_folders,
)
from core.artifacts.records import AuditRecord, ComparisonRecord, EnsembleRecord, MetricsRecord, Predictions
from core.data.groups import Grouping, from_audit
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.evaluate import metrics as evaluation


def run_label(run_dir: Path) -> str:
    """``Backbone/run id``: unique within a dataset folder."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def load_correctness(run_dir: Path, metrics: MetricsRecord) -> tuple[list[str], list[bool]]:
    """Test-sample ids and whether the run predicted each correctly, from predictions.csv (whole: one row per
    test image its ``metrics`` count)."""
    table = Predictions.load(run_dir / PREDICTIONS_FILE, expected_rows=metrics.n)
    return table.ids, table.correct()


def audit_groups(dataset_dir: Path, fingerprint: str | None = None) -> Grouping | None:
    """The dataset's duplicate groups from its audit, if it has one (None: every image its own group); with a
    ``fingerprint``, only an audit of those images."""
    path = dataset_dir / AUDIT_FILE
    if not path.is_file():
        return None
    audit = AuditRecord.load(path).to_dict()
    if fingerprint is not None and audit["dataset"].get("fingerprint") != fingerprint:
        return None
    return from_audit(audit)


def split_groups(split: SplitAssignment, dataset_dir: Path, fingerprint: str | None) -> tuple[Grouping | None, str]:
    """The groups a run's intervals resample and its leakage is judged by, and where they came from: its split's
    own groups, else the dataset audit's near-duplicate groups of the same images, else none (None)."""
    if split.groups:
        info = split.grouping or {}
        source = info.get("source", "split")
        return Grouping(source, info.get("detail", "the run's split"), dict(split.groups)), \
            f"groups of the run's split ({source})"
    audited = audit_groups(dataset_dir, fingerprint)
    if audited is not None:
        return audited, "near-duplicate groups of the dataset's audit.json"
    return None, ("no groups (the run's split records none and no audit.json of these images): intervals resample "
                  "images, validation leakage unknown")


def _paired(run_a: tuple[list[str], list[bool]], run_b: tuple[list[str], list[bool]],
            grouping: Grouping | None) -> dict | None:
    """Paired (group) bootstrap of the accuracy difference on the common test images."""
    a, b = dict(zip(*run_a)), dict(zip(*run_b))
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    groups = grouping.codes(common) if grouping else None
    return evaluation.paired_bootstrap([a[i] for i in common], [b[i] for i in common], groups)


def compare_dataset(dataset_dir: str | Path, alpha: float = 0.05) -> dict:
    """McNemar's test between every pair of complete runs under ``dataset_dir``.

    Writes ``mcnemar.json`` into the dataset folder and returns it. Runs are aligned
    on test-sample ids, so runs with different test subsets compare on their overlap.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(f"results folder not found: {dataset_dir}")
    runs = dataset_complete_runs(dataset_dir)
    if len(runs) < 2:
        raise UserError(f"{dataset_dir} has {len(runs)} complete run(s); McNemar needs at least 2")
    metrics = {run_label(r): MetricsRecord.load(r / METRICS_FILE) for r in runs}
    tables = {run_label(r): load_correctness(r, metrics[run_label(r)]) for r in runs}
    result = evaluation.pairwise_mcnemar(tables, alpha=alpha)
    grouping = audit_groups(dataset_dir)
    for pair in result["pairs"]:
        pair["paired_bootstrap"] = _paired(tables[pair["a"]], tables[pair["b"]], grouping)
    result["grouping"] = grouping.describe() if grouping else "none: no audit.json, every image its own group"
    result["accuracy"] = {name: record.accuracy for name, record in metrics.items()}
    result["ensembles"] = ensembles_vs_best_member(dataset_dir, tables, metrics, grouping, alpha)
    result["configurations"] = compare_configurations(dataset_dir, runs, grouping)
    record = ComparisonRecord.from_dict(result, "McNemar comparison")
    record.save(dataset_dir / MCNEMAR_FILE)
    return record.to_dict()


CONFIGURATION_RESAMPLING = ("test images by group of near-copies (the same draw for both configurations: paired) "
                            "and, within each configuration, its seeds with replacement")


def compare_configurations(dataset_dir: Path, runs: list[Path], grouping: Grouping | None,
                           metric: str = "balanced_accuracy") -> dict:
    """Every pair of configurations (runs that differ only by seed; each ensemble alone) scored on the same test
    images: the difference of their mean ``metric`` over seeds with its 95% interval
    (:func:`~core.evaluate.metrics.configuration_differences`). Pairs name each side by its runs' labels."""
    members: dict[str, list[tuple[str, Predictions]]] = {}
    for run in runs:
        key = settings_key(RunConfig.load(run / CONFIG_FILE).to_dict())
        members.setdefault(key, []).append((run_label(run), Predictions.load(run / PREDICTIONS_FILE)))
    for folder in ensemble_folders(dataset_dir):
        members[f"ensemble {folder.name}"] = [(run_label(folder), Predictions.load(folder / PREDICTIONS_FILE))]
    by_images: dict[tuple[str, ...], list[list[tuple[str, Predictions]]]] = {}
    for config in members.values():
        images = {tuple(sorted(table.ids)) for _, table in config}
        if len(images) == 1:  # seeds scored on other images (a changed split) are not one configuration's
            by_images.setdefault(images.pop(), []).append(config)
    pairs = []
    for ids, configs in by_images.items():
        if len(configs) < 2:
            continue
        order = [[dict(zip(table.ids, zip(table.true, table.correct()))) for _, table in config] for config in configs]
        labels = [order[0][0][i][0] for i in ids]
        correct = [[[run[i][1] for i in ids] for run in config] for config in order]
        groups = grouping.codes(list(ids)) if grouping else None
        streams = [int(hashlib.sha256(" ".join(sorted(label for label, _ in config)).encode()).hexdigest()[:8], 16)
                   for config in configs]  # each configuration's own: a pair's interval ignores the others
        for pair in evaluation.configuration_differences(correct, labels, groups, streams=streams):
            sides = {side: [label for label, _ in configs[pair[index]]] for side, index in (("a", "i"), ("b", "j"))}
            pairs.append({**sides, "difference": pair["difference"], "low": pair["low"], "high": pair["high"],
                          "n": len(ids)})
    return {"metric": metric, "resampled": CONFIGURATION_RESAMPLING, "n_resamples": 2000, "pairs": pairs}


BEST_MEMBER_RULE = "the member with the highest test accuracy (the strongest single model: the comparison leans to it)"


def ensembles_vs_best_member(dataset_dir: Path, tables: dict, metrics: dict[str, MetricsRecord],
                             grouping: Grouping | None, alpha: float = 0.05) -> list[dict]:
    """Every stored ensemble against its best member: McNemar (Holm over the ensembles) and the paired bootstrap of
    the accuracy difference ensemble minus member; ``tables``/``metrics``: the runs' correctness and metrics."""
    out = []
    for folder in ensemble_folders(dataset_dir):
        record = EnsembleRecord.load(folder / CONFIG_FILE)
        members = [m for m in record.member_runs() if m in tables]
        if not members:
            continue
        ensemble_metrics = MetricsRecord.load(folder / METRICS_FILE)
        ensemble = load_correctness(folder, ensemble_metrics)
        best = max(members, key=lambda m: (metrics[m].accuracy, m))
        a, b = dict(zip(*ensemble)), dict(zip(*tables[best]))
        common = sorted(a.keys() & b.keys())
        test = evaluation.mcnemar([a[i] for i in common], [b[i] for i in common])
        out.append({"ensemble": run_label(folder), "weights_method": record.weights_method, "best_member": best,
                    "best_member_rule": BEST_MEMBER_RULE, "accuracy": ensemble_metrics.accuracy,
                    "member_accuracy": metrics[best].accuracy, "n_common": len(common), "n01": test["n01"],
                    "n10": test["n10"], "method": test["method"], "p_value": test["p_value"],
                    "paired_bootstrap": _paired(ensemble, tables[best], grouping), "deployment": record.deployment})
    if out:
        holm = multipletests([e["p_value"] for e in out], method="holm")[1].tolist()
        for entry, p_holm in zip(out, holm):
            entry["p_holm"], entry["significant"] = p_holm, p_holm <= alpha
    return out
