"""Groups of near-copies, group-disjoint splits, leak-free subsets and the cluster bootstrap."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from core.artifacts.records import LeakageRecord
from core.cli import main as cli_main
from core.data import dataset as data
from core.data import groups
from core.data.duplicates import find_duplicates
from core.data.splits import make_splits
from core.errors import DatasetError, UserError
from core.evaluate import metrics
from core.evaluate.leakage import rescore_dataset, score_leakage

pytestmark = pytest.mark.unit


def _pattern(rng, size=128):
    """A smooth random picture: distinct ones are far apart in pHash, copies of one are close."""
    small = rng.integers(60, 190, (12, 12)).astype(np.uint8)
    return Image.fromarray(small).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def _known_groups(root: Path, classes=("a", "b"), subjects=8, seed=0, layout="flat") -> dict[str, str]:
    """Per class ``subjects`` groups: an image with augmented copies (flip, rotation, brightness), or
    "adjacent slices" (one picture drifting a little per slice). Returns path -> true group."""
    rng = np.random.default_rng(seed)
    truth = {}
    for c in classes:
        for s in range(subjects):
            base = _pattern(rng)
            if s % 2:
                versions = [base, ImageOps.mirror(base), base.rotate(90), ImageEnhance.Brightness(base).enhance(1.1)]
            else:  # adjacent slices: the picture drifts a little towards another one, slice by slice
                other = _pattern(rng)
                versions = [Image.blend(base, other, 0.07 * k) for k in range(4)]
            for v, im in enumerate(versions):
                split = ("test/" if s < 2 else "train/") if layout == "predefined" else ""
                rel = f"{split}{c}/s{s}_{v}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                im.save(root / rel)
                truth[rel] = f"{c}{s}"
    return truth


def _duplicate_grouping(root: Path) -> tuple[data.DatasetIndex, groups.Grouping]:
    index = data.discover(root)
    scan = find_duplicates(index)
    return index, groups.from_pairs([r.path for r in index.records], scan.ii, scan.jj, scan.dd, "test")


def test_duplicate_groups_recover_copies_and_slices_and_no_split_cuts_a_group(tmp_path):
    truth = _known_groups(tmp_path)
    index, grouping = _duplicate_grouping(tmp_path)
    found = {}
    for path, gid in grouping.group_of.items():
        found.setdefault(gid, set()).add(truth[path])
    assert all(len(true_ids) == 1 for true_ids in found.values())  # no group joins two subjects
    assert len(found) == len(set(truth.values()))  # every subject is one group
    for seed in range(5):
        split = make_splits(index, 0.25, 0.25, seed=seed, grouping=grouping)
        side = {}
        for path, label, s in split.items:
            side.setdefault(truth[path], set()).add(s)
        assert all(len(s) == 1 for s in side.values()), f"seed {seed} cut a group"
        assert {s for _, _, s in split.items} == {"train", "val", "test"}
        assert all(split.groups[p] == grouping.group_of[p] for p, _, _ in split.items)
        assert split.sources["test"] == "stratified by group"
    assert split.grouping["summary"]["groups"] == 16 and split.grouping["summary"]["largest"]["size"] == 4


def test_without_groups_the_image_by_image_split_is_unchanged_and_cuts_groups(tmp_path):
    truth = _known_groups(tmp_path)
    index = data.discover(tmp_path)
    plain = make_splits(index, 0.25, 0.25, seed=3)
    assert plain.groups is None and "group" not in plain.to_dict()["items"][0]
    assert make_splits(index, 0.25, 0.25, seed=3, grouping=groups.singletons([r.path for r in index.records])).items \
        == plain.items
    sides = {}
    for path, _, s in plain.items:
        sides.setdefault(truth[path], set()).add(s)
    assert any(len(s) > 1 for s in sides.values())  # the leak the groups exist to prevent


def test_predefined_test_is_kept_val_is_carved_by_group_and_regroup_resplits(tmp_path):
    truth = _known_groups(tmp_path, layout="predefined")
    index, grouping = _duplicate_grouping(tmp_path)
    kept = make_splits(index, 0.25, 0.15, seed=0, grouping=grouping)
    assert kept.sources == {"train": "predefined: folder train/", "val": "stratified by group from train",
                            "test": "predefined: folder test/"}
    assert [p for p, _, s in kept.items if s == "test"] == [r.path for r in index.records if r.split == "test"]
    regrouped = make_splits(index, 0.25, 0.25, seed=0, grouping=grouping, policy="regroup")
    assert regrouped.sources["test"] == "stratified by group (predefined folders ignored)"
    sides = {}
    for path, _, s in regrouped.items:
        sides.setdefault(truth[path], set()).add(s)
    assert all(len(s) == 1 for s in sides.values())
    with pytest.raises(DatasetError, match="split_policy"):
        make_splits(index, grouping=grouping, policy="shuffle")


def test_a_class_in_too_few_groups_is_refused_with_the_way_out(tmp_path):
    _known_groups(tmp_path, classes=("a",), subjects=4)
    rng = np.random.default_rng(9)
    base = _pattern(rng)
    for v in range(8):  # class b: one subject only
        (tmp_path / "b").mkdir(exist_ok=True)
        ImageEnhance.Brightness(base).enhance(1 + v / 100).save(tmp_path / "b" / f"x{v}.png")
    index, grouping = _duplicate_grouping(tmp_path)
    with pytest.raises(DatasetError, match=r"class 'b' has its 8 image\(s\) in only 1 group.*grouping=none"):
        make_splits(index, 0.2, 0.2, grouping=grouping)


def test_leaking_and_direct_copies_on_a_hand_made_case():
    grouping = groups.Grouping("duplicates", "", {"t1": "g", "t2": "g", "tr": "g", "t3": "t3", "v": "h", "t4": "h"},
                               links=[("t1", "tr", 3), ("t1", "t2", 2), ("v", "t4", 1)])
    items = [("tr", "x", "train"), ("v", "x", "val"), ("t1", "x", "test"), ("t2", "x", "test"),
             ("t3", "x", "test"), ("t4", "x", "test")]
    paths = ["t1", "t2", "t3", "t4"]
    assert grouping.leaking(items, paths).tolist() == [True, True, False, True]  # t2 leaks through the chain
    assert grouping.direct_copies(items, paths).tolist() == [True, False, False, True]
    assert groups.Grouping("csv", "", {}).direct_copies(items, paths) is None


def test_leak_free_scores_on_a_hand_computed_case():
    # 6 test images: the 3 leaking ones are all right, of the 3 others 1 is right.
    y = np.array([0, 0, 1, 1, 0, 1])
    right = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    leaking = np.array([True, True, True, False, False, False])
    record = score_leakage(y, right, ["a", "b"], np.array([0, 0, 1, 2, 3, 4]), leaking, None, {"source": "test"},
                           "test", n_bootstrap=200)
    assert record.test_images == 6 and record.test_groups == 5 and record.leaking_images == 3
    assert record.subset("all")["accuracy"] == pytest.approx(4 / 6)
    assert record.subset("leak_free")["accuracy"] == pytest.approx(1 / 3) and record.subset("leak_free")["n"] == 3
    assert record.subset("leaking")["accuracy"] == 1.0 and record.subset("leaking")["groups"] == 2
    assert "direct_copy" not in record.subsets
    assert record.subset("all")["bootstrap"]["unit"] == "group"
    assert LeakageRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_cluster_bootstrap_resamples_whole_groups():
    rng = np.random.default_rng(0)
    weights = metrics._resample_weights(rng, 5, 400, np.array([0, 0, 0, 1, 2]))
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert set(np.unique(weights[:, :3].sum(axis=1) / 3)) <= {0.0, 1.0, 2.0, 3.0}
    # Two groups of 20, one all right and one all wrong: a resample is 0, 0.5 or 1 correct.
    y = np.zeros(40, int)
    probs = np.tile([[0.9, 0.1]], (40, 1))
    probs[20:] = [0.1, 0.9]
    by_group = metrics.evaluate(y, probs, ["a", "b"], groups=np.repeat([0, 1], 20), n_bootstrap=300)
    by_image = metrics.evaluate(y, probs, ["a", "b"], n_bootstrap=300)
    acc_g, acc_i = by_group["bootstrap"]["metrics"]["accuracy"], by_image["bootstrap"]["metrics"]["accuracy"]
    assert by_group["bootstrap"]["unit"] == "group" and by_group["bootstrap"]["units"] == 2
    assert acc_g["low"] == 0.0 and acc_g["high"] == 1.0
    assert 0.25 < acc_i["low"] < 0.5 < acc_i["high"] < 0.75
    # Every image its own group: exactly the image bootstrap.
    same = metrics.evaluate(y, probs, ["a", "b"], groups=np.arange(40), n_bootstrap=300)
    assert same["bootstrap"] == by_image["bootstrap"]


def test_groups_from_a_csv_file_and_a_path_pattern(tmp_path):
    paths = ["train/a/p1_1.png", "train/a/p1_2.png", "test/a/p2_1.png", "test/b/other.png"]
    file = tmp_path / "groups.csv"
    file.write_text("path,group\ntrain/a/p1_1.png,P1\n./train/a/p1_2.png,P1\ntest/a/p2_1.png,P2\nnot/there.png,P9\n")
    g = groups.from_csv(file, paths)
    assert g.group_of["train/a/p1_1.png"] == g.group_of["train/a/p1_2.png"] != g.group_of["test/a/p2_1.png"]
    assert g.uncovered == 1 and g.group_of["test/b/other.png"] == "test/b/other.png" and "3 of 4 rows" in g.detail
    p = groups.from_pattern(r"/(p\d+)_", paths)
    assert p.group_of["train/a/p1_1.png"] == p.group_of["train/a/p1_2.png"] == "id:p1" and p.uncovered == 1


@pytest.mark.parametrize("content, message", [
    ("file,id\na,b\n", "header 'path,group'"),
    ("path,group\nnope.png,1\n", "no path in the groups file"),
    ("path,group\ntrain/a/x.png\n", "line 2: expected 'path,group'"),
    (b"path,group\n\xff\xfe,1\n", "not UTF-8"),
])
def test_a_bad_groups_file_is_one_clear_line(tmp_path, content, message):
    file = tmp_path / "g.csv"
    file.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message):
        groups.from_csv(file, ["train/a/x.png"])


@pytest.mark.parametrize("value, message", [
    ("regex:(unclosed", "not a regular expression"), ("csv:", "grouping must be one of"),
    ("subjects", "grouping must be one of"), ("regex:zzz", "matches no image path"),
])
def test_a_bad_grouping_setting_is_one_clear_line(value, message):
    with pytest.raises(UserError, match=message):
        kind, arg = groups.parse_grouping(value)
        groups.from_pattern(arg, ["a/1.png"])


def test_a_chain_that_swallows_a_class_is_reported_with_its_weakest_links():
    paths = [f"a/{i}.png" for i in range(10)] + [f"b/{i}.png" for i in range(10)]
    labels = {p: p[0] for p in paths}
    chain = np.arange(5)  # a/0 ~ a/1 ~ ... ~ a/5: 6 of 10 images of class a
    g = groups.from_pairs(paths, chain, chain + 1, np.array([3, 4, 22, 5, 6]), "test")
    summary = g.summary(labels)
    assert summary["largest"]["size"] == 6 and summary["images_in_groups_of_2_or_more"] == 6
    assert summary["sizes"]["1"] == 14 and summary["sizes"]["6-10"] == 1
    (chained,) = summary["chaining"]
    assert chained["class"] == "a" and chained["share_of_class"] == 0.6
    assert chained["weakest_links"][0] == {"a": "a/2.png", "b": "a/3.png", "distance": 22}
    (message,) = groups.chaining_messages(summary)
    assert "60% of class 'a'" in message and "a/2.png ~ a/3.png (distance 22)" in message


def test_leakage_command_scores_stored_runs_and_refuses_other_images(tmp_path, capsys):
    folder = tmp_path / "ds"
    run = folder / "Net" / "full-imagenet-s0-x"
    run.mkdir(parents=True)
    (folder / "splits").mkdir()
    items = [{"path": "train/a/1.png", "label": "a", "split": "train"},
             {"path": "test/a/2.png", "label": "a", "split": "test"},
             {"path": "test/b/3.png", "label": "b", "split": "test"},
             {"path": "train/b/4.png", "label": "b", "split": "train"}]
    split = {"schema_version": 1, "seed": 42, "val_fraction": 0.15, "test_fraction": 0.15,
             "layout": "predefined_splits", "sources": {}, "dataset_fingerprint": "f" * 64, "items": items}
    (folder / "splits" / "s.json").write_text(json.dumps(split))
    (run / "provenance.json").write_text(json.dumps({
        "schema_version": 1, "code": {}, "libraries": {}, "machine": {},
        "dataset": {"fingerprint": "f" * 64, "split_file": "../../splits/s.json"}}))
    (run / "predictions.csv").write_text("id,true,pred,p_a,p_b\ntest/a/2.png,a,a,0.9,0.1\ntest/b/3.png,b,a,0.6,0.4\n")
    (run / "complete.json").write_text(json.dumps({"schema_version": 1, "completed_at": "now"}))
    with pytest.raises(UserError, match="audit the dataset first"):
        rescore_dataset(folder)
    audit = {"schema_version": 1, "created_at": "t", "dataset": {"fingerprint": "f" * 64}, "tool": "test",
             "split": {}, "counts": {}, "corrupt": [], "skipped": [], "imbalance": {}, "timings_s": {}, "verdict": {},
             "hash": {"threshold": 24, "bits": 256},
             "duplicates": {"clusters": [{"members": [{"path": "train/a/1.png"}, {"path": "test/a/2.png"}]}],
                            "pairs": [{"a": "train/a/1.png", "b": "test/a/2.png", "distance": 4}]}}
    (folder / "audit.json").write_text(json.dumps(audit))
    assert cli_main(["leakage", str(folder)]) == 0
    record = LeakageRecord.load(run / "leakage.json")
    assert record.leaking_images == 1 and record.subset("leak_free")["accuracy"] == 0.0
    assert record.subset("direct_copy")["n"] == 1 and record.grouping["audit_created_at"] == "t"
    audit["dataset"]["fingerprint"] = "e" * 64
    (folder / "audit.json").write_text(json.dumps(audit))
    assert cli_main(["leakage", str(folder)]) == 0
    assert "made from other images than the audit" in capsys.readouterr().out


def test_paired_bootstrap_of_two_runs_respects_groups():
    a = np.ones(40, bool)
    assert metrics.paired_bootstrap(a, a)["p_value"] == 1.0
    # b is wrong on 8 images: as 8 separate images that is a clear difference; as one group of
    # 8 slices of a single scan among 33 groups, one draw of that group more or less decides it.
    b = a.copy()
    b[:8] = False
    by_image = metrics.paired_bootstrap(a, b, n_resamples=2000)
    codes = np.concatenate([np.zeros(8, int), np.arange(1, 33)])
    by_group = metrics.paired_bootstrap(a, b, codes, n_resamples=2000)
    assert by_image["difference"] == by_group["difference"] == pytest.approx(0.2)
    assert by_image["unit"] == "image" and by_group["unit"] == "group" and by_group["units"] == 33
    assert by_image["p_value"] < 0.01 and by_image["low"] > 0.05
    assert by_group["low"] == 0.0 and by_group["p_value"] > 0.05
    with pytest.raises(ValueError, match="same non-zero length"):
        metrics.paired_bootstrap(a, a[:3])


def test_a_dataset_is_scanned_for_near_copies_once_per_process_while_its_files_are_unchanged(tmp_path, monkeypatch):
    import os

    from conftest import make_image_dataset

    from core.data import prepare

    root = make_image_dataset(tmp_path / "colours", per_class=4, seed=3)
    monkeypatch.setattr(prepare, "_SCANS", {})
    scans = []
    real = prepare.find_duplicates
    monkeypatch.setattr(prepare, "find_duplicates", lambda index, threshold: scans.append(1) or real(index, threshold))
    index = data.discover(root)
    first, shas = prepare.duplicate_groups(index, 24, lambda line: None)
    first.group_of["intruder"] = "x"  # a caller changing its copy does not change the next one's
    again, shas_again = prepare.duplicate_groups(data.discover(root), 24, lambda line: None)
    assert len(scans) == 1 and "intruder" not in again.group_of and shas_again == shas
    prepare.duplicate_groups(index, 20, lambda line: None)  # another threshold: scanned
    touched = root / index.records[0].path
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    prepare.duplicate_groups(data.discover(root), 24, lambda line: None)  # a file changed: scanned again
    assert len(scans) == 3
