"""BatchJob: its record (call + options, stored once), attach, and manifests of older versions."""

import json

import pandas as pd

import pdbatch
from pdbatch.backends import Mock
from pdbatch.backends.base import JobStatus
from pdbatch.call import Call, Options
from pdbatch.store import jobdir


def test_call_and_options_are_stored_once_and_come_back_whole():
    df = pd.DataFrame({"key": ["k1", "k2"], "t": ["a", "b"]})
    job = df.llama.submit("{t}", backend=Mock(), custom_id="key", temperature=0, display_name="mine",
                          max_rows=10, cache=False)
    saved = json.loads((jobdir.folder_for(job.id) / jobdir.MANIFEST).read_text())
    # one record: no copies of the custom_id column, the schema or the options beside it
    assert not {"custom_id_column", "schema", "cache", "overwrite", "display_name"} & set(saved)
    assert saved["call"]["custom_id"] == "key" and saved["options"]["display_name"] == "mine"
    again = pdbatch.attach(job.id)
    assert again.call == Call(prompt="{t}", custom_id="key", params={"temperature": 0})
    assert again.options == Options(cache=False, display_name="mine", max_rows=10)
    assert again.result().response.tolist() == ["echo: a", "echo: b"]


def test_a_manifest_of_version_1_still_attaches():
    df = pd.DataFrame({"key": ["k1", "k2"], "t": ["a", "b"]})
    job = df.llama.submit("{t}", backend=Mock(), custom_id="key")
    path = jobdir.folder_for(job.id) / jobdir.MANIFEST
    old = json.loads(path.read_text())
    call = {k: v for k, v in old.pop("call").items() if k not in ("custom_id", "schema")}
    old.pop("options")
    old.update(version=1, call=call, custom_id_column="key", overwrite=True, display_name="pdbatch-x",
               cache="always", schema=None)
    path.write_text(json.dumps(old))
    again = pdbatch.attach(job.id)
    assert again.call.custom_id == "key" and again.call.prompt == "{t}"
    assert again.options == Options(cache="always", overwrite=True, display_name="pdbatch-x")
    assert again.result().response.tolist() == ["echo: a", "echo: b"]


class Flaky(Mock):
    """A Mock whose first status checks fail, as a network blip would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def status(self, job_id: str) -> JobStatus:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("network is unreachable")
        return super().status(job_id)


def test_wait_survives_a_network_blip():
    job = pd.DataFrame({"t": ["a", "b"]}).llama.submit("{t}", backend=Flaky(failures=2), progress=False)
    job._status = None
    assert job.wait(poll=0.01, progress=False).result().response.tolist() == ["echo: a", "echo: b"]
