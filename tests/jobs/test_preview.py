"""preview: what a call would send and cost, before anything is sent; max_rows and max_cost."""

import pandas as pd
import pytest

from pdbatch.backends import Mock
from pdbatch.errors import ConfigError


@pytest.fixture
def df():
    return pd.DataFrame({"t": ["a", "b", "a", "c", "b"]})


def test_preview_counts_without_submitting(df):
    mock = Mock()
    pv = df.llama.preview("Say {t}", backend=mock, temperature=0, max_tokens=10)
    assert mock.submitted == []
    s = pv.summary()
    assert (s["rows"], s["requests"], s["duplicates"], s["cache_hits"]) == (5, 3, 2, 0)
    assert len(pv.requests) == 3 and pv.requests.body.iloc[0]["messages"][0]["content"] == "Say a"
    assert pv.token_counts.startswith("estimate") and pv.prompt_tokens.notna().all()
    assert pv.estimated_cost is None and "unknown" in repr(pv) and "<table" in pv._repr_html_()
    df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert df.llama.preview("{t}", backend=mock, temperature=0).summary()["cache_hits"] == 3


def test_preview_cost_and_limits(df):
    mock = Mock()
    prices = {"mock-chat": (1.0, 2.0)}
    pv = df.llama.preview("{t}", backend=mock, max_tokens=100, prices=prices, cache=False)
    tokens = int(pv.prompt_tokens.sum())
    assert pv.estimated_cost == pytest.approx((tokens * 1.0 + 5 * 100 * 2.0) / 1e6)
    with pytest.raises(ConfigError, match="over max_cost"):
        df.llama.batch_predict("{t}", backend=mock, max_tokens=100, prices=prices, max_cost=1e-6, progress=False)
    with pytest.raises(ConfigError, match="no price is known"):
        df.llama.batch_predict("{t}", backend=mock, max_cost=1.0, progress=False)
    with pytest.raises(ConfigError, match="over max_rows=2"):
        df.llama.batch_predict("{t}", backend=mock, max_rows=2, cache=False, progress=False)
    assert mock.submitted == []
    ok = df.llama.batch_predict("{t}", backend=mock, max_rows=3, temperature=0, progress=False)
    assert ok.error.isna().all()


def test_vertex_price_table_is_half_the_online_price():
    from pdbatch.pricing import ONLINE_PRICES, batch_price

    online = ONLINE_PRICES["llama-3.1-405b-instruct-maas"]
    assert batch_price("meta/llama-3.1-405b-instruct-maas") == tuple(p / 2 for p in online)
    assert batch_price("unknown-model") is None
    assert batch_price("unknown-model", {"unknown-model": (1, 2)}) == (1, 2)
