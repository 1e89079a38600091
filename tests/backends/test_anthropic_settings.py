"""The Anthropic backend's settings, without a server: where they come from, which addresses get the key."""

from __future__ import annotations

import sys

import pytest

import pdbatch
from pdbatch.backends import get_backend, registered
from pdbatch.backends.anthropic import Anthropic
from pdbatch.errors import ConfigError, MissingDependencyError


def test_the_name_is_registered_and_the_class_is_importable_from_backends():
    assert "anthropic" in registered()
    assert pdbatch.backends.Anthropic is Anthropic


def test_a_base_url_from_a_job_folder_is_trusted_only_when_chosen(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    settings = Anthropic().settings()
    assert Anthropic.from_settings(settings).base_url is None
    assert Anthropic.from_settings({**settings, "base_url": "https://api.anthropic.com"}).base_url
    with pytest.raises(ConfigError, match=r"evil\.example"):
        Anthropic.from_settings({**settings, "base_url": "https://evil.example"})
    with pytest.raises(ConfigError, match="ANTHROPIC_BASE_URL"):
        Anthropic.from_settings({**settings, "base_url": "http://api.anthropic.com"})  # not HTTPS
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://evil.example")
    assert Anthropic.from_settings({**settings, "base_url": "https://evil.example"}).base_url


def test_settings_come_from_configure_and_the_environment(monkeypatch):
    monkeypatch.setenv("PDBATCH_ANTHROPIC_MAX_REQUESTS_PER_FILE", "7")
    pdbatch.configure(anthropic={"poll_seconds": 2})
    be = get_backend("anthropic")
    assert (be.max_requests_per_file, be.poll_seconds, be.max_bytes_per_file) == (7, 2.0, 250_000_000)
    with pytest.raises(ConfigError, match="max_bytes_per_file"):
        Anthropic(max_bytes_per_file=0)
    assert be.model_name(None, "chat") == "claude-haiku-4-5"
    assert "claude-sonnet-4-6" in be.known_models("chat") and be.known_models("embeddings") == []
    assert be.batch_price("claude-haiku-4-5-20251001") == (0.50, 2.50)
    assert be.batch_price("claude-someday") is None


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pdbatch\[anthropic\]'"):
        Anthropic()


def test_without_a_key_submitting_says_which_variable_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    be = Anthropic()  # building it, and previewing, needs no key
    path = tmp_path / "r.jsonl"
    path.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
                    '"body": {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]}}\n')
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        be.submit([path], model="claude-haiku-4-5", kind="chat", n_requests=1, display_name="x")
