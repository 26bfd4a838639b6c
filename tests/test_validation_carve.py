"""scripts/validation_carve.py: each class's validation images and groups for several val_fraction values, before
any run (no TensorFlow)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import make_image_dataset

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))


@pytest.fixture
def rare_class_dataset(tmp_path):
    """Predefined train/test folders; class 'rare' has 6 train images in 3 pairs of byte-identical copies."""
    root = make_image_dataset(tmp_path / "mri", classes=("common", "other"), per_class=16, layout="predefined")
    source = make_image_dataset(tmp_path / "src", classes=("rare",), per_class=8, seed=5, layout="predefined")
    shutil.copytree(source / "test" / "rare", root / "test" / "rare")
    (root / "train" / "rare").mkdir()
    for k, image in enumerate(sorted((source / "train" / "rare").glob("*.png"))[:3]):
        for copy in ("a", "b"):
            shutil.copy(image, root / "train" / "rare" / f"scan{k}_{copy}.png")
    return root


def test_validation_takes_whole_groups_and_the_table_counts_them(rare_class_dataset, tmp_path, capsys):
    import validation_carve

    rows = validation_carve.carve_table(str(rare_class_dataset), [0.2, 0.4], [0, 1], emit=lambda line: None)
    assert {(r["val_fraction"], r["split_seed"]) for r in rows} == {(f, s) for f in (0.2, 0.4) for s in (0, 1)}
    rare = [r for r in rows if r["class"] == "rare"]
    assert len(rare) == 4
    for r in rare:  # copies of one scan never straddle train and validation
        assert r["val_images"] == 2 * r["val_groups"] >= 2 and r["train_images"] == 2 * r["train_groups"] >= 2
        assert r["val_images"] + r["train_images"] == 6
    for r in (r for r in rows if r["class"] != "rare"):  # distinct images: one group each
        assert r["val_groups"] == r["val_images"] > 0 and r["train_images"] + r["val_images"] == 12

    out = tmp_path / "carve.json"
    assert validation_carve.main([str(rare_class_dataset), "--fractions", "0.2", "--seeds", "0",
                                  "--out", str(out)]) == 0
    stored = json.loads(out.read_text())
    assert len(stored["rows"]) == 3 and "rare" in capsys.readouterr().out
    # Split image by image: the copies are counted as groups of one, and may straddle.
    alone = validation_carve.carve_table(str(rare_class_dataset), [0.4], [0], {"grouping": "none"},
                                         emit=lambda line: None)
    assert all(r["val_groups"] is None for r in alone)
    assert validation_carve.main([str(rare_class_dataset), "--set", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
