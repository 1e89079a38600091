"""The reuse state read from an untrusted folder: a length the file gives is checked before it is used."""

import io
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


def test_a_huge_shape_in_an_older_folders_alias_npy_is_refused_without_allocating_it(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([-1, 0], dtype=np.int64))
    data = buf.getvalue()
    size = int.from_bytes(data[8:10], "little")  # format 1.0: the header's length, then the header
    header = data[10 : 10 + size].replace(b"(2,)", b"(500000000,)")  # 4 GB of int64 in a 130-byte file
    header = header.rstrip(b" \n").ljust(size - 1) + b"\n"
    (tmp_path / "alias.npy").write_bytes(data[:10] + header + data[10 + size:])
    assert peak_bytes_of(lambda: reusestate.load(tmp_path, 2, [])) < 50_000_000
    with pytest.raises(JobFolderError, match=r"alias\.npy cannot be read \(its header gives a shape of \(500000000,\)"):
        reusestate.load(tmp_path, 2, [])


def test_an_older_folders_alias_npy_of_floats_is_refused(tmp_path):
    np.save(tmp_path / "alias.npy", np.array([-1.0, 0.0]))
    with pytest.raises(JobFolderError, match=r"alias\.npy cannot be read \(it holds float64 values, not row positions"):
        reusestate.load(tmp_path, 2, [])


def test_a_damaged_reuse_state_still_counts_as_having_claimed(pdbatch_home):
    # a job whose reuse.bin is damaged may have claimed its rows: result() must release them (releasing
    # claims a job never held is harmless; keeping them makes other calls wait for answers that never come)
    import pandas as pd

    from pdbatch.backends import Mock
    from pdbatch.store import jobdir, reusestate

    job = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=Mock(), temperature=0)
    folder = jobdir.folder_for(job.id)
    assert reusestate.has_keys(folder)
    (folder / jobdir.REUSE).write_bytes(b"garbage")
    assert reusestate.has_keys(folder)
