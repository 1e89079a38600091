"""The weights a batch runs on: the GGUF file as shipped, or its 16-bit float form.

The bundled SmolLM2-135M ships quantised to Q4_1. llama.cpp's CPU kernels for
Q4_1 multiply a batch of tokens row by row, so decoding 16 sequences at once
costs nearly 16 times one (measured: 100 tok/s batched against 84 alone). Its
16-bit float form goes through ggml's tiled matrix product (llamafile's
tinyBLAS), where a batch shares each weight read: batched decoding runs at
about 170 tok/s and prompt processing twice as fast. Small models are bound
by arithmetic, not memory, so the bigger file costs little; for large models
the 4-bit file read once per step is the faster one, so ``"auto"`` converts
only models whose 16-bit form stays small.

The conversion is llama.cpp's own ``llama_model_quantize`` (a dequantisation
here), run once per source file and kept under ``<home>/models``; concurrent
workers write to private temporary names and rename, so a half-written file
is never read.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import struct
from pathlib import Path
from typing import BinaryIO

from ..atomic import atomic_path

DTYPES = ("auto", "f16", "file")
AUTO_MAX_F16_BYTES = 512 << 20  # about 250M parameters: compute-bound on a CPU

# general.file_type values (llama_ftype) already in a float format
_FLOAT_FTYPES = {0, 1, 32}  # ALL_F32, MOSTLY_F16, MOSTLY_BF16
_BITS_PER_WEIGHT = {2: 4.5, 3: 5.0, 7: 8.5, 8: 5.5, 9: 6.0}  # Q4_0, Q4_1, Q8_0, Q5_0, Q5_1 (block overhead included)


def check_dtype(dtype: str) -> str:
    """Return ``dtype`` or raise ValueError naming the accepted values."""
    if dtype not in DTYPES:
        raise ValueError(
            f"dtype={dtype!r}: use 'auto' (16-bit floats for small models), 'f16', "
            f"or 'file' (the GGUF file's own quantisation)"
        )
    return dtype


def file_identity(path: str) -> str:
    """Which file, as of which change: its real path, size and modification time.

    Names the converted copy of a file, and the weights in the response
    cache's keys: replacing the file makes both new.
    """
    st = os.stat(path)
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"


def file_type(path: str) -> int | None:
    """The GGUF's ``general.file_type`` (a llama_ftype), read from its header.

    Read directly rather than through a vocabulary-only llama.cpp load, which
    took about 0.1 s of CPU at every job start and logged a spurious
    "n_ctx_train (0)" warning into ``worker.log``.
    """
    return _file_type(file_identity(path), path)


@functools.lru_cache(maxsize=64)
def _file_type(identity: str, path: str) -> int | None:
    # keyed on the identity: the response cache asks for every call, and a
    # file replaced in place must be read again
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        _version, _n_tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
        for _ in range(n_kv):
            (n,) = struct.unpack("<Q", fh.read(8))
            key = fh.read(n)
            (vtype,) = struct.unpack("<I", fh.read(4))
            if key == b"general.file_type" and vtype in _INT_FORMATS:
                return int(struct.unpack(_INT_FORMATS[vtype], fh.read(struct.calcsize(_INT_FORMATS[vtype])))[0])
            _skip_value(fh, vtype)
    return None


# GGUF value types (gguf.h): fixed sizes, 8 = string, 9 = array
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INT_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


def _skip_value(fh: BinaryIO, vtype: int) -> None:
    if vtype in _FIXED_SIZES:
        fh.seek(_FIXED_SIZES[vtype], os.SEEK_CUR)
    elif vtype == 8:
        (n,) = struct.unpack("<Q", fh.read(8))
        fh.seek(n, os.SEEK_CUR)
    elif vtype == 9:
        etype, count = struct.unpack("<IQ", fh.read(12))
        if etype in _FIXED_SIZES:
            fh.seek(count * _FIXED_SIZES[etype], os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(fh, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")


def wants_f16(path: str, dtype: str, parallel: int | None) -> bool:
    """Whether ``path`` should run as 16-bit floats under ``dtype``, ``parallel`` sequences at a time.

    ``parallel=None`` lets the engine choose, always several.
    """
    if check_dtype(dtype) == "file" or (dtype == "auto" and parallel == 1):
        return False  # one sequence reads every weight per token: the smaller file is faster
    ftype = file_type(path)
    if ftype in _FLOAT_FTYPES:
        return False  # already floats: nothing to gain
    if dtype == "f16":
        return True
    bits = _BITS_PER_WEIGHT.get(ftype) if ftype is not None else None
    if bits is None:
        return False  # k-quants and others: no size estimate we trust, keep the file
    return os.path.getsize(path) * 16 / bits <= AUTO_MAX_F16_BYTES


def batch_weights(path: str, dtype: str, cache: Path, parallel: int | None) -> str:
    """The GGUF file a batch should run: ``path`` itself, or its cached 16-bit float form.

    Parameters
    ----------
    path : str
        The model's GGUF file.
    dtype : {"auto", "f16", "file"}
        ``"file"`` runs ``path`` as it is; ``"f16"`` converts a quantised file;
        ``"auto"`` converts only when ``parallel > 1`` and the 16-bit form
        stays under :data:`AUTO_MAX_F16_BYTES`.
    cache : Path
        Folder for converted files (created when needed).
    parallel : int or None
        Sequences the engine decodes together (None: the engine's choice, several).

    Returns
    -------
    str
        The file to load.
    """
    if not wants_f16(path, dtype, parallel):
        return path
    key = hashlib.sha256(file_identity(path).encode()).hexdigest()[:16]
    target = cache / f"{Path(path).stem}-{key}.f16.gguf"
    if target.is_file():
        return str(target)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            _convert(path, str(tmp))
    except (OSError, RuntimeError) as exc:
        raise RuntimeError(
            f"could not convert {path} to 16-bit floats in {cache} ({exc}); free disk space there, "
            f"or run the file as shipped with Local(dtype='file')"
        ) from exc
    return str(target)


def _convert(src: str, dst: str) -> None:
    import llama_cpp

    from .llama import route_llama_logs

    route_llama_logs()

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True  # the source is quantised; 16-bit floats hold its values almost exactly
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")
