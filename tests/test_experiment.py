"""Experiment files (grids): parsing, mistakes reported in one line, round trips (no TensorFlow).

Grids that run, record and dry-run real runs are in test_experiment_runs.py.
"""

import pytest

pytestmark = pytest.mark.unit


def test_grid_deploy_must_be_a_boolean(tmp_path):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError, match="'deploy' must be true or false"):
        parse_grid('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\ndeploy = "yes"\n')
    runs, _ = parse_grid('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nseeds = [0, 1]\n'
                         '[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\ndeploy = true\n')
    assert [r.deploy for r in runs] == [False, False, True]


def test_grid_toml_round_trips_any_dataset_path(tmp_path):
    from core.orchestrate.experiment import grid_toml, parse_grid

    odd = str(tmp_path / '🌸 flowers "v2" \\ back\tslash')
    text = grid_toml(tmp_path / "art ✓", [odd], ["EfficientNetLite0"], "imagenet", 3, "quick",
                     {"stage1.epochs": 4, "augment.views": 0})
    runs, artifacts = parse_grid(text, "test")
    assert artifacts == str(tmp_path / "art ✓") and len(runs) == 1
    cfg = runs[0].config
    assert cfg.dataset == odd and cfg.seed == 3 and cfg.stage1.epochs == 4 and cfg.augment.views == 0


@pytest.mark.parametrize("text, message", [
    ('artifact = "x"\n[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', "unknown top-level keys: artifact"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nseeds = 3\n', "'seeds' must be a list"),
    ('[[grid]]\ndatasets = "d"\nbackbones = ["EfficientNetLite0"]\n', "'datasets' must be a list"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nset = "stage1.epochs=5"\n', "'set' must be a table"),
    ('[[grid]]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\nset = { seed = 9 }\n', "cannot change 'seed'"),
    ('[grid]\ndatasets = ["d"]\nbackbones = ["EfficientNetLite0"]\n', r"\[\[grid\]\]"),
])
def test_experiment_files_with_mistakes_get_one_clear_error(text, message):
    from core.errors import UserError
    from core.orchestrate.experiment import parse_grid

    with pytest.raises(UserError, match=message):
        parse_grid(text, "test.toml")
