"""Job folders: private to the user, and a damaged file is a pdbatch error that says what survives.

Which damage gives which error (each one tested below):

=====================================  ==========================  ==============================================
damage                                 call                        what the user gets
=====================================  ==========================  ==============================================
manifest.json garbage, empty, deleted  attach, ``pdbatch ...``     JobFolderError naming it + the answer files
points-to garbage                      attach (by a part's id)     JobFolderError naming it
frame.arrow deleted, truncated         result, result(partial)     JobFolderError naming it + the answer files
frame.pkl (pdbatch 0.1)                result                      JobFolderError: pass allow_pickle=True
reuse.bin garbage, cut short           result                      JobFolderError naming it
reuse.bin aliases out of range         result                      JobFolderError naming it
reuse.bin keys garbage                 result                      the answers (only the cache needed them)
alias.npy garbage (older folders)      result                      JobFolderError naming it
keys.json garbage (older folders)      result                      the answers (only the cache needed it)
status.json empty, garbage, deleted    refresh, wait, result       JobFolderError naming it + output.jsonl
status.json empty, garbage, deleted    result(partial=True)        the answers in output.jsonl
read-only job folder                   result                      the answers
read-only job folder                   wait/resume, cancel         JobFolderError: cannot write, chmod u+w
job.json garbage (dead worker)         wait, result                the job FAILED, its error names job.json
=====================================  ==========================  ==============================================
"""

from __future__ import annotations

import os
import shutil
import stat

import pandas as pd
import pytest

import pdbatch
from pdbatch import config
from pdbatch.backends import Local, Mock
from pdbatch.cli.commands import main
from pdbatch.store import trust
from pdbatch.store.cache import ResponseCache
from tests.jobs.test_reuse import as_older_folder, splice_keys
from tests.store.test_cache import read_only  # noqa: F401  (fixture)


def raises_folder_error(match: str):
    """A pdbatch error of the damaged-folder kind whose message matches (the old code raised raw errors)."""
    return pytest.raises(pdbatch.PdbatchError, match=match)


def check_folder_error(info) -> None:
    assert type(info.value).__name__ == "JobFolderError", type(info.value)


def spoil(path, how: str, garbage: bytes):
    """Delete ``path``, empty it, or fill it with ``garbage``; returns it."""
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"" if how == "empty" else garbage)
    return path


@pytest.fixture
def mock_job():
    """A finished Mock job with duplicate rows (an alias), keys to cache, and its output fetched once."""
    mock = Mock()
    df = pd.DataFrame({"t": ["a", "b", "a"]})
    job = df.llama.submit("{t}", backend=mock, temperature=0)
    job.result()  # the output is now in the job's folder
    return job.id, mock, config.home() / "jobs" / job.id


@pytest.mark.parametrize("how", ["garbage", "empty", "deleted"])
def test_a_damaged_manifest_names_itself_and_the_answers(mock_job, how, capsys):
    job_id, mock, folder = mock_job
    path = spoil(folder / "manifest.json", how, b'{"id": "x", "parts": 3')
    with raises_folder_error(r"manifest\.json (is empty|is damaged|is missing).*cannot be attached") as info:
        pdbatch.attach(job_id, backend=mock)
    check_folder_error(info)
    assert info.value.path == str(path)
    assert "pdbatch.read_predictions(" in str(info.value) and "mock-" in str(info.value)
    assert main(["results", job_id]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "Traceback" not in err


def test_a_damaged_pointer_names_itself(pdbatch_home):
    from pdbatch.store import jobdir

    pointer = jobdir.folder_for("part-2")
    pointer.mkdir(parents=True)
    (pointer / "points-to").write_text("../../etc")
    with raises_folder_error(r"points-to is damaged"):
        pdbatch.attach("part-2")


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_damaged_frame_names_itself_and_the_answers(mock_job, how):
    job_id, mock, folder = mock_job
    frame = next(folder.glob("frame.*"))
    if how == "deleted":
        frame.unlink()
    else:
        frame.write_bytes(frame.read_bytes()[:100])
    for partial in (False, True):
        with raises_folder_error(r"frame\.\w+ (is missing|is damaged).*join the answers") as info:
            pdbatch.attach(job_id, backend=mock).result(partial=partial)
        check_folder_error(info)
        assert "pdbatch.read_predictions(" in str(info.value)
    # what the message points to is indeed every answer
    answers = pdbatch.read_predictions(folder / "output")
    assert sorted(answers.response) == ["echo: a", "echo: b"]


def test_damaged_reuse_files_of_an_older_folder(mock_job):
    job_id, mock, folder = mock_job
    as_older_folder(folder)
    (folder / "keys.json").write_bytes(b"{not json")
    (folder / "cache-filled").unlink(missing_ok=True)
    out = pdbatch.attach(job_id, backend=mock).result()  # only the cache needed the keys
    assert out.response.tolist() == ["echo: a", "echo: b", "echo: a"]
    (folder / "alias.npy").write_bytes(b"\x93NUMPY garbage")
    with raises_folder_error(r"alias\.npy cannot be read.*repeat an earlier row") as info:
        pdbatch.attach(job_id, backend=mock).result()
    check_folder_error(info)


@pytest.mark.parametrize("damage, match", [
    ("garbage", r"reuse\.bin is damaged \(not a reuse file"),
    ("cut short", r"reuse\.bin is damaged \(\d+ bytes, not the \d+ its head gives\)"),
    ("alias out of range", r"reuse\.bin holds int64 values of shape \(3,\), not one row position \(-1 to 2\)"),
])
def test_a_damaged_reuse_file_names_itself(mock_job, damage, match):
    job_id, mock, folder = mock_job
    path = folder / "reuse.bin"
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x93NUMPY garbage")
    elif damage == "cut short":
        path.write_bytes(data[:-5])
    else:  # row 2 repeats row 1000 of a 3-row frame
        at = data.index(b"}", 52) + 1  # the end of the head: the alias follows, one int32 per row
        path.write_bytes(data[:at + 8] + (1000).to_bytes(4, "little") + data[at + 12:])
    with raises_folder_error(match + r".*repeat an earlier row") as info:
        pdbatch.attach(job_id, backend=mock).result()
    check_folder_error(info)
    assert info.value.path == str(path) and "pdbatch.read_predictions(" in str(info.value)


def test_damaged_keys_in_the_reuse_file_only_keep_the_answers_out_of_the_cache(mock_job):
    job_id, mock, folder = mock_job
    splice_keys(folder, b"{not json")
    (folder / "cache-filled").unlink(missing_ok=True)
    out = pdbatch.attach(job_id, backend=mock).result()  # only the cache needed the keys
    assert out.response.tolist() == ["echo: a", "echo: b", "echo: a"]


def test_everything_under_pdbatch_home_is_private_whatever_the_umask(pdbatch_home):
    old = os.umask(0)  # the most open umask: files would be 0666, folders 0777
    try:
        mock = Mock()
        df = pd.DataFrame({"t": ["a", "b", "a"]})
        df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)  # reuse.bin: alias, keys
        df.llama.submit("{t}", backend=mock, temperature=0).result()  # reuse.bin: cached lines, a `cached-` job
        pdbatch.configure(home=pdbatch_home / "fresh")  # a PDBATCH_HOME pdbatch creates itself
        df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
        with ResponseCache() as cache:  # SQLite's -wal and -shm exist while the cache is open
            cache.put_many([("key", "mock", "m", b"{}")])
            seen = assert_private(pdbatch_home, skip={pdbatch_home, pdbatch_home / "models"})
    finally:
        os.umask(old)
    assert {"jobs", "staging", "fresh", "frame.arrow", "manifest.json", "reuse.bin",
            "cache-filled", "cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"} <= seen, seen


def assert_private(home, skip=()):
    seen = set()
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(root, name)
            if path in {str(s) for s in skip} or os.path.islink(path):
                continue
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            want = 0o700 if os.path.isdir(path) else 0o600
            assert mode == want, f"{path} is {oct(mode)}, not {oct(want)}"
            seen.add(name.split(".damaged-")[0])
    return seen


# ------------------------------------------------------------ the local backend, on a real (tiny) job
@pytest.fixture(scope="module")
def finished_local_job(tmp_path_factory, converted_models):
    """One finished local job (3 rows), copied into each test's PDBATCH_HOME as users copy job folders."""
    home = tmp_path_factory.mktemp("local-job-home")
    (home / "models").symlink_to(converted_models, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PDBATCH_HOME", str(home))
        config.reset()
        df = pd.DataFrame({"t": ["Say hi.", "Say bye.", "Count to three."]})
        job = df.llama.submit("{t}", max_tokens=3, temperature=0, backend=Local(parallel=1))
        out = job.wait(timeout=600, progress=False).result()
        config.reset()
    return home / "jobs" / job.id, job.id, out.response.tolist()


@pytest.fixture
def local_job(finished_local_job, pdbatch_home):
    """The finished job in this test's PDBATCH_HOME, as if that home had run it: its secret comes along.

    (A folder copied into another home keeps its answers but feeds that home's cache nothing: see
    test_untrusted_folder.py.)
    """
    src, job_id, answers = finished_local_job
    folder = pdbatch_home / "jobs" / job_id
    shutil.copytree(src, folder, symlinks=True)
    shutil.copy2(src.parent.parent / trust.SECRET, pdbatch_home / trust.SECRET)
    return job_id, folder, answers


def set_state(folder, state: str) -> None:
    """Make the copied job look as if its worker had died while running."""
    import orjson

    st = orjson.loads((folder / "status.json").read_bytes())
    st["state"] = state
    (folder / "status.json").write_bytes(orjson.dumps(st))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["empty", "garbage", "deleted"])
def test_a_damaged_status_names_itself_and_partial_results_still_work(local_job, how):
    job_id, folder, answers = local_job
    spoil(folder / "status.json", how, b"\x00\x01 not json")
    job = pdbatch.attach(job_id)
    for call in (job.refresh, lambda: job.wait(timeout=5, progress=False), job.result):
        with raises_folder_error(r"status\.json (is empty|is damaged|is missing).*output\.jsonl") as info:
            call()
        check_folder_error(info)
        assert "pdbatch.read_predictions(" in str(info.value)
    out = job.result(partial=True)  # joined from output.jsonl, which is intact
    assert out.response.tolist() == answers and out.error.isna().all()


@pytest.mark.slow
def test_a_read_only_job_folder_still_gives_its_result(local_job, read_only):  # noqa: F811
    job_id, folder, answers = local_job
    (folder / "cache-filled").unlink()  # a copied folder whose result was never read: answers not yet cached
    read_only(folder)
    assert pdbatch.attach(job_id).result().response.tolist() == answers
    # the same backend settings as the job: the cache is keyed on the weights they run (#13)
    assert pd.DataFrame({"t": ["Say hi."]}).llama.preview("{t}", max_tokens=3, temperature=0,
                                                         backend=Local(parallel=1)).summary()[
        "cache_hits"] == 1, "the answers went into the cache all the same"


@pytest.mark.slow
def test_a_read_only_job_folder_cannot_resume_and_says_so(local_job, read_only):  # noqa: F811
    job_id, folder, answers = local_job
    set_state(folder, "JOB_STATE_RUNNING")  # its worker died; a resume would have to write
    read_only(folder)
    job = pdbatch.attach(job_id)
    for call in (lambda: job.wait(timeout=30, progress=False), job.cancel):
        with raises_folder_error(r"cannot write .*chmod u\+w") as info:
            call()
        check_folder_error(info)
    assert job.result(partial=True).response.tolist() == answers


@pytest.mark.slow
def test_a_damaged_job_json_fails_the_job_and_names_the_file(local_job):
    job_id, folder, _ = local_job
    set_state(folder, "JOB_STATE_RUNNING")
    (folder / "job.json").write_bytes(b"")
    job = pdbatch.attach(job_id).wait(timeout=300, progress=False)
    assert job.status.state == "JOB_STATE_FAILED"
    with pytest.raises(pdbatch.JobError, match=r"job\.json cannot be read"):
        job.result()


@pytest.mark.slow
def test_a_local_job_folder_is_private_whatever_the_umask(pdbatch_home):
    (pdbatch_home / "models").unlink()  # converted here, by this job's worker
    old = os.umask(0)
    try:
        df = pd.DataFrame({"t": ["Say hi.", "Say bye."]})
        job = df.llama.submit("{t}", max_tokens=3, temperature=0, backend=Local(parallel=2))
        job.wait(timeout=600, progress=False).result()
        job.cancel()  # a no-op on a finished job, but it takes the start lock
        with ResponseCache() as cache:  # SQLite's -wal and -shm exist while the cache is open
            cache.put_many([("key", "local", "m", b"{}")])
            seen = assert_private(pdbatch_home, skip={pdbatch_home})
    finally:
        os.umask(old)
    assert {"jobs", "staging", "models", "requests.jsonl", "job.json", "output.jsonl", "status.json",
            "worker.log", "worker.lock", "start.lock", "frame.arrow", "manifest.json", "reuse.bin",
            "cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"} <= seen, seen
    assert any(name.endswith(".f16.gguf") for name in seen)


@pytest.mark.parametrize(("field", "value"), [
    ("n_rows", "3"), ("n_rows", True), ("model", 7), ("kind", None), ("skipped", {"9": "out of range"}),
    ("call", []), ("options", "cache"), ("rows", {"sent": "2"}), ("backend_settings", []),
])
def test_a_manifest_field_of_the_wrong_type_is_named_damage(mock_job, field, value):
    # an edited or foreign folder: the field of the wrong type is named when the job is attached, never a
    # raw TypeError or KeyError later in result() (the old code checked only id, parts and backend)
    import orjson

    job_id, mock, folder = mock_job
    path = folder / "manifest.json"
    data = orjson.loads(path.read_bytes())
    data[field] = value
    path.write_bytes(orjson.dumps(data))
    with raises_folder_error(rf"manifest\.json is damaged.*'{field}'") as info:
        pdbatch.attach(job_id, backend=mock).result()
    check_folder_error(info)


def test_a_request_files_sibling_list_of_the_wrong_type_is_named_damage(mock_job):
    import orjson

    job_id, mock, folder = mock_job
    path = folder / "manifest.json"
    data = orjson.loads(path.read_bytes())
    data["call"]["requests"] = {"model": None, "siblings": "local-elsewhere"}
    path.write_bytes(orjson.dumps(data))
    with raises_folder_error(r"manifest\.json is damaged.*'call\.requests'") as info:
        pdbatch.attach(job_id, backend=mock)
    check_folder_error(info)
