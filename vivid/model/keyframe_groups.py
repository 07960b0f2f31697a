"""Running a transformer's blocks in groups of keyframes during the joint keyframe pass, so that its memory is
bounded by one group's activations plus what every keyframe must keep.

Each block of a joint pass over K keyframes runs in two phases. Collect: the block runs on each group of G keyframes
until its self-attention, whose joint processor stores the group's keys, values and matching features and stops the
block (`KeysCollected`). Attend: the block runs whole on each group, its self-attention attending the group's queries
to the stored keys and values of ALL keyframes, so the result is the one-batch result up to float rounding. What all
K keyframes hold at once is then the residual stream (block input and output), the keys and values and the matching
features, about (4 L + N) D values per keyframe row (L own tokens, N video tokens, D the width); the attention's
projections and the feed-forward's inner activations (3 D + 2 F per token, F the FFN width: the largest set in a
block) are held for G keyframes only.

G is the options' `keyframe_group`, or chosen from a memory budget at the first block (`group_for_memory`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

class KeysCollected(Exception):
    """Raised by a joint processor in the collect phase once it has stored its group's keys and values: the rest of
    the block is not needed until the attend phase."""


@dataclass
class GroupPass:
    """One grouped block call's state, shared by the block runner and the block's joint attention processor.
    `phase`: "whole" (no groups: the processor sees the whole batch), "collect" or "attend"; `rows`: the batch rows
    the processor is given in this call; `keys`/`values` (B, H, S, d) and `features` (B, N, D): every row's, filled
    in the collect phase."""

    phase: str = "whole"
    rows: slice = field(default_factory=lambda: slice(None))
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    features: torch.Tensor | None = None
    batch: int = 0

    def store(self, keys: torch.Tensor, values: torch.Tensor, features: torch.Tensor) -> None:
        """Keep the keys, values and features of `rows` (given for those rows only)."""
        if self.keys is None:
            self.keys = keys.new_empty((self.batch, *keys.shape[1:]))
            self.values = values.new_empty((self.batch, *values.shape[1:]))
            self.features = features.new_empty((self.batch, *features.shape[1:]))
        self.keys[self.rows], self.values[self.rows], self.features[self.rows] = keys, values, features

    def reset(self, phase: str = "whole", batch: int = 0) -> None:
        self.phase, self.rows, self.batch = phase, slice(None), batch
        self.keys = self.values = self.features = None


@dataclass(frozen=True)
class BlockSizes:
    """What one block of the joint pass holds: `rows` batch rows for `keyframes` keyframes (a row per keyframe and
    guidance half), each of `own` tokens (those the self-attention reads per keyframe), `video` of them video tokens,
    width `width`, FFN width `ffn`, `heads` heads, each query keyframe attending to `own + others` keys; `element`
    bytes per value; `scores`: whether the attention materialises its score matrix (the math kernel, not a fused
    one)."""

    keyframes: int
    rows: int
    own: int
    video: int
    width: int
    ffn: int
    heads: int
    others: int
    element: int
    scores: bool

    def group_bytes(self, group: int) -> int:
        """Bytes a group of `group` keyframes holds at once in a block: per row the block's largest live set,
        residual + norm output + the FFN's inner activation and its GELU, (3 D + 2 F) per token; per query keyframe
        of one attention call its gathered keys and values, and its score matrix where the kernel keeps one
        (fp32)."""
        per_row = self.own * (3 * self.width + 2 * self.ffn) * self.element
        per_query = 2 * (self.own + self.others) * self.width * self.element
        if self.scores:
            per_query += self.heads * self.own * (self.own + self.others) * 4
        return group * (self.rows // self.keyframes * per_row + per_query)

    def resident(self) -> int:
        """Bytes every row keeps while a block runs in groups: input, output, keys and values of its own tokens,
        and its video tokens' matching features."""
        return self.rows * (4 * self.own + self.video) * self.width * self.element


def group_for_memory(sizes: BlockSizes, budget_bytes: float) -> int:
    """All keyframes when one batch fits in `budget_bytes`, else the most per group (at least 1) that fit beside
    what every row keeps."""
    if sizes.group_bytes(sizes.keyframes) <= budget_bytes:
        return sizes.keyframes
    spare = budget_bytes - sizes.resident()
    return max(1, min(sizes.keyframes, int(spare // sizes.group_bytes(1))))


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` now: the CUDA allocator's free plus cached-but-unused memory, else the host's
    available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    import psutil

    return int(psutil.virtual_memory().available)


def _batch_of(args: tuple, kwargs: dict) -> int:
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    return hidden.shape[0]


def _rows_of(args: tuple, kwargs: dict, rows: slice, batch: int) -> tuple[tuple, dict]:
    """The block's arguments for batch rows `rows`: every tensor with one row per batch item sliced (hidden
    states, text, time embedding, VACE's control states), the rest (rotary embedding tuples, attention kwargs) as
    given."""

    def cut(value):
        return value[rows] if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == batch else value

    return tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}


def _concat(outputs: list):
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outputs))
    return torch.cat(outputs)


def group_rows(batch: int, n_keyframes: int, group: int) -> list[slice]:
    """Row slices of at most `group` keyframes, each within one set of `n_keyframes` rows (a guidance half)."""
    return [slice(s + c, s + min(n_keyframes, c + group))
            for s in range(0, batch, n_keyframes) for c in range(0, n_keyframes, group)]


def run_in_groups(forward: Callable, state: GroupPass, n_keyframes: int, group: int, args: tuple, kwargs: dict):
    """`forward(*args, **kwargs)` of one block, run per group of `group` keyframes in the collect and attend
    phases (see the module's docstring); the whole batch at once where one group holds every keyframe."""
    batch = _batch_of(args, kwargs)
    if group >= n_keyframes:
        return forward(*args, **kwargs)
    chunks = group_rows(batch, n_keyframes, group)
    state.reset("collect", batch)
    try:
        for rows in chunks:
            state.rows = rows
            sliced_args, sliced_kwargs = _rows_of(args, kwargs, rows, batch)
            try:
                forward(*sliced_args, **sliced_kwargs)
            except KeysCollected:
                continue
            raise RuntimeError("the block ran without its joint self-attention collecting keys")
        state.phase = "attend"
        outputs = []
        for rows in chunks:
            state.rows = rows
            sliced_args, sliced_kwargs = _rows_of(args, kwargs, rows, batch)
            outputs.append(forward(*sliced_args, **sliced_kwargs))
    finally:
        state.reset()
    return _concat(outputs)


@contextmanager
def blocks_in_groups(blocks: list[torch.nn.Module], run: Callable[[torch.nn.Module, Callable, tuple, dict], object]
                     ) -> Iterator[None]:
    """Within the block, calling any of `blocks` calls `run(block, its_forward, args, kwargs)` instead; their own
    forwards come back afterwards, also on error."""
    patched = {block: block.__dict__.get("forward") for block in blocks}  # an instance's own forward, if any
    for block in blocks:
        block.forward = (lambda b, f: lambda *a, **k: run(b, f, a, k))(block, block.forward)
    try:
        yield
    finally:
        for block, own in patched.items():
            if own is None:
                del block.forward
            else:
                block.forward = own
