"""The response cache: what it answers and when; a damaged one is moved aside, and no answer is lost.

Its keys' agreement with the request file's payloads (the fast path): test_scale.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.cli.commands import main
from pdbatch.store import cache as response_cache
from tests.jobs.test_reuse import df as _df
from tests.jobs.test_reuse import sent_contents

df = _df  # the same five rows (two repeated) as tests/jobs/test_reuse.py

# (looked up, so that on code without it these tests fail on what they test, not on an import)
PdbatchWarning = getattr(pdbatch.errors, "PdbatchWarning", UserWarning)


# ------------------------------------------------------------ what it answers
def test_cache_answers_a_rerun_without_a_job(df):
    mock = Mock()
    first = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    again = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert len(mock.submitted) == 1, "nothing new: nothing submitted"
    pd.testing.assert_frame_equal(first, again)
    more = pd.concat([df, pd.DataFrame({"t": ["d"]})], ignore_index=True)
    out = more.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert sent_contents(mock) == ["d"], "only the new row is sent"
    assert out.response.tolist()[-2:] == ["echo: b", "echo: d"]
    job = df.llama.submit("{t}", backend=mock, temperature=0)
    assert job.id.startswith("cached-") and job.state == "JOB_STATE_SUCCEEDED"
    assert job.result().response.tolist() == first.response.tolist()
    assert pdbatch.attach(job.id, backend=mock).result().response.tolist() == first.response.tolist()


def test_cache_keys_include_backend_model_and_body(df):
    mock = Mock()
    df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    df.llama.batch_predict("{t}", backend=mock, temperature=0, max_tokens=5, progress=False)
    df.llama.batch_predict("{t}", backend=mock, model="other", temperature=0, progress=False)
    df.llama.batch_predict("{t}!", backend=mock, temperature=0, progress=False)
    assert len(mock.submitted) == 4


def test_sampling_without_seed_is_not_cached_unless_asked(df):
    mock = Mock()
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, progress=False)
    assert len(mock.submitted[-1]) == 5, "duplicates are real samples: all sent"
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, progress=False)
    assert len(mock.submitted) == 2
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, seed=3, progress=False)
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, seed=3, progress=False)
    assert len(mock.submitted) == 3, "a seed makes it reproducible"
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, cache="always", progress=False)
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, cache="always", progress=False)
    assert len(mock.submitted) == 4
    df.llama.batch_predict("{t}", backend=mock, temperature=0, cache=False, progress=False)
    assert len(mock.submitted[-1]) == 5


def test_failures_are_not_cached_and_cache_can_be_cleared(df):
    mock = Mock(fail=lambda cid, body: "boom" if body["messages"][-1]["content"] == "c" else None)
    out = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert out.error.tolist()[3] == "boom"
    df.llama.batch_predict("{t}", backend=Mock(), temperature=0, progress=False)
    assert response_cache.clear(backend="mock") == 3
    with response_cache.ResponseCache() as c:
        assert c.count() == 0


def test_backends_without_a_cache_identity_keep_their_keys():
    # an empty identity adds nothing: a backend that declares none keys its rows as before identities existed
    from pdbatch.store.cache import RowKeys

    body = {"model": "m", "messages": [{"role": "user", "content": ""}], "temperature": 0}
    plain = RowKeys("vertex", "m", "/v1/chat/completions", body, "text")
    assert RowKeys("vertex", "m", "/v1/chat/completions", body, "text", {}).key("x") == plain.key("x")
    assert RowKeys("vertex", "m", "/v1/chat/completions", body, "text", {"weights": "w"}).key("x") != plain.key("x")


class _Weights(Mock):
    """A mock whose answers depend on a setting, as the local backend's depend on its weights."""

    def __init__(self, weights: str = "a", **kw):
        super().__init__(**kw)
        self.weights = weights

    def cache_identity(self, model, kind):
        return {"weights": self.weights}


def test_settings_in_the_cache_identity_never_share_answers(df):
    first = _Weights("a")
    df.llama.batch_predict("{t}", backend=first, temperature=0, progress=False)
    assert df.llama.preview("{t}", backend=_Weights("a"), temperature=0).n_cached == 3
    other = _Weights("b")
    assert df.llama.preview("{t}", backend=other, temperature=0).n_cached == 0
    df.llama.batch_predict("{t}", backend=other, temperature=0, progress=False)
    assert sorted(sent_contents(other)) == ["a", "b", "c"]


# ------------------------------------------------------------ damaged
def damage(path, how: str) -> bytes | None:
    """Damage the cache file the way a crash, a sync tool or a mistake would; returns what is left."""
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{path}{extra}"):
            os.remove(f"{path}{extra}")
    if how == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("a folder where the cache file was")
        return None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00garbage" * 500)
    return path.read_bytes()


def set_aside(home):
    return sorted(p for p in home.iterdir() if p.name.startswith("cache.sqlite3.damaged-")
                  and not p.name.endswith(("-wal", "-shm")))


@pytest.mark.parametrize("how", ["truncated", "garbage", "directory"])
def test_a_damaged_cache_is_set_aside_and_every_answer_still_returned(pdbatch_home, how):
    df = pd.DataFrame({"t": [f"row {i}" for i in range(300)] + ["row 0"]})
    mock = Mock()
    first = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    answered = df.llama.submit("{t}", backend=mock, temperature=0)  # every row from the cache: no job sent
    assert answered.id.startswith("cached-") and len(mock.submitted) == 1
    unremembered = pd.DataFrame({"t": ["new"]}).llama.submit("{t}", backend=mock, temperature=0)
    db = pdbatch_home / "cache.sqlite3"
    left = damage(db, how)

    with pytest.warns(PdbatchWarning, match="response cache") as caught:
        # a finished job's answers come from its folder: the cache is not needed for them
        assert pdbatch.attach(answered.id, backend=mock).result().response.tolist() == first.response.tolist()
        assert pdbatch.attach(unremembered.id, backend=mock).result().response.tolist() == ["echo: new"]
        again = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
        pv = df.llama.preview("{t}", backend=mock, temperature=0)
        response_cache.clear()
    messages = [str(w.message) for w in caught if issubclass(w.category, PdbatchWarning)]
    [kept] = set_aside(pdbatch_home)
    assert len(messages) == 1, "warned once"
    assert str(db) in messages[0] and str(kept) in messages[0] and "No answer is lost" in messages[0]
    assert again.response.tolist() == first.response.tolist()
    assert pv.summary()["rows"] == len(df)
    # kept as it was, for whoever wants to look at it
    assert (kept / "inside").exists() if left is None else kept.read_bytes() == left
    # and a new cache goes on working
    pd.DataFrame({"t": ["x"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    n = len(mock.submitted)
    pd.DataFrame({"t": ["x"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert len(mock.submitted) == n, "answered by the new cache"


def test_the_cli_goes_on_with_a_damaged_cache(pdbatch_home, tmp_path, capsys):
    table = tmp_path / "in.csv"
    pd.DataFrame({"t": ["a", "b"]}).to_csv(table, index=False)
    assert main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "--temperature", "0", "-q"]) == 0
    damage(pdbatch_home / "cache.sqlite3", "garbage")
    capsys.readouterr()
    with pytest.warns(PdbatchWarning, match="is damaged"):
        assert main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "--temperature", "0", "-q"]) == 0
        assert main(["cache", "clear"]) == 0
    assert "echo: b" in capsys.readouterr().out


@pytest.fixture
def read_only(pdbatch_home):
    """Make paths unwritable, even for root (chattr +i); undone after the test."""
    made = []

    def freeze(path):
        if os.geteuid() == 0:
            if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
                pytest.skip("running as root without chattr +i: nothing can be made read-only")
        else:
            os.chmod(path, 0o500 if path.is_dir() else 0o400)
        made.append(path)

    yield freeze
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        else:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


def test_a_cache_that_cannot_be_written_is_skipped_with_one_warning(pdbatch_home, read_only):
    mock = Mock()
    df = pd.DataFrame({"t": ["a", "b"]})
    df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    with response_cache.ResponseCache() as c:  # leave no -wal/-shm that SQLite would need to recreate
        c._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    read_only(pdbatch_home / "cache.sqlite3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            out = pd.DataFrame({"t": ["c"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
            assert out.response.tolist() == ["echo: c"]
    messages = [str(w.message) for w in caught if issubclass(w.category, PdbatchWarning)]
    assert len(messages) == 1 and "cannot be used" in messages[0] and "goes on without it" in messages[0]
    assert not set_aside(pdbatch_home), "a sound cache is never moved"


#: Another process asks for SQLite's shared lock bytes on the cache file (SQLite's os_unix.c: SHARED_FIRST
#: = PENDING_BYTE + 2 = 0x40000002, SHARED_SIZE = 510): "held" while a connection of ours holds its read lock.
_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002)
    print("free")
except OSError:
    print("held")
"""


def test_a_second_cache_in_one_process_keeps_the_first_ones_lock(pdbatch_home):
    # Closing any descriptor of a file drops every POSIX lock the process holds on it. A second cache
    # opened (and the file opened and closed to make it private) while a first one is in use took the
    # first's shared lock away; another process closing its last connection then removed the WAL from
    # under it, and the first found the cache "malformed" and moved it aside (seen with two notebooks
    # sending the same rows: tests/jobs/test_claims.py).
    import sys

    with response_cache.ResponseCache() as first:
        assert first.use(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0], None) == "wal"

        def probe() -> str:
            return subprocess.run([sys.executable, "-c", _PROBE, str(first.path)], capture_output=True,
                                  text=True, check=True).stdout.strip()

        assert probe() == "held"
        with response_cache.ResponseCache():
            assert probe() == "held", "opening a second cache dropped the first one's lock"
