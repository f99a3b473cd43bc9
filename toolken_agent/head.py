"""The toolken head: one output row per tool, beside the frozen vocabulary.

Next-token logits are the vocabulary logits with the toolken logits appended::

    joint = [ lm_head(h) ; W h + b ]        # (..., V + n_tools)

When index ``V + k`` wins, the model is calling tool ``k``. ``W`` (and the optional
per-toolken bias ``b``, which calibrates how readily each toolken fires) are the only
trained weights; they stay fp32 whatever the LM's dtype. With toolkens masked the
joint logits are exactly the base model's logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ToolkenHead(nn.Module):
    """``W`` ``(n_tools, d)`` initialized from prior rows; ``prior`` kept for the regularizer."""

    def __init__(self, prior: torch.Tensor, *, bias: bool = True):
        super().__init__()
        prior = prior.detach().float()
        self.weight = nn.Parameter(prior.clone())  # (n_tools, d)
        self.register_buffer("prior", prior.clone())  # (n_tools, d)
        self.bias = nn.Parameter(torch.zeros(prior.shape[0])) if bias else None  # (n_tools,)

    @property
    def n_tools(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Toolken logits ``(..., n_tools)`` from final hidden states ``(..., d)``, in fp32."""
        return F.linear(hidden.float(), self.weight, self.bias)

    def regularizer(self) -> torch.Tensor:
        """``||W - W_prior||`` (Frobenius, not squared, as in the paper's code)."""
        return torch.linalg.norm(self.weight - self.prior)

    def select(self, indices: list[int]) -> "ToolkenHead":
        """A head over a subset of the toolkens, in the given order (weights copied)."""
        head = ToolkenHead(self.prior[indices], bias=self.bias is not None)
        with torch.no_grad():
            head.weight.copy_(self.weight[indices])
            if self.bias is not None:
                head.bias.copy_(self.bias[indices])
        return head


def joint_logits(vocab_logits: torch.Tensor, toolken_logits: torch.Tensor, *, toolkens: bool = True) -> torch.Tensor:
    """``[vocab ; toolkens]`` along the last axis; masked toolkens are ``-inf``."""
    if not toolkens:
        toolken_logits = torch.full_like(toolken_logits, float("-inf"))
    return torch.cat([vocab_logits.float(), toolken_logits.float()], dim=-1)
