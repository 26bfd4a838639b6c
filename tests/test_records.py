"""The typed records of the stored results: documented, readable from the committed artifacts, strict on bad files."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import layout, records
from core.artifacts.config import RunConfig, flatten
from core.artifacts.records import (
    JSON_RECORDS,
    AuditRecord,
    ComparisonRecord,
    CompleteRecord,
    DeploymentRecord,
    EnsembleRecord,
    LeakageRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    RecordError,
    SplitRecord,
    UnavailableRecord,
)
from core.cli import main
from core.data.sampling import balanced_sample

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"


def test_the_artifacts_documentation_names_every_field_the_records_write():
    doc = (REPO / "docs" / "ARTIFACTS.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", doc))
    missing = {kind.__name__: [f for f in records.record_fields(kind) if f not in named] for kind in JSON_RECORDS}
    missing["RunConfig"] = [k for k in flatten(RunConfig(dataset="", backbone="").to_dict()) if k.split(".")[-1] not in named]
    missing["Predictions"] = [c for c in ("id", "true", "pred") if c not in named]
    assert not any(missing.values()), {k: v for k, v in missing.items() if v}


def _committed(pattern: str) -> list[Path]:
    found = sorted(ARTIFACTS.glob(pattern))
    assert found, f"no committed {pattern}"
    return found


@pytest.mark.parametrize("pattern, kind", [
    (f"*/*/*/{layout.METRICS_FILE}", MetricsRecord), (f"*/*/*/{layout.COMPLETE_MARKER}", CompleteRecord),
    (f"*/*/*/{layout.PROVENANCE_FILE}", ProvenanceRecord), (f"*/{layout.SPLITS_DIR}/*.json", SplitRecord),
    (f"*/*/*/{layout.DEPLOY_DIR}/{layout.DEPLOYMENT_FILE}", DeploymentRecord),
    (f"{layout.ARCHITECTURES_DIR}/*/{layout.DEPLOYMENT_FILE}", DeploymentRecord),
    (f"*/{layout.AUDIT_FILE}", AuditRecord), (f"*/{layout.MCNEMAR_FILE}", ComparisonRecord),
    (f"*/{layout.UNAVAILABLE_FILE}", UnavailableRecord),
    (f"*/*/*/{layout.LEAKAGE_FILE}", LeakageRecord),
])
def test_every_committed_record_loads_and_round_trips_unchanged(pattern, kind):
    defaults = {f.name: f.default for f in dataclasses.fields(kind) if f.default is not dataclasses.MISSING}
    for path in _committed(pattern):
        stored = json.loads(path.read_text(encoding="utf-8"))
        record = kind.load(path)
        assert record.extra == {}, f"{path}: fields no record declares: {sorted(record.extra)}"
        written = record.to_dict()
        version = stored.get("schema_version", 1)
        if version < kind.SCHEMA_VERSION:  # an older schema: unchanged apart from its migration
            stored = {"schema_version": kind.SCHEMA_VERSION,
                      **kind.migrate({k: v for k, v in stored.items() if k != "schema_version"}, version)}
        assert {k: written[k] for k in stored} == stored
        assert {k: written[k] for k in written if k not in stored} == {k: defaults[k] for k in written if k not in stored}


def test_every_committed_config_and_predictions_table_loads():
    for path in _committed(f"*/*/*/{layout.CONFIG_FILE}"):
        if layout.is_ensemble(path.parent):
            assert EnsembleRecord.load(path).kind == "ensemble"
            continue
        config = RunConfig.load(path)
        assert config.run_id() == path.parent.name  # the folder is named by the settings
    for path in _committed(f"*/*/*/{layout.PREDICTIONS_FILE}"):
        table = Predictions.load(path)
        metrics = MetricsRecord.load(path.parent / layout.METRICS_FILE)
        assert table.classes == metrics.classes and len(table.ids) == metrics.n
        assert np.mean(table.correct()) == pytest.approx(metrics.accuracy)


def test_a_record_keeps_fields_a_newer_writer_added_and_migrates_unversioned_files(tmp_path):
    data = {"completed_at": "2026-01-01T00:00:00Z", "accuracy": 0.5, "added_later": [1, 2]}
    record = CompleteRecord.from_dict(data)  # no schema_version: written before versioning (schema 1)
    assert record.accuracy == 0.5 and record.extra == {"added_later": [1, 2]}
    record.save(tmp_path / "complete.json")
    assert json.loads((tmp_path / "complete.json").read_text())["added_later"] == [1, 2]
    assert CompleteRecord.load(tmp_path / "complete.json").to_dict()["schema_version"] == 1


@pytest.mark.parametrize("content, expected", [
    ("{not json", "unreadable completion marker: not valid JSON"),
    ("[1, 2]", "not a completion marker (expected a JSON object"),
    ('{"schema_version": 99, "completed_at": "x"}', "schema 99, newer than this code reads"),
    ('{"accuracy": 0.5}', "not a completion marker (missing completed_at)"),
    (b"\xff\xfe\x00", "unreadable completion marker: not UTF-8"),
])
def test_a_bad_record_file_is_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "complete.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RecordError) as info:
        CompleteRecord.load(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_missing_record_and_a_foreign_predictions_table_are_refused(tmp_path):
    with pytest.raises(RecordError, match="metrics record here \\(file missing\\)"):
        MetricsRecord.load(tmp_path / "metrics.json")
    (tmp_path / "predictions.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RecordError, match="header must start with id,true,pred"):
        Predictions.load(tmp_path / "predictions.csv")
    (tmp_path / "predictions.csv").write_text("id,true,pred,p_a,p_b\nx.png,a,b,0.2,oops\n")
    with pytest.raises(RecordError, match="not a number"):
        Predictions.load(tmp_path / "predictions.csv")


def test_a_config_from_a_newer_or_foreign_writer_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"schema_version": 1, "dataset": "d", "backbone": "b", "colour": "red"}))
    with pytest.raises(RecordError, match="not a run config this version can read"):
        RunConfig.load(path)
    path.write_text(json.dumps({"schema_version": 7, "dataset": "d", "backbone": "b"}))
    with pytest.raises(RecordError, match="schema 7"):
        RunConfig.load(path)


def test_predictions_round_trip_through_their_table(tmp_path):
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    table = Predictions.from_probs(["a.png", "b.png", "c.png"], np.array([0, 1, 1]), probs, ["cat", "None"])
    table.save(tmp_path / "p.csv")
    back = Predictions.load(tmp_path / "p.csv")
    assert back.ids == ["a.png", "b.png", "c.png"] and back.true == ["cat", "None", "None"]
    assert back.pred == ["cat", "None", "cat"] and back.correct() == [True, True, False]
    np.testing.assert_allclose(back.probs, probs)


WHOLE = "id,true,pred,p_a,p_b\nx.png,a,b,0.25,0.75\ny.png,b,b,0.125,0.875\n"


@pytest.mark.parametrize("content, expected_rows, expected", [
    (WHOLE[:-3], None, "incomplete predictions table (its last line is cut short)"),  # same columns, value cut
    (WHOLE[:-1], None, "its last line is cut short"),
    (WHOLE.rsplit("y.png", 1)[0], 2, "1 rows where the run's metrics count 2 test images"),  # a whole line lost
    (WHOLE, 3, "2 rows where the run's metrics count 3 test images"),
    (WHOLE.rsplit("y.png", 1)[0] + "y.png,b", None, "cut short"),
], ids=["value-cut", "newline-cut", "line-lost", "fewer-than-metrics", "row-cut"])
def test_a_truncated_predictions_table_is_refused_not_read_partially(tmp_path, content, expected_rows, expected):
    path = tmp_path / "predictions.csv"
    path.write_text(content)
    with pytest.raises(RecordError) as info:
        Predictions.load(path, expected_rows=expected_rows)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message
    path.write_text(WHOLE)
    assert len(Predictions.load(path, expected_rows=2).ids) == 2


def test_a_history_with_a_cut_or_malformed_line_keeps_the_whole_rows_and_names_the_rest(tmp_path):
    from core.artifacts.runs import RunFolder

    run = RunFolder(tmp_path)
    for epoch in (1, 2, 3):
        run.append_history({"stage": "stage1", "epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.5, "val_loss": 1.0,
                            "val_accuracy": 0.5, "learning_rate": 0.001, "seconds": 2.0})
    path = tmp_path / "history.csv"
    assert len(run.read_history()) == 3 and run.history_problems() == []
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1] + "stage1,2,0.5\n" + lines[3][:-5])
    assert [r["epoch"] for r in run.read_history()] == ["1"]
    problems = run.history_problems()
    assert problems == [f"{path}: its last line is cut short (that epoch is left out)",
                        f"{path}: line 3 does not have the columns of its header (left out)"]


def test_a_corrupt_metrics_file_or_a_short_predictions_table_makes_compare_say_one_line(tmp_path, capsys):
    """The CLI reads through the records, so a damaged file is an error line, not a traceback or a partial result."""
    dataset = tmp_path / "art" / "flower_photos"
    for run in sorted(r for r in (ARTIFACTS / "flower_photos" / "EfficientNetLite0").glob("full-imagenet-s[01]-*")
                      if (r / layout.COMPLETE_MARKER).is_file()):  # a run in progress beside them is no input
        target = dataset / "EfficientNetLite0" / run.name
        target.mkdir(parents=True)
        for name in (layout.CONFIG_FILE, layout.METRICS_FILE, layout.PREDICTIONS_FILE, layout.COMPLETE_MARKER):
            shutil.copy(run / name, target / name)
    assert main(["compare", str(dataset)]) == 0
    assert ComparisonRecord.load(dataset / layout.MCNEMAR_FILE).pairs
    broken = next(dataset.glob(f"*/*/{layout.METRICS_FILE}"))
    broken.write_text('{"accuracy": ')
    capsys.readouterr()
    assert main(["compare", str(dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(broken) in err and "not valid JSON" in err and "\n" not in err

    # predictions.csv short of whole lines: McNemar would pair the runs on the rest; it stops instead.
    shutil.copy(next(ARTIFACTS.glob(f"flower_photos/*/{broken.parent.name}/{layout.METRICS_FILE}")), broken)
    cut = next(dataset.glob(f"*/*/{layout.PREDICTIONS_FILE}"))
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:-5]))
    capsys.readouterr()
    assert main(["compare", str(dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(cut) in err and "rows where the run's metrics count" in err


def test_the_audit_writes_its_report_under_the_artifacts_folder_by_default(tmp_path, monkeypatch, capsys):
    from PIL import Image

    data = tmp_path / "my data"
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (data / label).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (16, 16), tuple(max(0, c - 9 * i) for c in colour)).save(data / label / f"{i}.png")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["audit", str(data), "--artifacts", str(tmp_path / "art")]) == 0
    report = tmp_path / "art" / "my_data" / layout.AUDIT_FILE
    assert AuditRecord.load(report).counts and list(work.iterdir()) == []  # nothing left in the current folder
    assert str(report) in capsys.readouterr().out


def test_balanced_sampling_caps_each_class_or_lets_classes_take_turns():
    pairs = [(f"{c}{i:02d}", c) for c in "abc" for i in range({"a": 10, "b": 3, "c": 6}[c])]
    capped = balanced_sample(pairs, seed=1, per_class=4)
    assert [sum(1 for _, c in capped if c == k) for k in "abc"] == [4, 3, 4]
    assert capped == sorted(capped) and capped == balanced_sample(list(reversed(pairs)), seed=1, per_class=4)
    assert capped != balanced_sample(pairs, seed=2, per_class=4)  # the seed matters
    turns = balanced_sample(pairs, seed=1, total=12)
    assert len(turns) == 12 and [sum(1 for _, c in turns if c == k) for k in "abc"] == [5, 3, 4]
    assert len(balanced_sample(pairs, seed=1, total=100)) == len(pairs)


def test_probabilities_are_scored_as_predictions_csv_stores_them(tmp_path):
    """Two classes within 1e-6 (a class-weighted tree leaf) must be ordered the same way by the run and by anyone
    re-scoring its predictions.csv: the run scores the stored values."""
    probs = np.array([[0.4999999, 0.5000001, 0.0], [0.2, 0.3, 0.5]])
    assert Predictions.from_probs(["a", "b"], np.array([0, 2]), probs, ["x", "y", "z"]).pred == ["y", "z"]
    stored = Predictions.as_stored(probs)
    assert stored.tolist() == [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]
    table = Predictions.from_probs(["a", "b"], np.array([0, 2]), stored, ["x", "y", "z"])
    again = Predictions.load(table.save(tmp_path / "predictions.csv"))
    assert again.pred == table.pred == ["x", "z"]  # a tie goes to the first class, as argmax of what is stored
    assert [again.classes[i] for i in np.asarray(again.probs).argmax(1)] == again.pred
