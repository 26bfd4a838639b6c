"""A real run on a dataset with known groups: a group-disjoint split, leak-free scores, group intervals."""

import copy

import pytest
from conftest import TINY_RUN
from PIL import ImageOps
from test_groups import _known_groups

from core.artifacts.records import LeakageRecord, MetricsRecord, ProvenanceRecord, SplitRecord
from core.orchestrate.run import execute
from core.train import config

pytestmark = pytest.mark.integration


def test_a_run_splits_by_group_and_scores_its_leak_free_test_images(tmp_path, lite0_home):
    from PIL import Image

    data = tmp_path / "subjects"
    truth = _known_groups(data, layout="predefined")  # subjects 0-1 of each class in test, 2-7 in train
    for c in ("a", "b"):  # one flipped copy of a training image put into test: a leak the author made
        ImageOps.mirror(Image.open(data / "train" / c / "s2_0.png")).save(data / "test" / c / "copy.png")
        truth[f"test/{c}/copy.png"] = f"{c}2"
    overrides = copy.deepcopy(TINY_RUN) | {"method": "logreg"}
    run = execute(config.resolve(str(data), "EfficientNetLite0", "quick", overrides), tmp_path / "art",
                  emit=lambda line: None)
    prov = ProvenanceRecord.load(run.path / "provenance.json")
    split = SplitRecord.load((run.path / prov.dataset["split_file"]).resolve())
    assert split.sources["val"] == "stratified by group from train" and split.grouping["source"] == "duplicates"
    sides = {}
    for item in split.items:
        sides.setdefault(truth[item["path"]], set()).add(item["split"])
    leaked = {g for g, s in sides.items() if len(s) > 1}
    assert leaked == {"a2", "b2"} and all(s == {"train", "test"} for g, s in sides.items() if g in leaked)
    leak = LeakageRecord.load(run.path / "leakage.json")
    assert leak.leaking_images == 2 and leak.subset("direct_copy")["n"] == 2
    assert leak.subset("leak_free")["n"] == leak.test_images - 2 and leak.validation == {"images": leak.validation[
        "images"], "leaking": 0}
    assert MetricsRecord.load(run.path / "metrics.json").bootstrap["unit"] == "group"
    assert "grouping" not in run.path.name  # settings are in the hash
    plain = execute(config.resolve(str(data), "EfficientNetLite0", "quick", overrides | {"grouping": "none"}),
                    tmp_path / "art", emit=lambda line: None)
    assert plain.path != run.path
    plain_split = SplitRecord.load((plain.path / ProvenanceRecord.load(plain.path / "provenance.json")
                                    .dataset["split_file"]).resolve())
    assert "grouping" not in plain_split.extra and plain_split.sources["val"] == "stratified from train"
