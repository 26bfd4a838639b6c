"""The audit catches what inflated the original study: augmented copies across splits."""

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from core.cli import main as cli_main
from core.data import audit, duplicates

pytestmark = pytest.mark.unit


def texture(seed: int, size: int = 96) -> Image.Image:
    """A distinct structured image: random shapes over a gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([(x * rng.uniform(0.5, 2.5)) % 255, (y * rng.uniform(0.5, 2.5)) % 255,
                     ((x + y) * rng.uniform(0.2, 1.5)) % 255], -1)
    for _ in range(6):
        cx, cy, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(6, 24))]
        base[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    return Image.fromarray(base.astype(np.uint8))


def build_leaking_dataset(root):
    """Predefined train/test; one train image's flipped, rotated and brightened copies sit in test."""
    seed = 0
    for split in ("train", "test"):
        for label in ("cats", "dogs"):
            (root / split / label).mkdir(parents=True)
            for i in range(6 if split == "train" else 3):
                seed += 1
                texture(seed).save(root / split / label / f"{label}{i}.png")
    original = Image.open(root / "train" / "cats" / "cats0.png").convert("RGB")
    ImageOps.mirror(original).save(root / "test" / "cats" / "aug_flip.png")
    original.rotate(90, expand=True).save(root / "test" / "cats" / "aug_rot90.png")
    ImageEnhance.Brightness(original).enhance(1.3).save(root / "test" / "cats" / "aug_bright.jpg", quality=90)
    # an exact duplicate inside train, and the same picture under two labels
    (root / "train" / "dogs" / "dogs0_copy.png").write_bytes((root / "train" / "dogs" / "dogs0.png").read_bytes())
    (root / "train" / "cats" / "mislabelled.png").write_bytes((root / "train" / "dogs" / "dogs1.png").read_bytes())
    return root


def test_augmented_copies_across_splits_are_flagged_as_leakage(tmp_path):
    root = build_leaking_dataset(tmp_path / "leaky")
    report = audit.audit_dataset(root)
    pairs = report["duplicates"]["pairs"]
    cross = {(p["a"], p["b"]) for p in pairs if p["relation"] == "cross_split"}
    source = "train/cats/cats0.png"
    for copy in ("test/cats/aug_flip.png", "test/cats/aug_rot90.png", "test/cats/aug_bright.jpg"):
        assert (source, copy) in cross or (copy, source) in cross, copy
    assert report["verdict"]["leakage"] is True
    assert report["verdict"]["eval_images_with_train_copy"]["test"]["images"] == 3
    within = [p for p in pairs if p["relation"] == "within_split" and p["kind"] == "exact"]
    assert any({p["a"], p["b"]} == {"train/dogs/dogs0.png", "train/dogs/dogs0_copy.png"} for p in within)
    assert report["verdict"]["conflicting_label_pairs"] >= 1
    flagged = {p["a"] for p in pairs} | {p["b"] for p in pairs}
    distinct = {f"train/dogs/dogs{i}.png" for i in range(2, 6)} | {f"test/dogs/dogs{i}.png" for i in range(3)}
    assert not flagged & distinct  # no false positives among distinct images
    json.dumps(report, allow_nan=False)


def test_a_clean_dataset_is_clean(tmp_path):
    root = tmp_path / "clean"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            texture(100 * (label == "b") + i).save(root / label / f"{i}.png")
    report = audit.audit_dataset(root)
    assert report["verdict"]["clean"] and report["duplicates"]["pairs_total"] == 0


def test_flat_images_match_only_flat_images_of_the_same_colour(tmp_path, monkeypatch):
    root = tmp_path / "flat"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(7):
            texture(10 * (label == "b") + i).save(root / label / f"{i}.png")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(root / "a" / "red.png")
    Image.new("RGB", (80, 50), (30, 30, 200)).save(root / "b" / "blue.png")
    Image.new("RGB", (96, 96), (0, 0, 0)).save(root / "a" / "black.png")
    Image.new("RGB", (40, 40), (2, 1, 0)).save(root / "b" / "black_too.jpg")  # other bytes, same blank
    for k, grey in enumerate((60, 120, 180)):
        Image.new("RGB", (32, 32), (grey, grey, grey)).save(root / "a" / f"grey{k}.png")
    # Flat images never enter the hash comparison: their would-be pairs (all at distance 0)
    # cannot trip the pair limit meant for a loose threshold.
    monkeypatch.setattr(duplicates, "MAX_PAIRS", 3)
    report = audit.audit_dataset(root, val_fraction=0.0, test_fraction=0.0)
    pairs = {frozenset((p["a"], p["b"])) for p in report["duplicates"]["pairs"]}
    assert pairs == {frozenset(("a/black.png", "b/black_too.jpg"))}
    assert report["hash"]["flat_images"]["count"] == 7


def test_a_single_class_dataset_is_audited_with_a_warning(tmp_path):
    root = tmp_path / "one"
    (root / "only").mkdir(parents=True)
    for i in range(8):
        texture(i).save(root / "only" / f"{i}.png")
    report = audit.audit_dataset(root)
    assert any("training needs at least 2" in m for m in report["verdict"]["messages"])
    assert report["verdict"]["clean"] is False


def test_audit_command_prints_a_summary_and_writes_json(tmp_path, capsys):
    root = build_leaking_dataset(tmp_path / "leaky")
    (root / "train" / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "report.json"
    assert cli_main(["audit", str(root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "LEAKAGE" in text and "report written to" in text
    report = json.loads(out.read_text())
    assert report["schema_version"] == 1 and report["verdict"]["leakage_pairs"] >= 3
    assert any(c["path"] == "train/dogs/broken.jpg" for c in report["corrupt"])


def test_audit_command_on_a_missing_folder_is_one_line(tmp_path, capsys):
    assert cli_main(["audit", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
