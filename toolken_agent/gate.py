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

A gate may also have a *reach*: the training calls' toolken-logit vectors (anchors) and
a radius. A call is made only where the mean distance to the nearest anchors is within
the radius, so a request about nothing the training calls were about stays off even
where the logistic part, which saw few such requests, would fire. The radius is set
like a split-conformal bound (:func:`fit_reach`): at most ``miss`` of calls from the
held-out distribution fall outside it, and with too few held-out calls to promise that
there is no radius at all.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .defaults import FIT

TARGET_FALSE_POSITIVES = FIT.call_false_positives  # default share of no-call decisions allowed to fire
REACH_NEIGHBOURS = 5  # distance to the training calls: the mean over this many nearest (one stray anchor is not enough)
MAX_ANCHORS = 4096  # training calls kept as anchors (a seeded sample above that): a decode step's cost stays small


class CallGate(nn.Module):
    """Logistic regression on ``[(h - mean) / scale ; margin]``; fp32 like the head."""

    def __init__(self, hidden_size: int, *, threshold: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size))  # (d,)
        self.margin_weight = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("mean", torch.zeros(hidden_size))  # (d,)
        self.register_buffer("scale", torch.ones(hidden_size))  # (d,)
        self.register_buffer("anchors", torch.zeros(0, 0))  # (k, n_tools): training calls' toolken logits; none: no reach
        self.threshold = threshold
        self.radius = math.inf

    def logit(self, hidden: torch.Tensor, tool_logits: torch.Tensor, best_word: torch.Tensor) -> torch.Tensor:
        """Gate logits ``(...)`` from hidden states ``(..., d)``, toolken logits ``(..., n)`` and best word logits ``(...)``."""
        margin = tool_logits.float().amax(dim=-1) - best_word.float()
        z = (hidden.float() - self.mean) / self.scale
        return z @ self.weight + self.margin_weight * margin + self.bias

    def probability(self, hidden: torch.Tensor, tool_logits: torch.Tensor, best_word: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(hidden, tool_logits, best_word))

    def distance(self, tool_logits: torch.Tensor) -> torch.Tensor:
        """Mean distance ``(...)`` from toolken logits ``(..., n)`` to their nearest anchors; 0 without anchors."""
        if self.anchors.numel() == 0:
            return torch.zeros(tool_logits.shape[:-1])
        flat = tool_logits.detach().float().reshape(-1, tool_logits.shape[-1])
        return _mean_of_nearest(torch.cdist(flat, self.anchors)).reshape(tool_logits.shape[:-1])

    def within_reach(self, tool_logits: torch.Tensor) -> torch.Tensor:
        """Where ``(...)`` the toolken logits lie within the radius of the training calls (everywhere without one)."""
        if math.isinf(self.radius) or self.anchors.numel() == 0:
            return torch.ones(tool_logits.shape[:-1], dtype=torch.bool)
        return self.distance(tool_logits) <= self.radius

    def fires(self, hidden: torch.Tensor, tool_logits: torch.Tensor, best_word: torch.Tensor, *,
              threshold: float | None = None, tool_bias: float = 0.0) -> torch.Tensor:
        """Where ``(...)`` a call is made: probability at the threshold and within reach.

        ``tool_logits`` are the head's own; a ``tool_bias`` lifts the margin the
        probability reads, not where the call lies, so the reach reads them unbiased.
        """
        threshold = self.threshold if threshold is None else threshold
        return (self.probability(hidden, tool_logits + tool_bias, best_word) >= threshold) \
            & self.within_reach(tool_logits)

    def select(self, indices: list[int]) -> "CallGate":
        """This gate for a head over a subset of the toolkens, in the given order.

        Distances over fewer toolkens' logits are never larger, so the radius only widens.
        """
        if self.anchors.numel() == 0:
            return self
        gate = copy.copy(self)
        gate._buffers = {**self._buffers, "anchors": self.anchors[:, indices]}
        return gate

    def tensors(self) -> dict[str, torch.Tensor]:
        """The gate as named fp32 tensors, for the checkpoint."""
        tensors = {"gate_weight": self.weight.detach().float(), "gate_margin_weight": self.margin_weight.detach().float(),
                   "gate_bias": self.bias.detach().float(), "gate_mean": self.mean.float(), "gate_scale": self.scale.float()}
        if self.anchors.numel() and not math.isinf(self.radius):
            tensors.update(gate_anchors=self.anchors.float(), gate_radius=torch.tensor(self.radius))
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], threshold: float) -> "CallGate":
        gate = cls(int(tensors["gate_weight"].shape[0]), threshold=threshold)
        with torch.no_grad():
            gate.weight.copy_(tensors["gate_weight"])
            gate.margin_weight.copy_(tensors["gate_margin_weight"].reshape(()))
            gate.bias.copy_(tensors["gate_bias"].reshape(()))
            gate.mean.copy_(tensors["gate_mean"])
            gate.scale.copy_(tensors["gate_scale"])
        if "gate_anchors" in tensors and "gate_radius" in tensors:  # checkpoints before the reach have neither
            gate.anchors = tensors["gate_anchors"].float()
            gate.radius = float(tensors["gate_radius"])
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


def fit_reach(gate: CallGate, anchors: torch.Tensor, held: torch.Tensor, *, miss: float, seed: int = 0,
              anchor_owner: torch.Tensor | None = None, held_owner: torch.Tensor | None = None) -> dict:
    """Give ``gate`` a reach: ``anchors`` ``(m, n)`` the training calls' toolken logits, ``held`` ``(h, n)`` held-out calls'.

    The radius is the ``ceil((h + 1) * (1 - miss))``-th smallest held-out distance, the
    split-conformal rank: a new call drawn like the held-out ones lies outside it with
    probability at most ``miss``. When that rank exceeds ``h`` (too few held-out calls
    to promise it), the gate gets no reach. Where the held-out calls are among the
    anchors too (real requests trained on), ``anchor_owner`` ``(m,)`` and ``held_owner``
    ``(h,)`` name each row's example, and a held-out call is measured against the other
    examples' anchors only, as a new request would be. Returns the figures for the fit report.
    """
    if len(anchors) > MAX_ANCHORS:
        keep = torch.randperm(len(anchors), generator=torch.Generator().manual_seed(seed))[:MAX_ANCHORS].sort().values
        anchors = anchors[keep]
        anchor_owner = anchor_owner[keep] if anchor_owner is not None else None
    rank = math.ceil((len(held) + 1) * (1 - miss))
    if len(anchors) == 0 or len(held) == 0 or rank > len(held):
        gate.anchors, gate.radius = torch.zeros(0, 0), math.inf
        return {"radius": None, "held_out_calls": len(held), "miss": miss,
                "why_none": f"{len(held)} held-out calls; a radius for a miss rate of {miss:g} needs {_calls_needed(miss)}"}
    gate.anchors = anchors.detach().float()
    if anchor_owner is None or held_owner is None:
        distances = gate.distance(held)
    else:
        d = torch.cdist(held.detach().float(), gate.anchors)
        d[held_owner[:, None] == anchor_owner[None, :]] = float("inf")  # its own example's anchors do not count
        distances = _mean_of_nearest(d)
    gate.radius = float(distances.sort().values[rank - 1])
    return {"radius": gate.radius, "held_out_calls": len(held), "miss": miss, "anchors": len(anchors)}


def _mean_of_nearest(distances: torch.Tensor) -> torch.Tensor:
    """Per row of ``distances`` ``(m, k)``: the mean of the :data:`REACH_NEIGHBOURS` smallest finite ones."""
    k = min(REACH_NEIGHBOURS, int(distances.shape[-1]))
    nearest = distances.topk(k, dim=-1, largest=False).values
    finite = torch.isfinite(nearest)
    return torch.where(finite, nearest, 0.0).sum(dim=-1) / finite.sum(dim=-1).clamp(min=1)


def _calls_needed(miss: float) -> int:
    """The fewest held-out calls for which :func:`fit_reach` sets a radius at ``miss``."""
    return next(h for h in range(1, 10**7) if math.ceil((h + 1) * (1 - miss)) <= h)
