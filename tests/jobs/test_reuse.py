"""Never pay twice: identical rows in a frame are sent once (the response cache: test_cache.py)."""

import numpy as np
import orjson
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


# ------------------------------------------------------------ the reuse state on disk: one file
def as_older_folder(folder) -> None:
    """Rewrite a job folder's reuse state as pdbatch wrote it before ``reuse.bin``: four files, same bytes.

    ``keys.json`` held the same JSON, ``keys.seal`` the same HMAC in hex,
    ``alias.npy`` the int64 alias, ``cached.jsonl`` the same lines.
    """
    from pdbatch.store import reusestate

    path = folder / "reuse.bin"
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    saved = reusestate.load(folder, manifest["n_rows"], [])
    if saved.alias is not None:
        np.save(folder / "alias.npy", saved.alias.astype(np.int64))
    if saved.cached is not None:
        (folder / "cached.jsonl").write_bytes(saved.cached)
    if saved.keys is not None:
        (folder / "keys.json").write_bytes(saved.keys)
    if saved.seal is not None:
        (folder / "keys.seal").write_bytes(saved.seal.hex().encode())
    path.unlink()


def splice_keys(folder, keys: bytes) -> None:
    """Put ``keys`` in place of the keys section of a folder's ``reuse.bin``, its seal left as it was (an edit)."""
    from pdbatch.store import reusestate

    path = folder / "reuse.bin"
    data = path.read_bytes()
    start = len(reusestate.MAGIC) + reusestate.SEAL_BYTES
    size = int.from_bytes(data[start : start + 4], "little")
    head = orjson.loads(data[start + 4 : start + 4 + size])
    at = start + 4 + size + head["alias"]
    rest = data[at + head["keys"] :]
    head["keys"] = len(keys)
    new_head = orjson.dumps(head)
    path.write_bytes(data[:start] + len(new_head).to_bytes(4, "little") + new_head
                     + data[start + 4 + size : at] + keys + rest)


def keys_of(folder) -> bytes:
    from pdbatch.store import reusestate

    return reusestate.load(folder, None, []).keys


def job_folder(job):
    from pdbatch import config

    return config.home() / "jobs" / job.id


def test_a_jobs_reuse_state_is_one_file_read_by_one_function(pdbatch_home):
    from pdbatch.store import reusestate

    mock = Mock()
    pd.DataFrame({"t": ["a"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    df = pd.DataFrame({"t": ["a", "b", "a", "c", "b"]})  # "a" is cached, "b" and "c" are sent, two rows repeat
    job = df.llama.submit("{t}", backend=mock, temperature=0)
    folder = job_folder(job)
    assert (folder / "reuse.bin").is_file()
    assert not {"cached.jsonl", "alias.npy", "keys.json", "keys.seal"} & {p.name for p in folder.iterdir()}
    saved = reusestate.load(folder, len(df), [])
    assert saved.alias.tolist() == [-1, -1, 0, -1, 1]
    assert [orjson.loads(line)["custom_id"] for line in saved.cached.splitlines()] == ["row-0"]
    assert sorted(orjson.loads(saved.keys)) == ["row-1", "row-3"]
    assert saved.seal is not None and len(saved.seal) == reusestate.SEAL_BYTES
    assert reusestate.has_keys(folder)
    out = job.result()
    assert out.response.tolist() == ["echo: a", "echo: b", "echo: a", "echo: c", "echo: b"]
    assert out.attrs["pdbatch_rows"] == {"rows": 5, "sent": 2, "merged": 1, "cached": 2, "skipped": 0}
    later = pd.DataFrame({"t": ["b", "c"]}).llama.preview("{t}", backend=mock, temperature=0).summary()
    assert later["cache_hits"] == 2  # the sealed keys fed the cache
    # a job with nothing to send keeps its cached lines in the same file, and claimed no key
    again = df.llama.submit("{t}", backend=mock, temperature=0)
    assert again.id.startswith("cached-") and not reusestate.has_keys(job_folder(again))
    assert again.result().response.tolist() == out.response.tolist()


def test_a_folder_written_the_old_way_still_loads_and_feeds_the_cache(pdbatch_home):
    from pdbatch.store import reusestate

    mock = Mock()
    pd.DataFrame({"t": ["a"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    df = pd.DataFrame({"t": ["a", "b", "a", "c", "b"]})
    job = df.llama.submit("{t}", backend=mock, temperature=0)
    folder = job_folder(job)
    as_older_folder(folder)
    assert {"cached.jsonl", "alias.npy", "keys.json", "keys.seal"} <= {p.name for p in folder.iterdir()}
    assert reusestate.has_keys(folder)
    saved = reusestate.load(folder, len(df), [])
    assert saved.alias.tolist() == [-1, -1, 0, -1, 1] and saved.seal is not None
    import pdbatch

    out = pdbatch.attach(job.id, backend=mock).result()
    assert out.response.tolist() == ["echo: a", "echo: b", "echo: a", "echo: c", "echo: b"]
    later = pd.DataFrame({"t": ["b", "c"]}).llama.preview("{t}", backend=mock, temperature=0).summary()
    assert later["cache_hits"] == 2  # its keys.seal still verifies: this home wrote it


def test_a_large_reuse_state_keeps_its_alias_compact(pdbatch_home, tmp_path):
    from pdbatch.store import reusestate

    n = 200_000
    alias = np.full(n, -1, dtype=np.int64)
    alias[1::2] = np.arange(0, n, 2)  # every other row repeats the one before it
    keys = {f"row-{i}": f"{i:064x}" for i in range(0, n, 2)}
    cached = {0: b'{"custom_id": "row-0", "response": {}}'}
    reusestate.save(tmp_path, alias, cached, keys)
    size = (tmp_path / "reuse.bin").stat().st_size
    assert size < 4 * n + len(orjson.dumps(keys)) + 200  # 4 bytes a row for the alias, the keys, a short head
    saved = reusestate.load(tmp_path, n, [])
    assert np.array_equal(saved.alias, alias) and saved.seal is None  # not sealed until submitted
    assert orjson.loads(saved.keys) == keys and saved.cached == cached[0] + b"\n"
