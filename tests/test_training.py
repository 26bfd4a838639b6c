"""The training core on tiny generated data: runs, resume after kill -9, cache reuse, errors."""

import csv
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_dataset

from core.artifacts.runs import RunFolder
from core.models.batchnorm import is_batchnorm, reestimate_batchnorm_statistics
from core.models.classifier import build_classifier, build_head_layers
from core.cli import main as cli_main
from core.orchestrate.run import execute
from core.train import config as config_mod
from core.train import features
from core.train import stages as training

REPO = Path(__file__).resolve().parent.parent
TINY = {"input_size": 64, "augment": {"views": 1}, "max_train_per_class": None, "max_eval_per_class": None,
        "stage1": {"epochs": 3}, "stage2": {"epochs": 1}, "scratch": {"epochs": 1}, "batch_size": 16}


def tiny_config(dataset, **extra):
    overrides = json.loads(json.dumps(TINY))
    for key, value in extra.items():
        if isinstance(value, dict):
            overrides.setdefault(key, {}).update(value)
        else:
            overrides[key] = value
    return config_mod.resolve(str(dataset), "EfficientNetLite0", "quick", overrides)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Its own pixels (seed), so no other test module has warmed the feature cache for it.
    return make_image_dataset(tmp_path_factory.mktemp("data") / "colours", per_class=12, seed=11)


def test_two_stage_run_writes_a_complete_run_folder(lite0_home, dataset, tmp_path):
    run = execute(tiny_config(dataset), tmp_path / "art", emit=lambda line: None)
    assert run.is_complete() and not run.state_dir.exists()
    for name in ("config.json", "provenance.json", "history.csv", "events.jsonl", "metrics.json",
                 "predictions.csv", "model.keras"):
        assert run.file(name).is_file(), name
    history = run.read_history()
    assert [(r["stage"], r["epoch"]) for r in history] == [("stage1", "1"), ("stage1", "2"), ("stage1", "3"),
                                                            ("stage2", "1")]
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["accuracy"] > 0.5  # colours are easy, even at 64 px
    prov = json.loads(run.file("provenance.json").read_text())
    assert prov["dataset"]["fingerprint"] and prov["machine"]["cores"] >= 1
    assert "tf-keras" in prov["libraries"] and "git_commit" in prov["code"]
    assert prov["details"]["feature_cut_layer"]  # stage 2 ran on cached activations
    with open(run.file("predictions.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == metrics["n"] and set(rows[0]) >= {"id", "true", "pred", "p_red", "p_green", "p_blue"}
    split_file = run.path / prov["dataset"]["split_file"]
    assert split_file.resolve().is_file()


def test_cached_features_are_reused_by_other_seeds_and_baselines(lite0_home, dataset, tmp_path, monkeypatch):
    first = execute(tiny_config(dataset, seed=0), tmp_path / "art", emit=lambda line: None)
    calls = []
    original = features.FeatureExtractor.__call__

    def counting(self, batch):
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(features.FeatureExtractor, "__call__", counting)
    execute(tiny_config(dataset, seed=1), tmp_path / "art", emit=lambda line: None)
    assert calls == []  # another seed: every backbone output comes from the cache
    execute(tiny_config(dataset, method="logreg"), tmp_path / "art", emit=lambda line: None)
    # The baseline also needs the test split's pooled outputs, which training never extracts.
    n_test = json.loads(first.file("provenance.json").read_text())["dataset"]["counts"]["test"]
    assert sum(calls) == n_test


def test_scratch_run_trains_the_same_architecture(lite0_home, dataset, tmp_path):
    from core.models.tfkeras import keras

    run = execute(tiny_config(dataset, weights="none"), tmp_path / "art", emit=lambda line: None)
    assert run.is_complete()
    assert {r["stage"] for r in run.read_history()} == {"scratch"}
    assert "scratch" in run.path.name
    momenta = {layer.momentum for layer in keras.models.load_model(run.file("model.keras")).submodules
               if is_batchnorm(layer)}
    assert momenta == {0.99}  # the backbone's own

    lines = []
    tuned = execute(tiny_config(dataset, weights="none", bn_momentum=0.9), tmp_path / "art", emit=lines.append)
    assert tuned.path != run.path and tuned.is_complete()
    momenta = {layer.momentum for layer in keras.models.load_model(tuned.file("model.keras")).submodules
               if is_batchnorm(layer)}
    assert momenta == {0.9} and any("BatchNorm momentum 0.9" in line for line in lines)


def test_kill_minus_nine_then_rerun_resumes_and_finishes(lite0_home, dataset, tmp_path):
    art = tmp_path / "art"
    cmd = [sys.executable, "-m", "core", "run", "--data", str(dataset), "--backbone", "EfficientNetLite0",
           "--preset", "quick", "--artifacts", str(art), "--set", "input_size=64", "--set", "augment.views=0",
           "--set", "stage1.epochs=60", "--set", "stage1.patience=60", "--set", "stage2.epochs=0",
           "--set", "max_train_per_class=null", "--set", "max_eval_per_class=null"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    events = None
    while time.time() < deadline:
        found = list(art.glob("*/*/*/events.jsonl"))
        if found and sum('"epoch"' in line for line in found[0].read_text().splitlines()) >= 3:
            events = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert events is not None, "the run never reached epoch 3"
    run = RunFolder(events.parent)
    assert not run.is_complete() and not run.file("metrics.json").exists()
    assert run.state_dir.is_dir()

    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout
    assert run.is_complete()
    epochs = [int(r["epoch"]) for r in run.read_history() if r["stage"] == "stage1"]
    assert epochs == list(range(1, len(epochs) + 1))  # no gap, no duplicate after the resume
    kinds = [json.loads(line)["event"] for line in run.file("events.jsonl").read_text().splitlines()]
    assert kinds[0] == "started" and "resumed" in kinds and kinds[-1] == "complete"


def test_cut_layer_model_matches_the_full_classifier(lite0_home):
    from core.models.backbones import build_backbone
    from core.models.tfkeras import keras
    from core.train import stages as training

    base = build_backbone("EfficientNetLite0", None, (64, 64, 3))
    classifier = build_classifier(base, build_head_layers(3, tiny_config("x")))
    unfrozen = training.unfreeze_top(base, 20)
    assert unfrozen and not any(is_batchnorm(base.get_layer(n)) for n in unfrozen)
    assert all(not layer.trainable for layer in base.layers if is_batchnorm(layer))
    cut = training.find_cut_layer(base, unfrozen[0])
    names = [layer.name for layer in base.layers]
    assert names.index(cut) < names.index(unfrozen[0])
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    lower = keras.Model(base.input, base.get_layer(cut).output)
    upper = keras.Model(base.get_layer(cut).output, classifier.output)
    np.testing.assert_allclose(upper(lower(x)), classifier(x), rtol=1e-4, atol=1e-5)


def test_batchnorm_statistics_are_reestimated_as_the_average_over_batches():
    from core.models.tfkeras import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    bn = model.layers[-1]
    bn.trainable = False  # frozen, as in a transfer run: re-estimation must still reach it
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=k, scale=1 + k, size=(16, 3)).astype("float32") for k in range(4)]
    assert reestimate_batchnorm_statistics(model, batches) == 4
    assert bn.momentum == 0.99 and bn.trainable is False  # restored
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], axis=0), rtol=1e-4)


def test_class_weights_balance_the_classes():
    from core.train.stages import class_weights

    w = class_weights(np.array([0] * 90 + [1] * 10), 3)
    assert set(w) == {0, 1} and w[1] == pytest.approx(9 * w[0])


@pytest.mark.parametrize("args, message", [
    (["--backbone", "ResNet9000"], "known backbones"),
    (["--data", "/nonexistent/folder"], "not found"),
])
def test_cli_errors_are_one_line(lite0_home, dataset, capsys, args, message):
    base = {"--data": str(dataset), "--backbone": "EfficientNetLite0"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["run"] + [x for kv in base.items() for x in kv]
    assert cli_main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_error_for_a_class_too_small_to_split(lite0_home, tmp_path, capsys):
    data = make_image_dataset(tmp_path / "d", per_class=6)
    for extra in list((data / "blue").iterdir())[1:]:
        extra.unlink()
    assert cli_main(["run", "--data", str(data), "--backbone", "EfficientNetLite0", "--artifacts", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "blue" in err and "Traceback" not in err


def test_cli_error_for_missing_weights(keras_home, dataset, capsys):
    assert cli_main(["run", "--data", str(dataset), "--backbone", "VGG19"]) != 0
    err = capsys.readouterr().err
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in err and "Traceback" not in err


def test_cli_reports_a_full_disk(lite0_home, dataset, tmp_path, capsys, monkeypatch):
    import errno

    import core.cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(core.cli, "execute", full)  # the name the CLI calls
    monkeypatch.setenv("STUDY_ARTIFACTS", str(tmp_path / "art"))  # never the repository's artifacts/
    assert cli_main(["run", "--data", str(dataset), "--backbone", "EfficientNetLite0"]) == 3
    assert "disk is full" in capsys.readouterr().err


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
    assert cli_main(["experiment", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "2 runs in" in out and "2 complete, 0 to do" in out
    log = [json.loads(line) for line in (art / "experiment_log.jsonl").read_text().splitlines()]
    # The first sitting logs after each of its 2 runs and at its end; the second only at its end.
    assert [e["finished"] for e in log] == [False, False, True, True] and all("wall_time_s" in e for e in log)
    assert len({e["sitting"] for e in log}) == 2
    assert cli_main(["compare", "colours", "--artifacts", str(art)]) == 0
    result = json.loads((art / "colours" / "mcnemar.json").read_text())
    assert len(result["pairs"]) == 1 and len(result["names"]) == 2


def test_experiment_records_runs_waiting_for_weights_and_measures_their_architecture(
        lite0_home, dataset, tmp_path, capsys, monkeypatch):
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
    text = report.markdown_results(art)
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


def test_grid_deploy_must_be_a_boolean(tmp_path):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError, match="'deploy' must be true or false"):
        parse_grid('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\ndeploy = "yes"\n')
    runs, _ = parse_grid('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nseeds = [0, 1]\n'
                         '[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\ndeploy = true\n')
    assert [r.deploy for r in runs] == [False, False, True]


def test_grid_toml_round_trips_any_dataset_path(tmp_path):
    from core.orchestrate.experiment import grid_toml, parse_grid

    odd = str(tmp_path / '🌸 flowers "v2" \\ back\tslash')
    text = grid_toml(tmp_path / "art ✓", [odd], ["EfficientNetLite0"], "imagenet", 3, "quick",
                     {"stage1.epochs": 4, "augment.views": 0})
    runs, artifacts = parse_grid(text, "test")
    assert artifacts == str(tmp_path / "art ✓") and len(runs) == 1
    cfg = runs[0].config
    assert cfg.dataset == odd and cfg.seed == 3 and cfg.stage1.epochs == 4 and cfg.augment.views == 0


@pytest.mark.parametrize("override, message", [
    ({"augment": {"flip": "False"}}, "must be true or false"),
    ({"stage1": 5}, "group of settings"),
    ({"stage1": {"epochs": "abc"}}, "must be a whole number"),
    ({"augment": {"views": -3}}, "at least 0"),
    ({"batch_size": 0}, "at least 1"),
    ({"split_seed": -1}, "at least 0"),
    ({"seed": 2**32}, "below 2\\*\\*32"),
    ({"stage1": {"epoch": 5}}, "did you mean 'stage1.epochs'"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "sum below 1"),
    ({"bn_momentum": 1.0}, "below 1"),
    ({"bn_momentum": "fast"}, "a number or null"),
    ({"bn_momentum": 0.9}, "only to training from scratch"),
])
def test_settings_are_checked_when_the_run_is_configured(override, message):
    from core.errors import UserError

    with pytest.raises(UserError, match=message):
        config_mod.resolve("data", "EfficientNetLite0", "quick", override)


def test_set_cannot_change_what_names_the_run_and_reads_python_booleans():
    from core.errors import UserError

    assert config_mod.parse_overrides(["augment.flip=False"]) == {"augment": {"flip": False}}
    for item, flag in (("seed=3", "--seed"), ("preset=full", "--preset"), ("dataset=/etc", "--data")):
        with pytest.raises(UserError, match=flag):
            config_mod.parse_overrides([item])
    # One spelling per backbone, so the same model always lands in the same folder.
    assert config_mod.resolve("d", " efficientnetlite0").backbone == "EfficientNetLite0"
    assert config_mod.resolve("d", "MobileNetV2@1").backbone == "MobileNetV2"


@pytest.mark.parametrize("text, message", [
    ('artifact = "x"\n[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', "unknown top-level keys: artifact"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nseeds = 3\n', "'seeds' must be a list"),
    ('[[grid]]\ndatasets = "d"\nbackbones = ["EfficientNetLite0"]\n', "'datasets' must be a list"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nset = "stage1.epochs=5"\n', "'set' must be a table"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nset = { seed = 9 }\n', "cannot change 'seed'"),
    ('[grid]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', r"\[\[grid\]\]"),
])
def test_experiment_files_with_mistakes_get_one_clear_error(text, message):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError, match=message):
        parse_grid(text, "test.toml")


def test_dry_run_flags_runs_that_would_fail(lite0_home, dataset, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'artifacts = "{tmp_path / "art"}"\n[[grid]]\ndatasets = ["{dataset}", "{tmp_path / "missing"}"]\n'
                    'backbones = ["EfficientNetLite0"]\nweights = ["imagenet", "None"]\npreset = "quick"\n')
    assert cli_main(["experiment", str(grid), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert out.count("  invalid ") == 3 and "data folder not found" in out and "weights must be" in out
    assert "3 runs are invalid" in out and out.count("  new ") == 1


def test_a_complete_run_of_other_images_with_the_same_folder_name_is_not_reused(lite0_home, tmp_path):
    from core.errors import UserError

    first = make_image_dataset(tmp_path / "a" / "data", per_class=8)
    cfg = config_mod.resolve(str(first), "EfficientNetLite0", "quick", TINY)
    run = RunFolder.for_config(cfg, tmp_path / "art")
    run.path.mkdir(parents=True)
    (run.path / "provenance.json").write_text(json.dumps({"dataset": {"fingerprint": "0" * 64}}))
    (run.path / "complete.json").write_text("{}")
    with pytest.raises(UserError, match="other images than"):
        execute(cfg, tmp_path / "art", emit=lambda line: None)


def test_a_class_without_training_images_is_refused_and_data_notes_are_shown(tmp_path):
    from core.data.prepare import prepare_data
    from core.errors import DatasetError

    root = make_image_dataset(tmp_path / "pred", per_class=12, layout="predefined")
    make_image_dataset(root / "test", classes=("bird",), per_class=2)
    lines = []
    with pytest.raises(DatasetError, match="bird .*no training images"):
        prepare_data(config_mod.resolve(str(root), "EfficientNetLite0", "quick"), lines.append)
    assert any(line.startswith("data: note:") and "bird" in line for line in lines)


def test_cli_refuses_bad_seeds_and_reports_a_bad_output_path_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", "--data", str(tmp_path), "--backbone", "EfficientNetLite0", "--seed", "-1"])
    assert exit_info.value.code == 2 and "at least 0 and below 2**32" in capsys.readouterr().err
    root = make_image_dataset(tmp_path / "small", per_class=8)
    (tmp_path / "a folder").mkdir()
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "a folder")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is a folder" in err and "hashing" not in err
    (tmp_path / "a file").write_text("x")  # a file where a folder should be: one line, no traceback
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "a file" / "audit.json")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: ")


def test_a_run_folder_with_a_config_this_version_cannot_read_is_refused_clearly(tmp_path):
    from core.errors import UserError

    cfg = config_mod.resolve(str(tmp_path), "EfficientNetLite0", "quick", {})
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    (folder.path / "config.json").write_text(json.dumps({**cfg.to_dict(), "from_a_newer_version": 1}))
    with pytest.raises(UserError, match="holds a run with other settings"):
        folder.start(cfg)
