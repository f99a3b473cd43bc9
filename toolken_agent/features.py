"""The frozen forward pass, run once: what training needs from the LM, cached.

The LM is frozen and only the toolken head trains, so the cross-entropy at a position
with final hidden state ``h`` and target ``y`` is::

    loss = logaddexp(LSE(z_V), logsumexp(W h + b)) - score(y)
    score(y) = z_V[y]           for a word target
             = (W h + b)[k]     for toolken k

with ``z_V = lm_head(h)`` fixed. Per position that is ``h``, the scalar ``LSE(z_V)``
and, for word targets, the scalar ``z_V[y]``; the max vocabulary logit is kept too, for
fire-or-not accuracy. The vocabulary logits are computed in fp32 and only at target
positions, fused into the same pass, so no epoch ever runs the LM again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

import torch

from .chat_format import Rendered
from .conversation import Conversation
from .errors import DataError
from .parallel import current_shard, gather
from .engine import LanguageModel


@dataclass
class Features:
    """Cached per-position training features; row ``i`` is one target position."""

    hidden: torch.Tensor  # (N, d) fp32 final hidden states
    vocab_lse: torch.Tensor  # (N,) fp32 logsumexp of the vocabulary logits
    vocab_max: torch.Tensor  # (N,) fp32 largest vocabulary logit
    target_logit: torch.Tensor  # (N,) fp32 vocabulary logit of a word target (0 for toolkens)
    target: torch.Tensor  # (N,) long: vocabulary id, or vocab_size + k for toolken k
    decision: torch.Tensor  # (N,) bool: a call-or-not decision point
    example: torch.Tensor  # (N,) long: index of the conversation the row came from
    vocab_size: int

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def tool_target(self) -> torch.Tensor:
        """Toolken index of each row's target, -1 for word targets ``(N,)``."""
        return torch.where(self.target >= self.vocab_size, self.target - self.vocab_size, -1)

    def subset(self, rows: torch.Tensor) -> "Features":
        """Rows selected by a bool mask or an index tensor."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                kwargs[name] = value[rows]
        return Features(**kwargs)

    def extended(self, other: "Features") -> "Features":
        """These rows then ``other``'s, whose examples are renumbered after these."""
        offset = int(self.example.max()) + 1 if len(self) else 0
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                theirs = getattr(other, name) + offset if name == "example" else getattr(other, name)
                kwargs[name] = torch.cat([value, theirs])
        return Features(**kwargs)

    def for_examples(self, examples: Sequence[int]) -> "Features":
        wanted = torch.zeros(int(self.example.max()) + 1 if len(self) else 0, dtype=torch.bool)
        wanted[torch.as_tensor(list(examples), dtype=torch.long)] = True
        return self.subset(wanted[self.example])


def check_context(rendered: Sequence[Rendered], conversations: Sequence[Conversation], lm: LanguageModel) -> None:
    """Refuse a conversation longer than the model's context, naming its ``file:line``.

    The frozen pass over a conversation many times the context ran for many minutes
    (attention grows with the square of the length), and showed no sign of what was
    wrong; positions past the context are ones the model never sees when decoding.
    """
    limit = lm.context_length
    if limit is None:
        return
    for r, conversation in zip(rendered, conversations):
        if len(r.input_ids) > limit:
            where = f"{conversation.source}: " if conversation.source else ""
            raise DataError(f"{where}conversation of {len(r.input_ids):,} tokens is longer than the context of "
                            f"{lm.name} ({limit:,} tokens); split or shorten it")


def plan_batches(rendered: Sequence[Rendered], max_batch_tokens: int) -> list[list[int]]:
    """Sequences sorted by length, packed into batches of at most ``max_batch_tokens`` padded tokens."""
    order = sorted(range(len(rendered)), key=lambda i: -len(rendered[i].input_ids))
    batches, start = [], 0
    while start < len(order):
        longest = max(len(rendered[order[start]].input_ids), 1)
        size = max(1, min(len(order) - start, max_batch_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


@torch.inference_mode()
def extract_features(
    lm: LanguageModel,
    rendered: Sequence[Rendered],
    *,
    max_batch_tokens: int = 4096,
    on_progress: Callable[[int], None] | None = None,
    logit_chunk: int = 1024,
) -> Features:
    """Run the frozen LM once over ``rendered`` and cache what the loss needs.

    Sequences are sorted by length and packed into right-padded batches of at most
    ``max_batch_tokens`` tokens; ``on_progress`` receives the number of tokens done.
    Under several processes (:mod:`toolken_agent.parallel`) each runs its share of the
    batches and all get the features one process would compute, in the same order.
    """
    batches = plan_batches(rendered, max_batch_tokens)
    shard = current_shard()
    local = []
    for b in shard.mine(len(batches)):
        part = _batch_features(lm, rendered, batches[b], logit_chunk)
        tokens = sum(len(rendered[i].input_ids) for i in batches[b])
        if on_progress is not None:
            on_progress(tokens)
        local.append((b, tokens, part))
    everyone = gather(local)
    if on_progress is not None and shard.world > 1:
        on_progress(sum(tokens for b, tokens, _ in everyone if b % shard.world != shard.rank))
    parts = [part for _, _, part in sorted(everyone, key=lambda item: item[0]) if part is not None]
    if not parts:
        d = lm.hidden_size
        empty = torch.zeros(0)
        return Features(torch.zeros(0, d), empty, empty, empty, torch.zeros(0, dtype=torch.long),
                        torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long), lm.vocab_size)
    return Features(**{name: torch.cat([p[name] for p in parts]) for name in parts[0]}, vocab_size=lm.vocab_size)


def _batch_features(lm: LanguageModel, rendered: Sequence[Rendered], batch: Sequence[int],
                    logit_chunk: int) -> dict[str, torch.Tensor] | None:
    """One batch's rows of :class:`Features` (as a dict of CPU tensors), or ``None`` without targets."""
    longest = max(max(len(rendered[i].input_ids) for i in batch), 1)
    pad = lm.tokenizer.pad_token_id or 0
    ids = torch.full((len(batch), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, i in enumerate(batch):
        seq = rendered[i].input_ids
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    hidden = lm.final_hidden(ids, mask)  # (B, T, d)
    rows, targets, decisions, examples = [], [], [], []
    for row, i in enumerate(batch):
        r = rendered[i]
        if r.positions:
            rows.append(hidden[row, torch.tensor(r.positions, device=hidden.device)])
            targets.extend(r.targets)
            decisions.extend(r.decisions)
            examples.extend([i] * len(r.positions))
    if not rows:
        return None
    h = torch.cat(rows).float().cpu()  # (n, d)
    target = torch.tensor(targets, dtype=torch.long)
    lse, best, tlogit = [], [], []
    for lo in range(0, h.shape[0], logit_chunk):
        hc, tc = h[lo : lo + logit_chunk], target[lo : lo + logit_chunk]
        logits = lm.vocab_logits(hc.to(lm.device)).float().cpu()  # (n, V)
        lse.append(torch.logsumexp(logits, dim=-1))
        best.append(logits.max(dim=-1).values)
        word = tc < lm.vocab_size
        tl = torch.zeros(tc.shape[0])
        tl[word] = logits[word, tc[word]]
        tlogit.append(tl)
    return {"hidden": h, "vocab_lse": torch.cat(lse), "vocab_max": torch.cat(best), "target_logit": torch.cat(tlogit),
            "target": target, "decision": torch.tensor(decisions, dtype=torch.bool),
            "example": torch.tensor(examples, dtype=torch.long)}
