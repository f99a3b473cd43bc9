"""Evaluating toolkens on held-out conversations, by decoding them for real.

For each test conversation the *test turn* is its first assistant turn: the messages
before it are the prompt, the turn itself is the gold (a call, or a reply without one).
The model decodes from the prompt exactly as a user would run it, and three figures are
kept:

* tool selection: the first call's tool equals the gold call's tool; a turn without a
  gold call is right only if no toolken fires;
* arguments: the first call's arguments equal the gold arguments (numbers compared by
  value, so ``3`` equals ``3.0``), over turns whose tool was chosen right;
* answer: when the record has a gold ``answer``, the tools run, decoding continues, and
  the final text contains the answer (whole numbers exactly, others within a relative
  1e-3 or 0.01 absolute, as FuncQA's rounded answers need).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .conversation import Conversation
from .decoding import CallFinished, Decoder, DecodeConfig, Finished
from .toolkens import Toolkens

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass
class EvalReport:
    examples: int = 0
    tool_right: int = 0
    call_turns: int = 0
    args_right: int = 0
    args_scored: int = 0
    answers: int = 0
    answers_right: int = 0
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def rate(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "examples": self.examples,
            "tool_selection_accuracy": rate(self.tool_right, self.examples),
            "argument_exact_match": rate(self.args_right, self.args_scored),
            "answer_accuracy": rate(self.answers_right, self.answers),
            "call_turns": self.call_turns,
            "answers_scored": self.answers,
            "seconds": round(self.seconds, 2),
        }


def same_value(a: Any, b: Any) -> bool:
    """JSON values equal, numbers by value (``3 == 3.0``), lists in order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def answer_in_text(answer: Any, text: str) -> bool:
    """Whether ``text`` states ``answer``: a number within tolerance, or the string itself."""
    try:
        gold = float(str(answer).replace(",", ""))
    except ValueError:
        return str(answer).strip().lower() in text.lower()
    integral = gold == int(gold)
    for match in _NUMBER.findall(text):
        value = float(match.replace(",", ""))
        if value == gold or (not integral and math.isclose(value, gold, rel_tol=1e-3, abs_tol=1e-2)):
            return True
    return False


def split_test_turn(conversation: Conversation) -> tuple[list, Any]:
    """(prompt messages, gold assistant message) at the first assistant turn."""
    for i, message in enumerate(conversation.messages):
        if message.role == "assistant":
            return list(conversation.messages[:i]), message
    raise ValueError(f"{conversation.source}: no assistant turn")


def evaluate(toolkens: Toolkens, conversations: Sequence[Conversation], config: DecodeConfig = DecodeConfig(),
             *, on_example: Callable[[int], None] | None = None) -> EvalReport:
    """Decode every test turn and score tool choice, arguments and answers."""
    import time

    decoder = Decoder(toolkens)
    report = EvalReport()
    start = time.perf_counter()
    for n, conversation in enumerate(conversations):
        prompt, gold = split_test_turn(conversation)
        gold_call = gold.tool_calls[0] if gold.tool_calls else None
        has_answer = "answer" in conversation.meta
        first_call, finished = None, None
        for event in decoder.stream(prompt, config, run_tools=has_answer):
            if isinstance(event, CallFinished) and first_call is None:
                first_call = event.call
            elif isinstance(event, Finished):
                finished = event
        report.examples += 1
        if gold_call is not None:
            report.call_turns += 1
        chosen_right = (first_call is None) if gold_call is None else (first_call is not None and first_call.name == gold_call.name)
        report.tool_right += chosen_right
        if gold_call is not None and chosen_right:
            report.args_scored += 1
            report.args_right += same_value(dict(first_call.args), dict(gold_call.args))
        if has_answer and finished is not None:
            final = finished.messages[-1].content if finished.messages else ""
            report.answers += 1
            report.answers_right += answer_in_text(conversation.meta["answer"], final)
        if not chosen_right and len(report.failures) < 20:
            report.failures.append({"source": conversation.source, "gold": gold_call.name if gold_call else None,
                                    "got": first_call.name if first_call else None})
        if on_example is not None:
            on_example(n)
    report.seconds = time.perf_counter() - start
    return report
