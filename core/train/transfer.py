"""The network methods of a run: two-stage transfer learning, or training from scratch.

With ImageNet weights:

1. stage 1 trains the new head on the frozen backbone from cached pooled outputs of
   the original images plus ``augment.views`` fixed augmented views of each training
   image (:mod:`core.train.features`);
2. stage 2 unfreezes the top ``unfreeze_layers`` backbone layers (BatchNorm frozen),
   recompiles with the lower learning rate and fine-tunes them on cached activations
   of the frozen lower part at the cut layer, over the same views. Without a usable
   cut layer it falls back to full forward passes over the images.

With ``weights="none"`` the same architecture (backbone + head) is trained from random
initialisation in one stage, every layer trainable, on the same augmented views.

The trained classifier is evaluated on the test images through its full forward pass
and saved as ``model.keras``. Its validation probabilities (``val_predictions.csv``) come
from the cached validation features where they exist (the head on pooled outputs, or the
layers above the cut on boundary activations: the same numbers as the full classifier on
the validation images, within float16 rounding of the cache), else from the images.

Each stage's details carry a ``compute`` block: the FLOPs it performs per epoch, estimated from
the layer shapes of the model it trained, over its median epoch time, against the machine's
matmul peak (:func:`core.models.compute.stage_compute`).
"""

from __future__ import annotations

import numpy as np

from core.artifacts.config import RunConfig
from core.artifacts.runs import RunFolder
from core.artifacts.storage import atomic_save
from core.models import compute
from core.models.backbones import BackboneSpec, build_backbone
from core.models.batchnorm import set_batchnorm_momentum
from core.models.classifier import build_classifier, build_head_layers, build_head_model, penalise_kernels
from core.train import features as feat
from core.train import stages as training
from core.train.pipeline import cached_dataset, epoch_views, inference_batch, make_dataset, training_order


def train_and_predict(config: RunConfig, spec: BackboneSpec, data, run: RunFolder, emit) -> dict:
    """Train the network for ``config`` and return test and validation probabilities and details.

    Each phase's time goes to the run's events (:meth:`RunFolder.phase`).
    """
    from core.models.tfkeras import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    try:
        if config.weights == "none":
            classifier, details, val_probs = _from_scratch(config, spec, data, run, emit)
        else:
            classifier, details, val_probs = _two_stage(config, spec, data, run, emit)
        with run.phase("test_inference"):
            probs = predict_images(classifier, spec, config, data.abs_paths("test"))
        atomic_save(run.file("model.keras"), classifier.save)
        return {"test_probs": probs, "val_probs": val_probs, "details": details}
    finally:
        keras.backend.clear_session()  # free the graph and weights before the next run


def predict_images(model, spec: BackboneSpec, config: RunConfig, paths: list[str]) -> np.ndarray:
    """Class probabilities of ``model`` for image files, batch by batch."""
    ds = make_dataset(paths, None, spec, batch_size=inference_batch(config.batch_size), input_size=config.input_size)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)


def _views(config: RunConfig) -> list[int]:
    return list(range(config.augment.views + 1))


def _two_stage(config: RunConfig, spec: BackboneSpec, data, run: RunFolder, emit):
    from core.models.tfkeras import keras

    size = config.input_size or spec.input_size
    base = build_backbone(spec, "imagenet", (size, size, 3))
    head_layers = build_head_layers(len(data.classes), config)
    classifier = build_classifier(base, head_layers)
    fine_tune = config.stage2.epochs > 0
    unfrozen = training.unfreeze_top(base, config.unfreeze_layers) if fine_tune else []
    cut = training.find_cut_layer(base, unfrozen[0]) if unfrozen else None
    training.freeze_backbone(base)

    # Backbone outputs, computed once per image and view and cached across runs.
    with run.phase("features"):
        extractor = feat.FeatureExtractor(base, spec, size, cut)
        wanted = [("train", v) for v in _views(config)] + [("val", 0)]
        cache = feat.split_outputs(extractor, data, config.augment, config.batch_size, wanted, emit, run.event)

    train_views = _views(config)
    y_train = np.concatenate([data.labels["train"]] * len(train_views))
    weights = training.class_weights(data.labels["train"], len(data.classes)) if config.class_weights else None
    rows_done = training.stage_rows_for_resume(run, ["stage1", "stage2"])
    run.rewrite_history(rows_done)

    # Stage 1: the head alone on pooled features.
    pooled_train = np.concatenate([cache[("train", v)]["pooled"] for v in train_views])
    run.event("stage", stage="stage1", epochs=config.stage1.epochs)
    with run.phase("stage1"):
        head, s1 = fit_head(config, head_layers, (pooled_train, y_train),
                           (cache[("val", 0)]["pooled"], data.labels["val"]), run, emit)
    stage1 = {**_stage_details(s1), "compute": _compute(head, s1, len(pooled_train), len(data.labels["val"]))}
    details = {"stage1": stage1, "feature_cut_layer": cut, "views": config.augment.views,
               "augmentation": "fixed views per training image, backbone outputs cached (core.data.augment)"}
    if not fine_tune:  # the classifier is the frozen backbone and this head: the head on pooled outputs is it
        return classifier, details, _predict_arrays(head, cache[("val", 0)]["pooled"], config)

    unfrozen = training.unfreeze_top(base, config.unfreeze_layers)
    if cut is not None:
        upper = keras.Model(base.get_layer(cut).output, classifier.output, name="upper")
        boundary_train = [cache[("train", v)]["boundary"] for v in train_views]
        n_train = len(data.ids["train"])
        train_input = lambda epoch: cached_dataset(  # noqa: E731
            boundary_train, data.labels["train"], config.batch_size,
            training_order(n_train, len(train_views), config.seed, epoch, config.stage2_views))
        val_input = cached_dataset([cache[("val", 0)]["boundary"]], data.labels["val"],
                                   inference_batch(config.batch_size))
        val_predict = lambda: np.asarray(upper.predict(val_input, verbose=0), dtype=np.float64)  # noqa: E731
        shown_per_epoch = len(training_order(n_train, len(train_views), config.seed, 0, config.stage2_views))
        shown = "every cached view" if config.stage2_views == "all" else "one cached view"
        mode = (f"cached activations of the frozen part at layer '{cut}', read from disk a batch at a time; "
                f"only the layers above run; each epoch shows {shown} of each training image")
    else:
        upper = classifier
        train_input = lambda epoch: _image_epoch(config, spec, data, epoch)  # noqa: E731
        val_input = make_dataset(data.abs_paths("val"), data.labels["val"], spec,
                                 inference_batch(config.batch_size), input_size=config.input_size)
        val_predict = lambda: predict_images(classifier, spec, config, data.abs_paths("val"))  # noqa: E731
        mode = "full forward passes over the images (no cacheable cut layer)"
        shown_per_epoch = len(data.ids["train"])
    del cache
    if config.unfrozen_l2:
        count = penalise_kernels([base.get_layer(name) for name in unfrozen], config.unfrozen_l2)
        emit(f"stage2: L2 penalty {config.unfrozen_l2:g} on {count} unfrozen kernels")
    training.compile_model(upper, config.stage2, config.label_smoothing)
    trainable = int(sum(np.prod(w.shape) for w in upper.trainable_weights))
    emit(f"stage2: {len(unfrozen)} layers unfrozen ({trainable:,} trainable parameters), {mode}")
    run.event("stage", stage="stage2", epochs=config.stage2.epochs)
    with run.phase("stage2"):
        s2 = training.train_stage(upper, "stage2", config.stage2, train_input, val_input, run, config, emit,
                                  weights)
    details["stage2"] = {**_stage_details(s2), "unfrozen_layers": unfrozen, "trainable_params": trainable,
                         "mode": mode, "compute": _compute(upper, s2, shown_per_epoch, len(data.labels["val"]))}
    with run.phase("val_inference"):
        val_probs = val_predict()
    return classifier, details, val_probs


def _predict_arrays(model, x: np.ndarray, config: RunConfig) -> np.ndarray:
    """Class probabilities of ``model`` (the head, or the layers above the cut) for cached backbone outputs."""
    return np.asarray(model.predict(x.astype(np.float32), batch_size=inference_batch(config.batch_size), verbose=0),
                      dtype=np.float64)


def fit_head(config: RunConfig, head_layers: list | int, train: tuple[np.ndarray, np.ndarray],
             val: tuple[np.ndarray, np.ndarray], run: RunFolder | None = None, emit=lambda line: None,
             on_epoch=None):
    """Stage 1: the head trained on pooled backbone outputs ``train`` (every view of the training images), early
    stopped on ``val``; returns the head model and its :class:`~core.train.stages.StageResult`.

    ``head_layers``: the layers (shared with a classifier) or the number of classes (a new head). Without a
    ``run`` nothing is written (a cross-validation fold, a tuning trial); ``on_epoch`` as in
    :func:`core.train.stages.train_stage`. Class weights, when the config asks, come from ``train``'s labels.
    """
    if isinstance(head_layers, int):
        num_classes = head_layers
        head_layers = build_head_layers(head_layers, config)
    else:
        num_classes = int(head_layers[-1].units)
    head = build_head_model(train[0].shape[1], head_layers)
    training.compile_model(head, config.stage1, config.label_smoothing)
    weights = training.class_weights(train[1], num_classes) if config.class_weights else None
    result = training.train_stage(head, "stage1", config.stage1, lambda epoch: train, val, run, config, emit, weights,
                                  on_epoch)
    return head, result


def _image_epoch(config: RunConfig, spec: BackboneSpec, data, epoch: int):
    """One epoch over the training images, each shown as one of its fixed views."""
    views = epoch_views(len(data.ids["train"]), config.augment.views + 1, config.seed, epoch)
    return make_dataset(data.abs_paths("train"), data.labels["train"], spec, config.batch_size, shuffle=True,
                        seed=config.seed + epoch, input_size=config.input_size, views=views.tolist(),
                        augment=config.augment, ids=data.ids["train"])


def _from_scratch(config: RunConfig, spec: BackboneSpec, data, run: RunFolder, emit):
    size = config.input_size or spec.input_size
    base = build_backbone(spec, None, (size, size, 3))
    classifier = build_classifier(base, build_head_layers(len(data.classes), config))
    classifier.trainable = True
    if config.bn_momentum is not None:
        count = set_batchnorm_momentum(classifier, config.bn_momentum)
        emit(f"scratch: BatchNorm momentum {config.bn_momentum} in {count} layers")
    training.compile_model(classifier, config.scratch, config.label_smoothing)
    weights = training.class_weights(data.labels["train"], len(data.classes)) if config.class_weights else None
    run.rewrite_history(training.stage_rows_for_resume(run, ["scratch"]))
    val = make_dataset(data.abs_paths("val"), data.labels["val"], spec, inference_batch(config.batch_size),
                       input_size=config.input_size)
    run.event("stage", stage="scratch", epochs=config.scratch.epochs)
    emit(f"scratch: training all {classifier.count_params():,} parameters from random initialisation")
    with run.phase("scratch"):
        result = training.train_stage(classifier, "scratch", config.scratch,
                                      lambda epoch: _image_epoch(config, spec, data, epoch), val, run, config, emit,
                                      weights)
    compute_block = _compute(classifier, result, len(data.ids["train"]), len(data.labels["val"]))
    details = {"scratch": {**_stage_details(result), "compute": compute_block}, "views": config.augment.views,
               "augmentation": "each epoch shows every training image as one of its fixed views (core.data.augment)"}
    with run.phase("val_inference"):
        val_probs = predict_images(classifier, spec, config, data.abs_paths("val"))
    return classifier, details, val_probs


def _compute(model, result: training.StageResult, train_samples: int, val_samples: int) -> dict:
    """The stage's FLOPs per epoch and achieved GFLOP/s against the machine's matmul peak (measured once per
    process with TensorFlow's thread count); see :func:`core.models.compute.stage_compute`."""
    peak = compute.training_peak(compute.tensorflow_threads())
    return compute.stage_compute(model, train_samples, val_samples, [r["seconds"] for r in result.rows], peak)


def _stage_details(result: training.StageResult) -> dict:
    return {"epochs_run": len(result.rows), "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "stopped_early": result.stopped_early}
