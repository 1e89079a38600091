"""The call's record (pdbatch.call): what a bad kind= or url= is told."""

import pandas as pd
import pytest

from pdbatch.backends import Mock
from pdbatch.call import url_for
from pdbatch.errors import ConfigError


@pytest.mark.parametrize("kind", ["chats", ["chat"], {"chat": 1}, 1])
def test_a_kind_that_is_no_declared_kind_is_a_config_error_naming_kind(kind):
    with pytest.raises(ConfigError, match=r"kind=.*: use 'chat' or 'embeddings'"):
        url_for(kind, None)
    with pytest.raises(ConfigError, match=r"kind=.*: use 'chat' or 'embeddings'"):
        pd.DataFrame({"t": ["a"]}).llama.submit("{t}", backend=Mock(), kind=kind)


def test_kind_and_url_agree_or_are_refused():
    assert url_for("embeddings", None) == "/v1/embeddings" and url_for(None, None) == "/v1/chat/completions"
    with pytest.raises(ConfigError, match=r"kind='embeddings' contradicts url='/v1/chat/completions'"):
        url_for("embeddings", "/v1/chat/completions")
