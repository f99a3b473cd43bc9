"""The toolken head: one output row per tool, beside the frozen vocabulary.

Next-token logits are the vocabulary logits with the toolken logits appended::

    joint = [ lm_head(h) ; W h + b ]        # (..., V + n_tools)

When index ``V + k`` wins, the model is calling tool ``k``. ``W`` (and the optional
per-toolken bias ``b``, which calibrates how readily each toolken fires) are the only
trained weights; they stay fp32 whatever the LM's dtype. With toolkens masked the
joint logits are exactly the base model's logits.

With ``mix < 1`` the trained rows still decide *whether* a toolken fires (the largest
toolken logit is unchanged), but *which* tool is ranked by the weight-space ensemble
``mix * (W, b) + (1 - mix) * (W_prior, b_prior)`` of the trained head and the untrained,
calibrated one (WiSE-FT, Wortsman et al. 2022). Why: toolkens trained on synthetic texts
learn those texts' contexts, while the description priors know only what each tool is
for, so on real questions a blend of the two can rank tools better than either
(docs/design-notes.md, "real check requests"). Gating with the trained head keeps its
quiet mid-reply, which the priors lack. Rows bound untrained rank with ``mix = 0``
(standardized, :mod:`toolken_agent.calibration`); a trained head has ``mix = 1`` unless
real check requests chose another, cross-fitted
(:func:`~toolken_agent.training.cross_fitted_mix`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gate import CallGate


class ToolkenHead(nn.Module):
    """``W`` ``(n_tools, d)`` initialized from prior rows; ``prior`` kept for the regularizer.

    ``prior_bias`` is the bias the head started from (see :meth:`anchor_bias`), the
    other end of the ``mix``.
    """

    def __init__(self, prior: torch.Tensor, *, bias: bool = True, mix: float = 1.0):
        super().__init__()
        prior = prior.detach().float()
        self.weight = nn.Parameter(prior.clone())  # (n_tools, d)
        self.register_buffer("prior", prior.clone())  # (n_tools, d)
        self.bias = nn.Parameter(torch.zeros(prior.shape[0])) if bias else None  # (n_tools,)
        self.register_buffer("prior_bias", torch.zeros(prior.shape[0]))  # (n_tools,)
        self.mix = mix  # weight of the trained rows in the tool choice; 1: the plain head
        self.gate: CallGate | None = None  # whether to call (toolken_agent.gate); None: the head's own margin

    def anchor_bias(self) -> None:
        """Record the current bias (the zero-shot calibration, before training) as ``prior_bias``."""
        if self.bias is not None:
            with torch.no_grad():
                self.prior_bias.copy_(self.bias)

    @property
    def n_tools(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Toolken logits ``(..., n_tools)`` from final hidden states ``(..., d)``, in fp32."""
        hidden = hidden.float()
        logits = F.linear(hidden, self.weight, self.bias)
        if self.mix >= 1.0 or self.n_tools == 0:
            return logits
        a = self.mix
        bias = None if self.bias is None else a * self.bias + (1 - a) * self.prior_bias
        choice = F.linear(hidden, a * self.weight + (1 - a) * self.prior, bias)
        return choice - choice.amax(dim=-1, keepdim=True) + logits.amax(dim=-1, keepdim=True)

    def regularizer(self) -> torch.Tensor:
        """``||W - W_prior||`` (Frobenius, not squared, as in the paper's code)."""
        return torch.linalg.norm(self.weight - self.prior)

    def select(self, indices: list[int]) -> "ToolkenHead":
        """A head over a subset of the toolkens, in the given order (weights copied)."""
        head = ToolkenHead(self.prior[indices], bias=self.bias is not None, mix=self.mix)
        with torch.no_grad():
            head.weight.copy_(self.weight[indices])
            head.prior_bias.copy_(self.prior_bias[indices])
            if self.bias is not None:
                head.bias.copy_(self.bias[indices])
        head.gate = self.gate.select(indices) if self.gate is not None else None  # its anchors' columns follow the toolkens
        return head


def joint_logits(vocab_logits: torch.Tensor, toolken_logits: torch.Tensor, *, toolkens: bool = True) -> torch.Tensor:
    """``[vocab ; toolkens]`` along the last axis; masked toolkens are ``-inf``."""
    if not toolkens:
        toolken_logits = torch.full_like(toolken_logits, float("-inf"))
    return torch.cat([vocab_logits.float(), toolken_logits.float()], dim=-1)
