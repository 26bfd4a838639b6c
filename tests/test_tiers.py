"""The test tiers hold: the unit tier imports no TensorFlow, and every test has exactly one tier.

The first test runs this repository's unit tier in a fresh interpreter (every test module is
collected, a few fast unit tests run). The others run tests/tier_guard.py on small made-up test
files, with a stand-in ``tensorflow`` package (an empty module: importing it is what counts,
and it takes no time), to show that each way of pulling TensorFlow into the unit tier fails.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
FAST_UNIT_TESTS = ("test_gzip_size_matches_gzip_of_a_known_byte_string or test_registry_holds_the_study_backbones "
                   "or test_grid_toml_round_trips_any_dataset_path or test_set_cannot_change_what_names_the_run")


def run_pytest(cwd, *args, pythonpath=()):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), TESTS]))
    env.pop("PYTEST_ADDOPTS", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout + out.stderr


def test_the_unit_tier_collects_and_runs_without_tensorflow(tmp_path):
    code, output = run_pytest(REPO, "-m", "unit", "-q", "-k", FAST_UNIT_TESTS, "--basetemp", str(tmp_path / "t"))
    assert code == 0, output[-3000:]
    assert "4 passed" in output and "4 unit test(s) selected; TensorFlow was not imported" in output, output[-3000:]


@pytest.fixture
def sandbox(tmp_path):
    """A folder with its own pytest.ini (the tier markers), tier_guard loaded, and a stand-in TensorFlow."""
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p tier_guard --strict-markers\nmarkers =\n"
                                         "    unit: u\n    integration: i\n    browser: b\n    slow: s\n")
    (tmp_path / "stand_in" / "tensorflow").mkdir(parents=True)
    (tmp_path / "stand_in" / "tensorflow" / "__init__.py").write_text("")

    def run(files: dict, *args):
        for name, text in files.items():
            (tmp_path / name).write_text(textwrap.dedent(text))
        return run_pytest(tmp_path, "-q", "--basetemp", str(tmp_path / "t"), *args, pythonpath=[tmp_path / "stand_in"])

    return run


FINE = """
    import pytest
    pytestmark = pytest.mark.unit
    def test_fine():
        pass
"""


@pytest.mark.parametrize("leak", [
    """
    import pytest
    pytestmark = pytest.mark.unit
    def test_leak():
        import tensorflow
    """,
    """
    import pytest
    pytestmark = pytest.mark.unit
    @pytest.fixture(scope="session")
    def model():
        import tensorflow
        return tensorflow
    def test_leak(model):
        pass
    """,
], ids=["in the test", "in a session fixture"])
def test_a_unit_test_that_imports_tensorflow_fails(sandbox, leak):
    code, output = sandbox({"test_a.py": FINE, "test_b.py": leak})
    assert code == 1, output
    assert "test_b.py::test_leak is marked unit but imported TensorFlow" in output
    assert "test_b.py" in output.split("The import came from:")[-1]  # where, with the line of code


def test_a_test_module_importing_tensorflow_at_the_top_fails_even_when_only_unit_tests_run(sandbox):
    top = """
        import pytest
        import tensorflow
        pytestmark = pytest.mark.integration
        def test_model():
            pass
    """
    code, output = sandbox({"test_a.py": FINE, "test_b.py": top}, "-m", "unit")
    assert code == 1, output
    assert "1 passed, 1 deselected" in output
    assert "TensorFlow was imported collecting test_b.py" in output and "import it inside the tests" in output


def test_integration_tests_may_import_tensorflow_and_run_after_the_unit_tests(sandbox):
    heavy = """
        import pytest
        pytestmark = pytest.mark.integration
        def test_model():
            import tensorflow
    """
    # test_a.py sorts first by name, so the unit test in test_b.py runs first only because of its tier.
    code, output = sandbox({"test_a.py": heavy, "test_b.py": FINE}, "-vv")
    assert code == 0, output
    assert output.index("test_b.py::test_fine PASSED") < output.index("test_a.py::test_model PASSED")


@pytest.mark.parametrize("marks, problem", [
    ("", "1 test(s) without a tier marker"),
    ("@pytest.mark.unit\n@pytest.mark.integration\n", "1 test(s) with more than one"),
])
def test_every_test_needs_exactly_one_tier(sandbox, marks, problem):
    code, output = sandbox({"test_a.py": FINE, "test_b.py": f"import pytest\n{marks}def test_untiered():\n    pass\n"})
    assert code == pytest.ExitCode.USAGE_ERROR, output
    assert "every test needs exactly one tier marker" in output and problem in output
    assert "test_b.py::test_untiered" in output and "passed" not in output  # nothing ran
