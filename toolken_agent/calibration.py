"""Calibrating untrained toolkens so that they fire when, and only when, they should.

A toolken built from its prior alone (a tool bound without training) has the right
direction but no sense of *how high* its logit must be to win: the LM-head prior of
``get weather`` scores about as high as the LM would score saying "get weather", which
at the start of a reply is rarely the top word. So each zero-shot toolken gets a bias
read off requests that need no tool (the built-in negatives of :mod:`toolken_agent.data`):
the bias puts the toolken just below the best word on the negative request where it came
closest to winning. A request about the tool's subject then lifts it over the line.
"""

from __future__ import annotations

import threading
from typing import Sequence

import torch

from .chat_format import ChatFormat
from .conversation import Message
from .data import NEGATIVE_EXAMPLES
from .features import Features
from .model import FrozenLM

MARGIN = 0.5  # logits below the closest negative; small, so related requests still fire

_DECISIONS: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
_LOCK = threading.Lock()


@torch.inference_mode()
def reply_start_decisions(lm: FrozenLM, requests: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states ``(m, d)`` and best word logits ``(m,)`` where replies to ``requests`` start."""
    fmt = ChatFormat(lm.tokenizer, [], lm.vocab_size)
    hidden, best = [], []
    for request in requests:
        ids = fmt.render([Message("user", request)], add_generation_prompt=True).input_ids
        h, _ = lm.hidden_states(torch.tensor([ids], device=lm.device))
        hidden.append(h[0, -1].float().cpu())
        best.append(lm.vocab_logits(h[0, -1]).float().max().cpu())
    return torch.stack(hidden), torch.stack(best)


def negative_decisions(lm: FrozenLM) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`reply_start_decisions` for the built-in negatives, computed once per loaded model."""
    with _LOCK:
        if id(lm) not in _DECISIONS:
            _DECISIONS[id(lm)] = reply_start_decisions(lm, [prompt for prompt, _ in NEGATIVE_EXAMPLES])
        return _DECISIONS[id(lm)]


def as_no_call_features(lm: FrozenLM, hidden: torch.Tensor, best: torch.Tensor) -> Features:
    """Reply-start rows as decision points where no toolken should fire (scoring only: no loss terms)."""
    n = int(best.shape[0])
    return Features(hidden=hidden, vocab_lse=torch.zeros(n), vocab_max=best, target_logit=torch.zeros(n),
                    target=torch.zeros(n, dtype=torch.long), decision=torch.ones(n, dtype=torch.bool),
                    example=torch.arange(n), vocab_size=lm.vocab_size)


def zero_shot_bias(lm: FrozenLM, rows: torch.Tensor, *, margin: float = MARGIN) -> torch.Tensor:
    """A bias ``(n,)`` per toolken row so that no negative request makes it fire."""
    if rows.shape[0] == 0:
        return torch.zeros(0)
    hidden, best = negative_decisions(lm)
    gap = rows.detach().float() @ hidden.T - best[None, :]  # (n, m): toolken minus best word
    return -(gap.max(dim=1).values + margin)
