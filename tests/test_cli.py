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


def one_error_line(capsys) -> str:
    """The single stderr line of a refused command (no traceback, nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("setting, message", [
    ("batch_size=100000", "setting 'batch_size' is 100000; allowed: 1 to 1024"),
    ("head_dropout=1.5", "setting 'head_dropout' is 1.5; allowed: at least 0 and below 1"),
    ("stage1.optimizer=bogus", "setting 'stage1.optimizer' is 'bogus'; allowed: adam, sgd, rmsprop"),
    ("stage1.learning_rate=NaN", "setting 'stage1.learning_rate' is nan; allowed: above 0 and at most 1"),
    ("input_size=8", "setting 'input_size' is 8; allowed: 32 to 1024"),
    ("scratch.epochs=0", "setting 'scratch.epochs' is 0; allowed: 1 to 1000 (a network run trains at least 1 epoch)"),
])
def test_run_refuses_a_bad_setting_before_making_a_run_folder(dataset, tmp_path, capsys, setting, message):
    argv = ["run", "--data", str(dataset), "--backbone", "EfficientNetLite0", "--weights", "none",
            "--artifacts", str(tmp_path / "art"), "--set", setting]
    assert cli_main(argv) == 2
    assert one_error_line(capsys) == f"error: {message}\n"
    assert not (tmp_path / "art").exists()


def test_run_with_both_stages_at_zero_epochs_is_refused(dataset, tmp_path, capsys):
    argv = ["run", "--data", str(dataset), "--backbone", "EfficientNetLite0", "--artifacts", str(tmp_path / "art"),
            "--set", "stage1.epochs=0", "--set", "stage2.epochs=0"]
    assert cli_main(argv) == 2
    assert "'stage1.epochs' and 'stage2.epochs' are both 0" in one_error_line(capsys)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("x"), "is a file, not a folder"),
    (lambda p: p.mkdir(), "no class folders found"),
    (lambda p: (p / "cats").mkdir(parents=True), "no usable images found"),
    (lambda p: None, "data folder not found"),
])
def test_run_says_what_is_wrong_with_the_data_path_before_making_a_run_folder(tmp_path, capsys, make, message):
    make(tmp_path / "data")
    argv = ["run", "--data", str(tmp_path / "data"), "--backbone", "EfficientNetLite0", "--weights", "none",
            "--artifacts", str(tmp_path / "art")]
    assert cli_main(argv) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "art").exists()


def test_audit_checks_its_output_folder_before_the_audit(tmp_path, capsys):
    root = make_image_dataset(tmp_path / "small", per_class=4)
    (tmp_path / "a file").write_text("x")
    for out, message in ((tmp_path / "missing" / "dir" / "x.json", "does not exist"),
                         (tmp_path / "a file" / "x.json", "is a file, not a folder")):
        assert cli_main(["audit", str(root), "--out", str(out)]) == 2
        assert message in one_error_line(capsys)  # no progress lines: the audit did not start
    assert not (tmp_path / "missing").exists()


def test_report_and_compare_refuse_a_missing_artifacts_folder_or_dataset(tmp_path, capsys):
    (tmp_path / "a file").write_text("x")
    for argv, message in (
            (["report", "--artifacts", str(tmp_path / "nonexistent")], "artifacts folder not found"),
            (["report", "--artifacts", str(tmp_path / "a file")], "artifacts folder is a file, not a folder"),
            (["compare", "flowers", "--artifacts", str(tmp_path / "nonexistent")], "artifacts folder not found")):
        assert cli_main(argv) == 2
        assert message in one_error_line(capsys)
    (tmp_path / "art").mkdir()
    assert cli_main(["compare", "flowers", "--artifacts", str(tmp_path / "art")]) == 2
    assert "no results for 'flowers'" in one_error_line(capsys)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert cli_main(["report", "--readme", str(readme), "--artifacts", str(tmp_path / "art")]) == 2
    assert "has no results markers" in one_error_line(capsys)
    assert readme.read_text() == "# no markers\n"


def test_deploy_architecture_refuses_an_input_size_the_backbone_cannot_take(tmp_path, capsys):
    argv = ["deploy", "--architecture", "EfficientNetLite0", "--input-size", "8", "--out", str(tmp_path / "arch")]
    assert cli_main(argv) == 2
    assert one_error_line(capsys) == "error: input size is 8; EfficientNetLite0 takes 32 to 1024 pixels\n"
    assert not (tmp_path / "arch").exists()
