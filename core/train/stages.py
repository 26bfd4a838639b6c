"""Training: two-stage transfer learning, training from scratch, resumable epochs.

Transfer learning follows the keras-io guide, in small named steps:
:func:`core.models.classifier.build_classifier` (backbone + new head), :func:`freeze_backbone`,
:func:`unfreeze_top` (BatchNorm stays frozen), :func:`compile_model`. Stage 1 trains
the head on cached backbone outputs; stage 2 fine-tunes the top of the backbone on
cached activations of the frozen lower part (see :mod:`core.train.features`).

:func:`train_stage` runs one stage epoch by epoch with a checkpoint after each, so a
killed run resumes at the last finished epoch (the optimiser's moments restart).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from core.artifacts.config import RunConfig, StageConfig
from core.artifacts.runs import RunFolder
from core.artifacts.storage import atomic_save, atomic_write_json, read_json
from core.models.batchnorm import is_batchnorm
from core.progress import Emit, format_seconds
from core.train.config import OPTIMIZERS
from core.train.pipeline import inference_batch

# --- freezing and compiling ------------------------------------------------------

def freeze_backbone(base) -> None:
    """Freeze every backbone layer (stage 1)."""
    base.trainable = False
    for layer in base.layers:
        layer.trainable = False


def unfreeze_top(base, n_layers: int) -> list[str]:
    """Unfreeze the top ``n_layers`` of the backbone except BatchNorm; return their names."""
    base.trainable = True  # tf_keras: this also sets every sub-layer trainable...
    for layer in base.layers:
        layer.trainable = False  # ...so freeze them all again before choosing the top ones
    unfrozen = []
    for layer in base.layers[max(0, len(base.layers) - n_layers):]:
        if is_batchnorm(layer) or not layer.weights:
            continue
        layer.trainable = True
        unfrozen.append(layer.name)
    return unfrozen


def compile_model(model, stage: StageConfig, label_smoothing: float = 0.0) -> None:
    """(Re)compile with the stage's optimiser and learning rate (and the run's label smoothing)."""
    from core.models.tfkeras import keras

    optimizer = getattr(keras.optimizers, OPTIMIZERS[stage.optimizer])  # the name is checked with the config
    loss = smoothed_loss(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy"
    model.compile(optimizer=optimizer(learning_rate=stage.learning_rate), loss=loss, metrics=["accuracy"])


def smoothed_loss(smoothing: float):
    """Cross-entropy of integer labels against targets smoothed towards uniform (Keras has this only for
    one-hot labels)."""
    from core.models.tfkeras import keras, tf

    def loss(y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        one_hot = tf.one_hot(labels, tf.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    return loss


def find_cut_layer(base, first_trainable: str | None) -> str | None:
    """The highest layer below ``first_trainable`` whose output is all the layers above need.

    Stage 2 caches that layer's activation and trains only the layers above it.
    None when no such layer exists (nothing can be cached).
    """
    if first_trainable is None:
        return None
    layers = base.layers
    index = {layer.name: i for i, layer in enumerate(layers)}
    limit = index[first_trainable]
    lowest_input = []
    for layer in layers:
        inbound = [index[n.name] for node in layer._inbound_nodes for n in _as_list(node.inbound_layers)]
        lowest_input.append(min(inbound) if inbound else -1)
    best, suffix_min = None, math.inf
    for i in range(len(layers) - 1, -1, -1):
        if suffix_min >= i and 0 < i < limit:
            best = i
            break
        suffix_min = min(suffix_min, lowest_input[i])
    # The scan stops at the first valid cut from the top that is below the limit.
    if best is None:
        return None
    return layers[best].name


def _as_list(x):
    return x if isinstance(x, list) else [x]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' class weights: n / (k * count) for every class present."""
    counts = np.bincount(labels, minlength=num_classes)
    total, present = counts.sum(), (counts > 0).sum()
    return {c: float(total / (present * counts[c])) for c in range(num_classes) if counts[c] > 0}


# --- the resumable epoch loop ----------------------------------------------------

MIN_LR_FRACTION = 0.01  # a reduced learning rate stops at 1% of the stage's


@dataclass
class StageResult:
    """What a finished stage leaves behind."""

    rows: list[dict]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    seconds: float


class _Checkpoints:
    """A stage's resume state and weights: files in the run's ``state/`` folder, or (``run`` None: a fold or a
    tuning trial, which nothing resumes) kept in memory."""

    def __init__(self, run: RunFolder | None, stage_name: str):
        self.run, self.weights = run, {}
        if run is not None:
            run.state_dir.mkdir(parents=True, exist_ok=True)
            self.state_file = run.state_dir / f"{stage_name}.json"
            self.files = {w: run.state_dir / f"{stage_name}-{w}.weights.h5" for w in ("last", "best")}

    def state(self) -> dict:
        if self.run is not None and self.state_file.is_file():
            return read_json(self.state_file)
        return {"epoch": 0, "best_val_loss": None, "best_epoch": 0, "wait": 0, "rows": [], "done": False,
                "seconds": 0.0, "learning_rate": None, "lr_wait": 0}

    def save_state(self, state: dict) -> None:
        if self.run is not None:
            atomic_write_json(self.state_file, state)

    def save_weights(self, model, which: str) -> None:
        if self.run is None:
            self.weights[which] = model.get_weights()
        else:
            atomic_save(self.files[which], model.save_weights)

    def load_weights(self, model, which: str) -> None:
        if self.run is None:
            model.set_weights(self.weights[which])
        else:
            model.load_weights(str(self.files[which]))


def train_stage(model, stage_name: str, stage: StageConfig, train: Callable[[int], Any], val: Any,
                run: RunFolder | None, config: RunConfig, emit: Emit, class_weight: dict | None = None,
                on_epoch: Callable[[int, Any], None] | None = None) -> StageResult:
    """Train ``model`` for one stage, one epoch at a time, checkpointing after each.

    ``train(epoch)`` returns the ``fit`` inputs for that epoch as ``(x, y)`` arrays or
    a dataset; ``val`` is ``(x, y)`` or a dataset. Early stopping on validation loss
    restores the best weights. Resumes from the stage's checkpoint if one exists. Without
    a ``run`` (a cross-validation fold, a tuning trial) nothing is written: the best weights
    are kept in memory. ``on_epoch(epoch, model)`` is called after each epoch (a tuning
    pruner's report; it may raise to stop the stage).
    """
    from core.models.tfkeras import keras

    store = _Checkpoints(run, stage_name)
    state = store.state()
    if state["done"]:
        store.load_weights(model, "best")
        emit(f"{stage_name}: already finished (best epoch {state['best_epoch']}), reusing its weights")
        return StageResult(state["rows"], state["best_epoch"], state["best_val_loss"], state.get("stopped_early", False),
                           state["seconds"])
    if state["epoch"] > 0:
        store.load_weights(model, "last")
        emit(f"{stage_name}: resuming after epoch {state['epoch']}")
    epoch_times = [r["seconds"] for r in state["rows"]]
    stopped_early = False
    for epoch in range(state["epoch"], stage.epochs):
        keras.utils.set_random_seed(config.seed * 100_003 + epoch)
        rate = state.get("learning_rate") or stage.learning_rate
        model.optimizer.learning_rate = rate  # the schedule's rate, also after a resume
        started = time.monotonic()
        x = train(epoch)
        fit_args: dict[str, Any] = dict(epochs=1, verbose=0, class_weight=class_weight)
        if isinstance(x, tuple):
            fit_args.update(x=x[0], y=x[1], batch_size=config.batch_size, shuffle=True)
        else:
            fit_args.update(x=x)
        fit_args["validation_data"] = val
        if isinstance(val, tuple):  # arrays; a dataset comes batched (make_dataset with inference_batch)
            fit_args["validation_batch_size"] = inference_batch(config.batch_size)
        hist = model.fit(**fit_args).history
        seconds = time.monotonic() - started
        row = {
            "stage": stage_name, "epoch": epoch + 1,
            "loss": float(hist["loss"][-1]), "accuracy": float(hist["accuracy"][-1]),
            "val_loss": float(hist["val_loss"][-1]), "val_accuracy": float(hist["val_accuracy"][-1]),
            "learning_rate": float(rate), "seconds": round(seconds, 3),
        }
        if run is not None:
            store.save_weights(model, "last")
        improved = state["best_val_loss"] is None or row["val_loss"] < state["best_val_loss"]
        if improved:
            store.save_weights(model, "best")
            state.update(best_val_loss=row["val_loss"], best_epoch=epoch + 1, wait=0)
        else:
            state["wait"] += 1
        if epoch + 1 < stage.epochs and state["wait"] < stage.patience:  # a cut only where an epoch will use it
            state.update(reduced_learning_rate(stage, rate, improved, state.get("lr_wait", 0)))
        if (state.get("learning_rate") or rate) < rate and run is not None:
            emit(f"{stage_name}: no val_loss improvement for {stage.reduce_lr_patience} epochs, learning rate "
                 f"{rate:.2g} -> {state['learning_rate']:.2g}")
        state["rows"].append(row)
        state["epoch"] = epoch + 1
        state["seconds"] += seconds
        store.save_state(state)
        epoch_times.append(seconds)
        remaining = stage.epochs - (epoch + 1)
        eta = float(np.mean(epoch_times)) * remaining
        if run is not None:
            run.append_history(row)
            run.event("epoch", stage=stage_name, epoch=epoch + 1, epochs=stage.epochs, eta_s=round(eta, 1),
                      metrics={k: row[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")})
            emit(f"{stage_name} epoch {epoch + 1}/{stage.epochs}: loss {row['loss']:.4f} acc {row['accuracy']:.3f} "
                 f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f} ({seconds:.1f}s, "
                 f"ETA <= {format_seconds(eta)})")
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
        if state["wait"] >= stage.patience:
            stopped_early = True
            if run is not None:
                emit(f"{stage_name}: early stop, no val_loss improvement for {stage.patience} epochs")
            break
    if state["epoch"] > 0:
        store.load_weights(model, "best")
    state.update(done=True, stopped_early=stopped_early)
    store.save_state(state)
    return StageResult(state["rows"], state["best_epoch"], state["best_val_loss"], stopped_early, state["seconds"])


def reduced_learning_rate(stage: StageConfig, rate: float, improved: bool, lr_wait: int) -> dict:
    """The next epoch's ``learning_rate`` and ``lr_wait`` (epochs since an improvement or a reduction).

    As Keras' ReduceLROnPlateau (no cooldown, no min_delta): after ``stage.reduce_lr_patience`` epochs without
    a validation-loss improvement the rate is multiplied by ``stage.reduce_lr_factor``, never below
    :data:`MIN_LR_FRACTION` of the stage's rate; ``reduce_lr_patience`` 0 keeps it constant. Kept in the stage's
    resume state, so a resumed run follows the same schedule.
    """
    lr_wait = 0 if improved else lr_wait + 1
    if stage.reduce_lr_patience and lr_wait >= stage.reduce_lr_patience:
        floor = stage.learning_rate * MIN_LR_FRACTION
        if rate > floor:
            return {"learning_rate": max(rate * stage.reduce_lr_factor, floor), "lr_wait": 0}
    return {"learning_rate": rate, "lr_wait": lr_wait}


def stage_rows_for_resume(run: RunFolder, stage_names: list[str]) -> list[dict]:
    """History rows recorded in the checkpoints of ``stage_names`` (to rebuild history.csv)."""
    rows = []
    for name in stage_names:
        f = run.state_dir / f"{name}.json"
        if f.is_file():
            rows.extend(read_json(f)["rows"])
    return rows
