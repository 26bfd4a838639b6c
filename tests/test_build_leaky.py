"""scripts/build_leaky_alzheimer.py: the original study's pre-augmented set, rebuilt from a tiny predefined dataset
(TensorFlow's ImageDataGenerator, so the integration tier)."""

import json
import sys
from pathlib import Path

import pytest
from conftest import make_image_dataset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))


def test_every_source_gets_its_copies_the_test_split_is_untouched_and_the_pattern_groups_them(tmp_path):
    import build_leaky_alzheimer as build

    from core.data.dataset import discover
    from core.data.groups import from_pattern

    source = make_image_dataset(tmp_path / "mri", per_class=12, layout="predefined")  # 9 train, 3 test per class
    out = tmp_path / "augmented"
    assert build.main(["--source", str(source), "--out", str(out), "--copies", "2", "--per-class", "4"]) == 0
    record = json.loads((out / "BUILD.json").read_text())
    assert record["source_images"] == {"blue": 4, "green": 4, "red": 4} and record["copies_per_image"] == 2
    assert record["images"] == {"train": 12 * 3, "test": 9}
    index = discover(str(out))
    train = sorted(r.path for r in index.records if r.split == "train")
    stems = {p.rsplit("__", 1)[0] for p in train}
    assert len(stems) == 12 and all(f"{s}__{k}.jpg" in train for s in stems for k in ("orig", "aug1", "aug2"))
    for r in (r for r in index.records if r.split == "test"):  # byte for byte
        assert (out / r.path).read_bytes() == (source / r.path).read_bytes()
    groups = from_pattern(build.GROUP_PATTERN, [r.path for r in index.records])
    assert len(set(groups.codes(train))) == 12 and groups.uncovered == 9  # one group per source; test singletons
    # The same seed makes the same set.
    again = tmp_path / "again"
    build.main(["--source", str(source), "--out", str(again), "--copies", "2", "--per-class", "4"])
    assert json.loads((again / "BUILD.json").read_text())["fingerprint"] == record["fingerprint"]
    with pytest.raises(SystemExit, match="not empty"):
        build.main(["--source", str(source), "--out", str(out)])
