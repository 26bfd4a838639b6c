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
    CompleteRecord,
    LeakageRecord,
    LessonRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
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


def write_arm(root: Path, grouping: str, val_correct, test_correct, leak_seen: int) -> Path:
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
    LeakageRecord(grouping={"source": "duplicates", "detail": "pHash"}, computed_from="test", test_images=len(test),
                  test_groups=len(test), leaking_images=0, definition="", validation={"images": len(val_items),
                                                                                      "leaking": leak_seen},
                  subsets={"all": None, "leak_free": {"n": len(test), "accuracy": float((p.argmax(1) == y).mean())}}
                  ).save(run / "leakage.json")
    ProvenanceRecord(code={}, libraries={}, machine={}, details={},
                     dataset={"path": "../lesson_data/aug", "fingerprint": "f",
                              "split_file": os.path.relpath(split_file, run)}).save(run / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    return run


def _share(share):
    return lambda n, rng: rng.random(n) < share


@pytest.fixture
def lesson_root(tmp_path):
    root = tmp_path / "art" / LESSON_DIR
    write_arm(root, "none", _share(0.97), _share(0.60), leak_seen=3)
    write_arm(root, f"regex:{PATTERN}", _share(0.62), _share(0.61), leak_seen=0)
    write_arm(root, "duplicates", _share(0.93), _share(0.60), leak_seen=0)
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
    assert leaky["validation_leak_seen_by_audit"]["images"] == 3  # from the run's leakage.json
    # Validation intervals resample source scans, not images (image by image, each source has one validation
    # copy: the same thing, and said so).
    assert fixed["validation"]["resampled"] == "groups (16)" and leaky["validation"]["resampled"] == "images (80)"


def test_the_record_round_trips_and_the_views_word_the_numbers(lesson_root):
    record = LessonRecord.load(lesson.build_lesson(lesson_root).save(lesson.lesson_path(lesson_root)))
    table = view.table(record)
    assert list(table["Split"]) == ["image-level split", "split by source image", "split by near-duplicate groups"]
    leaky = record.arms[0]
    gap = leaky["validation"]["accuracy"]["estimate"] - leaky["test"]["accuracy"]["estimate"]
    assert table["Validation minus test"][0] == f"{gap:+.3f}"
    assert table["Validation images whose source is in train"][0] == f"{2 * SOURCES} of {2 * SOURCES} (100%)"
    text = view.explanation(record)
    assert f"{leaky['validation']['accuracy']['estimate']:.1%} on validation" in text
    assert "On the test split, the two networks score accuracy" in text
    assert "serves the rare classes worse" not in text  # the fake arms' test scores are close: no such claim
    assert "sees 0 leaking validation images where" in text
    rows = view.score_rows(record)
    assert len(rows) == 6 and set(rows["scored on"]) == {"validation", "test"}
    balanced = view.score_rows(record, "balanced_accuracy")
    assert balanced["score"][1] == leaky["test"]["balanced_accuracy"]["estimate"]


def test_a_lesson_without_both_splits_or_with_two_datasets_is_refused(tmp_path):
    root = tmp_path / LESSON_DIR
    write_arm(root, "none", _share(0.9), _share(0.6), leak_seen=0)
    with pytest.raises(UserError, match="split by source image"):
        lesson.build_lesson(root)
    other = tmp_path / "other"
    write_arm(other, "none", _share(0.9), _share(0.6), leak_seen=0)
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
    (lesson_root / "lesson.json").write_text(json.dumps({"schema_version": 1}))
    from core.artifacts.records import RecordError
    with pytest.raises(RecordError, match="missing"):
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
