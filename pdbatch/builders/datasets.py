"""Small datasets shipped with pdbatch, for examples, notebooks and tests."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

__all__ = ["reviews"]


def reviews() -> pd.DataFrame:
    """Sixty short product reviews with a hand-written sentiment label.

    Returns
    -------
    pandas.DataFrame
        Columns ``product_id``, ``category``, ``review`` and ``label``
        (``positive``, ``negative``, ``mixed`` or ``neutral``).
    """
    with files("pdbatch").joinpath("data/reviews.csv").open("rb") as fh:
        return pd.read_csv(fh, dtype="string")
