"""Each kind is declared once (pdbatch.lines.kinds): its url maps back to it, its columns are what a result gains."""

import pandas as pd
import pytest

from pdbatch.lines.kinds import KINDS
from pdbatch.models import kind_of_url
from pdbatch.results.join import join_results
from pdbatch.results.parse import parse_lines


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_kind_declares_its_url_and_the_columns_its_result_gains(kind):
    declared = KINDS[kind]
    assert kind_of_url(declared.url) == kind
    frame = pd.DataFrame({"text": ["a", "b"]})
    out = join_results(frame, parse_lines([]), kind=kind)
    assert list(out.columns) == ["text", *declared.columns]
    assert declared.columns[-1] == "error" and out["error"].notna().all()  # no answer: each row says why
