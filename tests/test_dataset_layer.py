"""Dataset discovery, decoding of awkward files, fingerprints and splits, on generated data."""

import io
import re

import numpy as np
import pytest
from conftest import make_image_dataset
from PIL import Image

from core.data import dataset as data
from core.data import splits
from core.errors import DatasetError, ImageDecodeError

pytestmark = pytest.mark.unit


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def test_discovers_class_folders_and_ignores_side_files(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=5)
    (root / "LICENSE.txt").write_text("licence")
    (root / ".hidden").mkdir()
    (root / "red" / ".DS_Store").write_text("x")
    index = data.discover(root)
    assert index.layout == data.LAYOUT_CLASS_FOLDERS
    assert index.classes == ["blue", "green", "red"]
    assert len(index.records) == 15 and index.skipped == []
    assert all(r.split is None and "/" in r.path for r in index.records)


def test_discovers_predefined_splits_and_keeps_them(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=8, layout="predefined")
    index = data.discover(root)
    assert index.layout == data.LAYOUT_PREDEFINED and index.splits() == ["train", "test"]
    split = splits.make_splits(index, val_fraction=0.25, seed=1)
    for path, _, s in split.items:
        if path.startswith("test/"):
            assert s == "test"  # the predefined test split is kept
        else:
            assert s in ("train", "val")  # validation is carved from train only
    counts = split.counts()
    assert all(n >= 1 for n in counts["val"].values())
    assert split.sources["val"] == "stratified from train" and split.sources["test"] == "predefined: folder test/"


def test_stratified_splits_are_deterministic_per_seed(tmp_path):
    index = data.discover(make_image_dataset(tmp_path / "ds", per_class=20))
    a = splits.make_splits(index, 0.15, 0.15, seed=42)
    b = splits.make_splits(index, 0.15, 0.15, seed=42)
    c = splits.make_splits(index, 0.15, 0.15, seed=7)
    assert a.items == b.items and a.items != c.items
    counts = a.counts()
    assert {counts["test"][k] for k in counts["test"]} == {3}  # 15% of 20 per class, stratified
    assert sum(sum(v.values()) for v in counts.values()) == 60
    assert splits.SplitAssignment.from_dict(a.to_dict()).items == a.items


def test_a_class_too_small_to_split_is_named(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=10)
    for extra in sorted((root / "blue").iterdir())[2:]:
        extra.unlink()
    index = data.discover(root)
    with pytest.raises(DatasetError, match="blue") as caught:
        splits.make_splits(index)
    assert "Add images" in str(caught.value) and "fits" not in str(caught.value)  # 2 images < 3 splits

    # The first class named is not the smallest: the suggestion must fit the smallest.
    for extra in sorted((root / "blue").iterdir()):
        extra.unlink()
    (root / "blue").rmdir()
    for extra in sorted((root / "green").iterdir())[6:]:
        extra.unlink()
    for extra in sorted((root / "red").iterdir())[4:]:
        extra.unlink()
    index = data.discover(root)
    with pytest.raises(DatasetError, match=r"'green' has only 6") as caught:
        splits.make_splits(index)
    suggested = dict(kv.split("=") for kv in re.findall(r"\w+_fraction=[\d.]+", str(caught.value).split(". ", 1)[1]))
    assert suggested == {"val_fraction": "0.25", "test_fraction": "0.25"}
    counts = splits.make_splits(index, float(suggested["val_fraction"]), float(suggested["test_fraction"])).counts()
    assert all(counts[s][c] >= 1 for s in ("train", "val", "test") for c in ("green", "red"))


def test_empty_class_and_missing_root_are_reported(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=4)
    (root / "empty").mkdir()
    index = data.discover(root)
    assert "empty" not in index.classes
    assert any("empty" in p for p in index.problems)
    with pytest.raises(DatasetError, match="not found|does not exist|no such"):
        data.discover(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError):
        data.discover(tmp_path / "flat")


def test_bad_files_are_skipped_with_a_reason(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=4)
    (root / "red" / "text.jpg").write_text("not an image at all")
    (root / "red" / "zero.png").write_bytes(b"")
    good = (root / "green" / "green_0.png").read_bytes()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "blue" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "blue" / "notes.txt").write_text("a side file inside a class folder")
    index = data.discover(root)
    skipped = dict(index.skipped)
    assert {"red/text.jpg", "red/zero.png", "blue/truncated.jpg"} <= set(skipped)
    assert "empty" in skipped["red/zero.png"]
    assert all(reason for reason in skipped.values())
    assert len(index.records) == 12 and good


def test_load_image_handles_awkward_modes(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    grey = save(tmp_path / "grey.png", rgb[..., 0])
    assert data.load_image(grey).shape == (20, 30, 3)
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    np.testing.assert_array_equal(data.load_image(save(tmp_path / "rgba.png", rgba)), rgb)
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "pal.png")
    assert data.load_image(tmp_path / "pal.png").shape == (20, 30, 3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert data.load_image(tmp_path / "cmyk.jpg").shape == (20, 30, 3)
    sixteen = (np.linspace(0, 65535, 600).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "16bit.png")
    out = data.load_image(tmp_path / "16bit.png")
    assert out.max() == 255 and out.min() == 0  # scaled by bit depth, not clipped
    assert abs(int(out[10, 15, 0]) - round(int(sixteen[10, 15]) * 255 / 65535)) <= 1


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((10, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    img.save(tmp_path / "rotated.jpg", exif=exif)
    assert data.load_image(tmp_path / "rotated.jpg").shape == (40, 10, 3)
    with pytest.raises(ImageDecodeError):
        (tmp_path / "bad.png").write_bytes(b"\x89PNG junk")
        data.load_image(tmp_path / "bad.png")


def test_fingerprint_changes_with_content_not_with_location(tmp_path):
    a = make_image_dataset(tmp_path / "a", per_class=3)
    b = make_image_dataset(tmp_path / "b", per_class=3)
    fa, fb = data.fingerprint(data.discover(a)), data.fingerprint(data.discover(b))
    assert fa == fb  # same files, another folder
    save(a / "red" / "red_0.png", np.zeros((8, 8, 3), np.uint8))
    assert data.fingerprint(data.discover(a)) != fb


def test_split_folders_are_never_read_as_classes(tmp_path):
    make_image_dataset(tmp_path / "valtest" / "val", per_class=3)
    make_image_dataset(tmp_path / "valtest" / "test", per_class=3)
    with pytest.raises(DatasetError, match="no train/ folder"):
        data.discover(tmp_path / "valtest")
    # Kaggle style: the classes are one level deeper under folders that are really splits.
    make_image_dataset(tmp_path / "kaggle" / "training_set", per_class=3)
    make_image_dataset(tmp_path / "kaggle" / "test_set", per_class=3)
    with pytest.raises(DatasetError, match="look like the classes"):
        data.discover(tmp_path / "kaggle")
    # Subfolders per class that differ between classes (one per patient, say) are just nesting.
    make_image_dataset(tmp_path / "patients" / "sick" / "p1", classes=("a",), per_class=3)
    make_image_dataset(tmp_path / "patients" / "healthy" / "p2", classes=("b",), per_class=3)
    assert data.discover(tmp_path / "patients").classes == ["healthy", "sick"]


def test_symlinked_folders_inside_a_class_are_followed_once(tmp_path):
    root = make_image_dataset(tmp_path / "ds", classes=("cat", "dog"), per_class=4)
    extra = make_image_dataset(tmp_path / "elsewhere", classes=("more",), per_class=5) / "more"
    (root / "cat" / "more").symlink_to(extra, target_is_directory=True)
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    counts = {}
    for record in data.discover(root).records:
        counts[record.label] = counts.get(record.label, 0) + 1
    assert counts == {"cat": 9, "dog": 4}


def test_a_lone_val_folder_is_the_test_split_and_validation_is_carved_from_train(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=12, layout="trainval")
    index = data.discover(root)
    split = splits.make_splits(index, seed=3)
    assert split.paths("test") == sorted(r.path for r in index.records if r.path.startswith("val/"))
    assert split.paths("val") and all(p.startswith("train/") for p in split.paths("val"))
    assert split.sources == {"train": "predefined: folder train/", "val": "stratified from train",
                             "test": "predefined: folder val/"}
    # Overridden: the first runs' reading (val/ validates, test carved from train) still reproduces.
    old = splits.make_splits(index, seed=3, val_folder="validation")
    assert old.paths("val") == split.paths("test") and all(p.startswith("train/") for p in old.paths("test"))
    assert old.sources["val"] == "predefined: folder val/" and old.sources["test"] == "stratified from train"


@pytest.mark.parametrize("layout, has", [("predefined", "its own test folder"), ("flat", "no val folder")])
def test_val_folder_test_is_refused_where_there_is_no_lone_val_folder(tmp_path, layout, has):
    index = data.discover(make_image_dataset(tmp_path / "ds", per_class=8, layout=layout))
    with pytest.raises(DatasetError, match=f"val_folder=test applies to a dataset with train/ and val/ folders only.*{has}"):
        splits.make_splits(index, val_folder="test")
    with pytest.raises(DatasetError, match="val_folder must be one of validation, test, not 'holdout'"):
        splits.make_splits(index, val_folder="holdout")


def test_split_folders_reads_the_layout_cheaply_and_never_fails(tmp_path):
    root = make_image_dataset(tmp_path / "ds", per_class=4, layout="trainval")
    (root / "val").rename(root / "validation")
    assert data.split_folders(root) == {"train": "train", "val": "validation"}
    assert data.split_folders(tmp_path / "missing") == {} and data.split_folders(tmp_path) == {}
    assert data.default_val_folder(["train", "val"]) == "test"
    assert data.default_val_folder(["train", "val", "test"]) == data.default_val_folder([]) == "validation"
