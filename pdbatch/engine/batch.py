"""The token batch handed to ``llama_decode``, filled from numpy instead of item by item.

``llama_batch_init`` gives each token its own one-element sequence-id array;
filling one token at a time through ctypes costs about a microsecond per
field, several milliseconds per prompt chunk. Here every field is a numpy
array owned by Python, and each token's sequence-id pointer points into a
fixed array of the ids ``0..n_seq-1``, so a whole chunk is written with a few
vectorised assignments. The struct is never passed to ``llama_batch_free``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np


class TokenBatch:
    """A ``llama_batch`` of up to ``capacity`` tokens for sequences ``0..n_seq-1``.

    Parameters
    ----------
    lib : module
        ``llama_cpp.llama_cpp`` (the ctypes bindings).
    capacity : int
        Most tokens one ``llama_decode`` call carries.
    n_seq : int
        Number of sequence ids in use.
    """

    def __init__(self, lib: Any, capacity: int, n_seq: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        self._ids = np.arange(n_seq, dtype=np.int32)
        self._id_ptr = np.zeros(capacity, dtype=np.uintp)  # token i -> &self._ids[seq of i]
        self.raw = lib.llama_batch()
        self.raw.n_tokens = 0
        self.raw.token = self.token.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.raw.embd = None
        self.raw.pos = self.pos.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.raw.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.raw.seq_id = ctypes.cast(self._id_ptr.ctypes.data, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)))
        self.raw.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))

    def set_prompts(self, parts: Sequence[tuple[Sequence[int], int, int]], logits: bool = True) -> None:
        """Prompt pieces ``(tokens, first position, sequence)``, one after the other.

        With ``logits``, each piece's last token gets its logits computed.
        """
        n = 0
        self.logits[: sum(len(p[0]) for p in parts)] = 0
        for tokens, start, seq in parts:
            k = len(tokens)
            self.token[n : n + k] = tokens
            self.pos[n : n + k] = np.arange(start, start + k, dtype=np.int32)
            self._id_ptr[n : n + k] = self._ids.ctypes.data + 4 * seq
            n += k
            self.logits[n - 1] = logits
        self.raw.n_tokens = n

    def set_next(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int]) -> None:
        """One token for each of several sequences, all with logits (a decoding step)."""
        n = len(tokens)
        self.token[:n] = tokens
        self.pos[:n] = positions
        self._id_ptr[:n] = self._ids.ctypes.data + 4 * np.asarray(seqs, dtype=np.uintp)
        self.logits[:n] = 1
        self.raw.n_tokens = n


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the start ``a`` and ``b`` share, at most ``limit``."""
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n
