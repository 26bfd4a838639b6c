"""Shared test set-up: keep every test away from the user's real Keras cache."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache: HOME and KERAS_HOME point into tmp_path."""
    home = tmp_path / "home"
    (home / ".keras" / "models").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))
    return home / ".keras" / "models"
