"""The leakage lesson (core.evaluate.lesson, core.artifacts.lesson, the page): fake arms written with the record
classes, scores checked against a hand computation (no training, no TensorFlow)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import lesson as view
from core.artifacts.config import RunConfig
from core.artifacts.layout import LESSON_DIR, VAL_PREDICTIONS_FILE
from core.artifacts.records import (
    AuditRecord,
    CompleteRecord,
    LessonRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    RecordError,
    SplitRecord,
)
from core.cli import main
from core.errors import UserError
from core.evaluate import lesson
from core.evaluate.metrics import evaluate

pytestmark = pytest.mark.unit

CLASSES = ["Mild", "Non"]
PATTERN = r"^(train/[^/]+/.+)__(?:orig|aug[0-9]+)[.]jpg$"
SOURCES = 40  # source scans per class, each saved as __orig plus two __aug copies


def _paths():
    """The augmented training folder (source, label, path) and the untouched test images (path, label)."""
    train = [(f"train/{c}/s{i}", c, f"train/{c}/s{i}__{k}.jpg")
             for c in CLASSES for i in range(SOURCES) for k in ("orig", "aug1", "aug2")]
    test = [(f"test/{c}/t{i}.jpg", c) for c in CLASSES for i in range(30)]
    return train, test


def write_arm(root: Path, grouping: str, val_correct, test_correct) -> Path:
    """A complete run of the lesson: validation carved image by image (``none``) or by source (else)."""
    train, test = _paths()
    rng = np.random.default_rng(len(grouping))
    if grouping == "none":  # every third image of the training folder, whatever its source
        val = {p for n, (_, _, p) in enumerate(train) if n % 3 == 1}
    else:  # whole sources: every fifth source scan
        val = {p for s, _, p in train if int(s.rsplit("s", 1)[1]) % 5 == 0}
    items = [{"path": p, "label": c, "split": "val" if p in val else "train"} for _, c, p in train]
    items += [{"path": p, "label": c, "split": "test"} for p, c in test]
    cfg = RunConfig(dataset="../lesson_data/aug", backbone="EfficientNetLite0", preset="full", grouping=grouping)
    run = root / "aug" / cfg.backbone / cfg.run_id()
    run.mkdir(parents=True)
    cfg.save(run / "config.json")
    split_file = root / "aug" / "splits" / f"split-{cfg.run_id()}.json"
    SplitRecord(seed=42, val_fraction=0.15, test_fraction=0.15, layout="predefined_splits", items=items).save(split_file)

    def probs(labels, correct):
        y = np.array([CLASSES.index(c) for c in labels])
        pred = np.where(correct, y, 1 - y)
        p = np.full((len(y), 2), 0.2)
        p[np.arange(len(y)), pred] = 0.8
        return y, p

    val_items = [(i["path"], i["label"]) for i in items if i["split"] == "val"]
    y, p = probs([c for _, c in val_items], val_correct(len(val_items), rng))
    Predictions.from_probs([q for q, _ in val_items], y, p, CLASSES).save(run / VAL_PREDICTIONS_FILE)
    y, p = probs([c for _, c in test], test_correct(len(test), rng))
    MetricsRecord.from_dict(evaluate(y, p, CLASSES, n_bootstrap=50)).save(run / "metrics.json")
    Predictions.from_probs([q for q, _ in test], y, p, CLASSES).save(run / "predictions.csv")
    ProvenanceRecord(code={}, libraries={}, machine={}, details={},
                     dataset={"path": "../lesson_data/aug", "fingerprint": "f",
                              "split_file": os.path.relpath(split_file, run)}).save(run / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    write_audit(root / "aug")
    return run


def write_audit(folder: Path) -> None:
    """The augmented set's audit: its near-duplicate groups link each source's original with its first copy (the
    perceptual hash misses the rotated others) and the test images in pairs."""
    train, test = _paths()
    clusters = [[f"{s}__orig.jpg", f"{s}__aug1.jpg"] for s in dict.fromkeys(src for src, _, _ in train)]
    clusters += [[test[i][0], test[i + 1][0]] for i in range(0, len(test), 2)]
    AuditRecord(tool="test", created_at="", dataset={"fingerprint": "f"}, split={}, counts={}, corrupt=[],
                skipped=[], imbalance={}, timings_s={}, verdict={}, hash={"threshold": 24, "bits": 256},
                duplicates={"clusters": [{"members": [{"path": p} for p in c]} for c in clusters], "pairs": []}
                ).save(folder / "audit.json")


def _share(share):
    return lambda n, rng: rng.random(n) < share


@pytest.fixture
def lesson_root(tmp_path):
    root = tmp_path / "art" / LESSON_DIR
    write_arm(root, "none", _share(0.97), _share(0.60))
    write_arm(root, f"regex:{PATTERN}", _share(0.62), _share(0.61))
    write_arm(root, "duplicates", _share(0.93), _share(0.60))
    return root


def test_each_arm_scores_validation_and_test_and_counts_the_true_leak_by_source(lesson_root):
    record = lesson.build_lesson(lesson_root)
    assert [a["kind"] for a in record.arms] == ["none", "regex", "duplicates"]
    leaky, fixed = record.arms[0], record.arms[1]
    for a in record.arms:
        run = lesson_root / "aug" / a["run"]
        val = Predictions.load(run / VAL_PREDICTIONS_FILE)
        assert a["validation"]["accuracy"]["estimate"] == pytest.approx(np.mean(val.correct()))
        test = Predictions.load(run / "predictions.csv")
        assert a["test"]["accuracy"]["estimate"] == pytest.approx(np.mean(test.correct()))
        low, high = a["validation"]["accuracy"]["low"], a["validation"]["accuracy"]["high"]
        assert low <= a["validation"]["accuracy"]["estimate"] <= high
    # Image by image: every validation image's source has its other copies in training (a third of the folder
    # went to validation, never all three copies of one source: n % 3 == 1 takes one copy of each).
    assert leaky["validation_sources_in_train"] == {"images": 2 * SOURCES, "of": 2 * SOURCES,
                                                    "by": "source image (file names)"}
    assert fixed["validation_sources_in_train"]["images"] == 0
    assert fixed["validation_sources_in_train"]["of"] == 2 * 8 * 3  # 8 of 40 sources per class, 3 copies each
    # The audit links an original with its first copy only: image by image, it sees the validation images whose
    # linked partner (orig <-> aug1) is in training; a third of them are aug2 copies it cannot link at all.
    val_paths = [p for _, _, p in _paths()[0]][1::3]  # n % 3 == 1: the aug1 copy of each source
    assert all(p.endswith("__aug1.jpg") for p in val_paths)
    assert leaky["validation_leak_seen_by_audit"]["images"] == 2 * SOURCES  # each aug1's orig is in training
    assert fixed["validation_leak_seen_by_audit"]["images"] == 0
    assert leaky["true_leaks_linked_by_audit"] == {"images": 2 * SOURCES, "of": 2 * SOURCES}
    # Validation intervals resample source scans (image by image, each source has one validation copy: the same
    # as images, and said so); test intervals resample the audit's groups in every arm, the regex arm too.
    assert fixed["validation"]["resampled"] == "groups (16)" and leaky["validation"]["resampled"] == "images (80)"
    assert {a["test"]["resampled"] for a in record.arms} == {"groups (30)"}
    assert {a["test_leak_free"]["n"] for a in record.arms} == {60}  # no test image is linked to training


def test_the_record_round_trips_and_the_views_word_the_numbers(lesson_root):
    record = LessonRecord.load(lesson.build_lesson(lesson_root).save(lesson.lesson_path(lesson_root)))
    table = view.table(record)
    assert list(table["Split"]) == ["image-level split", "split by source image", "split by near-duplicate groups"]
    leaky = record.arms[0]
    gap = leaky["validation"]["accuracy"]["estimate"] - leaky["test"]["accuracy"]["estimate"]
    assert table["Validation minus test (points)"][0] == f"{gap * 100:+.1f}"
    assert table["Validation images whose source is in train"][0] == f"{2 * SOURCES} of {2 * SOURCES} (100%)"
    text = view.explanation(record)
    assert f"Validation reads {leaky['validation']['accuracy']['estimate']:.1%} accuracy against" in text
    assert "On the test split the two networks score accuracy" in text and "intervals overlap" in text
    assert "One possible reason" not in text  # the fake arms' test scores are close: no lead offered
    assert f"its near-duplicate groups link {2 * SOURCES} of the {2 * SOURCES} validation images" in text
    far = json.loads(json.dumps(record.to_dict()))  # the leaky arm far below on balanced accuracy: a lead, hedged
    far["arms"][0]["test"]["balanced_accuracy"] = {"estimate": 0.40, "low": 0.35, "high": 0.45}
    far["arms"][1]["test"]["balanced_accuracy"] = {"estimate": 0.60, "low": 0.55, "high": 0.65}
    assert "One possible reason" in view.explanation(LessonRecord.from_dict(far))
    rows = view.score_rows(record)
    assert len(rows) == 6 and set(rows["scored on"]) == {"validation", "test"}
    balanced = view.score_rows(record, "balanced_accuracy")
    assert balanced["score"][1] == leaky["test"]["balanced_accuracy"]["estimate"]


def test_a_lesson_without_both_splits_or_with_two_datasets_is_refused(tmp_path):
    root = tmp_path / LESSON_DIR
    write_arm(root, "none", _share(0.9), _share(0.6))
    with pytest.raises(UserError, match="split by source image"):
        lesson.build_lesson(root)
    other = tmp_path / "other"
    write_arm(other, "none", _share(0.9), _share(0.6))
    (other / "aug").rename(root / "aug2")
    with pytest.raises(UserError, match="one dataset.*found: aug, aug2"):
        lesson.build_lesson(root)


def test_the_cli_writes_the_record_the_page_reads(lesson_root, capsys, monkeypatch):
    art = lesson_root.parent.parent
    assert main(["lesson", "--artifacts", str(art)]) == 0
    out = capsys.readouterr().out
    assert "image-level split" in out and f"written: {lesson_root / 'lesson.json'}" in out
    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    assert view.load_lesson() is not None and view.load_lesson(art).arms[0]["kind"] == "none"
    from core.artifacts.readme import markdown_results

    text = markdown_results(art)  # the README's results carry the lesson's table and paragraph
    assert "### The leakage lesson: results" in text and "| image-level split |" in text
    assert view.explanation(view.load_lesson(art)) in text
    (lesson_root / "lesson.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(RecordError, match="missing"):
        view.load_lesson(art)
    stored = lesson.build_lesson(lesson_root).to_dict()
    del stored["arms"][1]["test"]["balanced_accuracy"]  # hand-edited: one line, not a crash of the page
    (lesson_root / "lesson.json").write_text(json.dumps(stored))
    with pytest.raises(RecordError, match="arm 2 lacks"):
        view.load_lesson(art)


def test_the_page_draws_the_lesson_and_says_how_to_make_it_when_there_is_none(lesson_root, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)
    monkeypatch.setenv("STUDY_ARTIFACTS", str(tmp_path / "empty"))
    app = AppTest.from_file(str(repo / "pages" / "leakage_lesson.py"), default_timeout=60).run()
    assert not app.exception and "scripts/build_leaky_alzheimer.py" in app.info[0].value
    main(["lesson", "--artifacts", str(lesson_root.parent.parent)])
    monkeypatch.setenv("STUDY_ARTIFACTS", str(lesson_root.parent.parent))
    app = AppTest.from_file(str(repo / "pages" / "leakage_lesson.py"), default_timeout=60).run()
    assert not app.exception
    assert any("image by image" in m.value for m in app.markdown)
    assert len(app.dataframe) == 1 and "One seed per arm" in app.caption[-1].value
