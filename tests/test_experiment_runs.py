"""Experiment grids on tiny generated data: complete runs skipped, runs waiting for weights, dry runs."""

import json
import shlex
from pathlib import Path

import pytest
from conftest import make_image_dataset

from core.cli import main as cli_main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Its own pixels (seed 12), so no other test module has warmed the feature cache for it.
    return make_image_dataset(tmp_path_factory.mktemp("data") / "colours", per_class=12, seed=12)


def write_grid(tmp_path, datasets, backbones, **keys) -> tuple[Path, Path]:
    """An experiment file writing into tmp_path/art: one grid, quick preset, extra keys as TOML values."""
    art = tmp_path / "art"
    lines = [f'artifacts = "{art}"', "[[grid]]", f"datasets = {json.dumps([str(d) for d in datasets])}",
             f"backbones = {json.dumps(backbones)}", 'preset = "quick"']
    lines += [f"{key} = {value}" for key, value in keys.items()]
    grid = tmp_path / "grid.toml"
    grid.write_text("\n".join(lines) + "\n")
    return grid, art


def test_experiment_grid_skips_complete_runs_and_compare(lite0_home, dataset, tmp_path, capsys):
    grid, art = write_grid(tmp_path, [dataset], ["EfficientNetLite0"], methods='["logreg", "knn"]', seeds="[0]",
                           set='{ "input_size" = 64 }')
    assert cli_main(["experiment", str(grid)]) == 0
    first = capsys.readouterr().out
    # The sitting audits the dataset first and compares its two runs at the end: the whole report.
    assert first.index("audit: ") < first.index("[1/2]") < first.index("comparison: 2 complete runs, 1 pairs")
    audit, mcnemar = art / "colours" / "audit.json", art / "colours" / "mcnemar.json"
    stamps = audit.stat().st_mtime_ns, mcnemar.stat().st_mtime_ns
    assert cli_main(["experiment", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "2 runs in" in out and "2 complete, 0 to do" in out
    # Nothing new: the audit of the same images and the comparison of the same runs are kept as they are.
    assert "audit: up to date" in out and "comparison:" not in out
    assert (audit.stat().st_mtime_ns, mcnemar.stat().st_mtime_ns) == stamps
    log = [json.loads(line) for line in (art / "experiment_log.jsonl").read_text().splitlines()]
    # The first sitting logs after each of its 2 runs and at its end; the second only at its end.
    assert [e["finished"] for e in log] == [False, False, True, True] and all("wall_time_s" in e for e in log)
    assert len({e["sitting"] for e in log}) == 2
    assert cli_main(["compare", "colours", "--artifacts", str(art)]) == 0
    result = json.loads((art / "colours" / "mcnemar.json").read_text())
    assert len(result["pairs"]) == 1 and len(result["names"]) == 2


def test_experiment_records_runs_waiting_for_weights_and_measures_their_architecture(
        lite0_home, dataset, tmp_path, capsys, monkeypatch):
    from core.artifacts import readme as results_section
    from core.artifacts import report
    from core.deploy import measure as deploy
    from core.orchestrate import experiment

    measured = []
    real = deploy.deploy_architecture

    def two_variants(*args, **kwargs):  # the conversion variants take a minute; two real ones show the wiring
        measured.append(args[0])
        assert "tflite_int8_full" in kwargs["only"] and "pruned_50" not in kwargs["only"]
        return real(*args, **{**kwargs, "only": ["keras", "tflite_float32"]})

    monkeypatch.setattr(experiment, "deploy_architecture", two_variants)  # the name the experiment calls
    grid, art = write_grid(tmp_path, [dataset], ["MobileNetV3Small"], deploy="true", set='{ "input_size" = 64 }')
    # The recorded command must name the artifacts folder even when only this session's env points there.
    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    assert cli_main(["experiment", str(grid)]) == 0  # waiting for weights is not a failure
    out = capsys.readouterr().out
    assert "1 runs wait for ImageNet weights" in out and "MobileNetV3Small" in out
    assert measured == ["MobileNetV3Small"]
    waiting = json.loads((art / "colours" / "unavailable.json").read_text())["runs"]
    assert len(waiting) == 1 and waiting[0]["architecture"] == "architectures/MobileNetV3Small"
    assert "MobileNetV3Small" in waiting[0]["reason"] and "--backbone MobileNetV3Small" in waiting[0]["command"]
    assert waiting[0]["command"].endswith(f"--artifacts {shlex.quote(str(art))} --deploy")
    arch = json.loads((art / "architectures" / "MobileNetV3Small" / "deployment.json").read_text())
    assert arch["input_size"] == 64 and len(arch["classes"]) == 3

    rows = report.waiting_runs("colours", art)
    assert list(rows["backbone"]) == ["MobileNetV3Small"] and rows["tflite_f32_mb"].iloc[0] > 0
    text = results_section.markdown_results(art)
    assert "not measured: ImageNet weights were not available" in text and waiting[0]["command"] in text
    assert "### Architectures measured without trained weights" in text

    assert cli_main(["experiment", str(grid), "--dry-run"]) == 0
    assert "waiting  MobileNetV3Small" in capsys.readouterr().out
    # A second sitting records the run once, not twice, and keeps the measured architecture;
    # with nothing new to record it leaves both files alone (no timestamp-only rewrites).
    kept = [art / "colours" / "unavailable.json", art / "architectures" / "MobileNetV3Small" / "deployment.json"]
    before = [(p.stat().st_ino, p.read_bytes()) for p in kept]
    assert cli_main(["experiment", str(grid)]) == 0
    assert len(json.loads((art / "colours" / "unavailable.json").read_text())["runs"]) == 1
    assert [(p.stat().st_ino, p.read_bytes()) for p in kept] == before
    assert "building" not in capsys.readouterr().out
    # An entry of another run with the same command (recorded before a default changed) is stale: dropped.
    doc = json.loads(kept[0].read_text())
    doc["runs"].insert(0, {**doc["runs"][0], "run_dir": "colours/MobileNetV3Small/full-imagenet-s0-0ld0ld00"})
    kept[0].write_text(json.dumps(doc))
    assert cli_main(["experiment", str(grid)]) == 0
    assert [r["run_dir"] for r in json.loads(kept[0].read_text())["runs"]] == [waiting[0]["run_dir"]]


@pytest.mark.slow
def test_a_fresh_clone_keeps_the_committed_deployments(lite0_home, dataset, tmp_path, capsys, monkeypatch):
    """Model and variant files are not committed: a study re-run on a clone neither fails for want of a run's
    model.keras nor measures an architecture again (which would replace the committed numbers)."""
    from core.deploy import measure
    from core.deploy.variants import Variant
    from core.orchestrate import experiment

    def two(options=None):  # two real variants instead of the full plan (minutes)
        return [Variant("keras", "keras"), Variant("tflite_float32", "tflite", "float32")]

    monkeypatch.setattr(measure, "variant_plan", two)
    monkeypatch.setattr(experiment, "variant_plan", two)
    grid, art = write_grid(tmp_path, [dataset], ["EfficientNetLite0", "MobileNetV3Small"], deploy="true",
                           seeds="[0]", set='{ "input_size" = 64, "stage1.epochs" = 1, "stage2.epochs" = 1 }')
    assert cli_main(["experiment", str(grid)]) == 0
    assert "deploying" in capsys.readouterr().out
    stored = sorted(art.rglob("deployment.json"))
    assert len(stored) == 2  # the run's and the architecture's
    before = [p.read_bytes() for p in stored]
    for built in [*art.rglob("model.keras"), *art.rglob("*.tflite")]:  # what a clone of the repository lacks
        built.unlink()
    assert cli_main(["experiment", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "deploying" not in out and "building" not in out
    assert "[1/2] deployment measured already" in out and "architecture measured already" in out
    assert [p.read_bytes() for p in stored] == before


@pytest.mark.slow
def test_a_second_dataset_reuses_the_architecture_measured_for_the_first(
        lite0_home, dataset, tmp_path, capsys, monkeypatch):
    from core.deploy import measure as deploy
    from core.orchestrate import experiment

    real = deploy.deploy_architecture
    monkeypatch.setattr(experiment, "deploy_architecture",
                        lambda *a, **k: real(*a, **{**k, "only": ["keras", "tflite_float32"]}))
    two_classes = make_image_dataset(tmp_path / "two", classes=("red", "blue"), per_class=6, seed=5)
    # No input size set: the backbone's native size (MobileNetV3Small: 224), as in the study.
    grid, art = write_grid(tmp_path, [dataset, two_classes], ["MobileNetV3Small"], deploy="true")
    assert cli_main(["experiment", str(grid)]) == 0
    out = capsys.readouterr().out
    assert out.count("deploy: building") == 1  # measured once, for the first dataset (3 classes)
    arch = json.loads((art / "architectures" / "MobileNetV3Small" / "deployment.json").read_text())
    assert arch["input_size"] == 224 and len(arch["classes"]) == 3
    assert (art / "two" / "unavailable.json").is_file()


def test_dry_run_flags_runs_that_would_fail(lite0_home, dataset, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    (tmp_path / "empty").mkdir()
    grid.write_text(f'artifacts = "{tmp_path / "art"}"\n[[grid]]\n'
                    f'datasets = ["{dataset}", "{tmp_path / "missing"}", "{tmp_path / "empty"}"]\n'
                    'backbones = ["EfficientNetLite0"]\nweights = ["imagenet"]\npreset = "quick"\n')
    assert cli_main(["experiment", str(grid), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert out.count("  invalid ") == 2 and "data folder not found" in out and "no class folders found" in out
    assert "2 runs are invalid" in out and out.count("  new ") == 1
