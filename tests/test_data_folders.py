"""Which dataset folders the Train page offers and reads: allowed roots on a shared app, a scan limit everywhere."""

import os
from pathlib import Path

import pytest
from conftest import make_image_dataset

from core.data import dataset, folders
from core.errors import DatasetError, UserError

pytestmark = pytest.mark.unit

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


@pytest.fixture
def shared_roots(tmp_path, monkeypatch):
    """An allowed root with one dataset, a symlink out of it, and a dataset outside it."""
    allowed = tmp_path / "allowed"
    make_image_dataset(allowed / "colours", per_class=3)
    outside = make_image_dataset(tmp_path / "private" / "secret", per_class=3)
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv(folders.ALLOWED_ROOTS_ENV, str(allowed))
    return allowed, outside


def test_only_folders_inside_the_allowed_roots_are_offered_and_accepted(shared_roots):
    allowed, outside = shared_roots
    roots = folders.allowed_roots()
    assert roots == [allowed.resolve()]
    assert folders.dataset_choices(roots) == [str(allowed / "colours")]  # the symlink out is not offered
    assert folders.check_data_folder(allowed / "colours", roots) == (allowed / "colours").resolve()
    for bad in (outside, allowed / "escape", f"{allowed}/../private/secret", "/"):
        with pytest.raises(DatasetError, match="not allowed on this app") as info:
            folders.check_data_folder(bad, roots)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DatasetError, match="data folder not found"):
        folders.check_data_folder(allowed / "missing", roots)
    with pytest.raises(DatasetError, match="not a folder"):
        folders.check_data_folder(next((allowed / "colours" / "red").iterdir()), roots)
    with pytest.raises(DatasetError, match="not allowed"):  # refused before anything is scanned
        folders.scan_for_training(outside, roots)


def test_without_allowed_roots_any_readable_folder_is_accepted(tmp_path, monkeypatch):
    monkeypatch.delenv(folders.ALLOWED_ROOTS_ENV, raising=False)
    data = make_image_dataset(tmp_path / "anywhere", per_class=3)
    assert folders.allowed_roots() is None and folders.allowed_roots([]) is None
    assert folders.check_data_folder(data, None) == data.resolve()
    assert [str(p) for p in folders.allowed_roots(["/srv/a", "/srv/b"])] == ["/srv/a", "/srv/b"]


def test_a_scan_stops_at_the_file_limit_instead_of_walking_the_disk(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    for top in ("usr", "var"):
        for i in range(60):
            (disk / top / f"{top}{i}").mkdir(parents=True)
            (disk / top / f"{top}{i}" / "file.txt").write_text("x")
    walked = []
    real_walk = os.walk

    def counting_walk(*args, **kwargs):
        for entry in real_walk(*args, **kwargs):
            walked.append(entry[0])
            yield entry

    monkeypatch.setattr(dataset.os, "walk", counting_walk)
    with pytest.raises(DatasetError, match="stopped scanning .*more than 50 files and folders") as info:
        dataset.discover(disk, validate=False, max_files=50)
    assert "\n" not in str(info.value)
    assert len(walked) < 40  # of 122 folders
    assert len(dataset.discover(make_image_dataset(tmp_path / "ok", per_class=4), validate=False,
                                max_files=50).records) == 12
    monkeypatch.setenv(folders.SCAN_LIMIT_ENV, "20")
    with pytest.raises(DatasetError, match="more than 20"):
        folders.scan_for_training(disk, None)


@pytest.mark.parametrize("value, expected", [("", folders.DEFAULT_SCAN_LIMIT), ("1000", 1000), ("lots", None),
                                             ("0", None)])
def test_the_scan_limit_setting(monkeypatch, value, expected):
    monkeypatch.setenv(folders.SCAN_LIMIT_ENV, value)
    if expected is None:
        with pytest.raises(UserError, match=folders.SCAN_LIMIT_ENV):
            folders.scan_limit()
    else:
        assert folders.scan_limit() == expected


def _train_page(monkeypatch, tmp_path, secrets=None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("STUDY_JOBS", str(tmp_path / "jobs"))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def test_a_shared_train_page_offers_no_free_path_and_nothing_outside_its_roots(shared_roots, tmp_path, monkeypatch):
    allowed, _ = shared_roots
    at = _train_page(monkeypatch, tmp_path)
    box = next(s for s in at.selectbox if s.label == "Dataset folder")
    assert box.options == [str(allowed / "colours")]
    assert not at.text_input  # no "other…" path
    assert any("images in 3 classes" in c.value for c in at.caption)

    # The same restriction from the app's secrets, and a root with nothing in it offers nothing.
    monkeypatch.delenv(folders.ALLOWED_ROOTS_ENV)
    empty = tmp_path / "empty-root"
    empty.mkdir()
    at = _train_page(monkeypatch, tmp_path, secrets={"allowed_data_roots": [str(empty)]})
    assert any("No dataset folder under this app's allowed data roots" in i.value for i in at.info)
    assert not [s for s in at.selectbox if s.label == "Dataset folder"] and not at.text_input


def test_a_local_train_page_stops_a_scan_of_a_whole_disk_with_one_message(tmp_path, monkeypatch):
    monkeypatch.delenv(folders.ALLOWED_ROOTS_ENV, raising=False)
    monkeypatch.setenv(folders.SCAN_LIMIT_ENV, "30")
    disk = tmp_path / "disk"
    for i in range(40):
        (disk / "usr" / f"d{i}").mkdir(parents=True)
    at = _train_page(monkeypatch, tmp_path)
    next(s for s in at.selectbox if s.label == "Dataset folder").select("other…").run()
    at.text_input[0].input(str(disk)).run()
    assert not at.exception
    assert any("stopped scanning" in e.value and "more than 30" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Start training"]
    at.text_input[0].input(str(tmp_path / "nowhere")).run()
    assert any("data folder not found" in e.value for e in at.error)
