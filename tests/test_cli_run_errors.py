"""`python -m core run` errors in one line, with the converted EfficientNet-Lite0 weights in place.

Integration: the lite0_home fixture builds EfficientNet-Lite0 in TensorFlow to convert its weights.
"""

import pytest
from conftest import make_image_dataset

from core.cli import main as cli_main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Its own pixels (seed 13), so no other test module has warmed the feature cache for it.
    return make_image_dataset(tmp_path_factory.mktemp("data") / "colours", per_class=12, seed=13)


@pytest.mark.parametrize("args, message", [
    (["--backbone", "ResNet9000"], "known backbones"),
    (["--data", "/nonexistent/folder"], "not found"),
])
def test_cli_errors_are_one_line(lite0_home, dataset, capsys, args, message):
    base = {"--data": str(dataset), "--backbone": "EfficientNetLite0"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["run"] + [x for kv in base.items() for x in kv]
    assert cli_main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_error_for_a_class_too_small_to_split(lite0_home, tmp_path, capsys):
    data = make_image_dataset(tmp_path / "d", per_class=6)
    for extra in list((data / "blue").iterdir())[1:]:
        extra.unlink()
    assert cli_main(["run", "--data", str(data), "--backbone", "EfficientNetLite0", "--artifacts", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "blue" in err and "Traceback" not in err


def test_cli_reports_a_full_disk(lite0_home, dataset, tmp_path, capsys, monkeypatch):
    import errno

    import core.orchestrate.run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(core.orchestrate.run, "execute", full)  # the CLI imports it when the command runs
    monkeypatch.setenv("STUDY_ARTIFACTS", str(tmp_path / "art"))  # never the repository's artifacts/
    assert cli_main(["run", "--data", str(dataset), "--backbone", "EfficientNetLite0"]) == 3
    assert "disk is full" in capsys.readouterr().err
