"""How much a deployment variant changes its parent's test accuracy, with a paired interval.

A variant and its parent (the run's float Keras model) predict the same test images, so
their accuracy difference is paired: the bootstrap resamples images (or whole groups of
near-copies from the dataset's audit, as :mod:`core.evaluate.compare` does) and scores
both on the same draw. Next to it, the agreement rate: the share of test images on which
the two predict the same class.

:func:`variant_change` is what :mod:`core.deploy.measure` stores per variant when it
measures; :func:`add_to_stored` writes the same fields into a run's stored
``deploy/deployment.json`` from its stored predictions, measuring nothing (no model needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from core.artifacts.layout import DEPLOY_PREDICTIONS_FILE, METRICS_FILE, PREDICTIONS_FILE, deploy_dir, deployment_file
from core.artifacts.records import DeploymentRecord, MetricsRecord, Predictions, RecordError, VariantPredictions
from core.evaluate.compare import audit_groups
from core.evaluate.metrics import paired_bootstrap
from core.progress import Emit

# The field of a variant record that holds its paired accuracy change against the parent.
CHANGE_FIELD = "accuracy_change_vs_parent"
AGREEMENT_FIELD = "agreement_with_parent"


def variant_change(true: Sequence, parent_pred: Sequence, variant_pred: Sequence,
                   groups: np.ndarray | None = None) -> dict:
    """A variant's accuracy minus its parent's on the same test images, and how often the two agree.

    Returns ``{accuracy_change_vs_parent: paired_bootstrap(...), agreement_with_parent}``:
    the change is :func:`core.evaluate.metrics.paired_bootstrap` of the variant against the parent
    (``difference``, ``low``, ``high``, ``p_value``, ``unit``, ``units``, ...), resampling ``groups``
    (one integer per image) when given.
    """
    true, parent, variant = (np.asarray(v, dtype=object) for v in (true, parent_pred, variant_pred))
    if not (true.size == parent.size == variant.size):
        raise ValueError(f"true, parent and variant predictions differ in length: "
                         f"{true.size}, {parent.size}, {variant.size}")
    change = paired_bootstrap(variant == true, parent == true, groups)
    return {CHANGE_FIELD: change, AGREEMENT_FIELD: round(float(np.mean(variant == parent)), 6)}


def groups_of_test_images(run_dir: Path, ids: Sequence[str]) -> np.ndarray | None:
    """Group codes of a run's test images from its dataset's audit (None without an audit: images resampled)."""
    grouping = audit_groups(Path(run_dir).parent.parent)
    return grouping.codes(list(ids)) if grouping else None


def add_to_stored(run_dir: str | Path, emit: Emit = print) -> dict:
    """Write every measured variant's paired accuracy change and agreement into ``deploy/deployment.json``.

    From the stored predictions only: the parent's from the run's ``predictions.csv``, each
    variant's from ``deploy/predictions.csv``. The Keras variant is the parent itself. A variant
    without stored predictions keeps what it has. Returns the updated record as plain data;
    a run without deployment measurements or with tables that do not match is one line
    (:class:`~core.artifacts.records.RecordError`).
    """
    run_dir = Path(run_dir)
    path = deployment_file(run_dir)
    if not path.is_file():
        raise RecordError(f"{run_dir} has no deployment measurements ({path} missing): `python -m core deploy "
                          f"{run_dir}` measures them")
    record = DeploymentRecord.load(path)
    parent = Predictions.load(run_dir / PREDICTIONS_FILE, expected_rows=MetricsRecord.load(run_dir / METRICS_FILE).n)
    stored = VariantPredictions.load(deploy_dir(run_dir) / DEPLOY_PREDICTIONS_FILE)
    if stored.ids != parent.ids:
        raise RecordError(f"{deploy_dir(run_dir) / DEPLOY_PREDICTIONS_FILE}: its test images are not those of "
                          f"{run_dir / PREDICTIONS_FILE}")
    groups = groups_of_test_images(run_dir, parent.ids)
    predicted = {"keras": parent.pred, **stored.variants}
    for variant in record.variants:
        if variant.get("status") == "ok" and variant["name"] in predicted:
            variant.update(variant_change(parent.true, parent.pred, predicted[variant["name"]], groups))
    record.save(path)
    changed = [v[CHANGE_FIELD] for v in record.variants if v.get(CHANGE_FIELD)]
    emit(f"{path}: paired accuracy change and agreement of {len(changed)} variant(s)"
         + (f" (bootstrap over {changed[0]['units']} {changed[0]['unit']}s)" if changed else ""))
    return record.to_dict()
