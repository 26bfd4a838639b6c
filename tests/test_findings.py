"""What the Overview states before the scores: the audit's findings, the split mapping, the leaderboard's columns."""

import pytest

from core.artifacts import findings

pytestmark = pytest.mark.unit


def test_the_overview_names_leakage_and_conflicting_labels_and_points_to_the_rest():
    audit = {"verdict": {"messages": ["LEAKAGE: 3 duplicate pair(s) across splits; 2 test and 0 val image(s) have a "
                                      "copy in train", "5 duplicate pair(s) within one split",
                                      "2 duplicate pair(s) with conflicting labels", "class imbalance: largest/smallest = 4.0"]}}
    level, lines = findings.audit_findings(audit)
    assert level == "warning" and lines[0].startswith("Audit: LEAKAGE: 3 duplicate pair(s)")
    assert lines[1] == "Audit: 2 duplicate pair(s) with conflicting labels"
    assert lines[2].startswith("And 2 other findings (")
    level, lines = findings.audit_findings({"verdict": {"messages": ["class imbalance: largest/smallest = 4.0"]}})
    assert level == "info" and "no leakage across splits and no conflicting labels; 1 other finding " in lines[0]
    assert findings.audit_findings({"verdict": {"messages": []}})[0] == "clean"
    level, lines = findings.audit_findings(None)
    assert level == "none" and "No audit of this dataset is stored" in lines[0]


def test_the_split_mapping_names_each_folder_and_reads_old_split_files():
    new = {"train": "predefined: folder train/", "val": "stratified by group from train", "test": "predefined: folder val/"}
    assert findings.split_mapping_text(new) == ("train ← folder train/; val ← stratified by group from train; "
                                                "test ← folder val/")
    old = {"train": "predefined", "val": "stratified from train", "test": "predefined"}
    assert findings.split_mapping_text(old).endswith("test ← its predefined folder")
    assert findings.split_mapping_text({"train": "stratified", "val": "empty", "test": "stratified"}) == \
        "train ← stratified; test ← stratified"


def test_plurals_and_the_leaderboards_default_columns():
    assert findings.plural(1, "complete run") == "1 complete run" and findings.plural(2, "run") == "2 runs"
    columns = ["Configuration", "Seeds", "Test images", "Accuracy", "Balanced accuracy", "Leak-free balanced accuracy",
               "ECE", "int8 size (MB)", "int8 latency (ms)"]
    shown, optional = findings.leaderboard_columns(columns, "Balanced accuracy")
    assert shown == ["Configuration", "Balanced accuracy", "Leak-free balanced accuracy", "Seeds", "int8 size (MB)",
                     "int8 latency (ms)"]
    assert optional == ["Test images", "Accuracy", "ECE"]


def test_one_complete_run_is_singular():
    import pandas as pd

    from core.artifacts import report

    one = pd.DataFrame({"n_test": [20], "test_split": [20]})
    assert report.test_split_caption(one) == "1 complete run; the test split has 20 images"
