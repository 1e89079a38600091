"""Loading a GGUF model with llama-cpp-python, safely on every x86 machine.

ggml moves weights into "extra" buffer types when the CPU reports support
for them, such as Intel AMX tiles. Some virtual machines report AMX in cpuid
but do not let processes use the tile registers, and the first matrix multiply
then crashes the process (seen on the 2-core VMs this project is tested on,
in ``ggml_backend_amx_mul_mat``). A batch worker must not die on that, so
pdbatch loads models with ``use_extra_bufts = False``: the plain CPU kernels
(AVX2/AVX-512) still run. Set ``PDBATCH_LLAMA_EXTRA_BUFFERS=1`` to allow the
extra buffers on hardware known to support them.

llama-cpp-python's ``Llama`` builds the model parameters itself and offers no
argument for this field, so the default-parameters function is wrapped for
the duration of the constructor call only.

llama.cpp's log goes to the ``pdbatch.llama_cpp`` logger (warnings and
errors by default), never straight to stderr: llama-cpp-python's own log
callback maps ggml's log levels by an older numbering (WARN is 3 now, which it
takes for ERROR), so with ``verbose=False`` its warnings still reached the
user's stderr, e.g. ``n_ctx_seq (512) > n_ctx_train (0)`` on every
``preview``, red in Jupyter. The job worker sends that logger to its
``worker.log``.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import logging
import os
import threading
from typing import Any

_lock = threading.Lock()

logger = logging.getLogger("pdbatch.llama_cpp")
logger.setLevel(logging.WARNING)  # llama.cpp logs some 80 INFO lines per model load
logger.addHandler(logging.NullHandler())  # nothing reaches stderr unless the program configures logging
# ggml_log_level in the llama.cpp that llama-cpp-python 0.3.x builds: 0 NONE,
# 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR, 5 CONT (goes on with the previous message)
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_callback: Any = None  # the ctypes callback must stay referenced as long as llama.cpp may call it
_pending: list[str] = []
_pending_level = logging.INFO


def route_llama_logs() -> None:
    """Send llama.cpp's log output to the ``pdbatch.llama_cpp`` logger instead of stderr (once per process)."""
    global _callback
    with _lock:
        if _callback is not None:
            return
        import llama_cpp
        import llama_cpp.llama  # installs llama-cpp-python's callback, which ours replaces

        @llama_cpp.llama_log_callback  # type: ignore[misc]
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            global _pending_level
            try:
                if level != 5:
                    _pending_level = _LEVELS.get(level, logging.INFO)
                # llama.cpp writes lines in pieces; log whole lines
                _pending.append(text.decode("utf-8", "replace"))
                if _pending[-1].endswith("\n"):
                    line = "".join(_pending).rstrip()
                    _pending.clear()
                    if line:
                        logger.log(_pending_level, line)
            except Exception:  # an exception must not cross back into C
                pass

        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        _callback = callback


def extra_buffers_allowed() -> bool:
    """True when ``PDBATCH_LLAMA_EXTRA_BUFFERS=1`` asks for ggml's extra buffer types."""
    return os.environ.get("PDBATCH_LLAMA_EXTRA_BUFFERS", "") == "1"


def load_llama(model_path: str, **kwargs: Any) -> Any:
    """Construct ``llama_cpp.Llama(model_path, **kwargs)`` without extra weight buffers.

    Parameters
    ----------
    model_path : str
        A GGUF file.
    **kwargs
        Passed to ``llama_cpp.Llama``.

    Returns
    -------
    llama_cpp.Llama
    """
    from llama_cpp import Llama
    from llama_cpp import llama_cpp as lib

    route_llama_logs()
    if extra_buffers_allowed():
        return Llama(model_path=model_path, **kwargs)
    with _lock:
        original = lib.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = False
            return p

        lib.llama_model_default_params = params
        try:
            return Llama(model_path=model_path, **kwargs)
        finally:
            lib.llama_model_default_params = original


class ChatTokenizer:
    """Chat prompts -> tokens, exactly as llama-cpp-python's ``create_chat_completion`` builds them.

    The chat template comes from the GGUF file's metadata; the prompt is
    tokenised with special tokens parsed and a BOS token unless the template
    added one.

    Parameters
    ----------
    llm : llama_cpp.Llama
        A loaded model (``vocab_only=True`` is enough for counting tokens).
    """

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError("the GGUF file has no chat template in its metadata")
        eos, bos = llm.token_eos(), llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    @classmethod
    def for_file(cls, weights: str) -> ChatTokenizer:
        """A tokenizer that loads only the vocabulary of ``weights`` (no weights in memory).

        Kept per file (and its size and modification time): loading takes
        half a second, and every local call counts tokens to hold back rows
        over the context window (:mod:`pdbatch.jobs.fit`).
        """
        st = os.stat(weights)
        return _tokenizer(weights, st.st_size, st.st_mtime_ns)

    def __call__(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt tokens of ``messages``; raises ValueError when the template rejects them."""
        try:
            result = self.formatter(messages=messages)  # type: ignore[arg-type]  # OpenAI-shaped dicts
        except Exception as exc:  # jinja errors on odd message shapes
            raise ValueError(f"the chat template rejected the messages: {exc}") from exc
        return self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


@functools.lru_cache(maxsize=4)
def _tokenizer(weights: str, size: int, mtime_ns: int) -> ChatTokenizer:
    """The tokenizer of one version of a file (``size`` and ``mtime_ns`` tell versions apart)."""
    return ChatTokenizer(load_llama(weights, vocab_only=True, verbose=False))


# freed while llama_cpp's module is whole: at interpreter shutdown its finaliser finds its globals gone
atexit.register(_tokenizer.cache_clear)
