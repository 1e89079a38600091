"""Shared fixtures: every test gets its own PDBATCH_HOME, so jobs never leak between tests."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import pdbatch
from pdbatch import config

pytest_plugins = ["tests.emulators.fixtures"] if os.path.exists(
    os.path.join(os.path.dirname(__file__), "emulators", "fixtures.py")
) else []


@pytest.fixture(scope="session")
def converted_models(tmp_path_factory):
    """One folder of converted model weights for the whole run (271 MB per model)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def pdbatch_home(tmp_path, monkeypatch, converted_models):
    """A fresh jobs folder per test, and no session settings carried over.

    The 16-bit weights the local engine converts once are shared by every
    test (a link), as they are by every job of a user.
    """
    home = tmp_path / "pdbatch-home"
    home.mkdir()
    (home / "models").symlink_to(converted_models, target_is_directory=True)
    monkeypatch.setenv("PDBATCH_HOME", str(home))
    monkeypatch.delenv("PDBATCH_BACKEND", raising=False)
    config.reset()
    yield home
    config.reset()


@pytest.fixture
def reviews() -> pd.DataFrame:
    """The sixty bundled product reviews."""
    return pdbatch.datasets.reviews()
