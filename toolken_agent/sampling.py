"""Picking the next token from the joint logits ``[vocab ; toolkens]``: greedy or sampled.

Sampling is transformers' own ``TemperatureLogitsWarper`` and ``TopPLogitsWarper`` (the
ones ``generate`` uses), applied to the joint logits, so a toolken is sampled exactly as
a word is: ``temperature`` divides every logit, and ``top_p`` keeps the smallest set of
candidates, words and toolkens together, holding that much probability.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

__all__ = ["sample"]


def sample(logits: torch.Tensor, *, temperature: float = 0.0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> int:
    """The next token id from ``logits`` ``(V + n_tools,)``: greedy when ``temperature`` is 0.

    ``generator`` makes sampling reproducible (``DecodeConfig.seed``).
    """
    if temperature <= 0:
        return int(torch.argmax(logits))
    scores = _warpers(float(temperature), float(top_p))(_NO_IDS, logits.float()[None])  # (1, V + n)
    probs = torch.softmax(scores[0], dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


_NO_IDS = torch.zeros((1, 0), dtype=torch.long)  # the warpers' input_ids, which neither reads


@lru_cache(maxsize=16)
def _warpers(temperature: float, top_p: float) -> Any:
    """transformers' warper chain for these settings (built once per pair: building validates them)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    chain = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p))
    return chain
