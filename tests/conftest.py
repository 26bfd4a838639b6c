"""Shared test set-up: keep every test away from the user's real Keras cache.

Every change to the environment goes through a fixture that undoes it afterwards
(``monkeypatch``, or ``pytest.MonkeyPatch.context()`` in a session-scoped fixture).
The test tiers (unit, integration, browser) are enforced by ``tier_guard``.
"""

import os

import pytest

pytest_plugins = ["tier_guard"]


@pytest.fixture(scope="session", autouse=True)
def quiet_tensorflow():
    """TensorFlow's C++ INFO and WARNING logs off for the session (and its subprocesses), unless set already."""
    with pytest.MonkeyPatch.context() as patch:
        if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
            patch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        yield


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache: HOME and KERAS_HOME point into tmp_path."""
    home = tmp_path / "home"
    (home / ".keras" / "models").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))
    return home / ".keras" / "models"


def make_image_dataset(root, classes=("red", "green", "blue"), per_class=12, size=48, seed=0, layout="flat"):
    """A small class-per-folder PNG dataset whose classes differ in colour (learnable)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    palette = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200)]
    root = Path(root)
    for c, name in enumerate(classes):
        for i in range(per_class):
            split = ""
            if layout == "predefined":
                split = "test/" if i % 4 == 0 else "train/"
            elif layout == "trainval":  # train/ and val/ folders only
                split = "val/" if i % 4 == 0 else "train/"
            folder = root / f"{split}{name}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(rng.normal(0, 40, (size, size, 3)) + np.array(palette[c % len(palette)]), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}_{i}.png")
    return root


@pytest.fixture(scope="session")
def lite0_home(tmp_path_factory):
    """A Keras cache holding converted EfficientNet-Lite0 weights, shared by the session.

    Sets HOME and KERAS_HOME (also for subprocesses) and a fresh feature cache.
    """
    home = tmp_path_factory.mktemp("lite0home")
    models = home / ".keras" / "models"
    models.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:  # restored when the session ends
        patch.setenv("HOME", str(home))
        patch.setenv("KERAS_HOME", str(home / ".keras"))
        patch.setenv("STUDY_CACHE", str(home / "cache"))
        from core.models import efficientnet_lite

        efficientnet_lite.convert_weights("EfficientNetLite0", models)
        yield home


TINY_RUN = {"input_size": 64, "augment": {"views": 1}, "max_train_per_class": None, "max_eval_per_class": None,
            "stage1": {"epochs": 3}, "stage2": {"epochs": 1}, "scratch": {"epochs": 1}, "batch_size": 16}


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory, lite0_home):
    """A real artifacts folder made by the product's own code: two datasets, runs, audit, comparison.

    colours also has a second seed of its network run, and a backbone whose ImageNet
    weights are missing (recorded by an experiment, architecture measured).
    """
    import copy

    from core.data import audit
    from core.deploy import measure as deploy
    from core.evaluate.compare import compare_dataset
    from core.orchestrate import experiment
    from core.orchestrate.experiment import run_experiment
    from core.orchestrate.run import execute
    from core.train import config

    base = tmp_path_factory.mktemp("study")
    art = base / "artifacts"
    colours = make_image_dataset(base / "data" / "colours", per_class=12)
    shades = make_image_dataset(base / "data" / "shades", classes=("dark", "light"), per_class=12, seed=3,
                                layout="predefined")
    for data in (colours, shades):
        for method in ("finetune", "logreg"):
            overrides = copy.deepcopy(TINY_RUN)
            overrides["method"] = method
            execute(config.resolve(str(data), "EfficientNetLite0", "quick", overrides), art, emit=lambda line: None)
        audit.write_report(audit.audit_dataset(data), art / data.name / "audit.json")
    execute(config.resolve(str(colours), "EfficientNetLite0", "quick", {**copy.deepcopy(TINY_RUN), "seed": 1}), art,
            emit=lambda line: None)
    for data in (colours, shades):
        compare_dataset(art / data.name)
    grid = base / "waiting.toml"
    grid.write_text(f'artifacts = "{art}"\n[[grid]]\ndatasets = ["{colours}"]\nbackbones = ["MobileNetV3Small"]\n'
                    'preset = "quick"\ndeploy = true\nset = { "input_size" = 64 }\n')
    real = deploy.deploy_architecture
    with pytest.MonkeyPatch.context() as patch:  # two real variants instead of the full plan (minutes)
        patch.setattr(experiment, "deploy_architecture",  # the name the experiment calls
                      lambda *a, **k: real(*a, **{**k, "only": ["keras", "tflite_float32"]}))
        assert run_experiment(grid, emit=lambda line: None) == 0
    return art
