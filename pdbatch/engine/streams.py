"""What each KV stream holds, and how new prompts reuse it and are grouped into calls.

The engine gives every sequence slot its own KV stream. A finished row leaves
its prompt there, so the next prompt in that slot starts from what it shares
with it, for free; another slot's stream can be copied over (a whole-stream
copy, about 5 ms for 2048 cells, worth about 1.5 prompt tokens) when it
shares more. Prompts built from one template share the chat template's
header and the instruction, so after the first prompt of a job only the
row-specific part is computed: what llama-cpp-python's loop gets from its
prompt cache, for every slot at once.

Reuse is exact. A token's keys and values depend only on the tokens before
it, and llama.cpp's tiled kernels compute each element alike whatever the
number of tokens in the call, as long as it is at least two: a one-token call
takes the single-token kernels, which round differently. So at least
:data:`MIN_SUFFIX` prompt tokens are always computed, as the loop does for
any prompt that differs from the previous one in more than its last token.

Prompts of equal remaining length in consecutive slots are computed in one
call: with one KV stream per sequence llama.cpp makes one graph computation
of a call only when every sequence in it has the same number of tokens and
the sequence ids are consecutive. A call costs about 15 ms of fixed work
(streaming every weight once) plus about 3 ms per token on one core, so a
group of eight 20-token prompts takes about 17% less than eight calls. A
prompt may recompute up to :data:`PAD_TOKENS` more of its reusable start to
match a group's length, which costs less than a call of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .batch import common_prefix

MIN_SUFFIX = 2  # prompt tokens always computed: a one-token call takes llama.cpp's other kernels
COPY_MIN = 4  # copy another stream only when it saves this many tokens more than the slot's own
PAD_TOKENS = 4  # tokens of reusable start a prompt may recompute per prompt it is grouped with


class Prompted(Protocol):
    """What grouping needs of a sequence: its slot and prompt."""

    slot: int
    prompt: list[int]


@dataclass
class Group:
    """Prompts computed in one ``llama_decode`` call, each from position ``len(prompt) - length``."""

    seqs: list[Any]
    length: int  # tokens computed per prompt


class Streams:
    """The tokens each KV stream holds, from position 0, and their reuse.

    Parameters
    ----------
    lib : module
        ``llama_cpp`` (for the memory calls).
    memory : llama_memory_t
        The context's memory.
    n : int
        Number of streams (one per sequence slot).
    """

    def __init__(self, lib: Any, memory: Any, n: int) -> None:
        self._c = lib
        self.memory = memory
        self.held: list[list[int]] = [[] for _ in range(n)]

    def reusable(self, slot: int, prompt: Sequence[int], exclude: Sequence[int] = ()) -> int:
        """How many tokens of ``prompt``'s start ``slot`` can get from its own or another stream.

        Streams in ``exclude`` are left out (they are about to be cut back).
        """
        limit = len(prompt) - MIN_SUFFIX
        own = common_prefix(self.held[slot], prompt, limit)
        other = max((common_prefix(held, prompt, limit) for d, held in enumerate(self.held)
                     if d != slot and d not in exclude), default=0)
        return other if other >= own + COPY_MIN else own

    def take(self, slot: int, prompt: Sequence[int], start: int) -> None:
        """Make ``slot``'s stream hold exactly ``prompt[:start]`` (copying another stream if needed)."""
        own = common_prefix(self.held[slot], prompt, start)
        donor = slot
        if own < start:
            donor = next(d for d, held in enumerate(self.held) if common_prefix(held, prompt, start) == start)
            # llama.cpp copies the stream at the start of the next llama_decode, before it writes anything
            self._c.llama_memory_seq_cp(self.memory, donor, slot, -1, -1)
        self._c.llama_memory_seq_rm(self.memory, slot, start, -1)
        self.held[slot] = self.held[donor][:start]

    def move(self, src: int, dst: int) -> None:
        """Move ``src``'s stream to the empty slot ``dst`` (a whole-stream copy at the next ``llama_decode``)."""
        # llama.cpp resets dst's cells and copies the buffers before the next call computes anything, so
        # src's cells can be dropped now: nothing writes to src's stream before the copy
        self._c.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
        self._c.llama_memory_seq_rm(self.memory, src, -1, -1)
        self.held[dst], self.held[src] = self.held[src], []

    def plan(self, pending: list[Any], capacity: int) -> Group:
        """The next group of ``pending`` prompts (in slot order) to compute, after the first one.

        A prompt joins when its slot follows the group's last, the group
        still fits in ``capacity`` tokens, and it would not reuse more by
        waiting until a group member's prompt is computed.
        """
        head = pending[0]
        group = Group([head], len(head.prompt) - self.reusable(head.slot, head.prompt))
        padding = 0
        for s in pending[1:]:
            if s.slot != group.seqs[-1].slot + 1:
                break
            # the members' streams are cut back before this one's is filled: not donors
            reuse = self.reusable(s.slot, s.prompt, exclude=[m.slot for m in group.seqs])
            if any(common_prefix(m.prompt, s.prompt, len(s.prompt) - MIN_SUFFIX) >= reuse + COPY_MIN
                   for m in group.seqs):
                break  # it shares more with a prompt computed in this call: let it wait for it
            own = len(s.prompt) - reuse
            new_length = max(group.length, own)
            new_padding = padding + (new_length - group.length) * len(group.seqs) + (new_length - own)
            if (new_length * (len(group.seqs) + 1) > capacity or new_padding > PAD_TOKENS * len(group.seqs)
                    or any(new_length > len(m.prompt) for m in (*group.seqs, s))):
                break
            group.seqs.append(s)
            group.length, padding = new_length, new_padding
        return group
