"""Logits processors over the joint logits ``[vocab ; toolkens]``.

``tool_choice`` is a constraint on decoding like any other, so it is a small processor
with one ``process_logits(input_ids, logits)`` method that masks with ``-inf``:

=================  ==============================================================
``auto``           toolkens compete with words (optionally shifted by a bias)
``none``           toolkens never fire
``required``       the first decision must be a toolken (``any`` is an alias)
a tool's name      the first decision must be that tool's toolken, and only one call
=================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import ToolkenError

NEG_INF = float("-inf")


@dataclass
class ToolChoice:
    """Masks the joint logits according to ``choice``; tracks calls made so far."""

    choice: str
    vocab_size: int
    tool_names: Sequence[str]
    max_calls: int = 4
    tool_bias: float = 0.0
    anywhere: bool = False  # False: toolkens compete only where a call may start (see below)
    calls_made: int = field(default=0, init=False)
    at_decision: bool = field(default=True, init=False)
    last_tool: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.choice = {"any": "required", None: "auto"}.get(self.choice, self.choice)
        if self.choice not in ("auto", "none", "required") and self.choice not in self.tool_names:
            raise ToolkenError(f"tool_choice {self.choice!r} is not auto, none, required, or a bound tool's name")

    def process_logits(self, input_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(V + n_tools,)`` -> masked copy; ``input_ids`` is the context so far.

        Unless ``anywhere``, a call may start only at a decision point: the first
        token of an assistant turn, or right after a call. Mid-sentence firing is where
        small models misfire (measured: FINDINGS.md), and chat agents call there anyway.
        The tool just called cannot fire again at once (a repeat loop otherwise).
        """
        logits = logits.clone()
        tools = logits[self.vocab_size :]
        tools += self.tool_bias
        if self.last_tool is not None and len(tools):
            tools[self.last_tool] = NEG_INF
        if (self.choice == "none" or self.calls_made >= self.max_calls or not len(tools)
                or (not self.anywhere and not self.at_decision)):
            tools.fill_(NEG_INF)
        elif self.choice == "required" and self.calls_made == 0:
            logits[: self.vocab_size] = NEG_INF
        elif self.choice not in ("auto", "required"):
            if self.calls_made == 0:
                logits[: self.vocab_size] = NEG_INF
                keep = self.tool_names.index(self.choice)
                mask = torch.ones_like(tools, dtype=torch.bool)
                mask[keep] = False
                tools[mask] = NEG_INF
            else:
                tools.fill_(NEG_INF)
        return logits

    def called(self, tool: int) -> None:
        self.calls_made += 1
        self.last_tool = tool
        self.at_decision = True

    def wrote_text(self) -> None:
        self.at_decision = False

    def new_turn(self) -> None:
        self.at_decision = True
        self.last_tool = None


def sample(logits: torch.Tensor, *, temperature: float = 0.0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> int:
    """Greedy when ``temperature`` is 0, else temperature and nucleus sampling."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
