"""Configurations, and the rankings built on them, so that no seed can flip a ranking (pandas only, no TensorFlow).

A configuration is a run's dataset, backbone, weights, method, preset and every setting except
the seed (the runs table's ``settings_key``). Rankings, the headline chart, the recommendation
and the planned comparisons use configurations: the mean over seeds, the seed SD and the number
of seeds, never the best single seed. Everything works on the columns it finds: each metric stored
with an interval (``m``, ``m_low``, ``m_high``) is pooled over seeds, every other number averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from core.artifacts.config import BASELINES
from core.artifacts.findings import plural
from core.artifacts.scoring import balanced_accuracy_step

CONFIGURATION_KEYS = ("dataset", "backbone", "weights", "method", "preset", "settings_key", "split")
CONFIDENCE = 0.95
# From this share of validation images in a group with training images, validation cannot choose: a 1-NN
# that finds the near-copy scores 0.91 there and 0.49 on test (alzheimer_mri's image-level split).
LEAKY_VALIDATION = 0.5
FULL_PRESET = "full"
TRANSFER = "transfer"
BASELINE_KINDS = ("scratch", *BASELINES)
INTERVAL_SEEDS = "seeds"  # mean ± t·SD/√n over the seeds
INTERVAL_BOOTSTRAP = "bootstrap"  # one seed: that run's bootstrap CI
AGAINST_RECOMMENDED = "against the recommended"
TRANSFER_VS_BASELINE = "transfer vs baseline"
ENSEMBLE = "ensemble"  # the kind of a stored ensemble's row (core.artifacts.report)
# Runs-table columns that identify a run rather than measure it: never averaged over seeds.
_NOT_AVERAGED = {"seed"}


def validation_score(metric: str) -> str:
    """The runs-table column the recommendation chooses by when it reports test ``metric``: the same metric on the
    validation split (mean over seeds), never a test score. Choosing on another metric than the one reported (plain
    accuracy for a balanced-accuracy report, say) would favour the majority class on an imbalanced dataset. A
    leak-free metric chooses by its plain counterpart: validation split by group has no near-copies to leave out."""
    return f"val_{metric.removeprefix('leak_free_')}"


def interval_metrics(runs: pd.DataFrame) -> list[str]:
    """The metric columns stored with an interval (``m``, ``m_low`` and ``m_high``), in table order."""
    return [c for c in runs.columns if f"{c}_low" in runs.columns and f"{c}_high" in runs.columns]


def configurations(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of the runs table: metrics pooled over its seeds.

    For each interval metric ``m``: ``m`` is the mean over seeds, ``m_sd`` the SD across seeds
    (undefined with one seed), and ``m_low``/``m_high`` a 95% interval: mean ± t·SD/√n with two
    or more seeds (``interval`` = ``"seeds"``), the run's own bootstrap CI with one seed
    (``"bootstrap"``). Other numbers (validation score, sizes, latency) are means over the seeds
    that have them; ``deployed`` is true when any seed was deployed. ``run`` names the run that
    stands for the configuration in paired tests: seed 0, or its lowest seed.
    """
    if runs.empty:
        return pd.DataFrame()
    keys = [k for k in CONFIGURATION_KEYS if k in runs.columns]
    metrics = interval_metrics(runs)
    pooled = set(metrics) | {f"{m}_{end}" for m in metrics for end in ("low", "high")}
    averaged = [c for c in runs.columns if c not in pooled and c not in keys and c not in _NOT_AVERAGED
                and _numeric(runs[c]) is not None]
    rows = []
    for _, group in runs.groupby(keys, sort=False, dropna=False):
        group = group.sort_values("seed", kind="stable")
        first = group.iloc[0]
        n = len(group)
        row = {k: first[k] for k in keys}
        row.update({
            "label": first.get("configuration", first.get("label")), "kind": first.get("kind"),
            "seeds": [int(s) for s in group["seed"]], "n_seeds": n, "one_seed": n == 1,
            "interval": INTERVAL_SEEDS if n >= 2 else INTERVAL_BOOTSTRAP,
            "run": f"{first['backbone']}/{first['run_id']}" if "run_id" in group else None,
            "runs": [f"{b}/{r}" for b, r in zip(group["backbone"], group["run_id"])] if "run_id" in group else [],
            "run_label": first.get("label"), "run_seed": int(first["seed"]),
            "ci_unit": first.get("ci_unit", "image"), "split_grouping": first.get("split_grouping"),
        })
        for m in metrics:
            row.update(_pooled(group, m))
        for column in averaged:
            values = _numeric(group[column])
            row[column] = bool(values.any()) if group[column].dtype == bool else values.mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _numeric(values: pd.Series) -> pd.Series | None:
    """``values`` as numbers (booleans kept), or None when some value is not a number."""
    if values.dtype == bool:
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().sum() == values.notna().sum() else None


def _pooled(group: pd.DataFrame, metric: str) -> dict:
    """Mean, SD across seeds and the 95% interval of one metric over a configuration's runs."""
    columns = [metric, f"{metric}_low", f"{metric}_high"]
    numbers = group[columns].apply(pd.to_numeric, errors="coerce").astype(float)
    numbers = numbers[numbers[metric].notna()]
    values, n = numbers[metric], len(numbers)
    out = {metric: values.mean() if n else math.nan, f"{metric}_sd": values.std(ddof=1) if n >= 2 else math.nan,
           f"{metric}_low": math.nan, f"{metric}_high": math.nan, f"{metric}_n": n}
    if n == 1:
        out[f"{metric}_low"], out[f"{metric}_high"] = numbers.iloc[0][columns[1]], numbers.iloc[0][columns[2]]
    elif n >= 2:
        half = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * out[f"{metric}_sd"] / math.sqrt(n)
        # Every interval metric is a proportion or an AUC: the interval stays within [0, 1].
        out[f"{metric}_low"], out[f"{metric}_high"] = max(0.0, out[metric] - half), min(1.0, out[metric] + half)
    return out


def bootstrap_unit(runs: pd.DataFrame) -> str:
    """What the runs' bootstrap resampled: groups of near-copies, test images, or a mix (said per run)."""
    units = set(runs["ci_unit"].dropna()) if "ci_unit" in runs else {"image"}
    if units == {"group"}:
        return "resampling groups of near-copies, not images"
    return "resampling test images" if units <= {"image"} else "resampling groups where the run has them, else images"


def interval_caption(configs: pd.DataFrame) -> str:
    """Which interval each configuration row carries, for the caption under a configurations table."""
    if configs.empty:
        return ""
    several = int((~configs["one_seed"]).sum())
    single = int(configs["one_seed"].sum())
    parts = []
    if several:
        parts.append(f"{several} configuration(s) with two or more seeds: mean ± SD across seeds [95% interval: "
                     "mean ± t·SD/√n over the seeds, i.e. training randomness]")
    if single:
        parts.append(f"{single} configuration(s) with one seed (marked 'one seed'): the run's value [95% bootstrap "
                     f"CI, {bootstrap_unit(configs)}]")
    return "; ".join(parts)


def ranking_preset(configs: pd.DataFrame) -> tuple[str | None, str | None]:
    """The preset rankings use (full whenever a full configuration exists) and a note on what is left out: the
    other presets' configurations, and those on another split (:func:`ranking_split`).

    A quick run is scored on a subsample of the test split: it is never ranked against full runs.
    """
    if configs.empty:
        return None, None
    presets = sorted(set(configs["preset"]))
    preset = FULL_PRESET if FULL_PRESET in presets else presets[0]
    others = configs[configs["preset"] != preset]
    notes = []
    if preset != FULL_PRESET:
        notes.append(f"No full-preset configuration yet: the ranking compares the {preset}-preset ones, which are "
                     f"trained briefly and may be scored on a subsample of the test split.")
    if not others.empty:
        left = ", ".join(sorted(set(others["preset"])))
        notes.append(f"{len(others)} configuration(s) of the {left} preset are not ranked against the {preset} ones "
                     "(shorter training, scored on a subsample of the test split).")
    _, split_note = ranking_split(configs[configs["preset"] == preset])
    if split_note:
        notes.append(split_note)
    return preset, " ".join(notes) or None


def ranking_split(configs: pd.DataFrame) -> tuple[str | None, str | None]:
    """The split rankings use when configurations were made on several (``""``: runs that record no split file;
    None: one split only, nothing to choose), and a note on the others.

    Runs on different splits were chosen on different validation images (and, without a predefined test
    folder, tested on different images), so they are never ranked against each other. Preferred: a split made
    by group (its validation can choose), then the one with the most configurations, then the name.
    """
    if configs.empty or "split" not in configs or configs["split"].nunique(dropna=False) <= 1:
        return None, None
    splits = configs["split"].fillna("")
    grouped = configs.get("split_grouping", pd.Series("none", index=configs.index)).fillna("none") != "none"
    table = pd.DataFrame({"split": splits, "grouped": grouped}).groupby("split").agg(
        grouped=("grouped", "any"), n=("grouped", "size")).reset_index()
    best = table.sort_values(["grouped", "n", "split"], ascending=[False, False, True]).iloc[0]
    others = table[table["split"] != best["split"]]
    how = "split by group" if best["grouped"] else "split image by image"
    left = ", ".join(f"{int(r.n)} on {'a split by group' if r.grouped else 'an image-level split'}"
                     + (f" ({r.split})" if r.split else "") for r in others.itertuples())
    return best["split"], (f"Ranked: the configurations on {best['split'] or 'the unnamed split'} ({how}). "
                           f"Not ranked against them: {left}; they were validated (and may be tested) on other "
                           "images.")


def ranking_pool(configs: pd.DataFrame) -> pd.DataFrame:
    """The configurations rankings compare: those of :func:`ranking_preset`'s preset and :func:`ranking_split`'s
    split."""
    preset, _ = ranking_preset(configs)
    if preset is None:
        return configs
    same = configs[configs["preset"] == preset]
    split, _ = ranking_split(same)
    return same if split is None else same[same["split"].fillna("") == split]


def ranked(configs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The configurations of the ranking pool (:func:`ranking_pool`), best mean ``metric`` first."""
    same = ranking_pool(configs)
    if same.empty:
        return same
    return same.sort_values([metric, "label"], ascending=[False, True], na_position="last", ignore_index=True)


@dataclass
class Recommendation:
    """The configuration chosen by validation score, and what the test split says about it."""

    metric: str
    preset: str | None = None
    chosen: pd.Series | None = None
    # Fitting configurations not told apart from the chosen one on test ``metric``: the paired interval of the
    # difference (mcnemar.json's configurations) holds 0, or, where no pair is stored, the two intervals overlap.
    not_distinguishable: pd.DataFrame = field(default_factory=pd.DataFrame)
    basis: str = ""  # how they were told apart: PAIRED, OVERLAP, or both (joined by " and ")
    # Fitting configurations told apart from the chosen one on test ``metric`` and higher there: validation chose
    # otherwise. Reported, never acted on (choosing on test would bias the chosen one's test score).
    better_on_test: pd.DataFrame = field(default_factory=pd.DataFrame)
    reason: str | None = None  # why nothing was chosen
    notes: list[str] = field(default_factory=list)
    # With a limit: the chosen configuration's variant to deploy, as (name, MB, ms) (see fitting_variant).
    variant: tuple[str, float, float] | None = None


# Runs-table columns of every deployable variant a run measured: ``mb:<variant>`` and ``ms:<variant>``
# (core.artifacts.report); a table without them has the full-int8 model's ``int8_mb``/``int8_latency_ms``.
VARIANT_MB, VARIANT_MS = "mb:", "ms:"
FULL_INT8 = "tflite_int8_full"


def variant_costs(row: pd.Series) -> dict[str, tuple[float, float]]:
    """Every deployable variant of a run or configuration: name -> (MB, median ms at 1 thread; NaN if unmeasured)."""
    costs = {}
    for column, value in row.items():
        if isinstance(column, str) and column.startswith(VARIANT_MB) and pd.notna(value):
            name = column[len(VARIANT_MB):]
            ms = row.get(f"{VARIANT_MS}{name}")
            costs[name] = (float(value), float(ms) if ms is not None and pd.notna(ms) else math.nan)
    if not costs and pd.notna(row.get("int8_mb")):
        ms = row.get("int8_latency_ms")
        costs[FULL_INT8] = (float(row["int8_mb"]), float(ms) if ms is not None and pd.notna(ms) else math.nan)
    return costs


def fitting_variant(row: pd.Series, max_mb: float | None, max_ms: float | None) -> tuple[str, float, float] | None:
    """The deployable variant to ship within the limits: the largest that fits (the least compressed, so the
    closest to the trained model; chosen without looking at test scores); None when none fits."""
    fits = [(mb, name, ms) for name, (mb, ms) in variant_costs(row).items()
            if (max_mb is None or mb <= max_mb) and (max_ms is None or ms <= max_ms)]
    if not fits:
        return None
    mb, name, ms = max(fits, key=lambda f: (f[0], f[1]))
    return name, mb, ms


def _fits(df: pd.DataFrame, max_mb: float | None, max_ms: float | None) -> pd.Series:
    if max_mb is None and max_ms is None:
        return pd.Series(True, index=df.index)
    return df.apply(lambda row: fitting_variant(row, max_mb, max_ms) is not None, axis=1).astype(bool)


PAIRED = "paired"  # the stored paired interval of the difference holds 0
OVERLAP = "overlap"  # no stored pair: the two configurations' intervals overlap


def recommend(configs: pd.DataFrame, max_mb: float | None = None, max_ms: float | None = None,
              metric: str = "balanced_accuracy", comparison: dict | None = None) -> Recommendation:
    """Choose a configuration by mean validation ``metric`` among those with a deployable variant within the limits.

    Only configurations of :func:`ranking_pool` compete. Ties on the validation score go to
    the smaller full-int8 model. Nothing is chosen when validation mostly leaks (:data:`LEAKY_VALIDATION`). The
    test split is not used to choose: it reports the chosen configuration's ``metric`` with its interval, and
    which other fitting configurations it cannot be told apart from (:attr:`Recommendation.not_distinguishable`):
    by the paired interval of the difference that ``comparison`` (mcnemar.json's ``configurations``) stores for
    the pair, else, for a pair it lacks, by overlapping intervals (a cruder test: a single run's interval is over
    test images, a configuration's over seeds).
    """
    if configs.empty:
        return Recommendation(metric, reason="No complete run.")
    preset, note = ranking_preset(configs)
    rec = Recommendation(metric, preset, notes=[note] if note else [])
    pool = ranking_pool(configs)
    if "kind" in pool:  # an ensemble's weights are fitted on the validation split it would be chosen on
        pool = pool[pool["kind"] != ENSEMBLE]
    fitting = pool[_fits(pool, max_mb, max_ms)]
    if fitting.empty:
        rec.reason = no_recommendation_reason(pool)
        return rec
    column = validation_score(metric)
    scored = fitting[fitting[column].notna()] if column in fitting else fitting.iloc[:0]
    if scored.empty:
        rec.reason = (f"No configuration within the limits has a validation {metric.replace('_', ' ')} (scored on "
                      "each run's val_predictions.csv; network runs without it: history.csv and best_epoch in "
                      "provenance.json, accuracy only; baselines: their hyperparameter grid).")
        return rec
    if len(scored) < len(fitting):
        rec.notes.append(f"{len(fitting) - len(scored)} configuration(s) without a validation "
                         f"{metric.replace('_', ' ')} could not be chosen.")
    leak = _validation_leak_share(scored)
    if leak is not None and leak >= LEAKY_VALIDATION:
        leader = scored.loc[scored[column].idxmax()]
        rec.reason = (f"No recommendation: up to {leak:.0%} of these runs' validation images are near-copies of "
                      "training images (validation was carved image by image), so choosing on validation rewards "
                      f"remembering training images: {leader['label']} leads there ({leader[column]:.3f}) "
                      f"with test {metric.replace('_', ' ')} {leader[metric]:.3f}. Runs split by group (the default "
                      "now) have a validation split to choose on.")
        return rec
    size = scored["int8_mb"] if "int8_mb" in scored else pd.Series(math.nan, index=scored.index)
    order = scored.assign(_score=scored[column].round(9), _size=size).sort_values(
        ["_score", "_size", "label"], ascending=[False, True, True], na_position="last")
    rec.chosen = fitting.loc[order.index[0]]
    if _tuned(rec.chosen):
        rec.notes.append("Its settings were tuned on this validation split, so its validation score, the one it was "
                         "chosen by, is optimistic; its test interval is not.")
    fragile = fragile_choice_note(order, column)
    if fragile:
        rec.notes.append(fragile)
    if max_mb is not None or max_ms is not None:
        rec.variant = fitting_variant(rec.chosen, max_mb, max_ms)
    others = fitting.drop(index=order.index[0])
    verdicts = [_told_apart(rec.chosen, other, metric, comparison) for _, other in others.iterrows()]
    together = [not apart for apart, _ in verdicts]
    rec.not_distinguishable = others[together].sort_values(metric, ascending=False) if others.size else others
    higher = [apart and other[metric] > rec.chosen[metric]
              for (apart, _), (_, other) in zip(verdicts, others.iterrows())]
    rec.better_on_test = others[higher].sort_values(metric, ascending=False) if others.size else others
    rec.basis = " and ".join(b for b in (PAIRED, OVERLAP) if any(basis == b for _, basis in verdicts))
    return rec


def fragile_choice_note(order: pd.DataFrame, column: str) -> str | None:
    """A sentence when one validation image could reverse the choice: the leader (``order``'s first row) leads the
    runner-up on ``column`` by less than one image moves that score (accuracy: 1/images; balanced accuracy: 1/(classes
    × images of the rarest class)). None when it leads by more, or the step is not known."""
    if len(order) < 2:
        return None
    leader, runner_up = order.iloc[0], order.iloc[1]
    if column == "val_balanced_accuracy":
        rarest = leader.get("val_smallest_class_n")
        step = balanced_accuracy_step(leader.get("val_class_count"), rarest)
        unit = f"one image of its rarest class ({rarest:.0f} images)" if step else ""
    elif column == "val_accuracy":
        images = leader.get("val_n")
        step = 1 / images if pd.notna(images) and images else None
        unit = f"one image (of {images:.0f})" if step else ""
    else:
        return None
    lead = leader[column] - runner_up[column]
    if step is None or lead > step:
        return None
    return (f"This choice rests on a few validation images: {unit} moves a validation "
            f"{column.removeprefix('val_').replace('_', ' ')} by {step:.3f}, more than its lead of {lead:.3f} over "
            f"{runner_up['label']}. Read its test interval and the configurations it cannot be told apart from.")


def _told_apart(chosen: pd.Series, other: pd.Series, metric: str, comparison: dict | None) -> tuple[bool, str]:
    """Whether ``other`` differs from ``chosen`` on test ``metric``, and by which test (:data:`PAIRED` or
    :data:`OVERLAP`)."""
    pair = stored_pair(comparison, chosen.get("runs"), other.get("runs"), metric)
    if pair is not None:
        return not (pair["low"] <= 0 <= pair["high"]), PAIRED
    low, high = chosen[f"{metric}_low"], chosen[f"{metric}_high"]
    return not (other[f"{metric}_low"] <= high and other[f"{metric}_high"] >= low), OVERLAP


def stored_pair(comparison: dict | None, runs_a, runs_b, metric: str) -> dict | None:
    """The stored difference ``a`` minus ``b`` (difference, low, high) of two configurations given by their runs'
    labels, from mcnemar.json's ``configurations``; None when it holds no such pair or another metric."""
    if not comparison or comparison.get("metric") != metric or not runs_a or not runs_b:
        return None
    a, b = set(runs_a), set(runs_b)
    for pair in comparison.get("pairs", []):
        if set(pair["a"]) == a and set(pair["b"]) == b:
            return pair
        if set(pair["a"]) == b and set(pair["b"]) == a:
            return {**pair, "difference": -pair["difference"], "low": -pair["high"], "high": -pair["low"]}
    return None


def _tuned(config: pd.Series) -> bool:
    """Whether a configuration's settings came from ``python -m core tune`` (its label names the study)."""
    label = str(config.get("label", ""))
    return "tuned_from=" in label and "tuned_from=default" not in label


def _validation_leak_share(configs: pd.DataFrame) -> float | None:
    """The largest share of validation images in a group with training images among ``configs`` (their
    ``leakage.json`` counts; None when no run recorded them)."""
    if "val_leaking_n" not in configs or "val_n" not in configs:
        return None
    share = pd.to_numeric(configs["val_leaking_n"], errors="coerce") / pd.to_numeric(configs["val_n"], errors="coerce")
    share = share[share.notna()]
    return float(share.max()) if not share.empty else None


def no_recommendation_reason(df: pd.DataFrame) -> str:
    """Why nothing fits the limits: no deployment yet, no working deployable variant, or the limits themselves."""
    if "deployed" not in df or not df["deployed"].any():
        return "No run has deployment measurements yet (`python -m core deploy RUN_DIR`)."
    costs = [(mb, ms, name) for _, row in df.iterrows() for name, (mb, ms) in variant_costs(row).items()]
    if not costs:
        return ("No deployed run has a working TFLite model (its conversion or measurement failed: the "
                "Deployment page gives the reason), so size and latency limits cannot be checked.")
    smallest = min(costs)
    timed = [c for c in costs if not math.isnan(c[1])]
    speed = (f" and the fastest takes {min(timed, key=lambda c: c[1])[1]:.1f} ms" if timed
             else "; no latency was measured, so a latency limit excludes every run")
    return (f"No deployed run fits these limits: the smallest deployable model is {smallest[0]:.2f} MB "
            f"({smallest[2]}){speed}.")


def transfer_gains(configs: pd.DataFrame, metric: str = "balanced_accuracy",
                   comparison: dict | None = None) -> pd.DataFrame:
    """What transfer learning buys over training from scratch, per backbone of the ranking pool (:func:`ranking_pool`).

    Each from-scratch configuration is set against the transfer configuration of the same backbone with the most
    seeds (then the best validation score). ``gain`` is the difference of their means over seeds. Its interval is
    the paired two-level bootstrap that ``comparison`` (mcnemar.json's ``configurations``) stores for the pair: test
    images resampled by group of near-copies, the same draw for both, and each configuration's seeds with
    replacement. Without a stored pair it is Welch's t-interval over the seeds of both (training randomness only)
    when both have two or more seeds, else undefined (``interval`` says why).
    """
    pool = ranking_pool(configs)
    if pool.empty or "kind" not in pool:
        return pd.DataFrame()
    rows = []
    for _, scratch in pool[pool["kind"] == "scratch"].iterrows():
        same = pool[(pool["kind"] == TRANSFER) & (pool["backbone"] == scratch["backbone"])]
        if same.empty:
            continue
        order = same.assign(_val=same.get(validation_score(metric), pd.Series(math.nan, index=same.index)).fillna(-1))
        transfer = order.sort_values(["n_seeds", "_val"], ascending=False).iloc[0]
        gain = transfer[metric] - scratch[metric]
        low = high = math.nan
        # Seeds that have the metric (the SD is taken over those): a seed without it is not a seed here.
        n_t, n_s = (int(c.get(f"{metric}_n", c["n_seeds"])) for c in (transfer, scratch))
        sd_t, sd_s = transfer.get(f"{metric}_sd"), scratch.get(f"{metric}_sd")
        pair = stored_pair(comparison, transfer.get("runs"), scratch.get("runs"), metric)
        if pair is not None:
            gain, low, high = pair["difference"], pair["low"], pair["high"]
            seeds = ("" if min(n_t, n_s) > 1 else "; one seed each, so only the test images vary"
                     if max(n_t, n_s) == 1 else "; one of them has one seed, so for it only the test images vary")
            interval = (f"paired bootstrap ({n_t} transfer, {plural(n_s, 'scratch seed')}): test images resampled by "
                        f"group, the same draw for both, and each configuration's seeds with replacement{seeds}")
        elif n_t < 2 or n_s < 2:
            interval = (f"none: {n_t} transfer and {plural(n_s, 'scratch seed')}, no paired comparison stored "
                        "(`python -m core compare DATASET` makes it), and a t-interval over seeds needs two of each")
        elif not (sd_t == sd_t and sd_s == sd_s) or sd_t + sd_s <= 1e-12:  # NaN: no metric; ~0: no spread at all
            interval = "none: the seed SD is undefined or zero (a seed without this metric, or identical scores)"
        else:
            var_t, var_s = sd_t ** 2 / n_t, sd_s ** 2 / n_s
            dof = (var_t + var_s) ** 2 / (var_t ** 2 / (n_t - 1) + var_s ** 2 / (n_s - 1))
            half = stats.t.ppf((1 + CONFIDENCE) / 2, dof) * math.sqrt(var_t + var_s)
            low, high = gain - half, gain + half
            interval = (f"Welch t over seeds ({n_t} transfer, {n_s} scratch): training randomness only, both scored "
                        "on the same test images; no paired comparison stored")
        rows.append({"backbone": scratch["backbone"], "transfer": transfer["label"], "scratch": scratch["label"],
                     "metric": metric, "transfer_mean": transfer[metric], "scratch_mean": scratch[metric],
                     "gain": gain, "gain_low": low, "gain_high": high, "interval": interval})
    return pd.DataFrame(rows)


def planned_pairs(configs: pd.DataFrame, recommended: str | None) -> list[tuple[str, str, str]]:
    """The planned family as (configuration A, configuration B, why) label triples, each pair once.

    The ``recommended`` configuration (as A) against every other one, and every transfer
    configuration (as A) against each baseline (scratch, logreg, linear SVM, kNN) of the same backbone.
    """
    configs = configs[configs["kind"] != ENSEMBLE]  # an ensemble is tested against its best member instead
    labels = list(configs["label"])
    planned: dict[frozenset, list] = {}

    def add(a: str, b: str, why: str) -> None:
        entry = planned.setdefault(frozenset((a, b)), [a, b, []])
        if why not in entry[2]:
            entry[2].append(why)

    if recommended in labels:
        for label in labels:
            if label != recommended:
                add(recommended, label, AGAINST_RECOMMENDED)
    transfer = configs[configs["kind"] == TRANSFER]
    baselines = configs[configs["kind"].isin(BASELINE_KINDS)]
    for _, t in transfer.iterrows():
        for _, b in baselines[baselines["backbone"] == t["backbone"]].iterrows():
            add(t["label"], b["label"], TRANSFER_VS_BASELINE)
    return [(a, b, "; ".join(why)) for a, b, why in planned.values()]


def planned_comparisons(configs: pd.DataFrame, pairs: list[dict], recommended: str | None,
                        alpha: float = 0.05) -> pd.DataFrame:
    """McNemar tests of the planned family (:func:`planned_pairs`), Holm-corrected within that family.

    ``configs``: the configurations compared (one preset); each is represented by its ``run``.
    ``pairs``: the stored all-pairs comparison (``a``, ``b`` run names, ``n01``, ``n10``,
    ``p_value``, ...), whose raw p-values are reused. A planned pair missing from it, or
    without common test images, keeps its ``reason`` and stays out of the correction.
    """
    runs = dict(zip(configs["label"], configs["run"]))
    stored = {}
    for pair in pairs:
        stored[(pair["a"], pair["b"])] = pair
        stored[(pair["b"], pair["a"])] = {**pair, "a": pair["b"], "b": pair["a"], "n01": pair.get("n10"),
                                          "n10": pair.get("n01"), "paired_bootstrap": _flipped(pair)}
    label_of = {run: label for label, run in runs.items()}
    rows = []
    for a, b, why in planned_pairs(configs, recommended):
        pair = stored.get((runs[a], runs[b]))
        row = {"comparison": why, "a": a, "b": b, "run_a": runs[a], "run_b": runs[b], "n_common": None,
               "n01": None, "n10": None, "p_value": None, "p_holm": None, "significant": None, "better": None,
               "reason": None, "difference": None, "difference_low": None, "difference_high": None,
               "p_bootstrap": None, "bootstrap_unit": None}
        if pair is None:
            row["reason"] = "not in the stored comparison: rerun `python -m core compare DATASET`"
        else:
            row.update({k: pair.get(k) for k in ("n_common", "n01", "n10", "p_value")})
            row["better"] = label_of.get(pair.get("better"))
            row["reason"] = pair.get("reason")
            boot = pair.get("paired_bootstrap") or {}
            row.update({"difference": boot.get("difference"), "difference_low": boot.get("low"),
                        "difference_high": boot.get("high"), "p_bootstrap": boot.get("p_value"),
                        "bootstrap_unit": boot.get("unit")})
        rows.append(row)
    tested = [row for row in rows if row["p_value"] is not None and row["p_value"] == row["p_value"]]
    if tested:
        for row, p_holm in zip(tested, multipletests([row["p_value"] for row in tested], method="holm")[1].tolist()):
            row["p_holm"], row["significant"] = p_holm, p_holm <= alpha
    return pd.DataFrame(rows, columns=["comparison", "a", "b", "run_a", "run_b", "n_common", "n01", "n10",
                                       "p_value", "p_holm", "significant", "better", "reason", "difference",
                                       "difference_low", "difference_high", "p_bootstrap", "bootstrap_unit"])


def _flipped(pair: dict) -> dict | None:
    """A stored pair's paired bootstrap seen from the other side (B minus A)."""
    boot = pair.get("paired_bootstrap")
    if not boot:
        return None
    return {**boot, "difference": -boot["difference"], "low": -boot["high"], "high": -boot["low"]}


def preset_configurations(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None, pd.Series | None]:
    """The configurations that are ranked (:func:`ranking_pool`), the note on those left out, and the one
    recommended by validation (None when none can be)."""
    configs = configurations(runs)
    _, note = ranking_preset(configs)
    configs = ranking_pool(configs)
    return configs, note, recommend(configs).chosen


def planned_family(runs: pd.DataFrame, comparison: dict | None,
                   setup: tuple[pd.DataFrame, str | None, pd.Series | None] | None = None) -> pd.DataFrame:
    """The planned comparisons (:func:`planned_comparisons`) of ``runs`` from a stored comparison: configurations of
    the ranking preset, the recommended one by validation (``setup``: :func:`preset_configurations` of ``runs``,
    when the caller has it already), the stored pairs among ``runs``."""
    if not comparison or runs.empty:
        return pd.DataFrame()
    configs, _, chosen = setup if setup is not None else preset_configurations(runs)
    names = {f"{r['backbone']}/{r['run_id']}" for _, r in runs.iterrows()}
    stored = [p for p in comparison["pairs"] if p["a"] in names and p["b"] in names]
    return planned_comparisons(configs, stored, None if chosen is None else chosen["label"],
                               comparison.get("alpha", 0.05))
