"""``python -m core tune``: an Optuna search over the stage-1 head's settings on cached features.

A trial is the head fitted on the cached pooled features (seconds, not a pass over the images),
scored on the run's leak-free validation images (or the grouped CV mean with ``--cv K``); the test split is never
seen. The study lives in an ordinary Optuna storage (default: an SQLite file under the dataset's
``model_selection/`` folder, which ``optuna-dashboard`` opens), so re-running the same command
continues it: finished trials are kept, a trial killed mid-way is marked failed by the heartbeat.
After each sitting a plain :class:`~core.artifacts.records.TuningRecord` is written for the app.
``--run-best`` turns the best trial's settings into normal full runs, marked by ``tuned_from``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import optuna
from sqlalchemy.engine import make_url

from core.artifacts import provenance
from core.artifacts.config import RunConfig, identity_settings
from core.artifacts.layout import dataset_slug, model_selection_dir, optuna_storage, tuning_file
from core.artifacts.records import TuningRecord
from core.artifacts.storage import utc_timestamp
from core.data.folds import make_folds
from core.errors import UserError
from core.orchestrate.crossval import Prepared
from core.progress import Emit
from core.train import config as config_mod
from core.train import crossval
from core.train.transfer import fit_head

# setting -> how it is drawn; every trial records each (the search space is stored with the study).
SEARCH_SPACE = {
    "stage1.learning_rate": {"kind": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "head_dropout": {"kind": "float", "low": 0.0, "high": 0.6, "log": False},
    "head_hidden_units": {"kind": "categorical", "choices": [0, 128, 256, 512]},  # 0: no hidden layer
    "head_l1": {"kind": "float", "low": 1e-8, "high": 1e-3, "log": True},
    "head_l2": {"kind": "float", "low": 1e-8, "high": 1e-2, "log": True},
    "label_smoothing": {"kind": "float", "low": 0.0, "high": 0.2, "log": False},
    "class_weights": {"kind": "categorical", "choices": [True, False]},
}
HEARTBEAT_S = 30  # a trial silent for GRACE_S (its process killed) is marked failed when the study next runs
GRACE_S = 90
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
MIN_LEAK_FREE_VALIDATION = 50  # fewer leak-free validation images than this (and than all of them): use --cv


def study_name(config: RunConfig, fingerprint: str, metric: str, cv: int | None) -> str:
    """The default study of a base config: its dataset (folder name and image fingerprint), backbone, preset,
    objective (leak-free validation or CV) and settings (the run id's hash)."""
    source = f"cv{cv}" if cv else "valfree"
    return (f"{dataset_slug(config.dataset)}-{fingerprint[:8]}-{config.backbone}-{config.preset}-{metric}-{source}-"
            f"{config.run_id().rsplit('-', 1)[-1]}")


def suggest(trial: optuna.Trial) -> dict:
    """The trial's settings, as flat ``--set`` keys."""
    out = {}
    for key, space in SEARCH_SPACE.items():
        if space["kind"] == "float":
            out[key] = trial.suggest_float(key, space["low"], space["high"], log=space["log"])
        else:
            out[key] = trial.suggest_categorical(key, space["choices"])
    return out


def with_settings(base: RunConfig, flat: dict, **fields) -> RunConfig:
    """``base`` with flat settings (``stage1.learning_rate``) and fields (``seed``) replaced, checked."""
    return config_mod.with_overrides(base, {**config_mod.nest(flat), **fields})


def leak_free_validation(p: Prepared) -> np.ndarray:
    """Positions (among the non-test images) of the validation images in no group with a training image.

    A validation image whose near-copy was trained on scores what the head memorised, so tuning on it would
    reward memorising; with group-disjoint splits this is every validation image. One line if too few are left.
    """
    n_train = p.feats.n_train
    val_ids = p.feats.ids[n_train:]
    leaking = p.data.measured_groups.leaking(p.data.split.items, val_ids, ("train",))  # the whole split's train
    rows = n_train + np.flatnonzero(~leaking)
    n_val = len(val_ids)
    if len(rows) < min(n_val, MIN_LEAK_FREE_VALIDATION):
        raise UserError(f"only {len(rows)} of {n_val} validation images share no group with a training image: a "
                        "validation objective would reward memorised near-copies; use --cv K (group-disjoint folds) "
                        "or a grouped split (--set grouping=duplicates)")
    return rows


def _validation_objective(p: Prepared, config: RunConfig, metric: str, trial: optuna.Trial) -> float:
    """The head on the run's training images (every view), its best epoch's ``metric`` on the leak-free
    validation images (:func:`leak_free_validation`); each epoch's score reported to the pruner."""
    train_rows = np.arange(p.feats.n_train)
    rows = leak_free_validation(p)
    val_x, val_y = p.feats.originals[rows], p.feats.labels[rows]

    def on_epoch(epoch: int, model) -> None:
        trial.report(_metric(model, val_x, val_y, metric), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    head, _ = fit_head(config, p.num_classes, p.feats.training_rows(train_rows), (val_x, val_y), on_epoch=on_epoch)
    return _metric(head, val_x, val_y, metric)


def _metric(model, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    return float(crossval.score(y, model.predict(x, verbose=0, batch_size=1024))[metric])


def _cv_objective(p: Prepared, config: RunConfig, metric: str, k: int, trial: optuna.Trial) -> float:
    """The grouped ``k``-fold CV mean of ``metric``; the running mean reported to the pruner after each fold."""
    folds = make_folds(p.feats.labels, p.groups, k, seed=0)
    scores = []

    def on_fold(i: int, row: dict) -> None:
        scores.append(row[metric])
        trial.report(float(np.mean(scores)), i)
        if trial.should_prune():
            raise optuna.TrialPruned()

    crossval.cross_validate(config, p.feats, p.groups, folds, p.num_classes, on_fold=on_fold)
    return float(np.mean(scores))


def open_storage(storage: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at a URL, with heartbeats; one line if it cannot be opened."""
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5; it is what marks killed trials
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as exc:  # a bad URL, a missing driver, an unreachable server: Optuna and SQLAlchemy's many kinds
        raise UserError(f"--storage {storage}: cannot open the Optuna storage ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return rdb


def open_study(name: str, storage: str) -> optuna.Study:
    """The study ``name`` in ``storage`` (created, or loaded to continue it)."""
    return optuna.create_study(study_name=name, storage=open_storage(storage), direction="maximize", load_if_exists=True,
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3))


def tune(p: Prepared, trials: int, metric: str = "balanced_accuracy", cv: int | None = None,
         storage: str | None = None, name: str | None = None, artifacts=None,
         emit: Emit = print) -> tuple[TuningRecord, Path]:
    """Run the study until it holds ``trials`` finished (complete or pruned) trials; store its plain record."""
    folder = p.folder(artifacts)
    if storage is None:
        model_selection_dir(folder).mkdir(parents=True, exist_ok=True)
        storage = optuna_storage(folder)
    name = name or study_name(p.config, p.data.fingerprint, metric, cv)
    source = f"cv {cv}" if cv else _validation_source(p)
    study = open_study(name, storage)
    _claim(study, {"base_config": p.config.to_dict(), "fingerprint": p.data.fingerprint, "metric": metric,
                   "objective": source})
    done = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    emit(f"tune: study '{name}' in {storage}: {done} finished trial(s), running {max(0, trials - done)} more")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        config = with_settings(p.config, suggest(trial))
        value = (_cv_objective(p, config, metric, cv, trial) if cv else
                 _validation_objective(p, config, metric, trial))
        emit(f"tune: trial {trial.number}: {metric} {value:.4f}")
        return value

    if trials > done:
        study.optimize(objective, n_trials=trials - done, catch=())
    record = tuning_record(study, storage, p, metric, source)
    path = tuning_file(folder, name)
    record.save(path)
    return record, path


def _claim(study: optuna.Study, attrs: dict) -> None:
    """Mark a new study with what it tunes; refuse to continue one that tunes something else (another dataset,
    other images, settings or objective under the same name, e.g. with --study or a shared --storage)."""
    held = study.user_attrs
    for key, value in attrs.items():
        if key == "base_config" and key in held:  # the dataset's path may move (a data root); its fingerprint may not
            if identity_settings(held[key], ["dataset"]) == identity_settings(value, ["dataset"]):
                continue
        if key in held and held[key] != value:
            raise UserError(f"study '{study.study_name}' holds trials of another {key.replace('_', ' ')} "
                            f"({str(held[key])[:60]}...): give this search its own --study name")
        study.set_user_attr(key, value)


def best_overrides(params: dict) -> dict:
    """A trial's parameters as run settings (flat keys)."""
    return {key: params[key] for key in SEARCH_SPACE if key in params}


def _validation_source(p: Prepared) -> str:
    n_val = len(p.feats.ids) - p.feats.n_train
    return f"validation: the {len(leak_free_validation(p))} of {n_val} images in no group with a training image"


def tuning_record(study: optuna.Study, storage: str, p: Prepared, metric: str, source: str) -> TuningRecord:
    """A plain copy of the study: trials, best, importances; ``source``: what the objective scored."""
    trials = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        trials.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                       "seconds": seconds, "epochs_reported": len(t.intermediate_values)})
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    best = None
    if complete:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, "overrides": best_overrides(b.params)}
    importances, note = {}, "Optuna's fANOVA importance of each setting for the objective, over the complete trials"
    if len(complete) >= 2:
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            importances = {k: float(v) for k, v in
                           optuna.importance.get_param_importances(study, evaluator=evaluator).items()
                           if math.isfinite(v)}  # every trial scoring the same leaves nothing to explain
        except (RuntimeError, ValueError) as exc:
            note = f"not computed: {exc}"
    else:
        note = "not computed: fewer than two complete trials"
    return TuningRecord(
        created_at=utc_timestamp(), study=study.study_name, storage=_without_password(storage),
        dataset=p.dataset(), backbone=p.config.backbone, base_config=p.config.to_dict(),
        objective={"metric": metric, "direction": "maximize", "source": source,
                   "pruner": "MedianPruner(n_startup_trials=5, n_warmup_steps=3) on per-epoch (per-fold) reports"},
        search_space=SEARCH_SPACE, trials=trials, best=best, importances=importances, importance_note=note,
        code=provenance.code_version())


def _without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: keep nothing that could hold a secret
        return url.split("@")[-1]


def tuned_configs(base: RunConfig, record: TuningRecord, seeds: list[int]) -> list[RunConfig]:
    """The best trial's settings as full runs of ``base``, one per seed, each marked ``tuned_from``."""
    if not record.best:
        raise UserError(f"study '{record.study}' has no complete trial yet; run `python -m core tune` first")
    marker = f"{record.study}#{record.best['number']}"
    return [with_settings(base, record.best["overrides"], seed=seed, tuned_from=marker) for seed in seeds]

