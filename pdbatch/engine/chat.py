"""Chat completions on llama.cpp with continuous batching.

One llama.cpp context holds up to ``parallel`` sequences, each in its own KV
stream. A step makes one ``llama_decode`` call with the next token of every
answering sequence, then computes waiting prompts (after the start each
shares with a stream already computed: ``streams.py``), at most as many
prompt tokens as all steps before it, so that a small job's first rows come
early (``ChatEngine._prompts``). Each sequence samples with its own
request's ``temperature``, ``top_p``, ``seed``, ``stop`` and ``max_tokens``.
A finished sequence's slot takes the next request at once, so the batch
stays full until the requests run out; then the last sequences move into
one run of slots (``ChatEngine._compact``). A small model on a CPU is bound
by arithmetic: the gain comes from the tiled matrix product that a batch of
tokens gets on 16-bit float weights (see ``convert.py``), where every weight
loaded serves all sequences of the step.

Prompts are rendered with the chat template stored in the GGUF file and
tokenised exactly as llama-cpp-python's ``create_chat_completion`` does, so a
greedy answer here matches the one-at-a-time answer: bit for bit on the
shipped Q4_1 file; on 16-bit weights the first token too, later tokens up to
the rounding of llama.cpp's batched kernel (see the step comment below).

Requests that ask for label scores (``df.llama.classify``) are not
generated: ``score.py`` computes each label's log-probability after the
prompt, in a free slot.

Requests that need grammar-constrained decoding (``response_format`` JSON,
tools) go through llama-cpp-python's own ``create_chat_completion`` one at a
time instead: correctness first for the few rows that ask for it.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batch import TokenBatch
from .common import Item, RequestError, Result, chat_completion, check_messages, needs_grammar
from .sampling import SamplingParams, draw, parse_params
from .score import FIELD as SCORE_FIELD
from .score import Scorer
from .sizing import JobSize, job_size
from .streams import Streams
from .threads import ThreadGovernor

BATCH_TOKENS = 512  # tokens per llama_decode call: the prompt-processing chunk
LOOKAHEAD = 256  # requests read ahead and started shortest prompt first


@dataclass
class _Seq:
    slot: int
    custom_id: str
    prompt: list[int]
    params: SamplingParams
    rng: np.random.Generator
    limit: int  # total tokens this sequence may reach (prompt + generated)
    n_past: int = 0  # tokens already in the KV cache
    generated: list[int] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)


class ChatEngine:
    """Continuous-batching chat completions for one GGUF model."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import llama_cpp

        from .llama import ChatTokenizer, load_llama

        self.lib = llama_cpp
        self.governor = ThreadGovernor(spec.get("threads"))
        threads = self.governor.threads
        self.name = spec["model"]
        self.n_ctx = int(spec["n_ctx"])
        # The high-level object gives us the model, tokenizer and chat template,
        # and serves the rare grammar-constrained rows with its own context.
        self.llm = load_llama(spec["weights"], n_ctx=self.n_ctx, n_threads=threads,
                              n_threads_batch=threads, verbose=False)
        model = self.llm._model.model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.tokenizer = ChatTokenizer(self.llm)
        size = JobSize(self.n_ctx, None)
        if spec.get("requests"):
            size = job_size(spec["requests"], self.n_ctx, self._template_tokens)
        self.cells = size.cells  # KV cells per sequence
        self.parallel = int(spec.get("parallel") or size.parallel())
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.cells * self.parallel
        params.n_batch = BATCH_TOKENS
        params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = self.parallel
        params.n_threads = threads
        params.n_threads_batch = threads
        # One KV stream per sequence: each gets its full n_ctx, and attention
        # costs each token only its own sequence's cells. A unified cache
        # (one stream for all) measured 1.8x slower for 8 prompts of 500
        # tokens, as every token attends over every sequence's cells.
        params.kv_unified = False
        # No flash attention, chosen explicitly, as llama-cpp-python's Llama
        # does: with 16-bit weights it gained nothing here (84 against 85
        # tok/s end to end), and its other float rounding changes greedy
        # answers: only 13 of 64 stayed the same when it was switched on.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = TokenBatch(llama_cpp, BATCH_TOKENS, self.parallel)
        self.streams = Streams(llama_cpp, self.memory, self.parallel)
        self.scorer = Scorer(self)
        # for status.json at the end: what the job computed, and with how many threads
        self.stats: dict[str, Any] = {"parallel": self.parallel, "kv_cells": self.cells, "threads": [],
                                      "prompt_tokens": 0, "prompt_tokens_computed": 0, "prompt_calls": 0,
                                      "decode_calls": 0, "moves": 0}

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lib.llama_free(self.ctx)
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

    def _template_tokens(self, roles: tuple[str, ...]) -> int:
        return len(self.tokenizer([{"role": r, "content": ""} for r in roles]))

    def _admit(self, slot: int, cid: str, body: dict[str, Any]) -> _Seq | None:
        """The request as a sequence for ``slot``; None when it needs more cells than a stream has."""
        messages = check_messages(body)
        params = parse_params(body)
        prompt = self.tokenize_chat(messages)
        if len(prompt) >= self.n_ctx:
            raise RequestError(
                f"prompt is {len(prompt)} tokens, longer than the context window of {self.n_ctx} tokens; "
                f"shorten it or use Local(n_ctx=...) with a larger window"
            )
        limit = self.n_ctx if params.max_tokens is None else min(self.n_ctx, len(prompt) + params.max_tokens)
        if limit > self.cells:
            return None  # the streams were sized from a bound this request exceeds: the loop answers it
        return _Seq(slot, cid, prompt, params, np.random.default_rng(params.seed), limit)

    def _run_one(self, cid: str, body: dict[str, Any]) -> Result:
        """A row through llama-cpp-python's own chat completion, one at a time.

        For the rows that need grammar-constrained decoding, and the rare row
        longer than the KV streams were sized for (see ``sizing.py``).
        """
        messages = check_messages(body)
        params = parse_params(body)
        self.lib.llama_set_n_threads(self.llm.ctx, self.governor.threads, self.governor.threads)
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
    # A step's first call carries every answering sequence's next token, in
    # slot order; then waiting prompts are computed, each after the start it
    # shares with a KV stream (streams.py), alone or with prompts of equal
    # remaining length in the following slots. Prompts and answering tokens
    # never share a call: with one KV stream per sequence llama.cpp splits a
    # call into ubatches of consecutive sequence ids with equal tokens each,
    # and a call holding 7 answering sequences and 3 prompts ran as 5 to 7
    # graph computations. That split is also what cost the earlier
    # shared-prefix attempt its greedy parity: the first token after the
    # shared start went into the one-token ubatch of the answering sequences,
    # where attention takes llama.cpp's single-token kernel instead of the
    # tiled one a prompt gets, and rounds differently (up to 0.55 in a logit
    # on the Q4_1 file; harmless for a whole prompt, whose first token
    # attends to itself only). The answering call itself multiplies the
    # weights by several tokens at once, where the one-at-a-time loop
    # multiplies one: on the Q4_1 file (row by row either way) nothing
    # changes, on 16-bit weights the tiled kernel rounds differently from
    # the single-token one (about 0.02 in a logit), so a long answer may
    # part from the loop's after some tokens.

    def run(self, items: Iterator[Item], stop: Callable[[], bool]) -> Iterator[Result]:
        """Answer every item, ``parallel`` at a time; yields rows as they finish."""
        slots: list[_Seq | None] = [None] * self.parallel
        waiting: list[_Seq] = []  # admitted, prompt not computed yet
        exhausted = False
        items = _shortest_first(items, LOOKAHEAD)
        while True:
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
                        if SCORE_FIELD in body:  # label scores, computed now in this free slot
                            yield self.scorer.answer(i, cid, body)
                            continue
                        seq = None if needs_grammar(body) else self._admit(i, cid, body)
                        if seq is None:
                            yield self._run_one(cid, body)
                            continue
                        slots[i] = seq
                        waiting.append(seq)
                    except RequestError as exc:
                        yield cid, None, str(exc)
                    except Exception as exc:  # one bad row never kills the job
                        yield cid, None, f"engine error: {type(exc).__name__}: {exc}"
            if stop():
                return  # cancelled: the rows in flight are not written
            if all(s is None for s in slots):
                if exhausted:
                    return
                continue
            threads = self.governor.update()
            self.lib.llama_set_n_threads(self.ctx, threads, threads)
            if threads not in self.stats["threads"]:
                self.stats["threads"].append(threads)
            if exhausted and not waiting:
                self._compact(slots)
            answering = [s for s in slots if s is not None and s.n_past]
            if answering:
                self._decode_next(answering)
                for k, s in enumerate(answering):
                    if finish := self._sample(s, k):
                        slots[s.slot] = None
                        yield s.custom_id, self._response(s, finish), None
            # a step may compute as many prompt tokens as all steps before it (see _prompts)
            for s, finish in self._prompts(waiting, budget=self.stats["prompt_tokens_computed"]):
                if finish:
                    slots[s.slot] = None
                    yield s.custom_id, self._response(s, finish), None

    def _compact(self, slots: list[_Seq | None]) -> None:
        """Move the sequences of the highest slots into free lower ones, until the busy slots are one run.

        llama.cpp runs a call with one KV stream per sequence as one graph
        computation per run of consecutive sequence ids (see the step
        comment above). Once the requests run out, finished rows leave holes
        that no new row fills, and the last rows of a job were decoded in up
        to one pass over the weights each: 78 ms a step for 7 sequences on
        one core, against 175 ms for 32. A move is one stream copy.
        """
        while True:
            busy = [i for i, s in enumerate(slots) if s is not None]
            if not busy or busy[-1] - busy[0] == len(busy) - 1:
                return
            src = busy[-1]
            dst = next(i for i in range(busy[0], src) if slots[i] is None)
            seq = slots[src]
            assert seq is not None
            self.streams.move(src, dst)
            slots[dst], slots[src], seq.slot = seq, None, dst
            self.stats["moves"] += 1

    def _prompts(self, waiting: list[_Seq], budget: int) -> Iterator[tuple[_Seq, str | None]]:
        """Compute waiting prompts, about ``budget`` tokens' worth (at least one group), and sample their first token.

        Removes them from ``waiting``; yields each with its finish reason
        (None: it goes on answering). The budget is what the job computed
        before this step, so it doubles step by step until it no longer
        binds: a small job's first rows are answered after one prompt and a
        few steps, not after every slot's prompt (12 classification prompts
        took 1.1 s of CPU before any row finished), while the steps of a
        long job are as before. Answering sequences step between the
        groups' calls, as each step decodes them before computing prompts.
        """
        waiting.sort(key=lambda s: s.slot)  # groups are runs of consecutive slots
        spent = 0
        while waiting and (not spent or spent < budget):
            group = self.streams.plan(waiting, max(1, min(BATCH_TOKENS, budget - spent)))
            del waiting[: len(group.seqs)]
            rows = self.prefill(group.seqs, group.length)
            spent += group.length * len(group.seqs)
            for s, row in zip(group.seqs, rows, strict=True):
                yield s, self._sample(s, row)

    def decode(self) -> None:
        rc = self.lib.llama_decode(self.ctx, self.batch.raw)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _decode_next(self, seqs: list[_Seq]) -> None:
        """Feed each answering sequence its last sampled token, all in one call."""
        self.batch.set_next([s.generated[-1] for s in seqs], [s.n_past for s in seqs], [s.slot for s in seqs])
        self.decode()
        self.stats["decode_calls"] += 1
        for s in seqs:
            self.streams.held[s.slot].append(s.generated[-1])
            s.n_past += 1

    def prefill(self, seqs: list[_Seq], length: int) -> list[int]:
        """Compute the last ``length`` tokens of each prompt (the rest is reused), in one call if they fit.

        Returns the row of each prompt's last-token logits in the last call.
        """
        for s in seqs:
            self.streams.take(s.slot, s.prompt, len(s.prompt) - length)
        if len(seqs) > 1:
            self.batch.set_prompts([(s.prompt[-length:], len(s.prompt) - length, s.slot) for s in seqs])
            self.decode()
        else:  # one prompt, in near-equal chunks of at most BATCH_TOKENS (none shorter than two tokens)
            s, start = seqs[0], len(seqs[0].prompt) - length
            n_calls = -(-length // BATCH_TOKENS)
            for k in range(n_calls):
                a, b = start + length * k // n_calls, start + length * (k + 1) // n_calls
                self.batch.set_prompts([(s.prompt[a:b], a, s.slot)], logits=k == n_calls - 1)
                self.decode()
        for s in seqs:
            self.streams.held[s.slot] = list(s.prompt)
            s.n_past = len(s.prompt)
        self.stats["prompt_tokens"] += sum(len(s.prompt) for s in seqs)
        self.stats["prompt_tokens_computed"] += length * len(seqs)
        self.stats["prompt_calls"] += 1 if len(seqs) > 1 else -(-length // BATCH_TOKENS)
        return [self.batch.raw.n_tokens - 1] if len(seqs) == 1 else [(k + 1) * length - 1 for k in range(len(seqs))]

    def _sample(self, s: _Seq, index: int) -> str | None:
        """Pick the next token for ``s`` from row ``index`` of the last call's logits; a finish reason when done."""
        ptr = self.lib.llama_get_logits_ith(self.ctx, index)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
        p = s.params
        if s.counts and (p.frequency_penalty or p.presence_penalty):
            logits = logits.copy()
            toks = np.fromiter(s.counts, dtype=np.int64)
            cnt = np.fromiter(s.counts.values(), dtype=np.float32)
            logits[toks] -= cnt * p.frequency_penalty + p.presence_penalty
        token = int(np.argmax(logits)) if p.temperature == 0.0 else draw(logits, p, s.rng)
        if self.lib.llama_vocab_is_eog(self.vocab, token):
            return "stop"
        s.generated.append(token)
        s.counts[token] = s.counts.get(token, 0) + 1
        if p.stop and any(x in self._text(s) for x in p.stop):
            return "stop"
        if s.n_past + 1 >= s.limit:
            return "length"
        return None

    def _text(self, s: _Seq) -> str:
        return self.llm.detokenize(s.generated, prev_tokens=s.prompt).decode("utf-8", errors="ignore")

    def _response(self, s: _Seq, finish: str) -> dict[str, Any]:
        text = self._text(s)
        if s.params.stop:
            cut = min((i for i in (text.find(x) for x in s.params.stop) if i >= 0), default=-1)
            if cut >= 0:
                text = text[:cut]
        return chat_completion(s.custom_id, self.name, text, finish, len(s.prompt), len(s.generated))


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
