"""Never pay twice: identical rows in a frame are sent once (the response cache: test_cache.py)."""

import numpy as np
import pandas as pd
import pytest

from pdbatch.backends import Mock


def sent_contents(mock, i=-1):
    import orjson

    return [orjson.loads(x)["body"]["messages"][-1]["content"] for x in mock.submitted[i]]


@pytest.fixture
def df():
    return pd.DataFrame({"t": ["a", "b", "a", "c", "b"]})


def test_identical_rows_are_sent_once_and_fanned_out(df):
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert sorted(sent_contents(mock)) == ["a", "b", "c"]
    assert out.response.tolist() == ["echo: a", "echo: b", "echo: a", "echo: c", "echo: b"]
    assert out.error.isna().all()


def test_embeddings_are_deduplicated_too():
    mock = Mock()
    out = pd.DataFrame({"t": ["a", "a", "b"]}).llama.embed("{t}", backend=mock, progress=False)
    assert len(mock.submitted[0]) == 2
    assert np.array_equal(out.embedding.iloc[0], out.embedding.iloc[1])
