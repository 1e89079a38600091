"""Which answers may enter the response cache: only those this ``PDBATCH_HOME`` can prove it produced.

A job folder is data anyone could have written: copied from a colleague,
unpacked from a tar file, synced, or edited after the fact. Its answers are
still the job's result, but the cache serves them to *later* calls, so a
folder must never choose what a later call gets. Each home has a secret
(:data:`SECRET`, 32 random bytes, ``0600``, created once) and signs with it
(HMAC-SHA256):

* at submit, the seal in ``reuse.bin`` (``keys.seal`` in older folders): the
  job's cache keys (which row's answer goes under which cache key), bound to
  the folder's name, the backend's job ids, the backend and the model. A folder copied under another name, or from
  another home, or whose keys or ids were edited, fails the check;
* for a local job, each line the worker appends to ``output.jsonl``, in
  ``output.seal`` beside it, with a key derived for that folder alone (handed
  to the worker by the process that starts it, never written down; a worker
  started by hand derives it from ``PDBATCH_HOME``'s secret). The
  worker signs only when ``requests.jsonl`` is the one submitted (its MAC is
  in ``job.json``): an edited request file gets answers, never signed ones.
  A line edited later, or added by hand, fails the check;
* output files a backend downloads into the folder's ``output/`` in the very
  call that fills the cache (Vertex AI) are the service's answers as of now,
  and are trusted as such.

What fails a check still joins to the rows (``result()`` works on a copied
folder); it only stays out of the cache, with one warning.

Not covered: someone who can write into ``PDBATCH_HOME`` while a job runs
(they could as well write ``cache.sqlite3`` itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from .. import config
from ..atomic import PRIVATE_FILE
from ..errors import PdbatchWarning
from ..lines.outputs import iter_file_lines
from . import reusestate
from .jobdir import DOWNLOADS, OUTPUT_SEAL, Manifest, key, open_file, read_file

__all__ = ["SECRET", "keys_sealed", "line_mac", "lines_to_cache", "output_key", "requests_mac", "seal_keys",
           "signed_lines", "warn_once"]

#: The home's signing secret, ``<PDBATCH_HOME>/seal.key``: losing it only means answers of older jobs are not cached.
SECRET = "seal.key"
#: How a process that starts a local worker hands it the folder's signing key.
KEY_ENV = "PDBATCH_OUTPUT_KEY"
_MAC_BYTES = 16  # 128 bits: forging one needs 2**128 tries
_warned: set[str] = set()


def _secret(create: bool) -> bytes | None:
    """The home's secret, created (once, atomically: a reader never sees half of it) when ``create``."""
    home = config.home()
    path = home / SECRET
    try:
        return _read_secret(path)
    except FileNotFoundError:
        if not create:
            return None
    except OSError:  # a link or unreadable: nothing is signed, nothing verifies, nothing is cached
        return None
    try:
        return _create_secret(path)
    except OSError:  # a home that cannot be written: jobs still run, their answers are not cached
        return None


def _create_secret(path: Path) -> bytes | None:
    # written whole under a temporary name, then linked into place: a reader never sees half of it,
    # and of two processes creating it at once the second gets the first one's
    tmp = path.with_name(f".{SECRET}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, os.urandom(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes | None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(64)
    return data if len(data) == 32 else None  # damaged: nothing verifies (nothing is cached) until removed


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.digest(secret, b"\0".join(parts), "sha256")


def _binding(folder: Path, record: Manifest, keys: bytes) -> bytes:
    # the folder's name, and the job's ids: the seal of a folder copied under another name, or whose
    # manifest now names another job's output, does not verify
    return orjson.dumps([folder.name, record.parts, record.backend, record.model, hashlib.sha256(keys).hexdigest()])


def seal_keys(folder: Path, record: Manifest) -> None:
    """Seal a new job's cache keys, bound to its folder and the job (ids, backend, model), into its ``reuse.bin``.

    Called at submit, by the process that computed the keys; nothing to seal
    when no row was sent.
    """
    keys = reusestate.load(folder, None, []).keys
    if keys is None:
        return
    secret = _secret(create=True)
    if secret is None:
        return  # a damaged secret: this job's answers are simply not cached
    reusestate.seal(folder, _mac(secret, b"pdbatch keys 1", _binding(folder, record, keys)))


def keys_sealed(folder: Path, record: Manifest, keys: bytes, seal: bytes | None) -> bool:
    """True when ``seal`` is this home's signature of ``keys`` (the reuse state's keys) for this job."""
    secret = _secret(create=False)
    if secret is None or seal is None:
        return False
    return hmac.compare_digest(seal, _mac(secret, b"pdbatch keys 1", _binding(folder, record, keys)))


def lines_to_cache(folder: Path, record: Manifest, keys: bytes, seal: bytes | None,
                   outputs: list[Path]) -> list[bytes]:
    """The output lines of a finished job that may enter the response cache (see the module's docstring).

    Parameters
    ----------
    folder : Path
        The job's folder.
    record : Manifest
        Its manifest (the job ids, backend and model the seal is bound to).
    keys, seal : bytes, bytes or None
        The cache keys of the rows it sent and the folder's seal of them
        (:class:`pdbatch.store.reusestate.Saved`).
    outputs : list of Path
        The output files the backend just fetched (under ``output/``) or reads in place.

    Returns
    -------
    list of bytes
        Every line when the keys are sealed and the lines downloaded now or
        signed; none, with one warning, when the keys are not sealed; the
        signed lines, with one warning, when some are not.
    """
    if not keys_sealed(folder, record, keys, seal):
        warn_once(folder, f"the answers of job {record.id} are not put into the response cache: {folder} does not "
                          f"carry this PDBATCH_HOME's signature for it (a job folder copied from another home or "
                          f"under another name, edited, or written by a pdbatch older than 2026-12). Its result "
                          f"is not affected; identical rows of later calls are sent again rather than answered "
                          f"from this folder.")
        return []
    fetched = folder / DOWNLOADS
    own = {key(part) for part in record.parts}
    lines: list[bytes] = []
    unsigned = 0
    for path in outputs:
        file_lines = iter_file_lines(path)
        if path.is_relative_to(fetched):  # downloaded from the service in this very call
            lines.extend(file_lines)
            continue
        for line, signed in signed_lines(path, file_lines):
            if signed and path.parent.name in own:
                lines.append(line)
            elif line.strip():
                unsigned += 1
    if unsigned:
        warn_once(folder, f"{unsigned} output line(s) of job {record.id} are not put into the response cache: the "
                          f"worker that ran the job did not sign them (edited or added after it wrote them, or "
                          f"answers to an edited requests.jsonl). The job's result shows them as they are.")
    return lines


def output_key(folder: Path, *, create: bool = True) -> bytes | None:
    """The key a local worker signs ``folder``'s output lines with (None when the home has no secret)."""
    secret = _secret(create=create)
    return None if secret is None else _mac(secret, b"pdbatch output key 1", folder.name.encode())


def line_mac(key: bytes, line: bytes) -> bytes:
    """An output line's signature, as written to ``output.seal`` (hex, no newline)."""
    return hmac.digest(key, line, "sha256")[:_MAC_BYTES].hex().encode()


def requests_mac(key: bytes, path: Path) -> str:
    """The signature of a request file's bytes (read in 1 MiB pieces)."""
    h = hmac.new(key, b"pdbatch requests 1\0", "sha256")
    with os.fdopen(open_file(path), "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def signed_lines(path: Path, lines: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Each of ``lines`` (read from ``path``, a worker's output) and whether ``output.seal`` vouches for it."""
    key = output_key(path.parent, create=False)
    macs: set[bytes] = set()
    with contextlib.suppress(OSError):  # no seal: no line is vouched for
        macs = set(read_file(path.parent / OUTPUT_SEAL).split(b"\n"))
    for line in lines:
        yield line, key is not None and line_mac(key, line) in macs


def warn_once(folder: Path, message: str) -> None:
    """One warning per folder and process: a notebook reads a copied folder's result more than once."""
    if str(folder) not in _warned:
        _warned.add(str(folder))
        warnings.warn(message, PdbatchWarning, stacklevel=5)  # result()'s caller
