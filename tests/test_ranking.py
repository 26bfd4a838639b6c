"""Rankings that a seed cannot flip: configurations, the recommendation by validation score, planned comparisons."""

import math

import numpy as np
import pandas as pd
import pytest

from core.artifacts import naming, ranking, report

pytestmark = pytest.mark.unit


def _run(backbone, seed, val, acc, *, method="finetune", weights="imagenet", preset="full", key=None, int8_mb=None,
         ci=0.02):
    """One runs-table row as :func:`core.artifacts.report.runs_table` makes it (the columns ranking reads)."""
    kind = naming.run_kind(method, weights)
    configuration = f"{backbone} · {kind} · {preset}"
    return {"dataset": "d", "backbone": backbone, "weights": weights, "method": method, "preset": preset,
            "settings_key": key or f"{backbone}-{kind}-{preset}", "seed": seed, "run_id": f"{preset}-{kind}-s{seed}",
            "label": f"{configuration} · seed {seed}", "configuration": configuration, "kind": kind,
            "n_test": 100 if preset == "quick" else 500, "val_accuracy": val, "val_balanced_accuracy": val,
            "val_loss": 1 - val,
            "accuracy": acc, "accuracy_low": acc - ci, "accuracy_high": acc + ci,
            "balanced_accuracy": acc, "balanced_accuracy_low": acc - ci, "balanced_accuracy_high": acc + ci,
            "ece": 0.05, "deployed": int8_mb is not None, "int8_mb": int8_mb,
            "int8_latency_ms": 1.0 if int8_mb else None,
            "tflite_f32_mb": None, "latency_ms": None}


def test_a_lucky_seed_does_not_win_the_recommendation_or_the_ranking():
    # "Lucky": one seed far above its two others; its mean is below the steady configuration's.
    runs = pd.DataFrame([_run("Lucky", 0, 0.95, 0.95), _run("Lucky", 1, 0.70, 0.70), _run("Lucky", 2, 0.71, 0.71),
                         _run("Steady", 0, 0.85, 0.85), _run("Steady", 1, 0.84, 0.84), _run("Steady", 2, 0.86, 0.86)])
    best_single = runs.loc[runs["val_accuracy"].idxmax()]
    assert best_single["label"] == "Lucky · transfer · full · seed 0"  # what ranking single runs would pick
    configs = ranking.configurations(runs)
    rec = ranking.recommend(configs, metric="accuracy")
    assert rec.chosen["label"] == "Steady · transfer · full" and rec.chosen["n_seeds"] == 3
    ranks = list(ranking.ranked(configs, "accuracy")["label"])
    assert ranks == ["Steady · transfer · full", "Lucky · transfer · full"]
    lucky = configs.set_index("label").loc["Lucky · transfer · full"]
    assert lucky["accuracy"] == pytest.approx((0.95 + 0.70 + 0.71) / 3)
    # The lucky configuration's interval (three seeds, t-interval) is wide and overlaps: not distinguishable.
    assert list(rec.not_distinguishable["label"]) == ["Lucky · transfer · full"]
    assert "Not distinguishable" in report.not_distinguishable_text(rec)
    text = report.recommendation_text(rec)
    assert "**Steady · transfer · full** (3 seeds), chosen by validation accuracy 0.850" in text


def test_the_choice_uses_validation_not_test_and_ties_go_to_the_smaller_model():
    runs = pd.DataFrame([_run("TestBest", 0, 0.80, 0.99, int8_mb=1.0), _run("ValBest", 0, 0.90, 0.60, int8_mb=5.0),
                         _run("ValTieSmall", 0, 0.90, 0.60, int8_mb=2.0)])
    configs = ranking.configurations(runs)
    assert ranking.recommend(configs, metric="accuracy").chosen["label"] == "ValTieSmall · transfer · full"
    # A size limit leaves only the test-best one: it is chosen, because it fits, not because of its test score.
    assert ranking.recommend(configs, max_mb=1.5, metric="accuracy").chosen["label"] == "TestBest · transfer · full"


def test_nothing_is_chosen_on_a_validation_split_that_mostly_leaks():
    # 1-NN finds each validation image's near-copy in training: top on validation, poor on test.
    leaky = [dict(_run("Net", 0, 0.80, 0.66), val_n=769, val_leaking_n=723),
             dict(_run("Lite0", 0, 0.91, 0.49, method="nn1"), val_n=769, val_leaking_n=723)]
    rec = ranking.recommend(ranking.configurations(pd.DataFrame(leaky)), metric="accuracy")
    assert rec.chosen is None
    assert "94% of these runs' validation images are near-copies" in rec.reason
    assert "Lite0 · nn1 · full leads there (0.910) with test accuracy 0.490" in rec.reason
    clean = [dict(row, val_leaking_n=6) for row in leaky]
    assert ranking.recommend(ranking.configurations(pd.DataFrame(clean)), metric="accuracy").chosen is not None


def test_a_configuration_tuned_on_validation_is_chosen_with_a_note_that_its_score_is_optimistic():
    tuned = _run("Lite0", 0, 0.95, 0.90)
    tuned["configuration"] = "Lite0 · transfer · full · tuned_from=study#3"
    runs = pd.DataFrame([tuned, _run("Lite1", 0, 0.90, 0.91)])
    rec = ranking.recommend(ranking.configurations(runs), metric="accuracy")
    assert "tuned_from=study#3" in rec.chosen["label"]
    assert any("tuned on this validation split" in note for note in rec.notes)


def test_a_quick_run_is_never_recommended_over_a_full_one():
    runs = pd.DataFrame([_run("Fast", 0, 0.99, 0.99, preset="quick", int8_mb=0.5),
                         _run("Full", 0, 0.80, 0.80, int8_mb=4.0), _run("Full", 1, 0.82, 0.81, int8_mb=4.0)])
    configs = ranking.configurations(runs)
    rec = ranking.recommend(configs, metric="accuracy")
    assert rec.preset == "full" and rec.chosen["label"] == "Full · transfer · full"
    assert "Fast · transfer · quick" not in set(rec.not_distinguishable.get("label", []))
    assert any("quick preset are not ranked against the full ones" in note for note in rec.notes)
    assert list(ranking.ranked(configs, "accuracy")["label"]) == ["Full · transfer · full"]
    # Only the quick model fits the limit: no recommendation, rather than a quick run against full ones.
    limited = ranking.recommend(configs, max_mb=1.0, metric="accuracy")
    assert limited.chosen is None and "No deployed run fits these limits" in limited.reason
    # Without any full configuration the quick ones are ranked, and the note says so.
    quick_only = ranking.recommend(configs[configs["preset"] == "quick"], metric="accuracy")
    assert quick_only.chosen["label"] == "Fast · transfer · quick"
    assert any("No full-preset configuration yet" in note for note in quick_only.notes)


def test_configurations_on_another_split_are_not_ranked_against_the_grouped_ones():
    """A study re-run on a split by group: its configurations are ranked and chosen from; the image-level split's
    (more of them, one with a better validation and test score) are left out with a note, not mixed in."""
    def on(split, grouping, row):
        return dict(row, split=split, split_grouping=grouping, settings_key=f"{row['settings_key']}-{grouping}")

    old = [on("split-seed42-abc", "none", _run(b, 0, 0.95, 0.95)) for b in ("A", "B", "C")]
    new = [on("split-seed42-abc-groups", "duplicates", _run(b, s, v, a)) for b, s, v, a in
           (("A", 0, 0.80, 0.81), ("A", 1, 0.82, 0.80), ("B", 0, 0.85, 0.84))]
    configs = ranking.configurations(pd.DataFrame(old + new))
    assert len(configs) == 5  # A on each split is its own configuration, seeds pooled within the new split
    ranks = ranking.ranked(configs, "accuracy")
    assert list(ranks["split"]) == ["split-seed42-abc-groups"] * 2
    assert list(ranks["label"]) == ["B · transfer · full", "A · transfer · full"]
    rec = ranking.recommend(configs, metric="accuracy")
    assert rec.chosen["label"] == "B · transfer · full" and rec.chosen["split"] == "split-seed42-abc-groups"
    _, note = ranking.ranking_preset(configs)
    assert "split-seed42-abc-groups (split by group)" in note
    assert "3 on an image-level split (split-seed42-abc)" in note and note in rec.notes
    # Runs that record no split file beside named ones: the unnamed split is a split like the others.
    unnamed = [dict(r, split=None) for r in old]
    ranked_unnamed = ranking.ranked(ranking.configurations(pd.DataFrame(unnamed + new)), "accuracy")
    assert list(ranked_unnamed["split"]) == ["split-seed42-abc-groups"] * 2
    unnamed_grouped = [dict(r, split=None) for r in new]
    only_unnamed = ranking.ranked(ranking.configurations(pd.DataFrame(old + unnamed_grouped)), "accuracy")
    assert len(only_unnamed) == 2 and only_unnamed["split"].isna().all()  # the grouped unnamed split, alone
    # One split only: no note, nothing left out.
    only_new = ranking.configurations(pd.DataFrame(new))
    assert ranking.ranking_split(only_new) == (None, None) and len(ranking.ranked(only_new, "accuracy")) == 2


def test_configurations_pool_seeds_and_mark_one_seed_configurations():
    runs = pd.DataFrame([_run("Three", s, 0.9, acc) for s, acc in ((2, 0.88), (0, 0.80), (1, 0.84))]
                        + [_run("One", 3, 0.9, 0.70, ci=0.05)])
    configs = ranking.configurations(runs).set_index("label")
    three, one = configs.loc["Three · transfer · full"], configs.loc["One · transfer · full"]
    # Mean 0.84, SD 0.04; 95% t-interval with 2 degrees of freedom: 0.84 ± 4.302653 * 0.04 / sqrt(3).
    half = 4.302653 * 0.04 / math.sqrt(3)
    assert three["accuracy"] == pytest.approx(0.84) and three["accuracy_sd"] == pytest.approx(0.04)
    assert (three["accuracy_low"], three["accuracy_high"]) == pytest.approx((0.84 - half, 0.84 + half), abs=1e-6)
    assert three["interval"] == "seeds" and three["seeds"] == [0, 1, 2] and not three["one_seed"]
    assert three["run"] == "Three/full-transfer-s0" and three["run_seed"] == 0  # seed 0 stands for it
    # One seed: the run's own bootstrap interval, no SD, marked; its lowest seed (3) stands for it.
    assert one["one_seed"] and one["interval"] == "bootstrap" and math.isnan(one["accuracy_sd"])
    assert (one["accuracy_low"], one["accuracy_high"]) == pytest.approx((0.65, 0.75))
    assert one["run_seed"] == 3
    table = report.configurations_table(configs.reset_index()).set_index("Configuration")
    assert table.loc["One · transfer · full", "Seeds"] == "3 (one seed)"
    assert table.loc["One · transfer · full", "Accuracy"] == "0.700 [0.650, 0.750]"
    pooled = f"0.840 ± 0.040 [{0.84 - half:.3f}, {0.84 + half:.3f}]"
    assert table.loc["Three · transfer · full", "Accuracy"] == pooled
    caption = ranking.interval_caption(configs.reset_index())
    assert "1 configuration(s) with one seed (marked 'one seed')" in caption and "t·SD/√n" in caption


def test_a_metric_column_added_later_is_pooled_and_shown():
    runs = pd.DataFrame([_run("A", s, 0.9, 0.8) | {"top2_accuracy": v, "top2_accuracy_low": v - 0.1,
                                                    "top2_accuracy_high": v + 0.1}
                         for s, v in ((0, 0.6), (1, 0.7))])
    configs = ranking.configurations(runs)
    assert configs["top2_accuracy"].iloc[0] == pytest.approx(0.65)
    assert "Top2 accuracy" in report.configurations_table(configs).columns


def test_leak_free_columns_are_shown_only_where_some_test_images_leak():
    def runs(leak_free_n):
        return pd.DataFrame([_run("A", s, 0.9, 0.8) | {
            "n_test": 100, "leak_free_n": leak_free_n, "leak_free_accuracy": 0.6, "leak_free_accuracy_low": 0.5,
            "leak_free_accuracy_high": 0.7} for s in (0, 1)])
    leaky, clean = runs(80), runs(100)
    assert "Leak-free accuracy" in report.configurations_table(ranking.configurations(leaky)).columns
    assert "Leak-free accuracy" in report.leaderboard(leaky).columns
    assert "Leak-free accuracy" not in report.configurations_table(ranking.configurations(clean)).columns
    assert "Leak-free accuracy" not in report.leaderboard(clean).columns


def _config(backbone, method="finetune", weights="imagenet", val=0.8):
    return _run(backbone, 0, val, 0.8, method=method, weights=weights)


def _pair(a, b, p, n01=5, n10=3):
    return {"a": a, "b": b, "n_common": 500, "n01": n01, "n10": n10, "p_value": p, "better": a}


def test_the_planned_family_and_its_holm_correction_by_hand():
    configs = ranking.configurations(pd.DataFrame([
        _config("B0", val=0.95), _config("B0", "logreg"), _config("B0", "knn"),
        _config("B1"), _config("B1", "logreg"), _config("B1", weights="none")]))
    run = dict(zip(configs["label"], configs["run"]))
    rec = ranking.recommend(configs).chosen["label"]
    assert rec == "B0 · transfer · full"
    pairs = [
        _pair(run["B0 · transfer · full"], run["B0 · logreg · full"], 0.01),
        # Stored the other way round: read back as (transfer, knn) with the counts swapped.
        _pair(run["B0 · knn · full"], run["B0 · transfer · full"], 0.04, n01=2, n10=9) | {"paired_bootstrap": {
            "difference": 0.05, "low": 0.01, "high": 0.09, "p_value": 0.02, "unit": "group"}},
        _pair(run["B0 · transfer · full"], run["B1 · transfer · full"], 0.03),
        _pair(run["B0 · transfer · full"], run["B1 · logreg · full"], 0.005),
        _pair(run["B1 · transfer · full"], run["B1 · logreg · full"], 0.02),
        _pair(run["B0 · transfer · full"], run["B1 · scratch · full"], 0.001),
        # Not planned (two baselines, neither recommended): stays out of the family.
        _pair(run["B0 · knn · full"], run["B1 · logreg · full"], 0.0001),
    ]
    # B1 transfer vs its scratch run was never stored: listed, not tested, not counted.
    family = ranking.planned_comparisons(configs, pairs, rec, alpha=0.05)
    got = {(r["a"], r["b"]): r for r in family.to_dict("records")}
    assert set(got) == {
        ("B0 · transfer · full", "B0 · logreg · full"), ("B0 · transfer · full", "B0 · knn · full"),
        ("B0 · transfer · full", "B1 · transfer · full"), ("B0 · transfer · full", "B1 · logreg · full"),
        ("B0 · transfer · full", "B1 · scratch · full"),
        ("B1 · transfer · full", "B1 · logreg · full"), ("B1 · transfer · full", "B1 · scratch · full")}
    assert got[("B0 · transfer · full", "B0 · logreg · full")]["comparison"] == (
        "against the recommended; transfer vs baseline")
    knn = got[("B0 · transfer · full", "B0 · knn · full")]
    assert (knn["n01"], knn["n10"]) == (9, 2) and knn["better"] == "B0 · knn · full"
    # The paired group bootstrap is read the same way round: transfer minus knn.
    assert (knn["difference"], knn["difference_low"], knn["difference_high"]) == (-0.05, -0.09, -0.01)
    assert knn["p_bootstrap"] == 0.02 and knn["bootstrap_unit"] == "group"
    missing = got[("B1 · transfer · full", "B1 · scratch · full")]
    assert pd.isna(missing["p_holm"]) and "not in the stored comparison" in missing["reason"]
    # Six tested: sorted 0.001*6=0.006, 0.005*5=0.025, 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06, 0.04*1 -> 0.06.
    expected = {("B0 · transfer · full", "B1 · scratch · full"): 0.006,
                ("B0 · transfer · full", "B1 · logreg · full"): 0.025,
                ("B0 · transfer · full", "B0 · logreg · full"): 0.04,
                ("B1 · transfer · full", "B1 · logreg · full"): 0.06,
                ("B0 · transfer · full", "B1 · transfer · full"): 0.06,
                ("B0 · transfer · full", "B0 · knn · full"): 0.06}
    assert {k: got[k]["p_holm"] for k in expected} == pytest.approx(expected)
    assert [got[k]["significant"] for k in expected] == [True, True, True, False, False, False]


def test_validation_score_comes_from_the_restored_epoch_or_the_chosen_grid_row(tmp_path):
    (tmp_path / "history.csv").write_text(
        "stage,epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds\n"
        "stage1,1,1.0,0.5,0.9,0.55,0.001,1\nstage1,2,0.8,0.6,0.7,0.65,0.001,1\n"
        "stage2,1,0.6,0.7,0.5,0.80,0.0001,1\nstage2,2,0.5,0.8,0.6,0.85,0.0001,1\n")
    details = {"stage1": {"best_epoch": 2}, "stage2": {"best_epoch": 1}}
    unscored = {"val_balanced_accuracy": None, "val_macro_f1": None, "val_macro_auc": None, "val_class_count": None,
                "val_smallest_class_n": None}
    assert report._validation_score(tmp_path, "finetune", details) == {
        "val_accuracy": 0.80, "val_loss": 0.5, "val_source": "stage2 epoch 1", **unscored}
    grid = {"hyperparameter": "C", "chosen": 0.1, "grid": [{"C": 0.01, "val_accuracy": 0.9, "val_loss": 0.3},
                                                           {"C": 0.1, "val_accuracy": 0.7, "val_loss": 0.2}]}
    assert report._validation_score(tmp_path, "logreg", grid)["val_accuracy"] == 0.7
    empty = tmp_path / "no-history"
    empty.mkdir()
    assert report._validation_score(empty, "finetune", details)["val_accuracy"] is None
    # Stored validation predictions score every metric, the way predictions.csv scores the test split: three of
    # class a right, the one b wrong (accuracy 0.75, balanced 0.5); the loss still comes from the history.
    (tmp_path / "val_predictions.csv").write_text(
        "id,true,pred,p_a,p_b\n1,a,a,0.9,0.1\n2,a,a,0.8,0.2\n3,a,a,0.6,0.4\n4,b,a,0.7,0.3\n")
    scored = report._validation_score(tmp_path, "finetune", details)
    assert scored["val_accuracy"] == 0.75 and scored["val_balanced_accuracy"] == 0.5 and scored["val_loss"] == 0.5
    # AUC of class b: its image's p_b (0.3) is above two of the three a images' (0.1, 0.2; not 0.4).
    assert scored["val_macro_auc"] == pytest.approx(2 / 3)
    assert scored["val_class_count"] == 2 and scored["val_smallest_class_n"] == 1
    assert scored["val_source"] == "val_predictions.csv (loss: stage2 epoch 1)"
    # A table without rows or cut short leaves the validation scores undefined (the run keeps its test results).
    for text in ("id,true,pred,p_a,p_b\n", "id,true,pred,p_a,p_b\n1,a,a,0.9,0.1\n2,a,a,0.8"):
        (tmp_path / "val_predictions.csv").write_text(text)
        broken = report._validation_score(tmp_path, "finetune", details)
        assert broken["val_balanced_accuracy"] is None and broken["val_accuracy"] == 0.80, text


def test_the_recommendation_chooses_on_the_validation_score_of_the_metric_it_reports():
    # Majority: high validation accuracy from the majority class, low validation balanced accuracy.
    free = {"leak_free_balanced_accuracy": 0.6, "leak_free_balanced_accuracy_low": 0.5,
            "leak_free_balanced_accuracy_high": 0.7}
    runs = pd.DataFrame([_run("Majority", 0, 0.90, 0.60) | {"val_balanced_accuracy": 0.55} | free,
                         _run("Balanced", 0, 0.80, 0.70) | {"val_balanced_accuracy": 0.72} | free])
    configs = ranking.configurations(runs)
    assert ranking.recommend(configs, metric="balanced_accuracy").chosen["backbone"] == "Balanced"
    assert ranking.recommend(configs, metric="accuracy").chosen["backbone"] == "Majority"
    assert "chosen by validation balanced accuracy 0.720" in report.recommendation_text(ranking.recommend(configs))
    assert "Validation balanced accuracy (mean)" in report.configurations_table(configs)
    assert "Validation accuracy (mean)" in report.configurations_table(configs, "accuracy")
    # Ranked by a leak-free metric: chosen by its validation counterpart (a split by group has no leak to remove).
    assert ranking.recommend(configs, metric="leak_free_balanced_accuracy").chosen["backbone"] == "Balanced"


def test_a_lead_that_one_validation_image_could_reverse_is_said():
    def configs(rarest, lead):
        rows = [_run("Leader", 0, 0.80, 0.60) | {"val_balanced_accuracy": 0.70 + lead},
                _run("Second", 0, 0.80, 0.70) | {"val_balanced_accuracy": 0.70}]
        return ranking.configurations(pd.DataFrame([r | {"val_class_count": 4, "val_smallest_class_n": rarest,
                                                         "val_n": 400} for r in rows]))

    rec = ranking.recommend(configs(rarest=2, lead=0.016))  # one of 2 images: 1 / (4 x 2) = 0.125 > 0.016
    assert rec.chosen["backbone"] == "Leader"
    (note,) = rec.notes
    assert "one image of its rarest class (2 images) moves a validation balanced accuracy by 0.125" in note
    assert "more than its lead of 0.016 over Second · transfer · full" in note
    assert note in report.recommendation_paragraph(rec)
    # Second scores higher on test (0.70 [0.68, 0.72] against 0.60 [0.58, 0.62]): said, not acted on.
    assert list(rec.better_on_test["backbone"]) == ["Second"]
    assert report.better_on_test_text(rec).startswith("Higher on test balanced accuracy, and told apart from it: "
                                                      "Second · transfer · full 0.700 [0.680, 0.720].")
    assert report.better_on_test_text(rec) in report.recommendation_paragraph(rec)
    assert ranking.recommend(configs(rarest=100, lead=0.016)).notes == []  # 1 / 400 = 0.0025: the lead stands
    assert ranking.recommend(configs(rarest=2, lead=0.2)).notes == []
    # Chosen by accuracy: one image of all 400 moves it by 0.0025.
    close = ranking.configurations(pd.DataFrame([_run("A", 0, 0.801, 0.6) | {"val_n": 400},
                                                 _run("B", 0, 0.800, 0.6) | {"val_n": 400}]))
    (note,) = ranking.recommend(close, metric="accuracy").notes
    assert "one image (of 400) moves a validation accuracy by 0.003" in note


def test_the_validation_macro_auc_is_the_test_splits_definition():
    from core.artifacts.scoring import macro_auc
    from core.evaluate.metrics import evaluate

    rng = np.random.default_rng(0)
    for k in (2, 4):
        y = np.r_[np.arange(k), rng.integers(0, k - 1, 60)]  # the last class is rare
        probs = rng.dirichlet(np.ones(k), size=y.size)
        assert macro_auc(y, probs) == pytest.approx(evaluate(y, probs, [f"c{i}" for i in range(k)],
                                                                   n_bootstrap=10)["roc"]["macro_auc"])
    assert macro_auc(np.zeros(5, int), rng.dirichlet(np.ones(3), size=5)) is None  # no class has both sides


def test_the_validation_leak_note_comes_from_the_runs_own_splits():
    import pandas as pd

    runs = pd.DataFrame({"val_n": [769, 763, None], "val_leaking_n": [689, 0, None]})
    note = report.validation_leak_note(runs)
    assert note.startswith("Validation leaks in 1 of 3 run(s): up to 689 of 769 validation images (89.6%)")
    assert "split by group" in note
    assert report.validation_leak_note(runs.iloc[1:]) is None and report.validation_leak_note(pd.DataFrame()) is None
    minor = report.validation_leak_note(pd.DataFrame({"val_n": [551], "val_leaking_n": [6]}))
    assert minor.startswith("Up to 6 of 551 validation images (1.1%)") and "too few" in minor

def test_the_size_limit_considers_every_deployable_variant_and_names_the_one_to_ship():
    # Per-channel int8 is 3.6 MB, per-tensor int8 3.45 MB: a 3.5 MB limit is met by the per-tensor variant.
    costs = {"mb:tflite_float32": 13.0, "ms:tflite_float32": 9.0, "mb:tflite_int8_full": 3.6, "ms:tflite_int8_full": 4.0,
             "mb:tflite_int8_per_tensor": 3.45, "ms:tflite_int8_per_tensor": 4.1, "mb:pruned_80": 13.0,
             "ms:pruned_80": 9.5}
    runs = pd.DataFrame([{**_run("Lite0", 0, 0.9, 0.9, int8_mb=3.6), **costs}])
    configs = ranking.configurations(runs)
    rec = ranking.recommend(configs, max_mb=3.5, metric="accuracy")
    assert rec.chosen["label"] == "Lite0 · transfer · full" and rec.variant == ("tflite_int8_per_tensor", 3.45, 4.1)
    assert "deploy it as **TFLite int8 (per-tensor)** (3.45 MB, 4.1 ms" in report.recommendation_text(rec, 3.5)
    # The least compressed variant within the limits: a roomy limit keeps float32.
    assert ranking.recommend(configs, max_mb=20, metric="accuracy").variant[0] == "tflite_float32"
    assert ranking.recommend(configs, max_ms=4.05, metric="accuracy").variant[0] == "tflite_int8_full"
    assert ranking.recommend(configs, max_mb=3.0, metric="accuracy").reason == (
        "No deployed run fits these limits: the smallest deployable model is 3.45 MB (tflite_int8_per_tensor) and "
        "the fastest takes 4.0 ms.")
    assert ranking.recommend(configs, metric="accuracy").variant is None  # no limit: no variant to name


def test_the_transfer_gain_over_scratch_is_a_welch_interval_over_seeds():
    from scipy import stats

    transfer = [_run("Net", s, 0.8, a) for s, a in enumerate((0.80, 0.84, 0.82))]
    scratch = [_run("Net", s, 0.5, a, weights="none") for s, a in enumerate((0.50, 0.60))]
    gains = ranking.transfer_gains(ranking.configurations(pd.DataFrame(transfer + scratch)), "accuracy")
    (row,) = gains.to_dict("records")
    t, sc = pd.Series([0.80, 0.84, 0.82]), pd.Series([0.50, 0.60])
    assert row["gain"] == pytest.approx(t.mean() - sc.mean())
    welch = stats.ttest_ind(t, sc, equal_var=False).confidence_interval(0.95)  # scipy's own Welch interval
    assert (row["gain_low"], row["gain_high"]) == (pytest.approx(welch.low), pytest.approx(welch.high))
    assert row["interval"].startswith("Welch t over seeds (3 transfer, 2 scratch): training randomness only")
    assert row["interval"].endswith("no paired comparison stored")
    # A seed without the metric is not counted: 3 scratch seeds, one without accuracy, give Welch's interval of 2.
    three = scratch + [_run("Net", 2, 0.5, 0.55, weights="none")]
    gappy = [dict(r, accuracy=float("nan")) if r["seed"] == 1 and r["weights"] == "none" else r
             for r in transfer + three]
    (row,) = ranking.transfer_gains(ranking.configurations(pd.DataFrame(gappy)), "accuracy").to_dict("records")
    welch = stats.ttest_ind(t, pd.Series([0.50, 0.55]), equal_var=False).confidence_interval(0.95)
    assert (row["gain_low"], row["gain_high"]) == (pytest.approx(welch.low), pytest.approx(welch.high))
    assert "(3 transfer, 2 scratch)" in row["interval"]
    same = [dict(r, accuracy=0.5 if r["weights"] == "none" else 0.8) for r in transfer + scratch]  # no spread at all
    (row,) = ranking.transfer_gains(ranking.configurations(pd.DataFrame(same)), "accuracy").to_dict("records")
    assert math.isnan(row["gain_low"]) and row["interval"].startswith("none: the seed SD is undefined or zero")
    one = ranking.transfer_gains(ranking.configurations(pd.DataFrame(transfer + scratch[:1])), "accuracy")
    assert math.isnan(one["gain_low"][0]) and one["interval"][0].startswith("none: 3 transfer and 1 scratch")
    assert ranking.transfer_gains(ranking.configurations(pd.DataFrame(transfer)), "accuracy").empty


def test_the_transfer_gain_takes_the_stored_paired_interval_over_test_groups_and_seeds():
    transfer = [_run("Net", s, 0.8, a) for s, a in enumerate((0.80, 0.84, 0.82))]
    scratch = [_run("Net", s, 0.5, a, weights="none") for s, a in enumerate((0.50, 0.60))]
    configs = ranking.configurations(pd.DataFrame(transfer + scratch))
    runs = configs.set_index("label")["runs"]
    t_runs, s_runs = runs["Net · transfer · full"], runs["Net · scratch · full"]
    # Stored as scratch minus transfer: read the other way round.
    comparison = {"metric": "accuracy", "pairs": [{"a": s_runs, "b": t_runs, "difference": -0.27, "low": -0.33,
                                                  "high": -0.2}]}
    (row,) = ranking.transfer_gains(configs, "accuracy", comparison).to_dict("records")
    assert (row["gain"], row["gain_low"], row["gain_high"]) == (pytest.approx(0.27), 0.2, 0.33)
    assert row["interval"] == ("paired bootstrap (3 transfer, 2 scratch seeds): test images resampled by group, the "
                               "same draw for both, and each configuration's seeds with replacement")
    # One scratch seed: the stored pair still gives an interval, and says only the test images vary for one side.
    one = ranking.configurations(pd.DataFrame(transfer + scratch[:1]))
    s_one = one.set_index("label")["runs"]["Net · scratch · full"]
    stored = {"metric": "accuracy", "pairs": [{"a": t_runs, "b": s_one, "difference": 0.32, "low": 0.28,
                                              "high": 0.36}]}
    (row,) = ranking.transfer_gains(one, "accuracy", stored).to_dict("records")
    assert (row["gain_low"], row["gain_high"]) == (0.28, 0.36)
    assert row["interval"].startswith("paired bootstrap (3 transfer, 1 scratch seed): test images")
    assert row["interval"].endswith("one of them has one seed, so for it only the test images vary")
    # Another metric's record, or one without the pair: Welch over seeds as before.
    (row,) = ranking.transfer_gains(configs, "balanced_accuracy", comparison).to_dict("records")
    assert row["interval"].startswith("Welch t over seeds")


def test_the_gain_sentence_gives_the_interval_or_says_why_there_is_none():
    transfer = [_run("Net", s, 0.8, a) for s, a in enumerate((0.80, 0.84, 0.82))]
    scratch = [_run("Net", s, 0.5, a, weights="none") for s, a in enumerate((0.50, 0.60))]
    (line,) = report.transfer_gain_text(ranking.transfer_gains(ranking.configurations(pd.DataFrame(transfer + scratch)),
                                                               "accuracy"))
    assert line.startswith("Transfer learning vs from scratch, Net: mean accuracy 0.820 (Net · transfer · full) "
                           "against 0.550 (Net · scratch · full), a gain of +0.270 [95% interval ")
    (line,) = report.transfer_gain_text(ranking.transfer_gains(ranking.configurations(pd.DataFrame(
        transfer + scratch[:1])), "accuracy"))
    assert line.endswith("(no interval: 3 transfer and 1 scratch seed, no paired comparison stored (`python -m "
                         "core compare DATASET` makes it), and a t-interval over seeds needs two of each).")


def test_the_seed_spread_says_the_augmented_views_are_the_same_for_every_seed():
    runs = pd.DataFrame([dict(_run("Net", s, 0.8, a), split="x") for s, a in enumerate((0.80, 0.84, 0.82))]
                        + [dict(_run("Net", 0, 0.8, 0.7), split="y")])
    spread = report.seed_spread(runs)
    assert len(spread) == 1 and spread["Seeds"][0] == "0, 1, 2"  # the other split's seed 0 is not pooled in
    assert "identical across seeds" in report.SEED_SPREAD_NOTE


def test_the_stored_paired_difference_decides_what_the_recommendation_cannot_be_told_apart_from():
    # Steady's seed interval and Single's bootstrap interval overlap; the paired comparison on the same images (as
    # mcnemar.json stores it) tells Single apart, and holds 0 for Close. A pair it lacks falls back to the overlap.
    runs = pd.DataFrame([_run("Steady", s, 0.85, 0.85, ci=0.005) for s in (0, 1, 2)]
                        + [_run("Single", 0, 0.80, 0.82, ci=0.04), _run("Close", 0, 0.80, 0.84, ci=0.03),
                           _run("Unpaired", 0, 0.79, 0.83, ci=0.03)])
    configs = ranking.configurations(runs)
    steady = [f"Steady/full-transfer-s{s}" for s in (0, 1, 2)]
    assert configs.set_index("label").loc["Steady · transfer · full", "runs"] == steady
    comparison = {"metric": "accuracy", "pairs": [
        {"a": ["Single/full-transfer-s0"], "b": steady, "difference": -0.03, "low": -0.05, "high": -0.01},
        {"a": steady, "b": ["Close/full-transfer-s0"], "difference": 0.01, "low": -0.01, "high": 0.03}]}
    overlap_only = ranking.recommend(configs, metric="accuracy")
    assert set(overlap_only.not_distinguishable["label"]) == {"Single · transfer · full", "Close · transfer · full",
                                                             "Unpaired · transfer · full"}
    assert overlap_only.basis == ranking.OVERLAP
    rec = ranking.recommend(configs, metric="accuracy", comparison=comparison)
    assert rec.chosen["label"] == "Steady · transfer · full"
    assert list(rec.not_distinguishable["label"]) == ["Close · transfer · full", "Unpaired · transfer · full"]
    assert rec.basis == f"{ranking.PAIRED} and {ranking.OVERLAP}"
    text = report.not_distinguishable_text(rec)
    assert "paired difference holds 0" in text and "the intervals overlap" in text and "Single" not in text
    assert ranking.stored_pair(comparison, steady, ["Single/full-transfer-s0"], "accuracy")["low"] == 0.01
    assert ranking.recommend(configs, metric="balanced_accuracy", comparison=comparison).basis == ranking.OVERLAP
