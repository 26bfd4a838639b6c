"""A stored ensemble run on one image with its members' TFLite variants (LiteRT; no TensorFlow).

Used by the app's Try page. Every member's stored TFLite variant (int8 by default) predicts
through :func:`core.deploy.predict.predict_lite`; the probabilities are combined exactly as the
ensemble was built: the stored weights (soft vote) or the stored logistic-regression coefficients
(stacked), with the functions of :mod:`core.evaluate.ensemble`. Nothing is re-fitted or re-weighed.
A member without that variant is named with the command that measures it, and then no combined
result is given: fewer members are not the stored ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.artifacts.layout import dataset_dir, ensemble_folders
from core.artifacts.records import EnsembleRecord, RecordError
from core.deploy import predict
from core.deploy.predict import StoredModel, stored_models
from core.errors import UserError
from core.evaluate.ensemble import COST_VARIANTS, load_ensemble, soft_vote, stacked_probs

DEFAULT_VARIANT = "tflite_int8_full"
VARIANTS = tuple(COST_VARIANTS)  # the variants an ensemble's cost is summed over: int8 and float32


@dataclass(frozen=True)
class MemberPrediction:
    """One member's probabilities and the wall time (ms) of its LiteRT call."""

    run: str  # backbone/run id, as the ensemble record names it
    model: StoredModel
    probs: np.ndarray
    ms: float

    @property
    def prediction(self) -> str:
        return self.model.classes[int(self.probs.argmax())]


@dataclass(frozen=True)
class EnsemblePrediction:
    """An ensemble on one image: every member that ran, one line per member that could not, and the combined
    probabilities only when every member ran."""

    record: EnsembleRecord
    variant: str
    members: list[MemberPrediction]
    missing: list[str] = field(default_factory=list)
    probs: np.ndarray | None = None

    @property
    def predicted(self) -> str | None:
        return None if self.probs is None else self.record.classes[int(self.probs.argmax())]

    @property
    def total_ms(self) -> float:
        """The members' latencies summed (they run one after another; combining costs next to nothing)."""
        return float(sum(m.ms for m in self.members))

    def top(self, k: int = 3) -> list[dict]:
        """The ``k`` most probable classes of the combined result (none without one)."""
        if self.probs is None:
            return []
        order = np.argsort(-self.probs)[:k]
        return [{"class": self.record.classes[i], "probability": float(self.probs[i])} for i in order]

    def member_rows(self) -> list[dict]:
        """One row per member that ran: its prediction, probability, weight in the ensemble and latency."""
        weights = dict(zip(self.record.member_runs(), self.record.weights()))
        return [{"member": m.run, "prediction": m.prediction, "probability": float(m.probs.max()),
                 "weight": round(weights[m.run], 4), "latency ms": round(m.ms, 2)} for m in self.members]


def dataset_ensembles(dataset: str, root: Path | None = None,
                      problems: list[str] | None = None) -> list[tuple[Path, EnsembleRecord]]:
    """(folder, record) of every complete ensemble of ``dataset``; an unreadable record is left out, its one-line
    reason appended to ``problems`` when given (raised otherwise)."""
    out = []
    for folder in ensemble_folders(dataset_dir(dataset, root)):
        try:
            out.append((folder, load_ensemble(folder)))
        except RecordError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return out


def predict_ensemble(folder: Path, image: np.ndarray, variant: str = DEFAULT_VARIANT,
                     lite_models: list[StoredModel] | None = None) -> EnsemblePrediction:
    """Run the ensemble stored in ``folder`` on ``image`` (RGB uint8) with each member's ``variant``.

    ``lite_models``: the dataset's TFLite variants (:func:`~core.deploy.predict.stored_models`), found when not
    given.
    """
    folder = Path(folder)
    record = load_ensemble(folder)
    if record.weights_method == "stacked" and not record.stacked:
        raise UserError(f"{folder}: a stacked ensemble without its stored coefficients ('stacked' in config.json)")
    data = folder.parent.parent
    if lite_models is None:
        lite_models = stored_models(data.name, data.parent)[0]
    found = {(m.run_dir.resolve(), m.variant): m for m in lite_models}
    members, missing = [], []
    for label in record.member_runs():
        run = data / label
        model = found.get((run.resolve(), variant))
        if not run.is_dir():
            missing.append(f"{label} is no longer stored in {data}")
        elif model is None:
            missing.append(f"{label} has no measured {variant}: python -m core deploy {run} --only {variant}")
        elif list(model.classes) != list(record.classes):
            missing.append(f"{label}'s classes ({', '.join(model.classes)}) are not the ensemble's "
                           f"({', '.join(record.classes)})")
        else:
            try:
                probs, ms = predict.predict_lite(model, image)
            except Exception as exc:  # noqa: BLE001 - one broken model file is one line, the others still predict
                missing.append(f"{label}'s {variant} could not run: {type(exc).__name__}: {exc}")
                continue
            members.append(MemberPrediction(label, model, np.asarray(probs, dtype=float), ms))
    combined = _combine(record, [m.probs for m in members]) if not missing else None
    return EnsemblePrediction(record, variant, members, missing, combined)


def _combine(record: EnsembleRecord, member_probs: list[np.ndarray]) -> np.ndarray:
    """The stored combination of every member's probabilities (one image)."""
    if record.weights_method == "stacked":
        return stacked_probs(record.stacked, member_probs)[0]
    return soft_vote(member_probs, record.weights())
