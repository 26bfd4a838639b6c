"""What readers call things: runs, configurations, metrics and deployment variants.

Run and configuration labels are unique among the runs labelled together (the settings that tell
alike runs apart are appended). No TensorFlow.
"""

from __future__ import annotations

import json
from collections import Counter

from core.artifacts import config as config_mod

METRIC_LABELS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro-F1",
                 "macro_auc": "Macro AUC",
                 "leak_free_accuracy": "Leak-free accuracy",
                 "leak_free_balanced_accuracy": "Leak-free balanced accuracy"}


def metric_label(metric: str) -> str:
    """A metric column's name for readers (a column added later reads as its own name); ``val_<metric>`` is
    'Validation <metric>'."""
    if metric.startswith("val_") and metric[4:] in METRIC_LABELS:
        label = METRIC_LABELS[metric[4:]]
        return f"Validation {label[0].lower()}{label[1:]}"
    return METRIC_LABELS.get(metric) or metric.replace("_", " ").capitalize()


def run_kind(method: str, weights: str) -> str:
    """'transfer', 'scratch', or the baseline's name."""
    return method if method != "finetune" else ("scratch" if weights == "none" else "transfer")


def run_labels(configs: list[dict]) -> list[str]:
    """Short human labels (backbone · kind · preset · seed), one per run config, unique among them.

    Runs that would share a label (same backbone, kind, preset and seed, other settings
    different) get the settings that tell them apart appended, e.g. ``scratch.epochs=40``.
    """
    labels = _told_apart([f"{_base_label(c)} · seed {c['seed']}" for c in configs],
                         [config_mod.flatten({k: v for k, v in c.items() if k != "dataset"}) for c in configs])
    return _numbered(labels)


# Backbone name prefixes shortened in chart legends (the longest prefix that matches wins).
_SHORT_BACKBONES = (("EfficientNetLite", "Lite"), ("EfficientNet", "EffNet"), ("MobileNet", "MNet"))


def short_labels(configs: list[dict]) -> list[str]:
    """Chart-legend labels, one per run config, unique among them: ``Lite0 s1``, ``Lite0 logreg s0``.

    The backbone is shortened, the kind is named unless it is transfer learning, the preset
    unless most runs share it; runs still alike get the settings that tell them apart (as in
    :func:`run_labels`), then a number. The full name (:func:`run_labels`) belongs in the
    chart's tooltip.
    """
    usual = Counter(c["preset"] for c in configs).most_common(1)[0][0] if configs else None
    labels = []
    for c in configs:
        kind = run_kind(c.get("method", "finetune"), c["weights"])
        words = [_short_backbone(c["backbone"]), "" if kind == "transfer" else kind,
                 "" if c["preset"] == usual else c["preset"], f"s{c['seed']}"]
        labels.append(" ".join(w for w in words if w))
    labels = _told_apart(labels, [config_mod.flatten({k: v for k, v in c.items() if k != "dataset"})
                                  for c in configs])
    return _numbered(labels)


def _short_backbone(name: str) -> str:
    for prefix, short in _SHORT_BACKBONES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return short + name[len(prefix):]
    return name


def _numbered(labels: list[str]) -> list[str]:
    """Identical labels (the same settings run twice) numbered ``#2``, ``#3``, ... so no two are alike."""
    labels, seen = list(labels), {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} · #{seen[label]}"
    return labels


def configuration_labels(configs: list[dict]) -> list[str]:
    """The label of each run's configuration (backbone · kind · preset): runs that differ only by seed share it.

    Configurations that would share a label get the settings that tell them apart appended,
    as in :func:`run_labels`.
    """
    return _told_apart([_base_label(c) for c in configs],
                       [config_mod.flatten(config_mod.identity_settings(c, ["dataset", "seed"])) for c in configs])


def _base_label(cfg: dict) -> str:
    return f"{cfg['backbone']} · {run_kind(cfg.get('method', 'finetune'), cfg['weights'])} · {cfg['preset']}"


def _told_apart(labels: list[str], flat: list[dict]) -> list[str]:
    """``labels`` with the flattened settings that differ among the entries sharing a label appended."""
    labels = list(labels)
    for label in set(labels):
        members = [i for i, lab in enumerate(labels) if lab == label]
        if len(members) < 2:
            continue
        keys = sorted({k for i in members for k in flat[i]})
        differing = [k for k in keys if len({json.dumps(flat[i].get(k)) for i in members}) > 1]
        for i in members:
            extra = ", ".join(f"{k}={_setting_text(flat[i].get(k))}" for k in differing)
            labels[i] = f"{label} · {extra}" if extra else labels[i]
    return labels


def _setting_text(value) -> str:
    """A setting's value in a label; unset (null, or missing from an older run's config) is 'default'; a fraction
    (a tuned learning rate, say) to 4 significant digits."""
    if value is None:
        return "default"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


VARIANT_LABELS = {"keras": "Keras model", "tflite_float32": "TFLite float32", "tflite_float16": "TFLite float16",
                  "tflite_int8_dynamic": "TFLite dynamic-range int8", "tflite_int8_full": "TFLite int8 (per-channel)",
                  "tflite_int8_per_tensor": "TFLite int8 (per-tensor)", "qat_int8": "quantisation-aware int8"}


def variant_label(name: str) -> str:
    """A deployment variant's name for people: ``tflite_int8_per_tensor`` -> ``TFLite int8 (per-tensor)``."""
    if name in VARIANT_LABELS:
        return VARIANT_LABELS[name]
    kind, _, param = name.partition("_")
    if kind == "pruned" and param.isdigit():
        return f"pruned {param}% (float32 TFLite)"
    if kind == "clustered" and param.isdigit():
        return f"{param} weight clusters (float32 TFLite)"
    return name
