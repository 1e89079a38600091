"""A job folder from elsewhere is untrusted input (#21).

Folders get copied, shared, synced and unpacked (tar keeps symbolic links).
Whatever such a folder holds, it may give its own ``result()``, but it never
changes a later call's answers (the response cache), never writes or chmods
a file outside ``PDBATCH_HOME``, and never puts markup into the notebook.
"""

from __future__ import annotations

import os
import shutil
import stat
import warnings

import orjson
import pandas as pd
import pytest

import pdbatch
from pdbatch import config
from pdbatch.backends import Local, Mock
from pdbatch.backends.base import JobStatus
from pdbatch.cli.commands import main
from pdbatch.display.reporter import JobLabel
from pdbatch.display.widget import status_html
from pdbatch.errors import JobFolderError, PdbatchWarning
from pdbatch.store import jobdir
from tests.jobs.test_reuse import as_older_folder, keys_of, splice_keys
from tests.store.test_cache import read_only  # noqa: F401  (fixture)

PROMPTS = ["Say hi.", "Say bye.", "Count to three."]
SETTINGS = {"max_tokens": 3, "temperature": 0}
MARKUP = "<img src=x onerror=alert(1)>"
SECRET = "seal.key"  # pdbatch.store.trust.SECRET: the home's signing secret


def cache_hits(prompts, backend) -> int:
    """How many of ``prompts`` a call would answer from the cache (nothing is run)."""
    settings = {"temperature": 0} if isinstance(backend, Mock) else SETTINGS
    return pd.DataFrame({"t": prompts}).llama.preview("{t}", backend=backend, **settings).summary()["cache_hits"]


def outside_file(tmp_path, content: bytes = b"precious\nhalf a line", mode: int = 0o755):
    """A file outside PDBATCH_HOME that a link in a job folder points to; returns it and its (content, mode)."""
    path = tmp_path / "outside" / "script.sh"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)
    os.chmod(path.parent, 0o755)
    return path, snapshot(path)


def snapshot(path):
    st = os.stat(path)
    return path.read_bytes(), stat.S_IMODE(st.st_mode), stat.S_IMODE(os.stat(path.parent).st_mode), \
        sorted(os.listdir(path.parent))


# ------------------------------------------------------------ 1. cache poisoning, fast (Mock)
def test_a_copied_folder_with_other_keys_feeds_the_cache_nothing_and_warns_once(pdbatch_home):
    mock = Mock()
    first = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=mock, temperature=0)
    other = pd.DataFrame({"t": ["x", "y"]}).llama.submit("{t}", backend=mock, temperature=0)
    # the attack: a copy of the first job under a new name, holding the keys of the other job's rows, so that
    # the first job's answers ("echo: a") would be cached as the answers to "x" and "y"
    copy = pdbatch_home / "jobs" / "mock-copy"
    shutil.copytree(config.home() / "jobs" / first.id, copy)
    splice_keys(copy, keys_of(config.home() / "jobs" / other.id))
    (copy / "cache-filled").unlink(missing_ok=True)
    job = pdbatch.attach("mock-copy", backend=mock)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert job.result().response.tolist() == ["echo: a", "echo: b"]  # its result still works
        job.result()
    out = pd.DataFrame({"t": ["x", "y"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert out.response.tolist() == ["echo: x", "echo: y"]  # not "echo: a", "echo: b"
    assert [str(w.message) for w in seen if issubclass(w.category, PdbatchWarning)] == [
        f"the answers of job {first.id} are not put into the response cache: {copy} does not carry this "
        f"PDBATCH_HOME's signature for it (a job folder copied from another home or under another name, edited, "
        f"or written by a pdbatch older than 2026-12). Its result is not affected; identical rows of later calls "
        f"are sent again rather than answered from this folder."]  # said once


def test_a_copied_folder_of_an_older_pdbatch_feeds_the_cache_nothing(pdbatch_home):
    mock = Mock()
    first = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=mock, temperature=0)
    other = pd.DataFrame({"t": ["x", "y"]}).llama.submit("{t}", backend=mock, temperature=0)
    copy = pdbatch_home / "jobs" / "mock-copy"
    shutil.copytree(config.home() / "jobs" / first.id, copy)
    as_older_folder(copy)  # keys.json and keys.seal, as before reuse.bin
    (copy / "keys.json").write_bytes(keys_of(config.home() / "jobs" / other.id))
    with pytest.warns(PdbatchWarning, match="not put into the response cache"):
        assert pdbatch.attach("mock-copy", backend=mock).result().response.tolist() == ["echo: a", "echo: b"]
    assert cache_hits(["x", "y"], mock) == 0


def test_a_reuse_file_copied_whole_from_another_job_feeds_the_cache_nothing(pdbatch_home):
    mock = Mock()
    job = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=mock, temperature=0)
    other = pd.DataFrame({"t": ["x", "y"]}).llama.submit("{t}", backend=mock, temperature=0)
    folder = config.home() / "jobs" / job.id
    # the other job's keys with their own valid seal: bound to the other folder and job, so it does not verify here
    shutil.copy(config.home() / "jobs" / other.id / "reuse.bin", folder / "reuse.bin")
    with pytest.warns(PdbatchWarning, match="not put into the response cache"):
        job.result()
    assert cache_hits(["x", "y"], mock) == 0


def test_keys_edited_in_the_original_folder_feed_the_cache_nothing(pdbatch_home):
    mock = Mock()
    job = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=mock, temperature=0)
    other = pd.DataFrame({"t": ["x", "y"]}).llama.submit("{t}", backend=mock, temperature=0)
    folder = config.home() / "jobs" / job.id
    splice_keys(folder, keys_of(config.home() / "jobs" / other.id))
    with pytest.warns(PdbatchWarning, match="not put into the response cache"):
        job.result()
    assert cache_hits(["x", "y"], mock) == 0
    # and the untouched other job does feed it
    other.result()
    assert cache_hits(["x", "y"], mock) == 2


def test_the_home_secret_is_private_and_made_once(pdbatch_home):
    mock = Mock()
    pd.DataFrame({"t": ["a"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    secret = pdbatch_home / SECRET
    before = secret.read_bytes()
    assert len(before) == 32 and stat.S_IMODE(secret.stat().st_mode) == 0o600
    pd.DataFrame({"t": ["b"]}).llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert secret.read_bytes() == before
    assert cache_hits(["a", "b"], mock) == 2


# ------------------------------------------------------------ 3. chmod and writes through a link (Mock)
@pytest.mark.parametrize("where", ["output", "output/file"])
def test_a_link_in_the_download_folder_is_refused_and_nothing_outside_changes(pdbatch_home, tmp_path, where):
    mock = Mock()
    job = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=mock, temperature=0)
    job.result()
    folder = config.home() / "jobs" / job.id
    script, before = outside_file(tmp_path)
    shutil.rmtree(folder / "output")
    if where == "output":
        link = folder / "output"
        link.symlink_to(script.parent, target_is_directory=True)
    else:  # the file the backend downloads into, a link to the script
        (folder / "output").mkdir()
        link = folder / "output" / f"{job.id}.jsonl"
        link.symlink_to(script)
    with pytest.raises(JobFolderError, match="is a symbolic link") as info:
        try:
            pdbatch.attach(job.id, backend=mock).result()
        finally:
            assert snapshot(script) == before
    assert info.value.path == str(link)


@pytest.mark.parametrize("name", ["reuse.bin", "keys.json"])  # keys.json: folders of pdbatch before 2026-12
def test_a_fifo_in_a_job_folder_is_refused_without_blocking(pdbatch_home, name):
    mock = Mock()
    job = pd.DataFrame({"t": ["a"]}).llama.submit("{t}", backend=mock, temperature=0)
    folder = config.home() / "jobs" / job.id
    if name != "reuse.bin":
        as_older_folder(folder)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    with pytest.raises(JobFolderError, match=rf"{name} is not a regular file"):
        pdbatch.attach(job.id, backend=mock)


# ------------------------------------------------------------ 4. markup from status values
def test_status_values_are_never_rendered_as_markup():
    label = JobLabel(id=MARKUP, backend="local", model=MARKUP)
    status = JobStatus(state="JOB_STATE_RUNNING", total=None, succeeded=MARKUP, failed="",  # type: ignore[arg-type]
                       error=MARKUP)
    html = status_html(label, status, note=MARKUP)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("field, value", [("succeeded", MARKUP), ("failed", "3"), ("total", 2.5),
                                          ("succeeded", True), ("failed", -1), ("succeeded", None)])
def test_a_count_that_is_not_a_number_is_damage(tmp_path, field, value):
    (tmp_path / "status.json").write_bytes(orjson.dumps({"state": "JOB_STATE_RUNNING", field: value}))
    with pytest.raises(JobFolderError, match=rf"status\.json is damaged \('{field}' is .*not a count"):
        jobdir.read_status(tmp_path)


# ------------------------------------------------------------ rough edges
def test_two_different_answers_for_one_row_flag_it_and_neither_is_cached(pdbatch_home):
    mock = Mock()
    job = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=mock, temperature=0)
    lines = Mock._jobs[job.id]["lines"]
    other = orjson.loads(next(x for x in lines if b'"row-0"' in x))
    other["response"]["choices"][0]["message"]["content"] = "echo: something else"
    lines.append(orjson.dumps(other) + b"\n")
    same = next(x for x in lines if b'"row-1"' in x)
    lines.append(same)  # the same answer twice is no conflict
    out = job.result()
    assert "2 different answers for custom_id 'row-0'" in out.error[0]
    assert pd.isna(out.response[0]) and "'echo: a'" in out.error[0] and "'echo: something else'" in out.error[0]
    assert out.response[1] == "echo: b" and pd.isna(out.error[1])
    assert cache_hits(["a", "b"], mock) == 1


def test_a_home_others_can_write_is_used_with_one_warning(tmp_path):
    home = tmp_path / "shared-home"
    home.mkdir()
    os.chmod(home, 0o777)
    pdbatch.configure(home=home)
    with pytest.warns(PdbatchWarning, match=rf"chmod 700 {home}") as seen:
        jobdir.root()
        jobdir.root()
    assert len(seen) == 1


# ------------------------------------------------------------ the local backend, on a real (tiny) job
@pytest.fixture(scope="module")
def finished_local_job(tmp_path_factory, converted_models):
    """One finished local job, and the home it ran in."""
    home = tmp_path_factory.mktemp("local-job-home")
    (home / "models").symlink_to(converted_models, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PDBATCH_HOME", str(home))
        config.reset()
        job = pd.DataFrame({"t": PROMPTS}).llama.submit("{t}", backend=Local(parallel=1), **SETTINGS)
        out = job.wait(timeout=600, progress=False).result()
        config.reset()
    return home, job.id, out.response.tolist()


@pytest.fixture
def local_job(finished_local_job, pdbatch_home):
    """The finished job in this test's home as if this home had run it (its secret comes along), not yet read."""
    src_home, job_id, answers = finished_local_job
    folder = pdbatch_home / "jobs" / job_id
    shutil.copytree(src_home / "jobs" / job_id, folder, symlinks=True)
    if (src_home / SECRET).exists():  # (none before #21)
        shutil.copy2(src_home / SECRET, pdbatch_home / SECRET)
    (folder / "cache-filled").unlink()
    return job_id, folder, answers


def set_state(folder, **fields) -> None:
    st = orjson.loads((folder / "status.json").read_bytes())
    st.update(fields)
    (folder / "status.json").write_bytes(orjson.dumps(st))


def copy_as(folder, new_id: str):
    """Copy a local job's folder under another id, as a user would who wants a second copy of it."""
    copy = folder.parent / new_id
    shutil.copytree(folder, copy)
    manifest = orjson.loads((copy / "manifest.json").read_bytes())
    manifest["id"], manifest["parts"] = new_id, [new_id]
    (copy / "manifest.json").write_bytes(orjson.dumps(manifest))
    spec = orjson.loads((copy / "job.json").read_bytes())
    spec["id"] = new_id
    (copy / "job.json").write_bytes(orjson.dumps(spec))
    return copy


def edit_answers(path, text: str) -> None:
    lines = []
    for raw in path.read_bytes().splitlines():
        line = orjson.loads(raw)
        line["response"]["choices"][0]["message"]["content"] = text
        lines.append(orjson.dumps(line) + b"\n")
    path.write_bytes(b"".join(lines))


@pytest.mark.slow
def test_a_copied_local_folder_with_edited_answers_never_changes_a_later_call(local_job):
    job_id, folder, answers = local_job
    copy = copy_as(folder, "local-20260101-000000-c0ffee")
    edit_answers(copy / "output.jsonl", "POISONED")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = pdbatch.attach(copy.name).result()
    assert out.response.tolist() == ["POISONED"] * 3  # the copy's own result is what the copy holds
    assert cache_hits(PROMPTS, Local(parallel=1)) == 0
    assert any("not put into the response cache" in str(w.message) for w in seen)
    # the real job feeds the cache, and a later call gets its answers, running nothing
    assert pdbatch.attach(job_id).result().response.tolist() == answers
    assert cache_hits(PROMPTS, Local(parallel=1)) == 3
    later = pd.DataFrame({"t": PROMPTS}).llama.batch_predict("{t}", backend=Local(parallel=1), progress=False,
                                                           **SETTINGS)
    assert later.response.tolist() == answers and later.attrs["pdbatch_rows"]["sent"] == 0  # nothing ran


@pytest.mark.slow
def test_answers_edited_in_the_original_folder_are_not_cached(local_job):
    job_id, folder, _ = local_job
    lines = (folder / "output.jsonl").read_bytes().splitlines(keepends=True)
    edited = folder.parent / "edited.jsonl"
    edited.write_bytes(lines[0])
    edit_answers(edited, "POISONED")
    (folder / "output.jsonl").write_bytes(edited.read_bytes() + b"".join(lines[1:]))
    with pytest.warns(PdbatchWarning, match="1 output line"):
        out = pdbatch.attach(job_id).result()
    assert "POISONED" in out.response.tolist()
    poisoned = PROMPTS[out.response.tolist().index("POISONED")]
    assert cache_hits([poisoned], Local(parallel=1)) == 0
    assert cache_hits([p for p in PROMPTS if p != poisoned], Local(parallel=1)) == 2


@pytest.mark.slow
def test_answers_to_edited_requests_are_not_cached(local_job):
    job_id, folder, answers = local_job
    set_state(folder, state="JOB_STATE_RUNNING", succeeded=2)  # its worker died before the last row
    lines = (folder / "output.jsonl").read_bytes().splitlines(keepends=True)
    last = next(line for line in lines if b'"row-2"' in line)
    (folder / "output.jsonl").write_bytes(b"".join(line for line in lines if line != last))
    requests = folder / "requests.jsonl"
    requests.write_bytes(requests.read_bytes().replace(b"Count to three.", b"Say yes."))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = pdbatch.attach(job_id).wait(timeout=300, progress=False).result()
    assert out.response.tolist()[:2] == answers[:2] and pd.notna(out.response[2])  # row 2 answers "Say yes."
    assert cache_hits(PROMPTS[:2], Local(parallel=1)) == 2
    assert cache_hits(PROMPTS[2:], Local(parallel=1)) == 0, "the answer to another prompt went into the cache"
    assert any("1 output line(s)" in str(w.message) for w in seen)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["output.jsonl", "worker.lock", "start.lock", "worker.log", "requests.jsonl"])
def test_a_dead_job_never_writes_or_chmods_through_a_link(local_job, tmp_path, name):
    job_id, folder, _ = local_job
    set_state(folder, state="JOB_STATE_RUNNING")  # its worker died: wait() would resume it
    script, before = outside_file(tmp_path)
    (folder / name).unlink(missing_ok=True)  # start.lock exists once a process resumed or cancelled the job
    (folder / name).symlink_to(script)
    with pytest.raises(pdbatch.PdbatchError) as info:
        try:
            pdbatch.attach(job_id).wait(timeout=120, progress=False)
        finally:
            assert snapshot(script) == before  # content, mode, and its folder's mode and files
    assert isinstance(info.value, JobFolderError) and info.value.path == str(folder / name)
    assert f"{name} is a symbolic link" in str(info.value)


@pytest.mark.slow
def test_a_link_that_appears_after_attach_is_refused_by_the_worker(local_job, tmp_path):
    job_id, folder, _ = local_job
    set_state(folder, state="JOB_STATE_RUNNING")
    job = pdbatch.attach(job_id)
    script, before = outside_file(tmp_path)
    (folder / "output.jsonl").unlink()
    (folder / "output.jsonl").symlink_to(script)
    with pytest.raises(JobFolderError, match=r"output\.jsonl is a symbolic link"):
        try:
            job.wait(timeout=120, progress=False)
        finally:
            assert snapshot(script) == before


@pytest.mark.slow
def test_a_weights_folder_named_in_job_json_is_never_written(local_job, tmp_path):
    job_id, folder, _ = local_job
    set_state(folder, state="JOB_STATE_RUNNING", succeeded=2)
    lines = (folder / "output.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "output.jsonl").write_bytes(b"".join(line for line in lines if b'"row-2"' not in line))
    outside = tmp_path / "outside-weights"
    outside.mkdir()
    spec = orjson.loads((folder / "job.json").read_bytes())
    spec.update(weights_cache=str(outside), dtype="f16")  # converting: 16-bit weights are written somewhere
    (folder / "job.json").write_bytes(orjson.dumps(spec))
    job = pdbatch.attach(job_id).wait(timeout=600, progress=False)
    assert job.status.state == "JOB_STATE_SUCCEEDED"
    assert list(outside.iterdir()) == []
    assert orjson.loads((folder / "status.json").read_bytes())["weights"].startswith(str(config.home() / "models"))


@pytest.mark.slow
def test_markup_in_a_local_status_is_damage_and_never_rendered(local_job):
    job_id, folder, _ = local_job
    set_state(folder, succeeded=MARKUP, failed="", total=None)
    job = pdbatch.attach(job_id)
    html = job._repr_html_()
    assert "<img" not in html and "not a count" in html
    with pytest.raises(JobFolderError, match="not a count"):
        job.refresh()


@pytest.mark.slow
def test_a_read_only_dead_job_still_gives_its_partial_result(local_job, read_only, capsys):  # noqa: F811
    job_id, folder, answers = local_job
    set_state(folder, state="JOB_STATE_RUNNING")  # the worker died; nothing may be written now
    for path in [*folder.iterdir(), folder]:
        read_only(path)
    out = pdbatch.attach(job_id).result(partial=True)
    assert out.response.tolist() == answers
    assert main(["wait", job_id, "--quiet"]) == 2  # the user's to fix, not a bug (70)
    err = capsys.readouterr().err
    assert "chmod u+w" in err and "internal error" not in err


@pytest.mark.slow
def test_a_finished_jobs_output_is_never_read_through_a_link(local_job, tmp_path):
    # an output.jsonl that links to a file outside PDBATCH_HOME: its lines would become the result (and the
    # answers' file), reading whatever the link names
    job_id, folder, _ = local_job
    line = orjson.dumps({"custom_id": "row-0", "response": {"choices": [{"message": {"content": "OUTSIDE"}}]}})
    script, before = outside_file(tmp_path, content=line + b"\n")
    job = pdbatch.attach(job_id)  # which refuses a link in the folder: this one appears after
    (folder / "output.jsonl").unlink()
    (folder / "output.jsonl").symlink_to(script)
    for read in (lambda: job.result(), lambda: job.result(partial=True), lambda: list(job.output_lines())):
        with pytest.raises(JobFolderError, match=r"output\.jsonl is a symbolic link") as info:
            read()
        assert info.value.path == str(folder / "output.jsonl")
    assert snapshot(script) == before


def test_the_jobs_copy_of_the_frame_is_never_read_through_a_link(pdbatch_home, tmp_path):
    # attach refuses a link in the folder; one put there after attach is refused where the frame is read
    mock = Mock()
    df = pd.DataFrame({"t": ["a", "b"]})
    job = df.llama.submit("{t}", backend=mock, temperature=0)
    folder = pdbatch_home / "jobs" / job.id
    other = pd.DataFrame({"t": ["OUTSIDE", "OUTSIDE"]}).llama.submit("{t}", backend=mock, temperature=0)
    outside = tmp_path / "outside.arrow"
    shutil.copy(pdbatch_home / "jobs" / other.id / "frame.arrow", outside)  # a frame file outside the home
    attached = pdbatch.attach(job.id, backend=mock)
    (folder / "frame.arrow").unlink()
    (folder / "frame.arrow").symlink_to(outside)
    for read in (lambda: attached.result(), lambda: attached.frame()):
        with pytest.raises(JobFolderError, match=r"frame\.arrow is a symbolic link") as info:
            read()
        assert info.value.path == str(folder / "frame.arrow")
