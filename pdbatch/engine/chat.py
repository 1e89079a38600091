"""Chat completions on llama.cpp with continuous batching.

One llama.cpp context holds up to ``parallel`` sequences, each under its own
sequence id in the KV cache. Every step makes one ``llama_decode`` call that
carries the next token of every generating sequence plus as much prompt of
newly admitted requests as fits in the batch; each sequence then samples with
its own request's ``temperature``, ``top_p``, ``seed``, ``stop`` and
``max_tokens``. A finished sequence's cache is freed and the next request takes
its slot, so the batch stays full until the requests run out. A small model
on a CPU is bound by arithmetic: the gain comes from the tiled matrix product
that a batch of tokens gets on 16-bit float weights (see ``convert.py``),
where every weight loaded serves all sequences of the step.

Prompts are rendered with the chat template stored in the GGUF file and
tokenised exactly as llama-cpp-python's ``create_chat_completion`` does, so a
greedy answer here matches the one-at-a-time answer.

Requests that need grammar-constrained decoding (``response_format`` JSON,
tools) go through llama-cpp-python's own ``create_chat_completion`` one at a
time instead: correctness first for the few rows that ask for it.
"""

from __future__ import annotations

import ctypes
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .common import Item, Result, chat_completion, check_body

BATCH_TOKENS = 512  # tokens per llama_decode call: the prompt-processing chunk
LOOKAHEAD = 256  # requests read ahead and started shortest prompt first
TOP_CANDIDATES = 256  # nucleus sampling looks at the best this-many tokens


class RequestError(ValueError):
    """A request that cannot run; its message becomes the row's error."""


@dataclass
class _Params:
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    frequency_penalty: float
    presence_penalty: float


def parse_params(body: dict[str, Any]) -> _Params:
    """The sampling fields of a chat body (OpenAI defaults), or RequestError.

    The checks are :mod:`pdbatch.params`' (types, ranges, the fields this
    engine refuses), the same that refused the call before submitting: a
    request line that still gets here wrong fails its row alone.
    """
    problem = check_body(body, "chat")
    if problem:
        raise RequestError(f"invalid request: {problem}")

    def get(name: str, default: Any) -> Any:
        value = body.get(name)
        return default if value is None else value  # null means "not given", as in OpenAI's API

    stop = get("stop", [])
    return _Params(
        max_tokens=get("max_completion_tokens", body.get("max_tokens")),
        temperature=float(get("temperature", 1.0)),
        top_p=float(get("top_p", 1.0)),
        stop=[stop] if isinstance(stop, str) else stop,
        seed=body.get("seed"),
        frequency_penalty=float(get("frequency_penalty", 0.0)),
        presence_penalty=float(get("presence_penalty", 0.0)),
    )


def check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("invalid request: 'messages' must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise RequestError(f"invalid request: each message needs a 'role' and 'content', got {m!r:.120}")
    return messages


@dataclass
class _Seq:
    slot: int
    custom_id: str
    prompt: list[int]
    params: _Params
    rng: np.random.Generator
    limit: int  # total tokens this sequence may reach (prompt + generated)
    n_past: int = 0  # tokens already in the KV cache
    generated: list[int] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    logit_index: int = -1  # row of this step's logits, -1 when none

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.prompt)


class ChatEngine:
    """Continuous-batching chat completions for one GGUF model."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import llama_cpp

        from .llama import ChatTokenizer, load_llama

        self._c = llama_cpp
        threads = spec.get("threads") or os.cpu_count() or 1
        self.name = spec["model"]
        self.n_ctx = int(spec["n_ctx"])
        self.parallel = int(spec["parallel"])
        # The high-level object gives us the model, tokenizer and chat template,
        # and serves the rare grammar-constrained rows with its own context.
        self.llm = load_llama(spec["weights"], n_ctx=self.n_ctx, n_threads=threads,
                              n_threads_batch=threads, verbose=False)
        model = self.llm._model.model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.tokenizer = ChatTokenizer(self.llm)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx * self.parallel
        params.n_batch = BATCH_TOKENS
        params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = self.parallel
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = False  # one KV stream per sequence: each gets its full n_ctx
        # No flash attention, chosen explicitly, as llama-cpp-python's Llama
        # does: with 16-bit weights it gained nothing here (84 against 85
        # tok/s end to end), and its other float rounding changes greedy
        # answers: only 13 of 64 stayed the same when it was switched on.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)

    def close(self) -> None:
        if getattr(self, "batch", None) is not None:
            self._c.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            self._c.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------- requests
    def tokenize_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt tokens exactly as create_chat_completion builds them."""
        try:
            return self.tokenizer(messages)
        except ValueError as exc:
            raise RequestError(f"invalid request: {exc}") from exc

    def _admit(self, slot: int, cid: str, body: dict[str, Any]) -> _Seq:
        messages = check_messages(body)
        params = parse_params(body)
        prompt = self.tokenize_chat(messages)
        if len(prompt) >= self.n_ctx:
            raise RequestError(
                f"prompt is {len(prompt)} tokens, longer than the context window of {self.n_ctx} tokens; "
                f"shorten it or use Local(n_ctx=...) with a larger window"
            )
        limit = self.n_ctx if params.max_tokens is None else min(self.n_ctx, len(prompt) + params.max_tokens)
        return _Seq(slot, cid, prompt, params, np.random.default_rng(params.seed), limit)

    @staticmethod
    def _needs_grammar(body: dict[str, Any]) -> bool:
        fmt = body.get("response_format")
        return bool(body.get("tools")) or (isinstance(fmt, dict) and fmt.get("type") not in (None, "text"))

    def _run_one(self, cid: str, body: dict[str, Any]) -> Result:
        """A grammar-constrained row, through llama-cpp-python's own chat completion."""
        messages = check_messages(body)
        params = parse_params(body)
        out = self.llm.create_chat_completion(
            messages=messages,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=params.stop,
            seed=params.seed,
            response_format=_llama_response_format(body.get("response_format")),
            tools=body.get("tools"),
            tool_choice=body.get("tool_choice"),
            repeat_penalty=1.0,
            top_k=0,
            min_p=0.0,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
        )
        out = dict(out)  # type: ignore[arg-type]
        out["id"] = f"chatcmpl-{cid}"
        out["model"] = self.name
        return cid, out, None

    # ------------------------------------------------------------- decoding
    def run(self, items: Iterator[Item], stop: Callable[[], bool]) -> Iterator[Result]:
        """Answer every item, ``parallel`` at a time; yields rows as they finish."""
        slots: list[_Seq | None] = [None] * self.parallel
        exhausted = False
        items = _shortest_first(items, LOOKAHEAD)
        while True:
            # admit requests into free slots
            for i in range(self.parallel):
                while slots[i] is None and not exhausted:
                    if stop():
                        exhausted = True
                        break
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    cid, body, error = item
                    if error:
                        yield cid, None, error
                        continue
                    try:
                        if self._needs_grammar(body):
                            yield self._run_one(cid, body)
                            continue
                        slots[i] = self._admit(i, cid, body)
                    except RequestError as exc:
                        yield cid, None, str(exc)
                    except Exception as exc:  # one bad row never kills the job
                        yield cid, None, f"engine error: {type(exc).__name__}: {exc}"
            active = [s for s in slots if s is not None]
            if not active:
                return
            if stop():
                # cancelled: drop the rows in flight (they are not written)
                for s in active:
                    self._free(s)
                return
            self._step(active)
            for s in active:
                if s.logit_index < 0:
                    continue
                finish = self._sample(s)
                if finish:
                    slots[s.slot] = None
                    self._free(s)
                    yield s.custom_id, self._response(s, finish), None

    def _step(self, active: list[_Seq]) -> None:
        b = self.batch
        n = 0
        # generating sequences first: one token each, so that a long prompt
        # being processed never stalls the sequences already answering
        for s in active:
            s.logit_index = -1
            if not s.prefilling:
                self._put(n, s.generated[-1], s.n_past, s.slot, True)
                s.logit_index = n
                s.n_past += 1
                n += 1
        for s in active:
            if n >= BATCH_TOKENS:
                break
            if s.prefilling:
                take = min(len(s.prompt) - s.n_past, BATCH_TOKENS - n)
                for k in range(take):
                    pos = s.n_past + k
                    last = pos == len(s.prompt) - 1
                    self._put(n, s.prompt[pos], pos, s.slot, last)
                    if last:
                        s.logit_index = n
                    n += 1
                s.n_past += take
        b.n_tokens = n
        rc = self._c.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def _sample(self, s: _Seq) -> str | None:
        """Pick the next token for ``s``; returns a finish reason when it is done."""
        ptr = self._c.llama_get_logits_ith(self.ctx, s.logit_index)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
        p = s.params
        if s.counts and (p.frequency_penalty or p.presence_penalty):
            logits = logits.copy()
            toks = np.fromiter(s.counts, dtype=np.int64)
            cnt = np.fromiter(s.counts.values(), dtype=np.float32)
            logits[toks] -= cnt * p.frequency_penalty + p.presence_penalty
        token = int(np.argmax(logits)) if p.temperature == 0.0 else self._draw(logits, p, s.rng)
        if self._c.llama_vocab_is_eog(self.vocab, token):
            return "stop"
        s.generated.append(token)
        s.counts[token] = s.counts.get(token, 0) + 1
        if p.stop and any(x in self._text(s) for x in p.stop):
            return "stop"
        if s.n_past + 1 >= s.limit:
            return "length"
        return None

    @staticmethod
    def _draw(logits: np.ndarray, p: _Params, rng: np.random.Generator) -> int:
        k = min(TOP_CANDIDATES, logits.shape[0])
        top = np.argpartition(logits, -k)[-k:]
        top = top[np.argsort(logits[top])[::-1]]
        z = logits[top].astype(np.float64) / p.temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            probs = probs[:keep] / probs[:keep].sum()
            top = top[:keep]
        return int(top[rng.choice(len(probs), p=probs)])

    def _text(self, s: _Seq) -> str:
        return self.llm.detokenize(s.generated, prev_tokens=s.prompt).decode("utf-8", errors="ignore")

    def _response(self, s: _Seq, finish: str) -> dict[str, Any]:
        text = self._text(s)
        if s.params.stop:
            cut = min((i for i in (text.find(x) for x in s.params.stop) if i >= 0), default=-1)
            if cut >= 0:
                text = text[:cut]
        return chat_completion(s.custom_id, self.name, text, finish, len(s.prompt), len(s.generated))

    def _free(self, s: _Seq) -> None:
        self._c.llama_memory_seq_rm(self.memory, s.slot, -1, -1)


def _shortest_first(items: Iterator[Item], window: int) -> Iterator[Item]:
    """The items in windows of ``window``, each window ordered by prompt length.

    All sequences of a step attend over as many KV cells as the longest of
    them holds (llama.cpp pads every stream of a step to one size), so short
    prompts decoded beside a long one pay for its length. Starting prompts of
    like length together made the 64 benchmark requests (a quarter of them
    long) about 5% faster at parallel=16, over three alternating runs on a
    noisy machine. Answers are keyed by custom_id, so the order is free.
    """
    while chunk := list(itertools.islice(items, window)):
        chunk.sort(key=_prompt_chars)  # stable: equal lengths keep the file's order
        yield from chunk


def _prompt_chars(item: Item) -> int:
    body = item[1]
    if item[2] or not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return -1  # failed and odd rows first: they cost nothing
    return sum(len(str(m.get("content", ""))) if isinstance(m, dict) else 0 for m in body["messages"])


def _llama_response_format(fmt: Any) -> Any:
    """OpenAI's ``json_schema`` response format in the shape llama-cpp-python reads."""
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return fmt
