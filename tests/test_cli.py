"""The command line: bad arguments and bad paths are refused in one line, before any work (no TensorFlow).

The `run` errors that need the converted EfficientNet-Lite0 weights are in test_cli_run_errors.py.
"""

import pytest
from conftest import make_image_dataset

from core.cli import main as cli_main

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Its own pixels (seed 14), so no other test module has warmed the feature cache for it.
    return make_image_dataset(tmp_path_factory.mktemp("data") / "colours", per_class=12, seed=14)


def test_cli_error_for_missing_weights(keras_home, dataset, capsys):
    assert cli_main(["run", "--data", str(dataset), "--backbone", "VGG19"]) != 0
    err = capsys.readouterr().err
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in err and "Traceback" not in err


def test_cli_refuses_bad_seeds_and_reports_a_bad_output_path_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", "--data", str(tmp_path), "--backbone", "EfficientNetLite0", "--seed", "-1"])
    assert exit_info.value.code == 2 and "at least 0 and below 2**32" in capsys.readouterr().err
    root = make_image_dataset(tmp_path / "small", per_class=8)
    (tmp_path / "a folder").mkdir()
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "a folder")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is a folder" in err and "hashing" not in err
    (tmp_path / "a file").write_text("x")  # a file where a folder should be: one line, no traceback
    assert cli_main(["audit", str(root), "--out", str(tmp_path / "a file" / "audit.json")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: ")
