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

from typing import Callable, Sequence

import torch

from .chat_format import ChatFormat
from .conversation import Message
from .data import NEGATIVE_EXAMPLES
from .features import Features
from .head import ToolkenHead
from .memo import memo
from .engine import LanguageModel
from .priors import DEFAULT_PRIOR, build_priors
from .tool import ToolSpec

MARGIN = 0.5  # logits below the closest negative; small, so related requests still fire


@torch.inference_mode()
def reply_start_decisions(lm: LanguageModel, requests: Sequence[str], *,
                          on_request: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states ``(m, d)`` and best word logits ``(m,)`` where replies to ``requests`` start.

    ``on_request`` is called after each request (a progress bar's tick).
    """
    fmt = ChatFormat(lm.tokenizer, [], lm.vocab_size)
    hidden, best = [], []
    for request in requests:
        ids = fmt.render([Message("user", request)], add_generation_prompt=True).input_ids
        h = lm.final_hidden(torch.tensor([ids]))
        hidden.append(h[0, -1].float().cpu())
        best.append(lm.vocab_logits(h[0, -1]).float().max().cpu())
        if on_request is not None:
            on_request()
    return torch.stack(hidden), torch.stack(best)


def negative_decisions(lm: LanguageModel, *, on_request: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`reply_start_decisions` for the built-in negatives, computed once per loaded model."""
    return memo(lm, "negative_decisions", lambda: reply_start_decisions(lm, [prompt for prompt, _ in NEGATIVE_EXAMPLES],
                                                                        on_request=on_request))


def as_no_call_features(lm: LanguageModel, hidden: torch.Tensor, best: torch.Tensor) -> Features:
    """Reply-start rows as decision points where no toolken should fire (scoring only: no loss terms)."""
    n = int(best.shape[0])
    return Features(hidden=hidden, vocab_lse=torch.zeros(n), vocab_max=best, target_logit=torch.zeros(n),
                    target=torch.zeros(n, dtype=torch.long), decision=torch.ones(n, dtype=torch.bool),
                    example=torch.arange(n), vocab_size=lm.vocab_size)


def zero_shot_bias(lm: LanguageModel, rows: torch.Tensor, *, margin: float = MARGIN) -> torch.Tensor:
    """A bias ``(n,)`` per toolken row so that no negative request makes it fire."""
    if rows.shape[0] == 0:
        return torch.zeros(0)
    hidden, best = negative_decisions(lm)
    gap = rows.detach().float() @ hidden.T - best[None, :]  # (n, m): toolken minus best word
    return -(gap.max(dim=1).values + margin)


def probe_request(spec: ToolSpec) -> str:
    """A request plainly about ``spec``: its description's first line, as a user would ask it."""
    return spec.description.strip().splitlines()[0]


def zero_shot_head(lm: LanguageModel, specs: Sequence[ToolSpec], *, prior: str = DEFAULT_PRIOR) -> ToolkenHead:
    """Toolkens for tools bound without training: *whether* calibrated, *which* standardized.

    Whether: each row's bias keeps it below the best word on every built-in no-tool
    request (:func:`zero_shot_bias`); the head's margin then fires on requests clearly
    about a tool. Which: prior rows score on different scales, and a row that scores
    high everywhere (a hub) wins requests meant for other tools. The choice therefore
    ranks tools by their standardized score, ``(s_k(h) - mean_k) / std_k``, with the
    mean and spread of each row taken over reference requests: the no-tool requests and
    one plain request per bound tool (:func:`probe_request`). That is ``mix = 0`` with
    the standardized rows as the head's other end (:class:`~toolken_agent.head.ToolkenHead`).
    """
    if not specs:
        return ToolkenHead(torch.zeros(0, lm.hidden_size), bias=True)
    rows = torch.stack([memo(lm, f"zero_shot_row:{prior}:{s.fingerprint}",
                             lambda s=s: build_priors(lm, [s], prior if prior != "random" else DEFAULT_PRIOR)[0])
                        for s in specs])  # (n, d)
    head = ToolkenHead(rows, bias=True)
    with torch.no_grad():
        head.bias.copy_(zero_shot_bias(lm, rows))
    probes = torch.stack([memo(lm, f"probe:{s.fingerprint}", lambda s=s: reply_start_decisions(lm, [probe_request(s)])[0][0])
                          for s in specs])  # (n, d)
    reference = torch.cat([negative_decisions(lm)[0], probes])  # (m, d)
    scores = reference @ rows.T  # (m, n)
    mean, std = scores.mean(dim=0), scores.std(dim=0).clamp(min=1e-4)
    with torch.no_grad():
        head.prior.copy_(rows / std[:, None])
        head.prior_bias.copy_(-mean / std)
    head.mix = 0.0
    return head
