"""The backend contract (backends/base.py).

A third backend gets settings, pace, prices and pass-through by declaring them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock, get_backend, register
from pdbatch.config import backend_default
from pdbatch.errors import ConfigError


class Priced(Mock):
    """A third-party backend: a price of its own, a pace of its own, settings from configure/env."""

    name = "priced"
    poll_seconds = 0.01

    def __init__(self, *, region: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.region = region or backend_default("priced", "region") or "nowhere"

    def batch_price(self, model: str) -> tuple[float, float]:
        return (1_000_000.0, 0.0)  # a dollar per prompt token: easy to add up


@pytest.fixture
def priced():
    register("priced", Priced)
    yield
    from pdbatch.backends import _REGISTRY

    _REGISTRY.pop("priced", None)


def test_configure_sets_defaults_for_any_registered_backend(priced, monkeypatch):
    assert get_backend("priced").region == "nowhere"
    monkeypatch.setenv("PDBATCH_PRICED_REGION", "env-region")
    assert get_backend("priced").region == "env-region"
    pdbatch.configure(priced={"region": "configured"})
    assert get_backend("priced").region == "configured"
    assert get_backend("priced", region="explicit").region == "explicit"
    assert pdbatch.config.settings().vertex == {}  # the old spelling still reads


def test_configure_for_an_unknown_backend_is_refused_not_ignored():
    pdbatch.configure(vrtex={"project": "p"})
    with pytest.raises(ConfigError, match=r"configure\(vrtex=\.\.\.\) names no registered backend"):
        get_backend("mock")


def test_preview_and_max_cost_price_a_call_with_the_backends_own_price(priced):
    df = pd.DataFrame({"t": ["one two", "three"]})
    pv = df.llama.preview("{t}", backend="priced")
    assert pv.estimated_cost is not None and pv.estimated_cost > 0  # unknown to pdbatch's own table
    with pytest.raises(ConfigError, match="over max_cost"):
        df.llama.submit("{t}", backend="priced", max_cost=0.5)
    # the user's prices= still come first
    assert df.llama.preview("{t}", backend="priced", prices={"mock-chat": (0.0, 0.0)}).estimated_cost == 0
    # a local job is free: no price table needed
    assert pdbatch.backends.Local().batch_price("smollm2-135m-instruct") == (0.0, 0.0)


def test_a_backend_without_passthrough_refuses_it_by_its_declaration():
    assert Mock.accepts_passthrough is False and Mock.reserved_columns == ()
    with pytest.raises(ConfigError, match="'mock' backend cannot pass columns through"):
        pd.DataFrame({"t": ["a"]}).llama.submit("{t}", backend=Mock(), passthrough=True)
