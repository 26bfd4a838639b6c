"""Two of the newer baselines end to end through ``python -m core run`` (tiny data, cached Lite0 weights).

Integration: the lite0_home fixture builds EfficientNet-Lite0 in TensorFlow to convert its weights.
"""

import json

import pytest
from conftest import TINY_RUN, make_image_dataset

from core.artifacts import layout, naming
from core.artifacts.config import flatten
from core.cli import main as cli_main
from core.train import config
from core.train.baselines import GRIDS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method", ["ecoc_svm", "knn_nearest"])
def test_a_new_baseline_runs_end_to_end_and_records_its_choice_and_fit_time(lite0_home, tmp_path, method):
    data = make_image_dataset(tmp_path / "colours", per_class=12, seed=17)
    art = tmp_path / "art"
    sets = [f"{key}={json.dumps(value)}" for key, value in flatten(TINY_RUN).items()]
    argv = ["run", "--data", str(data), "--backbone", "EfficientNetLite0", "--preset", "quick", "--method", method,
            "--artifacts", str(art)] + [x for item in sets for x in ("--set", item)]
    assert cli_main(argv) == 0
    cfg = config.resolve(str(data), "EfficientNetLite0", "quick", {**TINY_RUN, "method": method})
    assert f"-imagenet-{method}-s0-" in cfg.run_id()
    run = layout.run_dir(layout.dataset_slug(data), cfg.backbone, cfg.run_id(), art)
    details = json.loads((run / "provenance.json").read_text())["details"]
    name, values = GRIDS[method]
    assert details["method"] == method and details["hyperparameter"] == name and details["chosen"] in values
    assert details["fit_seconds"] >= 0 and all("fit_seconds" in row for row in details["grid"])
    chosen = min(details["grid"], key=lambda row: (row["val_loss_balanced"], -row["val_balanced_accuracy"]))
    assert chosen[name] == details["chosen"] and details["chosen_by"].startswith("lowest class-balanced")
    assert details["prior_corrected"] == (method == "ecoc_svm")
    assert json.loads((run / "config.json").read_text())["method"] == method
    assert naming.run_kind(method, "imagenet") == method
