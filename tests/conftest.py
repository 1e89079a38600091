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


@pytest.fixture(autouse=True)
def pdbatch_home(tmp_path, monkeypatch):
    """A fresh jobs folder per test, and no session settings carried over."""
    home = tmp_path / "pdbatch-home"
    monkeypatch.setenv("PDBATCH_HOME", str(home))
    monkeypatch.delenv("PDBATCH_BACKEND", raising=False)
    config.reset()
    yield home
    config.reset()


@pytest.fixture
def reviews() -> pd.DataFrame:
    """The sixty bundled product reviews."""
    return pdbatch.datasets.reviews()
