"""What the OpenAI and Anthropic backends share (pdbatch/backends/_hosted.py): each SDK's errors in pdbatch's
terms, in the provider's own words, never with the key. Real SDK exception objects, no server needed."""

from __future__ import annotations

import httpx
import pytest

from pdbatch.backends.anthropic import Anthropic
from pdbatch.backends.openai import OpenAI
from pdbatch.errors import BackendError, JobNotFoundError

KEY = "sk-test-0123456789abcdefSECRET"
REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/batches")
#: backend class, SDK module name, what a key belongs to, the batch API, what one batch is called
PROVIDERS = [(OpenAI, "openai", "project", "Batch API", "batch"),
             (Anthropic, "anthropic", "workspace", "Message Batches API", "message batch")]


def _status_error(sdk, cls_name: str, code: int, body):
    return getattr(sdk, cls_name)(f"Error code: {code} - {KEY}", response=httpx.Response(code, request=REQUEST),
                                  body=body)


def _translated(backend, exc: BaseException, job_id: str | None = None) -> BaseException:
    with pytest.raises((BackendError, JobNotFoundError)) as info, backend._translate("doing it", job_id=job_id):
        raise exc
    error = info.value
    assert KEY not in str(error) and "SECRET" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # a traceback never shows the SDK's error
    return error


@pytest.mark.parametrize(("cls", "sdk_name", "owner", "api", "batch"), PROVIDERS)
def test_each_sdk_error_says_what_to_check_in_the_providers_words(cls, sdk_name, owner, api, batch):
    sdk = pytest.importorskip(sdk_name)
    backend = cls(api_key=KEY, base_url="http://127.0.0.1:9")
    name, env = cls.__name__, sdk_name.upper()
    body = {"message": f"bad {KEY}"}

    error = _translated(backend, _status_error(sdk, "AuthenticationError", 401, body))
    assert str(error) == (f"doing it failed: the API key was refused (HTTP 401: bad [API key]). Check "
                          f"{env}_API_KEY (or {name}(api_key=...)) for http://127.0.0.1:9.")
    error = _translated(backend, _status_error(sdk, "PermissionDeniedError", 403, body))
    assert f"Check that the key's {owner} may use the {api} at http://127.0.0.1:9." in str(error)
    error = _translated(backend, _status_error(sdk, "NotFoundError", 404, body), job_id="b1")
    assert isinstance(error, JobNotFoundError)
    assert str(error).startswith(f"{name} has no {batch} 'b1' at http://127.0.0.1:9")
    assert str(error).endswith(f"check that the key belongs to the {owner} that created it.")
    error = _translated(backend, _status_error(sdk, "NotFoundError", 404, body))
    assert type(error) is BackendError and "not found (HTTP 404" in str(error)
    error = _translated(backend, _status_error(sdk, "RateLimitError", 429, body))
    assert "rate limited or over the batch queue limit (HTTP 429: bad [API key])" in str(error)
    error = _translated(backend, _status_error(sdk, "InternalServerError", 500, body))
    assert str(error) == "doing it failed (HTTP 500: bad [API key]) at http://127.0.0.1:9."
    error = _translated(backend, sdk.APIConnectionError(request=REQUEST))
    assert str(error).endswith(f"check the network and {env}_BASE_URL.")


def test_anthropic_s_nested_error_body_gives_its_message():
    sdk = pytest.importorskip("anthropic")
    backend = Anthropic(api_key=KEY, base_url="http://127.0.0.1:9")
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "requests: too many"}}
    error = _translated(backend, _status_error(sdk, "BadRequestError", 400, body))
    assert str(error) == "doing it failed (HTTP 400: requests: too many) at http://127.0.0.1:9."


@pytest.mark.parametrize(("cls", "sdk_name"), [(OpenAI, "openai"), (Anthropic, "anthropic")])
def test_the_client_is_made_once_and_the_key_in_use_is_known(cls, sdk_name, monkeypatch):
    pytest.importorskip(sdk_name)
    monkeypatch.setenv(f"{sdk_name.upper()}_API_KEY", KEY)
    backend = cls(base_url="http://127.0.0.1:9/")
    assert backend._key() == KEY  # from the environment, for scrubbing, though never passed
    assert backend._api() is backend._api()
    assert backend.cache_identity("m", "chat") == {"base_url": "http://127.0.0.1:9"}
