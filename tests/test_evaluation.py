import json
import math
import random

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score, roc_curve

from core.evaluate import metrics as evaluation
from core.evaluate.metrics import correctness, evaluate, mcnemar, pairwise_mcnemar

pytestmark = pytest.mark.unit


def _probs_for(predicted, k, confidence=0.6):
    """Rows of probabilities whose argmax is ``predicted``, ``confidence`` on that class."""
    probs = np.full((len(predicted), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


def _random_case(n, k, seed, signal=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


def _assert_plain(obj):
    if isinstance(obj, dict):
        assert all(isinstance(key, str) for key in obj)
        for value in obj.values():
            _assert_plain(value)
    elif isinstance(obj, list):
        for value in obj:
            _assert_plain(value)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), type(obj)


# --- headline metrics ----------------------------------------------------------------

def test_tiny_three_class_case_by_hand():
    y = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    result = evaluate(y, _probs_for(pred, 3), ["cat", "dog", "fox"], n_bootstrap=0)
    # Confusion (rows true): cat [2 1 0], dog [0 1 1], fox [0 0 1].
    assert result["confusion_matrix"]["counts"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result["confusion_matrix"]["normalized"][0] == pytest.approx([2 / 3, 1 / 3, 0])
    assert result["confusion_matrix"]["labels"] == [0, 1, 2]
    # accuracy = (2 + 1 + 1) / 6.
    assert result["accuracy"] == pytest.approx(4 / 6)
    # recall: cat 2/3, dog 1/2, fox 1/1 -> balanced = (2/3 + 1/2 + 1) / 3 = 13/18.
    assert result["balanced_accuracy"] == pytest.approx(13 / 18)
    # precision: cat 2/2, dog 1/2, fox 1/2; F1: cat 0.8, dog 0.5, fox 2/3.
    per_class = {entry["class"]: entry for entry in result["per_class"]}
    assert [per_class[c]["precision"] for c in ("cat", "dog", "fox")] == pytest.approx([1.0, 0.5, 0.5])
    assert [per_class[c]["recall"] for c in ("cat", "dog", "fox")] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [per_class[c]["f1"] for c in ("cat", "dog", "fox")] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [per_class[c]["support"] for c in ("cat", "dog", "fox")] == [3, 2, 1]
    assert not any(entry["never_predicted"] for entry in result["per_class"])
    # macro F1 = (0.8 + 0.5 + 2/3) / 3 = 59/90; weighted = (3*0.8 + 2*0.5 + 1*2/3) / 6 = 61/90.
    assert result["macro_f1"] == pytest.approx(59 / 90)
    assert result["weighted_f1"] == pytest.approx(61 / 90)
    assert result["schema_version"] == 1
    assert result["n"] == 6
    assert result["classes"] == ["cat", "dog", "fox"]


def test_never_predicted_class_and_class_without_true_samples():
    y = [0, 0, 1, 1]
    probs = [[0.8, 0.1, 0.1],   # true 0, predicted 0
             [0.3, 0.2, 0.5],   # true 0, predicted 2
             [0.6, 0.3, 0.1],   # true 1, predicted 0
             [0.5, 0.4, 0.1]]   # true 1, predicted 0
    result = evaluate(y, probs, ["a", "b", "c"], n_bootstrap=50)
    a, b, c = result["per_class"]
    assert b["never_predicted"] and b["precision"] == 0.0 and b["recall"] == 0.0 and b["f1"] == 0.0
    assert not a["never_predicted"] and not c["never_predicted"]
    assert c["support"] == 0 and c["predicted"] == 1
    assert result["confusion_matrix"]["normalized"][2] is None
    assert result["confusion_matrix"]["normalized"][1] == [1.0, 0.0, 0.0]
    # balanced accuracy: recall a = 1/2, b = 0; c has no true samples -> (1/2 + 0) / 2.
    assert result["balanced_accuracy"] == pytest.approx(0.25)
    # macro F1 over a, b, c: a = 2*1/(2*1 + 2 + 1) = 0.4, b = 0, c = 0.
    assert result["macro_f1"] == pytest.approx(0.4 / 3)

    roc = result["roc"]
    roc_c = roc["per_class"][2]
    assert roc_c["auc"] is None and roc_c["fpr"] is None and "no samples" in roc_c["reason"]
    # AUC a: positives 0.8, 0.3 vs negatives 0.6, 0.5 -> 2 of 4 pairs; b: 0.3, 0.4 vs 0.1, 0.2 -> 4 of 4.
    assert roc["per_class"][0]["auc"] == pytest.approx(0.5)
    assert roc["per_class"][1]["auc"] == pytest.approx(1.0)
    assert roc["macro_auc"] == pytest.approx(0.75)
    assert roc["macro_auc_excluded"] == ["c"]
    assert result["pr"]["per_class"][2]["average_precision"] is None
    assert result["pr"]["macro_average_precision_excluded"] == ["c"]
    json.dumps(result, allow_nan=False)


def test_class_present_in_every_sample_has_no_auc():
    result = evaluate([0, 0, 0], [[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1]], ["a", "b", "c"],
                      n_bootstrap=20)
    assert result["roc"]["per_class"][0]["auc"] is None
    assert "every sample" in result["roc"]["per_class"][0]["reason"]
    assert result["roc"]["macro_auc"] is None
    assert result["bootstrap"]["metrics"]["macro_auc"]["low"] is None
    assert result["bootstrap"]["metrics"]["macro_auc"]["n_used"] == 0
    json.dumps(result, allow_nan=False)


def test_matches_sklearn_on_a_random_case():
    y, probs = _random_case(500, 5, seed=3, signal=0.8)
    result = evaluate(y, probs, list("abcde"), n_bootstrap=0)
    pred = probs.argmax(axis=1)
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert result["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert result["roc"]["micro_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="micro"))
    assert result["roc"]["macro_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert np.array_equal(correctness(y, probs), pred == y)


# --- binary ------------------------------------------------------------------------

def test_binary_auc_by_hand_and_per_class_curves():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    probs = np.column_stack([1 - p1, p1])
    result = evaluate(y, probs, ["neg", "pos"], n_bootstrap=0)
    roc = result["roc"]
    # Positive scores 0.35, 0.8 vs negative 0.1, 0.4: 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4 pairs.
    assert roc["per_class"][1]["auc"] == pytest.approx(0.75)
    assert roc["per_class"][1]["auc"] == pytest.approx(roc_auc_score(y, p1))
    assert roc["micro_auc"] == roc["macro_auc"] == roc["per_class"][1]["auc"]
    assert roc["positive_class"] == "pos"
    fpr, tpr, _ = roc_curve(y, p1)
    assert roc["per_class"][1]["fpr"] == pytest.approx(fpr.tolist())
    assert roc["per_class"][1]["tpr"] == pytest.approx(tpr.tolist())
    fpr0, tpr0, _ = roc_curve(y == 0, probs[:, 0])
    assert roc["per_class"][0]["fpr"] == pytest.approx(fpr0.tolist())
    assert roc["per_class"][0]["tpr"] == pytest.approx(tpr0.tolist())
    # Class 0 as positive: 0.9, 0.6 vs 0.65, 0.2 -> 3 of 4 pairs as well.
    assert roc["per_class"][0]["auc"] == pytest.approx(0.75)
    assert result["pr"]["micro_average_precision"] == result["pr"]["per_class"][1]["average_precision"]


def test_binary_with_ties_matches_sklearn():
    y, probs = _random_case(300, 2, seed=5, signal=1.0)
    probs = np.round(probs, 1)
    probs[:, 0] = 1 - probs[:, 1]
    result = evaluate(y, probs, ["no", "yes"], n_bootstrap=0)
    assert result["roc"]["macro_auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))


# --- curves ------------------------------------------------------------------------

def test_curves_are_downsampled_keeping_endpoints_and_full_resolution_auc():
    y, probs = _random_case(4000, 3, seed=7, signal=0.7)
    result = evaluate(y, probs, ["a", "b", "c"], n_bootstrap=0, max_curve_points=40)
    for c, entry in enumerate(result["roc"]["per_class"]):
        full_fpr, full_tpr, _ = roc_curve(y == c, probs[:, c])
        assert len(full_fpr) > 40
        assert len(entry["fpr"]) <= 40 and len(entry["fpr"]) == len(entry["tpr"])
        assert (entry["fpr"][0], entry["tpr"][0]) == (full_fpr[0], full_tpr[0])
        assert (entry["fpr"][-1], entry["tpr"][-1]) == (1.0, 1.0)
        assert np.all(np.diff(entry["fpr"]) >= 0) and np.all(np.diff(entry["tpr"]) >= 0)
        assert entry["auc"] == pytest.approx(roc_auc_score(y == c, probs[:, c]))
        assert np.trapezoid(entry["tpr"], entry["fpr"]) == pytest.approx(entry["auc"], abs=0.01)
    for entry in result["pr"]["per_class"]:
        assert len(entry["recall"]) <= 40
        assert entry["recall"][-1] == 0.0 and entry["precision"][-1] == 1.0


# --- calibration -------------------------------------------------------------------

def test_perfect_predictions_have_ece_one_minus_mean_confidence():
    y = [0, 1, 0, 1]
    probs = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]
    result = evaluate(y, probs, ["a", "b"], n_bootstrap=0, calibration_bins=10)
    assert result["accuracy"] == 1.0
    # Every bin is 100% accurate, so ECE = mean(1 - confidence) = 1 - 0.75.
    assert result["calibration"]["ece"] == pytest.approx(0.25)
    assert result["calibration"]["mean_confidence"] == pytest.approx(0.75)


def test_ece_by_hand_with_an_empty_bin():
    y = [0, 1, 1, 2, 2]
    probs = [[0.4, 0.3, 0.3],      # confidence 0.4, correct
             [0.45, 0.35, 0.2],    # 0.45, wrong
             [0.05, 0.9, 0.05],    # 0.9, correct
             [0.7, 0.2, 0.1],      # 0.7, wrong
             [0.1, 0.1, 0.8]]      # 0.8, correct
    calibration = evaluate(y, probs, ["a", "b", "c"], n_bootstrap=0, calibration_bins=3)["calibration"]
    # Bins (0, 1/3], (1/3, 2/3], (2/3, 1]: empty; {0.4, 0.45} acc 1/2 conf 0.425; {0.9, 0.7, 0.8} acc 2/3 conf 0.8.
    # ECE = 2/5 * |0.5 - 0.425| + 3/5 * |2/3 - 0.8| = 0.03 + 0.08 = 0.11; MCE = 0.8 - 2/3.
    assert calibration["ece"] == pytest.approx(0.11)
    assert calibration["mce"] == pytest.approx(0.8 - 2 / 3)
    empty, low, high = calibration["bins"]
    assert empty == {"lower": 0.0, "upper": pytest.approx(1 / 3), "count": 0, "mean_confidence": None,
                     "accuracy": None}
    assert (low["count"], low["mean_confidence"], low["accuracy"]) == (2, pytest.approx(0.425), 0.5)
    assert (high["count"], high["mean_confidence"], high["accuracy"]) == (3, pytest.approx(0.8), pytest.approx(2 / 3))
    assert high["upper"] == 1.0


# --- bootstrap ---------------------------------------------------------------------

def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    y, probs = _random_case(400, 4, seed=11)
    first = evaluate(y, probs, list("abcd"), n_bootstrap=300, seed=42)
    second = evaluate(y, probs, list("abcd"), n_bootstrap=300, seed=42)
    other = evaluate(y, probs, list("abcd"), n_bootstrap=300, seed=43)
    assert first == second
    assert first["bootstrap"]["metrics"] != other["bootstrap"]["metrics"]
    boot = first["bootstrap"]
    assert (boot["n_resamples"], boot["seed"], boot["confidence"]) == (300, 42, 0.95)
    assert set(boot["metrics"]) == {"accuracy", "balanced_accuracy", "macro_f1", "macro_auc"}
    for name, metric in boot["metrics"].items():
        assert metric["estimate"] == (first["roc"]["macro_auc"] if name == "macro_auc" else first[name])
        assert metric["low"] <= metric["estimate"] <= metric["high"], name
        assert metric["n_used"] == 300
    json.dumps(first, allow_nan=False)
    _assert_plain(first)


def test_bootstrap_skips_resamples_where_a_rare_class_is_missing():
    y, probs = _random_case(60, 3, seed=2)
    y[y == 2] = 0
    y[0] = 2
    result = evaluate(y, probs, ["a", "b", "c"], n_bootstrap=200, seed=0)
    metrics = result["bootstrap"]["metrics"]
    assert metrics["accuracy"]["n_used"] == 200
    # The lone class-2 sample is absent from about (1 - 1/60)**60 ~ 36% of resamples.
    assert 80 < metrics["macro_auc"]["n_used"] < 180
    assert metrics["balanced_accuracy"]["n_used"] == metrics["macro_auc"]["n_used"]
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("k", [2, 4])
def test_vectorised_resample_metrics_match_sklearn(k):
    y, probs = _random_case(80, k, seed=k, signal=0.7)
    probs = np.round(probs, 2)  # ties in scores
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    rng = np.random.default_rng(0)
    weights = evaluation._resample_weights(rng, y.size, 5)
    auc_classes = [1] if k == 2 else list(range(k))
    rankings = [evaluation._AucRanking(y == c, probs[:, c]) for c in auc_classes]
    aucs = evaluation._weighted_macro_auc(weights, rankings)
    cells = np.eye(k * k)[y * k + pred]
    counts = (weights @ cells).reshape(-1, k, k)
    balanced = evaluation._weighted_balanced_accuracy(counts, np.ones(k, bool))
    macro_f1 = evaluation._weighted_macro_f1(counts, np.ones(k, bool))
    for row, w in enumerate(weights):
        idx = np.repeat(np.arange(y.size), w.astype(int))
        assert idx.size == y.size
        ys, ps = y[idx], probs[idx]
        if len(set(ys)) < k:
            continue
        expected_auc = roc_auc_score(ys, ps[:, 1]) if k == 2 else roc_auc_score(ys, ps, multi_class="ovr")
        assert aucs[row] == pytest.approx(expected_auc)
        assert balanced[row] == pytest.approx(balanced_accuracy_score(ys, ps.argmax(axis=1)))
        assert macro_f1[row] == pytest.approx(f1_score(ys, ps.argmax(axis=1), average="macro", zero_division=0))


def test_zero_resamples_gives_no_interval():
    y, probs = _random_case(30, 3, seed=1)
    metric = evaluate(y, probs, ["a", "b", "c"], n_bootstrap=0)["bootstrap"]["metrics"]["accuracy"]
    assert metric["low"] is None and metric["high"] is None and metric["n_used"] == 0


# --- McNemar -----------------------------------------------------------------------

def _paired(n01, n10, both_correct=0, both_wrong=0):
    a = [False] * n01 + [True] * n10 + [True] * both_correct + [False] * both_wrong
    b = [True] * n01 + [False] * n10 + [True] * both_correct + [False] * both_wrong
    return a, b


def test_mcnemar_exact_binomial_by_hand():
    result = mcnemar(*_paired(1, 6, both_correct=10, both_wrong=3))
    # Two-sided exact: 2 * P(X <= 1 | n=7, p=1/2) = 2 * (1 + 7) / 2**7 = 0.125.
    assert result["p_value"] == pytest.approx(0.125)
    assert result["p_value"] == pytest.approx(stats.binomtest(1, 7, 0.5).pvalue)
    assert result["method"] == "exact_binomial"
    assert (result["n01"], result["n10"], result["both_correct"], result["both_wrong"]) == (1, 6, 10, 3)
    assert result["n"] == 20


def test_mcnemar_chi_square_with_continuity_correction_by_hand():
    result = mcnemar(*_paired(10, 25, both_correct=40))
    # (|10 - 25| - 1)**2 / 35 = 196 / 35 = 5.6; chi-square(1) tail = erfc(sqrt(5.6 / 2)).
    assert result["method"] == "chi2_continuity_corrected"
    assert result["statistic"] == pytest.approx(5.6)
    assert result["p_value"] == pytest.approx(math.erfc(math.sqrt(2.8)))


def test_mcnemar_switches_method_at_25_discordant_pairs():
    assert mcnemar(*_paired(12, 12))["method"] == "exact_binomial"
    balanced = mcnemar(*_paired(13, 12))
    assert balanced["method"] == "chi2_continuity_corrected"
    assert balanced["statistic"] == 0.0 and balanced["p_value"] == 1.0


def test_mcnemar_with_as_many_discordant_pairs_each_way_has_p_one():
    # 14 vs 14 (chi-square branch): |14 - 14| - 1 is clamped at 0, so p = 1. statsmodels' mcnemar does
    # not clamp (statistic 1/28, p 0.85); the committed flower_photos comparison has such a pair.
    result = mcnemar(*_paired(14, 14, both_correct=20))
    assert result["method"] == "chi2_continuity_corrected"
    assert result["statistic"] == 0.0 and result["p_value"] == 1.0


def test_holm_adjusts_the_tested_pairs_by_hand():
    pairs = [{"p_value": p} for p in (0.01, 0.04, 0.03, 0.005)] + [{"p_value": None, "p_holm": None,
                                                                    "significant": None}]
    evaluation._apply_holm(pairs, alpha=0.05)
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> kept monotone at 0.06.
    assert [pair["p_holm"] for pair in pairs] == pytest.approx([0.03, 0.06, 0.06, 0.02, None])
    assert [pair["significant"] for pair in pairs] == [True, False, False, True, None]


def test_identical_classifiers_have_p_one():
    correct = [True, False, True, True, False]
    result = mcnemar(correct, correct)
    assert result["p_value"] == 1.0
    assert (result["n01"], result["n10"]) == (0, 0)
    json.dumps(result, allow_nan=False)


# --- pairwise McNemar ------------------------------------------------------------

def _run(ids, rule, shuffle_seed=None):
    ids = list(ids)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(ids)
    return ids, [rule(i) for i in ids]


def test_pairwise_mcnemar_aligns_by_id_and_applies_holm():
    number = lambda sample_id: int(sample_id[1:])  # noqa: E731
    runs = {
        "good": _run((f"s{i}" for i in range(0, 100)), lambda s: number(s) % 10 != 0),
        "poor": _run((f"s{i}" for i in range(20, 140)), lambda s: number(s) % 3 != 0, shuffle_seed=1),
        "mid": _run((f"s{i}" for i in range(10, 120)), lambda s: number(s) % 5 != 0),
    }
    result = pairwise_mcnemar(runs)
    assert result["names"] == ["good", "poor", "mid"]
    pairs = {(pair["a"], pair["b"]): pair for pair in result["pairs"]}
    assert set(pairs) == {("good", "poor"), ("good", "mid"), ("poor", "mid")}

    good_poor = pairs[("good", "poor")]
    common = range(20, 100)
    expected = mcnemar([i % 10 != 0 for i in common], [i % 3 != 0 for i in common])
    assert good_poor["n_common"] == 80
    assert (good_poor["n01"], good_poor["n10"]) == (expected["n01"], expected["n10"])
    assert good_poor["p_value"] == pytest.approx(expected["p_value"])
    assert good_poor["better"] == "good"
    assert pairs[("good", "mid")]["n_common"] == 90
    assert pairs[("poor", "mid")]["n_common"] == 100

    ordered = sorted(result["pairs"], key=lambda pair: pair["p_value"])
    raw = [pair["p_value"] for pair in ordered]
    holm = [pair["p_holm"] for pair in ordered]
    assert all(h >= p for h, p in zip(holm, raw))
    assert holm == sorted(holm)
    assert holm[0] == pytest.approx(min(1.0, 3 * raw[0]))
    assert holm[1] == pytest.approx(min(1.0, max(3 * raw[0], 2 * raw[1])))
    for pair in result["pairs"]:
        assert pair["significant"] == (pair["p_holm"] <= 0.05)

    matrix = result["matrix"]
    assert all(matrix[i][i] is None for i in range(3))
    assert all(matrix[i][j] == matrix[j][i] for i in range(3) for j in range(3))
    assert matrix[0][1] == good_poor["p_holm"]
    json.dumps(result, allow_nan=False)


def test_pairwise_mcnemar_marks_pairs_without_common_ids():
    runs = {
        "a": (["x1", "x2", "x3"], [True, False, True]),
        "b": (["x3", "x2", "x1"], [True, True, False]),
        "c": (["y1", "y2"], [True, True]),
    }
    result = pairwise_mcnemar(runs)
    pairs = {(pair["a"], pair["b"]): pair for pair in result["pairs"]}
    for key in (("a", "c"), ("b", "c")):
        assert pairs[key]["n_common"] == 0
        assert pairs[key]["p_value"] is None and pairs[key]["p_holm"] is None
        assert "no common" in pairs[key]["reason"]
    # Only one pair was tested, so Holm leaves its p-value unchanged.
    assert pairs[("a", "b")]["p_holm"] == pairs[("a", "b")]["p_value"]
    assert (pairs[("a", "b")]["n01"], pairs[("a", "b")]["n10"]) == (1, 1)
    assert pairs[("a", "b")]["better"] is None
    assert result["matrix"][0][2] is None
    json.dumps(result, allow_nan=False)


# --- validation ----------------------------------------------------------------------

GOOD_PROBS = [[0.7, 0.3], [0.4, 0.6]]


@pytest.mark.parametrize(
    "y, probs, names, message",
    [
        ([0, 1, 1], GOOD_PROBS, ["a", "b"], "3 labels but probs has 2 rows"),
        ([0, 2], GOOD_PROBS, ["a", "b"], r"must lie in 0\.\.1"),
        ([-1, 0], GOOD_PROBS, ["a", "b"], r"must lie in 0\.\.1"),
        ([0, 1], [0.7, 0.4], ["a", "b"], "2-D"),
        ([0, 1], GOOD_PROBS, ["a", "b", "c"], "2 columns but 3 class names"),
        ([], np.empty((0, 2)), ["a", "b"], "no samples"),
        ([[0], [1]], GOOD_PROBS, ["a", "b"], "1-D"),
        ([0.5, 1], GOOD_PROBS, ["a", "b"], "integer class labels"),
        ([0, 1], [[2.0, -1.0], [0.4, 0.6]], ["a", "b"], "logits"),
        ([0, 1], [[0.5, 0.2], [0.4, 0.6]], ["a", "b"], "sum to 1"),
        ([0, 1], [[np.nan, 0.3], [0.4, 0.6]], ["a", "b"], "NaN"),
        ([0, 1], GOOD_PROBS, ["a", "a"], "distinct"),
    ],
)
def test_invalid_input_is_refused(y, probs, names, message):
    with pytest.raises(ValueError, match=message):
        evaluate(y, probs, names, n_bootstrap=0)


@pytest.mark.parametrize("option", [{"n_bootstrap": -1}, {"calibration_bins": 0}, {"max_curve_points": 1},
                                    {"seed": 1.5}])
def test_invalid_options_are_refused(option):
    with pytest.raises(ValueError, match=next(iter(option))):
        evaluate([0, 1], GOOD_PROBS, ["a", "b"], **option)


def test_mcnemar_and_pairwise_validation():
    with pytest.raises(ValueError, match="same length"):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError, match="more than once"):
        pairwise_mcnemar({"a": (["x", "x"], [True, False]), "b": (["x"], [True])})
    with pytest.raises(ValueError, match="2 sample ids but 1"):
        pairwise_mcnemar({"a": (["x", "y"], [True]), "b": (["x"], [True])})
    with pytest.raises(ValueError, match="booleans"):
        mcnemar([0, 2], [1, 1])


def test_configuration_differences_pair_the_images_and_resample_the_seeds():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [300, 60, 40])  # imbalanced: balanced accuracy, not accuracy
    truth = rng.random(labels.size)
    steady = [truth < p for p in (0.80, 0.81, 0.79)]  # three seeds of one configuration
    better = [truth < 0.88]  # right on a superset of steady's images: paired, a clear difference
    lucky = [truth < 0.95, truth < 0.60, truth < 0.62]  # one lucky seed, two poor ones
    pairs = evaluation.configuration_differences([steady, better, lucky], labels, n_resamples=1000)
    assert [(p["i"], p["j"]) for p in pairs] == [(0, 1), (0, 2), (1, 2)]
    by = {(p["i"], p["j"]): p for p in pairs}

    def balanced(right):
        return balanced_accuracy_score(labels, np.where(right, labels, (labels + 1) % 3))

    assert by[0, 1]["difference"] == pytest.approx(np.mean([balanced(r) for r in steady]) - balanced(better[0]))
    assert by[0, 1]["high"] < 0  # told apart: the same images, paired
    seeds_spread = by[1, 2]["high"] - by[1, 2]["low"]
    assert seeds_spread > 2 * (by[0, 1]["high"] - by[0, 1]["low"])  # the lucky seed widens its interval
    groups = np.arange(labels.size) // 20  # 20 near-copies per group: fewer independent units, wider interval
    grouped = evaluation.configuration_differences([steady, better], labels, groups, n_resamples=1000)[0]
    assert grouped["high"] - grouped["low"] > by[0, 1]["high"] - by[0, 1]["low"]
    with pytest.raises(ValueError, match="same, non-empty set"):
        evaluation.configuration_differences([steady, [truth[:10] < 0.5]], labels)
    # Each configuration draws its seeds from its own stream: a pair's interval stays when another one joins.
    alone = evaluation.configuration_differences([steady, lucky], labels, n_resamples=500, streams=[7, 9])[0]
    joined = evaluation.configuration_differences([steady, better, lucky], labels, n_resamples=500,
                                                  streams=[7, 8, 9])
    assert next(p for p in joined if (p["i"], p["j"]) == (0, 2)) == {**alone, "j": 2}
