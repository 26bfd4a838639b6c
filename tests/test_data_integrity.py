"""Bad dataset folders (issue #15): symbolic links that loop or leave their class, unreadable folders and
files, a one-class dataset. Each gives a clear line and the rest of the dataset, never a traceback or a hang."""

import errno
import os

import pytest
from conftest import make_image_dataset

from core.cli import main as cli_main
from core.data import audit
from core.data import dataset as data
from core.data.prepare import prepare_data
from core.errors import DatasetError
from core.train import config as config_mod

pytestmark = pytest.mark.unit

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads files whatever their permissions


def labels(index):
    counts = {}
    for record in index.records:
        counts[record.label] = counts.get(record.label, 0) + 1
    return counts


def flowers(tmp_path, per_class=3, name="flowers"):
    return make_image_dataset(tmp_path / name, classes=("daisy", "roses"), per_class=per_class)


def test_a_link_back_to_the_dataset_root_is_skipped_not_trained_on(tmp_path):
    root = flowers(tmp_path, per_class=8)
    (root / "daisy" / "loop").symlink_to("..", target_is_directory=True)
    index = data.discover(root)
    # Before: the link was followed and the 8 roses images were read a second time, labelled daisy.
    assert labels(index) == {"daisy": 8, "roses": 8}
    reason = dict(index.skipped)["daisy/loop"]
    assert "symbolic link to an enclosing folder" in reason
    # `run` says so: the data step names the skipped link and its reason.
    lines = []
    prepare_data(config_mod.resolve(str(root), "EfficientNetLite0", "quick"), lines.append)
    assert any("daisy/loop" in line and "enclosing folder" in line for line in lines)


@pytest.mark.parametrize("make_link, skipped", [
    (lambda root: (root / "daisy" / "stolen.png").symlink_to("../roses/roses_0.png"), "daisy/stolen.png"),
    (lambda root: (root / "daisy" / "more").symlink_to("../roses", target_is_directory=True), "daisy/more"),
    (lambda root: (root / "daisy" / "up").symlink_to(root.parent, target_is_directory=True), "daisy/up"),
    (lambda root: (root / "kitty").symlink_to("daisy", target_is_directory=True), "kitty"),
    (lambda root: (root / "everything").symlink_to(".", target_is_directory=True), "everything"),
])
def test_links_into_the_dataset_or_up_from_it_are_skipped_with_the_reason(tmp_path, make_link, skipped):
    root = flowers(tmp_path)
    make_link(root)
    index = data.discover(root)
    assert labels(index) == {"daisy": 3, "roses": 3}
    assert skipped in dict(index.skipped) and "symbolic link" in dict(index.skipped)[skipped]


def test_a_split_folder_linking_to_another_split_is_skipped(tmp_path):
    root = make_image_dataset(tmp_path / "ds", classes=("cat", "dog"), per_class=8, layout="predefined")
    (root / "test" / "cat").rename(tmp_path / "old_test_cat")
    (root / "test" / "cat").symlink_to("../train/cat", target_is_directory=True)  # test images = train images
    index = data.discover(root)
    assert not any(r.split == "test" and r.label == "cat" for r in index.records)
    assert "another part of the dataset ('train/cat')" in dict(index.skipped)["test/cat"]
    assert "class 'cat' has no images in the test split" in index.problems


def test_a_link_within_its_own_class_is_read_once_from_the_real_file(tmp_path):
    root = flowers(tmp_path)
    (root / "daisy" / "alias.png").symlink_to("daisy_0.png")
    index = data.discover(root)
    assert labels(index) == {"daisy": 3, "roses": 3}
    assert "inside its own class folder" in dict(index.skipped)["daisy/alias.png"]


def test_links_out_of_the_dataset_are_followed_once(tmp_path):
    root = flowers(tmp_path)
    pool = make_image_dataset(tmp_path / "pool", classes=("extra",), per_class=2) / "extra"
    (root / "daisy" / "a").symlink_to(pool, target_is_directory=True)
    (root / "daisy" / "b").symlink_to(pool, target_is_directory=True)
    (root / "roses" / "single.png").symlink_to(pool / "extra_0.png")
    index = data.discover(root)
    assert labels(index) == {"daisy": 5, "roses": 4}
    assert "read already ('daisy/a')" in dict(index.skipped)["daisy/b"]


def test_link_loops_and_dangling_links_neither_hang_nor_traceback(tmp_path, capsys):
    root = flowers(tmp_path)
    os.symlink("b", root / "daisy" / "a")
    os.symlink("a", root / "daisy" / "b")
    os.symlink("y.jpg", root / "daisy" / "x.jpg")
    os.symlink("x.jpg", root / "daisy" / "y.jpg")
    os.symlink("nowhere.png", root / "roses" / "gone.png")
    os.symlink("tulips2", root / "tulips1")  # a loop at the class-folder level (before: OSError traceback)
    os.symlink("tulips1", root / "tulips2")
    index = data.discover(root)
    assert labels(index) == {"daisy": 3, "roses": 3}
    skipped = dict(index.skipped)
    for name in ("daisy/a", "daisy/b", "daisy/x.jpg", "daisy/y.jpg", "tulips1", "tulips2"):
        assert skipped[name] == "broken symbolic link (a loop of links)"
    assert skipped["roses/gone.png"] == "broken symbolic link (its target does not exist)"
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "audit.json")]) == 0
    out = capsys.readouterr()
    assert "daisy/x.jpg: broken symbolic link" in out.out and "Traceback" not in out.err


def test_a_pipe_named_like_an_image_is_skipped_not_read(tmp_path):
    root = flowers(tmp_path)
    os.mkfifo(root / "daisy" / "pipe.png")  # reading it would block the audit for ever
    index = data.discover(root, validate=False)
    assert "not a regular file" in dict(index.skipped)["daisy/pipe.png"]


def _deny_listing(monkeypatch, *names):
    """os.scandir refuses the folders called ``names``, as it does for a chmod-000 folder."""
    real = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) in names:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_class_folder_is_called_unreadable(tmp_path, monkeypatch):
    root = flowers(tmp_path)
    _deny_listing(monkeypatch, "roses")
    index = data.discover(root)
    assert labels(index) == {"daisy": 3}
    # Before: "class folder 'roses' has no usable images".
    assert index.problems == ["class folder 'roses' is unreadable (Permission denied); the class is ignored"]
    assert dict(index.skipped)["roses"] == "unreadable folder (Permission denied)"


def test_an_unreadable_dataset_folder_is_one_line(tmp_path, monkeypatch, capsys):
    root = flowers(tmp_path)
    _deny_listing(monkeypatch, "flowers")
    with pytest.raises(DatasetError, match=r"flowers is unreadable \(Permission denied\)"):
        data.discover(root)
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert "unreadable (Permission denied)" in err and "Traceback" not in err


def test_unreadable_image_files_are_called_unreadable(tmp_path, monkeypatch):
    root = flowers(tmp_path)
    real = data.Image.open

    def image_open(fp, *args, **kwargs):
        if "roses" in str(fp):
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(data.Image, "open", image_open)
    index = data.discover(root)
    assert labels(index) == {"daisy": 3}
    problem, = index.problems
    assert problem.startswith("class folder 'roses' has no usable images: 3 unreadable (e.g. roses/roses_0.png: "
                              "unreadable file (Permission denied))")


@pytest.mark.skipif(AS_ROOT, reason="root reads folders and files whatever their permissions")
def test_chmod_000_folder_and_file_are_unreadable(tmp_path):
    root = flowers(tmp_path)
    (root / "daisy" / "daisy_0.png").chmod(0)
    (root / "roses").chmod(0)
    try:
        index = data.discover(root)
        assert "class folder 'roses' is unreadable (Permission denied); the class is ignored" in index.problems
        assert dict(index.skipped)["daisy/daisy_0.png"].startswith("unreadable file")
    finally:
        (root / "roses").chmod(0o755)


def test_audit_summary_says_a_one_class_dataset_cannot_be_trained(tmp_path, capsys):
    root = make_image_dataset(tmp_path / "one", classes=("only",), per_class=8)
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "audit.json")]) == 0
    out = capsys.readouterr().out
    # Before: only the JSON's verdict said so; the printed summary did not.
    assert "Warning: 1 class folder(s) with images; training needs at least 2" in out
    assert audit.too_few_classes(["only"]) in out
