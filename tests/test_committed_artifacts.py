"""The results committed under artifacts/: complete, within budget, shown by the app, and what the README says."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_app import REPO, render

from core.artifacts.config import RunConfig

ARTIFACTS = REPO / "artifacts"
RUN_FILES = ("config.json", "provenance.json", "events.jsonl", "metrics.json", "predictions.csv")


def reference_run(artifacts: Path, dataset: str) -> Path:
    """The study's reference run on a dataset: EfficientNet-Lite0 seed 0 as experiments/study.toml plans it."""
    from core.artifacts.runs import RunFolder
    from core.orchestrate.experiment import load_grid

    study = load_grid(REPO / "experiments" / "study.toml", data_root="/data")
    (planned,) = [p.config for p in study.runs if Path(p.config.dataset).name == dataset and p.config.seed == 0
                  and p.config.backbone == "EfficientNetLite0" and p.config.method == "finetune"
                  and p.config.weights == "imagenet"]
    run = RunFolder.for_config(planned, artifacts).path
    assert (run / "complete.json").is_file(), f"the reference run {run} is not committed"
    return run


def committed_files() -> list[Path]:
    """The files git tracks under artifacts/ (every file there when git is not available)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "artifacts"], cwd=REPO, capture_output=True, check=True)
        return [REPO / name for name in out.stdout.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ARTIFACTS.rglob("*") if p.is_file()]


pytestmark = [pytest.mark.unit, pytest.mark.skipif(not ARTIFACTS.is_dir(), reason="no committed artifacts")]


def test_artifacts_stay_within_the_size_budget():
    total = sum(p.stat().st_size for p in committed_files() if p.is_file())
    assert total < 80e6, f"artifacts/ holds {total / 1e6:.1f} MB of committed files; the budget is 80 MB"


def test_every_committed_run_is_complete_and_consistent():
    committed = {p.relative_to(REPO) for p in committed_files()}
    markers = [p for p in committed if p.name == "complete.json" and len(p.parts) == 5 and p.parts[2] != "ensembles"]
    assert markers, "no complete run is committed"
    for marker in markers:
        run = REPO / marker.parent
        for name in RUN_FILES:
            assert marker.parent / name in committed, f"{run} lacks {name}"
        config = json.loads((run / "config.json").read_text())
        # The folder is named by the config's id, so a resumed study finds it (settings added
        # later must not rename committed runs).
        assert RunConfig.from_dict(config).run_id() == run.name, run
        if config["method"] == "finetune":
            assert marker.parent / "history.csv" in committed, f"{run} lacks history.csv"
        metrics = json.loads((run / "metrics.json").read_text())
        rows = (run / "predictions.csv").read_text().strip().splitlines()
        assert len(rows) - 1 == metrics["n"], run
        prov = json.loads((run / "provenance.json").read_text())
        assert prov["code"]["git_commit"] and prov["dataset"]["fingerprint"] and prov["machine"]["cores"], run


@pytest.fixture(scope="module")
def committed_copy(tmp_path_factory):
    """The committed result files alone, as git holds them (no model files).

    Taken from git's index, like scripts/stage_artifacts.sh does, so that a sitting still
    appending to a tracked file locally cannot make these tests disagree with CI.
    """
    base = tmp_path_factory.mktemp("committed")
    names = [p.relative_to(REPO).as_posix() for p in committed_files() if p.suffix not in {".tflite", ".keras"}]
    try:
        subprocess.run(["git", "checkout-index", f"--prefix={base}/", "--", *names], cwd=REPO, check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        for name in names:  # no git: the files as they are
            target = base / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
    return base / "artifacts"


def test_readme_results_are_the_report_of_the_committed_artifacts(committed_copy):
    from core.artifacts import readme as results_section

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split(results_section.README_BEGIN, 1)[1].split(results_section.README_END, 1)[0]
    assert section.strip() == results_section.markdown_results(committed_copy).strip(), (
        "README results are stale: run `python -m core report --readme README.md`")


def test_every_page_renders_the_committed_results_without_tensorflow(committed_copy):
    result = render(committed_copy)
    assert result["tensorflow_loaded"] is False
    assert {"flower_photos", "alzheimer_mri"} <= set(result["datasets"])
    for page, content in result["pages"].items():
        assert content["exception"] == [], (page, content["exception"])
        # The Data page reports the audit's findings (leakage, imbalance) as errors, on purpose.
        assert page == "data" or content["error"] == [], (page, content["error"])
    from core.artifacts import ranking, report

    mri = ranking.configurations(report.runs_table("alzheimer_mri", committed_copy))
    # The leaderboard lists the ranked pool: the split made by group once a second-edition run is there.
    assert len(result["pages"]["overview"]["dataframes"][0]["Configuration"]) == len(ranking.ranked(mri, "accuracy"))
    # Both datasets' splits are made by group: a configuration is chosen on each.
    assert any("chosen by validation balanced accuracy" in s for s in result["pages"]["overview"]["success"])
    assert any("chosen by validation balanced accuracy" in s for s in result["switched"]["success"])
    from core.artifacts import record_view

    family = ranking.planned_family(report.runs_table("alzheimer_mri", committed_copy),
                                    record_view.mcnemar("alzheimer_mri", committed_copy))
    first = result["pages"]["significance"]["dataframes"][0]
    assert ("Comparison" in first) == (not family.empty)  # planned comparisons by default, when there are any
    assert result["datasets"][0] == "alzheimer_mri"  # the pages below show it: its test split leaks
    data = result["pages"]["data"]
    assert "What leakage does to the scores" in data["subheaders"]
    effect = next(d for d in data["dataframes"] if "Leak-free" in d)
    assert all("(n=761)" in cell for cell in effect["Leak-free"])
    assert any("Leak-free accuracy" in d for d in result["pages"]["overview"]["dataframes"])
    assert any("leak-free recall" in d for d in result["pages"]["per_class"]["dataframes"])
    for dataset in ("flower_photos", "alzheimer_mri"):
        board = report.leaderboard(report.runs_table(dataset, committed_copy))
        # Runs on the whole test split come first: a quick run's subsample score is not comparable.
        assert list(board["Test images"]) == sorted(board["Test images"], reverse=True)


def test_the_committed_recommendations_are_full_configurations_chosen_on_validation(committed_copy):
    from core.artifacts import ranking, report
    from core.artifacts.readme import EDGE_BUDGET

    for dataset in ("flower_photos", "alzheimer_mri"):
        configs = ranking.configurations(report.runs_table(dataset, committed_copy))
        rec = ranking.recommend(configs)
        full = configs[(configs["preset"] == "full") & (configs["kind"] != ranking.ENSEMBLE)]
        assert full["val_accuracy"].notna().all(), dataset  # every committed run has a validation score
        # Chosen among the ranked split's configurations only (runs on another split are not ranked against them).
        pool = ranking.ranking_pool(configs)
        pool = pool[pool["kind"] != ranking.ENSEMBLE]
        if len(set(full["split"])) > 1:
            assert set(pool["split_grouping"]) != {"none"}, dataset  # a split by group is preferred
        leak = (pool["val_leaking_n"] / pool["val_n"]).max()
        if leak >= ranking.LEAKY_VALIDATION:  # an image-level validation split that mostly leaks: nothing is chosen
            assert rec.chosen is None and "validation images are near-copies of training images" in rec.reason
            continue
        assert rec.preset == "full" and rec.chosen["preset"] == "full", dataset  # never the quick run
        chosen_by = ranking.validation_score(rec.metric)  # the reported metric, scored on validation
        assert rec.chosen[chosen_by] == pool[chosen_by].max(), dataset
        # The README's edge-device recommendation: the best on validation among configurations with a variant
        # within the budget, shipped as a variant within it.
        max_mb, max_ms = EDGE_BUDGET
        edge = ranking.recommend(configs, max_mb, max_ms)
        fitting = pool[[ranking.fitting_variant(row, max_mb, max_ms) is not None for _, row in pool.iterrows()]]
        assert len(fitting) < len(pool) and edge.chosen[chosen_by] == fitting[chosen_by].max(), dataset
        _, mb, ms = edge.variant
        assert mb <= max_mb and ms <= max_ms, (dataset, edge.variant)


def test_readme_quotes_the_committed_batchnorm_diagnoses():
    readme = (REPO / "README.md").read_text()
    for path in sorted((REPO / "artifacts").glob("*/diagnostics/batchnorm-*.json")):
        results = json.loads(path.read_text())["results"]
        for mode in ("inference", "reestimated"):
            assert f"{results[mode]['accuracy']:.3f}" in readme, (path.name, mode)


def test_every_committed_run_has_a_leak_free_score_that_its_predictions_and_the_audit_reproduce(committed_copy):
    from core.artifacts.records import AuditRecord, LeakageRecord, ProvenanceRecord
    from core.data.groups import from_audit
    from core.evaluate.leakage import rescore_dataset, rescore_run

    for dataset in ("alzheimer_mri", "flower_photos"):
        folder = committed_copy / dataset
        stored = {run: LeakageRecord.load(run / "leakage.json")
                  for run in folder.glob("*/*") if (run / "complete.json").is_file()}
        assert stored, dataset
        audit = AuditRecord.load(folder / "audit.json").to_dict()
        grouping = from_audit(audit)
        for run, again in rescore_dataset(folder, emit=lambda line: None):
            compared = ("n", "accuracy", "bootstrap")
            if again == "scored by the run itself with its own groups (kept)":  # made after groups existed: the
                # same groups from the run's own scan, numbered in another order (so other bootstrap draws)
                again = rescore_run(run, ProvenanceRecord.load(run / "provenance.json"), grouping, {}, "the audit")
                compared = ("n", "accuracy")
            assert not isinstance(again, str), again
            for name, subset in again.subsets.items():
                kept = stored[run].subset(name)
                assert (subset is None) == (kept is None), (run, name)
                if subset:
                    assert [subset[k] for k in compared] == [kept[k] for k in compared], (run, name)
    mri = LeakageRecord.load(reference_run(committed_copy, "alzheimer_mri") / "leakage.json")
    assert mri.leaking_images > 0 and mri.subset("leak_free")["n"] + mri.leaking_images == mri.test_images


def test_readme_quotes_the_committed_leakage_figures(committed_copy):
    """The README's leakage paragraph against audit.json and leakage.json (a re-audit or re-score must update it)."""
    from core.artifacts.records import AuditRecord, LeakageRecord, MetricsRecord

    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    mri = AuditRecord.load(committed_copy / "alzheimer_mri" / "audit.json").groups
    flowers = AuditRecord.load(committed_copy / "flower_photos" / "audit.json").groups
    run = reference_run(committed_copy, "alzheimer_mri")
    leak = LeakageRecord.load(run / "leakage.json")
    whole = {c["class"]: c["recall"] for c in MetricsRecord.load(run / "metrics.json").per_class}
    free = {c["class"]: c for c in leak.subset("leak_free")["per_class"]}
    flower_run = reference_run(committed_copy, "flower_photos")
    flower_leak = LeakageRecord.load(flower_run / "leakage.json")
    chains = [f"{c['share_of_class']:.0%}" for c in mri["chaining"]]
    quoted = [
        f"finds {mri['groups']} groups among {mri['images']} images",
        f"largest holds {mri['largest']['size']} slices", f"{mri['share_in_groups_of_2_or_more']:.1%} of images",
        f"Of the {leak.test_images} predefined test images, {leak.leaking_images} are in a group",
        f"leak-free test set has {leak.subset('leak_free')['n']} images",
        f"{leak.subset('direct_copy')['n']} test images are themselves a near-copy",
        f"scores {leak.subset('direct_copy')['accuracy']:.3f} on them and "
        f"{leak.subset('no_direct_copy')['accuracy']:.3f} on the other {leak.subset('no_direct_copy')['n']}",
        f"against {leak.subset('all')['accuracy']:.3f} on all",
        f"leak-free images is {leak.subset('leak_free')['accuracy']:.3f}",
        f"MildDemented recall there is {free['MildDemented']['recall']:.3f} "
        f"({free['MildDemented']['support']} images) against {whole['MildDemented']:.3f}",
        f"{leak.validation['leaking']} of {leak.validation['images']} validation images",
        f"Two groups hold {chains[0]} and {chains[1]} of the",
        f"finds {flowers['groups']} groups among {flowers['images']} images (largest: {flowers['largest']['size']})",
        f"{flower_leak.subset('leak_free')['n']} of the {flower_leak.test_images} test images are leak-free",
        f"Lite0 seed 0: {flower_leak.subset('all')['accuracy']:.3f} on both",
    ]
    assert flower_leak.subset("leak_free")["accuracy"] == pytest.approx(flower_leak.subset("all")["accuracy"], abs=5e-4)
    missing = [q for q in quoted if q not in readme]
    assert not missing, missing
