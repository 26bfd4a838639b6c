"""Experiment files (grids): parsing, mistakes reported in one line, round trips (no TensorFlow).

Grids that run, record and dry-run real runs are in test_experiment_runs.py.
"""

import json
from pathlib import Path

import pytest
from conftest import make_image_dataset

pytestmark = pytest.mark.unit


def test_grid_deploy_must_be_a_boolean(tmp_path):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError, match="'deploy' must be true or false"):
        parse_grid('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\ndeploy = "yes"\n')
    runs = parse_grid('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nseeds = [0, 1]\n'
                      '[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\ndeploy = true\n').runs
    assert [(r.config.seed, r.deploy) for r in runs] == [(0, True), (1, False)]  # seed 0 is planned once


def test_grid_toml_round_trips_any_dataset_path(tmp_path):
    from core.orchestrate.experiment import grid_toml, parse_grid

    odd = str(tmp_path / '🌸 flowers "v2" \\ back\tslash')
    text = grid_toml(tmp_path / "art ✓", [odd], ["EfficientNetLite0"], "imagenet", 3, "quick",
                     {"stage1.epochs": 4, "augment.views": 0})
    study = parse_grid(text, "test")
    runs, artifacts = study.runs, study.artifacts
    assert artifacts == str(tmp_path / "art ✓") and len(runs) == 1
    cfg = runs[0].config
    assert cfg.dataset == odd and cfg.seed == 3 and cfg.stage1.epochs == 4 and cfg.augment.views == 0


@pytest.mark.parametrize("text, message", [
    ('artifact = "x"\n[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', "unknown top-level keys: artifact"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nseeds = 3\n', "'seeds' must be a list"),
    ('[[grid]]\ndatasets = "d"\nbackbones = ["EfficientNetLite0"]\n', "'datasets' must be a list"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nset = "stage1.epochs=5"\n', "'set' must be a table"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nset = { seed = 9 }\n', "cannot change 'seed'"),
    ('[grid]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', r"\[\[grid\]\]"),
    ('data_root = 3\n[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', "'data_root' must be a folder"),
    ('[data.d]\nurl = "x"\n[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n',
     r"\[data.d\] has unknown keys: url"),
    ('data = 1\n[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', r"as a \[data.NAME\] table"),
])
def test_experiment_files_with_mistakes_get_one_clear_error(text, message):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError, match=message):
        parse_grid(text, "test.toml")


GRID = '[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n'


@pytest.mark.parametrize("text, message", [
    ("grid = [1, 2]\n", "test.toml: grid 1 is 1, not a table"),
    ('grid = ["a"]\n', "test.toml: grid 1 is 'a', not a table"),
    (GRID + 'preset = ["quick"]\n', "test.toml: grid 1: 'preset' must be one name in quotes"),
    (GRID + "preset = 1\n", "test.toml: grid 1: 'preset' must be one name in quotes"),
    (GRID + 'preset = "slow"\n', "test.toml: grid 1: unknown preset 'slow'"),
    (GRID + 'set = { "head_dropout" = 1.5 }\n', "test.toml: grid 1: setting 'head_dropout' is 1.5; allowed"),
    (GRID + GRID + 'set = { "batch_size" = 100000 }\n', "test.toml: grid 2: setting 'batch_size' is 100000"),
    (GRID + GRID + 'set = { "stage1.epoch" = 5 }\n', "test.toml: grid 2: unknown setting 'stage1.epoch'"),
    (GRID + 'set = { "stage1.optimizer" = "bogus" }\n', "test.toml: grid 1: setting 'stage1.optimizer' is 'bogus'"),
    (GRID + 'set = { "stage1" = 5, "stage1.epochs" = 3 }\n', "test.toml: grid 1: 'stage1' is set both"),
    (GRID + 'set = { "stage1.epochs" = 0, "stage2.epochs" = 0 }\n', "test.toml: grid 1: settings 'stage1.epochs'"),
    (GRID + 'set = { "augment" = { "views" = "two" } }\n', "test.toml: grid 1: setting 'augment.views' must be"),
    (GRID.replace("EfficientNetLite0", "ResNet9000"), "test.toml: grid 1: unknown backbone 'ResNet9000'"),
    (GRID + 'weights = ["None"]\n', "test.toml: grid 1: setting 'weights' is 'None'; allowed: imagenet, none"),
    (GRID + 'methods = ["svm"]\n', "test.toml: grid 1: setting 'method' is 'svm'"),
    (GRID + "seeds = [-1]\n", "test.toml: grid 1: setting 'seed' is -1"),
    (GRID + "seeds = [true]\n", "test.toml: grid 1: 'seeds' must be a list"),
    (GRID + "frobnicate = 1\n", "test.toml: grid 1: unknown keys: frobnicate"),
])
def test_wrong_types_and_values_in_a_grid_name_the_file_and_the_grid(text, message):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError) as caught:
        parse_grid(text, "test.toml")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_an_experiment_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    from core.cli import main as cli_main

    path = tmp_path / "latin1.toml"
    content = b'[[grid]]\ndatasets = ["donn\xe9es"]\nbackbones = ["EfficientNetLite0"]\n'  # Latin-1
    path.write_bytes(content)
    assert cli_main(["experiment", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    offset = content.index(b"\xe9")
    assert err == f"error: {path} is not UTF-8 text (byte offset {offset}): save the experiment file as UTF-8\n"


def test_dry_run_says_a_dataset_is_missing_or_has_no_images(tmp_path, capsys):
    """Dry runs list each run's state; a dataset that cannot be trained on is 'invalid' with the reason, not 'new'."""
    from core.orchestrate.experiment import run_experiment

    good = make_image_dataset(tmp_path / "good", per_class=6)
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_images" / "cats").mkdir(parents=True)
    (tmp_path / "no_images" / "cats" / "notes.txt").write_text("x")
    (tmp_path / "a_file").write_text("x")
    datasets = [good] + [tmp_path / name for name in ("empty", "no_images", "a_file", "missing")]
    grid = tmp_path / "grid.toml"
    grid.write_text(f'artifacts = "{tmp_path / "art"}"\n[[grid]]\ndatasets = {[str(d) for d in datasets]!r}\n'
                    'backbones = ["EfficientNetLite0"]\nweights = ["none"]\npreset = "quick"\n'.replace("'", '"'))
    lines = []
    assert run_experiment(grid, dry_run=True, emit=lines.append) == 1
    states = [line.split()[0] for line in lines[1:6]]
    assert states == ["new", "invalid", "invalid", "invalid", "invalid"]
    assert "no class folders found" in lines[2] and "no usable images found" in lines[3]
    assert "is a file, not a folder" in lines[4] and "data folder not found" in lines[5]
    assert lines[6:9] == ["1 dataset folder is missing on this machine:", f"  {tmp_path / 'missing'}",
                          "    no [data.missing] table in the experiment file says where it comes from"]
    assert lines[-1] == "4 runs are invalid: fix the grid before running it"
    assert not (tmp_path / "art").exists()


def test_a_sitting_audits_each_dataset_once_per_content_and_a_missing_one_is_one_line(tmp_path):
    from core.orchestrate.experiment import audit_if_needed, compare_if_needed

    root = make_image_dataset(tmp_path / "tv", per_class=8, layout="trainval")
    art, lines = tmp_path / "art", []
    assert audit_if_needed(str(root), art, lines.append)
    audit = json.loads((art / "tv" / "audit.json").read_text())
    assert audit["split"]["sources"]["test"] == "predefined: folder val/"  # the split runs of it make
    assert not audit_if_needed(str(root), art, lines.append) and lines[-1].startswith("audit: up to date")
    next((root / "train" / "red").iterdir()).unlink()  # other images: audited again
    assert audit_if_needed(str(root), art, lines.append)
    lines.clear()
    assert not audit_if_needed(str(tmp_path / "gone"), art, lines.append)
    assert lines == [f"audit: {tmp_path / 'gone'} (duplicates, leakage across splits, conflicting labels)",
                     f"audit: not made: data folder not found: {tmp_path / 'gone'}"]
    assert not (art / "gone").exists()
    assert not compare_if_needed(art / "tv", lines.append, changed=True)  # no complete run: nothing to compare


@pytest.mark.unit
@pytest.mark.parametrize("line, message", [
    ("cpus_per_run = 0", "'cpus_per_run' must be a number above 0"),
    ("cpus_per_run = \"two\"", "'cpus_per_run' must be a number above 0"),
    ("gpus_per_run = -1", "'gpus_per_run' must be a number of at least 0"),
    ("cpus_per_run = true", "'cpus_per_run' must be a number above 0"),
])
def test_ray_resources_in_a_grid_are_checked_and_carried_by_each_run(tmp_path, line, message):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    data = tmp_path / "d"
    head = f'[[grid]]\ndatasets = ["{data}"]\nbackbones = ["EfficientNetLite0"]\n'
    (run,) = parse_grid(head + "cpus_per_run = 3\ngpus_per_run = 0.5\n").runs
    assert (run.cpus, run.gpus) == (3.0, 0.5)
    (plain,) = parse_grid(head).runs
    assert (plain.cpus, plain.gpus) == (None, None)
    with pytest.raises(UserError, match=message):
        parse_grid(head + line + "\n", "grid.toml")


def test_relative_datasets_resolve_against_the_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    """--data-root beats STUDY_DATA_ROOT beats the file's data_root; absolute paths and the run ids stay as they are."""
    from core.orchestrate.experiment import DATA_ROOT_ENV, parse_grid

    absolute = str(tmp_path / "elsewhere" / "cats")
    text = (f'data_root = "from_file"\n[[grid]]\ndatasets = ["flowers", "{absolute}"]\n'
            'backbones = ["EfficientNetLite0"]\n')
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    assert [r.config.dataset for r in parse_grid(text).runs] == [str(Path("from_file") / "flowers"), absolute]
    monkeypatch.setenv(DATA_ROOT_ENV, "/env/data")
    study = parse_grid(text)
    assert study.data_root == "/env/data" and study.runs[0].config.dataset == "/env/data/flowers"
    flagged = parse_grid(text, data_root="/flag/data")
    assert flagged.runs[0].config.dataset == "/flag/data/flowers"
    assert flagged.runs[0].config.run_id() == study.runs[0].config.run_id()  # the folder may move; the run stays
    monkeypatch.delenv(DATA_ROOT_ENV)
    plain = parse_grid(text.replace('data_root = "from_file"\n', ""))
    assert plain.data_root == "" and plain.runs[0].config.dataset == "flowers"  # the current folder, as before


def test_a_dry_run_without_the_data_names_each_missing_folder_and_where_it_comes_from(tmp_path, monkeypatch):
    from core.orchestrate.experiment import DATA_ROOT_ENV, run_experiment

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    make_image_dataset(tmp_path / "data" / "here", per_class=6)
    grid = tmp_path / "study.toml"
    grid.write_text(f'artifacts = "{tmp_path / "art"}"\ndata_root = "{tmp_path / "data"}"\n'
                    '[data.mri]\nsource = "https://example.org/mri"\nlicence = "see the source page"\n'
                    'layout = "mri/train/<class>/*.jpg and mri/test/<class>/*.jpg"\n'
                    '[[grid]]\ndatasets = ["here", "mri", "flowers"]\nbackbones = ["EfficientNetLite0"]\n'
                    'weights = ["none"]\nseeds = [0, 1]\npreset = "quick"\n')
    lines = []
    assert run_experiment(grid, dry_run=True, emit=lines.append) == 1
    text = "\n".join(lines)
    assert f"data root: {tmp_path / 'data'}" in lines
    assert "2 dataset folders are missing on this machine:" in lines
    at = lines.index("2 dataset folders are missing on this machine:")
    assert lines[at + 1] == f"  {tmp_path / 'data' / 'mri'}"
    assert lines[at + 2:at + 5] == ["    source: https://example.org/mri", "    licence: see the source page",
                                    "    layout: mri/train/<class>/*.jpg and mri/test/<class>/*.jpg"]
    assert lines[at + 5] == f"  {tmp_path / 'data' / 'flowers'}"
    assert "no [data.flowers] table" in lines[at + 6]
    assert "--data-root DIR or STUDY_DATA_ROOT=DIR" in text
    assert str(tmp_path / "data" / "here") not in text.split("missing on this machine")[1]
    lines.clear()  # the same study, pointed at the right folder by the environment: nothing missing
    for name in ("mri", "flowers"):
        make_image_dataset(tmp_path / "moved" / name, per_class=6)
    make_image_dataset(tmp_path / "moved" / "here", per_class=6)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "moved"))
    assert run_experiment(grid, dry_run=True, emit=lines.append) == 0
    assert not any("missing" in line for line in lines) and lines[1] == f"data root: {tmp_path / 'moved'}"


@pytest.mark.parametrize("name", ["study.toml", "leakage_lesson.toml"])
def test_the_committed_study_files_parse_and_say_where_every_dataset_comes_from(name, monkeypatch):
    from core.orchestrate.experiment import DATA_ROOT_ENV, load_grid

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    study = load_grid(Path(__file__).resolve().parent.parent / "experiments" / name, data_root="/elsewhere")
    assert study.runs and all(r.config.dataset.startswith("/elsewhere/") for r in study.runs)
    for dataset in {r.config.dataset for r in study.runs}:
        assert "source" in study.data[Path(dataset).name], dataset
    if name == "study.toml":  # the second edition: every split by group, three seeds of each backbone with weights
        assert {r.config.grouping for r in study.runs} == {"duplicates"}
        lite0 = [r.config for r in study.runs if r.config.backbone == "EfficientNetLite0"
                 and r.config.method == "finetune" and r.config.weights == "imagenet"]
        assert sorted({c.seed for c in lite0}) == [0, 1, 2]
        scratch = [r.config for r in study.runs if r.config.weights == "none"]
        assert {(c.bn_momentum, c.scratch.epochs, c.scratch.patience) for c in scratch} == {(0.9, 40, 10)}


def test_two_grids_naming_one_run_make_one_planned_run_deployed_if_either_asks():
    from core.orchestrate.experiment import parse_grid

    grid = '[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0", "MobileNet@0.25"]\nseeds = [0, 1]\n'
    study = parse_grid(grid + grid.replace("seeds = [0, 1]", "seeds = [0]\ndeploy = true"))
    assert [(r.config.backbone, r.config.seed, r.deploy) for r in study.runs] == [
        ("EfficientNetLite0", 0, True), ("EfficientNetLite0", 1, False), ("MobileNet@0.25", 0, True),
        ("MobileNet@0.25", 1, False)]


def test_the_train_pages_grid_names_the_checked_folder_whatever_the_data_root(tmp_path, monkeypatch):
    from core.orchestrate.experiment import DATA_ROOT_ENV, grid_toml, parse_grid

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ROOT_ENV, "/somewhere/else")
    (run,) = parse_grid(grid_toml(tmp_path / "art", ["mine/flowers"], ["EfficientNetLite0"], "imagenet", 0,
                                  "quick")).runs
    assert run.config.dataset == str(tmp_path / "mine" / "flowers")


def test_one_datasets_part_of_a_study_runs_alone_and_a_name_it_does_not_use_is_one_line(tmp_path, monkeypatch):
    from core.errors import UserError
    from core.orchestrate.experiment import DATA_ROOT_ENV, run_experiment

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    for name in ("mri", "flowers"):
        make_image_dataset(tmp_path / "data" / name, per_class=6)
    grid = tmp_path / "study.toml"
    grid.write_text(f'artifacts = "{tmp_path / "art"}"\ndata_root = "{tmp_path / "data"}"\n'
                    '[[grid]]\ndatasets = ["mri", "flowers"]\nbackbones = ["EfficientNetLite0", "MobileNet@0.25"]\n'
                    'seeds = [0, 1]\npreset = "quick"\n'
                    '[[ensemble]]\ndatasets = ["mri", "flowers"]\nbackbones = ["EfficientNetLite0", "MobileNet@0.25"]\n'
                    'preset = "quick"\nweights = ["uniform"]\n')
    lines = []
    assert run_experiment(grid, dry_run=True, emit=lines.append, datasets=["flowers"]) == 0
    assert lines[0] == f"4 runs in {grid} on flowers: 0 complete, 4 to do"
    listed = [line for line in lines if line.startswith("  ")]
    assert len(listed) == 5 and all("flowers" in line for line in listed)  # 4 runs, 1 ensemble; no mri
    with pytest.raises(UserError, match=r"no run of this study is on flower_photos \(its datasets, .*: mri, flowers\)"):
        run_experiment(grid, dry_run=True, emit=lines.append, datasets=["flower_photos"])


@pytest.mark.parametrize("only", [None, ["mri"]])
def test_a_sitting_logs_its_datasets_only_when_restricted_to_them(tmp_path, monkeypatch, only):
    from test_analyses import fake_run

    from core.artifacts.records import read_experiment_log
    from core.orchestrate import experiment

    monkeypatch.delenv(experiment.DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr(experiment, "audit_if_needed", lambda *args, **kwargs: False)
    root = tmp_path / "art"
    grid = tmp_path / "study.toml"
    grid.write_text(f'artifacts = "{root}"\n[[grid]]\ndatasets = ["mri"]\nbackbones = ["EfficientNetLite0"]\n'
                    'seeds = [0, 1]\n')
    for n, planned in enumerate(experiment.load_grid(grid).runs):
        fake_run(planned.config, root, seed=n)
    assert experiment.run_experiment(grid, emit=lambda line: None, datasets=only) == 0
    (entry,) = read_experiment_log(root / "experiment_log.jsonl")
    assert entry.get("datasets") == only


def test_a_complete_run_with_a_measured_deployment_is_not_deployed_again(tmp_path, monkeypatch, capsys):
    """What a clone of the repository holds: a complete run and its deployment.json, but no model.keras and no TFLite
    files. A sitting keeps the measurements (before, it failed for want of the model, or measured again)."""
    import shutil

    from core.artifacts.config import RunConfig
    from core.artifacts.runs import RunFolder
    from core.orchestrate import run as run_mod
    from core.orchestrate.experiment import load_grid, run_experiment

    committed = Path(__file__).resolve().parents[1] / "artifacts" / "alzheimer_mri" / "EfficientNetLite0"
    data = make_image_dataset(tmp_path / "colours", per_class=2)
    art = tmp_path / "art"
    grid = tmp_path / "grid.toml"
    grid.write_text(f'artifacts = "{art}"\n[[grid]]\ndatasets = ["{data}"]\nbackbones = ["EfficientNetLite0"]\n'
                    'preset = "quick"\ndeploy = true\n')
    (planned,) = load_grid(grid).runs
    folder = RunFolder.for_config(planned.config, art)
    shutil.copytree(committed / "full-imagenet-s0-a9f4b40e", folder.path,
                    ignore=shutil.ignore_patterns("*.tflite", "*.keras", ".lock"))
    planned.config.save(folder.path / "config.json")
    assert RunConfig.load(folder.path / "config.json").run_id() == folder.path.name and folder.is_complete()
    stored = (folder.path / "deploy" / "deployment.json").read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("a measured deployment was deployed again")

    monkeypatch.setattr(run_mod, "deploy_run", refuse)
    assert run_experiment(grid) == 0
    assert "[1/1] deployment measured already" in capsys.readouterr().out
    assert (folder.path / "deploy" / "deployment.json").read_bytes() == stored
