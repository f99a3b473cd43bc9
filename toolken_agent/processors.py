"""Logits processors over the joint logits ``[vocab ; toolkens]``.

Every constraint on decoding is one of transformers' logits processors
(:class:`transformers.LogitsProcessor`): ``processor(input_ids, scores)`` with
``input_ids`` ``(1, T)`` and ``scores`` ``(1, V)``, returning the masked or shifted
scores, so a chain is a :class:`transformers.LogitsProcessorList`. What a processor
needs beyond the two (the turn's visible text, the call gate's verdict) it reads through
a callable it was built with; what changes its state (a call made, a token accepted)
the decoder tells it through a method. :class:`ToolChoice` (which toolkens may fire),
:class:`ReplyStartGuard` (what a reply may not open with), :class:`ResultCopy` (quote
the result) and :class:`toolken_agent.arguments.ArgumentConstraint` (the arguments'
schema). ``tool_choice``:

=================  ==============================================================
``auto``           toolkens compete with words (optionally shifted by a bias)
``none``           toolkens never fire
``required``       the first decision must be a toolken (``any`` is an alias)
a tool's name      the first decision must be that tool's toolken, and only one call
=================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .errors import ToolkenError

NEG_INF = float("-inf")


@dataclass
class ToolChoice(LogitsProcessor):
    """Masks the joint logits according to ``choice``; tracks the calls of one request.

    ``max_calls`` bounds the calls of one request (everything after the user's last
    message, so an agent loop that sends results back is bounded too); ``prior_calls``
    is how many of them the history already holds. ``per_turn`` bounds the calls of one
    assistant turn (LangChain's ``parallel_tool_calls``); ``None`` leaves only ``max_calls``.
    ``gate``: the separate whether-to-call decision (:mod:`toolken_agent.gate`), asked
    with the unprocessed scores ``(1, V + n_tools)`` where ``auto`` may call; ``None``
    lets toolkens and words compete on their logits. ``unfit``: toolkens this request
    cannot call (its numbers do not fill their fields, :func:`toolken_agent.provenance.numbers_suffice`);
    where ``auto`` calls, the best of the others does.
    """

    choice: str
    vocab_size: int
    tool_names: Sequence[str]
    max_calls: int = 4
    tool_bias: float = 0.0
    anywhere: bool = False  # False: toolkens compete only where a call may start (see below)
    prior_calls: int = 0
    per_turn: int | None = None
    gate: Callable[[torch.Tensor], bool] | None = None
    calls_made: int = field(default=0, init=False)
    turn_calls: int = field(default=0, init=False)
    at_decision: bool = field(default=True, init=False)
    last_tool: int | None = field(default=None, init=False)
    banned: set[int] = field(default_factory=set, init=False)  # toolkens refused at this decision point
    unfit: set[int] = field(default_factory=set, init=False)  # toolkens this request cannot call (set per turn)

    def __post_init__(self) -> None:
        self.choice = {"any": "required", None: "auto"}.get(self.choice, self.choice)
        if self.choice not in ("auto", "none", "required") and self.choice not in self.tool_names:
            raise ToolkenError(f"tool_choice {self.choice!r} is not auto, none, required, or a bound tool's name")
        self.calls_made = self.prior_calls

    @property
    def forced(self) -> bool:
        """Whether this decision must be a call (``required`` or a tool's name, before the first call)."""
        return self.choice != "auto" and self.choice != "none" and self.calls_made == self.prior_calls

    def tools_open(self) -> bool:
        """Whether any toolken may fire at this step."""
        if self.choice == "none" or self.calls_made >= self.max_calls or not self.tool_names:
            return False
        if self.per_turn is not None and self.turn_calls >= self.per_turn:
            return False
        if not self.forced and self.choice != "auto" and self.choice != "required":
            return False  # a named tool: one call
        return self.anywhere or self.at_decision

    def gate_verdict(self, scores: torch.Tensor) -> bool | None:
        """The gate's say at this open step: ``False`` keeps the toolkens out, ``True`` makes it a call.

        The gate speaks only where ``auto`` decides; once the call it opened for was
        refused (``banned``), the reply is words, not another tool.
        """
        if self.gate is None or self.forced or self.choice != "auto":
            return None
        return False if self.banned else self.gate(scores)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ``(1, V + n_tools)`` -> masked copy; ``input_ids`` ``(1, T)`` is not read.

        Unless ``anywhere``, a call may start only at a decision point: the first
        token of an assistant turn, or right after a call, where chat agents call;
        mid-sentence is where small models misfire. The tool just called cannot fire
        again at once, nor a toolken whose call was refused at this point (``banned``).
        """
        out = scores.clone()
        words, tools = out[..., : self.vocab_size], out[..., self.vocab_size :]
        tools += self.tool_bias
        for k in self.banned | ({self.last_tool} if self.last_tool is not None else set()):
            tools[..., k] = NEG_INF
        if self.choice == "auto":
            for k in self.unfit:
                tools[..., k] = NEG_INF
        if not self.tools_open() or not bool(torch.isfinite(tools).any()):
            tools.fill_(NEG_INF)
            return out
        if self.forced:
            words.fill_(NEG_INF)
            if self.choice != "required":
                keep = self.tool_names.index(self.choice)
                others = torch.ones(tools.shape[-1], dtype=torch.bool)
                others[keep] = False
                tools[..., others] = NEG_INF
            return out
        verdict = self.gate_verdict(scores)
        if verdict is False:
            tools.fill_(NEG_INF)
        elif verdict is True:
            words.fill_(NEG_INF)
        return out

    def called(self, tool: int) -> None:
        self.calls_made += 1
        self.turn_calls += 1
        self.last_tool = tool
        self.at_decision = True
        self.banned = set()

    def refused(self, tool: int) -> None:
        """The call ``tool``'s toolken started was refused (a repeat, say): decide again without it."""
        self.banned.add(tool)

    def wrote_text(self) -> None:
        self.at_decision = False
        self.banned = set()

    def new_turn(self) -> None:
        self.at_decision = True
        self.last_tool = None
        self.turn_calls = 0
        self.banned = set()


def no_text() -> str:
    return ""


@dataclass
class ResultCopy(LogitsProcessor):
    """Leans the reply after tool results toward quoting them, and once begun, finishing the quote.

    A small frozen model asked to answer from a result often paraphrases it away or
    invents another number; the user wanted the result. While a result's text is not
    yet in the reply (``reply()``, the turn's visible text so far), the tokens that open
    it (``starts``) get ``bias`` added; when the reply ends partway into a result, the
    token that continues it (``continuations``: result prefix -> next token) gets
    ``continue_bias``, so a quote, once started, is not abandoned halfway. The model
    still writes every word. Once every result appears in the reply it does nothing.
    """

    results: Sequence[str]  # the tool results the reply should quote
    starts: Sequence[int]  # the vocabulary ids that open a result
    bias: float = 2.0
    reply: Callable[[], str] = no_text
    continuations: Mapping[str, int] = field(default_factory=dict)  # a result's prefix -> the token after it
    continue_bias: float = 0.0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        reply = self.reply()
        if self.bias == 0 or not self.starts or all(r.strip() in reply for r in self.results):
            return scores
        out = scores.clone()
        following = self._following(reply) if self.continue_bias else None
        if following is not None:
            out[..., following] += self.continue_bias
        else:
            out[..., list(self.starts)] += self.bias
        return out

    def _following(self, reply: str) -> int | None:
        """The token continuing the longest result prefix that ``reply`` ends with (at a word's start)."""
        best = None
        for prefix, token in self.continuations.items():
            if reply.endswith(prefix) and (best is None or len(prefix) > len(best[0])):
                before = reply[: len(reply) - len(prefix)]
                if not before or not before[-1].isalnum():
                    best = (prefix, token)
        return best[1] if best is not None else None


@dataclass
class ReplyStartGuard(LogitsProcessor):
    """Tokens a reply may not open with: until ``reply()`` holds visible text, ``banned`` are ``-inf``.

    The decoder bans the end token, whitespace and ``<`` (no empty reply, and no call
    markup written as text, which ends the reply empty at its stop) and, right after a
    tool result, ``{`` (an echo of the call as JSON instead of an answer).
    """

    banned: torch.Tensor  # (k,) long
    reply: Callable[[], str] = no_text

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not len(self.banned) or self.reply().strip():
            return scores
        return scores.index_fill(-1, self.banned, NEG_INF)
