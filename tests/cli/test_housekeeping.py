"""Job housekeeping (issue 24, item 7): last known states, no folder for calls that sent nothing, prune, cache stats."""

import time

import orjson
import pandas as pd
import pytest

from pdbatch import config
from pdbatch.backends import Mock
from pdbatch.cli.commands import main
from pdbatch.cli.jobs import parse_duration
from pdbatch.errors import ConfigError
from pdbatch.store import jobdir
from pdbatch.store.cache import ResponseCache


def job_folders() -> list[str]:
    return sorted(p.parent.name for p in (config.home() / "jobs").glob("*/manifest.json"))


@pytest.fixture
def df():
    return pd.DataFrame({"t": ["x", "y", "x"]})


def test_jobs_shows_the_last_known_state_without_asking_and_refreshes_only_running_jobs(df, capsys):
    done = df.llama.submit("{t}", backend=Mock(), temperature=0).wait(progress=False)
    running = df.llama.submit("{t}", backend=Mock(final_state="JOB_STATE_RUNNING"), cache=False)
    running.refresh()
    Mock._jobs.pop(done.id)  # the service forgot the ended job: asking about it now would fail
    capsys.readouterr()
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    [done_row] = [r for r in out.splitlines() if done.id in r]
    [running_row] = [r for r in out.splitlines() if running.id in r]
    assert "3 rows  succeeded 2/2 sent (2 ok, 0 failed) as of" in done_row, done_row
    assert "running" in running_row, running_row
    Mock._jobs[running.id]["state"] = "JOB_STATE_SUCCEEDED"  # it ended meanwhile
    assert main(["jobs"]) == 0
    assert "running" in next(r for r in capsys.readouterr().out.splitlines() if running.id in r), \
        "without --refresh: the last known state"
    assert main(["jobs", "--refresh"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "succeeded 3/3" in next(r for r in rows if running.id in r)
    # the ended job was not asked about (its service forgot it): its row is as before, no "?"
    assert "succeeded 2/2" in next(r for r in rows if done.id in r)


def test_a_call_answered_without_sending_makes_no_job_folder_unless_a_handle_is_returned(df, capsys):
    first = df.llama.batch_predict("{t}", backend=Mock(), temperature=0, progress=False)
    assert len(job_folders()) == 1
    mock = Mock()
    again = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert mock.submitted == [] and len(job_folders()) == 1, "an instant repeat left a job folder"
    assert again.response.tolist() == first.response.tolist() == ["echo: x", "echo: y", "echo: x"]
    assert again.attrs["pdbatch_rows"] == {"rows": 3, "sent": 0, "merged": 0, "cached": 3, "skipped": 0}
    assert again.llama.retry_failed(progress=False) is again  # nothing was sent: nothing to resend
    job = df.llama.submit("{t}", backend=Mock(), temperature=0)  # a handle is returned: its folder stays
    assert job.result().response.tolist() == first.response.tolist() and len(job_folders()) == 2
    assert main(["jobs"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if job.id in r)
    assert " as of " in row and "0/0" not in row, "known at submit, without asking anyone: " + row
    assert "3 rows  succeeded (nothing sent, 0 merged as duplicates, 3 answered from the cache)" in row, row
    side = df.llama.batch_predict("{t}", model={"a": "mock-chat", "b": "other"}, backend=Mock(), temperature=0,
                                  progress=False)
    assert side["response:a"].tolist() == first.response.tolist()
    assert len(job_folders()) == 3, "side by side: only the model that sent something has a folder"


def _age(job_id: str, days: float) -> None:
    # as if the job had been submitted `days` ago
    folder = jobdir.folder_for(job_id)
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    manifest["created"] -= days * 86400
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))


def test_prune_lists_then_removes_old_ended_jobs_and_keeps_running_ones_and_the_cache(df, capsys):
    old = df.llama.submit("{t}", backend=Mock(), temperature=0).wait(progress=False)
    old.result()  # its answers go into the cache
    young = df.llama.submit("{t}", backend=Mock(), cache=False).wait(progress=False)
    running = df.llama.submit("{t}", backend=Mock(final_state="JOB_STATE_RUNNING"), cache=False)
    unseen = df.llama.submit("{t}", backend=Mock(), cache=False)  # ended, but never looked at since
    for job in (old, running, unseen):
        _age(job.id, 8)
    with ResponseCache() as store:
        cached = store.count()
    assert cached == 2
    capsys.readouterr()
    assert main(["jobs", "prune", "--older-than", "7d"]) == 0
    out, err = capsys.readouterr()
    assert f"would remove {old.id}" in out and f"would remove {unseen.id}" in out and "--yes" in out, out
    assert young.id not in out and f"{running.id}: kept, it is running" in err, (out, err)
    assert len(job_folders()) == 4, "without --yes nothing is removed"
    assert main(["jobs", "prune", "--older-than", "7d", "--yes"]) == 0
    assert f"removing {old.id}" in capsys.readouterr().out
    assert job_folders() == sorted([young.id, running.id])
    with ResponseCache() as store:
        assert store.count() == cached, "prune keeps the cache"
    assert main(["jobs", "prune", "--older-than", "7d"]) == 0
    assert "no ended job older than 7d" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["7", "-1d", "7x", "d", "1.5.2h", ""])
def test_durations_are_refused_clearly(text, capsys):
    with pytest.raises(ConfigError, match="write a number and a unit"):
        parse_duration(text)
    assert main(["jobs", "prune", f"--older-than={text}"]) == 2
    assert "e.g. --older-than 7d" in capsys.readouterr().err


def test_durations():
    assert [parse_duration(t) for t in ("7d", "12h", "30m", "45s", "2w", "0d")] == [
        7 * 86400, 12 * 3600, 1800, 45, 14 * 86400, 0]


def test_cache_stats_and_clear_older_than_and_nothing_matched(df, capsys):
    df.llama.batch_predict("{t}", backend=Mock(), temperature=0, progress=False)
    df.llama.batch_predict("{t}", model="other-model", backend=Mock(), temperature=0, progress=False)
    capsys.readouterr()
    assert main(["cache", "stats"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mock:mock-chat"))
    assert row.split()[1] == "2" and " B " in row + " ", row
    assert "mock:other-model" in out and "4 cached answers in" in out, out
    assert main(["cache", "clear", "--model", "nosuch"]) == 0
    out = capsys.readouterr().out
    assert "nothing matched" in out and "'nosuch'" in out and "mock:other-model" in out, out
    assert main(["cache", "clear", "--older-than", "1d"]) == 0
    assert "nothing matched" in capsys.readouterr().out
    time.sleep(0.01)
    assert main(["cache", "clear", "--model", "other-model", "--older-than", "0s"]) == 0
    assert "removed 2 cached answers" in capsys.readouterr().out
    assert main(["cache", "clear", "--older-than", "soon"]) == 2
    assert main(["cache", "stats"]) == 0 and "2 cached answers" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert main(["cache", "stats"]) == 0 and "is empty" in capsys.readouterr().out


@pytest.mark.slow
def test_prune_deletes_the_request_files_a_vertex_job_staged_and_keeps_its_answers(
        vertex_emulator, gcs_least_privilege, gcs_bucket, capsys):
    from tests.backends.test_vertex import make

    vx = make(vertex_emulator, f"gs://{gcs_bucket}/pdbatch/")
    user_file = gcs_least_privilege.client().bucket(gcs_bucket).blob("pdbatch/mine.jsonl")
    user_file.upload_from_string("{}\n")  # a user's own file under the same prefix: not pdbatch's to delete
    frame = pd.DataFrame({"text": ["one", "two"]})
    job = frame.llama.submit("Summarize: {text}", backend=vx, cache=False).wait(progress=False)
    names = [b.name for b in gcs_least_privilege.client().list_blobs(gcs_bucket)]
    staged = [n for n in names if "/input/" in n]
    assert staged and any("/output/" in n for n in names), names
    _age(job.id, 2)
    capsys.readouterr()
    assert main(["jobs", "prune", "--older-than", "1d", "--yes"]) == 0
    out = capsys.readouterr().out
    assert all(f"deleted gs://{gcs_bucket}/{n}" in out for n in staged), out
    left = [b.name for b in gcs_least_privilege.client().list_blobs(gcs_bucket)]
    assert not any("/input/" in n for n in left) and any("/output/" in n for n in left), left
    assert "pdbatch/mine.jsonl" in left and job_folders() == []


def test_prune_acts_only_on_the_folder_a_manifest_is_in(df, capsys):
    # a job folder is untrusted data: its manifest cannot get another job's folder removed
    victim = df.llama.submit("{t}", backend=Mock(), cache=False).wait(progress=False)
    crafted = df.llama.submit("{t}", backend=Mock(), cache=False).wait(progress=False)
    path = jobdir.folder_for(crafted.id) / "manifest.json"
    manifest = orjson.loads(path.read_bytes())
    manifest.update(parts=[crafted.id, victim.id], created=manifest["created"] - 86400 * 8)
    path.write_bytes(orjson.dumps(manifest))
    impostor = jobdir.root() / "elsewhere"
    impostor.mkdir()
    (impostor / "manifest.json").write_bytes(orjson.dumps({**manifest, "parts": [victim.id]}))
    (impostor / "last-status.json").write_bytes(orjson.dumps({"state": "JOB_STATE_SUCCEEDED"}))
    capsys.readouterr()
    assert main(["jobs", "prune", "--older-than", "7d", "--yes"]) == 0
    out, err = capsys.readouterr()
    assert f"removing {crafted.id}" in out and "kept, its manifest names job" in err, (out, err)
    assert jobdir.folder_for(victim.id).is_dir() and impostor.is_dir()
    assert not jobdir.folder_for(crafted.id).exists()
