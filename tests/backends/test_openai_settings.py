"""The OpenAI backend's settings, without a server: where they come from, which addresses get the key."""

from __future__ import annotations

import sys

import pytest

import pdbatch
from pdbatch.backends import get_backend
from pdbatch.backends.openai import OpenAI
from pdbatch.errors import ConfigError, MissingDependencyError


def test_a_base_url_from_a_job_folder_is_trusted_only_when_chosen(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    settings = OpenAI().settings()
    assert OpenAI.from_settings(settings).base_url is None
    with pytest.raises(ConfigError, match=r"evil\.example"):
        OpenAI.from_settings({**settings, "base_url": "https://evil.example/v1"})
    monkeypatch.setenv("OPENAI_BASE_URL", "https://evil.example/v1")
    assert OpenAI.from_settings({**settings, "base_url": "https://evil.example/v1"}).base_url


def test_settings_come_from_configure_and_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PDBATCH_OPENAI_MAX_REQUESTS_PER_FILE", "7")
    pdbatch.configure(openai={"poll_seconds": 2})
    be = get_backend("openai")
    assert (be.max_requests_per_file, be.poll_seconds, be.max_bytes_per_file) == (7, 2.0, 200_000_000)
    with pytest.raises(ConfigError, match="max_bytes_per_file"):
        OpenAI(max_bytes_per_file=0)
    with pytest.raises(ConfigError, match="chat model"):
        be.model_name("text-embedding-3-small", "chat")


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pdbatch\[openai\]'"):
        OpenAI()


def test_without_a_key_submitting_says_which_variable_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    be = OpenAI()  # building it, and previewing, needs no key
    path = tmp_path / "r.jsonl"
    path.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n')
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        be.submit([path], model="gpt-4.1-mini", kind="chat", n_requests=1, display_name="x")
