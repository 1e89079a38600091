"""The reuse state read from an untrusted folder: a length the file gives is checked before it is used."""

import tracemalloc

import numpy as np
import pytest

from pdbatch.errors import JobFolderError
from pdbatch.store import reusestate


def peak_bytes_of(call) -> int:
    """The most memory Python held while ``call`` ran (it must raise :class:`JobFolderError`)."""
    tracemalloc.start()
    try:
        with pytest.raises(JobFolderError) as info:
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert info.value.path is not None


def test_a_huge_head_length_in_reuse_bin_is_refused_without_allocating_it(tmp_path):
    reusestate.save(tmp_path, np.array([-1, 0]), {}, {"row-0": "k"})
    path = tmp_path / "reuse.bin"
    data = path.read_bytes()
    at = len(reusestate.MAGIC) + reusestate.SEAL_BYTES
    path.write_bytes(data[:at] + (2**32 - 1).to_bytes(4, "little") + data[at + 4:])  # a 4 GB head in ~100 bytes
    assert peak_bytes_of(lambda: reusestate.load(tmp_path, 2, [])) < 50_000_000
    with pytest.raises(JobFolderError, match=r"reuse\.bin is damaged \(a head of 4294967295 bytes, past the file"):
        reusestate.load(tmp_path, 2, [])
