"""``experiment FILE --retire``: what a study no longer plans is listed, then removed with --yes; what it plans,
and what rests on that, stays (fake run folders, no TensorFlow)."""

import json
import os

import pytest
from test_analyses import STUDY, fake_run

from core.artifacts.config import RunConfig
from core.artifacts.layout import cv_file, diagnostics_file, ensemble_folders
from core.artifacts.records import BatchNormDiagnosis, CrossValidationRecord, ProvenanceRecord, SplitRecord
from core.artifacts.runs import RunFolder
from core.cli import main as cli_main
from core.orchestrate.analyses import run_analyses
from core.orchestrate.experiment import parse_grid

pytestmark = pytest.mark.unit

OLD = STUDY.replace("seeds = [0, 1]", 'seeds = [0]\nset = { grouping = "none" }').replace(
    'weights = ["uniform", "val_loss"]', 'weights = ["uniform"]\nset = { grouping = "none" }').replace(
    "sensitivity = 0.9", 'sensitivity = 0.9\nset = { grouping = "none" }')


def _cv_record(config: RunConfig, root):
    path = cv_file(root / "mri", config.backbone, config.run_id(), 5, True)
    CrossValidationRecord(created_at="2026-11-30T00:00:00Z", dataset={}, backbone=config.backbone,
                          method=config.method, config=config.to_dict(), grouped=True, grouping={}, k=5,
                          fold_seeds=[0], procedure="", hyperparameter=None, folds=[], summary={}, repeats=[],
                          test={}, fit_seconds=0.0).save(path)
    return path


def _old_edition(root):
    """The first edition's runs (image-level split, its own split file), its ensemble and a CV record of it."""
    old = parse_grid(OLD)
    for n, planned in enumerate(old.runs):
        run = fake_run(planned.config, root, seed=10 + n)
        provenance = ProvenanceRecord.load(run / "provenance.json")
        split = root / "mri" / "splits" / "split-seed42-old.json"
        if not split.is_file():
            items = SplitRecord.load(root / "mri" / "splits" / "split-seed42-abc.json").items
            SplitRecord(seed=42, val_fraction=0.15, test_fraction=0.15, layout="class_folders", items=items,
                        grouping={"source": "none"}).save(split)
        provenance.dataset["split_file"] = os.path.relpath(split, run)
        provenance.save(run / "provenance.json")
    run_analyses(old.analyses, root, print)
    first = old.runs[0].config
    diagnosis = diagnostics_file(root / "mri", first.backbone, first.run_id())
    BatchNormDiagnosis(kind="batchnorm", run=first.run_id(), backbone=first.backbone, weights="imagenet",
                       split="val", val_images=1, classes=[], note="", results={}, seconds=0.0, provenance={},
                       command="").save(diagnosis)
    return old, [_cv_record(first, root), diagnosis]


def test_retire_lists_what_the_study_no_longer_plans_and_yes_removes_it(tmp_path, monkeypatch, capsys):
    root = tmp_path / "art"
    study = parse_grid(STUDY)
    for n, planned in enumerate(study.runs):
        fake_run(planned.config, root, seed=n)
    run_analyses(study.analyses, root, print)
    kept_cv = _cv_record(study.runs[0].config, root)
    old, records = _old_edition(root)
    (root / "mri" / "mcnemar.json").write_text("{}")  # a comparison of old and new runs together
    study_file = tmp_path / "study.toml"
    study_file.write_text(f'artifacts = "{root}"\n' + STUDY)
    old_runs = [RunFolder.for_config(p.config, root).path for p in old.runs]
    ensembles = ensemble_folders(root / "mri")
    assert len(ensembles) == 3  # two of the new runs (uniform, val_loss), one of the old
    capsys.readouterr()

    assert cli_main(["experiment", str(study_file), "--retire"]) == 0
    out = capsys.readouterr().out
    header = f"{root / 'mri'}: 2 runs, 1 ensembles, 1 diagnoses, 1 model-selection records, 1 split files to retire:"
    assert header in out
    for path in old_runs + records + [root / "mri" / "splits" / "split-seed42-old.json"]:
        assert f"  {path.relative_to(root / 'mri').as_posix()}\n" in out and path.exists()
    assert "6 paths would be removed: add --yes" in out
    assert all(p.path.is_dir() for p in (RunFolder.for_config(r.config, root) for r in study.runs))

    assert cli_main(["experiment", str(study_file), "--retire", "--yes"]) == 0
    assert not any(p.exists() for p in old_runs + records + [root / "mri" / "splits" / "split-seed42-old.json"])
    assert len(ensemble_folders(root / "mri")) == 2 and kept_cv.is_file()
    assert (root / "mri" / "splits" / "split-seed42-abc.json").is_file()
    assert all(RunFolder.for_config(r.config, root).is_complete() for r in study.runs)
    compared = json.loads((root / "mri" / "mcnemar.json").read_text())
    labels = {label for pair in compared["pairs"] for label in (pair["a"], pair["b"])}
    assert labels and not labels & {f"{p.parent.name}/{p.name}" for p in old_runs}
    capsys.readouterr()
    assert cli_main(["experiment", str(study_file), "--retire"]) == 0
    assert "nothing to retire" in capsys.readouterr().out


def test_retire_keeps_other_datasets_and_yes_needs_retire(tmp_path, capsys):
    root = tmp_path / "art"
    study = parse_grid(STUDY)
    fake_run(study.runs[0].config, root)
    stray = root / "pets" / "EfficientNetLite0" / "full-imagenet-s0-x"
    stray.mkdir(parents=True)
    (stray / "config.json").write_text("{}")
    study_file = tmp_path / "study.toml"
    study_file.write_text(f'artifacts = "{root}"\n' + STUDY)
    assert cli_main(["experiment", str(study_file), "--retire", "--yes"]) == 0
    assert stray.is_dir()  # a dataset the study does not use is not its business
    assert cli_main(["experiment", str(study_file), "--yes"]) == 2
    assert "--yes confirms --retire" in capsys.readouterr().err


def test_retire_keeps_what_is_being_written_or_cannot_be_read(tmp_path, capsys):
    """A run another process holds, an unreadable record, and every split file while a planned run has not recorded
    its split: listed as kept, never removed."""
    from core.artifacts.runs import RunFolder as Folder

    root = tmp_path / "art"
    study = parse_grid(STUDY)
    done, *_ = [fake_run(p.config, root, seed=n) for n, p in enumerate(study.runs[:3])]
    training = RunFolder.for_config(study.runs[3].config, root).path  # planned, started, no provenance yet
    training.mkdir(parents=True)
    study.runs[3].config.save(training / "config.json")
    old, records = _old_edition(root)
    writing = Folder(RunFolder.for_config(old.runs[1].config, root).path)
    writing.lock()  # as a run or deployment in progress holds it
    provenance = ProvenanceRecord.load(writing.path / "provenance.json")  # it reads the new split: the old one is
    provenance.dataset["split_file"] = os.path.relpath(root / "mri" / "splits" / "split-seed42-abc.json",
                                                       writing.path)  # read by no kept run
    provenance.save(writing.path / "provenance.json")
    unreadable = root / "mri" / "ensembles" / "broken"
    unreadable.mkdir(parents=True)
    (unreadable / "config.json").write_text('{"schema_version": 99')
    study_file = tmp_path / "study.toml"
    study_file.write_text(f'artifacts = "{root}"\n' + STUDY)
    try:
        assert cli_main(["experiment", str(study_file), "--retire", "--yes"]) == 0
    finally:
        writing.unlock()
    out = capsys.readouterr().out
    assert writing.path.is_dir() and f"kept: {writing.path.relative_to(root / 'mri').as_posix()} (another " in out
    assert not RunFolder.for_config(old.runs[0].config, root).path.exists()
    assert unreadable.is_dir() and "kept: ensembles/broken (its config.json cannot be read)" in out
    assert (root / "mri" / "splits" / "split-seed42-old.json").is_file()  # the training run may read it
    assert "(a planned run has not recorded its split yet)" in out
    assert training.is_dir() and done.is_dir()


def test_retire_on_a_missing_artifacts_folder_says_so(tmp_path, capsys):
    study_file = tmp_path / "study.toml"
    study_file.write_text(f'artifacts = "{tmp_path / "nowhere"}"\n' + STUDY)
    assert cli_main(["experiment", str(study_file), "--retire"]) == 0
    assert f"no artifacts folder at {tmp_path / 'nowhere'}: nothing to retire" in capsys.readouterr().out
    assert cli_main(["experiment", str(study_file), "--retire", "--dry-run"]) == 2
    assert "--retire runs nothing" in capsys.readouterr().err
