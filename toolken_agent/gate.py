"""Whether to call a tool, as its own calibrated probability.

The toolken head answers *which* tool; the gate answers *whether* to call one at a
decision point (a reply's start, or right after a call)::

    p(call | h) = sigmoid(w . (h - mean) / scale  +  a * margin  +  c)
    margin      = max_k toolken_logit_k(h) - max_v word_logit_v(h)

A call is made where ``p >= threshold``, with the best toolken; elsewhere the toolkens
are masked and the LM writes words. Why a gate of its own: the head's margin alone
must serve both questions, so its firing rate is whatever the training positions made
it, and positions the data never showed (the reply after a tool result, requests about
nothing the tools do) fire at random. A logistic gate over the hidden state learns
those positions apart, gives a probability that can be thresholded for a target
false-positive rate, and is a knob (``threshold``) a user can turn.

An untrained gate (``w = 0, a = 1, c = 0``) fires exactly where the head's best toolken
beats the best word at threshold 0.5: the plain ToolkenGPT rule, which zero-shot
toolkens keep (their bias is calibrated instead, :mod:`toolken_agent.calibration`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .defaults import FIT

TARGET_FALSE_POSITIVES = FIT.call_false_positives  # default share of no-call decisions allowed to fire


class CallGate(nn.Module):
    """Logistic regression on ``[(h - mean) / scale ; margin]``; fp32 like the head."""

    def __init__(self, hidden_size: int, *, threshold: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size))  # (d,)
        self.margin_weight = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("mean", torch.zeros(hidden_size))  # (d,)
        self.register_buffer("scale", torch.ones(hidden_size))  # (d,)
        self.threshold = threshold

    def logit(self, hidden: torch.Tensor, tool_logits: torch.Tensor, best_word: torch.Tensor) -> torch.Tensor:
        """Gate logits ``(...)`` from hidden states ``(..., d)``, toolken logits ``(..., n)`` and best word logits ``(...)``."""
        margin = tool_logits.float().amax(dim=-1) - best_word.float()
        z = (hidden.float() - self.mean) / self.scale
        return z @ self.weight + self.margin_weight * margin + self.bias

    def probability(self, hidden: torch.Tensor, tool_logits: torch.Tensor, best_word: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(hidden, tool_logits, best_word))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The gate as named fp32 tensors, for the checkpoint."""
        return {"gate_weight": self.weight.detach().float(), "gate_margin_weight": self.margin_weight.detach().float(),
                "gate_bias": self.bias.detach().float(), "gate_mean": self.mean.float(), "gate_scale": self.scale.float()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], threshold: float) -> "CallGate":
        gate = cls(int(tensors["gate_weight"].shape[0]), threshold=threshold)
        with torch.no_grad():
            gate.weight.copy_(tensors["gate_weight"])
            gate.margin_weight.copy_(tensors["gate_margin_weight"].reshape(()))
            gate.bias.copy_(tensors["gate_bias"].reshape(()))
            gate.mean.copy_(tensors["gate_mean"])
            gate.scale.copy_(tensors["gate_scale"])
        return gate


def fit_gate(hidden: torch.Tensor, tool_logits: torch.Tensor, best_word: torch.Tensor, calls: torch.Tensor, *,
             l2: float = 1e-2, steps: int = 300) -> CallGate:
    """Fit a gate on decision rows: ``calls`` ``(m,)`` is True where the gold move was a call.

    Classes are weighted equally (a data set of calls with a few answers in words would
    otherwise teach "always call"), and an L2 penalty on ``w`` keeps a few hundred rows
    of a 576- or 896-dimensional state from being memorized.
    """
    gate = CallGate(int(hidden.shape[-1]))
    hidden = hidden.float()
    with torch.no_grad():
        gate.mean.copy_(hidden.mean(dim=0))
        gate.scale.copy_(hidden.std(dim=0).clamp(min=1e-4))
    y = calls.float()
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return gate  # one class only: keep the head's own rule
    weights = torch.where(calls, 0.5 / n_pos, 0.5 / n_neg)
    optimizer = torch.optim.LBFGS(gate.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    tool_logits, best_word = tool_logits.detach().float(), best_word.detach().float()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = gate.logit(hidden, tool_logits, best_word)
        loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * weights).sum()
        loss = loss + l2 * gate.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return gate


def choose_threshold(probabilities: torch.Tensor, calls: torch.Tensor, *,
                     target: float = TARGET_FALSE_POSITIVES) -> float:
    """The threshold that gets the most calls right while at most ``target`` of no-call rows fire.

    Among equally good thresholds, the one that fires on fewest no-call rows; and since
    every threshold between two neighbouring rows does the same on these rows, the
    middle of that gap (in logits), which leaves the most room on both sides for rows
    not seen here, as a maximum-margin boundary does. Without no-call rows, 0.5.
    """
    if not bool((~calls).any()):
        return 0.5
    eps = 1e-4
    levels = sorted({min(max(float(p), eps), 1 - eps) for p in probabilities.tolist()})
    best_key, best_gap = None, (0.5, 0.5)
    for i, t in enumerate(levels + [1.0]):  # threshold t (just above the previous level) fires rows with p >= t
        false_positive = float((probabilities[~calls] >= t).float().mean())
        if false_positive > target + 1e-9:
            continue
        hits = float((probabilities[calls] >= t).float().mean()) if bool(calls.any()) else 0.0
        key = (hits, -false_positive)
        if best_key is None or key > best_key:
            best_key, best_gap = key, (levels[i - 1] if i > 0 else eps, min(t, 1 - eps))
    low, high = (torch.logit(torch.tensor(x)).item() for x in best_gap)
    return float(torch.sigmoid(torch.tensor((low + high) / 2)))
